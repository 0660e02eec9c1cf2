"""Tests for imbalance_jax.losses.classification: numpy-loop parity, degenerate inputs, jit/vmap/shard_map."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from imbalance_jax.losses import classification as C
from imbalance_jax.losses import weighting

SETTINGS = settings(max_examples=15, deadline=None)
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


def _value_and_grad(kind, logits, labels, valid, counts, **kw):
    w = None if kind == "la" else jnp.linspace(0.5, 2.0, logits.shape[-1])
    return jax.value_and_grad(lambda x: _call(kind, x, labels, valid, w, counts, **kw))(logits)


@SETTINGS
@given(
    kind=st.sampled_from(KINDS),
    magnitude=st.sampled_from([0.0, 1e-3, 1.0, 1e4, 1e30]),
    one_class=st.booleans(),
    mask_mode=st.sampled_from(["all", "some", "none", "one"]),
    seed=st.integers(0, 2**16),
    gamma=st.sampled_from([0.0, 0.5, 2.0]),
)
def test_degenerate_inputs_are_finite(kind, magnitude, one_class, mask_mode, seed, gamma):
    rng = np.random.default_rng(seed)
    logits = jnp.asarray(magnitude * np.sign(rng.standard_normal((B, K))), jnp.float32)
    labels = jnp.zeros(B, jnp.int32) if one_class else jnp.asarray(rng.integers(0, K, B), jnp.int32)
    valid = {"all": np.ones(B, bool), "some": rng.random(B) < 0.5, "none": np.zeros(B, bool),
             "one": np.arange(B) == 3}[mask_mode]
    counts = jnp.asarray([0, 5, 0, 1000])  # zero counts
    kw = {"gamma": gamma} if kind == "focal" else {}
    value, grad = _value_and_grad(kind, logits, labels, jnp.asarray(valid), counts, **kw)
    assert np.isfinite(float(value)) and np.all(np.isfinite(grad))
    assert np.all(np.asarray(grad)[~valid] == 0)
    if not valid.any():
        assert float(value) == 0.0


@pytest.mark.parametrize("kind", KINDS)
def test_everything_masked_gives_zero_with_zero_gradient(kind):
    logits = jnp.asarray(np.random.default_rng(0).standard_normal((B, K)), jnp.float32)
    value, grad = _value_and_grad(kind, logits, jnp.zeros(B, jnp.int32), jnp.zeros(B, bool), jnp.arange(K))
    assert float(value) == 0.0
    np.testing.assert_array_equal(grad, np.zeros((B, K)))


@pytest.mark.parametrize("kind", KINDS)
def test_masked_padding_equals_unpadded_and_jit(kind):
    logits, labels, _, weights, counts = _inputs(5, dtype=np.float32)
    w = None if kind == "la" else jnp.asarray(weights)
    plain = _call(kind, jnp.asarray(logits), jnp.asarray(labels), None, w, counts)
    pad_logits = np.concatenate([logits, np.array([[np.nan, np.inf, -np.inf, 1e38]] * 3, np.float32)])
    pad_labels = np.concatenate([labels, np.array([-1, K + 5, 0], np.int32)])
    pad_valid = np.arange(B + 3) < B
    fn = lambda x: _call(kind, x, jnp.asarray(pad_labels), jnp.asarray(pad_valid), w, counts)
    padded, grad = jax.value_and_grad(fn)(jnp.asarray(pad_logits))
    np.testing.assert_allclose(padded, plain, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(grad)[B:], 0.0)
    assert np.all(np.isfinite(grad))
    jitted = jax.jit(lambda x, y, v: _call(kind, x, y, v, w, counts))
    np.testing.assert_allclose(jitted(jnp.asarray(pad_logits), jnp.asarray(pad_labels), jnp.asarray(pad_valid)),
                               padded, rtol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_vmap_over_batches(kind):
    rng = np.random.default_rng(7)
    logits = jnp.asarray(rng.standard_normal((3, B, K)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, K, (3, B)), jnp.int32)
    valid = jnp.asarray(rng.random((3, B)) < 0.8)
    counts = jnp.array([100, 20, 5, 1])
    batched = jax.vmap(lambda x, y, v: _call(kind, x, y, v, None, counts))(logits, labels, valid)
    singles = [_call(kind, logits[i], labels[i], valid[i], None, counts) for i in range(3)]
    np.testing.assert_allclose(batched, singles, rtol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_axis_name_inside_shard_map_equals_global_batch(kind):
    mesh = jax.make_mesh((4,), ("data",))
    rng = np.random.default_rng(11)
    logits = rng.standard_normal((B, K)).astype(np.float32)
    labels = rng.integers(0, K, B).astype(np.int32)
    valid = np.array([1, 1, 0, 0, 1, 0, 1, 1], bool)  # device 1 holds only padding
    w = None if kind == "la" else jnp.linspace(0.5, 2.0, K)
    counts = jnp.array([100, 20, 0, 3])

    def sharded_loss(x, y, v):
        local = lambda x, y, v: _call(kind, x, y, v, w, counts, axis_name="data")
        return jax.shard_map(local, mesh=mesh, in_specs=(P("data"),) * 3, out_specs=P())(x, y, v)

    put = lambda a: jax.device_put(jnp.asarray(a), NamedSharding(mesh, P("data")))
    with jax.set_mesh(mesh):
        value, grad = jax.jit(jax.value_and_grad(sharded_loss))(put(logits), put(labels), put(valid))
    want, want_grad = jax.value_and_grad(lambda x: _call(kind, x, jnp.asarray(labels), jnp.asarray(valid), w,
                                                         counts))(jnp.asarray(logits))
    np.testing.assert_allclose(value, want, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-5, atol=1e-7)


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
