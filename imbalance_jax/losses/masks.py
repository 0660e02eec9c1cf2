"""Pair and triplet selection masks: which (anchor, other) pairs and (anchor, positive, negative)
triplets of a batch a loss uses.

This is the "miner" role of the pytorch-metric-learning split of a metric loss into distances,
miners and reducers (Musgrave, Belongie and Lim, 2020, "PyTorch Metric Learning", arXiv:2008.09164):
the masks select by label (same class, different class, any) and by validity (a pair touching a
padding row is never selected), with or without the self pairs (i, i) and as ordered or unordered
(i < j) pairs. Pair masks are bool[B, B] (``mask[i, j]`` True when the pair is selected); the
[B, B, B] triplet mask is for references and tests only (the triplet kernel never builds it,
docs/design.md §5.3). Hinge-based mining (violating, semi-hard, hard) depends on distances and lives
in :mod:`imbalance_jax.losses.triplet`.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from imbalance_jax.losses.batch import resolve_valid

Array = jax.Array


def same_class_mask(labels: Array) -> Array:
    """bool[B, B]: ``labels[i] == labels[j]`` (diagonal included)."""
    return labels[:, None] == labels[None, :]


def different_class_mask(labels: Array) -> Array:
    """bool[B, B]: ``labels[i] != labels[j]``."""
    return labels[:, None] != labels[None, :]


def valid_pair_mask(valid: Array) -> Array:
    """bool[B, B]: both rows valid."""
    return valid[:, None] & valid[None, :]


def pair_mask(
    labels: Array,
    valid: Optional[Array] = None,
    *,
    same: Optional[bool],
    include_diagonal: bool = False,
    upper_triangle: bool = False,
) -> Array:
    """bool[B, B] mask of selected pairs (i, j).

    Args:
      labels: int[B].
      valid: bool[B] or None; pairs touching an invalid row are never selected.
      same: True -> same-class pairs, False -> different-class pairs, None -> any labels.
      include_diagonal: whether the self pairs (i, i) may be selected.
      upper_triangle: keep only i < j (or i <= j with ``include_diagonal``), i.e. unordered pairs.
    """
    n = labels.shape[0]
    valid = resolve_valid(valid, n)
    mask = valid_pair_mask(valid)
    if same is True:
        mask &= same_class_mask(labels)
    elif same is False:
        mask &= different_class_mask(labels)
    elif same is not None:
        raise ValueError(f"same must be one of (True, False, None), got {same!r}.")
    k = 0 if include_diagonal else 1
    if upper_triangle:
        mask &= jnp.triu(jnp.ones((n, n), dtype=bool), k=k)
    elif not include_diagonal:
        mask &= ~jnp.eye(n, dtype=bool)
    return mask


def anchor_positive_mask(labels: Array, valid: Optional[Array] = None) -> Array:
    """bool[B, B]: (a, p) with ``a != p``, same label, both valid (ordered pairs)."""
    return pair_mask(labels, valid, same=True, include_diagonal=False)


def anchor_negative_mask(labels: Array, valid: Optional[Array] = None) -> Array:
    """bool[B, B]: (a, n) with different labels, both valid (ordered pairs)."""
    return pair_mask(labels, valid, same=False, include_diagonal=True)


def triplet_mask(labels: Array, valid: Optional[Array] = None) -> Array:
    """bool[B, B, B] mask ``[a, p, n]`` of valid triplets. O(B^3): reference/tests only."""
    ap = anchor_positive_mask(labels, valid)
    an = anchor_negative_mask(labels, valid)
    return ap[:, :, None] & an[:, None, :]


__all__ = [
    "same_class_mask",
    "different_class_mask",
    "valid_pair_mask",
    "pair_mask",
    "anchor_positive_mask",
    "anchor_negative_mask",
    "triplet_mask",
]
