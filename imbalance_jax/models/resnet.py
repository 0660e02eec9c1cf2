"""ImageNet ResNets (He et al., CVPR 2016, Table 1): resnet18 / 34 / 50 / 101 / 152.

7x7 stride-2 conv 64 -> BN -> relu -> 3x3 stride-2 max-pool, four stages (64/128/256/512 channels,
stride 2 from stage 2 on), basic blocks (18/34) or bottlenecks with expansion 4 (50/101/152),
projection shortcuts (1x1 conv + BN) where the shape changes, global average pooling.
Bottlenecks put the stride on the 3x3 conv ("ResNet v1.5", as torchvision and flax/examples/imagenet);
the parameter count is the same as the paper's. ``small_input=True`` replaces the stem by a 3x3
stride-1 conv without max-pool, the usual adaptation for inputs of 64 px or less.
"""
from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from imbalance_jax.models.common import Dtype, ModuleDef, batch_norm, conv_init, global_avg_pool


class _Projection(nn.Module):
    """1x1 strided conv + BN shortcut, used where a block changes the shape."""

    features: int
    stride: int
    norm: ModuleDef
    dtype: Dtype

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Conv(self.features, (1, 1), strides=self.stride, use_bias=False,
                    kernel_init=conv_init, dtype=self.dtype, name="conv")(x)
        return self.norm(name="bn")(x)


class BasicBlock(nn.Module):
    """conv3x3 -> BN -> relu -> conv3x3 -> BN, + shortcut, relu. Output channels: ``features``."""

    features: int
    stride: int
    norm: ModuleDef
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.Conv(self.features, (3, 3), strides=self.stride, padding=((1, 1), (1, 1)),
                    use_bias=False, kernel_init=conv_init, dtype=self.dtype, name="conv1")(x)
        y = nn.relu(self.norm(name="bn1")(y))
        y = nn.Conv(self.features, (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                    kernel_init=conv_init, dtype=self.dtype, name="conv2")(y)
        y = self.norm(name="bn2")(y)
        if x.shape[-1] != self.features or self.stride != 1:
            x = _Projection(self.features, self.stride, self.norm, self.dtype, name="shortcut")(x)
        return nn.relu(y + x)


class Bottleneck(nn.Module):
    """1x1 -> BN -> relu -> 3x3 (strided) -> BN -> relu -> 1x1 (x4) -> BN, + shortcut, relu."""

    features: int
    stride: int
    norm: ModuleDef
    dtype: Dtype = jnp.float32
    expansion = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out = self.features * self.expansion
        y = nn.Conv(self.features, (1, 1), use_bias=False, kernel_init=conv_init,
                    dtype=self.dtype, name="conv1")(x)
        y = nn.relu(self.norm(name="bn1")(y))
        y = nn.Conv(self.features, (3, 3), strides=self.stride, padding=((1, 1), (1, 1)),
                    use_bias=False, kernel_init=conv_init, dtype=self.dtype, name="conv2")(y)
        y = nn.relu(self.norm(name="bn2")(y))
        y = nn.Conv(out, (1, 1), use_bias=False, kernel_init=conv_init, dtype=self.dtype,
                    name="conv3")(y)
        y = self.norm(name="bn3")(y)
        if x.shape[-1] != out or self.stride != 1:
            x = _Projection(out, self.stride, self.norm, self.dtype, name="shortcut")(x)
        return nn.relu(y + x)


class ResNet(nn.Module):
    """ImageNet-style ResNet. Output: [B, 8 * width * expansion] (512 or 2048 at width 64)."""

    stage_sizes: Sequence[int]
    block_cls: type[nn.Module]
    width: int = 64
    small_input: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        norm = batch_norm(train, self.dtype)
        if self.small_input:
            x = nn.Conv(self.width, (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                        kernel_init=conv_init, dtype=self.dtype, name="conv_init")(x)
            x = nn.relu(norm(name="bn_init")(x))
        else:
            x = nn.Conv(self.width, (7, 7), strides=2, padding=((3, 3), (3, 3)), use_bias=False,
                        kernel_init=conv_init, dtype=self.dtype, name="conv_init")(x)
            x = nn.relu(norm(name="bn_init")(x))
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for stage, num_blocks in enumerate(self.stage_sizes):
            for block in range(num_blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                x = self.block_cls(self.width * 2**stage, stride, norm, self.dtype,
                                   name=f"stage{stage + 1}_block{block + 1}")(x)
        return global_avg_pool(x)
