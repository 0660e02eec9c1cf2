"""Gaussian-affinity max-margin loss with the diversity regulariser (Hayat et al., ICCV 2019).

Formulas of Hayat et al. 2019, Sec. 3.2 (equation numbers below are the ones the paper's text refers to):

* Eq. (3) similarity: ``s_ij = exp(−d(f_i, w_j) / σ)``, ``d`` = squared L2 by default; multi-centre
  form (same section): ``s_ij = max_t exp(−d(f_i, w_j^t) / σ)`` over the ``m`` prototypes of class
  ``j``; prototypes have shape [C, m, D].
* Max-margin loss (Eq. 6): ``L_mm = mean_i Σ_{j≠y_i} max(0, λ + s_ij − s_{i,y_i})``.
* Diversity regulariser (equation following Eq. 6), over all ``K = C·m`` prototypes, pairs ``k < l``:
  ``d_kl = ‖w_k − w_l‖²``, ``μ = mean d_kl``, ``R = mean (d_kl − μ)²``.
* Total ``L = L_mm + γ·R`` (γ = ``diversity_weight`` = 1). Prediction = ``argmax_j s_ij``.

Options (paper Table 4): ``distance`` ∈ {"sq_l2" (default), "l1", "l2"}, ``similarity`` ∈
{"gaussian" (default), "inverse" = ``1 / (1 + d)``; σ is not used by "inverse", as in the paper}.

Deviations: ``R`` uses the single normalisation ``2 / (K² − K)`` of the paper; the popular Keras port
applies it twice (not offered). ``K = 1`` gives ``R = 0`` (no pairs) instead of 0/0. Invalid rows of
``valid`` are zeroed before any arithmetic and excluded from the mean.
"""
from __future__ import annotations

from typing import Optional

import chex
import jax
import jax.numpy as jnp

from imbalance_jax.losses.batch import check_embeddings_labels_valid, resolve_valid
from imbalance_jax.losses.distances import check_metric, pairwise_distances
from imbalance_jax.losses.masks import pair_mask
from imbalance_jax.losses.reductions import per_example_mean, safe_mean

Array = jax.Array

AFFINITY_DISTANCES: tuple[str, ...] = ("sq_l2", "l1", "l2")
AFFINITY_SIMILARITIES: tuple[str, ...] = ("gaussian", "inverse")


def _check_prototypes(prototypes: Array, feature_dim: Optional[int] = None) -> None:
    chex.assert_rank(prototypes, 3)
    chex.assert_type(prototypes, float)
    if feature_dim is not None and prototypes.shape[-1] != feature_dim:
        raise ValueError(
            f"prototypes must have shape [C, m, {feature_dim}] to match features, "
            f"got {prototypes.shape}."
        )


def affinity_similarity(
    features: Array,
    prototypes: Array,
    *,
    sigma: float = 10.0,
    distance: str = "sq_l2",
    similarity: str = "gaussian",
) -> Array:
    """Class similarities ``s[B, C]`` of features [B, D] to prototypes [C, m, D] (paper Eq. 3, multi-centre).

    ``gaussian``: ``max_t exp(−d(f_i, w_j^t) / σ)``; ``inverse``: ``max_t 1 / (1 + d(f_i, w_j^t))``.
    Values lie in (0, 1]; gradients are finite for features equal to prototypes.
    """
    check_metric(distance, AFFINITY_DISTANCES, name="distance")
    check_metric(similarity, AFFINITY_SIMILARITIES, name="similarity")
    if isinstance(sigma, (int, float)) and sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}.")
    chex.assert_rank(features, 2)
    chex.assert_type(features, float)
    _check_prototypes(prototypes, features.shape[-1])
    num_classes, num_centres, dim = prototypes.shape
    dtype = jnp.promote_types(features.dtype, prototypes.dtype)
    flat = prototypes.reshape(num_classes * num_centres, dim).astype(dtype)
    dist = pairwise_distances(features.astype(dtype), flat, metric=distance)
    dist = dist.reshape(features.shape[0], num_classes, num_centres)
    if similarity == "gaussian":
        sim = jnp.exp(-dist / sigma)
    else:
        sim = 1.0 / (1.0 + dist)
    return jnp.max(sim, axis=-1)


def diversity_regularizer(prototypes: Array) -> Array:
    """Diversity regulariser (paper Sec. 3.2): variance of squared distances over prototype pairs.

    Accepts [C, m, D] (all ``K = C·m`` prototypes are pooled, as for the multi-centre case in the
    paper) or [K, D]. Pairs ``k < l``; ``R = mean (d_kl − mean d)²``; ``K = 1`` ⇒ 0 with zero gradient.
    """
    chex.assert_rank(prototypes, {2, 3})
    chex.assert_type(prototypes, float)
    flat = prototypes.reshape(-1, prototypes.shape[-1])
    num = flat.shape[0]
    dist = pairwise_distances(flat, metric="sq_l2")
    pairs = pair_mask(jnp.zeros((num,), jnp.int32), None, same=None, upper_triangle=True)
    mu = safe_mean(dist, pairs)
    return safe_mean(jnp.square(dist - mu), pairs)


def affinity_margin_terms(
    similarities: Array,
    labels: Array,
    prototypes: Array,
    valid: Optional[Array] = None,
    *,
    margin: float = 0.75,
    diversity_weight: float = 1.0,
    axis_name: Optional[str] = None,
) -> dict[str, Array]:
    """Named terms ``{"max_margin", "diversity", "total"}`` from given similarities (Eq. 6 + regulariser).

    For a model whose affinity head already computed ``similarities`` [B, C] (its logits, see
    :func:`affinity_similarity`) from ``prototypes`` [C, m, D]: the loss is then taken on exactly what
    the head predicts with, without recomputing the distances. Same contract as
    :func:`affinity_loss_terms` otherwise.
    """
    chex.assert_rank(similarities, 2)
    chex.assert_type(similarities, float)
    check_embeddings_labels_valid(similarities, labels, valid)
    _check_prototypes(prototypes)
    if prototypes.shape[0] != similarities.shape[-1]:
        raise ValueError(f"prototypes must have shape [C={similarities.shape[-1]}, m, D] to match the "
                         f"similarities, got {prototypes.shape}.")
    valid = resolve_valid(valid, similarities.shape[0])
    sim = jnp.where(valid[:, None], similarities, jnp.zeros_like(similarities))
    labels = jnp.where(valid, labels, jnp.zeros_like(labels))
    true_sim = jnp.take_along_axis(sim, labels[:, None], axis=-1)
    hinge = jax.nn.relu(margin + sim - true_sim)
    other_class = ~jax.nn.one_hot(labels, sim.shape[-1], dtype=jnp.bool_)
    per_example = jnp.sum(jnp.where(other_class, hinge, jnp.zeros_like(hinge)), axis=-1)
    max_margin = per_example_mean(per_example, valid, axis_name)
    diversity = diversity_regularizer(prototypes).astype(max_margin.dtype)
    return {
        "max_margin": max_margin,
        "diversity": diversity,
        "total": max_margin + diversity_weight * diversity,
    }


def affinity_margin_loss(
    similarities: Array,
    labels: Array,
    prototypes: Array,
    valid: Optional[Array] = None,
    *,
    margin: float = 0.75,
    diversity_weight: float = 1.0,
    axis_name: Optional[str] = None,
) -> Array:
    """Affinity loss ``L_mm + γ·R`` (scalar) from the head's similarities; see :func:`affinity_margin_terms`."""
    return affinity_margin_terms(similarities, labels, prototypes, valid, margin=margin,
                                 diversity_weight=diversity_weight, axis_name=axis_name)["total"]


def affinity_loss_terms(
    features: Array,
    labels: Array,
    prototypes: Array,
    valid: Optional[Array] = None,
    *,
    sigma: float = 10.0,
    margin: float = 0.75,
    diversity_weight: float = 1.0,
    distance: str = "sq_l2",
    similarity: str = "gaussian",
    axis_name: Optional[str] = None,
) -> dict[str, Array]:
    """Named terms ``{"max_margin", "diversity", "total"}`` of the affinity loss (scalars).

    ``axis_name``: inside ``jax.shard_map`` with the batch sharded over that axis (prototypes
    replicated), ``max_margin`` is averaged over the global batch.
    """
    check_embeddings_labels_valid(features, labels, valid)
    _check_prototypes(prototypes, features.shape[-1])
    valid = resolve_valid(valid, features.shape[0])
    features = jnp.where(valid[:, None], features, jnp.zeros_like(features))
    sim = affinity_similarity(
        features, prototypes, sigma=sigma, distance=distance, similarity=similarity
    )
    return affinity_margin_terms(sim, labels, prototypes, valid, margin=margin,
                                 diversity_weight=diversity_weight, axis_name=axis_name)


def affinity_loss(
    features: Array,
    labels: Array,
    prototypes: Array,
    valid: Optional[Array] = None,
    *,
    sigma: float = 10.0,
    margin: float = 0.75,
    diversity_weight: float = 1.0,
    distance: str = "sq_l2",
    similarity: str = "gaussian",
    axis_name: Optional[str] = None,
) -> Array:
    """Affinity loss ``L_mm + γ·R`` (scalar); see :func:`affinity_loss_terms`."""
    return affinity_loss_terms(
        features,
        labels,
        prototypes,
        valid,
        sigma=sigma,
        margin=margin,
        diversity_weight=diversity_weight,
        distance=distance,
        similarity=similarity,
        axis_name=axis_name,
    )["total"]
