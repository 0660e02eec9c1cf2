"""End-to-end training tests on the embedded digits data (tiny budgets)."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from sklearn.datasets import load_digits

from configs import default as default_config
from imbalance_jax import train
from imbalance_jax import parallel
from imbalance_jax.experiment import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**overrides):
    config = default_config.get_config()
    config.num_epochs = 1
    # One device unless a test asks for more: the multi-device tests name their device count. (Four fake CPU
    # devices on two cores make XLA's in-process all-reduce slow to rendezvous; keep them to the tests about it.)
    config.num_devices = 1
    config.disable_progress_bar = True
    config.batch_size = 32
    config.eval_batch_size = 64
    return override(config, **overrides)


def override(config, **fields):
    """Sets each dotted ``fields`` path of ``config`` (e.g. ``**{"loss.aux.asl.weight": 0.0}``); returns it."""
    for key, value in fields.items():
        target = config
        *path, leaf = key.split(".")
        for p in path:
            target = target[p]
        target[leaf] = value
    return config


def test_one_epoch_end_to_end_writes_every_output(tmp_path):
    metrics = train.train_and_evaluate(tiny_config(), str(tmp_path))
    for name in ("metrics.json", "report.md", "class_counts.json", "config.json", "confusion_train.png",
                 "confusion_test.png", "embedding_train.png", "embedding_test.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert set(written) >= {"train", "val", "test", "imbalance"}
    counts = json.loads((tmp_path / "class_counts.json").read_text())
    digits_per_class = np.bincount(load_digits().target)
    assert counts["test"] == [round(0.2 * n) for n in digits_per_class]  # 20% of each class, before the imbalance
    assert written["test"]["num_examples"] == sum(counts["test"])  # every test example evaluated exactly once
    confusion = np.asarray(written["test"]["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum(1).tolist() == counts["test"]
    assert np.diag(confusion).sum() / confusion.sum() == pytest.approx(written["test"]["accuracy"])
    sample = np.load(tmp_path / "embedding_test.npz")
    assert sample["embedding"].shape == (sum(counts["test"]), 2) and str(sample["layer"]) == "head_last"
    assert np.array_equal(np.bincount(sample["labels"], minlength=10), counts["test"])
    assert written["val"]["num_examples"] == 100
    for key in ("accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1", "per_class_f1",
                "minority_f1", "many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy"):
        assert key in written["test"], key
    # n_c = int(n_max * 10^(-c/9)): the integer rounding makes the realised ratio a little above 10.
    assert written["imbalance"]["imbalance_ratio"] == pytest.approx(counts["train"][0] / counts["train"][-1])
    assert 10 <= written["imbalance"]["imbalance_ratio"] < 11
    assert counts["val"] == [10] * 10
    assert metrics["test"]["accuracy"] == written["test"]["accuracy"]
    assert os.listdir(tmp_path / "tensorboard")
    assert os.listdir(tmp_path / "checkpoints")
    assert "balanced_accuracy" in (tmp_path / "report.md").read_text()


def _params_after_steps(num_devices: int, steps: int = 3):
    # SGD: Adam's g/sqrt(v) turns float-summation-order noise of near-zero gradients into visible differences.
    config = tiny_config(num_devices=num_devices, batch_size=32, **{"optimizer.name": "sgd",
                                                                     "optimizer.learning_rate": 0.1})
    exp = train.build_experiment(config)
    state = train.initial_state(exp)
    train_fn, _ = train.compile_steps(exp)
    batches = train.train_batches(exp.splits.train, exp.train_options, num_classes=exp.splits.num_classes,
                                  sampler="random", seed=0, epoch=0, num_epochs=1)
    for _, batch in zip(range(steps), batches):
        state, metrics = train_fn(state, parallel.to_global(batch, exp.data_sharding))
    assert exp.mesh.size == num_devices
    return jax.device_get(state.params), float(metrics["loss"])


def test_same_params_on_one_and_four_devices():
    assert jax.device_count() == 4, "conftest.py fakes four CPU devices"
    params_1, loss_1 = _params_after_steps(1)
    params_4, loss_4 = _params_after_steps(4)
    assert loss_1 == pytest.approx(loss_4, rel=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), params_1, params_4)


def test_interrupted_then_resumed_run_matches_uninterrupted(tmp_path):
    config = tiny_config(num_epochs=2, num_devices=4, **{"data.sampler": "class_balanced", "model.dropout": 0.1,
                                          "data.augment.crop_padding": 1, "loss.class_weighting.name": "cdb"})
    full = train.train_and_evaluate(config, str(tmp_path / "full"))
    assert train.train_and_evaluate(config, str(tmp_path / "resumed"), stop_after_epoch=1) == {}
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    resumed = train.train_and_evaluate(config, str(tmp_path / "resumed"))
    assert resumed == full
    # Running a finished workdir again resumes at the end and only re-evaluates.
    assert train.train_and_evaluate(config, str(tmp_path / "full")) == full


def test_early_stopping_stops_and_evaluates_best_epoch(tmp_path):
    config = tiny_config(num_epochs=30, **{"early_stopping.enabled": True, "early_stopping.patience": 1,
                                           "optimizer.learning_rate": 0.05, "optimizer.schedule": "constant"})
    metrics = train.train_and_evaluate(config, str(tmp_path))
    assert metrics["stopped_early"] is True
    assert metrics["epochs_trained"] < 30


@pytest.mark.parametrize("field, value, message", [
    ("data.name", "imagenet22k", "config.data.name='imagenet22k' is not valid; allowed: ['celeb_a'"),
    ("model.name", "resnet9000", "config.model.name='resnet9000' is not valid; allowed:"),
    ("loss.name", "hinge", "config.loss.name='hinge' is not valid; allowed: ['ce', 'focal'"),
    ("optimizer.name", "lamb", "config.optimizer.name='lamb' is not valid; allowed: ['adam', 'adamw', 'sgd']"),
    ("optimizer.schedule", "exp", "config.optimizer.schedule='exp' is not valid"),
    ("eval_batch_size", 0, "config.eval_batch_size=0 must be a positive integer"),
    ("batch_size", 4096, "config.batch_size=4096 is larger than the training set"),
    ("num_epochs", 0, "config.num_epochs=0 must be a positive integer"),
    ("data.imbalance.ratio", 0.5, "config.data.imbalance.ratio=0.5 must be >= 1"),
    ("data.imbalance.profile", "zipf", "config.data.imbalance.profile='zipf' is not valid"),
    ("data.sampler", "oversample", "config.data.sampler='oversample' is not valid"),
    ("data.label_noise", 1.5, "config.data.label_noise=1.5 must be in [0, 1)"),
    ("loss.class_weighting.name", "magic", "config.loss.class_weighting.name='magic' is not valid; allowed:"),
    ("loss.aux.asl.weight", -1.0, "config.loss.aux.asl.weight=-1.0 must be >= 0"),
    ("loss.aux.asl.layers", ("head_7",), "config.loss.aux.asl.layers: 'head_7' is not a feature"),
    ("loss.aux.asl.metric", "sq_l2", "config.loss.aux.asl: metric must be one of"),
    ("model.head_activation", "swish", "config.model.head_activation"),
    ("num_devices", 8, "config.num_devices=8 but only 4 devices are available"),
    ("evaluation.embedding_layer", "nope", "config.evaluation.embedding_layer='nope'"),
])
def test_bad_config_stops_with_a_clear_message(tmp_path, field, value, message):
    config = tiny_config(**{field: value})
    with pytest.raises((ConfigError, ValueError), match=None) as info:
        train.train_and_evaluate(config, str(tmp_path))
    assert message in str(info.value)
    assert not (tmp_path / "checkpoints").exists() or not os.listdir(tmp_path / "checkpoints")


def test_batch_size_not_divisible_by_the_device_count_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"config.batch_size=30 is not divisible by the number of devices \(4\)"):
        train.train_and_evaluate(tiny_config(num_devices=4, batch_size=30), str(tmp_path))


def test_unknown_aux_loss_is_rejected(tmp_path):
    config = tiny_config()
    config.loss.aux.centre = {"weight": 1.0}
    with pytest.raises(ConfigError, match=r"config.loss.aux.centre: unknown auxiliary loss; allowed: \['affinity', 'asl'"):
        train.train_and_evaluate(config, str(tmp_path))


def test_main_reports_config_errors_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "imbalance_jax.main", "--config=configs/default.py", f"--workdir={tmp_path}",
         "--config.loss.name=hinge"], cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert result.returncode != 0
    assert "error: config.loss.name='hinge' is not valid; allowed:" in result.stderr
    assert "Traceback" not in result.stderr


def test_multistep_schedule_with_warmup_follows_the_cifar_lt_protocol():
    from imbalance_jax import optim
    _, schedule = optim.create_optimizer("sgd", 0.1, steps_per_epoch=10, num_epochs=200, schedule="multistep",
                                         warmup_epochs=5, boundaries=(160, 180), decay_factors=(0.01, 0.0001),
                                         momentum=0.9, weight_decay=2e-4)
    assert float(schedule(0)) == pytest.approx(0.1 / 50)  # linear warm-up over 5 epochs
    assert float(schedule(49)) == pytest.approx(0.1 * 50 / 50, rel=0.03)
    assert float(schedule(1000)) == pytest.approx(0.1)
    assert float(schedule(1700)) == pytest.approx(0.1 * 0.01)
    assert float(schedule(1900)) == pytest.approx(0.1 * 0.0001)


def test_pretrained_backbone_is_loaded_from_a_local_file(tmp_path):
    from imbalance_jax import models
    config = tiny_config()
    exp = train.build_experiment(config)
    state = train.initial_state(exp)
    shifted = jax.tree.map(lambda x: np.asarray(x) + 1.0, state.params)
    models.save_npz({"params": shifted, "batch_stats": jax.device_get(state.batch_stats)}, str(tmp_path / "w.npz"))
    config.model.pretrained_path = str(tmp_path / "w.npz")
    loaded = train.initial_state(train.build_experiment(config))
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(loaded.params["backbone"]), shifted["backbone"])
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(loaded.params["head"]),
                 jax.device_get(state.params["head"]))  # only the backbone prefix is loaded
    config.model.pretrained_path = str(tmp_path / "missing.npz")
    with pytest.raises(ConfigError, match="missing.npz"):
        train.initial_state(train.build_experiment(config))
