"""Batch triplet loss with mining, in O(B^2) memory and without a B^3 tensor.

Triplet hinge (FaceNet, Schroff et al. 2015; TriCDB-CE, Darkwah Jnr. & Kang 2023):

    h(a, p, n) = max(d(a, p) + alpha - d(a, n), 0),   y_a = y_p, a != p, y_n != y_a.

Reductions, ``T`` = the set of valid triplets:

* ``"all"``:       mean of h over T.
* ``"violating"``: mean of h over the triplets of T with h > 0 (TriCDB-CE default).
* ``"semihard"``:  mean of h over the triplets of T with d(a, p) < d(a, n) < d(a, p) + alpha.
* ``"hard"``:      per anchor, max(max_p d(a, p) + alpha - min_n d(a, n), 0); mean over the
  anchors that have at least one positive and one negative.

No selected triplet gives 0 with zero gradient.

How the B^3 tensor is avoided: for a fixed anchor a, with q_p = d(a, p) + alpha,

    sum_{p, n} h(a, p, n) = sum_p c_p q_p - sum_n m_n d(a, n),
    c_p = #{n : d(a, n) < q_p},   m_n = #{p : q_p > d(a, n)},

because each active triplet contributes q_p - d(a, n) once. The integer counts come from ONE
row-wise sort of the merged "events" of the anchor (its negatives at d(a, n), its positives at
q_p) and two running counts along the sorted row; they are scattered back to the (a, p) and
(a, n) entries. The loss is then linear in the distances with these constant coefficients, so
its gradient (c_p on d(a, p), -m_n on d(a, n)) equals the gradient of the dense formulation
exactly, and nothing is differentiated through the sort. Semi-hard triplets add the events
d(a, p) (lower thresholds) to the same sort. ``count_active`` = sum_p c_p. Ties follow the
dense definitions (h > 0 and the strict semi-hard inequalities): at equal keys the sort puts
upper thresholds before negatives before lower thresholds.

Cost: the sort dominates. XLA:CPU's sort is a scalar comparison sort (measured ~10x slower than
the alternative at B = 1024), so on CPU the sort is a vectorised bitonic network
(O(B^2 log^2 B) compare-exchanges, run over cache-sized blocks of rows); other backends use
XLA's sort (``lax.platform_dependent``). ``triplet_loss_dense`` is the explicit O(B^3)
formulation, kept only as a reference for tests and benchmarks.

Deviations: none from the formula; the TriCDB-CE paper does not state alpha, default 0.2
(FaceNet's value, Schroff et al. 2015). The sums are taken relative to a (gradient-free)
per-anchor shift of the distances, which changes nothing mathematically (sum_p c_p = sum_n m_n)
and reduces float32 cancellation.
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from imbalance_jax.losses.batch import (
    check_embeddings_labels_valid,
    gather_global_batch,
    mask_rows,
    resolve_valid,
)
from imbalance_jax.losses.distances import check_metric, l2_normalize, pairwise_distances
from imbalance_jax.losses.masks import anchor_negative_mask, anchor_positive_mask

Array = jax.Array

MINING: tuple[str, ...] = ("all", "violating", "hard", "semihard")
TRIPLET_METRICS: tuple[str, ...] = ("sq_l2", "l2", "cosine")

# Names of the statistics both formulations return (all float32 scalars):
#   sum_all     sum of h over all valid triplets (= sum over violating ones)
#   count_all   number of valid triplets
#   count_active  number of valid triplets with h > 0
#   sum_semihard / count_semihard  the same over semi-hard triplets
#   sum_hard / count_hard          sum of per-anchor hard hinges / number of eligible anchors


def _check_args(metric: str, mining: str) -> None:
    check_metric(metric, TRIPLET_METRICS)
    check_metric(mining, MINING, name="mining")


def _prepare(embeddings, labels, valid, metric, axis_name, normalize=False):
    """Checks inputs, gathers the global batch and returns (distances, ap_mask, an_mask)."""
    check_embeddings_labels_valid(embeddings, labels, valid)
    valid = resolve_valid(valid, embeddings.shape[0])
    embeddings, labels, valid = gather_global_batch(axis_name, embeddings, labels, valid)
    embeddings = mask_rows(embeddings, valid)  # before normalising: padding rows may hold inf / NaN
    if normalize:
        embeddings = l2_normalize(embeddings)
    dist = pairwise_distances(embeddings, metric=metric)
    return dist, anchor_positive_mask(labels, valid), anchor_negative_mask(labels, valid)


def _hard_stats(dist: Array, ap: Array, an: Array, margin) -> dict[str, Array]:
    """Batch-hard mining, O(B^2): hardest positive and hardest negative per anchor."""
    has = jnp.any(ap, axis=1) & jnp.any(an, axis=1)
    hardest_pos = jnp.max(jnp.where(ap, dist, -jnp.inf), axis=1)
    hardest_neg = jnp.min(jnp.where(an, dist, jnp.inf), axis=1)
    gap = jnp.where(has, hardest_pos, 0.0) + margin - jnp.where(has, hardest_neg, 0.0)
    hinge = jnp.where(has, jax.nn.relu(gap), 0.0)
    return {"sum_hard": jnp.sum(hinge), "count_hard": jnp.sum(has.astype(dist.dtype))}


# Event kinds of the merged per-anchor sort (the tag's quotient by the row length B). At equal keys
# the sort orders them by kind, which makes every count below strict or non-strict as required.
_UPPER, _NEGATIVE, _LOWER, _EXCLUDED = range(4)

# The CPU bitonic sort runs over blocks of this many elements (rows x padded width) at a time, so
# that each of its log^2 passes works in cache: 2x faster than whole-array passes at B = 4096.
_SORT_BLOCK_ELEMENTS = 1 << 14


def _bitonic_sort(keys: Array, tags: Array) -> Array:
    """Sorts each row of ``keys`` [R, N] (N a power of 2) by (key, tag); returns the sorted tags.

    A bitonic network of vectorised compare-exchange passes (log2(N) (log2(N) + 1) / 2 of them).
    Tags must be distinct within a row, so the order is total and the result deterministic.
    """
    rows, n = keys.shape
    k = 2
    while k <= n:
        j = k // 2
        while j >= 1:
            blocks = n // (2 * j)
            descending = jnp.asarray(((np.arange(blocks) * 2 * j) & k) != 0)[None, :, None]
            kr, tr = keys.reshape(rows, blocks, 2, j), tags.reshape(rows, blocks, 2, j)
            k_lo, k_hi, t_lo, t_hi = kr[:, :, 0], kr[:, :, 1], tr[:, :, 0], tr[:, :, 1]
            greater = (k_lo > k_hi) | ((k_lo == k_hi) & (t_lo > t_hi))
            swap = greater != descending
            keys = jnp.stack([jnp.where(swap, k_hi, k_lo), jnp.where(swap, k_lo, k_hi)], 2)
            tags = jnp.stack([jnp.where(swap, t_hi, t_lo), jnp.where(swap, t_lo, t_hi)], 2)
            keys, tags = keys.reshape(rows, n), tags.reshape(rows, n)
            j //= 2
        k *= 2
    return tags


def _bitonic_sort_blocked(keys: Array, tags: Array) -> Array:
    """``_bitonic_sort`` over blocks of rows (``lax.map``) so each block stays in cache."""
    rows, n = keys.shape
    block = max(1, min(rows, _SORT_BLOCK_ELEMENTS // n))
    if block == rows:
        return _bitonic_sort(keys, tags)
    num_blocks = -(-rows // block)
    pad = ((0, num_blocks * block - rows), (0, 0))
    keys = jnp.pad(keys, pad).reshape(num_blocks, block, n)
    tags = jnp.pad(tags, pad).reshape(num_blocks, block, n)
    out = jax.lax.map(lambda kt: _bitonic_sort(*kt), (keys, tags))
    return out.reshape(num_blocks * block, n)[:rows]


def _xla_sort(keys: Array, tags: Array) -> Array:
    return jax.lax.sort((keys, tags), dimension=1, num_keys=2)[1]


def _sort_tags_by_key(keys: Array, tags: Array) -> Array:
    """Row-wise sort of (key, tag) pairs, lexicographic; returns the tags in sorted order.

    XLA:CPU's sort is a scalar comparison sort (about 10x slower than the bitonic network here
    at B = 1024, 2-5x at B = 4096), so on CPU a vectorised bitonic network is used; other
    backends use XLA's sort. Both give the same (total) order.
    """
    n = keys.shape[1]
    width = 1 << max(0, (n - 1).bit_length())
    if width > n:  # pad to a power of 2 with entries that sort last
        pad = ((0, 0), (0, width - n))
        keys = jnp.pad(keys, pad, constant_values=jnp.inf)
        tags = jnp.pad(tags, pad, constant_values=jnp.iinfo(jnp.int32).max)
    tags = jax.lax.platform_dependent(keys, tags, cpu=_bitonic_sort_blocked, default=_xla_sort)
    return tags[:, :n]


def _scatter_rows(values: Array, columns: Array, num_columns: int) -> Array:
    """out[r, columns[r, k]] = values[r, k]; columns >= num_columns are dropped."""
    rows = jax.lax.broadcasted_iota(jnp.int32, columns.shape, 0)
    out = jnp.zeros((values.shape[0], num_columns + 1), values.dtype)
    return out.at[rows, jnp.minimum(columns, num_columns)].add(values)[:, :num_columns]


@functools.partial(jax.jit, static_argnames="semihard")
def _triplet_stats_fast(dist: Array, ap: Array, an: Array, margin, *,
                        semihard: bool = True) -> dict[str, Array]:
    """All statistics in O(B^2) memory from one merged sort per anchor (module docstring).

    ``semihard=False`` skips the semi-hard statistics (and halves the sort). Jitted so that an
    eager call runs the sort network as one compiled program, not op by op.
    """
    dtype = dist.dtype
    b = dist.shape[1]
    n_neg = jnp.sum(an.astype(dtype), axis=1)
    n_pos = jnp.sum(ap.astype(jnp.int32), axis=1)[:, None]
    # Per-anchor shift (no gradient): hinge sums are shift-invariant, float32 error is not.
    shift = jax.lax.stop_gradient(
        jnp.sum(jnp.where(an, dist, 0.0), axis=1) / jnp.maximum(n_neg, 1.0)
    )[:, None]
    rel = dist - shift
    rel_const = jax.lax.stop_gradient(rel)
    col = jax.lax.broadcasted_iota(jnp.int32, dist.shape, 1)
    excluded = col + _EXCLUDED * b
    keys = jnp.where(ap, rel_const + margin, jnp.where(an, rel_const, jnp.inf))
    tags = jnp.where(ap, col + _UPPER * b, jnp.where(an, col + _NEGATIVE * b, excluded))
    if semihard:  # lower thresholds d(a, p) as a second set of events
        keys = jnp.concatenate([keys, jnp.where(ap, rel_const, jnp.inf)], axis=1)
        tags = jnp.concatenate([tags, jnp.where(ap, col + _LOWER * b, excluded)], axis=1)
    tags = _sort_tags_by_key(keys, tags)
    kind, column = tags // b, tags % b
    is_upper = (kind == _UPPER).astype(jnp.int32)
    is_neg = (kind == _NEGATIVE).astype(jnp.int32)
    negs_upto = jnp.cumsum(is_neg, axis=1)
    uppers_upto = jnp.cumsum(is_upper, axis=1)
    # Upper event of p: c = #{n : d_an < d_ap + alpha} (equal keys: upper before negative).
    # Negative n: m = #{p : d_ap + alpha > d_an} = n_pos - #{uppers at or before n}.
    coef = jnp.where(kind == _UPPER, negs_upto,
                     jnp.where(kind == _NEGATIVE, uppers_upto - n_pos, 0))
    val = rel + jnp.where(ap, margin, 0.0)  # q for positives, d_an for negatives

    def reduce(coef_sorted):
        """sum_ap c q - sum_an m d_an and sum_ap c, for coefficients in sorted order."""
        target = jnp.where(kind <= _LOWER, column, b)
        c = _scatter_rows(coef_sorted, target, b).astype(dtype)
        total = jnp.sum(jnp.sum(jnp.where(ap | an, c * val, 0.0), axis=1))
        return total, jnp.sum(jnp.where(ap, c, 0.0))

    sum_all, count_active = reduce(coef)
    stats = {
        "sum_all": sum_all,
        "count_all": jnp.sum(n_pos[:, 0].astype(dtype) * n_neg),
        "count_active": count_active,
        **_hard_stats(dist, ap, an, margin),
    }
    if semihard:
        # Semi-hard: d_ap < d_an < d_ap + alpha. For alpha > 0 subtract from the counts above
        # #{n : d_an <= d_ap} (lower event of p; equal keys: negative before lower) and
        # #{p : d_ap >= d_an} = n_pos - #{lowers before n}; alpha <= 0 selects nothing.
        is_lower = (kind == _LOWER).astype(jnp.int32)
        lowers_before = jnp.cumsum(is_lower, axis=1) - is_lower
        semi = coef + jnp.where(kind == _LOWER, -negs_upto,
                                jnp.where(kind == _NEGATIVE, n_pos - lowers_before, 0))
        sum_semi, count_semi = reduce(jnp.where(margin > 0, semi, 0))
        stats.update(sum_semihard=sum_semi, count_semihard=count_semi)
    return stats


def _triplet_stats_dense(dist: Array, ap: Array, an: Array, margin) -> dict[str, Array]:
    """The same statistics from the explicit [B, B, B] tensor. O(B^3) time and memory."""
    dtype = dist.dtype
    mask = ap[:, :, None] & an[:, None, :]
    q = dist[:, :, None] + margin
    d_an = dist[:, None, :]
    hinge = jax.nn.relu(q - d_an)
    active = mask & (d_an < q)
    semi = active & (d_an > dist[:, :, None])
    # Batch-hard as a max over the B^2 (p, n) pairs of each anchor.
    has = jnp.any(mask, axis=(1, 2))
    worst = jnp.max(jnp.where(mask, q - d_an, -jnp.inf), axis=(1, 2))
    hard = jnp.where(has, jax.nn.relu(jnp.where(has, worst, 0.0)), 0.0)
    return {
        "sum_all": jnp.sum(jnp.where(mask, hinge, 0.0)),
        "count_all": jnp.sum(mask.astype(dtype)),
        "count_active": jnp.sum(active.astype(dtype)),
        "sum_semihard": jnp.sum(jnp.where(semi, hinge, 0.0)),
        "count_semihard": jnp.sum(semi.astype(dtype)),
        "sum_hard": jnp.sum(hard),
        "count_hard": jnp.sum(has.astype(dtype)),
    }


def _terms(stats: dict[str, Array], mining: str) -> dict[str, Array]:
    """Reduces the statistics to the loss of ``mining`` plus logging terms."""
    num, den = {
        "all": ("sum_all", "count_all"),
        "violating": ("sum_all", "count_active"),
        "semihard": ("sum_semihard", "count_semihard"),
        "hard": ("sum_hard", "count_hard"),
    }[mining]
    loss = stats[num] / jnp.maximum(stats[den], 1.0)
    return {
        "loss": loss,
        "num_selected_triplets": stats[den],
        "num_valid_triplets": stats["count_all"],
        "num_active_triplets": stats["count_active"],
        "fraction_active": stats["count_active"] / jnp.maximum(stats["count_all"], 1.0),
    }


def triplet_loss_terms(
    embeddings: Array,
    labels: Array,
    valid: Optional[Array] = None,
    *,
    margin: float = 0.2,
    metric: str = "sq_l2",
    mining: str = "violating",
    normalize: bool = False,
    axis_name: Optional[str] = None,
) -> dict[str, Array]:
    """Triplet loss and logging terms (O(B^2 log B) time, O(B^2) memory).

    Returns a dict with "loss", "num_selected_triplets" (the denominator of the chosen mining;
    anchors for "hard"), "num_valid_triplets", "num_active_triplets" (valid triplets with
    hinge > 0) and "fraction_active". Counts are float32 (B^3 overflows int32 at B ~ 1300).
    See ``triplet_loss`` for the arguments.
    """
    _check_args(metric, mining)
    dist, ap, an = _prepare(embeddings, labels, valid, metric, axis_name, normalize)
    return _terms(_triplet_stats_fast(dist, ap, an, margin, semihard=mining == "semihard"), mining)


def triplet_loss(
    embeddings: Array,
    labels: Array,
    valid: Optional[Array] = None,
    *,
    margin: float = 0.2,
    metric: str = "sq_l2",
    mining: str = "violating",
    normalize: bool = False,
    axis_name: Optional[str] = None,
) -> Array:
    """Triplet loss over all in-batch triplets with the given mining; float scalar.

    Args:
      embeddings: float[B, D].
      labels: int[B].
      valid: bool[B] or None; invalid rows are never anchor, positive or negative.
      margin: alpha in the hinge (default 0.2, as FaceNet, Schroff et al. 2015).
      metric: "sq_l2" (default, TriCDB-CE), "l2" or "cosine" (1 - cos).
      mining: "all", "violating" (default), "hard" or "semihard" (module docstring).
      normalize: L2-normalise the embeddings (a zero row stays zero) before the distance, as
        FaceNet (Schroff et al. 2015, §3: ``||f(x)||_2 = 1``), for which alpha = 0.2 was chosen,
        and as pytorch-metric-learning's ``TripletMarginLoss`` (``normalize_embeddings=True``).
        On unit vectors squared L2 = 2 (1 - cos), so the hinge is bounded by 4 + alpha whatever
        the feature scale. Default False (the raw embeddings, as before this option).
      axis_name: when called inside ``shard_map`` with the batch sharded over this axis, the
        loss is computed on the all-gathered global batch.
    """
    return triplet_loss_terms(
        embeddings, labels, valid, margin=margin, metric=metric, mining=mining,
        normalize=normalize, axis_name=axis_name,
    )["loss"]


def triplet_loss_dense(
    embeddings: Array,
    labels: Array,
    valid: Optional[Array] = None,
    *,
    margin: float = 0.2,
    metric: str = "sq_l2",
    mining: str = "violating",
    normalize: bool = False,
    axis_name: Optional[str] = None,
) -> Array:
    """Reference triplet loss from the explicit B x B x B hinge tensor.

    O(B^3) time and memory (4 GiB per tensor at B = 1024 in float32): for tests and benchmarks
    only; use ``triplet_loss``. Same arguments and result as ``triplet_loss``.
    """
    _check_args(metric, mining)
    dist, ap, an = _prepare(embeddings, labels, valid, metric, axis_name, normalize)
    return _terms(_triplet_stats_dense(dist, ap, an, margin), mining)["loss"]


__all__ = [
    "MINING",
    "TRIPLET_METRICS",
    "triplet_loss",
    "triplet_loss_dense",
    "triplet_loss_terms",
]
