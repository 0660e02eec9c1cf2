"""Aggregation-Separation Loss (ASLoss): "Effectively Clarify Confusion via Visualized Aggregation and
Separation of Deep Representation", anonymous ICLR 2023 submission (OpenReview id hPdMskOKGX6).

For representations r_i of one layer, a distance D and classes c_i (paper Eqs. 1-6):

    inner    = sum_{i<=j, c_i=c_j} D(r_i, r_j) / N_same          (Eqs. 1-2, self pairs included)
    outer    = sum_{i<=j, c_i!=c_j} D(r_i, r_j) / N_diff          (Eqs. 3-4; i=j never differs)
    boundary = (1/N) sum_i | ||r_i|| - constraint |               (Eq. 5)
    ASLoss   = l_inner * inner - l_outer * outer + l_boundary * boundary   (Eq. 6)

Deviations / choices:

* ``D(r_i, 0)`` in Eq. 5 is read as a norm: the L1 norm for metric "l1" and the L2 norm for "l2"
  and "cosine" (the cosine distance to the origin is undefined). ``||.||_2`` of the scalar
  difference is its absolute value.
* ``constraint`` is not given in the paper; default 1.0.
* ``include_self_pairs=False`` drops the i = j terms from the inner average (i < j only).
* Empty averages (no same-class pair, no different-class pair, no valid row) are 0 with zero
  gradient instead of 0/0.
* The combination with the classification loss (Eq. 7) is left to the caller.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import jax
import jax.numpy as jnp

from imbalance_jax.losses.batch import (
    check_embeddings_labels_valid,
    gather_global_batch,
    mask_rows,
    resolve_valid,
)
from imbalance_jax.losses.distances import check_metric, pairwise_distances, safe_norm
from imbalance_jax.losses.masks import pair_mask
from imbalance_jax.losses.reductions import safe_mean

Array = jax.Array

ASL_METRICS: tuple[str, ...] = ("l1", "l2", "cosine")


def aggregation_separation_terms(
    embeddings: Array,
    labels: Array,
    valid: Optional[Array] = None,
    *,
    metric: str = "l2",
    constraint: float = 1.0,
    inner_weight: float = 1e-3,
    outer_weight: float = 1e-3,
    boundary_weight: float = 1e-2,
    include_self_pairs: bool = True,
    axis_name: Optional[str] = None,
) -> dict[str, Array]:
    """ASLoss and its unweighted terms: {"inner", "outer", "boundary", "total"}.

    "total" is the weighted ASLoss (Eq. 6); the other three are the raw averages of Eqs. 1, 3, 5.
    See ``aggregation_separation_loss`` for the arguments.
    """
    check_metric(metric, ASL_METRICS)
    check_embeddings_labels_valid(embeddings, labels, valid)
    valid = resolve_valid(valid, embeddings.shape[0])
    embeddings, labels, valid = gather_global_batch(axis_name, embeddings, labels, valid)
    embeddings = mask_rows(embeddings, valid)

    dist = pairwise_distances(embeddings, metric=metric)
    same = pair_mask(
        labels, valid, same=True, include_diagonal=include_self_pairs, upper_triangle=True
    )
    diff = pair_mask(labels, valid, same=False, upper_triangle=True)
    inner = safe_mean(dist, same)
    outer = safe_mean(dist, diff)
    norms = safe_norm(embeddings, axis=-1, ord=1 if metric == "l1" else 2)
    boundary = safe_mean(jnp.abs(norms - constraint), valid)
    total = inner_weight * inner - outer_weight * outer + boundary_weight * boundary
    return {"inner": inner, "outer": outer, "boundary": boundary, "total": total}


def aggregation_separation_loss(
    embeddings: Array,
    labels: Array,
    valid: Optional[Array] = None,
    *,
    metric: str = "l2",
    constraint: float = 1.0,
    inner_weight: float = 1e-3,
    outer_weight: float = 1e-3,
    boundary_weight: float = 1e-2,
    include_self_pairs: bool = True,
    axis_name: Optional[str] = None,
) -> Array:
    """ASLoss (paper Eq. 6) of one layer's representations; float scalar.

    Args:
      embeddings: float[B, D] representations of one linear layer.
      labels: int[B] class ids.
      valid: bool[B] or None; invalid rows take part in no pair and no boundary term.
      metric: "l1", "l2" (default, the paper's best) or "cosine" (1 - cos).
      constraint: target norm of the boundary term (not in the paper; default 1.0).
      inner_weight, outer_weight, boundary_weight: lambda_inner, lambda_outer, lambda_boundary
        (paper defaults 1e-3, 1e-3, 1e-2).
      include_self_pairs: count the i = j pairs (distance 0) in the inner average, as Eq. 1.
      axis_name: inside ``shard_map``, compute on the batch all-gathered over this axis.
    """
    return aggregation_separation_terms(
        embeddings, labels, valid, metric=metric, constraint=constraint,
        inner_weight=inner_weight, outer_weight=outer_weight, boundary_weight=boundary_weight,
        include_self_pairs=include_self_pairs, axis_name=axis_name,
    )["total"]


def multi_layer_aggregation_separation_loss(
    features: Mapping[str, Array],
    layers: Sequence[str],
    labels: Array,
    valid: Optional[Array] = None,
    **kwargs,
) -> Array:
    """Sum of ASLoss over several named feature layers (paper §6.2, Table 2).

    Args:
      features: the model's named features (e.g. ``{"proj_0": [B, 64], "proj_1": [B, 2]}``);
        each used entry is flattened to [B, -1].
      layers: names of the layers to apply ASLoss to (at least one).
      labels, valid: as in ``aggregation_separation_loss``.
      **kwargs: keyword arguments of ``aggregation_separation_loss`` (same for every layer).
    """
    if isinstance(layers, str) or len(layers) == 0:
        raise ValueError(f"layers must be a non-empty sequence of feature names, got {layers!r}.")
    missing = [name for name in layers if name not in features]
    if missing:
        raise ValueError(
            f"layers {missing} are not in features; allowed values: {sorted(features)}."
        )
    per_layer = [
        aggregation_separation_loss(
            features[name].reshape(features[name].shape[0], -1), labels, valid, **kwargs
        )
        for name in layers
    ]
    return jnp.sum(jnp.stack(per_layer))


__all__ = [
    "ASL_METRICS",
    "aggregation_separation_loss",
    "aggregation_separation_terms",
    "multi_layer_aggregation_separation_loss",
]
