"""How compact and separated each class is in a sweep's learned embedding, from the finished cells' saved embeddings.

    python -m experiments.embedding_geometry <sweep> [--runs_dir=DIR] [--split test [train]] [--out=FILE.md]

Reads ``embedding_<split>.npz`` of every finished cell (the embedding layer the run plots: ASLoss's 2-D or 32-d last
layer, the affinity head's input, ...; at most 5000 examples, the same subset as the plot) and gives, per method
(× grid point), mean ± sample std over seeds of

- **silhouette**: scikit-learn's ``silhouette_score`` (Euclidean), in [-1, 1]; higher is tighter classes that are
  further apart (Rousseeuw 1987);
- **Davies-Bouldin index**: scikit-learn's ``davies_bouldin_score``, the mean over classes of the largest
  (spread_i + spread_j) / distance(centre_i, centre_j), spread being the mean distance to the class centre; 0 is
  best, above 1 the nearest classes overlap (Davies & Bouldin 1979);
- **rare / frequent spread**: the mean spread of the rare classes over that of the others, a class being rare when
  its training count (the cell's ``class_counts.json``) is below half the largest; 1 is equal spread, below 1 the
  rare classes occupy smaller regions (the affinity paper's Fig. 2 and §4.6 observation on softmax CE); — when no
  class is rare (a balanced training set);

and, for the sweep's comparisons, the by-seed paired difference with its 95 % Student-t interval. All three are
invariant to the embedding's scale. This is the
quantitative form of ASLoss's claim (Figs. 5-6) that its embedding is tighter and better separated than CE's, and of
the affinity paper's (§4.6) that its clusters have the same spread for rare and frequent classes.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Optional, Sequence

import numpy as np

from experiments import report, sweeps

MEASURES = (("silhouette", "Silhouette"), ("davies_bouldin", "Davies-Bouldin"),
            ("rare_spread_ratio", "Rare / frequent spread"))


def rare_spread_ratio(embedding: np.ndarray, labels: np.ndarray, train_counts: Sequence[int]) -> Optional[float]:
    """Mean spread (mean distance to the class centre) of the rare classes over that of the others (module
    docstring), over the classes present in ``labels``; None when no present class, or every one, is rare."""
    counts = np.asarray(train_counts)
    present = np.unique(labels)
    if present.max() >= len(counts):
        raise ValueError(f"rare_spread_ratio: label {present.max()} has no training count ({len(counts)} classes)")
    spread = {c: np.linalg.norm(embedding[labels == c] - embedding[labels == c].mean(0), axis=1).mean()
              for c in present}
    rare = [c for c in present if counts[c] < counts.max() / 2]
    frequent = [c for c in present if c not in rare]
    if not rare or not frequent:
        return None
    return float(np.mean([spread[c] for c in rare]) / np.mean([spread[c] for c in frequent]))


def geometry(embedding: np.ndarray, labels: np.ndarray,
             train_counts: Optional[Sequence[int]] = None) -> dict[str, Optional[float]]:
    """The measures of the module docstring of an embedding [N, D] with integer labels [N]; needs at least two
    classes. Without ``train_counts`` (per-class training counts) the spread ratio is None."""
    from sklearn.metrics import davies_bouldin_score, silhouette_score

    embedding = np.asarray(embedding, np.float64)
    labels = np.asarray(labels)
    if embedding.ndim != 2 or labels.shape != embedding.shape[:1] or len(np.unique(labels)) < 2:
        raise ValueError(f"geometry(embedding {embedding.shape}, labels {labels.shape}): needs [N, D] and [N] "
                         "with at least two classes")
    return {"silhouette": float(silhouette_score(embedding, labels)),
            "davies_bouldin": float(davies_bouldin_score(embedding, labels)),
            "rare_spread_ratio": (None if train_counts is None
                                  else rare_spread_ratio(embedding, labels, train_counts))}


def collect(sweep: sweeps.Sweep, runs_dir: pathlib.Path, split: str) -> dict[tuple, dict[str, Optional[float]]]:
    """``{(method, grid_slug, seed): geometry}`` of the finished cells that saved an embedding of ``split``."""
    out = {}
    for cell in sweep.cells():
        workdir = cell.workdir(runs_dir)
        path = workdir / f"embedding_{split}.npz"
        if sweeps.cell_status(cell, runs_dir) == "done" and path.is_file():
            counts_path = workdir / sweeps.CLASS_COUNTS_FILE
            counts = json.loads(counts_path.read_text())["train"] if counts_path.is_file() else None
            with np.load(path) as saved:
                out[(cell.method, cell.grid_slug, cell.seed)] = geometry(saved["embedding"], saved["labels"], counts)
    return out


def render(sweep: sweeps.Sweep, measured: dict[tuple, dict[str, float]], split: str) -> str:
    """The per-row table and the paired differences, as Markdown."""
    axes = [axis.name for axis in sweep.axes()]
    slugs = {cell.row: cell.grid_slug for cell in sweep.cells()}
    lines = [f"## {sweep.name}: {split} embedding geometry", "",
             "| Method | " + "".join(f"{a} | " for a in axes) + "n | " + " | ".join(t for _, t in MEASURES) + " |",
             "|" + "---|" * (len(axes) + 2 + len(MEASURES))]
    for row in sweep.rows():
        method, grid = row
        runs = [measured[(method, slugs[row], s)] for s in sweep.seeds if (method, slugs[row], s) in measured]
        lines.append("| " + " | ".join([method, *(label for _, label in grid), str(len(runs)),
                                        *(report.format_mean_std([r[k] for r in runs if r[k] is not None],
                                                                 digits=3)
                                          for k, _ in MEASURES)]) + " |")
    lines += ["", "Paired by seed (method − baseline; 95 % interval):", "",
              *report.paired_table(sweep, measured, MEASURES,
                                   lambda diffs: report.paired_difference(diffs, scale=1.0, digits=3))]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.embedding_geometry",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", help=f"a sweep name ({', '.join(sweeps.sweep_names())}) or a .py path")
    parser.add_argument("--runs_dir", default=str(sweeps.DEFAULT_RUNS_DIR))
    parser.add_argument("--split", default=["test"], nargs="+", choices=("test", "train"),
                        help="whose saved embeddings, one section each (runs save embedding_test.npz and "
                             "embedding_train.npz)")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    try:
        sweep = sweeps.load_sweep(args.sweep)
    except ValueError as e:
        parser.error(str(e))
    sections = []
    for split in args.split:
        measured = collect(sweep, pathlib.Path(args.runs_dir), split)
        if not measured:
            parser.error(f"{sweep.name}: no finished cell under {args.runs_dir} has embedding_{split}.npz")
        sections.append(render(sweep, measured, split))
    command = f"python -m experiments.embedding_geometry {sweep.name} --split {' '.join(args.split)}"
    text = f"Written by `{command}`.\n\n" + "\n".join(sections)
    if args.out:
        pathlib.Path(args.out).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
