"""VGG-16 with BatchNorm (Simonyan & Zisserman 2015, configuration D; BN variant as torchvision's vgg16_bn).

Thirteen 3x3 convs (64, 64, M, 128, 128, M, 256 x3, M, 512 x3, M, 512 x3, M), each followed by BN and
relu. By default (``fc_layers=False``), a deliberate deviation from the paper: the three fully connected
layers (4096, 4096, 1000; about 124M of the 138M parameters) are replaced by global average pooling, as
CIFAR-sized VGGs do; the classifier and projection head of :class:`ImageClassifier` sit on the pooled
512-d features. ``fc_layers=True`` keeps torchvision's vgg16_bn head instead: a 7x7 adaptive average pool,
flatten, then FC 4096 -> relu -> dropout 0.5 -> FC 4096 -> relu (torchvision/models/vgg.py); the output is
the 4096-d input of torchvision's last Linear, whose dropout is the classifier wrapper's ``dropout``. This
is what torchvision's ImageNet weights load into in full (``imbalance_jax.convert_weights``).
Max-pools use SAME padding, so inputs smaller than 32 px keep a 1x1 map instead of vanishing (on even
sizes, e.g. 32 / 64 / 224 px, this equals torchvision's floor-mode 2x2 max-pool).
The convolutions have no bias: a bias before BatchNorm is cancelled by it (torchvision's conv biases are
folded into the BatchNorm running mean when its weights are converted).
"""
from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from imbalance_jax.models.common import Dtype, batch_norm, conv_init, global_avg_pool, max_pool_2x2

# Channel multipliers of configuration D relative to the first stage's 64; 0 marks a max-pool.
VGG16_PLAN: tuple[int, ...] = (1, 1, 0, 2, 2, 0, 4, 4, 4, 0, 8, 8, 8, 0, 8, 8, 8, 0)
FC_WIDTH = 4096  # configuration D's fully connected layers
FC_POOL = 7  # torchvision's AdaptiveAvgPool2d((7, 7)) before them
FC_DROPOUT = 0.5


def _adaptive_pool_matrix(size: int, out: int) -> np.ndarray:
    """[out, size] averaging weights of PyTorch's adaptive pooling: bin i covers
    [floor(i * size / out), ceil((i + 1) * size / out)), so bins overlap when out > size."""
    weights = np.zeros((out, size), np.float32)
    for i in range(out):
        start, end = (i * size) // out, -((-(i + 1) * size) // out)
        weights[i, start:end] = 1.0 / (end - start)
    return weights


def adaptive_avg_pool(x: jax.Array, out: int) -> jax.Array:
    """[B, H, W, C] -> [B, out, out, C], as torch.nn.AdaptiveAvgPool2d(out) (identity when H = W = out)."""
    rows = jnp.asarray(_adaptive_pool_matrix(x.shape[1], out), x.dtype)
    cols = jnp.asarray(_adaptive_pool_matrix(x.shape[2], out), x.dtype)
    return jnp.einsum("ih,jw,bhwc->bijc", rows, cols, x)


class VGG(nn.Module):
    """VGG with BN. Output: [B, 8 * width] (512 at width 64), or [B, 4096] with ``fc_layers``."""

    plan: Sequence[int] = VGG16_PLAN
    width: int = 64
    fc_layers: bool = False
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
        if not self.fc_layers:
            return global_avg_pool(x)
        # Flattened in NHWC order; the converter permutes torchvision's NCHW-ordered first FC to match.
        x = adaptive_avg_pool(x, FC_POOL).reshape((x.shape[0], -1))
        # torchvision's VGG initialisation of its Linear layers: normal(0, 0.01), zero bias.
        dense = dict(dtype=self.dtype, kernel_init=nn.initializers.normal(stddev=0.01))
        x = nn.relu(nn.Dense(FC_WIDTH, name="fc0", **dense)(x))
        x = nn.Dropout(FC_DROPOUT, deterministic=not train, name="fc0_dropout")(x)
        return nn.relu(nn.Dense(FC_WIDTH, name="fc1", **dense)(x))
