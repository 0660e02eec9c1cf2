"""VGG-16 with BatchNorm (Simonyan & Zisserman 2015, configuration D; BN variant as torchvision's vgg16_bn).

Thirteen 3x3 convs (64, 64, M, 128, 128, M, 256 x3, M, 512 x3, M, 512 x3, M), each followed by BN and
relu. Deviation from the paper, deliberate: the three fully connected layers (4096, 4096, 1000; about
124M of the 138M parameters) are replaced by global average pooling, as CIFAR-sized VGGs do; the
classifier and projection head of :class:`ImageClassifier` sit on the pooled 512-d features.
Max-pools use SAME padding, so inputs smaller than 32 px keep a 1x1 map instead of vanishing.
"""
from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from imbalance_jax.models.common import Dtype, batch_norm, conv_init, global_avg_pool, max_pool_2x2

# Channel multipliers of configuration D relative to the first stage's 64; 0 marks a max-pool.
VGG16_PLAN: tuple[int, ...] = (1, 1, 0, 2, 2, 0, 4, 4, 4, 0, 8, 8, 8, 0, 8, 8, 8, 0)


class VGG(nn.Module):
    """VGG with BN and global average pooling. Output: [B, 8 * width] (512 at width 64)."""

    plan: Sequence[int] = VGG16_PLAN
    width: int = 64
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        norm = batch_norm(train, self.dtype)
        conv_index = 0
        for mult in self.plan:
            if mult == 0:
                x = max_pool_2x2(x)
                continue
            x = nn.Conv(mult * self.width, (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                        kernel_init=conv_init, dtype=self.dtype, name=f"conv{conv_index}")(x)
            x = nn.relu(norm(name=f"bn{conv_index}")(x))
            conv_index += 1
        return global_avg_pool(x)
