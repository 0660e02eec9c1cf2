"""Reductions of the loss kernels: masked means that are 0 with zero gradient when nothing is selected.

The "reducer" role of the pytorch-metric-learning split (Musgrave, Belongie and Lim, 2020, "PyTorch
Metric Learning", arXiv:2008.09164): a kernel computes per-pair, per-triplet or per-example values
and a selection mask, and reduces them to a scalar with a mean over the selected entries
(docs/design.md §5.0). Masked-out entries are removed with ``where``, never multiplied by 0, so
inf/NaN there cannot leak into the value or the gradient, and an empty selection gives 0 instead
of 0/0. :func:`per_example_mean` takes the mean over the global batch inside ``jax.shard_map``
(``psum`` of the masked sum and count over ``axis_name``, docs/design.md §4).
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

Array = jax.Array


def safe_mean(values: Array, mask: Array) -> Array:
    """``sum(values[mask]) / max(count, 1)``: 0 with zero gradient when ``mask`` is empty.

    Masked-out entries are removed with ``where`` (not multiplied by 0), so inf/NaN there cannot
    leak into the result.
    """
    mask = jnp.broadcast_to(mask, values.shape)
    total = jnp.sum(jnp.where(mask, values, jnp.zeros_like(values)))
    count = jnp.sum(mask.astype(values.dtype))
    return total / jnp.maximum(count, 1.0)


def per_example_mean(values: Array, mask: Array, axis_name: Optional[str] = None) -> Array:
    """Mean of ``values[mask]`` over the (global, when ``axis_name`` is set) batch; 0 if empty.

    With ``axis_name`` the masked sum and the count are ``psum``-ed over that axis, which gives
    the same value on every device as :func:`safe_mean` on the concatenated batch.
    """
    if axis_name is None:
        return safe_mean(values, mask)
    mask = jnp.broadcast_to(mask, values.shape)
    total = jnp.sum(jnp.where(mask, values, jnp.zeros_like(values)))
    count = jnp.sum(mask.astype(values.dtype))
    total, count = jax.lax.psum((total, count), axis_name)
    return total / jnp.maximum(count, 1.0)


__all__ = [
    "safe_mean",
    "per_example_mean",
]
