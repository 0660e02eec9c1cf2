"""Tests for imbalance_jax.losses.weighting: parity with numpy loops, edge cases, jit/vmap."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imbalance_jax.losses import weighting as W

SETTINGS = settings(max_examples=12, deadline=None)


# ---------------------------------------------------------------- numpy float64 loop references
def _normalise(w):
    total = sum(w)
    return [1.0] * len(w) if total == 0 else [x * len(w) / total for x in w]


def ref_inverse(counts):
    return _normalise([1.0 / max(float(n), 1.0) for n in counts])


def ref_class_balanced(counts, beta):
    out = []
    for n in counts:
        n = max(float(n), 1.0)
        out.append(1.0 / n if beta == 1.0 else (1.0 - beta) / (1.0 - beta**n))
    return _normalise(out)


def ref_cdb(acc, tau):
    acc = [min(max(float(a), 0.0), 1.0) for a in acc]
    if tau == "dynamic":
        b = max(acc) / (min(acc) + 1e-4) - 1.0
        tau = 1.0 / (1.0 + math.exp(-b))
    return _normalise([(1.0 - a) ** tau for a in acc])  # python: 0.0 ** 0 == 1, 0.0 ** t == 0


counts_st = st.lists(st.integers(0, 5000), min_size=1, max_size=6)
acc_st = st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6)


@SETTINGS
@given(counts=counts_st, beta=st.sampled_from([0.0, 0.5, 0.9, 0.999, 0.9999, 1.0]))
def test_count_weights_match_reference(counts, beta):
    with jax.enable_x64(True):
        c = np.asarray(counts, np.int64)
        np.testing.assert_allclose(W.inverse_frequency_weights(c), ref_inverse(counts), rtol=1e-9)
        got = W.class_balanced_weights(c, beta=beta)
        np.testing.assert_allclose(got, ref_class_balanced(counts, beta), rtol=1e-7)
        assert got.dtype == jnp.float64
    got32 = W.class_balanced_weights(np.asarray(counts), beta=beta)
    assert got32.dtype == jnp.float32 and np.all(np.isfinite(got32))
    np.testing.assert_allclose(got32, ref_class_balanced(counts, beta), rtol=2e-3)
    np.testing.assert_allclose(float(jnp.sum(got32)), len(counts), rtol=1e-5)


@SETTINGS
@given(acc=acc_st, tau=st.sampled_from(["dynamic", 0.0, 0.5, 1.0, 2.0]))
def test_cdb_weights_match_reference_and_are_finite(acc, tau):
    with jax.enable_x64(True):
        a = np.asarray(acc, np.float64)
        np.testing.assert_allclose(W.cdb_weights(a, tau=tau), ref_cdb(acc, tau), rtol=1e-9, atol=1e-12)
    a32 = jnp.asarray(acc, jnp.float32)
    w = W.cdb_weights(a32, tau=tau)
    assert np.all(np.isfinite(w)) and np.all(np.asarray(w) >= 0)
    np.testing.assert_allclose(float(jnp.sum(w)), len(acc), rtol=1e-5)
    probe = jnp.arange(1.0, len(acc) + 1.0)
    grad = jax.grad(lambda x: jnp.sum(W.cdb_weights(x, tau=tau) * probe))(a32)
    assert np.all(np.isfinite(grad))


def test_hand_computed_examples():
    np.testing.assert_allclose(W.inverse_frequency_weights(np.array([1, 3])), [1.5, 0.5], rtol=1e-6)
    # beta=0.5: (1-b)/(1-b^1) = 1, (1-b)/(1-b^2) = 2/3 -> normalised to [1.2, 0.8]
    np.testing.assert_allclose(W.class_balanced_weights(np.array([1, 2]), beta=0.5), [1.2, 0.8], rtol=1e-6)
    # tau=1: d = [0.5, 1.0] -> [2/3, 4/3]
    np.testing.assert_allclose(W.cdb_weights(np.array([0.5, 0.0]), tau=1.0), [2 / 3, 4 / 3], rtol=1e-6)
    # dynamic: b = 0.75 / 0.5001 - 1, tau = sigmoid(b), w ∝ [0.25^tau, 0.5^tau]
    tau = 1 / (1 + math.exp(-(0.75 / 0.5001 - 1)))
    w = np.array([0.25**tau, 0.5**tau])
    np.testing.assert_allclose(W.cdb_weights(np.array([0.75, 0.5])), 2 * w / w.sum(), rtol=1e-6)


def test_degenerate_cases():
    # all classes perfect -> uniform, not 0/0
    np.testing.assert_array_equal(W.cdb_weights(jnp.ones(4)), np.ones(4))
    # a perfect class gets weight 0 for tau > 0 (reference numpy behaviour); tau = 0 -> uniform
    w = W.cdb_weights(jnp.array([1.0, 0.5, 0.5]), tau=1.0)
    np.testing.assert_allclose(w, [0.0, 1.5, 1.5], rtol=1e-6)
    np.testing.assert_array_equal(W.cdb_weights(jnp.array([1.0, 0.5, 0.0]), tau=0.0), np.ones(3))
    # all classes at zero accuracy -> uniform
    np.testing.assert_allclose(W.cdb_weights(jnp.zeros(3)), np.ones(3), rtol=1e-6)
    # zero counts are clipped to 1: finite, same as count 1
    np.testing.assert_allclose(
        W.class_balanced_weights(np.array([0, 10])), W.class_balanced_weights(np.array([1, 10]))
    )
    assert np.all(np.isfinite(W.inverse_frequency_weights(np.zeros(3, np.int32))))
    np.testing.assert_allclose(W.inverse_frequency_weights(np.zeros(3)), np.ones(3))
    # beta = 1 is inverse frequency, beta = 0 is uniform
    counts = np.array([500, 50, 5])
    np.testing.assert_allclose(
        W.class_balanced_weights(counts, beta=1.0), W.inverse_frequency_weights(counts), rtol=1e-6
    )
    np.testing.assert_allclose(W.class_balanced_weights(counts, beta=0.0), np.ones(3), rtol=1e-6)
    # a single class
    np.testing.assert_allclose(W.cdb_weights(jnp.array([0.3])), [1.0], rtol=1e-6)


def test_drw_switches_at_start_epoch_and_jits():
    counts = np.array([1000, 100, 10])
    balanced = W.class_balanced_weights(counts)
    drw = jax.jit(lambda e: W.drw_weights(e, counts, start_epoch=160))
    np.testing.assert_array_equal(drw(0), np.ones(3))
    np.testing.assert_array_equal(drw(159), np.ones(3))
    np.testing.assert_allclose(drw(160), balanced, rtol=1e-6)
    np.testing.assert_allclose(drw(199), balanced, rtol=1e-6)
    np.testing.assert_allclose(W.drw_weights(5, counts, start_epoch=5, beta=0.5),
                               W.class_balanced_weights(counts, beta=0.5), rtol=1e-6)


def test_jit_vmap_and_numpy_inputs():
    counts = np.array([[100, 10, 1], [5, 5, 0]])
    for fn in (W.inverse_frequency_weights, W.class_balanced_weights):
        batched = jax.vmap(fn)(jnp.asarray(counts))
        np.testing.assert_allclose(batched[1], fn(counts[1]), rtol=1e-6)
        np.testing.assert_allclose(jax.jit(fn)(counts[0]), fn(counts[0]), rtol=1e-6)
    acc = jnp.array([[0.9, 0.5, 0.1], [1.0, 1.0, 1.0]])
    batched = jax.vmap(W.cdb_weights)(acc)
    np.testing.assert_allclose(batched[0], W.cdb_weights(acc[0]), rtol=1e-6)
    np.testing.assert_array_equal(batched[1], np.ones(3))
    np.testing.assert_allclose(
        jax.jit(lambda a: W.cdb_weights(a, tau=0.7))(acc[0]), W.cdb_weights(acc[0], tau=0.7), rtol=1e-6
    )


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="tau"):
        W.cdb_weights(np.array([0.5, 0.2]), tau="fixed")
    with pytest.raises(ValueError, match="tau"):
        W.cdb_weights(np.array([0.5, 0.2]), tau=-1.0)
    with pytest.raises(ValueError, match="beta"):
        W.class_balanced_weights(np.array([1, 2]), beta=1.5)
    with pytest.raises(ValueError, match="beta"):
        W.drw_weights(0, np.array([1, 2]), start_epoch=1, beta=-0.1)
    with pytest.raises(ValueError, match="class_counts"):
        W.inverse_frequency_weights(np.array([True, False]))
    with pytest.raises(AssertionError):
        W.inverse_frequency_weights(np.ones((2, 2)))
