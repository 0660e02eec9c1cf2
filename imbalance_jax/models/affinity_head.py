"""Flax head that owns the affinity-loss prototypes (Hayat et al., ICCV 2019, §3.2; docs/design.md §5.2)."""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from imbalance_jax.losses.affinity import affinity_similarity

Array = jax.Array


class AffinityHead(nn.Module):
    """Similarity head: features [B, D] -> class similarities [B, C] (used as logits; predict argmax).

    Owns the param ``"prototypes"`` of shape [C, m, D] (``num_classes``, ``num_centres``, D), drawn
    by ``prototype_init`` (he-normal, as the reference Keras layer) on the [C·m, D] matrix and
    reshaped. Pass these params to :func:`imbalance_jax.losses.affinity.affinity_loss`.

    he-normal prototypes have norm ~sqrt(2) whatever the features' scale; with σ = 10 a class whose
    features lie at squared distance 100+ from its prototype has similarity e^-10 and no gradient. The
    trainer therefore re-initialises them from data by default (:func:`class_mean_prototypes`).
    """

    num_classes: int
    num_centres: int = 1
    sigma: float = 10.0
    distance: str = "sq_l2"
    similarity: str = "gaussian"
    prototype_init: Callable[..., Array] = nn.initializers.he_normal()
    param_dtype: jnp.dtype = jnp.float32

    def _init_prototypes(self, key: Array, shape: tuple[int, int, int], dtype: jnp.dtype) -> Array:
        num_classes, num_centres, dim = shape
        return self.prototype_init(key, (num_classes * num_centres, dim), dtype).reshape(shape)

    @nn.compact
    def __call__(self, features: Array) -> Array:
        if self.num_classes < 1 or self.num_centres < 1:
            raise ValueError(
                f"num_classes and num_centres must be >= 1, got {self.num_classes}, {self.num_centres}."
            )
        prototypes = self.param(
            "prototypes",
            self._init_prototypes,
            (self.num_classes, self.num_centres, features.shape[-1]),
            self.param_dtype,
        )
        return affinity_similarity(
            features,
            prototypes,
            sigma=self.sigma,
            distance=self.distance,
            similarity=self.similarity,
        )


# How the trainer initialises the prototypes (config.model.affinity.prototype_init):
#   "class_means": centre t of class c = the mean of the initial network's features of a disjoint random
#                  group of IMAGES_PER_CENTRE training images of class c (the features' own scale);
#   "he_normal":   the reference Keras layer's initialiser, independent of the features.
PROTOTYPE_INITS: tuple[str, ...] = ("class_means", "he_normal")
# Where ImageClassifier keeps the prototypes (its affinity head is the module "classifier").
PROTOTYPES_PATH: tuple[str, ...] = ("classifier", "prototypes")
IMAGES_PER_CENTRE = 8


def prototype_groups(labels: np.ndarray, num_classes: int, num_centres: int, rng: np.random.Generator,
                     images_per_centre: int = IMAGES_PER_CENTRE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which training images initialise which centre, for :func:`class_mean_prototypes`.

    Returns ``(sample, groups, mask)``: ``sample`` [S] sorted indices into ``labels`` (the images whose
    features are needed), ``groups`` [C, m, k] positions into ``sample`` and ``mask`` [C, m, k] which of
    them count. Each class's images are shuffled and dealt to its m centres in turn (disjoint groups of
    at most k); a class with fewer than m images reuses them cyclically; a class without images gets an
    all-False mask (its prototypes keep their he-normal values).
    """
    k = images_per_centre
    picked = np.full((num_classes, num_centres, k), -1, np.int64)
    for c in range(num_classes):
        idx = rng.permutation(np.flatnonzero(np.asarray(labels) == c))[: num_centres * k]
        if len(idx) == 0:
            continue
        n_slots = max(len(idx), num_centres)
        for slot in range(n_slots):
            picked[c, slot % num_centres, slot // num_centres] = idx[slot % len(idx)]
    mask = picked >= 0
    sample = np.unique(picked[mask])
    groups = np.where(mask, np.searchsorted(sample, np.where(mask, picked, sample[0] if len(sample) else 0)), 0)
    return sample, groups.astype(np.int32), mask


def class_mean_prototypes(features: Array, groups: Array, mask: Array, initial: Array) -> Array:
    """Prototypes [C, m, D]: the mean of ``features[groups[c, t]]`` over ``mask[c, t]``; ``initial[c, t]``
    where the mask is empty. ``features`` [S, D] are the classifier inputs of the sampled images."""
    weights = mask[..., None].astype(features.dtype)
    sums = jnp.sum(features[groups] * weights, axis=2)
    counts = jnp.sum(weights, axis=2)
    return jnp.where(counts > 0, sums / jnp.maximum(counts, 1.0), initial).astype(initial.dtype)
