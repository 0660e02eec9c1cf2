"""The figures of experiments/RESULTS.md, drawn from finished sweep cells (no training here).

    python -m experiments.figures [--runs_dir=experiments/runs] [--out=experiments/figures]

* ``<sweep>_long_tail.png`` for each paper's protocol sweep (``LONG_TAIL``): per-class test recall against the
  class's training images (log x), the paper's method against its baseline, mean over the finished seeds (the
  legend says how many), each class named beside its point, from ``metrics.json["test"]["per_class_recall"]``
  and ``class_counts.json``.
* ``asl_representations.png`` — ASLoss paper Fig. 5: the 2-D last-layer representations of CE and of
  CE + ASLoss (L2) on the same linear head, training and test set, seed 0 of ``asl_fourclass`` (the
  ``embedding_{train,test}.npz`` every run writes; the same ≤ 5000-point sample as its own plots).
* ``asl_confusion.png`` — ASLoss paper Fig. 6: test confusion matrices (colour: row fraction, text: count) of the
  same two runs.

A figure whose cells have not finished is skipped with the cells it needs; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys
from typing import Optional, Sequence, Union

import numpy as np
from matplotlib.figure import Figure

from experiments import sweeps
from experiments.sweeps import Cell, Sweep
from imbalance_jax.evaluation.plots import draw_confusion_matrix, draw_embedding, draw_long_tail

PathLike = Union[str, pathlib.Path]
FIGURES_DIR = sweeps.REPO_ROOT / "experiments" / "figures"
ASL_SWEEP = "asl_fourclass"
ASL_PAIR = ("CE (2-D head)", "ASLoss (L2)")
# sweep -> (method, baseline, grid slug of the point shown)
LONG_TAIL = {"asl_fourclass": ("ASLoss (L2)", "CE (2-D head)", "default"),
             "affinity_step": ("Affinity (m=5)", "CE", "protocol=keep2.5"),
             "tricdb_rho": ("TriCDB-CE", "CDB-CE", "ratio=100.0"),
             "silk_converged": ("C + sem (balanced batches)", "C (random batches)", "default")}


class MissingCells(RuntimeError):
    """The cells a figure needs that have not finished (their commands are in the message)."""


def _finished(sweep: Sweep, runs_dir: PathLike, method: str, seed: Optional[int] = None,
              require_all: bool = True, grid_slug: Optional[str] = None) -> list[Cell]:
    """The method's finished cells (of one seed, or all seeds; at one grid point or all); MissingCells if any
    (``require_all``) or all of them are missing."""
    cells = [c for c in sweep.cells() if c.method == method and (seed is None or c.seed == seed)
             and (grid_slug is None or c.grid_slug == grid_slug)]
    missing = [c for c in cells if sweeps.cell_status(c, runs_dir) != "done"]
    if not require_all and len(missing) < len(cells):
        return [c for c in cells if c not in missing]
    if not cells or missing:
        commands = "\n  ".join(c.command(c.workdir(runs_dir)) for c in missing) or f"(no cell of {method!r})"
        raise MissingCells(f"{sweep.name}/{method}: {len(missing)} cell(s) not finished:\n  {commands}")
    return cells


def _metrics(cell: Cell, runs_dir: PathLike) -> dict:
    return json.loads((cell.workdir(runs_dir) / sweeps.METRICS_FILE).read_text())


def _class_counts(cell: Cell, runs_dir: PathLike) -> dict:
    """The run's class_counts.json, or {} if it has none."""
    path = cell.workdir(runs_dir) / sweeps.CLASS_COUNTS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _class_names(class_counts: dict, num_classes: int) -> list[str]:
    """The class names of a run's class_counts.json, else the class indices."""
    names = class_counts.get("class_names")
    return list(names) if names and len(names) == num_classes else [str(c) for c in range(num_classes)]


def asl_representations(runs_dir: PathLike, out: pathlib.Path, seed: int = 0) -> pathlib.Path:
    """2 × 2 scatter: rows CE / CE + ASLoss, columns train / test, points coloured by class."""
    sweep = sweeps.load_sweep(ASL_SWEEP)
    cells = [_finished(sweep, runs_dir, method, seed)[0] for method in ASL_PAIR]
    fig = Figure(figsize=(13, 10), constrained_layout=True)
    axes = fig.subplots(2, 2)
    for row, cell in enumerate(cells):
        for col, split in enumerate(("train", "test")):
            sample = np.load(cell.workdir(runs_dir) / f"embedding_{split}.npz")
            emb, labels = sample["embedding"], sample["labels"]
            if emb.shape[1] != 2:
                raise ValueError(f"{cell.key}: the {split} embedding is {emb.shape[1]}-D, not the 2-D head layer")
            names = _class_names(_class_counts(cell, runs_dir), int(labels.max()) + 1)
            draw_embedding(axes[row, col], emb, labels, len(names), names=names,
                           title=f"{cell.method}, {split} ({str(sample['layer'])}, seed {cell.seed})")
    path = out / "asl_representations.png"
    fig.savefig(path, dpi=110)
    return path


def asl_confusion(runs_dir: PathLike, out: pathlib.Path, seed: int = 0) -> pathlib.Path:
    """Row-normalised test confusion matrices of CE and CE + ASLoss side by side."""
    sweep = sweeps.load_sweep(ASL_SWEEP)
    cells = [_finished(sweep, runs_dir, method, seed)[0] for method in ASL_PAIR]
    fig = Figure(figsize=(13, 5.8), constrained_layout=True)
    axes = fig.subplots(1, 2)
    for ax, cell in zip(axes, cells):
        metrics = _metrics(cell, runs_dir)["test"]
        if "confusion" not in metrics:
            raise MissingCells(f"{cell.workdir(runs_dir)}/metrics.json has no confusion matrix (written by "
                               f"runs since this script exists): rerun the cell")
        names = _class_names(_class_counts(cell, runs_dir), len(metrics["confusion"]))
        image, colour_label = draw_confusion_matrix(
            ax, metrics["confusion"], class_names=names,
            title=f"{cell.method} (test, seed {cell.seed}): balanced acc. {metrics['balanced_accuracy']:.3f}")
    fig.colorbar(image, ax=list(axes), shrink=0.8, label=colour_label)
    path = out / "asl_confusion.png"
    fig.savefig(path, dpi=110)
    return path


def _mean_recall(cells: Sequence[Cell], runs_dir: PathLike) -> np.ndarray:
    recalls = [[np.nan if r is None else r for r in _metrics(c, runs_dir)["test"]["per_class_recall"]]
               for c in cells]
    return np.nanmean(np.asarray(recalls, np.float64), axis=0)


def long_tail(sweep_name: str, runs_dir: PathLike, out: pathlib.Path) -> pathlib.Path:
    """Per-class test recall against training images for the sweep's method and baseline (``LONG_TAIL``)."""
    sweep = sweeps.load_sweep(sweep_name)
    method, baseline, grid_slug = LONG_TAIL[sweep_name]
    cells = {m: _finished(sweep, runs_dir, m, require_all=False, grid_slug=grid_slug) for m in (method, baseline)}
    class_counts = json.loads((cells[method][0].workdir(runs_dir) / sweeps.CLASS_COUNTS_FILE).read_text())
    counts = class_counts["train"]
    names = _class_names(class_counts, len(counts))
    fig = Figure(figsize=(8.5, 4.8), constrained_layout=True)
    point = "" if grid_slug == "default" else f", {grid_slug}"
    draw_long_tail(fig.add_subplot(), counts, _mean_recall(cells[method], runs_dir).tolist(),
                   label=f"{method} ({len(cells[method])} seeds)",
                   baseline_recall=_mean_recall(cells[baseline], runs_dir).tolist(),
                   baseline_label=f"{baseline} ({len(cells[baseline])} seeds)",
                   title=f"{sweep_name}{point}: per-class test recall vs training images", class_names=names)
    path = out / f"{sweep_name}_long_tail.png"
    fig.savefig(path, dpi=110)
    return path


FIGURES = (asl_representations, asl_confusion,
           *(functools.partial(long_tail, name) for name in LONG_TAIL))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.figures", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs_dir", default=str(sweeps.DEFAULT_RUNS_DIR))
    parser.add_argument("--out", default=str(FIGURES_DIR))
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    status = 0
    for figure in FIGURES:
        name = figure.__name__ if hasattr(figure, "__name__") else f"{figure.func.__name__}({figure.args[0]})"
        try:
            print(f"{name}: wrote {figure(args.runs_dir, out)}")
        except MissingCells as e:
            status = 1
            print(f"{name}: skipped, {e}")
    return status


if __name__ == "__main__":
    sys.exit(main())
