"""Heads on top of a backbone: the Dense projection head, the cosine classifier and the TDE classifier."""
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

    A plain normalised ("cosine") classifier with a learnable scale. For TDE's multi-head
    (||w|| + gamma) ||x|| form and its counterfactual inference see :class:`TDEClassifier`.
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


class NormedLinear(nn.Module):
    """logits_c = cos(x, w_c), in [-1, 1], no scale: the classifier of the LDAM-DRW reference code (Cao et al.,
    NeurIPS 2019; kaidic/LDAM-DRW, ``models/resnet_cifar.py``, ``NormedLinear``), whose LDAM loss multiplies the
    logits by s = 30. Kernel drawn from U(-1, 1) as there (its column renormalisation does not change the
    direction, which is all the forward pass uses)."""

    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", _symmetric_uniform, (x.shape[-1], self.num_classes), jnp.float32)
        return _unit_rows(x.astype(jnp.float32)) @ _unit_rows(kernel.T).T


def _symmetric_uniform(key: jax.Array, shape: tuple[int, ...], dtype: Dtype = jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -1.0, 1.0)


def _uniform_fan_in(key: jax.Array, shape: tuple[int, ...], dtype: Dtype = jnp.float32) -> jax.Array:
    """U(-1/sqrt(D), 1/sqrt(D)) for a [D, C] kernel, the initialisation of TDE's reference code."""
    limit = 1.0 / jnp.sqrt(jnp.asarray(shape[0], jnp.float32))
    return jax.random.uniform(key, shape, dtype, -limit, limit)


class TDEClassifier(nn.Module):
    """Causal-norm multi-head classifier with Total-Direct-Effect inference (TDE).

    Tang, Huang, Zhang, "Long-Tailed Classification by Keeping the Good and Removing the Bad
    Momentum Causal Effect", NeurIPS 2020 (arXiv:2009.12991), §4; reference code
    ``KaihuaTang/Long-Tailed-Recognition.pytorch``, ``classification/models/CausalNormClassifier.py``
    and ``run_networks.py`` (moving average). The equation numbers below refer to arXiv:2009.12991
    and were not checked against its text; the formulas were checked line by line against the
    reference code.

    The classifier input x [B, D] and the kernel W [D, C] are split along D into K = ``num_heads``
    equal groups x^k, w_i^k (D must be divisible by K).

    Training, de-confounded training with the multi-head normalised classifier (paper §4.1, the
    multi-head form of the backdoor adjustment, Eq. 4)::

        logit_i(x) = tau/K * sum_k (w_i^k . x^k) / ((||w_i^k|| + gamma) ||x^k||)

    and the moving average of the input feature, xbar <- mu * xbar + (1 - mu) * mean_batch(x), kept
    in the ``"batch_stats"`` collection as ``feature_mean`` [D] (updated only when ``train`` and not
    while initialising; no gradient flows into it).

    Inference, counterfactual TDE (paper §4.2, Eq. 6), with d^k = xbar^k / ||xbar^k||::

        TDE_i(x) = tau/K * sum_k [ (w_i^k . x^k) / ((||w_i^k|| + gamma) ||x^k||)
                                   - alpha * cos(x^k, d^k) * (w_i^k . d^k) / (||w_i^k|| + gamma) ]

    i.e. per head logits(x) - alpha * logits(cos(x, d) ||x|| d): the counterfactual input is the
    projection of x on the moving-average direction, scored with the factual ||x^k||.

    Defaults follow the reference code: tau = 16, gamma = 1/32, K = 2, mu = 0.9; alpha = 1.5 is the
    value of its CIFAR-100-LT config (its CIFAR-10-LT config uses 1.0, the constructor default 3.0;
    alpha only enters inference, so it can be changed without retraining).

    Deviations from the reference code, all documented:
      * the moving average is an exponential moving average with weight (1 - mu) on the batch
        mean; the reference accumulates ``xbar <- mu * xbar + mean_batch(x)``. From the zero start
        both are proportional, so d^k and the TDE logits are identical;
      * mu is fixed; the reference rescales it with the learning rate outside CIFAR
        (mu = 1 - 0.1 * min(50 lr, 1));
      * zero vectors are safe: x^k = 0 or xbar^k = 0 (e.g. before any training step) give a zero
        unit vector, so an untrained moving average leaves the logits unchanged, never NaN.
    """

    num_classes: int
    num_heads: int = 2
    tau: float = 16.0
    gamma: float = 1.0 / 32.0
    alpha: float = 1.5
    momentum: float = 0.9

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = x.astype(jnp.float32)
        batch, dim = x.shape
        heads = self.num_heads
        if heads < 1 or dim % heads:
            raise ValueError(f"config.model.tde.num_heads={heads} must be a positive divisor of "
                             f"the classifier input width {dim}.")
        kernel = self.param("kernel", _uniform_fan_in, (dim, self.num_classes), jnp.float32)
        feature_mean = self.variable("batch_stats", "feature_mean",
                                     lambda: jnp.zeros((dim,), jnp.float32))
        if train and not self.is_initializing():
            batch_mean = jax.lax.stop_gradient(jnp.mean(x, axis=0))
            feature_mean.value = self.momentum * feature_mean.value + (1.0 - self.momentum) * batch_mean

        x_unit = _unit_rows(x.reshape(batch, heads, dim // heads))  # x^k / ||x^k||   [B, K, D/K]
        w = kernel.reshape(heads, dim // heads, self.num_classes)    # w_i^k            [K, D/K, C]
        w_norm = jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(w), axis=1, keepdims=True), 1e-24))
        w = w / (w_norm + self.gamma)                                # w / (||w|| + gamma)
        if not train:
            d = _unit_rows(feature_mean.value.reshape(heads, dim // heads))  # d^k  [K, D/K]
            cos = jnp.einsum("bkh,kh->bk", x_unit, d)                        # cos(x^k, d^k)
            x_unit = x_unit - self.alpha * cos[..., None] * d
        return (self.tau / heads) * jnp.einsum("bkh,khc->bc", x_unit, w)
