"""Small convolutional backbones: a tiny CNN for 8x8 digits and the 4-layer CNN of Hayat et al."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from imbalance_jax.models.common import (
    Dtype,
    batch_norm,
    conv_init,
    global_avg_pool,
    max_pool_2x2,
)


class SmallCNN(nn.Module):
    """conv3x3 w -> BN -> relu -> conv3x3 2w -> BN -> relu -> maxpool 2 -> conv3x3 2w -> BN -> relu -> GAP.

    Sized for scikit-learn's 8x8x1 digits so a run trains in seconds on two CPU cores.
    Output: [B, 2*width] (64 with the default width 32).
    """

    width: int = 32
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        norm = batch_norm(train, self.dtype)
        for i, (features, pool) in enumerate(
            [(self.width, False), (2 * self.width, True), (2 * self.width, False)]
        ):
            x = nn.Conv(features, (3, 3), use_bias=False, kernel_init=conv_init,
                        dtype=self.dtype, name=f"conv{i}")(x)
            x = nn.relu(norm(name=f"bn{i}")(x))
            if pool:
                x = max_pool_2x2(x)
        return global_avg_pool(x)


class CNN4(nn.Module):
    """The 4-hidden-layer CNN of the affinity-loss paper (Hayat et al., ICCV 2019, §4.2, MNIST).

    conv5x5 w -> relu -> maxpool 2, conv5x5 2w -> relu -> maxpool 2, conv5x5 4w -> relu -> maxpool 2
    (padding SAME), flatten -> Dense 128 -> relu. Output: the FC-128 activations [B, 128].
    The paper states the filters (32/64/128) and the FC width (128) only; the 2x2 max-pools after
    each convolution and the absence of BatchNorm are this project's reading of "a simple network".
    Pools use SAME padding, so 28x28 and 32x32 inputs both end at 4x4x128 before the FC layer.
    """

    width: int = 32
    fc_width: int = 128
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        del train  # no BatchNorm or dropout inside this backbone
        for i, mult in enumerate((1, 2, 4)):
            x = nn.Conv(mult * self.width, (5, 5), padding="SAME", kernel_init=conv_init,
                        dtype=self.dtype, name=f"conv{i}")(x)
            x = max_pool_2x2(nn.relu(x))
        x = x.reshape((x.shape[0], -1))
        return nn.relu(nn.Dense(self.fc_width, dtype=self.dtype, name="fc")(x))
