"""Tests for the scalable triplet loss (imbalance_jax.losses.triplet): loop parity, the fast vs the dense
formulation, memory. jit/padding/vmap/shard_map/degenerate batches: tests/test_losses_contract.py."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from imbalance_jax.losses.triplet import (
    MINING,
    TRIPLET_METRICS,
    triplet_loss,
    triplet_loss_dense,
    triplet_loss_terms,
)

def _loop_triplet(emb, labels, valid, margin, metric, mining):
    """The mining reductions of docs/design.md §5.3 as plain loops in float64."""
    def dist(a, b):
        if metric == "sq_l2":
            return float(np.sum((a - b) ** 2))
        if metric == "l2":
            return float(np.sqrt(np.sum((a - b) ** 2)))
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        return 1.0 - (0.0 if na == 0 or nb == 0 else float(a @ b / (na * nb)))

    n = len(labels)
    idx = [i for i in range(n) if valid[i]]
    selected = []
    hard = []
    for a in idx:
        pos = [p for p in idx if p != a and labels[p] == labels[a]]
        neg = [m for m in idx if labels[m] != labels[a]]
        if mining == "hard":
            if pos and neg:
                worst = max(dist(emb[a], emb[p]) for p in pos) - min(dist(emb[a], emb[m]) for m in neg)
                hard.append(max(worst + margin, 0.0))
            continue
        for p in pos:
            d_ap = dist(emb[a], emb[p])
            for m in neg:
                d_an = dist(emb[a], emb[m])
                h = max(d_ap + margin - d_an, 0.0)
                if (mining == "all" or (mining == "violating" and h > 0)
                        or (mining == "semihard" and d_ap < d_an < d_ap + margin)):
                    selected.append(h)
    values = hard if mining == "hard" else selected
    return (sum(values) / len(values) if values else 0.0), len(values)


def _batch(seed, n=10, d=3, num_classes=3, p_valid=0.8):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)), rng.integers(0, num_classes, n), rng.random(n) < p_valid)


def _all_minings(fn, metric, **kw):
    """One jitted function returning ``fn`` for every mining (one compile per metric)."""
    return jax.jit(lambda *a: {m: fn(*a, metric=metric, mining=m, **kw) for m in MINING})


def _unit(emb):
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    return np.where(norms > 0, emb / np.where(norms > 0, norms, 1.0), 0.0)


@pytest.mark.parametrize("metric", TRIPLET_METRICS)
def test_normalize_matches_loop_on_unit_vectors_float64(metric):
    """normalize=True is the loop on L2-normalised embeddings (FaceNet), scale-invariant, and not the raw loss."""
    emb, labels, valid = _batch(3, d=4)
    emb = emb * 7.0  # raw features far from unit norm
    with jax.enable_x64(True):
        got = _all_minings(triplet_loss_terms, metric, margin=0.2, normalize=True)(
            jnp.asarray(emb), jnp.asarray(labels), jnp.asarray(valid))
        scaled = _all_minings(triplet_loss_terms, metric, margin=0.2, normalize=True)(
            jnp.asarray(emb * 0.01), jnp.asarray(labels), jnp.asarray(valid))
        dense = jax.jit(functools.partial(triplet_loss_dense, metric=metric, margin=0.2, normalize=True))(
            jnp.asarray(emb), jnp.asarray(labels), jnp.asarray(valid))
        for mining in MINING:
            want, count = _loop_triplet(_unit(emb), labels, valid, 0.2, metric, mining)
            assert count > 0
            np.testing.assert_allclose(float(got[mining]["loss"]), want, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(float(scaled[mining]["loss"]), want, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(float(dense), float(got["violating"]["loss"]), rtol=1e-9)
        raw, _ = _loop_triplet(emb, labels, valid, 0.2, metric, "all")
        if metric != "cosine":  # cosine is scale-free already
            assert abs(raw - float(got["all"]["loss"])) > 1e-3


@pytest.mark.parametrize("metric", TRIPLET_METRICS)
def test_matches_loop_float64(metric):
    emb, labels, valid = _batch(0)
    margin = 0.2 if metric == "sq_l2" else 0.3
    with jax.enable_x64(True):
        got = _all_minings(triplet_loss_terms, metric, margin=margin)(
            jnp.asarray(emb), jnp.asarray(labels), jnp.asarray(valid))
        for mining in MINING:
            want, count = _loop_triplet(emb, labels, valid, margin, metric, mining)
            assert count > 0
            np.testing.assert_allclose(float(got[mining]["loss"]), want, rtol=1e-9)
            assert float(got[mining]["num_selected_triplets"]) == count


@pytest.mark.parametrize("metric", TRIPLET_METRICS)
def test_fast_equals_dense_value_and_grad(metric):
    emb, labels, valid = _batch(1, n=24, d=4, num_classes=4)
    args = (jnp.asarray(emb, jnp.float32), jnp.asarray(labels), jnp.asarray(valid))

    def both(e, y, v, margin):
        out = {}
        for mining in MINING:
            kw = dict(metric=metric, mining=mining, margin=margin)
            out[mining] = (
                jax.value_and_grad(functools.partial(triplet_loss, **kw))(e, y, v),
                jax.value_and_grad(functools.partial(triplet_loss_dense, **kw))(e, y, v),
            )
        return out

    both = jax.jit(both)
    for margin in (0.1, 1.0):  # traced: one compile for both margins
        for mining, ((v_fast, g_fast), (v_dense, g_dense)) in both(*args, margin).items():
            assert v_fast.dtype == jnp.float32 and v_fast.shape == ()
            assert float(v_dense) > 0.0, mining
            np.testing.assert_allclose(v_fast, v_dense, rtol=2e-5, atol=1e-6, err_msg=mining)
            np.testing.assert_allclose(g_fast, g_dense, rtol=1e-4, atol=2e-6, err_msg=mining)


def test_hand_example():
    # 1-D points: anchors 0 (class 0), 1 (class 0), 3 (class 1); sq_l2, margin 2.
    emb = jnp.array([[0.0], [1.0], [3.0]])
    labels = jnp.array([0, 0, 1])
    # Triplets (a, p, n): (0, 1, 2): d_ap = 1, d_an = 9 -> h = max(1 + 2 - 9, 0) = 0
    #                     (1, 0, 2): d_ap = 1, d_an = 4 -> h = 0 ... margin 4 makes it 1.
    loss_all = triplet_loss(emb, labels, margin=4.0, mining="all")
    np.testing.assert_allclose(loss_all, (0.0 + 1.0) / 2)
    np.testing.assert_allclose(triplet_loss(emb, labels, margin=4.0, mining="violating"), 1.0)
    # semihard needs d_ap < d_an < d_ap + margin: only (1, 0, 2) (1 < 4 < 5).
    np.testing.assert_allclose(triplet_loss(emb, labels, margin=4.0, mining="semihard"), 1.0)
    # hard: per anchor with a positive and a negative: anchors 0 and 1 -> (0 + 1) / 2.
    np.testing.assert_allclose(triplet_loss(emb, labels, margin=4.0, mining="hard"), 0.5)
    terms = triplet_loss_terms(emb, labels, margin=4.0, mining="all")
    assert float(terms["num_valid_triplets"]) == 2 and float(terms["num_active_triplets"]) == 1
    np.testing.assert_allclose(terms["fraction_active"], 0.5)


def test_fast_version_never_builds_cubic_buffers():
    # B = 1024: a single B^3 float32 tensor would be 4 GiB. Compile only (no run).
    b, d = 1024, 16
    emb = jax.ShapeDtypeStruct((b, d), jnp.float32)
    labels = jax.ShapeDtypeStruct((b,), jnp.int32)
    for mining in ("violating", "semihard"):
        f = jax.jit(jax.value_and_grad(functools.partial(triplet_loss, mining=mining)))
        mem = f.lower(emb, labels).compile().memory_analysis()
        if mem is None:
            pytest.skip("memory_analysis unavailable on this backend")
        assert mem.temp_size_in_bytes < 64 * b * b * 4  # O(B^2): well under B^3 * 4 / 16


def test_bad_arguments():
    emb, labels = jnp.ones((3, 2)), jnp.array([0, 1, 0])
    with pytest.raises(ValueError, match="metric must be one of"):
        triplet_loss(emb, labels, metric="l1")
    with pytest.raises(ValueError, match="mining must be one of"):
        triplet_loss(emb, labels, mining="batch_all")
    with pytest.raises(AssertionError):
        triplet_loss(emb, jnp.array([0, 1]))
