"""Auxiliary clustering losses of Dorozynski & Rottensteiner 2022 ("Addressing class imbalance in multi-class
image classification by means of auxiliary feature space restrictions", ISPRS Archives), Sec. 3.2.

Both losses act on the clustering-head features f_aux = f_tfc / ||f_tfc||; the kernels normalise
the given embeddings themselves (a zero vector stays zero, see ``distances.l2_normalize``).

* Semantic similarity loss (Eq. 3): mean over all valid triplets (y_i = y_p, i != p, y_n != y_i)
  of max(M + Delta_ip - Delta_in, 0), Delta = Euclidean (not squared) distance, M = 1. This is
  ``triplet_loss(..., metric="l2", mining="all", margin=1)`` on the normalised embeddings.
* Colour similarity loss (Eq. 4): mean over ordered pairs i != o of valid rows of
  |Delta_io - (1 - rho_io)|, rho = Pearson correlation of the two images' colour histograms
  (``imbalance_jax.data.colour.colour_histogram``). The paper's outer max(0, |.|) is the identity
  and is dropped. Ordered and unordered pairs give the same mean (the summand is symmetric).

Deviation: the correlation of a constant histogram is undefined (zero variance); we define
rho = 0 for every pair involving one, i.e. a target distance of 1.
"""

from __future__ import annotations

from typing import Optional

import chex
import jax
import jax.numpy as jnp

from imbalance_jax.losses.batch import (
    check_embeddings_labels_valid,
    gather_global_batch,
    mask_rows,
    resolve_valid,
)
from imbalance_jax.losses.distances import inner_products, l2_normalize, pairwise_distances, safe_norm
from imbalance_jax.losses.masks import pair_mask
from imbalance_jax.losses.reductions import safe_mean
from imbalance_jax.losses.triplet import triplet_loss_terms

Array = jax.Array


def semantic_triplet_terms(
    embeddings: Array,
    labels: Array,
    valid: Optional[Array] = None,
    *,
    margin: float = 1.0,
    axis_name: Optional[str] = None,
) -> dict[str, Array]:
    """``semantic_triplet_loss`` plus triplet counts, as ``triplet.triplet_loss_terms``."""
    check_embeddings_labels_valid(embeddings, labels, valid)
    feats = l2_normalize(mask_rows(embeddings, resolve_valid(valid, embeddings.shape[0])))
    return triplet_loss_terms(
        feats, labels, valid, margin=margin, metric="l2", mining="all", axis_name=axis_name
    )


def semantic_triplet_loss(
    embeddings: Array,
    labels: Array,
    valid: Optional[Array] = None,
    *,
    margin: float = 1.0,
    axis_name: Optional[str] = None,
) -> Array:
    """Silk paper Eq. 3: mean hinge over all valid triplets of L2-normalised embeddings.

    Args:
      embeddings: float[B, D] (f_tfc; normalised here).
      labels: int[B].
      valid: bool[B] or None.
      margin: M = delta_ip - delta_in = 1 in the paper.
      axis_name: inside ``shard_map``, use the batch all-gathered over this axis.
    """
    return semantic_triplet_terms(
        embeddings, labels, valid, margin=margin, axis_name=axis_name
    )["loss"]


def histogram_correlation(colour_hist: Array) -> Array:
    """[B, B] Pearson correlation of the rows of ``colour_hist`` [B, K], clipped to [-1, 1].

    A constant row (zero variance) has correlation 0 with every row, itself included.
    """
    centred = colour_hist - jnp.mean(colour_hist, axis=1, keepdims=True)
    norm = safe_norm(centred, axis=1, keepdims=True)
    # Exactly constant rows can leave rounding noise after centring: detect them on the input.
    spread = jnp.max(colour_hist, axis=1, keepdims=True) - jnp.min(colour_hist, axis=1, keepdims=True)
    varies = (spread > 0) & (norm > 0)
    unit = jnp.where(varies, centred / jnp.where(varies, norm, 1.0), 0.0)
    return jnp.clip(inner_products(unit, unit), -1.0, 1.0)


def colour_similarity_terms(
    embeddings: Array,
    colour_hist: Array,
    valid: Optional[Array] = None,
    *,
    axis_name: Optional[str] = None,
) -> dict[str, Array]:
    """Colour similarity loss and logging terms.

    Returns {"loss", "mean_distance" (mean Delta_io), "mean_target" (mean 1 - rho_io),
    "num_pairs"} over the selected pairs.
    """
    chex.assert_rank(colour_hist, 2)
    chex.assert_type(colour_hist, float)
    chex.assert_equal_shape_prefix([embeddings, colour_hist], 1)
    dummy_labels = jnp.zeros((embeddings.shape[0],), jnp.int32)
    check_embeddings_labels_valid(embeddings, dummy_labels, valid)
    valid = resolve_valid(valid, embeddings.shape[0])
    feats, colour_hist, valid = gather_global_batch(axis_name, embeddings, colour_hist, valid)
    feats = l2_normalize(mask_rows(feats, valid))
    dist = pairwise_distances(feats, metric="l2")
    target = 1.0 - histogram_correlation(mask_rows(colour_hist, valid))
    pairs = pair_mask(jnp.zeros(valid.shape, jnp.int32), valid, same=None, include_diagonal=False)
    return {
        "loss": safe_mean(jnp.abs(dist - target), pairs),
        "mean_distance": safe_mean(dist, pairs),
        "mean_target": safe_mean(target, pairs),
        "num_pairs": jnp.sum(pairs.astype(dist.dtype)),
    }


def colour_similarity_loss(
    embeddings: Array,
    colour_hist: Array,
    valid: Optional[Array] = None,
    *,
    axis_name: Optional[str] = None,
) -> Array:
    """Silk paper Eq. 4: mean over pairs i != o of |Delta_io - (1 - rho_io)|; float scalar.

    Args:
      embeddings: float[B, D] (f_tfc; normalised here).
      colour_hist: float[B, K] colour histograms (K = 25 for the 5 x 5 hue/saturation grid).
      valid: bool[B] or None.
      axis_name: inside ``shard_map``, use the batch all-gathered over this axis.
    """
    return colour_similarity_terms(embeddings, colour_hist, valid, axis_name=axis_name)["loss"]


__all__ = [
    "colour_similarity_loss",
    "colour_similarity_terms",
    "histogram_correlation",
    "semantic_triplet_loss",
    "semantic_triplet_terms",
]
