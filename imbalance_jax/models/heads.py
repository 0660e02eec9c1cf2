"""Heads on top of a backbone: the Dense projection head and the cosine classifier."""
from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from imbalance_jax.models.common import Dtype, get_activation


class ProjectionHead(nn.Module):
    """A stack of Dense layers, e.g. widths (32, 2) narrowing to a 2-D layer (ASLoss paper, Fig. 2).

    Returns the list of every layer's output. All layers but the last are followed by
    ``activation``; the last is linear, so a 2-D last layer can be plotted as it is.
    """

    widths: Sequence[int]
    activation: str = "relu"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> list[jax.Array]:
        act = get_activation(self.activation)
        outputs = []
        for i, width in enumerate(self.widths):
            x = nn.Dense(width, dtype=self.dtype, name=f"dense{i}")(x)
            if i < len(self.widths) - 1:
                x = act(x)
            outputs.append(x)
        return outputs


def _unit_rows(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """x / ||x|| along the last axis; a zero row stays zero with a finite gradient."""
    sq = jnp.sum(jnp.square(x), axis=-1, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(sq, eps))


class CosineClassifier(nn.Module):
    """logits_c = s * cos(x, w_c) with a learnable scale s (initial value ``scale``).

    The normalised ("cosine") classifier used by causal-inference long-tail methods such as TDE
    (Tang et al., NeurIPS 2020). Deviation: TDE's denominator (||w|| + gamma) ||x|| and its
    multi-head split are not reproduced; this is the plain cosine form with a learnable scale.
    """

    num_classes: int
    scale: float = 16.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (x.shape[-1], self.num_classes), jnp.float32)
        s = self.param("scale", nn.initializers.constant(self.scale), (), jnp.float32)
        x = _unit_rows(x.astype(jnp.float32))
        w = _unit_rows(kernel.T).T
        return s * (x @ w)
