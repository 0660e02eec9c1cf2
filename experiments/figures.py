"""The figures of experiments/RESULTS.md, drawn from finished sweep cells (no training here).

    python -m experiments.figures [--runs_dir=experiments/runs] [--out=experiments/figures]

* ``asl_representations.png`` — ASLoss paper Fig. 5: the 2-D last-layer representations of CE and of
  CE + ASLoss (L2) on the same network (head narrowing to 2-D), training and test set, seed 0 of ``fmnist_main``
  (the ``embedding_{train,test}.npz`` every run writes; the same ≤ 5000-point sample as its own plots).
* ``asl_confusion.png`` — ASLoss paper Fig. 6: test confusion matrices (colour: row fraction, text: count) of the same two runs
  (``metrics.json["test"]["confusion"]``).
* ``affinity_error_vs_imbalance.png`` — affinity paper Fig. 6: test error (1 − accuracy, mean ± std over seeds)
  against the fraction of classes 0-4 kept, affinity loss vs softmax CE (``affinity_imbalance``; drawn from the
  seeds finished so far, the legend says how many).

A figure whose cells have not finished is skipped with the cells it needs; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Optional, Sequence, Union

import numpy as np
from matplotlib.figure import Figure

from experiments import sweeps
from experiments.report import mean_std
from experiments.sweeps import Cell, Sweep
from imbalance_jax.evaluation.plots import draw_confusion_matrix, draw_embedding

PathLike = Union[str, pathlib.Path]
FIGURES_DIR = sweeps.REPO_ROOT / "experiments" / "figures"
ASL_PAIR = ("CE (2-D head)", "ASLoss (L2)")
AFFINITY_PAIR = ("CE", "Affinity (m=5)")


class MissingCells(RuntimeError):
    """The cells a figure needs that have not finished (their commands are in the message)."""


def _finished(sweep: Sweep, runs_dir: PathLike, method: str, seed: Optional[int] = None,
              require_all: bool = True) -> list[Cell]:
    """The method's finished cells (of one seed, or all seeds); MissingCells if any (``require_all``) or all
    of them are missing."""
    cells = [c for c in sweep.cells() if c.method == method and (seed is None or c.seed == seed)]
    missing = [c for c in cells if sweeps.cell_status(c, runs_dir) != "done"]
    if not require_all and len(missing) < len(cells):
        return [c for c in cells if c not in missing]
    if not cells or missing:
        commands = "\n  ".join(c.command(c.workdir(runs_dir)) for c in missing) or f"(no cell of {method!r})"
        raise MissingCells(f"{sweep.name}/{method}: {len(missing)} cell(s) not finished:\n  {commands}")
    return cells


def _metrics(cell: Cell, runs_dir: PathLike) -> dict:
    return json.loads((cell.workdir(runs_dir) / sweeps.METRICS_FILE).read_text())


def _class_names(cell: Cell, runs_dir: PathLike, num_classes: int) -> list[str]:
    config = json.loads((cell.workdir(runs_dir) / "config.json").read_text()) \
        if (cell.workdir(runs_dir) / "config.json").is_file() else {}
    if config.get("data", {}).get("name") == "fashion_mnist":
        from imbalance_jax.data.sources import FASHION_MNIST_CLASSES

        return list(FASHION_MNIST_CLASSES)
    return [str(c) for c in range(num_classes)]


def asl_representations(runs_dir: PathLike, out: pathlib.Path, seed: int = 0) -> pathlib.Path:
    """2 × 2 scatter: rows CE / CE + ASLoss, columns train / test, points coloured by class."""
    sweep = sweeps.load_sweep("fmnist_main")
    cells = [_finished(sweep, runs_dir, method, seed)[0] for method in ASL_PAIR]
    fig = Figure(figsize=(13, 10), constrained_layout=True)
    axes = fig.subplots(2, 2)
    for row, cell in enumerate(cells):
        for col, split in enumerate(("train", "test")):
            sample = np.load(cell.workdir(runs_dir) / f"embedding_{split}.npz")
            emb, labels = sample["embedding"], sample["labels"]
            if emb.shape[1] != 2:
                raise ValueError(f"{cell.key}: the {split} embedding is {emb.shape[1]}-D, not the 2-D head layer")
            names = _class_names(cell, runs_dir, int(labels.max()) + 1)
            draw_embedding(axes[row, col], emb, labels, len(names), names=names,
                           title=f"{cell.method}, {split} ({str(sample['layer'])}, seed {cell.seed})")
    path = out / "asl_representations.png"
    fig.savefig(path, dpi=110)
    return path


def asl_confusion(runs_dir: PathLike, out: pathlib.Path, seed: int = 0) -> pathlib.Path:
    """Row-normalised test confusion matrices of CE and CE + ASLoss side by side."""
    sweep = sweeps.load_sweep("fmnist_main")
    cells = [_finished(sweep, runs_dir, method, seed)[0] for method in ASL_PAIR]
    fig = Figure(figsize=(13, 5.8), constrained_layout=True)
    axes = fig.subplots(1, 2)
    for ax, cell in zip(axes, cells):
        metrics = _metrics(cell, runs_dir)["test"]
        if "confusion" not in metrics:
            raise MissingCells(f"{cell.workdir(runs_dir)}/metrics.json has no confusion matrix (written by "
                               f"runs since this script exists): rerun the cell")
        image, colour_label = draw_confusion_matrix(
            ax, metrics["confusion"], class_names=_class_names(cell, runs_dir, len(metrics["confusion"])),
            title=f"{cell.method} (test, seed {cell.seed}): balanced acc. {metrics['balanced_accuracy']:.3f}")
    fig.colorbar(image, ax=list(axes), shrink=0.8, label=colour_label)
    path = out / "asl_confusion.png"
    fig.savefig(path, dpi=110)
    return path


def affinity_error_vs_imbalance(runs_dir: PathLike, out: pathlib.Path) -> pathlib.Path:
    """Test error against the kept fraction of the minority classes, mean ± std over seeds, per method."""
    sweep = sweeps.load_sweep("affinity_imbalance")
    fig = Figure(figsize=(6.5, 4.5), constrained_layout=True)
    ax = fig.subplots()
    for method in AFFINITY_PAIR:
        by_fraction: dict[float, list[float]] = {}
        for cell in _finished(sweep, runs_dir, method, require_all=False):
            fraction = float(dict(cell.overrides)["data.imbalance.fraction"])
            by_fraction.setdefault(fraction, []).append(100 * (1 - _metrics(cell, runs_dir)["test"]["accuracy"]))
        fractions = sorted(by_fraction, reverse=True)
        stats = [mean_std(by_fraction[f]) for f in fractions]
        seeds = sorted({len(v) for v in by_fraction.values()})
        ax.errorbar([100 * f for f in fractions], [m for m, _ in stats], yerr=[s or 0 for _, s in stats],
                    marker="o", capsize=3, label=f"{method} (seeds per point: {'-'.join(map(str, seeds))})")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xticks([10, 5, 2.5], ["10%", "5%", "2.5%"])
    ax.minorticks_off()
    ax.set_xlabel("training images kept for classes 0-4")
    ax.set_ylabel("test error (%)")
    ax.set_title("Fashion-MNIST, step imbalance: error vs imbalance level")
    ax.legend()
    path = out / "affinity_error_vs_imbalance.png"
    fig.savefig(path, dpi=110)
    return path


FIGURES = (asl_representations, asl_confusion, affinity_error_vs_imbalance)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.figures", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs_dir", default=str(sweeps.DEFAULT_RUNS_DIR))
    parser.add_argument("--out", default=str(FIGURES_DIR))
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    status = 0
    for figure in FIGURES:
        try:
            print(f"{figure.__name__}: wrote {figure(args.runs_dir, out)}")
        except MissingCells as e:
            status = 1
            print(f"{figure.__name__}: skipped, {e}")
    return status


if __name__ == "__main__":
    sys.exit(main())
