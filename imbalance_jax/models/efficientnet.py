"""EfficientNet-B0..B3 (Tan & Le, ICML 2019, Table 1 and the compound-scaling coefficients).

Stem 3x3 stride-2 conv 32 -> BN -> swish, seven stages of MBConv blocks with squeeze-excitation
(ratio 0.25 of the block's input channels), a 1x1 conv to 1280 -> BN -> swish, global average pooling.
Widths are scaled by the width coefficient and rounded to multiples of 8; repeats by the depth
coefficient, rounded up. The native resolutions (224/240/260/300) are not enforced: any input works.
Layer for layer this is torchvision's ``efficientnet_b0..b3`` (torchvision/models/efficientnet.py), so its
ImageNet weights convert exactly (``imbalance_jax.convert_weights``): convolutions pad symmetrically by
(k - 1) // 2 as torchvision does (the paper's TF code pads "SAME", which on an even-sized input gives a
stride-2 convolution one pixel less padding on the top/left), BatchNorm is torchvision's momentum 0.1 (flax 0.9) / epsilon 1e-5 (the paper's TF
code: 0.99 / 1e-3). Deviation: no stochastic depth (training-time only; torchvision drops blocks with a
probability rising linearly to 0.2); the classifier wrapper's ``dropout`` plays the role of the dropout
before the classifier (torchvision: 0.2 for B0/B1, 0.3 for B2/B3).
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from imbalance_jax.models.common import Dtype, ModuleDef, batch_norm, conv_init, global_avg_pool

# (expand_ratio, kernel, stride, out_channels, repeats) of EfficientNet-B0, stages 1..7.
B0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)

# name -> (width coefficient, depth coefficient)
EFFICIENTNET_COEFFICIENTS: dict[str, tuple[float, float]] = {
    "b0": (1.0, 1.0),
    "b1": (1.0, 1.1),
    "b2": (1.1, 1.2),
    "b3": (1.2, 1.4),
}


def round_filters(filters: int, width_coefficient: float, divisor: int = 8) -> int:
    """Scales a channel count and rounds it to a multiple of ``divisor`` (never down by > 10%)."""
    scaled = filters * width_coefficient
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def _symmetric_padding(kernel: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """torchvision's symmetric (k - 1) // 2 padding (equal to "SAME" at stride 1 only)."""
    pad = (kernel - 1) // 2
    return ((pad, pad), (pad, pad))


def round_repeats(repeats: int, depth_coefficient: float) -> int:
    """Scales a stage's block count, rounding up."""
    return int(math.ceil(depth_coefficient * repeats))


class SqueezeExcite(nn.Module):
    """Global pool -> Dense(reduced) -> swish -> Dense(channels) -> sigmoid gate."""

    reduced: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        s = nn.swish(nn.Dense(self.reduced, dtype=self.dtype, name="reduce")(s))
        s = nn.sigmoid(nn.Dense(x.shape[-1], dtype=self.dtype, name="expand")(s))
        return x * s


class MBConv(nn.Module):
    """Inverted residual: [1x1 expand -> BN -> swish] -> depthwise kxk -> BN -> swish -> SE -> 1x1 -> BN."""

    out_channels: int
    expand_ratio: int
    kernel: int
    stride: int
    norm: ModuleDef
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_channels = x.shape[-1]
        hidden = in_channels * self.expand_ratio
        y = x
        if self.expand_ratio != 1:
            y = nn.Conv(hidden, (1, 1), use_bias=False, kernel_init=conv_init, dtype=self.dtype,
                        name="expand_conv")(y)
            y = nn.swish(self.norm(name="expand_bn")(y))
        y = nn.Conv(hidden, (self.kernel, self.kernel), strides=self.stride,
                    padding=_symmetric_padding(self.kernel),
                    feature_group_count=hidden, use_bias=False, kernel_init=conv_init,
                    dtype=self.dtype, name="depthwise_conv")(y)
        y = nn.swish(self.norm(name="depthwise_bn")(y))
        y = SqueezeExcite(max(1, in_channels // 4), self.dtype, name="se")(y)
        y = nn.Conv(self.out_channels, (1, 1), use_bias=False, kernel_init=conv_init,
                    dtype=self.dtype, name="project_conv")(y)
        y = self.norm(name="project_bn")(y)
        if self.stride == 1 and in_channels == self.out_channels:
            y = y + x
        return y


class EfficientNet(nn.Module):
    """EfficientNet backbone. Output: [B, round_filters(1280, width_coefficient)]."""

    width_coefficient: float = 1.0
    depth_coefficient: float = 1.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        norm = batch_norm(train, self.dtype)
        x = nn.Conv(round_filters(32, self.width_coefficient), (3, 3), strides=2,
                    padding=_symmetric_padding(3),
                    use_bias=False, kernel_init=conv_init, dtype=self.dtype, name="stem_conv")(x)
        x = nn.swish(norm(name="stem_bn")(x))
        for stage, (expand, kernel, stride, out, repeats) in enumerate(B0_STAGES):
            out = round_filters(out, self.width_coefficient)
            for block in range(round_repeats(repeats, self.depth_coefficient)):
                x = MBConv(out, expand, kernel, stride if block == 0 else 1, norm, self.dtype,
                           name=f"stage{stage + 1}_block{block + 1}")(x)
        x = nn.Conv(round_filters(1280, self.width_coefficient), (1, 1), use_bias=False,
                    kernel_init=conv_init, dtype=self.dtype, name="head_conv")(x)
        x = nn.swish(norm(name="head_bn")(x))
        return global_avg_pool(x)
