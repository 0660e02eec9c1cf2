"""experiments/embedding_geometry.py: class compactness/separation of the finished cells' saved embeddings."""
from __future__ import annotations

import json

import numpy as np
import pytest

from experiments import embedding_geometry, sweeps


def _clusters(spread: float, seed: int = 0, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Four classes around the corners of a square of side 10, Gaussian with std ``spread``."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    labels = np.repeat(np.arange(4), n)
    return centres[labels] + spread * rng.standard_normal((4 * n, 2)), labels


def _davies_bouldin_loop(embedding: np.ndarray, labels: np.ndarray) -> float:
    """Davies & Bouldin (1979) written out: mean over classes of max_j (s_i + s_j) / d(c_i, c_j)."""
    classes = np.unique(labels)
    centres = [embedding[labels == c].mean(0) for c in classes]
    spreads = [np.linalg.norm(embedding[labels == c] - centres[i], axis=1).mean() for i, c in enumerate(classes)]
    worst = [max((spreads[i] + spreads[j]) / np.linalg.norm(centres[i] - centres[j])
                 for j in range(len(classes)) if j != i) for i in range(len(classes))]
    return float(np.mean(worst))


def test_tight_clusters_score_better_than_overlapping_ones_whatever_the_scale():
    tight, overlapping = embedding_geometry.geometry(*_clusters(1.0)), embedding_geometry.geometry(*_clusters(6.0))
    assert tight["silhouette"] > 0.6 > overlapping["silhouette"]
    assert tight["davies_bouldin"] < 0.5 < overlapping["davies_bouldin"]
    embedding, labels = _clusters(2.0)
    np.testing.assert_allclose(embedding_geometry.geometry(embedding, labels)["davies_bouldin"],
                               _davies_bouldin_loop(embedding, labels), rtol=1e-9)
    scaled = embedding_geometry.geometry(1000.0 * embedding, labels)
    for key in ("silhouette", "davies_bouldin"):
        np.testing.assert_allclose(scaled[key], embedding_geometry.geometry(embedding, labels)[key], rtol=1e-9)


def _spread_ratio_loop(embedding: np.ndarray, labels: np.ndarray, counts: list[int]) -> float:
    spread = [np.mean([np.linalg.norm(x - embedding[labels == c].mean(0)) for x in embedding[labels == c]])
              for c in range(len(counts))]
    rare = [c for c in range(len(counts)) if 2 * counts[c] < max(counts)]
    return float(np.mean([spread[c] for c in rare]) / np.mean([spread[c] for c in range(len(counts)) if c not in rare]))


@pytest.mark.parametrize("counts, expected", [([500, 500, 30, 30], 3.0), ([500, 30, 500, 30], 1.0),
                                              ([500, 400, 300, 260], None)])
def test_rare_frequent_spread_ratio(counts, expected):
    """Classes 2 and 3 spread three times as wide as 0 and 1; rare = fewer than half the largest count."""
    embedding, labels = _clusters(1.0, n=4000)
    centres = np.array([embedding[labels == c].mean(0) for c in range(4)])
    embedding = centres[labels] + np.where(labels[:, None] >= 2, 3.0, 1.0) * (embedding - centres[labels])
    ratio = embedding_geometry.geometry(embedding, labels, counts)["rare_spread_ratio"]
    if expected is None:
        assert ratio is None
        return
    np.testing.assert_allclose(ratio, expected, rtol=0.05)
    np.testing.assert_allclose(ratio, _spread_ratio_loop(embedding, labels, counts), rtol=1e-9)
    np.testing.assert_allclose(embedding_geometry.geometry(7.0 * embedding, labels, counts)["rare_spread_ratio"],
                               ratio, rtol=1e-9)
    assert embedding_geometry.geometry(embedding, labels)["rare_spread_ratio"] is None


def test_one_class_is_refused_with_the_shapes():
    with pytest.raises(ValueError, match=r"at least two classes"):
        embedding_geometry.geometry(np.zeros((5, 2)), np.zeros(5, int))


def _finished_cell(cell: sweeps.Cell, runs, spread: float) -> None:
    workdir = cell.workdir(runs)
    workdir.mkdir(parents=True)
    (workdir / sweeps.COMMAND_FILE).write_text(cell.command(workdir) + "\n")
    (workdir / sweeps.METRICS_FILE).write_text("{}")
    embedding, labels = _clusters(spread, seed=cell.seed)
    np.savez_compressed(workdir / "embedding_test.npz", embedding=embedding.astype(np.float32), labels=labels,
                        layer="head")
    (workdir / sweeps.CLASS_COUNTS_FILE).write_text(json.dumps({"train": [600, 500, 180, 120]}))


def test_table_and_paired_differences_of_a_sweep(tmp_path, capsys):
    runs = tmp_path / "runs"
    sweep = sweeps.load_sweep("asl_fourclass")
    for cell in sweep.cells():
        if cell.method == "CE (2-D head)":
            _finished_cell(cell, runs, spread=4.0)
        elif cell.method == "ASLoss (L2)" and cell.seed < 2:
            _finished_cell(cell, runs, spread=1.5)
    out = tmp_path / "geometry.md"
    assert embedding_geometry.main(["asl_fourclass", f"--runs_dir={runs}", f"--out={out}"]) == 0
    text = out.read_text()
    lines = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert "| 3 | " in lines["| CE (2-D head)"] and "| 2 | " in lines["| ASLoss (L2)"]
    assert "| 0 | — | — | — |" in lines["| ASLoss (L1)"]
    assert lines["| CE (2-D head)"].count(" ± ") == 3
    paired = lines["| ASLoss (L2) − CE (2-D head)"]
    assert paired.count("(n=2)") == 3
    silhouette_diff = float(paired.split(" | ")[1].split()[0])
    assert silhouette_diff > 0.2

    with pytest.raises(SystemExit):
        embedding_geometry.main(["asl_fourclass", f"--runs_dir={tmp_path / 'empty'}"])
    assert "no finished cell" in capsys.readouterr().err
