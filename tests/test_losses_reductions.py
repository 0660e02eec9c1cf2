"""Tests for imbalance_jax.losses.reductions: masked means (the psum form is covered by tests/test_losses_contract.py)."""

import jax
import jax.numpy as jnp
import numpy as np

from imbalance_jax.losses.reductions import safe_mean


def test_safe_mean_empty_and_masked_nan():
    values = jnp.array([1.0, 2.0, jnp.nan])
    assert float(safe_mean(values, jnp.array([True, True, False]))) == 1.5
    empty = jnp.zeros(3, bool)
    assert float(safe_mean(jnp.ones(3), empty)) == 0.0
    np.testing.assert_array_equal(jax.grad(lambda v: safe_mean(v, empty))(jnp.ones(3)), 0.0)
    g = jax.grad(lambda v: safe_mean(v, jnp.array([True, False, True])))(jnp.ones(3))
    np.testing.assert_allclose(g, [0.5, 0.0, 0.5])
