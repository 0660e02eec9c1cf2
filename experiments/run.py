"""Runs a sweep's cells one after another, resumably.

    python -m experiments.run <sweep name or path> [--only=REGEX] [--shard=I/N] [--dry_run] [--subprocess]
                              [--runs_dir=DIR] [--compilation_cache=DIR]

Each cell (see :mod:`experiments.sweeps`) runs in its own workdir. By default it runs in this process through
``imbalance_jax.train.train_and_evaluate`` on the config that ``python -m imbalance_jax.main`` builds from the
very same flags (its ml_collections ``--config`` flag, locked), so the ``command.txt`` written into the cell
reproduces it; ``--subprocess`` runs that command instead (slower start-up, nothing shared between cells).
Cells with a ``metrics.json`` are skipped; an interrupted cell resumes from its own checkpoints (train.py
resumes automatically); a failed cell gets an ``error.txt`` and is retried by the next invocation.

Before anything trains, the config of every cell to run is built and checked without data: override paths and
values, and ``imbalance_jax.experiment.check`` (field values, and a shape-only trace of the model and the losses:
every feature layer a loss reads must exist). A typo in a sweep file therefore fails in seconds.
``--dry_run`` does only that and prints every selected cell's status and command.

JAX's persistent compilation cache is on (``--compilation_cache``, default
``~/.cache/imbalance_jax/jax_compilation_cache``; ``--compilation_cache=`` turns it off): cells that share a
network and batch shape (every seed of a method) compile their steps once.

``--shard=I/N`` takes every N-th selected cell starting at the I-th (0-based): N runners started with
I = 0 … N-1 (e.g. one per GPU or machine sharing the runs directory) never run the same cell. Not on a small
CPU machine: on 2 cores two runners of Fashion-MNIST cells made 4.6 train steps/s together, one alone 9.3.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import traceback
from typing import Optional, Sequence, TextIO, Union

import ml_collections
from absl import flags as absl_flags
from ml_collections import config_flags

from experiments import sweeps
from experiments.sweeps import Cell, Sweep
from imbalance_jax import compilation_cache
from imbalance_jax.xla_flags import set_default_xla_flags

PathLike = Union[str, os.PathLike]

class CellConfigError(ValueError):
    """A cell's config cannot be built or would not start; the message names the cell and the override."""


def parse_flags(flags: Sequence[str]) -> ml_collections.ConfigDict:
    """The config that ``python -m imbalance_jax.main <flags>`` runs: the config file of ``--config=`` with the
    ``--config.<path>=<value>`` overrides applied by ml_collections (locked: unknown fields are errors).
    ``--workdir`` is ignored. Raises whatever absl / ml_collections raise for a bad flag."""
    argv = ["imbalance_jax.main", *(f for f in flags if not f.startswith("--workdir="))]
    values = absl_flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "Path to a config file with get_config().",
                                    flag_values=values, lock_config=True, sys_argv=argv)
    values(argv)
    config = values.config
    config.get("seed")  # a config file that failed to load raises here, not at first use
    return config


def _get(config: ml_collections.ConfigDict, path: str):
    node = config
    for key in path.split("."):
        node = node[key]
    return node


def build_config(cell: Cell) -> ml_collections.ConfigDict:
    """The cell's config, built from its command-line flags exactly as the CLI would; checks that every
    override was parsed back to the value the sweep gives."""
    flags = cell.flags(cell.workdir(sweeps.DEFAULT_RUNS_DIR))  # parse_flags ignores --workdir
    flags[0] = f"--config={sweeps.resolve_path(cell.config)}"  # the CLI resolves it from the repository root
    where = f"{cell.sweep}/{cell.key}"
    try:
        config = parse_flags(flags)
    except Exception as e:  # noqa: BLE001 - absl / ml_collections raise many kinds; name the flag instead
        raise CellConfigError(f"{where}: {_culprit(flags, e)}") from None
    for path, value in cell.overrides:
        parsed = _get(config, path)
        if parsed != value:
            raise CellConfigError(f"{where}: --config.{path}={sweeps.format_value(path, value)} was parsed as "
                                  f"{parsed!r}, not {value!r}")
    return config


def _culprit(flags: list[str], error: Exception) -> str:
    """Names the first override that fails on its own (else the error itself)."""
    for flag in flags[1:]:
        try:
            parse_flags([flags[0], flag])
        except Exception as e:  # noqa: BLE001
            text = " ".join(str(e).replace("\\n", " ").replace("\\'", "").replace("'", "").split())
            return f"{flag}: {type(e).__name__}: {text}"
    return f"{type(error).__name__}: {error}"


def validate_cells(cells: Sequence[Cell]) -> list[str]:
    """Builds and checks every cell's config (once per distinct config: seeds share it); returns the problems."""
    from imbalance_jax.experiment import ConfigError, check

    problems, seen = [], {}
    for cell in cells:
        key = (cell.config, cell.overrides[:-1])  # the seed override is last
        if key not in seen:
            try:
                check(build_config(cell))
                seen[key] = None
            except CellConfigError as e:
                seen[key] = str(e)
            except ConfigError as e:
                seen[key] = f"{cell.sweep}/{cell.key}: {e}"
        if seen[key] is not None and seen[key] not in problems:
            problems.append(seen[key])
    return problems


def run_cell(cell: Cell, runs_dir: PathLike, *, use_subprocess: bool = False) -> float:
    """Runs (or resumes) one cell; writes command.txt first and wall_time.txt on success. Returns seconds."""
    workdir = cell.workdir(runs_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / sweeps.COMMAND_FILE).write_text(cell.command(workdir) + "\n")
    (workdir / sweeps.ERROR_FILE).unlink(missing_ok=True)
    flags = cell.flags(workdir)
    start = time.perf_counter()
    if use_subprocess:
        subprocess.run([sys.executable, "-m", "imbalance_jax.main", *flags], cwd=sweeps.REPO_ROOT, check=True)
    else:
        from imbalance_jax import train
        from imbalance_jax.experiment import ConfigError

        config = build_config(cell)
        if config.multi_host:
            raise ConfigError("config.multi_host=True needs jax.distributed in its own process: use --subprocess")
        train.train_and_evaluate(config, str(workdir), command=cell.command(workdir))
    wall_time = time.perf_counter() - start
    (workdir / sweeps.WALL_TIME_FILE).write_text(f"{wall_time:.1f}\n")
    return wall_time


def select(cells: Sequence[Cell], only: Optional[str]) -> list[Cell]:
    """Cells whose key (``<method slug>/<grid slug>/seed<k>``) or method name matches the regex ``only``."""
    if not only:
        return list(cells)
    pattern = re.compile(only)
    return [c for c in cells if pattern.search(c.key) or pattern.search(c.method)]


def parse_shard(spec: Optional[str]) -> Optional[tuple[int, int]]:
    """``"I/N"`` → ``(I, N)`` with 0 <= I < N; ValueError naming the flag otherwise."""
    if not spec:
        return None
    match = re.fullmatch(r"(\d+)/(\d+)", spec.strip())
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise ValueError(f"--shard={spec!r}: expected I/N with 0 <= I < N, e.g. 0/2 and 1/2 for two runners")
    return int(match[1]), int(match[2])


def run_sweep(sweep: Sweep, runs_dir: PathLike = sweeps.DEFAULT_RUNS_DIR, *, only: Optional[str] = None,
              shard: Optional[tuple[int, int]] = None, dry_run: bool = False, use_subprocess: bool = False,
              out: Optional[TextIO] = None) -> int:
    """Runs the selected cells that are not finished; returns the exit status (0: every selected cell finished,
    1: some failed or are stale, 2: invalid configs or no cell selected). Progress goes to ``out`` (stdout)."""
    def say(text: str) -> None:
        print(text, file=out or sys.stdout, flush=True)

    cells = select(sweep.cells(), only)
    if shard is not None:
        cells = cells[shard[0]::shard[1]]
    if not cells:
        say(f"{sweep.name}: no cell matches --only={only!r} --shard={shard}; cells look like "
            f"{sweep.cells()[0].key!r}")
        return 2
    status = {cell: sweeps.cell_status(cell, runs_dir) for cell in cells}
    pending = [c for c in cells if status[c] in ("todo", "partial", "failed")]
    problems = validate_cells(cells if dry_run else pending)
    if problems:
        say(f"{sweep.name}: {len(problems)} invalid config(s), nothing was run:")
        for problem in problems:
            say(f"  {problem}")
        return 2
    width = len(str(len(cells)))
    if dry_run:
        for i, cell in enumerate(cells, 1):
            say(f"[{i:>{width}}/{len(cells)}] {status[cell]:<7} {sweep.name}/{cell.key}\n"
                f"    {cell.command(cell.workdir(runs_dir))}")
        say(f"{sweep.name}: {len(cells)} cells, {len(pending)} to run, configs valid (dry run, nothing trained)")
        return 0

    if not use_subprocess:
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")  # as imbalance_jax.main: tf.data only, JAX owns accelerators
    counts = dict.fromkeys(("ran", "skipped", "failed", "stale"), 0)
    total_start = time.perf_counter()
    for i, cell in enumerate(cells, 1):
        prefix = f"[{i:>{width}}/{len(cells)}] {sweep.name}/{cell.key}"
        workdir = cell.workdir(runs_dir)
        if status[cell] == "done":
            counts["skipped"] += 1
            say(f"{prefix}: skipped (finished: {workdir / sweeps.METRICS_FILE} exists)")
            continue
        if status[cell] == "stale":
            counts["stale"] += 1
            say(f"{prefix}: NOT RUN: {workdir / sweeps.COMMAND_FILE} differs from the sweep's command for this "
                f"cell (the sweep changed); delete {workdir} to rerun it")
            continue
        say(f"{prefix}: {'resuming from its checkpoints' if status[cell] == 'partial' else 'running'}\n"
            f"    {cell.command(workdir)}")
        try:
            wall_time = run_cell(cell, runs_dir, use_subprocess=use_subprocess)
        except Exception as e:  # noqa: BLE001 - one failed cell must not stop a sweep of hours
            counts["failed"] += 1
            (workdir / sweeps.ERROR_FILE).write_text(traceback.format_exc())
            say(f"{prefix}: FAILED ({type(e).__name__}: {e}); traceback in {workdir / sweeps.ERROR_FILE}")
            continue
        counts["ran"] += 1
        say(f"{prefix}: finished in {wall_time:.1f} s")
    say(f"{sweep.name}: {counts['ran']} ran, {counts['skipped']} skipped, {counts['failed']} failed, "
        f"{counts['stale']} stale, in {time.perf_counter() - total_start:.1f} s")
    return 1 if counts["failed"] or counts["stale"] else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", help=f"a sweep name ({', '.join(sweeps.sweep_names())}) or a .py path")
    parser.add_argument("--only", default=None,
                        help="regex; run only the cells whose key <method-slug>/<grid-slug>/seed<k> or method "
                             "name it matches (re.search)")
    parser.add_argument("--shard", default=None,
                        help="I/N: run every N-th selected cell from the I-th (0-based), for N parallel runners")
    parser.add_argument("--dry_run", action="store_true", help="check every config and print the commands only")
    parser.add_argument("--subprocess", action="store_true",
                        help="run each cell as its `python -m imbalance_jax.main` command in a child process")
    parser.add_argument("--runs_dir", default=str(sweeps.DEFAULT_RUNS_DIR),
                        help="where the cells live (default: experiments/runs)")
    parser.add_argument("--compilation_cache", default=compilation_cache.DEFAULT_DIR,
                        help="JAX persistent compilation cache folder ('' turns it off)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    set_default_xla_flags()  # the XLA flags of python -m imbalance_jax.main, so command.txt reproduces the cell
    if args.compilation_cache:
        os.environ[compilation_cache.ENV_VAR] = compilation_cache.enable_compilation_cache(args.compilation_cache)
    if args.only:
        try:
            re.compile(args.only)
        except re.error as e:
            parser.error(f"--only={args.only!r} is not a valid regex: {e}")
    try:
        sweep = sweeps.load_sweep(args.sweep)
        shard = parse_shard(args.shard)
    except ValueError as e:
        parser.error(str(e))
    try:
        return run_sweep(sweep, args.runs_dir, only=args.only, shard=shard, dry_run=args.dry_run,
                         use_subprocess=args.subprocess)
    except KeyboardInterrupt as e:  # errors.Interrupted says which epoch a rerun resumes the cell from
        why = str(e) or "interrupted; rerun the same command to go on"
        print(f"\nsweep {sweep.name} stopped: {why}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
