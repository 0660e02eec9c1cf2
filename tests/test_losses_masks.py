"""Tests for imbalance_jax.losses.masks: pair and triplet selection masks against loops."""

import jax.numpy as jnp
import numpy as np
import pytest

from imbalance_jax.losses.masks import anchor_negative_mask, anchor_positive_mask, pair_mask, triplet_mask


def test_masks_against_loops():
    labels = np.array([0, 1, 0, 2, 1])
    valid = np.array([True, True, False, True, True])
    n = len(labels)
    for same in (True, False, None):
        for diag in (True, False):
            for upper in (True, False):
                got = np.asarray(
                    pair_mask(jnp.asarray(labels), jnp.asarray(valid), same=same,
                              include_diagonal=diag, upper_triangle=upper)
                )
                for i in range(n):
                    for j in range(n):
                        want = valid[i] and valid[j]
                        want &= same is None or (labels[i] == labels[j]) == same
                        want &= (i < j or (diag and i == j)) if upper else (diag or i != j)
                        assert got[i, j] == want, (same, diag, upper, i, j)
    with pytest.raises(ValueError, match="same must be one of"):
        pair_mask(jnp.asarray(labels), None, same="yes")


def test_anchor_masks_and_triplet_mask():
    labels = jnp.array([0, 0, 1])
    valid = jnp.array([True, True, True])
    ap = anchor_positive_mask(labels, valid)
    an = anchor_negative_mask(labels, valid)
    np.testing.assert_array_equal(ap, [[0, 1, 0], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(an, [[0, 0, 1], [0, 0, 1], [1, 1, 0]])
    t = np.asarray(triplet_mask(labels, valid))
    assert t.sum() == 2 and t[0, 1, 2] and t[1, 0, 2]
