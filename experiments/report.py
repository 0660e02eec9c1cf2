"""Markdown tables of a sweep's finished cells.

    python -m experiments.report <sweep name or path> [--out experiments/results/<sweep>.md] [--runs_dir=DIR]
                                 [--split test]

One row per method (× grid point); columns accuracy, balanced accuracy, macro F1, minority-class F1 and
many/medium/few-shot accuracy of ``metrics.json[split]``, each as mean ± sample std (ddof = 1) over the
finished seeds, in %; an ``n`` column appears when some row has fewer finished seeds than the sweep asks for.
A "Per class" section gives each row's mean recall and number of predictions per class. A "Training data" section
gives the imbalance ratio IR and balance deviation BD (silk paper Eqs. 6-7) of the finished cells' training sets,
one line per distinct value. The sweep's blocks in experiments/RESULTS.md
(``<!-- table:<sweep> -->`` and ``<!-- paired:<sweep> -->``) are rewritten from the same cells. Cells that are not finished are listed with their state
(not run, interrupted, failed, stale); the appendix gives every finished cell's command and wall time.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math
import os
import pathlib
import sys
from typing import Callable, Mapping, Optional, Sequence, Union

from experiments import sweeps
from experiments.sweeps import Cell, Sweep

PathLike = Union[str, os.PathLike]

METRICS = (("accuracy", "Accuracy"), ("balanced_accuracy", "Balanced acc."), ("macro_f1", "Macro F1"),
           ("minority_f1", "Minority F1"), ("many_shot_accuracy", "Many-shot acc."),
           ("medium_shot_accuracy", "Medium-shot acc."), ("few_shot_accuracy", "Few-shot acc."))
_STATE = {"todo": "not run", "partial": "interrupted: has checkpoints, resumes on the next run",
          "failed": "failed", "stale": "stale: its command.txt differs from the sweep's command (the sweep "
                                       "changed); delete the cell's directory and rerun it"}


@dataclasses.dataclass(frozen=True)
class CellResult:
    """What a cell's directory holds."""

    cell: Cell
    workdir: pathlib.Path
    status: str  # one of sweeps.STATUSES
    metrics: Optional[dict]  # metrics.json (finished cells only)
    command: Optional[str]  # command.txt
    wall_time: Optional[float]  # wall_time.txt, seconds
    error: Optional[str]  # last line of error.txt


def _read(path: pathlib.Path) -> Optional[str]:
    return path.read_text().strip() if path.is_file() else None


def collect(sweep: Sweep, runs_dir: PathLike = sweeps.DEFAULT_RUNS_DIR) -> list[CellResult]:
    """Every cell of the sweep with its status and, when finished, its metrics."""
    results = []
    for cell in sweep.cells():
        workdir = cell.workdir(runs_dir)
        status = sweeps.cell_status(cell, runs_dir)
        metrics = json.loads(_read(workdir / sweeps.METRICS_FILE)) if status == "done" else None
        wall_time = _read(workdir / sweeps.WALL_TIME_FILE)
        error = _read(workdir / sweeps.ERROR_FILE)
        results.append(CellResult(cell, workdir, status, metrics, _read(workdir / sweeps.COMMAND_FILE),
                                  float(wall_time) if wall_time else None,
                                  error.splitlines()[-1] if error else None))
    return results


def mean_std(values: Sequence[float]) -> tuple[float, Optional[float]]:
    """Mean and sample standard deviation (ddof = 1; None for a single value)."""
    if not values:
        raise ValueError("mean_std(values): needs at least one value")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def format_mean_std(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    """``"71.23 ± 0.45"``: mean ± sample std of ``values`` times ``scale``; one value has no ± part; none is ``—``."""
    if not values:
        return "—"
    mean, std = mean_std([scale * v for v in values])
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_percent(values: Sequence[float]) -> str:
    """``"71.23 ± 0.45"`` for fractions in [0, 1] shown in %; one value has no ± part; none is ``—``."""
    return format_mean_std(values, scale=100.0)


def _table(sweep: Sweep, results: Sequence[CellResult], split: str) -> list[str]:
    axes = [axis.name for axis in sweep.axes()]
    done: dict = {}
    for r in results:
        if r.status == "done":
            done.setdefault(r.cell.row, []).append(r.metrics.get(split, {}))
    rows = sweep.rows()
    show_n = any(len(done.get(row, [])) < len(sweep.seeds) for row in rows)
    header = ["Method", *axes, *(["n"] if show_n else []), *(title for _, title in METRICS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        method, grid = row
        runs = done.get(row, [])
        values = [format_percent([m[key] for m in runs if m.get(key) is not None]) for key, _ in METRICS]
        cells = [method, *(label for _, label in grid), *([f"n={len(runs)}"] if show_n else []), *values]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# Two-sided 95 % quantiles of Student's t with n - 1 degrees of freedom, n = 2 .. 11.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
PAIRED_METRICS = (("balanced_accuracy", "Balanced acc."), ("macro_f1", "Macro F1"), ("minority_f1", "Minority F1"))


def paired_difference(values: Sequence[float], scale: float = 100.0, digits: int = 2) -> str:
    """``"+1.23 [-0.40, +2.86] (n=3)"``: mean of by-seed differences (times ``scale``: fractions shown in points
    by default) with the 95 % Student-t interval; one difference has no interval."""
    diffs = [scale * v for v in values]
    if not diffs:
        return "—"
    mean, std = mean_std(diffs)
    if std is None:
        return f"{mean:+.{digits}f} (n=1)"
    half = _T975[len(diffs) - 1] * std / math.sqrt(len(diffs))
    return f"{mean:+.{digits}f} [{mean - half:+.{digits}f}, {mean + half:+.{digits}f}] (n={len(diffs)})"


def paired_table(sweep: Sweep, by_cell: Mapping[tuple[str, str, int], Mapping[str, Optional[float]]],
                 measures: Sequence[tuple[str, str]],
                 format_diffs: Callable[[Sequence[float]], str] = paired_difference) -> list[str]:
    """Markdown rows of method − baseline per grid point, paired by seed, for the sweep's ``comparisons``:
    ``by_cell[(method, grid_slug, seed)][key]`` holds a finished cell's value of each ``(key, title)`` measure
    (None or absent: not measured); ``format_diffs`` formats one measure's by-seed differences."""
    axes = [axis.name for axis in sweep.axes()]
    header = ["Method − baseline", *axes, *(title for _, title in measures)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, baseline in sweep.comparisons:
        for (row_method, grid) in sweep.rows():
            if row_method != method:
                continue
            slug = next(c.grid_slug for c in sweep.cells() if c.row == (row_method, grid))
            seeds = [s for s in sweep.seeds if (method, slug, s) in by_cell and (baseline, slug, s) in by_cell]
            values = [format_diffs([by_cell[(method, slug, s)][key] - by_cell[(baseline, slug, s)][key]
                                    for s in seeds if by_cell[(method, slug, s)].get(key) is not None
                                    and by_cell[(baseline, slug, s)].get(key) is not None])
                      for key, _ in measures]
            lines.append("| " + " | ".join([f"{method} − {baseline}", *(label for _, label in grid), *values]) + " |")
    return lines


def _paired(sweep: Sweep, results: Sequence[CellResult], split: str) -> list[str]:
    """Method − baseline of the ``PAIRED_METRICS`` of ``split``, per grid point, paired by seed."""
    return paired_table(sweep, {(r.cell.method, r.cell.grid_slug, r.cell.seed): r.metrics.get(split, {})
                                for r in results if r.status == "done"}, PAIRED_METRICS)


def _posthoc(results: Sequence[CellResult], split: str) -> list[str]:
    """Balanced accuracy before and after the post-hoc corrections recorded in the cells' metrics.json."""
    rows: dict = {}
    for r in results:
        posthoc = (r.metrics or {}).get("posthoc", {}) if r.status == "done" else {}
        for name, result in posthoc.items():
            corrected = result["metrics"].get(split, {}).get("balanced_accuracy")
            plain = r.metrics.get(split, {}).get("balanced_accuracy")
            if corrected is None or plain is None:
                continue
            entry = rows.setdefault((r.cell.method, r.cell.grid_slug, name), {"plain": [], "corrected": [],
                                                                               "values": []})
            entry["plain"].append(plain)
            entry["corrected"].append(corrected)
            entry["values"].append(result["tau"] if name == "logit_adjustment" else result["alpha"])
    if not rows:
        return []
    lines = ["| Method | grid | correction | chosen on val | Balanced acc. | corrected |", "|---|---|---|---|---|---|"]
    for (method, slug, name), entry in rows.items():
        chosen = ", ".join(f"{v:g}" for v in entry["values"])
        lines.append(f"| {method} | {slug} | {name} | {chosen} | {format_percent(entry['plain'])} | "
                     f"{format_percent(entry['corrected'])} |")
    return lines


def _per_class(results: Sequence[CellResult], split: str) -> list[str]:
    """Per row (method × grid point): mean over the finished seeds of each class's recall (in %) and of how many
    ``split`` images are predicted as it (confusion-matrix column sums), under a line of the grid point's training
    images per class (``class_counts.json`` of its first finished cell)."""
    rows: dict = {}
    train_counts: dict = {}
    names: Optional[list] = None
    for r in results:
        metrics = (r.metrics or {}).get(split, {}) if r.status == "done" else {}
        if metrics.get("per_class_recall") is None or metrics.get("confusion") is None:
            continue
        entry = rows.setdefault((r.cell.method, r.cell.grid_slug), {"recall": [], "predicted": []})
        entry["recall"].append(metrics["per_class_recall"])
        entry["predicted"].append([sum(column) for column in zip(*metrics["confusion"])])
        if r.cell.grid_slug not in train_counts:
            counts = json.loads(_read(r.workdir / sweeps.CLASS_COUNTS_FILE) or "{}")
            if "train" in counts:
                train_counts[r.cell.grid_slug] = counts["train"]
                names = names or counts.get("class_names")
    if not rows:
        return []
    num_classes = len(next(iter(rows.values()))["recall"][0])
    names = names if names and len(names) == num_classes else [str(c) for c in range(num_classes)]
    lines = ["| Method | grid | seeds | " + " | ".join(names) + " |", "|" + "---|" * (num_classes + 3)]
    for slug in dict.fromkeys(slug for _, slug in rows):
        if slug in train_counts:
            lines.append(f"| training images | {slug} | | " + " | ".join(map(str, train_counts[slug])) + " |")
        for (method, row_slug), entry in rows.items():
            if row_slug != slug:
                continue
            for key, label, scale, digits in (("recall", "recall %", 100.0, 1), ("predicted", "predicted", 1.0, 0)):
                means = [sum(v[c] for v in entry[key]) / len(entry[key]) for c in range(num_classes)]
                lines.append(f"| {method}: {label} | {slug} | {len(entry[key])} | "
                             + " | ".join(f"{scale * m:.{digits}f}" for m in means) + " |")
    return lines


def _training_data(results: Sequence[CellResult]) -> list[str]:
    """One line per distinct (IR, BD, minority classes) of the finished cells' ``metrics.json["imbalance"]``,
    naming the grid points (and, where a grid point's seeds differ, the cells) that have it."""
    groups: dict = {}
    for r in results:
        imbalance = (r.metrics or {}).get("imbalance") if r.status == "done" else None
        if imbalance:
            key = (imbalance.get("imbalance_ratio"), imbalance.get("balance_deviation"),
                   tuple(imbalance.get("minority_classes", ())))
            groups.setdefault(key, []).append(r.cell)
    if not groups:
        return ["No finished cell recorded its training set's imbalance."]
    groups_per_point = collections.Counter(slug for cells in groups.values() for slug in {c.grid_slug for c in cells})
    lines = []
    for (ratio, deviation, minority), cells in groups.items():
        ir = "∞ (a class has no image)" if ratio is None else f"{ratio:.1f}"
        bd = "—" if deviation is None else f"{deviation:.3f}"
        if len(groups) == 1:
            where = "every finished cell"
        else:
            where = ", ".join(sorted({f"`{c.grid_slug}`" if groups_per_point[c.grid_slug] == 1 else f"`{c.key}`"
                                      for c in cells}))
        lines.append(f"- IR = {ir}, BD = {bd}, minority classes {list(minority)}: {where}")
    return lines


def _methods(sweep: Sweep) -> list[str]:
    lines = []
    for method, spec in sweep.methods.items():
        spec = dict(spec)
        config = spec.pop("config", sweep.base_config)
        overrides = " ".join(f"`{path}={sweeps.format_value(path, v)}`" for path, v in spec.items())
        lines.append(f"- **{method}**: `{config}`" + (f" with {overrides}" if overrides else ""))
    if sweep.common_overrides:
        common = " ".join(f"`{p}={sweeps.format_value(p, v)}`" for p, v in sweep.common_overrides.items())
        lines.append(f"- every cell: {common}")
    for axis, (key, values) in zip(sweep.axes(), sweep.grid.items()):
        detail = ("; ".join(f"{label}: " + ", ".join(f"`{p}={sweeps.format_value(p, v)}`"
                                                     for p, v in overrides.items())
                            for label, overrides in axis.values)
                  if isinstance(values[0], sweeps.Setting) else f"`{key}` ∈ {{{', '.join(label for label, _ in axis.values)}}}")
        lines.append(f"- grid axis **{axis.name}**: {detail}")
    return lines


def render(sweep: Sweep, results: Sequence[CellResult], split: str = "test", sweep_arg: Optional[str] = None) -> str:
    """The Markdown report of a sweep (see the module docstring); ``sweep_arg`` is how the sweep is named on the
    ``experiments.run`` command line (default: its name)."""
    finished = sum(r.status == "done" for r in results)
    title = f"# Sweep `{sweep.name}`"
    lines = [title, ""]
    if sweep.description:
        lines += [sweep.description.strip(), ""]
    lines += [f"Seeds {', '.join(map(str, sweep.seeds))}; {finished}/{len(results)} cells finished. "
              f"`{split}` metrics in %, mean ± sample standard deviation (ddof = 1) over the finished seeds "
              "(a single seed has no ±); — = no finished seed, or no class in that shot group.", ""]
    lines += _table(sweep, results, split)
    if sweep.comparisons:
        lines += ["", "## Paired differences", "", f"`{split}` metric of the method minus its baseline on the same "
                  "seed (same data split and initialisation seed), in points: mean [95 % Student-t interval] over "
                  "the seeds where both finished.", "", *_paired(sweep, results, split)]
    posthoc = _posthoc(results, split)
    if posthoc:
        lines += ["", "## Post-hoc corrections", "", f"`{split}` balanced accuracy of each finished cell before and "
                  "after the correction whose strength was chosen on the validation split (logit adjustment: τ; "
                  "TDE: α); no retraining.", "", *posthoc]
    per_class = _per_class(results, split)
    if per_class:
        lines += ["", "## Per class", "", f"Mean over the finished seeds of each class's `{split}` recall (in %) and of "
                  f"the number of `{split}` images predicted as that class, under each grid point's training images "
                  "per class.", "", *per_class]
    lines += ["", "## Training data", "", "Imbalance of the training split (IR = largest / smallest class count, "
              "BD = balance deviation; silk paper Eqs. 6-7), from each cell's `metrics.json`:", "",
              *_training_data(results)]
    lines += ["", "## Methods", "", *_methods(sweep)]
    missing = [r for r in results if r.status != "done"]
    lines += ["", f"## Missing cells ({len(missing)})", ""]
    if missing:
        for r in missing:
            state = _STATE[r.status] + (f": {r.error}" if r.status == "failed" and r.error else "")
            lines.append(f"- `{r.cell.key}` — {state}")
        lines += ["", f"Run them with `python -m experiments.run {sweep_arg or sweep.name}` (finished cells are skipped)."]
    else:
        lines.append("None: every cell finished.")
    lines += ["", "## Appendix: commands and wall times", "",
              "Each command reproduces its cell when run from the repository root.", ""]
    for r in results:
        if r.status != "done":
            continue
        wall = "wall time not recorded" if r.wall_time is None else f"{r.wall_time:.1f} s"
        epochs = r.metrics.get("epochs_trained")
        detail = f"{wall}, {epochs} epoch{'' if epochs == 1 else 's'}" + (" (stopped early)" if r.metrics.get("stopped_early") else "")
        lines += [f"- `{r.cell.key}` ({detail})", f"  `{r.command or r.cell.command(r.workdir)}`"]
    if not finished:
        lines.append("No finished cell yet.")
    return "\n".join(lines) + "\n"


RESULTS_MD = sweeps.REPO_ROOT / "experiments" / "RESULTS.md"


def update_results_md(path: PathLike, sweep: Sweep, results: Sequence[CellResult], split: str = "test") -> bool:
    """Replaces the blocks ``<!-- table:<sweep> -->`` … ``<!-- /table -->`` (the table) and
    ``<!-- paired:<sweep> -->`` … ``<!-- /paired -->`` (the paired differences) of ``path`` with the current
    ones; returns whether the file has such a block."""
    path = pathlib.Path(path)
    if not path.is_file():
        return False
    text = path.read_text()
    finished = sum(r.status == "done" for r in results)
    blocks = {"table": [f"{finished}/{len(results)} cells finished (seeds {', '.join(map(str, sweep.seeds))}); "
                        f"`{split}` metrics in %, mean ± sample std over the finished seeds.", "",
                        *_table(sweep, results, split)],
              "paired": _paired(sweep, results, split) if sweep.comparisons else []}
    found = False
    for kind, lines in blocks.items():
        start, end = f"<!-- {kind}:{sweep.name} -->", f"<!-- /{kind} -->"
        while start in text:
            i = text.index(start)
            j = text.index(end, i)
            text = text[:i] + start + "\n" + "\n".join(lines) + "\n" + text[j:]
            found = True
            break
    if found:
        path.write_text(text)
    return found


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", help=f"a sweep name ({', '.join(sweeps.sweep_names())}) or a .py path")
    parser.add_argument("--out", default=None, help="Markdown file (default: experiments/results/<sweep>.md)")
    parser.add_argument("--runs_dir", default=str(sweeps.DEFAULT_RUNS_DIR),
                        help="where the cells live (default: experiments/runs)")
    parser.add_argument("--split", default="test", choices=("test", "val", "train"),
                        help="which split's metrics the table shows (default: test)")
    args = parser.parse_args(argv)
    try:
        sweep = sweeps.load_sweep(args.sweep)
    except ValueError as e:
        parser.error(str(e))
    results = collect(sweep, args.runs_dir)
    out = pathlib.Path(args.out) if args.out else sweeps.DEFAULT_RESULTS_DIR / f"{sweep.name}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(sweep, results, args.split, sweep_arg=args.sweep))
    finished = sum(r.status == "done" for r in results)
    updated = update_results_md(RESULTS_MD, sweep, results, args.split) if args.out is None else False
    print(f"{sweep.name}: {finished}/{len(results)} cells finished; wrote {out}"
          + (f" and its tables in {RESULTS_MD}" if updated else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
