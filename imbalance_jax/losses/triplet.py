"""Batch triplet loss with mining, in O(B^2 log B) time and O(B^2) memory.

Triplet hinge (Schroff et al. 2015; TriCDB-CE paper, ``papers/triplet_cdb_ce_long_tail.md``):

    h(a, p, n) = max(d(a, p) + alpha - d(a, n), 0),   y_a = y_p, a != p, y_n != y_a.

Reductions (DESIGN.md §3.6), ``T`` = the set of valid triplets:

* ``"all"``:       mean of h over T.
* ``"violating"``: mean of h over the triplets of T with h > 0 (TriCDB-CE default).
* ``"semihard"``:  mean of h over the triplets of T with d(a, p) < d(a, n) < d(a, p) + alpha.
* ``"hard"``:      per anchor, max(max_p d(a, p) + alpha - min_n d(a, n), 0); mean over the
  anchors that have at least one positive and one negative.

No selected triplet gives 0 with zero gradient.

How the B^3 tensor is avoided: for a fixed anchor a and threshold q = d(a, p) + alpha,
``sum_n h(a, p, n) = c(q) * q - S(c(q))`` where c(q) is the number of negatives with
d(a, n) < q and S(k) the sum of the k smallest negative distances. Sorting each anchor's negative
distances once (O(B^2 log B)) and taking prefix sums gives S; a vectorised ``searchsorted``
gives c for every positive at once. Counts are integer constants; the gradient reaches the
distances through q (coefficient c) and through S (sort permutation + prefix sum), so it equals
the gradient of the dense formulation exactly (in exact arithmetic). ``triplet_loss_dense``
is that dense O(B^3) formulation and exists only as a reference for tests and benchmarks.

Deviations: none from the formula; the TriCDB-CE paper does not state alpha, default 0.2
(DESIGN.md §3.3). Per-anchor prefix sums are taken relative to a (gradient-free) per-anchor
shift, which changes nothing mathematically and reduces float32 cancellation in c*q - S.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from imbalance_jax.losses.distances import (
    anchor_negative_mask,
    anchor_positive_mask,
    check_embeddings_labels_valid,
    check_metric,
    gather_global_batch,
    mask_rows,
    pairwise_distances,
    resolve_valid,
)

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


def _prepare(embeddings, labels, valid, metric, axis_name):
    """Checks inputs, gathers the global batch and returns (distances, ap_mask, an_mask)."""
    check_embeddings_labels_valid(embeddings, labels, valid)
    valid = resolve_valid(valid, embeddings.shape[0])
    embeddings, labels, valid = gather_global_batch(axis_name, embeddings, labels, valid)
    dist = pairwise_distances(mask_rows(embeddings, valid), metric=metric)
    return dist, anchor_positive_mask(labels, valid), anchor_negative_mask(labels, valid)


def _hard_stats(dist: Array, ap: Array, an: Array, margin) -> dict[str, Array]:
    """Batch-hard mining, O(B^2): hardest positive and hardest negative per anchor."""
    has = jnp.any(ap, axis=1) & jnp.any(an, axis=1)
    hardest_pos = jnp.max(jnp.where(ap, dist, -jnp.inf), axis=1)
    hardest_neg = jnp.min(jnp.where(an, dist, jnp.inf), axis=1)
    gap = jnp.where(has, hardest_pos, 0.0) + margin - jnp.where(has, hardest_neg, 0.0)
    hinge = jnp.where(has, jax.nn.relu(gap), 0.0)
    return {"sum_hard": jnp.sum(hinge), "count_hard": jnp.sum(has.astype(dist.dtype))}


def _searchsorted_rows(sorted_rows: Array, queries: Array, side: str) -> Array:
    """Row-wise ``searchsorted``: [B, N] sorted rows, [B, M] queries -> int [B, M]."""
    return jax.vmap(lambda row, q: jnp.searchsorted(row, q, side=side, method="scan"))(
        sorted_rows, queries
    )


def _triplet_stats_fast(dist: Array, ap: Array, an: Array, margin) -> dict[str, Array]:
    """All statistics in O(B^2 log B) time and O(B^2) memory (see module docstring)."""
    dtype = dist.dtype
    # Per-anchor shift (no gradient): hinge sums are shift-invariant, float32 error is not.
    n_neg = jnp.sum(an.astype(dtype), axis=1)
    shift = jax.lax.stop_gradient(
        jnp.sum(jnp.where(an, dist, 0.0), axis=1) / jnp.maximum(n_neg, 1.0)
    )[:, None]
    rel = dist - shift
    # Sort negatives per anchor; non-negatives go last as +inf keys with value 0.
    keys = jnp.where(an, rel, jnp.inf)
    vals = jnp.where(an, rel, 0.0)
    sorted_keys, sorted_vals = jax.lax.sort((keys, vals), dimension=1, num_keys=1)
    prefix = jnp.concatenate(
        [jnp.zeros_like(sorted_vals[:, :1]), jnp.cumsum(sorted_vals, axis=1)], axis=1
    )  # prefix[a, k] = sum of the k smallest negative (shifted) distances of anchor a

    q = rel + margin  # [a, p] threshold; only ap entries are used
    sorted_keys = jax.lax.stop_gradient(sorted_keys)
    q_const = jax.lax.stop_gradient(q)
    c_lt_q = _searchsorted_rows(sorted_keys, q_const, "left")  # #{n : d_an < d_ap + alpha}
    c_le_p = _searchsorted_rows(sorted_keys, jax.lax.stop_gradient(rel), "right")  # <= d_ap
    c_lo = jnp.minimum(c_le_p, c_lt_q)

    s_hi = jnp.take_along_axis(prefix, c_lt_q, axis=1)
    s_lo = jnp.take_along_axis(prefix, c_lo, axis=1)
    cnt_hi = c_lt_q.astype(dtype)
    cnt_semi = (c_lt_q - c_lo).astype(dtype)

    sum_all = jnp.where(ap, cnt_hi * q - s_hi, 0.0)
    sum_semi = jnp.where(ap, cnt_semi * q - (s_hi - s_lo), 0.0)
    ap_f = ap.astype(dtype)
    return {
        "sum_all": jnp.sum(sum_all),
        "count_all": jnp.sum(ap_f * n_neg[:, None]),
        "count_active": jnp.sum(ap_f * cnt_hi),
        "sum_semihard": jnp.sum(sum_semi),
        "count_semihard": jnp.sum(ap_f * cnt_semi),
        **_hard_stats(dist, ap, an, margin),
    }


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
    axis_name: Optional[str] = None,
) -> dict[str, Array]:
    """Triplet loss and logging terms (O(B^2 log B) time, O(B^2) memory).

    Returns a dict with "loss", "num_selected_triplets" (the denominator of the chosen mining;
    anchors for "hard"), "num_valid_triplets", "num_active_triplets" (valid triplets with
    hinge > 0) and "fraction_active". Counts are float32 (B^3 overflows int32 at B ~ 1300).
    See ``triplet_loss`` for the arguments.
    """
    _check_args(metric, mining)
    dist, ap, an = _prepare(embeddings, labels, valid, metric, axis_name)
    return _terms(_triplet_stats_fast(dist, ap, an, margin), mining)


def triplet_loss(
    embeddings: Array,
    labels: Array,
    valid: Optional[Array] = None,
    *,
    margin: float = 0.2,
    metric: str = "sq_l2",
    mining: str = "violating",
    axis_name: Optional[str] = None,
) -> Array:
    """Triplet loss over all in-batch triplets with the given mining; float scalar.

    Args:
      embeddings: float[B, D].
      labels: int[B].
      valid: bool[B] or None; invalid rows are never anchor, positive or negative.
      margin: alpha in the hinge (default 0.2, DESIGN.md §3.3).
      metric: "sq_l2" (default, TriCDB-CE), "l2" or "cosine" (1 - cos).
      mining: "all", "violating" (default), "hard" or "semihard" (module docstring).
      axis_name: when called inside ``shard_map`` with the batch sharded over this axis, the
        loss is computed on the all-gathered global batch.
    """
    return triplet_loss_terms(
        embeddings, labels, valid, margin=margin, metric=metric, mining=mining,
        axis_name=axis_name,
    )["loss"]


def triplet_loss_dense(
    embeddings: Array,
    labels: Array,
    valid: Optional[Array] = None,
    *,
    margin: float = 0.2,
    metric: str = "sq_l2",
    mining: str = "violating",
    axis_name: Optional[str] = None,
) -> Array:
    """Reference triplet loss from the explicit B x B x B hinge tensor.

    O(B^3) time and memory (4 GiB per tensor at B = 1024 in float32): for tests and benchmarks
    only; use ``triplet_loss``. Same arguments and result as ``triplet_loss``.
    """
    _check_args(metric, mining)
    dist, ap, an = _prepare(embeddings, labels, valid, metric, axis_name)
    return _terms(_triplet_stats_dense(dist, ap, an, margin), mining)["loss"]


__all__ = [
    "MINING",
    "TRIPLET_METRICS",
    "triplet_loss",
    "triplet_loss_dense",
    "triplet_loss_terms",
]
