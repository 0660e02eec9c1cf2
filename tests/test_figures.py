"""experiments/figures.py draws its figures from finished cells and names the cells it still needs."""
from __future__ import annotations

import json

import numpy as np

from experiments import figures, sweeps


def _fake_cell(cell: sweeps.Cell, runs, accuracy: float, rng) -> None:
    workdir = cell.workdir(runs)
    workdir.mkdir(parents=True)
    (workdir / sweeps.COMMAND_FILE).write_text(cell.command(workdir) + "\n")
    confusion = rng.integers(0, 50, (10, 10)) + np.diag(np.full(10, 500))
    (workdir / sweeps.METRICS_FILE).write_text(json.dumps(
        {"test": {"accuracy": accuracy, "balanced_accuracy": accuracy, "confusion": confusion.tolist()}}))
    (workdir / "config.json").write_text(json.dumps({"data": {"name": "fashion_mnist"}}))
    for split in ("train", "test"):
        np.savez(workdir / f"embedding_{split}.npz", embedding=rng.normal(size=(200, 2)).astype(np.float32),
                 labels=np.arange(200) % 10, layer=np.asarray("head_last"))


def test_figures_from_finished_cells_and_missing_cells_reported(tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "figures"
    rng = np.random.default_rng(0)
    main = sweeps.load_sweep("fmnist_main")
    for cell in main.cells():
        if cell.seed == 0 and cell.method in figures.ASL_PAIR:
            _fake_cell(cell, runs, 0.8, rng)
    assert figures.main([f"--runs_dir={runs}", f"--out={out}"]) == 1  # affinity_imbalance not run yet
    text = capsys.readouterr().out
    assert "affinity_error_vs_imbalance: skipped" in text and "--config.data.imbalance.fraction=0.025" in text
    assert (out / "asl_representations.png").stat().st_size > 10_000
    assert (out / "asl_confusion.png").stat().st_size > 10_000

    for cell in sweeps.load_sweep("affinity_imbalance").cells():
        if cell.method in figures.AFFINITY_PAIR and cell.seed == 0:  # the other seeds are optional
            _fake_cell(cell, runs, 0.9, rng)
    assert figures.main([f"--runs_dir={runs}", f"--out={out}"]) == 0
    for cell in sweeps.load_sweep("affinity_imbalance").cells():
        if cell.method in figures.AFFINITY_PAIR and cell.seed > 0:
            _fake_cell(cell, runs, 0.9 - 0.1 * cell.seed, rng)
    assert figures.main([f"--runs_dir={runs}", f"--out={out}"]) == 0
    assert (out / "affinity_error_vs_imbalance.png").stat().st_size > 10_000
