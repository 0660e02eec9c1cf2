"""How compact and separated each class is in a sweep's learned embedding, from the finished cells' test embeddings.

    python -m experiments.embedding_geometry <sweep> [--runs_dir=DIR] [--split=test] [--out=FILE.md]

Reads ``embedding_<split>.npz`` of every finished cell (the embedding layer the run plots: ASLoss's 2-D or 32-d last
layer, the affinity head's input, ...; at most 5000 examples, the same subset as the plot) and gives, per method
(× grid point), mean ± sample std over seeds of

- **silhouette**: scikit-learn's ``silhouette_score`` (Euclidean), in [-1, 1]; higher is tighter classes that are
  further apart (Rousseeuw 1987);
- **Davies-Bouldin index**: scikit-learn's ``davies_bouldin_score``, the mean over classes of the largest
  (spread_i + spread_j) / distance(centre_i, centre_j), spread being the mean distance to the class centre; 0 is
  best, above 1 the nearest classes overlap (Davies & Bouldin 1979). Both are invariant to the embedding's scale.

and, for the sweep's comparisons, the by-seed paired difference with its 95 % Student-t interval. This is the
quantitative form of ASLoss's claim (Figs. 5-6) that its embedding is tighter and better separated than CE's.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Optional, Sequence

import numpy as np

from experiments import report, sweeps

MEASURES = (("silhouette", "Silhouette"), ("davies_bouldin", "Davies-Bouldin"))


def geometry(embedding: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Silhouette and Davies-Bouldin index (module docstring) of an embedding [N, D] with integer labels [N];
    needs at least two classes."""
    from sklearn.metrics import davies_bouldin_score, silhouette_score

    embedding = np.asarray(embedding, np.float64)
    labels = np.asarray(labels)
    if embedding.ndim != 2 or labels.shape != embedding.shape[:1] or len(np.unique(labels)) < 2:
        raise ValueError(f"geometry(embedding {embedding.shape}, labels {labels.shape}): needs [N, D] and [N] "
                         "with at least two classes")
    return {"silhouette": float(silhouette_score(embedding, labels)),
            "davies_bouldin": float(davies_bouldin_score(embedding, labels))}


def collect(sweep: sweeps.Sweep, runs_dir: pathlib.Path, split: str) -> dict[tuple, dict[str, float]]:
    """``{(method, grid_slug, seed): geometry}`` of the finished cells that saved an embedding of ``split``."""
    out = {}
    for cell in sweep.cells():
        path = cell.workdir(runs_dir) / f"embedding_{split}.npz"
        if sweeps.cell_status(cell, runs_dir) == "done" and path.is_file():
            with np.load(path) as saved:
                out[(cell.method, cell.grid_slug, cell.seed)] = geometry(saved["embedding"], saved["labels"])
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
                                        *(report.format_mean_std([r[k] for r in runs], digits=3)
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
    parser.add_argument("--split", default="test", choices=("test", "train"),
                        help="whose saved embedding (runs save embedding_test.npz and embedding_train.npz)")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    try:
        sweep = sweeps.load_sweep(args.sweep)
    except ValueError as e:
        parser.error(str(e))
    measured = collect(sweep, pathlib.Path(args.runs_dir), args.split)
    if not measured:
        parser.error(f"{sweep.name}: no finished cell under {args.runs_dir} has embedding_{args.split}.npz")
    text = render(sweep, measured, args.split)
    if args.out:
        pathlib.Path(args.out).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
