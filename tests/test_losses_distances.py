"""Tests for imbalance_jax.losses.distances: pairwise distances, safe norms, L2 normalisation, precision."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imbalance_jax.losses import distances as dist_lib
from imbalance_jax.losses.clustering import histogram_correlation
from imbalance_jax.losses.distances import (
    METRICS,
    l2_normalize,
    pairwise_distances,
    safe_norm,
    safe_sqrt,
)


def _loop_distances(x: np.ndarray, y: np.ndarray, metric: str) -> np.ndarray:
    """Plain-Python float64 reference."""
    out = np.zeros((len(x), len(y)))
    for i, a in enumerate(x):
        for j, b in enumerate(y):
            if metric == "l1":
                out[i, j] = sum(abs(u - v) for u, v in zip(a, b))
            elif metric == "sq_l2":
                out[i, j] = sum((u - v) ** 2 for u, v in zip(a, b))
            elif metric == "l2":
                out[i, j] = sum((u - v) ** 2 for u, v in zip(a, b)) ** 0.5
            else:
                na, nb = np.linalg.norm(a), np.linalg.norm(b)
                cos = 0.0 if na == 0 or nb == 0 else float(np.dot(a, b) / (na * nb))
                out[i, j] = 1.0 - cos
    return out


def _degenerate_points(kind: str, n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "zeros":
        return np.zeros((n, d), np.float32)
    if kind == "identical":
        return np.repeat(rng.normal(size=(1, d)), n, axis=0).astype(np.float32)
    if kind == "duplicates":  # a few distinct points, repeated, plus a zero row
        pts = rng.integers(-1, 2, size=(n, d)).astype(np.float32)
        pts[0] = 0.0
        return pts
    return rng.normal(size=(n, d)).astype(np.float32)


POINT_KINDS = ["zeros", "identical", "duplicates", "random"]


@pytest.mark.parametrize("metric", METRICS)
def test_pairwise_matches_loop_float64(metric):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 4))
    y = rng.normal(size=(3, 4))
    y[0] = 0.0
    with jax.enable_x64(True):
        got = pairwise_distances(jnp.asarray(x), jnp.asarray(y), metric=metric)
        np.testing.assert_allclose(np.asarray(got), _loop_distances(x, y, metric), atol=1e-10)
        got_self = pairwise_distances(jnp.asarray(x), metric=metric)
        np.testing.assert_allclose(np.asarray(got_self), _loop_distances(x, x, metric), atol=1e-10)


@pytest.mark.parametrize("metric", METRICS)
def test_pairwise_float32_close_to_float64_loop(metric):
    x = np.random.default_rng(1).normal(size=(6, 3)).astype(np.float32)
    got = pairwise_distances(jnp.asarray(x), jnp.asarray(x[::-1]), metric=metric)
    assert got.dtype == jnp.float32
    want = _loop_distances(x.astype(np.float64), x[::-1].astype(np.float64), metric)
    # x and x[::-1] share a row: "l2" there is sqrt(float32 rounding of the expansion) ~ 3e-4.
    atol = 1e-3 if metric == "l2" else 2e-5
    np.testing.assert_allclose(np.asarray(got), want, atol=atol, rtol=1e-5)


def test_pairwise_hand_example():
    x = jnp.array([[0.0, 0.0], [3.0, 4.0]])
    y = jnp.array([[3.0, 0.0]])
    np.testing.assert_allclose(pairwise_distances(x, y, metric="l1"), [[3.0], [4.0]])
    np.testing.assert_allclose(pairwise_distances(x, y, metric="l2"), [[3.0], [4.0]])
    np.testing.assert_allclose(pairwise_distances(x, y, metric="sq_l2"), [[9.0], [16.0]])
    np.testing.assert_allclose(pairwise_distances(x, y, metric="cosine"), [[1.0], [0.4]], atol=1e-6)


@functools.lru_cache(maxsize=None)
def _jitted_distance_checks(metric: str):
    """Jitted (distances, grad of a weighted sum over x vs x, grad over x vs reversed x)."""

    def run(x, w):
        dist = pairwise_distances(x, metric=metric)
        g_self = jax.grad(lambda a: jnp.sum(w * pairwise_distances(a, metric=metric)))(x)
        g_pair = jax.grad(lambda a: jnp.sum(w * pairwise_distances(a, a[::-1], metric=metric)))(x)
        return dist, g_self, g_pair

    return jax.jit(run)


@settings(max_examples=20, deadline=None)
@given(
    kind=st.sampled_from(POINT_KINDS),
    seed=st.integers(0, 2**16),
    metric=st.sampled_from(METRICS),
)
def test_pairwise_degenerate_finite_and_zero_diagonal(kind, seed, metric):
    # Fixed shape so the jitted check compiles once per metric.
    x = jnp.asarray(_degenerate_points(kind, 5, 3, seed))
    w = jnp.asarray(np.random.default_rng(seed).normal(size=(5, 5)).astype(np.float32))
    dist, g_self, g_pair = _jitted_distance_checks(metric)(x, w)
    assert np.all(np.diag(np.asarray(dist)) == 0.0)
    assert np.all(np.isfinite(dist)) and np.all(np.asarray(dist) >= -1e-6)
    assert np.all(np.isfinite(g_self)) and np.all(np.isfinite(g_pair))


@pytest.mark.parametrize("metric", METRICS)
def test_pairwise_single_row(metric):
    x = jnp.zeros((1, 3))
    np.testing.assert_array_equal(pairwise_distances(x, metric=metric), [[0.0]])
    g = jax.grad(lambda a: pairwise_distances(a, a + 1.0, metric=metric).sum())(x)
    assert np.all(np.isfinite(g))


def test_pairwise_grad_zero_where_points_coincide():
    # d/dx ||x - y|| is undefined at x = y; the safe version gives the zero subgradient.
    x = jnp.array([[1.0, 2.0], [1.0, 2.0]])
    for metric in ("l2", "sq_l2"):
        g = jax.grad(lambda a: pairwise_distances(a, metric=metric).sum())(x)
        np.testing.assert_array_equal(g, 0.0)


def test_pairwise_bad_metric():
    with pytest.raises(ValueError, match="metric must be one of"):
        pairwise_distances(jnp.ones((2, 2)), metric="euclid")


def test_pairwise_vmap_and_jit():
    x = jnp.asarray(np.random.default_rng(2).normal(size=(3, 4, 2)).astype(np.float32))
    for metric in METRICS:
        f = functools.partial(pairwise_distances, metric=metric)
        batched = jax.jit(jax.vmap(f))(x)
        chex.assert_shape(batched, (3, 4, 4))
        single = jax.jit(f)
        for i in range(3):
            np.testing.assert_allclose(batched[i], single(x[i]), atol=1e-5)
    # The blocked L1 custom VJP under vmap.
    grad_l1 = jax.grad(lambda a: pairwise_distances(a, metric="l1").sum())
    np.testing.assert_allclose(jax.jit(jax.vmap(grad_l1))(x)[1], jax.jit(grad_l1)(x[1]))


def test_l1_blocks_match_direct(monkeypatch):
    # Force several row blocks (with padding) and compare value and both gradients.
    monkeypatch.setattr(dist_lib, "_L1_BLOCK_ELEMENTS", 7)
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(5, 2)).astype(np.float32))
    y = jnp.asarray(rng.normal(size=(3, 2)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(5, 3)).astype(np.float32))

    def direct(a, b):
        return jnp.sum(w * jnp.sum(jnp.abs(a[:, None] - b[None]), -1))

    def blocked(a, b):
        return jnp.sum(w * pairwise_distances(a, b, metric="l1"))

    np.testing.assert_allclose(blocked(x, y), direct(x, y), rtol=1e-6)
    for got, want in zip(jax.grad(blocked, (0, 1))(x, y), jax.grad(direct, (0, 1))(x, y)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_safe_sqrt_and_safe_norm():
    v = jnp.array([0.0, 4.0, -1.0])
    np.testing.assert_allclose(safe_sqrt(v), [0.0, 2.0, 0.0])
    np.testing.assert_allclose(jax.grad(lambda a: safe_sqrt(a).sum())(v), [0.0, 0.25, 0.0])
    x = jnp.array([[0.0, 0.0], [3.0, -4.0]])
    np.testing.assert_allclose(safe_norm(x, ord=2), [0.0, 5.0])
    np.testing.assert_allclose(safe_norm(x, ord=1), [0.0, 7.0])
    g = jax.grad(lambda a: safe_norm(a).sum())(x)
    np.testing.assert_allclose(g, [[0.0, 0.0], [0.6, -0.8]], atol=1e-6)
    with pytest.raises(ValueError, match="ord must be one of"):
        safe_norm(x, ord=3)


def test_l2_normalize_nan_free_at_zero():
    x = jnp.array([[0.0, 0.0], [3.0, 4.0], [1e-30, 0.0]])
    y = l2_normalize(x)
    np.testing.assert_allclose(y[:2], [[0.0, 0.0], [0.6, 0.8]], atol=1e-6)
    g = jax.jacobian(lambda a: l2_normalize(a).sum())(x)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(g))


def _dot_precisions(fn, *args) -> list:
    """The ``precision`` of every dot_general in ``fn``'s jaxpr, nested jaxprs included."""
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                found.append(eqn.params["precision"])
            for sub in jax.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


@pytest.mark.parametrize("name", ["sq_l2", "l2", "cosine", "histogram_correlation"])
def test_dot_products_request_float32_precision(name):
    """On GPUs XLA's default float32 dot is TF32; on an H100 that flipped the colour loss's gradients
    (experiments/benchmarks/README.md §7). Every dot of the distance/correlation matrices asks for HIGHEST."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(6, 5)), jnp.float32)
    fn = histogram_correlation if name == "histogram_correlation" else functools.partial(
        pairwise_distances, metric=name)
    precisions = _dot_precisions(jax.grad(lambda a: jnp.sum(fn(a))), x)
    highest = jax.lax.Precision.HIGHEST
    assert precisions, "no dot_general found"
    assert all(p == (highest, highest) for p in precisions), precisions
