"""Tests for the Gaussian-affinity loss (imbalance_jax.losses.affinity) and models.affinity_head: loop parity,
hand examples, the prototype side (degeneracies, gradients under shard_map), bad arguments.
jit/padding/vmap/shard_map/degenerate batches: tests/test_losses_contract.py."""
import itertools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from imbalance_jax.losses import affinity as A
from imbalance_jax.models.affinity_head import AffinityHead

B, D, NC, M = 8, 3, 3, 2  # batch, feature dim, classes, centres per class


# ---------------------------------------------------------------- numpy float64 loop references
def _dist(a, b, distance):
    diff = [x - y for x, y in zip(a, b)]
    if distance == "l1":
        return sum(abs(v) for v in diff)
    sq = sum(v * v for v in diff)
    return math.sqrt(sq) if distance == "l2" else sq


def ref_similarity(features, prototypes, sigma, distance, similarity):
    out = []
    for f in np.asarray(features, np.float64).tolist():
        row = []
        for centres in np.asarray(prototypes, np.float64).tolist():
            best = -1.0
            for w in centres:
                d = _dist(f, w, distance)
                best = max(best, math.exp(-d / sigma) if similarity == "gaussian" else 1.0 / (1.0 + d))
            row.append(best)
        out.append(row)
    return out


def ref_diversity(prototypes):
    flat = np.asarray(prototypes, np.float64).reshape(-1, np.shape(prototypes)[-1]).tolist()
    d = [_dist(flat[k], flat[l], "sq_l2") for k in range(len(flat)) for l in range(k + 1, len(flat))]
    if not d:
        return 0.0
    mu = sum(d) / len(d)
    return sum((x - mu) ** 2 for x in d) / len(d)


def ref_terms(features, labels, prototypes, valid, sigma=10.0, margin=0.75, gamma=1.0, distance="sq_l2",
              similarity="gaussian"):
    sim = ref_similarity(features, prototypes, sigma, distance, similarity)
    total, count = 0.0, 0
    for s, y, v in zip(sim, labels.tolist(), valid.tolist()):
        if v:
            count += 1
            total += sum(max(0.0, margin + s[j] - s[y]) for j in range(len(s)) if j != y)
    mm = total / max(count, 1)
    div = ref_diversity(prototypes)
    return {"max_margin": mm, "diversity": div, "total": mm + gamma * div}


def _inputs(seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((B, D)).astype(dtype)
    labels = rng.integers(0, NC, B).astype(np.int32)
    valid = rng.random(B) < 0.75
    prototypes = rng.standard_normal((NC, M, D)).astype(dtype)
    return features, labels, valid, prototypes


COMBOS = [("sq_l2", "gaussian"), ("l1", "gaussian"), ("l2", "gaussian"), ("sq_l2", "inverse"), ("l2", "inverse"),
          ("l1", "inverse")]


@pytest.mark.parametrize("distance,similarity", COMBOS)
def test_parity_with_numpy_loop_float64(distance, similarity):
    features, labels, valid, prototypes = _inputs(0)
    kw = dict(sigma=2.5, margin=0.6, distance=distance, similarity=similarity)
    want = ref_terms(features, labels, prototypes, valid, gamma=0.3, **kw)
    with jax.enable_x64(True):
        sim = A.affinity_similarity(jnp.asarray(features), jnp.asarray(prototypes), sigma=2.5, distance=distance,
                                    similarity=similarity)
        np.testing.assert_allclose(sim, ref_similarity(features, prototypes, 2.5, distance, similarity), rtol=1e-10)
        got = A.affinity_loss_terms(jnp.asarray(features), jnp.asarray(labels), jnp.asarray(prototypes),
                                    jnp.asarray(valid), diversity_weight=0.3, **kw)
        for key in want:
            assert got[key].dtype == jnp.float64
            np.testing.assert_allclose(float(got[key]), want[key], rtol=1e-9, atol=1e-12)
    loss32 = A.affinity_loss(jnp.asarray(features, jnp.float32), jnp.asarray(labels),
                             jnp.asarray(prototypes, jnp.float32), jnp.asarray(valid), diversity_weight=0.3, **kw)
    np.testing.assert_allclose(float(loss32), want["total"], rtol=1e-4, atol=1e-5)


def test_hand_computed_examples():
    f = jnp.zeros((1, 1))
    w = jnp.array([[[0.0]], [[1.0]]])  # C=2, m=1, D=1
    np.testing.assert_allclose(A.affinity_similarity(f, w, sigma=1.0), [[1.0, math.exp(-1.0)]], rtol=1e-6)
    terms = A.affinity_loss_terms(f, jnp.array([0]), w, sigma=1.0)
    np.testing.assert_allclose(terms["max_margin"], 0.75 + math.exp(-1.0) - 1.0, rtol=1e-6)
    np.testing.assert_allclose(terms["diversity"], 0.0, atol=1e-7)  # a single pair has zero variance
    # K = 3 prototypes on a line at 0, 1, 3: d = 1, 9, 4 -> mu = 14/3, R = 294/27
    np.testing.assert_allclose(A.diversity_regularizer(jnp.array([[[0.0]], [[1.0]], [[3.0]]])), 294 / 27, rtol=1e-6)
    np.testing.assert_allclose(A.diversity_regularizer(jnp.array([[0.0], [1.0], [3.0]])), 294 / 27, rtol=1e-6)
    # multi-centre: the max over centres is taken; the closest centre of class 1 is at distance^2 = 4
    w2 = jnp.array([[[3.0], [-5.0]], [[2.0], [9.0]]])
    np.testing.assert_allclose(A.affinity_similarity(f, w2, sigma=2.0), [[math.exp(-4.5), math.exp(-2.0)]],
                               rtol=1e-6)
    np.testing.assert_allclose(A.affinity_similarity(f, w2, similarity="inverse"), [[0.1, 0.2]], rtol=1e-6)


def test_single_prototype_diversity_is_zero_with_zero_gradient():
    w = jnp.array([[[1.0, -2.0]]])
    value, grad = jax.value_and_grad(A.diversity_regularizer)(w)
    assert float(value) == 0.0
    np.testing.assert_array_equal(grad, np.zeros_like(w))


@jax.jit
def _every_combo_value_and_grads(features, labels, prototypes, valid):
    """Value and gradients with respect to (features, prototypes) for every distance/similarity combination."""
    return {combo: jax.value_and_grad(
        lambda f, w, d=combo[0], s=combo[1]: A.affinity_loss(f, labels, w, valid, distance=d, similarity=s),
        argnums=(0, 1))(features, prototypes) for combo in COMBOS}


def test_degenerate_prototypes_are_finite():
    """Prototype-side degeneracies (the batch side is in tests/test_losses_contract.py): identical prototypes
    (every pair distance 0 in the diversity term) and features exactly on a prototype (sqrt at 0 for "l2"),
    with finite gradients for the prototypes too."""
    rng = np.random.default_rng(0)
    for identical, features_kind, mask in itertools.product(
            [False, True], ["equal_to_prototypes", "zeros", "random"], ["all", "some", "none"]):
        prototypes = rng.standard_normal((NC, M, D)).astype(np.float32)
        if identical:
            prototypes[:] = prototypes[0, 0]
        features = {"equal_to_prototypes": prototypes.reshape(-1, D)[rng.integers(0, NC * M, B)],
                    "zeros": np.zeros((B, D)), "random": rng.standard_normal((B, D))}[features_kind]
        labels = rng.integers(0, NC, B).astype(np.int32)
        valid = {"all": np.ones(B, bool), "some": np.arange(B) % 3 == 0, "none": np.zeros(B, bool)}[mask]
        out = _every_combo_value_and_grads(jnp.asarray(features, jnp.float32), jnp.asarray(labels),
                                           jnp.asarray(prototypes), jnp.asarray(valid))
        for combo, (value, (g_f, g_w)) in out.items():
            case = (combo, identical, features_kind, mask)
            assert np.isfinite(float(value)) and np.all(np.isfinite(g_f)) and np.all(np.isfinite(g_w)), case
            np.testing.assert_array_equal(np.asarray(g_f)[~valid], 0.0, err_msg=str(case))


def test_everything_masked_gives_zero_max_margin_with_zero_gradient():
    features, labels, _, prototypes = _inputs(1, np.float32)
    fn = lambda f: A.affinity_loss_terms(f, jnp.asarray(labels), jnp.asarray(prototypes), jnp.zeros(B, bool))[
        "max_margin"]
    value, grad = jax.value_and_grad(fn)(jnp.asarray(features))
    assert float(value) == 0.0
    np.testing.assert_array_equal(grad, np.zeros((B, D)))
    terms = A.affinity_loss_terms(jnp.asarray(features), jnp.asarray(labels), jnp.asarray(prototypes),
                                  jnp.zeros(B, bool))
    np.testing.assert_allclose(terms["total"], terms["diversity"], rtol=1e-7)


def test_prototype_gradient_inside_shard_map_equals_global_batch():
    """The replicated, differentiable prototypes under shard_map (the features side of the kernel contract,
    value and feature gradient, is tested in tests/test_losses_contract.py)."""
    mesh = jax.make_mesh((4,), ("data",))
    features, labels, _, prototypes = _inputs(4, np.float32)
    valid = np.array([1, 0, 0, 0, 1, 1, 1, 0], bool)  # device 1 holds only padding

    def sharded(f, w, y, v):
        local = lambda f, w, y, v: A.affinity_loss(f, y, w, v, axis_name="data")
        return jax.shard_map(local, mesh=mesh, in_specs=(P("data"), P(), P("data"), P("data")),
                             out_specs=P())(f, w, y, v)

    put = lambda a, spec: jax.device_put(jnp.asarray(a), NamedSharding(mesh, spec))
    with jax.set_mesh(mesh):
        value, (_, g_w) = jax.jit(jax.value_and_grad(sharded, argnums=(0, 1)))(
            put(features, P("data")), put(prototypes, P()), put(labels, P("data")), put(valid, P("data")))
    want, (_, w_w) = jax.value_and_grad(
        lambda f, w: A.affinity_loss(f, jnp.asarray(labels), w, jnp.asarray(valid)), argnums=(0, 1))(
        jnp.asarray(features), jnp.asarray(prototypes))
    np.testing.assert_allclose(value, want, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g_w), w_w, rtol=1e-5, atol=1e-6)


def test_bad_arguments_raise():
    f, y, w = jnp.zeros((2, D)), jnp.array([0, 1]), jnp.ones((NC, M, D))
    with pytest.raises(ValueError, match="distance"):
        A.affinity_loss(f, y, w, distance="cosine")
    with pytest.raises(ValueError, match="similarity"):
        A.affinity_similarity(f, w, similarity="softmax")
    with pytest.raises(ValueError, match="sigma"):
        A.affinity_similarity(f, w, sigma=0.0)
    with pytest.raises(ValueError, match="prototypes"):
        A.affinity_similarity(f, jnp.ones((NC, M, D + 1)))
    with pytest.raises(AssertionError):  # chex: prototypes must be [C, m, D]
        A.affinity_similarity(f, jnp.ones((NC, D)))


# ---------------------------------------------------------------- AffinityHead
def test_affinity_head_init_shape_and_output():
    head = AffinityHead(num_classes=5, num_centres=3, sigma=4.0, distance="l2", similarity="inverse")
    x = jnp.asarray(np.random.default_rng(0).standard_normal((6, 7)), jnp.float32)
    params = head.init(jax.random.key(0), x)
    proto = params["params"]["prototypes"]
    assert proto.shape == (5, 3, 7) and proto.dtype == jnp.float32
    out = head.apply(params, x)
    assert out.shape == (6, 5)
    np.testing.assert_allclose(out, A.affinity_similarity(x, proto, sigma=4.0, distance="l2", similarity="inverse"),
                               rtol=1e-6)


def test_affinity_head_uses_he_normal_on_flattened_matrix():
    seen = []

    def spy(key, shape, dtype=jnp.float32):
        seen.append(shape)
        return nn.initializers.he_normal()(key, shape, dtype)

    params = AffinityHead(num_classes=4, num_centres=2, prototype_init=spy).init(jax.random.key(1), jnp.ones((1, 9)))
    assert seen == [(8, 9)]
    assert params["params"]["prototypes"].shape == (4, 2, 9)
    # default init: he-normal with fan_in = C*m (std = sqrt(2 / (C*m)))
    big = AffinityHead(num_classes=25, num_centres=4).init(jax.random.key(2), jnp.ones((1, 50)))
    std = float(jnp.std(big["params"]["prototypes"]))
    assert abs(std - math.sqrt(2.0 / 100)) < 0.1 * math.sqrt(2.0 / 100)
