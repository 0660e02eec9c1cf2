"""experiments/figures.py draws its figures from finished cells and names the cells it still needs."""
from __future__ import annotations

import json

import numpy as np

from experiments import figures, sweeps


def _fake_cell(cell: sweeps.Cell, runs, accuracy: float, rng, num_classes: int) -> None:
    workdir = cell.workdir(runs)
    workdir.mkdir(parents=True)
    (workdir / sweeps.COMMAND_FILE).write_text(cell.command(workdir) + "\n")
    confusion = rng.integers(0, 50, (num_classes, num_classes)) + np.diag(np.full(num_classes, 500))
    recall = (np.diag(confusion) / confusion.sum(1)).tolist()
    (workdir / sweeps.METRICS_FILE).write_text(json.dumps(
        {"test": {"accuracy": accuracy, "balanced_accuracy": accuracy, "confusion": confusion.tolist(),
                  "per_class_recall": recall}}))
    (workdir / "class_counts.json").write_text(json.dumps(
        {"train": [int(1000 / (c + 1)) for c in range(num_classes)],
         "class_names": [f"class {c}" for c in range(num_classes)]}))
    for split in ("train", "test"):
        np.savez(workdir / f"embedding_{split}.npz", embedding=rng.normal(size=(200, 2)).astype(np.float32),
                 labels=np.arange(200) % num_classes, layer=np.asarray("head_last"))


def test_figures_from_finished_cells_and_missing_cells_reported(tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "figures"
    rng = np.random.default_rng(0)
    for cell in sweeps.load_sweep("asl_fourclass").cells():
        if cell.seed == 0 and cell.method in figures.ASL_PAIR:
            _fake_cell(cell, runs, 0.8, rng, 4)
    assert figures.main([f"--runs_dir={runs}", f"--out={out}"]) == 1  # the other sweeps not run yet
    text = capsys.readouterr().out
    assert "long_tail(tricdb_rho): skipped" in text and "--config.data.imbalance.ratio=100.0" in text
    for name in ("asl_representations", "asl_confusion", "asl_fourclass_long_tail"):
        assert (out / f"{name}.png").stat().st_size > 10_000, name

    for name in set(figures.LONG_TAIL) - {"asl_fourclass"}:
        method, baseline, grid_slug = figures.LONG_TAIL[name]
        for cell in sweeps.load_sweep(name).cells():
            if cell.method in (method, baseline) and cell.grid_slug == grid_slug and cell.seed < 2:
                _fake_cell(cell, runs, 0.9 - 0.1 * cell.seed, rng, 10)
    assert figures.main([f"--runs_dir={runs}", f"--out={out}"]) == 0
    assert (out / "tricdb_rho_long_tail.png").stat().st_size > 10_000


def test_long_tail_averages_the_finished_seeds(tmp_path):
    runs = tmp_path / "runs"
    rng = np.random.default_rng(1)
    sweep = sweeps.load_sweep("tricdb_rho")
    cells = [c for c in sweep.cells() if c.method == "TriCDB-CE" and c.grid_slug == "ratio=100.0" and c.seed < 2]
    for cell in cells:
        _fake_cell(cell, runs, 0.5, rng, 10)
    recalls = [json.loads((c.workdir(runs) / sweeps.METRICS_FILE).read_text())["test"]["per_class_recall"]
               for c in cells]
    np.testing.assert_allclose(figures._mean_recall(cells, runs), np.mean(recalls, axis=0))
