"""Building blocks shared by every backbone: dtypes, activations, initialisers, norm and pooling.

Every backbone in this package is a Linen module ``backbone(images[B,H,W,C], *, train) -> [B, F]``
(pooled features in the compute dtype); :class:`imbalance_jax.models.classifier.ImageClassifier`
adds dropout, the projection head and the classifier on top.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
ModuleDef = Any

DTYPES: dict[str, Dtype] = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "gelu": nn.gelu,
    "tanh": jnp.tanh,
    "none": lambda x: x,
}

# He-normal on fan-out, the torchvision ResNet / EfficientNet convention for convolutions.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def parse_dtype(name: str, field: str = "config.model.dtype") -> Dtype:
    """Maps a dtype name to the jnp dtype; ValueError naming ``field`` for anything else."""
    if not isinstance(name, str) or name not in DTYPES:
        raise ValueError(f"{field} must be one of {sorted(DTYPES)}, got {name!r}.")
    return DTYPES[name]


def get_activation(name: str, field: str = "config.model.head_activation") -> Callable:
    """Returns the activation function called ``name``; ValueError naming ``field`` otherwise."""
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"{field} must be one of {sorted(ACTIVATIONS)}, got {name!r}.")
    return ACTIVATIONS[name]


def batch_norm(train: bool, dtype: Dtype, **kwargs: Any) -> ModuleDef:
    """The project's BatchNorm: momentum 0.9, epsilon 1e-5, batch statistics only when training.

    No ``axis_name``: training is one ``jax.jit`` over a global batch sharded on a mesh, so the
    statistics are already global.
    """
    return functools.partial(
        nn.BatchNorm,
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        dtype=dtype,
        **kwargs,
    )


def global_avg_pool(x: jax.Array) -> jax.Array:
    """[B, H, W, C] -> [B, C]."""
    return jnp.mean(x, axis=(1, 2))


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 stride-2 max pool with SAME padding (odd sizes padded with -inf), so tiny inputs never shrink to zero.

    Written as reshape + max rather than ``nn.max_pool``: same values, but XLA:CPU runs the backward
    pass as fused elementwise code instead of ``select_and_scatter``, which made the 4-layer CNN's step
    1.5x faster (experiments/benchmarks/README.md §2). A window with a tied maximum splits its
    gradient between the tied entries instead of giving it all to the first one.
    """
    b, h, w, c = x.shape
    if h % 2 or w % 2:
        x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=-jnp.inf)
    return x.reshape(b, (h + h % 2) // 2, 2, (w + w % 2) // 2, 2, c).max(axis=(2, 4))


def check_images(images: jax.Array) -> None:
    """Raises ValueError unless ``images`` is a floating NHWC batch."""
    if images.ndim != 4:
        raise ValueError(f"images must be NHWC [B, H, W, C], got shape {images.shape}.")
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"images must be a floating (normalised) array, got dtype {images.dtype}.")
