"""CIFAR ResNets (He et al., CVPR 2016, §4.2): resnet20 / resnet32 / resnet56.

3x3 conv 16 -> BN -> relu, then 3 stages of n basic blocks with 16/32/64 channels (the first block
of stages 2 and 3 has stride 2), global average pooling. Depth = 6n + 2. Shortcuts are the paper's
option A: identity, or, where the shape changes, a stride-2 subsample padded with zero channels
(half the extra channels on each side, as the CIFAR-LT reference code of LDAM/CDB does), so no
shortcut has parameters.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from imbalance_jax.models.common import Dtype, ModuleDef, batch_norm, conv_init, global_avg_pool


def option_a_shortcut(x: jax.Array, out_channels: int, stride: int) -> jax.Array:
    """Parameter-free shortcut: subsample by ``stride`` and zero-pad channels to ``out_channels``."""
    if stride > 1:
        x = x[:, ::stride, ::stride, :]
    extra = out_channels - x.shape[-1]
    if extra > 0:
        x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
    return x


class CifarBasicBlock(nn.Module):
    """conv3x3 -> BN -> relu -> conv3x3 -> BN, + option-A shortcut, relu."""

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
        return nn.relu(y + option_a_shortcut(x, self.features, self.stride))


class CifarResNet(nn.Module):
    """CIFAR ResNet with ``blocks_per_stage`` = n (3 -> resnet20, 5 -> resnet32, 9 -> resnet56).

    ``width`` is the first stage's channel count (16 in the paper); stages use width, 2w, 4w.
    Output: [B, 4 * width].
    """

    blocks_per_stage: int
    width: int = 16
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        norm = batch_norm(train, self.dtype)
        x = nn.Conv(self.width, (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                    kernel_init=conv_init, dtype=self.dtype, name="conv_init")(x)
        x = nn.relu(norm(name="bn_init")(x))
        for stage in range(3):
            for block in range(self.blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                x = CifarBasicBlock(self.width * 2**stage, stride, norm, self.dtype,
                                    name=f"stage{stage + 1}_block{block + 1}")(x)
        return global_avg_pool(x)
