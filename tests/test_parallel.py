"""Device prefetch: the global batches are put on the mesh ahead of the step and change nothing."""

import dataclasses

import jax
import numpy as np
import pytest
from tqdm import tqdm

from imbalance_jax import parallel, train
from imbalance_jax.evaluation.evaluator import evaluate
from imbalance_jax.experiment import ConfigError
from tests.test_train import tiny_config


def _batches(n, consumed):
    for i in range(n):
        consumed.append(i)
        yield {"image": np.full((8, 2), i, np.float32), "label": np.arange(8, dtype=np.int32) + i}


@pytest.mark.parametrize("size", [0, 1, 2, 5])
def test_prefetch_yields_every_batch_in_order_size_ahead(size):
    sharding = parallel.batch_sharded(parallel.create_mesh(4))
    consumed = []
    out = parallel.prefetch_to_mesh(_batches(4, consumed), sharding, size)
    first = next(out)
    assert len(consumed) == min(4, size + 1)  # the first batch plus `size` more already on the devices
    rest = list(out)
    assert len(consumed) == 4
    for i, batch in enumerate([first, *rest]):
        assert batch["image"].sharding == sharding
        np.testing.assert_array_equal(np.asarray(batch["image"]), np.full((8, 2), i, np.float32))
        np.testing.assert_array_equal(np.asarray(batch["label"]), np.arange(8) + i)
    with pytest.raises(ValueError, match="prefetch size=-1 must be >= 0"):
        next(parallel.prefetch_to_mesh(_batches(1, []), sharding, -1))


def _epoch_and_evaluation(exp, device_prefetch):
    exp.options = dataclasses.replace(exp.options, device_prefetch=device_prefetch)
    train_fn, eval_fn = train.compile_steps(exp)
    state, averages = train.train_epoch(exp, train_fn, train.initial_state(exp), 0, tqdm(disable=True))
    result = evaluate(exp, eval_fn, state, "test", collect_embedding=True)
    return jax.device_get(state.params), averages, result


def test_training_and_evaluation_are_bit_identical_with_and_without_prefetch():
    exp = train.build_experiment(tiny_config(num_devices=4))
    params_0, averages_0, result_0 = _epoch_and_evaluation(exp, 0)
    params_2, averages_2, result_2 = _epoch_and_evaluation(exp, 2)
    jax.tree.map(np.testing.assert_array_equal, params_0, params_2)
    assert averages_0 == averages_2
    assert result_0.metrics == result_2.metrics
    np.testing.assert_array_equal(result_0.logits, result_2.logits)
    np.testing.assert_array_equal(result_0.embedding, result_2.embedding)


def test_negative_device_prefetch_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"config.device_prefetch=-1 must be an integer >= 0"):
        train.build_experiment(tiny_config(device_prefetch=-1))
