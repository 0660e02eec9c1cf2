"""Per-epoch validation and test curves of a sweep's finished cells, read from their TensorBoard event files.

    python -m experiments.curves <sweep> [--runs_dir=DIR] [--tag=val/balanced_accuracy] [--method=NAME]
                                        [--out=FILE.md]
    python -m experiments.curves --workdir=RUN [--tag='train/class_weight/*'] [--out=FILE.md]

Prints (or writes) a Markdown table per cell (or for one run's workdir): epoch, the tags' values, and the first epoch
at which each tag is within ``--tolerance`` (default 0.01) of its best value over the run, which is how the sweeps'
budgets were chosen. The best value is the largest, or the smallest for a loss or an error (``lower_is_better``).
Any logged scalar works as a tag (``train/triplet/fraction_active``), and a wildcard pattern stands for every tag it
matches (``train/class_weight/*``: a weighted loss's per-class weights). Event files are kept
on the machine that ran the cell (they are not committed).
"""

from __future__ import annotations

import argparse
import fnmatch
import pathlib
import sys
from typing import Optional, Sequence

from experiments import sweeps

DEFAULT_TAGS = ("val/balanced_accuracy", "test/balanced_accuracy")


def read_scalars(workdir: pathlib.Path, tags: Sequence[str]) -> dict[str, dict[int, float]]:
    """``{tag: {step: value}}`` from ``workdir/tensorboard`` (the last value written for a step wins). A tag with
    shell wildcards (``train/class_weight/*``) stands for every logged tag it matches, in the order first logged."""
    import tensorflow as tf

    values: dict[str, dict[int, float]] = {tag: {} for tag in tags if not _is_pattern(tag)}
    patterns = [tag for tag in tags if _is_pattern(tag)]
    for path in sorted((workdir / "tensorboard").glob("events.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag not in values and any(fnmatch.fnmatchcase(value.tag, p) for p in patterns):
                    values[value.tag] = {}
                if value.tag in values:
                    values[value.tag][int(event.step)] = float(tf.make_ndarray(value.tensor))
    return values


def _is_pattern(tag: str) -> bool:
    return any(ch in tag for ch in "*?[")


def lower_is_better(tag: str) -> bool:
    """Whether a tag's best value is its smallest: losses and errors (``val/loss``, ``train/loss_ce``,
    ``test/expected_calibration_error``)."""
    name = tag.rsplit("/", 1)[-1]
    return "loss" in name or "error" in name


def best_value(curve: dict[int, float], minimize: bool = False) -> float:
    """The curve's largest value, or its smallest when ``minimize``."""
    return min(curve.values()) if minimize else max(curve.values())


def plateau_epoch(curve: dict[int, float], tolerance: float, minimize: bool = False) -> Optional[int]:
    """The first epoch whose value is within ``tolerance`` of the best value of the whole run (the largest, or the
    smallest when ``minimize``); None if empty."""
    if not curve:
        return None
    best = best_value(curve, minimize)
    return min(epoch for epoch, value in curve.items() if abs(value - best) <= tolerance)


def run_curves(workdir: pathlib.Path, tags: Sequence[str], tolerance: float) -> list[str]:
    """Markdown lines for one run: each tag's best value and plateau epoch, then the per-epoch table."""
    scalars = read_scalars(workdir, tags)
    names = list(scalars)
    lines = []
    for tag in names:
        if not scalars[tag]:
            lines.append(f"- {tag}: not logged by this run")
            continue
        minimize = lower_is_better(tag)
        lines.append(f"- {tag}: best{' (lowest)' if minimize else ''} "
                     f"{best_value(scalars[tag], minimize):.4f}; first within {tolerance} of it at epoch "
                     f"{plateau_epoch(scalars[tag], tolerance, minimize)}")
    lines += ["", "| epoch | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for epoch in sorted(set().union(*scalars.values())):
        row = [f"{scalars[t][epoch]:.4f}" if epoch in scalars[t] else "" for t in names]
        lines.append(f"| {epoch} | " + " | ".join(row) + " |")
    return lines + [""]


def curves_table(sweep: sweeps.Sweep, runs_dir: pathlib.Path, tags: Sequence[str], tolerance: float,
                 methods: Sequence[str] = ()) -> str:
    """The curves of the sweep's finished cells (of ``methods`` only, when given)."""
    lines = [f"## {sweep.name}: per-epoch curves", ""]
    for cell in sweep.cells():
        workdir = cell.workdir(runs_dir)
        if (methods and cell.method not in methods) or sweeps.cell_status(cell, runs_dir) != "done":
            continue
        lines += [f"### {cell.method} ({cell.key})", "", f"`{cell.command(workdir)}`", ""]
        lines += run_curves(workdir, tags, tolerance)
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.curves", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", nargs="?", default="", help="a sweep's name (or give --workdir)")
    parser.add_argument("--workdir", default="", help="one run's directory instead of a sweep")
    parser.add_argument("--runs_dir", default=str(sweeps.DEFAULT_RUNS_DIR))
    parser.add_argument("--tag", action="append", default=None,
                        help=f"scalar tag or wildcard pattern (repeatable); default {DEFAULT_TAGS}")
    parser.add_argument("--method", action="append", default=None, help="only this method's cells (repeatable)")
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    tags = tuple(args.tag or DEFAULT_TAGS)
    if bool(args.sweep) == bool(args.workdir):
        parser.error("give either a sweep's name or --workdir=DIR (one run), not both")
    if args.workdir:
        workdir = pathlib.Path(args.workdir)
        if not (workdir / "tensorboard").is_dir():
            parser.error(f"--workdir {workdir} has no tensorboard/ directory (is it a run's workdir?)")
        text = "\n".join([f"## {workdir}: per-epoch curves", ""] + run_curves(workdir, tags, args.tolerance))
    else:
        try:
            sweep = sweeps.load_sweep(args.sweep)
        except ValueError as e:
            parser.error(str(e))
        unknown = sorted(set(args.method or ()) - set(sweep.methods))
        if unknown:
            parser.error(f"--method {', '.join(unknown)} is not a method of {sweep.name}; "
                         f"allowed: {', '.join(sweep.methods)}")
        text = curves_table(sweep, pathlib.Path(args.runs_dir), tags, args.tolerance, tuple(args.method or ()))
    if args.out:
        pathlib.Path(args.out).write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
