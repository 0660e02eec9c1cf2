"""Tests of the logit-based metrics (top-k accuracy, ECE, G-mean), their plots (reliability diagram, long-tail
plot) and the report's treatment of empty shot groups and of the new metrics.

Every metric is checked against scikit-learn / SciPy or a hand computation written out in the test.
"""
import json
import math
import os

import numpy as np
import pytest
from matplotlib.figure import Figure
from scipy import stats
from sklearn import metrics as skm

from imbalance_jax.evaluation import (
    classification_metrics,
    expected_calibration_error,
    format_metrics_table,
    g_mean,
    imbalance_statistics,
    logit_metrics,
    plot_long_tail,
    plot_reliability_diagram,
    top_k_accuracy,
    write_report,
)
from imbalance_jax.evaluation.plots import draw_long_tail, draw_reliability_diagram

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _assert_png(path):
    assert os.path.getsize(path) > 1000
    with open(path, "rb") as handle:
        assert handle.read(8) == PNG_MAGIC


# ---------------------------------------------------------------------------------- top-k accuracy
@pytest.mark.parametrize("num_classes", [3, 7, 20])
def test_top_k_accuracy_matches_sklearn(num_classes):
    rng = np.random.default_rng(num_classes)
    labels = rng.integers(0, num_classes, 300)
    logits = rng.normal(size=(300, num_classes))
    logits[np.arange(300), labels] += rng.uniform(0.0, 2.0, 300)  # better than chance, no ties
    assert top_k_accuracy(logits, labels, k=num_classes) == 1.0   # sklearn warns that k = C is meaningless
    for k in range(1, num_classes):
        expected = skm.top_k_accuracy_score(labels, logits, k=k, labels=range(num_classes))
        assert top_k_accuracy(logits, labels, k=k) == pytest.approx(expected, abs=1e-12), k
        assert top_k_accuracy(_softmax(logits), labels, k=k) == pytest.approx(expected, abs=1e-12), k
    assert top_k_accuracy(logits, labels, k=1) == pytest.approx(np.mean(logits.argmax(1) == labels))


def test_top_k_accuracy_breaks_ties_toward_the_lower_class_like_argmax():
    scores = np.array([[1.0, 1.0, 1.0, 0.0],    # tie of 0, 1, 2: top-2 = {0, 1}
                       [0.0, 2.0, 2.0, 2.0]])   # tie of 1, 2, 3: top-2 = {1, 2}
    assert top_k_accuracy(scores, np.array([1, 3]), k=2) == 0.5   # hit (1 in {0, 1}), miss (3 not in {1, 2})
    assert top_k_accuracy(scores, np.array([2, 2]), k=2) == 0.5
    assert top_k_accuracy(scores, np.array([0, 1]), k=1) == 1.0   # = argmax
    assert top_k_accuracy(scores, np.array([3, 0]), k=4) == 1.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(k=0), r"k must be an int in \[1, 4\]"),
    (dict(k=5), r"k must be an int in \[1, 4\]"),
    (dict(k=True), "k must be"),
    (dict(labels=np.array([0, 4])), r"labels must lie in \[0, 4\)"),
    (dict(labels=np.array([0, 1, 2])), "labels must be int"),
    (dict(labels=np.array([0.0, 1.0])), "labels must be integers"),
    (dict(scores=np.array([[0.0, np.nan, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])), "scores must be finite"),
    (dict(scores=np.zeros(4)), r"scores must be a non-empty float \[N, C\]"),
])
def test_top_k_accuracy_rejects_bad_input(kwargs, match):
    args = dict(scores=np.zeros((2, 4)), labels=np.array([0, 1]), k=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        top_k_accuracy(args["scores"], args["labels"], k=args["k"])


# ---------------------------------------------------------------------------- calibration error
def test_ece_hand_computed_three_bins():
    # Bins (0, 1/3], (1/3, 2/3], (2/3, 1]; a confidence of exactly 1/3 belongs to the first bin.
    probs = np.array([
        [0.90, 0.05, 0.05],   # label 0: confidence 0.9, correct  -> bin 2
        [0.10, 0.80, 0.10],   # label 0: confidence 0.8, wrong    -> bin 2
        [0.60, 0.30, 0.10],   # label 0: confidence 0.6, correct  -> bin 1
        [0.25, 0.50, 0.25],   # label 2: confidence 0.5, wrong    -> bin 1
        [1 / 3, 1 / 3, 1 / 3],  # label 1: argmax 0 (tie -> lower index), wrong, confidence 1/3 -> bin 0
        [0.20, 0.40, 0.40],   # label 1: argmax 1 (tie), correct, confidence 0.4 -> bin 1
    ])
    labels = np.array([0, 0, 0, 2, 1, 1])
    got = expected_calibration_error(probs, labels, num_bins=3)
    assert got["bin_count"] == [1, 3, 2]
    np.testing.assert_allclose(got["bin_confidence"], [1 / 3, 0.5, 0.85])
    np.testing.assert_allclose(got["bin_accuracy"], [0.0, 2 / 3, 0.5])
    # ECE = 1/6·|0 − 1/3| + 3/6·|2/3 − 1/2| + 2/6·|1/2 − 0.85| = 1/18 + 1/12 + 7/60 = 46/180.
    assert got["ece"] == pytest.approx(46 / 180, abs=1e-12)
    np.testing.assert_allclose(got["bin_edges"], [0.0, 1 / 3, 2 / 3, 1.0])
    assert got["num_bins"] == 3


def test_ece_fifteen_bins_hand_computed_with_empty_bins():
    # Confidences 0.95 (bin 14), 0.95, 0.72 (bin 10: (10/15, 11/15] = (0.667, 0.733]) and 0.5 (bin 7).
    probs = np.array([[0.95, 0.05], [0.05, 0.95], [0.72, 0.28], [0.5, 0.5]])
    labels = np.array([0, 0, 1, 0])   # correct, wrong, wrong, correct (tie -> class 0)
    got = expected_calibration_error(probs, labels)
    assert got["num_bins"] == 15 and len(got["bin_edges"]) == 16
    expected_counts = [0] * 15
    expected_counts[14], expected_counts[10], expected_counts[7] = 2, 1, 1
    assert got["bin_count"] == expected_counts
    assert [m for m, c in enumerate(got["bin_confidence"]) if c is None] == [m for m in range(15)
                                                                             if expected_counts[m] == 0]
    # ECE = 2/4·|0.5 − 0.95| + 1/4·|0 − 0.72| + 1/4·|1 − 0.5| = 0.225 + 0.18 + 0.125 = 0.53.
    assert got["ece"] == pytest.approx(0.53, abs=1e-12)
    json.dumps(got, allow_nan=False)


def test_ece_matches_a_loop_over_guo_et_al_eq_3():
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(500, 6)) * 2.0
    labels = rng.integers(0, 6, 500)
    probs = _softmax(logits)
    got = expected_calibration_error(probs, labels, num_bins=15)
    conf, pred = probs.max(1), probs.argmax(1)
    expected = 0.0
    for m in range(1, 16):
        in_bin = (conf > (m - 1) / 15) & (conf <= m / 15)
        if in_bin.any():
            expected += in_bin.sum() / 500 * abs(np.mean(pred[in_bin] == labels[in_bin]) - conf[in_bin].mean())
    assert got["ece"] == pytest.approx(expected, abs=1e-12)
    assert sum(got["bin_count"]) == 500
    # A perfectly calibrated toy case: confidence 1 and always right.
    assert expected_calibration_error(np.eye(4), np.arange(4))["ece"] == 0.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(probs=np.array([[0.5, 0.6], [0.5, 0.5]])), "probs must be probabilities"),
    (dict(probs=np.array([[2.0, -1.0], [0.5, 0.5]])), "probs must be probabilities"),
    (dict(num_bins=0), "num_bins must be a positive int"),
    (dict(num_bins=2.5), "num_bins must be a positive int"),
    (dict(labels=np.array([0, 2])), r"labels must lie in \[0, 2\)"),
])
def test_ece_rejects_bad_input(kwargs, match):
    args = dict(probs=np.array([[0.5, 0.5], [0.2, 0.8]]), labels=np.array([0, 1]), num_bins=15)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        expected_calibration_error(args["probs"], args["labels"], num_bins=args["num_bins"])


# ---------------------------------------------------------------------------------------- G-mean
def test_g_mean_hand_computed_and_against_scipy():
    assert g_mean([0.5, 0.8, 1.0]) == pytest.approx(0.4 ** (1 / 3), abs=1e-12)
    assert g_mean([0.25, None, 1.0]) == pytest.approx(0.5, abs=1e-12)   # None (absent class) is left out
    assert g_mean([0.9, 0.0, 1.0]) == 0.0                                # a never-recognised class
    assert g_mean([0.9, 0.0, 1.0], correction=0.1) == pytest.approx(0.09 ** (1 / 3), abs=1e-12)
    assert g_mean([None, None]) is None and g_mean([]) is None
    rng = np.random.default_rng(0)
    recall = rng.uniform(0.01, 1.0, 1000)   # the product underflows float64; the log form does not
    assert g_mean(recall) == pytest.approx(stats.gmean(recall), rel=1e-12)


def test_g_mean_of_predictions_matches_imbalanced_learns_formula_with_sklearn_recalls():
    # imbalanced-learn: geometric_mean_score(y, p, average="multiclass") = gmean(recall_score(y, p, average=None)),
    # with zero recalls replaced by `correction`; labels = the classes present in y_true (as here).
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 5, 400)
    y_pred = np.where(rng.uniform(size=400) < 0.7, y_true, rng.integers(0, 5, 400))
    recalls = skm.recall_score(y_true, y_pred, average=None, labels=range(5))
    logits = np.eye(5)[y_pred] * 3.0
    got = logit_metrics(logits, y_true)["g_mean"]
    assert got == pytest.approx(stats.gmean(recalls), rel=1e-12)
    conf = skm.confusion_matrix(y_true, y_pred, labels=range(5))
    assert g_mean(classification_metrics(conf, [100] * 5)["per_class_recall"]) == pytest.approx(got, rel=1e-12)


def test_g_mean_rejects_bad_input():
    with pytest.raises(ValueError, match="per_class_recall must hold values in"):
        g_mean([0.5, 1.5])
    with pytest.raises(ValueError, match="per_class_recall must be a 1-D sequence"):
        g_mean([[0.5, 0.5]])
    with pytest.raises(ValueError, match=r"correction must be in \[0, 1\]"):
        g_mean([0.5], correction=2.0)


# --------------------------------------------------------------------------------- logit_metrics
@pytest.mark.parametrize("num_classes", [5, 6, 10])
def test_logit_metrics_values_keys_and_merge(num_classes):
    rng = np.random.default_rng(num_classes)
    labels = rng.integers(0, num_classes, 250)
    logits = rng.normal(size=(250, num_classes))
    logits[np.arange(250), labels] += 2.5
    got = logit_metrics(logits.astype(np.float32), labels)
    expected_keys = {"expected_calibration_error", "calibration", "g_mean"}
    if num_classes > 5:
        expected_keys.add("top_5_accuracy")
        assert got["top_5_accuracy"] == pytest.approx(
            skm.top_k_accuracy_score(labels, logits, k=5, labels=range(num_classes)), abs=1e-12)
    assert set(got) == expected_keys   # top-5 only when C > 5
    probs = _softmax(logits.astype(np.float32).astype(np.float64))
    assert got["expected_calibration_error"] == pytest.approx(expected_calibration_error(probs, labels)["ece"],
                                                              abs=1e-12)
    assert got["calibration"]["ece"] == got["expected_calibration_error"]
    recalls = skm.recall_score(labels, logits.argmax(1), average=None, labels=range(num_classes))
    assert got["g_mean"] == pytest.approx(stats.gmean(recalls), rel=1e-9)
    confusion = skm.confusion_matrix(labels, logits.argmax(1), labels=range(num_classes))
    base = classification_metrics(confusion, [50] * num_classes)
    assert not set(base) & set(got)   # merges without overwriting anything
    json.dumps({**base, **got}, allow_nan=False)


def test_logit_metrics_large_logits_custom_k_and_non_finite():
    logits = np.array([[1e4, 0.0, -1e4, 0.0], [0.0, 3e3, 0.0, 0.0]])   # float64 softmax: no overflow
    got = logit_metrics(logits, np.array([0, 2]), k=2, num_bins=10)
    assert got["top_2_accuracy"] == 0.5 and got["calibration"]["num_bins"] == 10
    assert got["expected_calibration_error"] == pytest.approx(0.5)   # conf 1 right, conf 1 wrong
    assert got["g_mean"] == 0.0                                        # class 2 never recognised
    diverged = logit_metrics(np.full((3, 8), np.nan), np.array([0, 1, 2]))
    assert diverged == {"top_5_accuracy": None, "expected_calibration_error": None, "calibration": None,
                        "g_mean": None}
    with pytest.raises(ValueError, match="labels must lie in"):
        logit_metrics(np.full((2, 8), np.inf), np.array([0, 9]))
    with pytest.raises(ValueError, match="k must be a positive int"):
        logit_metrics(logits, np.array([0, 2]), k=0)
    with pytest.raises(ValueError, match="logits must be a non-empty float"):
        logit_metrics(np.zeros((0, 3)), np.zeros(0, dtype=int))


# ----------------------------------------------------------------------------------------- plots
def test_reliability_diagram_draws_the_bins(tmp_path):
    probs = np.array([[0.9, 0.1], [0.25, 0.75], [0.58, 0.42], [0.55, 0.45]])
    calibration = expected_calibration_error(probs, np.array([0, 0, 0, 1]), num_bins=5)
    fig = Figure()
    ax = fig.add_subplot()
    bars = draw_reliability_diagram(ax, calibration, title="val")
    edges = calibration["bin_edges"]
    np.testing.assert_allclose([b.get_x() for b in bars], edges[:-1])
    np.testing.assert_allclose([b.get_width() for b in bars], np.diff(edges))
    expected_heights = [a if a is not None else 0.0 for a in calibration["bin_accuracy"]]
    np.testing.assert_allclose([b.get_height() for b in bars], expected_heights)
    # Bins of width 0.2: (.4, .6] holds .58 (right) and .55 (wrong), (.6, .8] .75 (wrong), (.8, 1] .9 (right).
    assert expected_heights == [0.0, 0.0, 0.5, 0.0, 1.0] and calibration["bin_count"] == [0, 0, 2, 1, 1]
    diagonal = [line for line in ax.get_lines() if line.get_label() == "perfect calibration"]
    np.testing.assert_allclose(diagonal[0].get_xydata(), [[0, 0], [1, 1]])
    assert f"ECE {calibration['ece']:.4f}" in ax.get_title() and ax.get_title().startswith("val")
    plot_reliability_diagram(calibration, tmp_path / "sub" / "reliability.png")
    _assert_png(tmp_path / "sub" / "reliability.png")
    with pytest.raises(ValueError, match="calibration lacks"):
        plot_reliability_diagram({"ece": 0.1}, tmp_path / "bad.png")


def test_long_tail_plot_data_log_axis_and_baseline(tmp_path):
    counts = [500, 5, 0, 120, 40]
    recall = [0.9, 0.1, 0.5, None, 0.6]          # class 2: no training image; class 3: no test example
    baseline = [0.95, 0.0, 0.4, 0.7, 0.5]
    fig = Figure()
    ax = fig.add_subplot()
    lines = draw_long_tail(ax, counts, recall, label="ASLoss", baseline_recall=baseline, baseline_label="CE",
                           many_shot_threshold=100, few_shot_threshold=20)
    assert len(lines) == 2 and ax.get_xscale() == "log"
    np.testing.assert_allclose(lines[0].get_xydata(), [[5, 0.1], [40, 0.6], [500, 0.9]])        # sorted by count
    np.testing.assert_allclose(lines[1].get_xydata(), [[5, 0.0], [40, 0.5], [120, 0.7], [500, 0.95]])
    assert lines[0].get_label() == "ASLoss (3 classes)" and lines[1].get_label() == "CE (4 classes)"
    assert lines[0].get_linestyle() == "None"     # points, not a curve
    thresholds = sorted(line.get_xdata()[0] for line in ax.get_lines() if line not in lines)
    assert thresholds == [20, 100]
    assert any("2 classes without training images" in t.get_text() for t in ax.texts)
    plot_long_tail(counts, recall, tmp_path / "long_tail.png", baseline_recall=baseline)
    _assert_png(tmp_path / "long_tail.png")
    with pytest.raises(ValueError, match="per_class_recall must be a sequence of 5"):
        plot_long_tail(counts, recall[:4], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="baseline_recall must hold values in"):
        plot_long_tail(counts, recall, tmp_path / "bad.png", baseline_recall=[1.5] * 5)
    with pytest.raises(ValueError, match="train_class_counts must be finite and non-negative"):
        plot_long_tail([-1, 2, 3, 4, 5], recall, tmp_path / "bad.png")


def test_long_tail_plot_names_classes_apart_and_ticks_few_counts():
    counts = [6000, 150, 150, 150, 6000]
    recall = [0.99, 0.42, 0.43, 0.70, 0.98]
    ax = Figure().add_subplot()
    draw_long_tail(ax, counts, recall, class_names=["Bag", "Coat", "Pullover", "Dress", "Shirt"])
    names = {a.get_text(): a for a in ax.texts}
    assert set(names) == {"Bag", "Coat", "Pullover", "Dress", "Shirt"}
    text_y = {n: a.xyann[1] for n, a in names.items()}
    assert text_y["Coat"] == pytest.approx(0.42) and text_y["Dress"] == pytest.approx(0.70)   # unmoved
    assert text_y["Pullover"] - text_y["Coat"] == pytest.approx(0.04)                     # pushed apart
    assert max(text_y.values()) <= 1.0 and text_y["Bag"] - text_y["Shirt"] == pytest.approx(0.04)
    assert names["Bag"].get_ha() == "right" and names["Coat"].get_ha() == "left"       # right column: left side
    np.testing.assert_allclose(ax.get_xticks(), [150, 6000])
    assert [label.get_text() for label in ax.get_xticklabels()] == ["150", "6000"]
    many = Figure().add_subplot()
    draw_long_tail(many, list(range(1, 31)), [0.5] * 30, class_names=[str(c) for c in range(30)])
    assert not many.texts                                                                # too many to name
    with pytest.raises(ValueError, match="class_names must hold one name per class"):
        draw_long_tail(Figure().add_subplot(), counts, recall, class_names=["a"])


# ---------------------------------------------------------------------------------------- report
def _metrics_with_groups(**thresholds):
    conf = np.array([[8, 1, 1], [2, 2, 0], [0, 1, 3]])
    test = classification_metrics(conf, [70, 20, 10], **thresholds)
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), [10, 4, 4])
    test.update(logit_metrics(rng.normal(size=(18, 3)) + 2.0 * np.eye(3)[labels], labels, k=2))
    val = classification_metrics(np.array([[5, 0, 0], [0, 4, 1], [0, 0, 2]]), [70, 20, 10], **thresholds)
    return {"val": val, "test": test}


def test_classification_metrics_reports_its_shot_groups():
    got = classification_metrics(np.eye(5, dtype=int), [101, 100, 20, 19, 150])
    assert got["shot_groups"] == {"many_shot_threshold": 100, "few_shot_threshold": 20, "many_shot_classes": [0, 4],
                                  "medium_shot_classes": [1, 2], "few_shot_classes": [3]}
    custom = classification_metrics(np.eye(2, dtype=int), [10, 3], many_shot_threshold=50, few_shot_threshold=5)
    assert custom["shot_groups"]["many_shot_classes"] == [] and custom["shot_groups"]["few_shot_classes"] == [1]


def test_report_says_when_a_shot_group_is_empty(tmp_path):
    metrics = _metrics_with_groups(many_shot_threshold=60, few_shot_threshold=15)   # many {0}, medium {1}, few {2}
    metrics["test"] = classification_metrics(np.array([[8, 1, 1], [2, 2, 0], [0, 1, 3]]), [70, 20, 10],
                                             many_shot_threshold=100, few_shot_threshold=5)   # many and few empty
    report = tmp_path / "report.md"
    write_report(report, title="t", config_text="c", metrics=metrics, imbalance=imbalance_statistics([70, 20, 10]),
                 class_counts={"train": [70, 20, 10]}, figures=[], wall_time_s=1.0)
    text = report.read_text()
    empty = "no class in this group (thresholds: many > 100, few < 5 training images)"
    assert f"| many_shot_accuracy | {metrics['val']['many_shot_accuracy']:.4f} | {empty} |" in text
    assert f"| few_shot_accuracy | {metrics['val']['few_shot_accuracy']:.4f} | {empty} |" in text
    assert metrics["val"]["medium_shot_accuracy"] == pytest.approx(0.8)   # class 1 alone (20 images)
    assert metrics["test"]["medium_shot_accuracy"] == pytest.approx(metrics["test"]["balanced_accuracy"])  # all
    assert f"| medium_shot_accuracy | 0.8000 | {metrics['test']['medium_shot_accuracy']:.4f} |" in text

    table = format_metrics_table(metrics)
    assert "no class in this group: the shot groups' thresholds: many > 100, few < 5 training images" in table
    many_line = next(line for line in table.splitlines() if line.startswith("many_shot_accuracy"))
    assert many_line.split()[1] == f"{metrics['val']['many_shot_accuracy']:.4f}"
    assert many_line.endswith("no class in this group")


def test_report_keeps_na_for_groups_without_test_examples_and_for_old_metrics(tmp_path):
    # Class 2 is the only few-shot class and has no test example: the group exists, its accuracy is undefined.
    metrics = {"test": classification_metrics(np.array([[3, 0, 0], [1, 2, 0], [0, 0, 0]]), [70, 20, 10])}
    old = {k: v for k, v in metrics["test"].items() if k != "shot_groups"}   # a metrics.json from before
    old["many_shot_accuracy"] = None
    for values in (metrics, {"test": old}):
        table = format_metrics_table(values)
        few = next(line for line in table.splitlines() if line.startswith("few_shot_accuracy"))
        assert few.split()[1:] == ["n/a"]
        assert "no class in this group:" not in table or values is metrics
    many = next(line for line in format_metrics_table({"test": old}).splitlines()
                if line.startswith("many_shot_accuracy"))
    assert many.split()[1:] == ["n/a"]   # without "shot_groups" the report cannot tell: unchanged behaviour


def test_report_lists_the_new_metrics(tmp_path):
    metrics = _metrics_with_groups()
    test = metrics["test"]
    table = format_metrics_table(metrics)
    for key in ("top_2_accuracy", "expected_calibration_error", "g_mean"):
        line = next(line for line in table.splitlines() if line.startswith(key + " "))
        assert line.split()[1:] == ["n/a", f"{test[key]:.4f}"]
    assert "calibration " not in table   # the per-bin data are not a scalar row
    report = tmp_path / "report.md"
    write_report(report, title="t", config_text="c", metrics=metrics, imbalance=imbalance_statistics([70, 20, 10]),
                 class_counts={"train": [70, 20, 10]}, figures=["reliability_test.png"], wall_time_s=1.0)
    text = report.read_text()
    summary = next(line for line in text.splitlines() if line.startswith("- test:"))
    for key in ("top 2 accuracy", "g mean", "expected calibration error"):
        assert f"{key} {test[key.replace(' ', '_')]:.4f}" in summary
    assert f"| expected_calibration_error | n/a | {test['expected_calibration_error']:.4f} |" in text
    assert f"| g_mean | n/a | {test['g_mean']:.4f} |" in text
    assert "15 equal-width bins (Guo et al. 2017, Eq. 3)" in text
    assert math.isfinite(test["g_mean"]) and test["g_mean"] > 0
