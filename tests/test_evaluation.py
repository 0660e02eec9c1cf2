"""Tests of imbalance_jax.evaluation: metrics vs scikit-learn, imbalance statistics, plots, report."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.decomposition import PCA

from imbalance_jax.evaluation import (
    classification_metrics,
    confusion_matrix,
    format_metrics_table,
    imbalance_statistics,
    plot_confusion_matrix,
    plot_embedding,
    write_report,
)
from imbalance_jax.evaluation.plots import _project_2d

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- confusion_matrix
def test_confusion_matrix_matches_sklearn_with_mask_and_jit():
    rng = np.random.default_rng(0)
    num_classes, batch = 5, 64
    labels = rng.integers(0, num_classes, batch)
    preds = rng.integers(0, num_classes, batch)
    valid = rng.random(batch) < 0.7

    full = confusion_matrix(jnp.asarray(labels), jnp.asarray(preds), num_classes)
    np.testing.assert_array_equal(full, skm.confusion_matrix(labels, preds, labels=range(num_classes)))
    assert full.dtype == jnp.int32

    jitted = jax.jit(confusion_matrix, static_argnums=2)
    masked = jitted(jnp.asarray(labels), jnp.asarray(preds), num_classes, jnp.asarray(valid))
    expected = skm.confusion_matrix(labels[valid], preds[valid], labels=range(num_classes))
    np.testing.assert_array_equal(masked, expected)

    # Accumulating over batches by addition gives the whole-set matrix.
    halves = sum(jitted(jnp.asarray(labels[s]), jnp.asarray(preds[s]), num_classes, jnp.asarray(valid[s]))
                 for s in (slice(0, 20), slice(20, None)))
    np.testing.assert_array_equal(halves, expected)


def test_confusion_matrix_ignores_out_of_range_rows():
    labels = jnp.array([0, 1, -1, 2, 3])
    preds = jnp.array([0, 2, 1, -1, 0])
    got = confusion_matrix(labels, preds, 3)
    expected = np.zeros((3, 3), np.int32)
    expected[0, 0] = expected[1, 2] = 1
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(labels=jnp.array([0, 1]), predictions=jnp.array([0, 1]), num_classes=0), "num_classes"),
        (dict(labels=jnp.array([0, 1]), predictions=jnp.array([0]), num_classes=2), "predictions"),
        (dict(labels=jnp.array([0.0, 1.0]), predictions=jnp.array([0, 1]), num_classes=2), "integer"),
        (dict(labels=jnp.array([0, 1]), predictions=jnp.array([0, 1]), num_classes=2,
              valid=jnp.array([True])), "valid"),
    ],
)
def test_confusion_matrix_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        confusion_matrix(**kwargs)


# ----------------------------------------------------------------------- classification_metrics
def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    num_classes, n = 6, 300
    y_true = rng.integers(0, 5, n)            # class 5 absent from the test set
    y_pred = rng.integers(0, num_classes, n)
    y_pred[y_pred == 3] = 5                   # class 3 never predicted; class 5 predicted
    y_pred[: n // 2] = np.where(rng.random(n // 2) < 0.6, y_true[: n // 2], y_pred[: n // 2])
    y_pred[y_pred == 3] = 0
    assert 3 not in y_pred and 5 in y_pred and 5 not in y_true
    conf = skm.confusion_matrix(y_true, y_pred, labels=range(num_classes))
    train_counts = [500, 200, 120, 60, 10, 5]
    got = classification_metrics(conf, train_counts)

    present = [0, 1, 2, 3, 4]
    p, r, f, _ = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=range(num_classes), zero_division=0)
    np.testing.assert_allclose(got["per_class_precision"], p, atol=1e-12)
    assert got["per_class_precision"][3] == 0.0
    np.testing.assert_allclose(got["per_class_recall"][:5], r[:5], atol=1e-12)
    np.testing.assert_allclose(got["per_class_f1"][:5], f[:5], atol=1e-12)
    assert got["per_class_recall"][5] is None and got["per_class_f1"][5] is None

    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=1e-12)
    with pytest.warns(UserWarning):  # sklearn warns about the predicted-but-absent class 5
        balanced = skm.balanced_accuracy_score(y_true, y_pred)
    assert got["balanced_accuracy"] == pytest.approx(balanced, abs=1e-12)
    for key, average in (("macro_precision", 0), ("macro_recall", 1), ("macro_f1", 2)):
        expected = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=present, average="macro", zero_division=0)[average]
        assert got[key] == pytest.approx(expected, abs=1e-12), key
    assert got["macro_f1"] == pytest.approx(
        skm.f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0), abs=1e-12)
    assert got["num_examples"] == n

    expected_keys = {
        "accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1",
        "per_class_precision", "per_class_recall", "per_class_f1", "minority_f1",
        "many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy", "num_examples", "shot_groups"}
    assert set(got) == expected_keys
    json.dumps(got, allow_nan=False)  # JSON-serialisable, no inf/NaN


def test_shot_groups_on_hand_made_example():
    # Recalls per class: 1.0, 0.5, 0.0, 0.75, 0.25 (rows are true classes).
    conf = np.array([
        [2, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 1, 0, 0, 0],
        [0, 0, 0, 3, 1],
        [0, 0, 0, 3, 1],
    ])
    train = [101, 100, 20, 19, 150]  # many: {0, 4}; medium: {1, 2} (boundaries); few: {3}
    got = classification_metrics(conf, train)
    assert got["many_shot_accuracy"] == pytest.approx((1.0 + 0.25) / 2)
    assert got["medium_shot_accuracy"] == pytest.approx((0.5 + 0.0) / 2)
    assert got["few_shot_accuracy"] == pytest.approx(0.75)

    custom = classification_metrics(conf, train, many_shot_threshold=120, few_shot_threshold=101)
    assert custom["many_shot_accuracy"] == pytest.approx(0.25)
    assert custom["medium_shot_accuracy"] == pytest.approx(1.0)
    assert custom["few_shot_accuracy"] == pytest.approx((0.5 + 0.0 + 0.75) / 3)

    # A few-shot class without test examples is left out of the group mean (its recall is undefined).
    padded = np.pad(conf, ((0, 1), (0, 1)))
    with_absent = classification_metrics(padded, train + [5])
    assert with_absent["few_shot_accuracy"] == pytest.approx(0.75)
    assert with_absent["balanced_accuracy"] == pytest.approx(got["balanced_accuracy"])

    none_few = classification_metrics(conf, [500] * 5)
    assert none_few["few_shot_accuracy"] is None and none_few["medium_shot_accuracy"] is None
    assert none_few["minority_f1"] is None  # balanced training set: no minority class


def test_minority_f1_on_hand_made_example():
    # K = 3, train shares 0.7, 0.2, 0.1 -> minority classes {1, 2}.
    conf = np.array([
        [8, 1, 1],   # class 0
        [2, 2, 0],   # class 1: precision 2/3, recall 1/2 -> F1 4/7
        [0, 0, 0],   # class 2 absent from the test set: left out of the minority mean
    ])
    got = classification_metrics(conf, [70, 20, 10])
    assert got["minority_f1"] == pytest.approx(4.0 / 7.0)
    assert got["per_class_precision"][2] == 0.0  # predicted once, never correctly
    conf[2] = [0, 0, 3]                           # class 2: precision 3/4, recall 1 -> F1 6/7
    got = classification_metrics(conf, [70, 20, 10])
    assert got["minority_f1"] == pytest.approx((4.0 / 7.0 + 6.0 / 7.0) / 2)


def test_classification_metrics_rejects_bad_input():
    with pytest.raises(ValueError, match="confusion"):
        classification_metrics(np.zeros((2, 3)), [1, 1])
    with pytest.raises(ValueError, match="train_class_counts"):
        classification_metrics(np.eye(3), [1, 1])
    with pytest.raises(ValueError, match="few_shot_threshold"):
        classification_metrics(np.eye(2), [1, 1], many_shot_threshold=10, few_shot_threshold=20)


# ------------------------------------------------------------------------- imbalance_statistics
def test_imbalance_statistics_balanced_and_extreme():
    balanced = imbalance_statistics([7, 7, 7, 7])
    assert balanced["imbalance_ratio"] == 1.0
    assert balanced["balance_deviation"] == 0.0
    assert balanced["minority_classes"] == []
    assert balanced["num_classes"] == 4 and balanced["class_counts"] == [7, 7, 7, 7]

    extreme = imbalance_statistics([0, 12, 0, 0])
    assert extreme["balance_deviation"] == pytest.approx(1.0)
    assert extreme["imbalance_ratio"] is None  # infinite: a class has no image
    assert extreme["minority_classes"] == [0, 2, 3]
    json.dumps(extreme, allow_nan=False)

    single = imbalance_statistics([5])
    assert single["balance_deviation"] == 0.0 and single["imbalance_ratio"] == 1.0


def test_imbalance_statistics_hand_computed():
    # ζ = (0.6, 0.3, 0.1), e = 1/3: d_TV(ζ, e) = 4/15; m = 2, ι_2 = (0, 0, 1): d_TV(ι_2, e) = 2/3.
    got = imbalance_statistics(np.array([6, 3, 1]))
    assert got["imbalance_ratio"] == pytest.approx(6.0)
    assert got["balance_deviation"] == pytest.approx((4 / 15) / (2 / 3))
    assert got["minority_classes"] == [1, 2]


SILK_TABLE_1 = {  # silk paper Table 1 class counts; Table 2: IR, K, m, BD
    "material": ([27252, 4208, 3891], 7.00, 2, 0.66),
    "technique": ([6861, 3051, 2768, 2526, 355, 185, 99, 67, 65], 105.55, 5, 0.91),
    "place": ([7998, 7379, 4708, 4700, 2353, 1399, 1294, 1097, 648, 593, 592, 479, 455, 357, 352,
               228, 191, 146, 117, 115, 84, 81, 73, 63, 60, 52, 46, 46, 42], 190.43, 22, 0.78),
    "time": ([9975, 8423, 4012, 3378, 1829, 685, 43], 231.98, 5, 0.51),
}


@pytest.mark.parametrize("variable", sorted(SILK_TABLE_1))
def test_imbalance_statistics_reproduce_silk_paper_table_2(variable):
    counts, ir, m, bd = SILK_TABLE_1[variable]
    got = imbalance_statistics(counts)
    assert round(got["imbalance_ratio"], 2) == pytest.approx(ir)
    assert len(got["minority_classes"]) == m
    assert round(got["balance_deviation"], 2) == pytest.approx(bd)


@pytest.mark.parametrize("counts", [[], [[1, 2]], [1, -1], [0, 0], [1.0, float("nan")]])
def test_imbalance_statistics_rejects_bad_input(counts):
    with pytest.raises(ValueError, match="class_counts"):
        imbalance_statistics(counts)


# ---------------------------------------------------------------------------------------- plots
def _assert_png(path):
    assert os.path.getsize(path) > 1000
    with open(path, "rb") as handle:
        assert handle.read(8) == PNG_MAGIC


def test_plot_confusion_matrix_writes_png(tmp_path):
    conf = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    path = tmp_path / "sub" / "confusion.png"
    plot_confusion_matrix(conf, path, class_names=["a", "b", "c"], title="test")
    _assert_png(path)
    plot_confusion_matrix(np.eye(25, dtype=int), tmp_path / "large.png", normalize=False)
    _assert_png(tmp_path / "large.png")
    with pytest.raises(ValueError, match="class_names"):
        plot_confusion_matrix(conf, tmp_path / "x.png", class_names=["a"])


@pytest.mark.parametrize("dim", [1, 2, 6])
def test_plot_embedding_writes_png(tmp_path, dim):
    rng = np.random.default_rng(dim)
    labels = rng.integers(0, 4, 300)
    features = rng.normal(size=(300, dim)) + labels[:, None]
    path = tmp_path / f"embedding_{dim}.png"
    plot_embedding(features, labels, path, class_names=["w", "x", "y", "z"], max_points=200)
    _assert_png(path)


def test_plot_embedding_many_classes_and_non_finite_rows(tmp_path):
    rng = np.random.default_rng(3)
    features = rng.normal(size=(200, 3))
    features[:5] = np.nan
    plot_embedding(features, np.arange(200) % 40, tmp_path / "many.png")
    _assert_png(tmp_path / "many.png")
    with pytest.raises(ValueError, match="labels"):
        plot_embedding(features, np.arange(199), tmp_path / "bad.png")


def test_pca_projection_matches_sklearn():
    rng = np.random.default_rng(4)
    features = rng.normal(size=(50, 5)) * np.array([5.0, 3.0, 1.0, 0.5, 0.1])
    points, axis_names = _project_2d(features)
    expected = PCA(n_components=2).fit_transform(features)
    signs = np.sign(np.sum(points * expected, axis=0))  # components are defined up to sign
    np.testing.assert_allclose(points * signs, expected, atol=1e-9)
    assert axis_names[0].startswith("PC 1")


# --------------------------------------------------------------------------------------- report
def _example_metrics():
    conf = np.array([[8, 1, 1], [2, 2, 0], [0, 1, 3]])
    test = classification_metrics(conf, [70, 20, 10])
    val = classification_metrics(np.array([[5, 0, 0], [0, 4, 1], [0, 0, 2]]), [70, 20, 10])
    return {"val": val, "test": test}


def test_format_metrics_table_lists_scalars_per_split():
    metrics = _example_metrics()
    table = format_metrics_table(metrics)
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "val", "test"]
    accuracy_line = next(line for line in lines if line.startswith("accuracy "))
    assert accuracy_line.split()[1:] == [f"{metrics['val']['accuracy']:.4f}", f"{metrics['test']['accuracy']:.4f}"]
    assert "per_class_f1" not in table and "num_examples" in table
    rows = [line for line in lines[2:] if not line.startswith("no class in this group:")]  # minus the footnote
    assert len({len(line) for line in rows} | {len(lines[1])}) == 1  # right-aligned columns
    few_line = next(line for line in lines if line.startswith("few_shot_accuracy"))
    assert few_line.split()[1:] == [f"{metrics['val']['few_shot_accuracy']:.4f}",
                                    f"{metrics['test']['few_shot_accuracy']:.4f}"]
    many_line = next(line for line in lines if line.startswith("many_shot_accuracy"))
    # No class has > 100 training images: the cell says so and a line under the table gives the thresholds.
    assert many_line.split()[1:] == ["no", "class", "in", "this", "group"] * 2
    assert lines[-1] == ("no class in this group: the shot groups' thresholds: many > 100, few < 20 training images "
                         "(medium: the rest)")
    with pytest.raises(ValueError, match="metrics"):
        format_metrics_table({"test": [1, 2]})


def test_write_report_contains_metrics_counts_and_figures(tmp_path):
    metrics = _example_metrics()
    counts = {"train": [70, 20, 10], "test": [10, 4, 4]}
    workdir = tmp_path / "run"
    figure = workdir / "confusion_test.png"
    plot_confusion_matrix(np.eye(3, dtype=int), figure)
    report = workdir / "report.md"
    write_report(report, title="Digits CE", config_text="loss: ce\nseed: 0", metrics=metrics,
                 imbalance=imbalance_statistics(counts["train"]), class_counts=counts,
                 figures=[str(figure), "embedding_test.png"], wall_time_s=3723.5,
                 command="python -m imbalance_jax.main --config=configs/digits.py")
    text = report.read_text()
    assert text.startswith("# Digits CE")
    test = metrics["test"]
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "minority_f1"):
        assert f"{test[key]:.4f}" in text
    assert f"| accuracy | {metrics['val']['accuracy']:.4f} | {test['accuracy']:.4f} |" in text
    # Per-class row of class 1: train count, test count, precision 0.5, recall 0.5, F1 0.5.
    assert "| 1 | 20 | 4 | 0.5000 | 0.5000 | 0.5000 |" in text
    # Class distribution with IR and BD for both splits (test computed from its counts).
    assert f"| train | 100 | 3 | 7.0000 | {imbalance_statistics([70, 20, 10])['balance_deviation']:.4f} | 2 |" in text
    assert f"| test | 18 | 3 | 2.5000 | {imbalance_statistics([10, 4, 4])['balance_deviation']:.4f} | 2 |" in text
    assert "![confusion_test](confusion_test.png)" in text
    assert "![embedding_test](embedding_test.png)" in text
    assert "seed: 0" in text and "--config=configs/digits.py" in text
    assert "1:02:03.5" in text


def test_confusion_matrix_on_batch_sharded_over_devices():
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    devices = np.array(jax.devices())
    mesh = Mesh(devices, ("data",))
    rng = np.random.default_rng(5)
    batch = 8 * len(devices)
    labels, preds = rng.integers(0, 4, batch), rng.integers(0, 4, batch)
    valid = np.arange(batch) < batch - 3  # padded tail
    sharding = NamedSharding(mesh, P("data"))
    args = [jax.device_put(jnp.asarray(a), sharding) for a in (labels, preds, valid)]
    got = jax.jit(confusion_matrix, static_argnums=2)(args[0], args[1], 4, args[2])
    expected = skm.confusion_matrix(labels[valid], preds[valid], labels=range(4))
    np.testing.assert_array_equal(got, expected)
