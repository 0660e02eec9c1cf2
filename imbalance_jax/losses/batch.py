"""Batch inputs of the loss kernels: checking them, resolving the padding mask, neutralising padding
rows and gathering the global batch over a mesh axis.

Every kernel starts here (docs/design.md §5.0): ``embeddings`` (or ``logits``) float[B, D], ``labels``
int[B] and ``valid`` bool[B] or ``None`` (all rows valid) are chex-checked; invalid rows are padding
whose values may be anything (even inf/NaN) and are replaced by zeros before any arithmetic, so they
receive exactly zero gradient. With ``axis_name`` set inside ``jax.shard_map``, pair and triplet
kernels all-gather the sharded batch so every device computes the global-batch loss
(docs/design.md §4). Pure functions over arrays, safe under ``jit``/``grad``/``vmap``.
"""

from __future__ import annotations

from typing import Optional

import chex
import jax
import jax.numpy as jnp

Array = jax.Array


def resolve_valid(valid: Optional[Array], batch_size: int) -> Array:
    """Returns ``valid`` as bool[B]; ``None`` means every row is valid."""
    if valid is None:
        return jnp.ones((batch_size,), dtype=bool)
    return jnp.asarray(valid, dtype=bool)


def check_embeddings_labels_valid(
    embeddings: Array, labels: Array, valid: Optional[Array] = None
) -> None:
    """chex-asserts the standard kernel inputs: float[B, D], int[B], bool[B] | None."""
    chex.assert_rank(embeddings, 2)
    chex.assert_type(embeddings, float)
    chex.assert_rank(labels, 1)
    chex.assert_type(labels, int)
    chex.assert_equal_shape_prefix([embeddings, labels], 1)
    if valid is not None:
        chex.assert_rank(valid, 1)
        chex.assert_type(valid, bool)
        chex.assert_equal_shape_prefix([embeddings, valid], 1)


def mask_rows(x: Array, valid: Array) -> Array:
    """Zeroes the invalid rows of x [B, ...] so padding (even inf/NaN) cannot reach any result.

    The gradient with respect to the invalid rows is exactly 0.
    """
    keep = valid.reshape(valid.shape + (1,) * (x.ndim - 1))
    return jnp.where(keep, x, jnp.zeros_like(x))


def gather_global_batch(axis_name: Optional[str], *arrays: Array) -> tuple[Array, ...]:
    """All-gathers each array along its leading axis over ``axis_name`` (tiled).

    With ``axis_name=None`` the arrays are returned unchanged. Inside ``jax.shard_map`` (or
    ``jax.pmap``) with the batch sharded over ``axis_name``, every device then sees the global
    batch, so a pair/triplet kernel gives the same value as a single call on the concatenated
    batch. The gather is typed ``to="invarying"`` (replicated), which lets ``out_specs=P()``
    return the loss and makes ``jax.grad`` through the ``shard_map`` (default
    ``check_vma=True``) equal to the gradient of the single call, not ``num_devices`` times it.
    """
    if axis_name is None:
        return tuple(arrays)
    return tuple(
        jax.lax.all_gather(a, axis_name, tiled=True, to="invarying") for a in arrays
    )


__all__ = [
    "resolve_valid",
    "check_embeddings_labels_valid",
    "mask_rows",
    "gather_global_batch",
]
