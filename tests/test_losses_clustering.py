"""Tests for the silk-paper clustering losses (imbalance_jax.losses.clustering): loop parity, correlations, hand
examples. jit/padding/vmap/shard_map/degenerate batches: tests/test_losses_contract.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from imbalance_jax.losses.clustering import (
    colour_similarity_loss,
    colour_similarity_terms,
    histogram_correlation,
    semantic_triplet_loss,
)
from imbalance_jax.losses.distances import l2_normalize
from imbalance_jax.losses.triplet import triplet_loss


def _unit(v):
    n = np.linalg.norm(v)
    return v / n if n > 0 else v * 0.0


def _loop_semantic(emb, labels, valid, margin=1.0):
    """Silk paper Eq. 3 as loops in float64."""
    f = [_unit(e) for e in emb]
    idx = [i for i in range(len(labels)) if valid[i]]
    hinges = []
    for i in idx:
        for p in idx:
            if p == i or labels[p] != labels[i]:
                continue
            for n in idx:
                if labels[n] != labels[i]:
                    d_ip = np.linalg.norm(f[i] - f[p])
                    d_in = np.linalg.norm(f[i] - f[n])
                    hinges.append(max(margin + d_ip - d_in, 0.0))
    return sum(hinges) / len(hinges) if hinges else 0.0


def _loop_colour(emb, hist, valid):
    """Silk paper Eq. 4 as loops in float64; rho = 0 when a histogram is constant."""
    f = [_unit(e) for e in emb]
    idx = [i for i in range(len(emb)) if valid[i]]
    terms = []
    for i in idx:
        for o in idx:
            if i == o:
                continue
            if np.ptp(hist[i]) == 0 or np.ptp(hist[o]) == 0:
                rho = 0.0
            else:
                rho = np.corrcoef(hist[i], hist[o])[0, 1]
            terms.append(abs(np.linalg.norm(f[i] - f[o]) - (1.0 - rho)))
    return sum(terms) / len(terms) if terms else 0.0


def _batch(seed, n=9, d=4, k=25, special_rows=True):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, d))
    labels = rng.integers(0, 3, n)
    valid = rng.random(n) > 0.2
    hist = rng.dirichlet(np.ones(k), size=n)
    if special_rows:
        emb[1] = 0.0  # a zero feature vector
        hist[2] = 1.0 / k  # a constant histogram
    return emb, labels, valid, hist


def test_semantic_matches_loop_float64():
    emb, labels, valid, _ = _batch(0)
    with jax.enable_x64(True):
        got = jax.jit(semantic_triplet_loss)(jnp.asarray(emb), jnp.asarray(labels),
                                             jnp.asarray(valid))
        np.testing.assert_allclose(float(got), _loop_semantic(emb, labels, valid), rtol=1e-9)


def test_semantic_is_triplet_all_on_unit_vectors():
    emb, labels, valid, _ = _batch(1)
    args = (jnp.asarray(emb, jnp.float32), jnp.asarray(labels), jnp.asarray(valid))
    got = semantic_triplet_loss(*args)
    want = triplet_loss(l2_normalize(args[0]), *args[1:], margin=1.0, metric="l2", mining="all")
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got.dtype == jnp.float32 and got.shape == ()


def test_colour_matches_loop_float64():
    emb, _, valid, hist = _batch(2)
    with jax.enable_x64(True):
        got = jax.jit(colour_similarity_loss)(jnp.asarray(emb), jnp.asarray(hist),
                                              jnp.asarray(valid))
        np.testing.assert_allclose(float(got), _loop_colour(emb, hist, valid), rtol=1e-9)


def test_histogram_correlation_matches_numpy():
    _, _, _, hist = _batch(3, n=5)
    rho = np.asarray(histogram_correlation(jnp.asarray(hist, jnp.float32)))
    with np.errstate(invalid="ignore"):
        want = np.corrcoef(hist)
    want[2, :] = want[:, 2] = 0.0  # the constant row
    np.testing.assert_allclose(rho, want, atol=1e-5)


def test_colour_hand_example():
    emb = jnp.array([[1.0, 0.0], [0.0, 3.0]])  # unit vectors at distance sqrt(2)
    h = jnp.array([0.5, 0.3, 0.2])
    same = colour_similarity_loss(emb, jnp.stack([h, h]))  # rho = 1 -> target 0
    np.testing.assert_allclose(same, np.sqrt(2.0), rtol=1e-6)
    opposite = colour_similarity_loss(emb, jnp.stack([h, 1.0 - h]))  # rho = -1 -> target 2
    np.testing.assert_allclose(opposite, 2.0 - np.sqrt(2.0), rtol=1e-5)
    flat = colour_similarity_loss(emb, jnp.stack([h, jnp.full(3, 1 / 3)]))  # rho := 0
    np.testing.assert_allclose(flat, np.sqrt(2.0) - 1.0, rtol=1e-5)
    terms = colour_similarity_terms(emb, jnp.stack([h, h]))
    assert float(terms["num_pairs"]) == 2.0
    np.testing.assert_allclose(terms["mean_distance"], np.sqrt(2.0), rtol=1e-6)


def test_semantic_hand_example():
    # Unit vectors: anchor 0 = e1 and positive 1 = e1 (distance 0), negative 2 = e2 (sqrt 2).
    emb = jnp.array([[2.0, 0.0], [1.0, 0.0], [0.0, 5.0]])
    labels = jnp.array([0, 0, 1])
    # Triplets (0,1,2) and (1,0,2): max(1 + 0 - sqrt(2), 0) = 0 each.
    assert float(semantic_triplet_loss(emb, labels)) == 0.0
    np.testing.assert_allclose(semantic_triplet_loss(emb, labels, margin=2.0), 2.0 - np.sqrt(2.0),
                               rtol=1e-6)


def test_bad_arguments():
    emb = jnp.ones((3, 2))
    with pytest.raises(AssertionError):
        colour_similarity_loss(emb, jnp.ones((3, 25), jnp.int32))
    with pytest.raises(AssertionError):
        colour_similarity_loss(emb, jnp.ones((2, 25)))
    with pytest.raises(AssertionError):
        semantic_triplet_loss(emb, jnp.array([0.0, 1.0, 0.0]))
