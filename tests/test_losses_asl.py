"""Tests for the Aggregation-Separation Loss (imbalance_jax.losses.aggregation_separation): loop parity, hand
examples, weights, layers. jit/padding/vmap/shard_map/degenerate batches: tests/test_losses_contract.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from imbalance_jax.losses.aggregation_separation import (
    ASL_METRICS,
    aggregation_separation_loss,
    aggregation_separation_terms,
    multi_layer_aggregation_separation_loss,
)


def _loop_asl(emb, labels, valid, metric, constraint, include_self_pairs,
              w_in=1e-3, w_out=1e-3, w_b=1e-2):
    """Paper Eqs. 1-6 as plain loops in float64."""
    def dist(a, b):
        if metric == "l1":
            return float(np.sum(np.abs(a - b)))
        if metric == "l2":
            return float(np.sqrt(np.sum((a - b) ** 2)))
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        return 1.0 - (0.0 if na == 0 or nb == 0 else float(a @ b / (na * nb)))

    idx = [i for i in range(len(labels)) if valid[i]]
    inner_sum = inner_n = outer_sum = outer_n = 0.0
    for a, i in enumerate(idx):
        for j in idx[a:]:
            if i == j and not include_self_pairs:
                continue
            d = 0.0 if i == j else dist(emb[i], emb[j])
            if labels[i] == labels[j]:
                inner_sum, inner_n = inner_sum + d, inner_n + 1
            else:
                outer_sum, outer_n = outer_sum + d, outer_n + 1
    ord_ = 1 if metric == "l1" else 2
    bound = [abs(np.linalg.norm(emb[i], ord=ord_) - constraint) for i in idx]
    inner = inner_sum / inner_n if inner_n else 0.0
    outer = outer_sum / outer_n if outer_n else 0.0
    boundary = float(np.mean(bound)) if bound else 0.0
    return {"inner": inner, "outer": outer, "boundary": boundary,
            "total": w_in * inner - w_out * outer + w_b * boundary}


def _random_batch(seed, n=9, d=3, num_classes=3):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, d))
    labels = rng.integers(0, num_classes, n)
    valid = rng.random(n) > 0.25
    return emb, labels, valid


@pytest.mark.parametrize("metric", ASL_METRICS)
@pytest.mark.parametrize("include_self_pairs", [True, False])
def test_matches_loop_float64(metric, include_self_pairs):
    emb, labels, valid = _random_batch(0)
    emb[2] = 0.0  # a zero representation
    want = _loop_asl(emb, labels, valid, metric, 0.7, include_self_pairs)
    with jax.enable_x64(True):
        got = aggregation_separation_terms(
            jnp.asarray(emb), jnp.asarray(labels), jnp.asarray(valid), metric=metric,
            constraint=0.7, include_self_pairs=include_self_pairs,
        )
        for k in want:
            np.testing.assert_allclose(float(got[k]), want[k], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("metric", ASL_METRICS)
def test_float32_close_to_loop(metric):
    emb, labels, _ = _random_batch(1, n=7)
    want = _loop_asl(emb, labels, np.ones(7, bool), metric, 1.0, True)
    got = aggregation_separation_terms(
        jnp.asarray(emb, jnp.float32), jnp.asarray(labels), metric=metric
    )
    assert got["total"].dtype == jnp.float32 and got["total"].shape == ()
    for k in want:
        np.testing.assert_allclose(float(got[k]), want[k], rtol=1e-5, atol=1e-6)


def test_hand_example():
    # Two classes on a line: r = 0, 2 (class 0) and 5 (class 1); metric l2, constraint 1.
    emb = jnp.array([[0.0], [2.0], [5.0]])
    labels = jnp.array([0, 0, 1])
    t = aggregation_separation_terms(emb, labels, inner_weight=1.0, outer_weight=1.0,
                                     boundary_weight=1.0)
    # inner pairs i<=j same class: (0,0)=0, (0,1)=2, (1,1)=0, (2,2)=0 -> 2/4.
    # outer pairs: (0,2)=5, (1,2)=3 -> 4.  boundary: |0-1|, |2-1|, |5-1| -> 2.
    np.testing.assert_allclose([t["inner"], t["outer"], t["boundary"], t["total"]],
                               [0.5, 4.0, 2.0, 0.5 - 4.0 + 2.0], rtol=1e-6)
    t2 = aggregation_separation_terms(emb, labels, include_self_pairs=False)
    np.testing.assert_allclose(t2["inner"], 2.0)


def test_default_weights_are_paper_values():
    emb, labels, valid = _random_batch(2)
    t = aggregation_separation_terms(jnp.asarray(emb, jnp.float32), jnp.asarray(labels),
                                     jnp.asarray(valid))
    want = 1e-3 * t["inner"] - 1e-3 * t["outer"] + 1e-2 * t["boundary"]
    np.testing.assert_allclose(t["total"], want, rtol=1e-6)
    np.testing.assert_allclose(
        aggregation_separation_loss(jnp.asarray(emb, jnp.float32), jnp.asarray(labels),
                                    jnp.asarray(valid)), t["total"], rtol=1e-6)


def test_multi_layer_sums_layers():
    rng = np.random.default_rng(6)
    feats = {"fc1": jnp.asarray(rng.normal(size=(5, 4)), jnp.float32),
             "fc2": jnp.asarray(rng.normal(size=(5, 2, 1)), jnp.float32),
             "logits": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)}
    labels = jnp.array([0, 1, 0, 1, 1])
    got = multi_layer_aggregation_separation_loss(feats, ["fc1", "fc2"], labels, metric="l1")
    want = (aggregation_separation_loss(feats["fc1"], labels, metric="l1")
            + aggregation_separation_loss(feats["fc2"].reshape(5, 2), labels, metric="l1"))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    with pytest.raises(ValueError, match="not in features"):
        multi_layer_aggregation_separation_loss(feats, ["fc3"], labels)
    with pytest.raises(ValueError, match="non-empty"):
        multi_layer_aggregation_separation_loss(feats, [], labels)


def test_bad_arguments():
    emb, labels = jnp.ones((3, 2)), jnp.array([0, 1, 0])
    with pytest.raises(ValueError, match="metric must be one of"):
        aggregation_separation_loss(emb, labels, metric="sq_l2")
    with pytest.raises(AssertionError):
        aggregation_separation_loss(emb, labels.astype(jnp.float32))
