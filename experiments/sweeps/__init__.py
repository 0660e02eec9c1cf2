"""The sweep file format, and where a sweep's cells live on disk.

A sweep file is a module in ``experiments/sweeps/`` (or any ``.py`` path) that defines ``SWEEP``::

    from experiments.sweeps import Sweep, tied

    SWEEP = Sweep(
        name="example",
        base_config="configs/fmnist_lt_base.py",
        methods={
            "CE": {},
            "Weighted CE": {"loss.class_weighting.name": "inverse_frequency"},
            "ASLoss (L2)": {"config": "configs/fmnist_lt_asl.py", "loss.aux.asl.metric": "l2"},
        },
        seeds=(0, 1, 2),
        common_overrides={"num_epochs": 8},
        grid={"data.imbalance.ratio": [200.0, 100.0]},           # optional ablation axes
    )

Overrides map dotted config paths to Python values (bool, int, float, str, or tuples of these); each one
becomes a ``--config.<path>=<value>`` flag of ``python -m imbalance_jax.main``, so the field names are the
config's and a misspelt path is an error (the config is locked). A method is an optional ``"config"`` file
(default ``base_config``; paths relative to the repository root) plus its overrides. A ``grid`` axis is either
a dotted path with a list of values, or a name with a list of :class:`Setting` objects that set several fields
together (see :func:`tied`, e.g. ``loss.aux.asl.constraint`` with ``loss.aux.asl.weight``).

Cells = methods × grid points (the product of the axes) × seeds, ordered seed first (every method's seed 0,
then every seed 1, ...), so an interrupted sweep already has a complete table over fewer seeds. A cell's
overrides are merged as common < method < grid point < ``seed`` (a later value for a path replaces an earlier
one; every path appears once on the command line; ``seed`` is set by ``seeds`` only).

On disk, cell ``<runs_dir>/<sweep>/<method slug>/<grid slug>/seed<k>`` (grid slug ``default`` without a grid)
holds the run's own outputs (``metrics.json``, checkpoints, ...) plus ``command.txt`` (the exact command that
reproduces it, run from the repository root), ``wall_time.txt`` (seconds) and, after a failure, ``error.txt``.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import itertools
import pathlib
import re
import shlex
from typing import Any, Mapping, Sequence, Union

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SWEEPS_DIR = pathlib.Path(__file__).resolve().parent
DEFAULT_RUNS_DIR = REPO_ROOT / "experiments" / "runs"
DEFAULT_RESULTS_DIR = REPO_ROOT / "experiments" / "results"

ENTRY_POINT = ("python", "-m", "imbalance_jax.main")
COMMAND_FILE = "command.txt"
WALL_TIME_FILE = "wall_time.txt"
ERROR_FILE = "error.txt"
METRICS_FILE = "metrics.json"
CLASS_COUNTS_FILE = "class_counts.json"  # per-class counts of every split, written by the run
CHECKPOINT_DIR = "checkpoints"  # written by imbalance_jax.train; its presence means "interrupted, resumes"
NO_GRID = "default"

# done: metrics.json exists; partial: checkpoints but no metrics (resumes); failed: error.txt, no metrics;
# stale: command.txt differs from the sweep's current command for that cell; todo: nothing yet.
STATUSES = ("done", "partial", "failed", "stale", "todo")

_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_SCALARS = (bool, int, float, str)

Value = Union[bool, int, float, str, tuple]


def slugify(text: str) -> str:
    """Lower-case file-system name: runs of characters other than ``[a-z0-9._=]`` become ``-``."""
    slug = re.sub(r"[^a-z0-9._=]+", "-", text.lower()).strip("-.")
    if not slug:
        raise ValueError(f"{text!r} has no letters or digits to name a directory after")
    return slug


def _normalise(path: str, value: Any) -> Value:
    """Lists become tuples (config fields hold tuples); anything but bool/int/float/str/tuple is refused."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, (tuple, list)):
        return tuple(_normalise(path, v) for v in value)
    raise ValueError(f"override {path}={value!r}: a value must be a bool, int, float, str or a tuple of these "
                     f"(got {type(value).__name__})")


def format_value(path: str, value: Any) -> str:
    """The text after ``--config.<path>=`` that ml_collections parses back into ``value``."""
    value = _normalise(path, value)
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, str):
        return value
    return repr(value)  # ints, floats (repr round-trips) and tuples (parsed with ast.literal_eval)


def _check_overrides(where: str, overrides: Mapping[str, Any]) -> dict[str, Value]:
    if not isinstance(overrides, Mapping):
        raise ValueError(f"{where}: overrides must be a dict of dotted config paths, got {type(overrides).__name__}")
    out = {}
    for path, value in overrides.items():
        if not isinstance(path, str) or not _PATH.match(path):
            raise ValueError(f"{where}: {path!r} is not a dotted config path like 'loss.aux.asl.weight'")
        if path == "seed":
            raise ValueError(f"{where}: 'seed' is set per cell from Sweep.seeds; remove it from the overrides")
        out[path] = _normalise(f"{where}: {path}", value)
    return out


def _check_config_file(where: str, path: Any) -> str:
    if not isinstance(path, str) or not path.endswith(".py"):
        raise ValueError(f"{where}: the config must be a path to a .py file, got {path!r}")
    if not resolve_path(path).is_file():
        raise ValueError(f"{where}: config file {path!r} does not exist (paths are relative to {REPO_ROOT})")
    return path


def resolve_path(path: Union[str, pathlib.Path]) -> pathlib.Path:
    """A path as written in a sweep or on a command line (relative to the repository root) made absolute."""
    path = pathlib.Path(path)
    return path if path.is_absolute() else REPO_ROOT / path


def display_path(path: Union[str, pathlib.Path]) -> str:
    """How a path is written in a command: relative to the repository root when inside it, else absolute."""
    path = pathlib.Path(path).resolve()
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


@dataclasses.dataclass(frozen=True)
class Setting:
    """One value of a grid axis that sets several config fields together, shown as ``label``."""

    label: str
    overrides: Mapping[str, Any]


def tied(paths: Sequence[str], values: Sequence[Any]) -> list[Setting]:
    """Grid values that set every path in ``paths`` to the same value, e.g. the affinity head's and loss's σ:
    ``grid={"margin": tied(("loss.aux.triplet.margin", "loss.aux.semantic_triplet.margin"), [0.2, 1.0])}``."""
    if isinstance(paths, str) or not paths:
        raise ValueError(f"tied(paths=...): give a non-empty tuple of dotted paths, got {paths!r}")
    return [Setting(format_value(paths[0], v), {p: v for p in paths}) for v in values]


@dataclasses.dataclass(frozen=True)
class GridAxis:
    """One validated grid axis: a column name and its (label, overrides) values."""

    name: str
    values: tuple[tuple[str, Mapping[str, Value]], ...]


@dataclasses.dataclass(frozen=True)
class Cell:
    """One run of a sweep: a method at one grid point with one seed."""

    sweep: str
    method: str
    method_slug: str
    grid: tuple[tuple[str, str], ...]  # (axis name, value label) per axis; () without a grid
    grid_slug: str
    seed: int
    config: str  # config file as written in the sweep (relative to the repository root)
    overrides: tuple[tuple[str, Value], ...]  # merged overrides, ("seed", k) last

    @property
    def key(self) -> str:
        """``<method slug>/<grid slug>/seed<k>``: the cell's directory inside the sweep's."""
        return f"{self.method_slug}/{self.grid_slug}/seed{self.seed}"

    @property
    def row(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """The results-table row the cell belongs to (its method and grid point; seeds are averaged)."""
        return self.method, self.grid

    def workdir(self, runs_dir: Union[str, pathlib.Path]) -> pathlib.Path:
        return pathlib.Path(runs_dir).resolve() / self.sweep / self.key

    def flags(self, workdir: Union[str, pathlib.Path]) -> list[str]:
        """The flags of ``python -m imbalance_jax.main`` that run this cell in ``workdir``."""
        return ([f"--config={self.config}", f"--workdir={display_path(workdir)}"]
                + [f"--config.{path}={format_value(path, value)}" for path, value in self.overrides])

    def command(self, workdir: Union[str, pathlib.Path]) -> str:
        """The shell command (run from the repository root) that reproduces this cell."""
        return shlex.join([*ENTRY_POINT, *self.flags(workdir)])


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A set of runs: ``methods`` × ``grid`` points × ``seeds`` (see the module docstring for the format)."""

    name: str
    base_config: str
    methods: Mapping[str, Mapping[str, Any]]
    seeds: Sequence[int] = (0, 1, 2)
    common_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    grid: Mapping[str, Sequence[Any]] = dataclasses.field(default_factory=dict)
    description: str = ""
    # (method, baseline) pairs whose by-seed differences the report gives with a 95 % interval
    comparisons: Sequence[tuple[str, str]] = ()

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"Sweep.name={self.name!r} must be a non-empty name of letters, digits, '_', '.', '-'")
        _check_config_file(f"sweep {self.name}: base_config", self.base_config)
        if not isinstance(self.methods, Mapping) or not self.methods:
            raise ValueError(f"sweep {self.name}: methods must be a non-empty dict of name -> overrides")
        slugs: dict[str, str] = {}
        for method, spec in self.methods.items():
            if not isinstance(method, str) or not method.strip():
                raise ValueError(f"sweep {self.name}: method names must be non-empty strings, got {method!r}")
            self._method(method)  # validates
            slug = slugify(method)
            if slug in slugs:
                raise ValueError(f"sweep {self.name}: methods {slugs[slug]!r} and {method!r} share the directory "
                                 f"name {slug!r}; rename one")
            slugs[slug] = method
        seeds = tuple(self.seeds) if isinstance(self.seeds, (tuple, list)) else None
        if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
            raise ValueError(f"sweep {self.name}: seeds={self.seeds!r} must be a non-empty tuple of ints >= 0")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"sweep {self.name}: seeds={self.seeds!r} has duplicates")
        _check_overrides(f"sweep {self.name}: common_overrides", self.common_overrides)
        self.axes()  # validates the grid
        for pair in self.comparisons:
            if len(pair) != 2 or not all(m in self.methods for m in pair):
                raise ValueError(f"sweep {self.name}: comparisons must be (method, baseline) pairs of its methods, "
                                 f"got {pair!r}; methods: {list(self.methods)}")

    def _method(self, method: str) -> tuple[str, dict[str, Value]]:
        """(config file, overrides) of one method."""
        spec = self.methods[method]
        where = f"sweep {self.name}: method {method!r}"
        if not isinstance(spec, Mapping):
            raise ValueError(f"{where}: must be a dict of overrides (plus an optional 'config'), "
                             f"got {type(spec).__name__}")
        spec = dict(spec)
        config = _check_config_file(f"{where}: config", spec.pop("config", self.base_config))
        return config, _check_overrides(where, spec)

    def axes(self) -> tuple[GridAxis, ...]:
        """The validated grid axes, in the order given."""
        if not isinstance(self.grid, Mapping):
            raise ValueError(f"sweep {self.name}: grid must be a dict of axis -> list of values")
        axes = []
        for key, values in self.grid.items():
            where = f"sweep {self.name}: grid axis {key!r}"
            if not isinstance(values, (tuple, list)) or not values:
                raise ValueError(f"{where}: give a non-empty list of values")
            if all(isinstance(v, Setting) for v in values):
                if not isinstance(key, str) or not re.match(r"^[A-Za-z0-9_]+$", key):
                    raise ValueError(f"{where}: an axis of Settings needs a name of letters, digits and '_'")
                name = key
                entries = [(v.label, _check_overrides(f"{where}, value {v.label!r}", v.overrides)) for v in values]
            elif any(isinstance(v, Setting) for v in values):
                raise ValueError(f"{where}: mixes Setting and plain values; use one kind per axis")
            else:
                _check_overrides(where, {key: values[0]})
                name = key.rsplit(".", 1)[-1]
                entries = [(format_value(key, v), {key: _normalise(key, v)}) for v in values]
            labels = [label for label, _ in entries]
            if len({slugify(label) for label in labels}) != len(labels):
                raise ValueError(f"{where}: values {labels} are not distinct")
            if name in {a.name for a in axes}:
                raise ValueError(f"{where}: another axis is also called {name!r}; use tied() or a named axis")
            axes.append(GridAxis(name, tuple(entries)))
        return tuple(axes)

    def rows(self) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
        """Every (method, grid point) in table order: methods as given, then the grid product."""
        return [cell.row for cell in self.cells() if cell.seed == self.seeds[0]]

    def cells(self) -> list[Cell]:
        """Every cell, seed-major (all of seed 0 first)."""
        axes = self.axes()
        points = list(itertools.product(*(axis.values for axis in axes)))
        common = _check_overrides("common_overrides", self.common_overrides)
        cells = []
        for seed in self.seeds:
            for method in self.methods:
                config, method_overrides = self._method(method)
                for point in points:
                    merged = dict(common)
                    merged.update(method_overrides)
                    for _, overrides in point:
                        merged.update(overrides)
                    grid = tuple((axis.name, label) for axis, (label, _) in zip(axes, point))
                    grid_slug = "_".join(slugify(f"{name}={label}") for name, label in grid) or NO_GRID
                    cells.append(Cell(self.name, method, slugify(method), grid, grid_slug, seed, config,
                                      tuple(merged.items()) + (("seed", seed),)))
        return cells


def sweep_names() -> list[str]:
    """The sweep files in ``experiments/sweeps/`` (every ``*.py`` not starting with ``_``)."""
    return sorted(p.stem for p in SWEEPS_DIR.glob("*.py") if not p.stem.startswith("_"))


def load_sweep(name_or_path: str) -> Sweep:
    """``SWEEP`` of ``experiments/sweeps/<name>.py``, or of the ``.py`` file at a path."""
    path = pathlib.Path(name_or_path)
    if path.suffix == ".py" or "/" in name_or_path:
        if not path.is_file():
            raise ValueError(f"sweep file {name_or_path!r} does not exist")
        spec = importlib.util.spec_from_file_location(f"_sweep_file_{slugify(path.stem).replace('.', '_')}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    elif name_or_path in sweep_names():
        module = importlib.import_module(f"experiments.sweeps.{name_or_path}")
    else:
        raise ValueError(f"sweep {name_or_path!r} is neither a .py path nor one of experiments/sweeps/: "
                         f"{sweep_names()}")
    sweep = getattr(module, "SWEEP", None)
    if not isinstance(sweep, Sweep):
        raise ValueError(f"{name_or_path}: the file must define SWEEP = Sweep(...)")
    return sweep


def cell_status(cell: Cell, runs_dir: Union[str, pathlib.Path]) -> str:
    """One of :data:`STATUSES`, from the files in the cell's directory."""
    workdir = cell.workdir(runs_dir)
    command_file = workdir / COMMAND_FILE
    if command_file.is_file() and command_file.read_text().strip() != cell.command(workdir):
        return "stale"
    if (workdir / METRICS_FILE).is_file():
        return "done"
    if (workdir / ERROR_FILE).is_file():
        return "failed"
    if (workdir / CHECKPOINT_DIR).is_dir() and any((workdir / CHECKPOINT_DIR).iterdir()):
        return "partial"
    return "todo"
