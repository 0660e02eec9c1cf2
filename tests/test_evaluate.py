"""python -m imbalance_jax.evaluate, the saved logits and the post-hoc corrections (logit adjustment, TDE alpha)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from imbalance_jax import evaluate, train
from imbalance_jax.evaluation import posthoc
from test_train import REPO, tiny_config


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    config = tiny_config(num_epochs=3, **{"checkpoint.evaluate_best": True,
                                          "checkpoint.best_metric": "val_balanced_accuracy"})
    metrics = train.train_and_evaluate(config, str(workdir))
    return workdir, metrics


def test_evaluate_reproduces_the_runs_metrics_from_its_best_checkpoint(finished_run):
    workdir, metrics = finished_run
    again = evaluate.evaluate_run(str(workdir), "best")
    written = json.loads((workdir / "eval_best" / "metrics.json").read_text())
    assert written == json.loads((workdir / "metrics.json").read_text())
    assert again["test"] == metrics["test"] and again["posthoc"] == metrics["posthoc"]
    for split in ("val", "test"):
        saved = np.load(workdir / "eval_best" / f"logits_{split}.npz")
        assert saved["logits"].shape == (len(saved["labels"]), 10) and saved["features"].shape[1] == 2
        confusion = posthoc.confusion_from_predictions(saved["labels"], saved["logits"].argmax(1), 10)
        np.testing.assert_array_equal(confusion, metrics[split]["confusion"])
        np.testing.assert_array_equal(saved["logits"], np.load(workdir / f"logits_{split}.npz")["logits"])
    assert (workdir / "eval_best" / "report.md").read_text().count("Post-hoc corrections") == 1


def test_evaluate_other_checkpoints_and_splits(finished_run):
    workdir, _ = finished_run
    latest = evaluate.evaluate_run(str(workdir), "latest", ("test",))
    assert set(latest) >= {"test"} and "train" not in latest and latest["evaluated_epoch"] == 3
    by_epoch = evaluate.evaluate_run(str(workdir), "3", ("test",))
    assert by_epoch["test"] == latest["test"]
    with pytest.raises(evaluate.EvaluateError, match=r"--checkpoint='1': allowed: best, latest or one of the "
                                                     r"epochs kept in .*\[2, 3\]"):
        evaluate.evaluate_run(str(workdir), "1")
    with pytest.raises(evaluate.EvaluateError, match=r"--split=test,dev: allowed"):
        evaluate.evaluate_run(str(workdir), "best", ("test", "dev"))


def test_evaluate_cli_errors_are_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "imbalance_jax.evaluate", f"--workdir={tmp_path}"], cwd=REPO,
                            capture_output=True, text=True, timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode != 0
    assert f"error: --workdir={tmp_path}: no config.json there" in result.stderr
    assert "Traceback" not in result.stderr


def test_logit_adjustment_formula_and_choice_on_val():
    counts = np.array([90, 9, 1])
    logits = np.log(np.array([[0.5, 0.3, 0.2], [0.6, 0.35, 0.05]]))
    adjusted = posthoc.adjust_logits(logits, counts, 1.0)
    np.testing.assert_allclose(adjusted, logits - np.log(counts / 100.0))
    np.testing.assert_allclose(posthoc.adjust_logits(logits, counts, 0.0), logits)
    assert posthoc.sweep_choice({0.0: 0.5, 0.5: 0.7, 1.0: 0.7}) == 0.5  # ties: the smaller correction
    # A head-biased model: every class-1/2 example scores class 0 a little higher; adjustment recovers them.
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    base = rng.normal(0, 0.1, (60, 3))
    base[np.arange(60), labels] += 1.0
    base[:, 0] += 1.5
    result = posthoc.logit_adjustment({"val": (base, labels), "test": (base[::-1], labels[::-1])}, counts)
    assert result["tau"] > 0 and result["selected_on"] == "val"
    assert result["metrics"]["test"]["balanced_accuracy"] > result["grid"]["test"]["0"]
    assert set(result["grid"]["val"]) == {f"{t:g}" for t in posthoc.DEFAULT_TAUS}


def test_tde_alpha_is_swept_without_retraining(tmp_path):
    config = tiny_config(num_epochs=1, **{"model.classifier": "tde", "model.head_widths": (8, 4),
                                          "loss.aux.asl.weight": 0.0, "evaluation.embedding_layer": "head_last"})
    metrics = train.train_and_evaluate(config, str(tmp_path))
    tde = metrics["posthoc"]["tde_alpha"]
    assert tde["alpha"] in train.TDE_ALPHAS and set(tde["grid"]["test"]) == {f"{a:g}" for a in train.TDE_ALPHAS}
    # The configured alpha (1.5) is the plain evaluation.
    assert tde["grid"]["test"]["1.5"] == pytest.approx(metrics["test"]["balanced_accuracy"])
    assert "TDE strength" in (tmp_path / "report.md").read_text()


def test_tensorboard_has_hparams_and_images(finished_run):
    import tensorflow as tf

    workdir, _ = finished_run
    tags, plugins = set(), set()
    for path in (workdir / "tensorboard").glob("events.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tags.add(value.tag)
                plugins.add(value.metadata.plugin_data.plugin_name)
    assert {"test/confusion_matrix", "test/long_tail", "val/balanced_accuracy", "train/loss"} <= tags
    assert "hparams" in plugins and "images" in plugins
