"""Tests for imbalance_jax.losses.classification: numpy-loop parity, hand examples, special cases, bad arguments.
jit/padding/vmap/shard_map/degenerate batches: tests/test_losses_contract.py."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from imbalance_jax.losses import classification as C
from imbalance_jax.losses import weighting

B, K = 8, 4  # batch, classes


# ---------------------------------------------------------------- numpy float64 loop references
def _log_softmax_row(z):
    m = max(z)
    lse = m + math.log(sum(math.exp(v - m) for v in z))
    return [v - lse for v in z]


def _counts(counts):
    return [max(float(n), 1.0) for n in counts]


def ref_loss(kind, logits, labels, valid, weights=None, counts=None, gamma=2.0, max_margin=0.5,
             scale=30.0, tau=1.0):
    total, n_valid = 0.0, 0
    for z, y, v in zip(np.asarray(logits, np.float64).tolist(), labels.tolist(), valid.tolist()):
        if not v:
            continue
        n_valid += 1
        if kind == "ldam":
            margins = [c**-0.25 for c in _counts(counts)]
            margins = [m * max_margin / max(margins) for m in margins]
            z = [scale * (z[j] - (margins[y] if j == y else 0.0)) for j in range(len(z))]
        elif kind == "la":
            n = _counts(counts)
            z = [z[j] + tau * math.log(n[j] / sum(n)) for j in range(len(z))]
        log_p = _log_softmax_row(z)[y]
        loss = -log_p
        if kind == "focal":
            loss *= (1.0 - math.exp(log_p)) ** gamma
        if weights is not None:
            loss *= weights[y]
        total += loss
    return total / max(n_valid, 1)


def _call(kind, logits, labels, valid, weights=None, counts=None, **kw):
    if kind == "ce":
        return C.softmax_cross_entropy(logits, labels, valid, class_weights=weights, **kw)
    if kind == "focal":
        return C.focal_loss(logits, labels, valid, class_weights=weights, **kw)
    if kind == "ldam":
        return C.ldam_loss(logits, labels, counts, valid, class_weights=weights, **kw)
    return C.logit_adjusted_loss(logits, labels, counts, valid, **kw)


KINDS = ["ce", "focal", "ldam", "la"]


def _inputs(seed, scale=3.0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    logits = (scale * rng.standard_normal((B, K))).astype(dtype)
    labels = rng.integers(0, K, B).astype(np.int32)
    valid = rng.random(B) < 0.7
    weights = rng.uniform(0.1, 3.0, K).astype(dtype)
    counts = rng.integers(0, 300, K)
    return logits, labels, valid, weights, counts


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_parity_with_numpy_loop_float64(kind, seed):
    logits, labels, valid, weights, counts = _inputs(seed)
    w = None if kind == "la" else weights
    kw = {"focal": {"gamma": 1.5}, "ldam": {"max_margin": 0.4, "scale": 10.0}, "la": {"tau": 0.7}}.get(kind, {})
    with jax.enable_x64(True):
        got = _call(kind, jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(valid), w, counts, **kw)
        assert got.dtype == jnp.float64
    want = ref_loss(kind, logits, labels, valid, w, counts, **kw)
    np.testing.assert_allclose(float(got), want, rtol=1e-10, atol=1e-12)
    # float32 against the same float64 reference
    got32 = _call(kind, jnp.asarray(logits, jnp.float32), jnp.asarray(labels), jnp.asarray(valid),
                  None if w is None else jnp.asarray(w, jnp.float32), counts, **kw)
    np.testing.assert_allclose(float(got32), want, rtol=1e-5, atol=1e-6)


def test_hand_computed_examples():
    z = jnp.zeros((1, 2))
    np.testing.assert_allclose(C.softmax_cross_entropy(z, jnp.array([0])), math.log(2), rtol=1e-6)
    # focal, p_t = 0.5, gamma = 2: 0.25 * ln 2
    np.testing.assert_allclose(C.focal_loss(z, jnp.array([0])), 0.25 * math.log(2), rtol=1e-6)
    # LDAM: counts [1, 16] -> n^-1/4 = [1, 0.5] -> margins [0.5, 0.25]; label 1, scale 1
    want = math.log(1.0 + math.exp(-0.25)) + 0.25
    np.testing.assert_allclose(C.ldam_loss(z, jnp.array([1]), jnp.array([1, 16]), scale=1.0), want, rtol=1e-6)
    # logit adjustment: prior [1/4, 3/4], label 0 -> -log(1/4)
    np.testing.assert_allclose(C.logit_adjusted_loss(z, jnp.array([0]), jnp.array([1, 3])), math.log(4), rtol=1e-6)
    # weighted mean is NOT divided by the weight sum: (2 ln2 + 0 ln2) / 2 rows
    got = C.softmax_cross_entropy(jnp.zeros((2, 2)), jnp.array([0, 1]), class_weights=jnp.array([2.0, 0.0]))
    np.testing.assert_allclose(got, math.log(2), rtol=1e-6)


def test_special_cases_reduce_to_cross_entropy():
    logits, labels, valid, weights, counts = _inputs(3, dtype=np.float32)
    args = (jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(valid))
    ce = C.softmax_cross_entropy(*args)
    np.testing.assert_allclose(C.focal_loss(*args, gamma=0.0), ce, rtol=1e-6)
    np.testing.assert_allclose(C.logit_adjusted_loss(args[0], args[1], counts, args[2], tau=0.0), ce, rtol=1e-6)
    np.testing.assert_allclose(C.ldam_loss(args[0], args[1], counts, args[2], max_margin=0.0, scale=1.0), ce,
                               rtol=1e-6)
    # balanced softmax == CE on logits + log n_c
    bal = C.softmax_cross_entropy(args[0] + jnp.log(jnp.maximum(counts, 1.0)), args[1], args[2])
    np.testing.assert_allclose(C.logit_adjusted_loss(args[0], args[1], counts, args[2]), bal, rtol=1e-5)
    wce = C.softmax_cross_entropy(*args, class_weights=jnp.asarray(weights))
    np.testing.assert_allclose(C.focal_loss(*args, gamma=0.0, class_weights=jnp.asarray(weights)), wce,
                               rtol=1e-6)
    acc = jnp.array([0.9, 0.2, 0.5, 1.0])
    np.testing.assert_allclose(
        C.cdb_cross_entropy(args[0], args[1], acc, args[2]),
        C.softmax_cross_entropy(*args, class_weights=weighting.cdb_weights(acc)), rtol=1e-6)


def test_bad_arguments_raise():
    z, y = jnp.zeros((2, 3)), jnp.array([0, 1])
    with pytest.raises(ValueError, match="gamma"):
        C.focal_loss(z, y, gamma=-1.0)
    with pytest.raises(ValueError, match="class_weights"):
        C.softmax_cross_entropy(z, y, class_weights=jnp.ones(2))
    with pytest.raises(ValueError, match="class_counts"):
        C.ldam_loss(z, y, jnp.ones(4))
    with pytest.raises(ValueError, match="class_counts"):
        C.logit_adjusted_loss(z, y, jnp.ones((3, 1)))
    with pytest.raises(ValueError, match="scale"):
        C.ldam_loss(z, y, jnp.ones(3), scale=0.0)
    with pytest.raises(ValueError, match="class_accuracy"):
        C.cdb_cross_entropy(z, y, jnp.ones(2))
    with pytest.raises(AssertionError):  # chex: labels must be int
        C.softmax_cross_entropy(z, jnp.array([0.0, 1.0]))
