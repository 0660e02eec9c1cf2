"""Tests for imbalance_jax.losses.batch: input checks, the padding mask and the global-batch gather."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from imbalance_jax.losses.batch import check_embeddings_labels_valid, gather_global_batch, resolve_valid


def test_resolve_valid():
    np.testing.assert_array_equal(resolve_valid(None, 3), [True, True, True])
    out = resolve_valid(jnp.array([1, 0]), 2)
    assert out.dtype == jnp.bool_
    np.testing.assert_array_equal(out, [True, False])


def test_check_embeddings_labels_valid_rejects_bad_inputs():
    emb = jnp.ones((3, 2))
    labels = jnp.array([0, 1, 2])
    check_embeddings_labels_valid(emb, labels, None)
    check_embeddings_labels_valid(emb, labels, jnp.ones(3, bool))
    bad_calls = [
        (jnp.ones((3,)), labels, None),                 # embeddings rank
        (jnp.ones((3, 2), jnp.int32), labels, None),    # integer embeddings
        (emb, labels.astype(jnp.float32), None),        # float labels
        (emb, jnp.array([0, 1]), None),                 # batch mismatch
        (emb, labels, jnp.ones(3)),                     # float valid
        (emb, labels, jnp.ones(2, bool)),               # valid batch mismatch
    ]
    for args in bad_calls:
        with pytest.raises(AssertionError):
            check_embeddings_labels_valid(*args)


def test_gather_global_batch_identity_without_axis():
    a, b = jnp.ones(3), jnp.zeros(2)
    out = gather_global_batch(None, a, b)
    assert out[0] is a and out[1] is b


def test_gather_global_batch_in_shard_map():
    mesh = jax.make_mesh((4,), ("data",))
    x = jnp.arange(8.0).reshape(8, 1)
    xs = jax.device_put(x, NamedSharding(mesh, P("data")))

    def body(local):
        (full,) = gather_global_batch("data", local)
        return jnp.sum(full * jnp.arange(8.0)[:, None] ** 2)

    f = jax.jit(jax.shard_map(body, mesh=mesh, in_specs=P("data"), out_specs=P()))
    with jax.set_mesh(mesh):
        value = f(xs)
        grad = np.asarray(jax.grad(f)(xs))
    assert float(value) == float(jnp.sum(x[:, 0] * jnp.arange(8.0) ** 2))
    np.testing.assert_allclose(grad[:, 0], np.arange(8.0) ** 2)
