"""Flax head that owns the affinity-loss prototypes (Hayat et al., ICCV 2019; DESIGN.md §3.2)."""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from imbalance_jax.losses.affinity import affinity_similarity

Array = jax.Array


class AffinityHead(nn.Module):
    """Similarity head: features [B, D] -> class similarities [B, C] (used as logits; predict argmax).

    Owns the param ``"prototypes"`` of shape [C, m, D] (``num_classes``, ``num_centres``, D), drawn
    by ``prototype_init`` (he-normal, as the reference Keras layer) on the [C·m, D] matrix and
    reshaped. Pass these params to :func:`imbalance_jax.losses.affinity.affinity_loss`. The model is
    expected to put BatchNorm before this head (paper / reference implementation).
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
