"""Pretrained weights from a local file (never a hub): load a subtree of the model's variables.

Two file formats are read:

* ``.npz`` of flattened, '/'-separated variable paths, as written by :func:`save_npz`:
  ``params/backbone/conv0/kernel``, ``batch_stats/backbone/bn0/mean``. A key whose first part is not
  a collection name (``params``, ``batch_stats`` or another collection of the model) is a
  ``params`` path, so ``backbone/conv0/kernel`` also works. The entry ``__input_normalization__`` is not a
  variable: it records the input mean / std the weights expect (:func:`recorded_normalization`).
* an orbax checkpoint directory holding a pytree with ``"params"`` and optionally ``"batch_stats"``:
  a ``StandardSave``\\ d ``{"params": ..., "batch_stats": ...}`` (e.g.
  ``ocp.StandardCheckpointer().save(path, variables)``), or a training checkpoint of
  ``imbalance_jax.train``: its CheckpointManager directory (the latest step is read), one step
  directory ``<dir>/<step>``, or that step's ``state`` item (a ``StandardSave``\\ d TrainState
  whose ``params`` and ``batch_stats`` fields are read; the optimizer state is not).

Only the variables under ``prefix`` (a '/'-separated module path inside each collection, default
``"backbone"``; ``""`` means the whole model) are replaced, in every collection; file entries
outside the prefix are ignored. Arrays are cast to the dtype of the variable they replace.
"""
from __future__ import annotations

import dataclasses
import os
import zipfile
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import traverse_util

FIELD = "config.model.pretrained_path"
# A .npz entry that is not a variable: the [2, C] (mean; std) input normalisation the weights were trained with
# (``imbalance_jax.convert_weights`` writes ImageNet's; ``config.data.normalization="auto"`` reads it).
INPUT_NORMALIZATION_KEY = "__input_normalization__"
COLLECTIONS: tuple[str, ...] = ("params", "batch_stats")
_SHOWN = 5  # names listed per problem in an error message


@dataclasses.dataclass(frozen=True)
class PretrainedReport:
    """What :func:`load_pretrained_with_report` did; names are full paths like ``params/backbone/conv0/kernel``.

    loaded: replaced variables; missing: model variables under the prefix absent from the file;
    unexpected: file entries under the prefix the model does not have; mismatched: (name, model
    shape, file shape) of entries present in both with different shapes.
    """

    path: str
    prefix: str
    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]

    @property
    def skipped(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched)

    def describe(self) -> str:
        """One line per kind of problem, each listing a few names."""
        lines = []
        for label, names in (("missing from the file", self.missing),
                             ("unexpected (not in the model)", self.unexpected)):
            if names:
                lines.append(f"{len(names)} {label}: {_few(names)}")
        if self.mismatched:
            shown = tuple(f"{n} (model {m}, file {f})" for n, m, f in self.mismatched)
            lines.append(f"{len(shown)} shape mismatch(es): {_few(shown)}")
        return "; ".join(lines)


def _few(names: tuple[str, ...]) -> str:
    """The first few names, then how many more."""
    more = f", ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def _flatten(tree: Mapping[str, Any]) -> dict[str, Any]:
    return traverse_util.flatten_dict(dict(tree), sep="/")


def _normalise_key(key: str, collections: set[str]) -> str:
    first = key.split("/", 1)[0]
    return key if first in collections and "/" in key else f"params/{key}"


# ------------------------------------------------------------------------------------ file readers
def _read_npz(path: str) -> dict[str, np.ndarray]:
    try:
        data = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise ValueError(f"{FIELD}={path!r} is not a readable .npz file of flattened variables "
                         f"({type(e).__name__}: {e}).") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{FIELD}={path!r} holds a single array, not a .npz file of flattened "
                         "variables (write one with imbalance_jax.models.pretrained.save_npz).")
    with data:
        return {key: data[key] for key in data.files if key != INPUT_NORMALIZATION_KEY}


def recorded_normalization(path: str) -> "np.ndarray | None":
    """The [2, C] (mean; std) input normalisation recorded in the .npz ``path`` (None when the file has none or is
    not a .npz, e.g. an orbax directory); an unreadable file is left to the weight loading to report."""
    if not path or os.path.isdir(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if INPUT_NORMALIZATION_KEY in getattr(data, "files", ()):
                return np.asarray(data[INPUT_NORMALIZATION_KEY], np.float32)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, AttributeError):
        pass
    return None


def _orbax_item_dir(path: str) -> str:
    """The directory holding the pytree: ``path`` itself, ``path/state`` or ``path/<latest>/state``."""
    if os.path.exists(os.path.join(path, "_METADATA")):
        return path
    if os.path.isdir(os.path.join(path, "state")):
        return os.path.join(path, "state")
    steps = [int(name) for name in os.listdir(path)
             if name.isdigit() and os.path.isdir(os.path.join(path, name, "state"))]
    if steps:
        return os.path.join(path, str(max(steps)), "state")
    raise ValueError(f"{FIELD}={path!r} is a directory but not an orbax checkpoint: expected a "
                     "StandardSave'd pytree (with a _METADATA file), a training step directory with "
                     "a 'state' item, or a CheckpointManager directory of numbered steps.")


def _read_orbax(path: str) -> dict[str, np.ndarray]:
    import orbax.checkpoint as ocp  # imported here: only orbax users pay for the import
    from etils import epath

    item = _orbax_item_dir(path)
    handler = ocp.PyTreeCheckpointHandler()
    metadata = handler.metadata(epath.Path(item))
    tree = getattr(metadata, "tree", metadata)
    if not isinstance(tree, Mapping):
        raise ValueError(f"{FIELD}={path!r}: the checkpoint at {item!r} is not a dict-like pytree.")
    wanted = {k: tree[k] for k in COLLECTIONS if k in tree and tree[k]}
    if "params" not in wanted:
        raise ValueError(f"{FIELD}={path!r}: the checkpoint at {item!r} has no 'params' entry "
                         f"(top-level entries: {sorted(tree)}).")
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), wanted)
    restored = ocp.Checkpointer(handler).restore(item, args=ocp.args.PyTreeRestore(
        item=wanted, restore_args=restore_args, partial_restore=True))
    return {k: np.asarray(v) for k, v in _flatten(restored).items()}


def read_pretrained(path: str) -> dict[str, np.ndarray]:
    """The flattened entries of a .npz file or orbax checkpoint, keyed by their raw paths."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"{FIELD} must be a path to a .npz file or an orbax checkpoint directory, "
                         f"got {path!r}.")
    path = os.fspath(path)
    if os.path.isdir(path):
        return _read_orbax(path)
    if os.path.isfile(path):
        return _read_npz(path)
    raise ValueError(f"{FIELD}={path!r} does not exist (expected a .npz file or an orbax "
                     "checkpoint directory; weights are only read from local files).")


# ------------------------------------------------------------------------------------- public API
def _under(name: str, prefix_parts: list[str]) -> bool:
    parts = name.split("/")[1:]  # drop the collection
    return parts[:len(prefix_parts)] == prefix_parts and len(parts) > len(prefix_parts)


def _place(value: np.ndarray, like: Any) -> Any:
    value = np.asarray(value).astype(like.dtype)
    if isinstance(like, jax.Array):
        return jax.device_put(value, like.sharding)  # laid out like the variable it replaces
    return jnp.asarray(value)


def load_pretrained_with_report(variables: Mapping[str, Any], path: str, *, prefix: str = "backbone",
                                strict: bool = True) -> tuple[dict, PretrainedReport]:
    """Like :func:`load_pretrained`, also returning the :class:`PretrainedReport` (never logs)."""
    if not isinstance(prefix, str):
        raise ValueError(f"prefix must be a '/'-separated module path ('' for the whole model), "
                         f"got {prefix!r}.")
    prefix_parts = [p for p in prefix.split("/") if p]
    model = _flatten(variables)
    collections = set(COLLECTIONS) | set(variables)
    raw = read_pretrained(path)
    file = {_normalise_key(k, collections): v for k, v in raw.items()}

    model_sel = {k for k in model if _under(k, prefix_parts)}
    file_sel = {k for k in file if _under(k, prefix_parts)}
    if not model_sel:
        tops = sorted({k.split("/")[1] for k in model if k.startswith("params/")})
        raise ValueError(f"prefix={prefix!r} matches no variable of the model; its top-level modules "
                         f"are {tops} (use '' for the whole model).")
    common = sorted(model_sel & file_sel)
    mismatched = tuple((k, tuple(model[k].shape), tuple(file[k].shape)) for k in common
                       if tuple(model[k].shape) != tuple(file[k].shape))
    bad = {k for k, _, _ in mismatched}
    report = PretrainedReport(
        path=os.fspath(path), prefix=prefix,
        loaded=tuple(k for k in common if k not in bad),
        missing=tuple(sorted(model_sel - file_sel)),
        unexpected=tuple(sorted(file_sel - model_sel)),
        mismatched=mismatched)
    if strict and report.skipped:
        raise ValueError(f"{FIELD}={report.path!r} does not match the model under prefix "
                         f"{prefix!r}: {report.describe()}. Fix the file or the prefix, or load the "
                         "matching part only with strict=False.")
    if not report.loaded:
        raise ValueError(f"{FIELD}={report.path!r}: no variable under prefix {prefix!r} could be "
                         f"loaded ({len(raw)} entries in the file); {report.describe()}.")
    for k in report.loaded:
        model[k] = _place(file[k], model[k])
    return traverse_util.unflatten_dict(model, sep="/"), report


def load_pretrained(variables: Mapping[str, Any], path: str, *, prefix: str = "backbone",
                    strict: bool = True) -> dict:
    """Returns ``variables`` with the subtree under ``prefix`` replaced by the weights in ``path``.

    ``variables``: ``{"params": ..., "batch_stats": ...}`` as returned by ``model.init`` (arrays or
    anything with ``shape`` and ``dtype``). ``path``: a .npz file or an orbax checkpoint directory
    (see the module docstring). Every collection's subtree under ``prefix`` is replaced; replaced
    leaves keep the dtype (and, for jax arrays, the sharding) of the variables they replace.

    ``strict=True``: ValueError naming ``config.model.pretrained_path`` when a model variable under
    the prefix is missing from the file, the file has one the model lacks, or shapes differ (the
    message lists a few names with the model and file shapes). ``strict=False``: loads the
    intersection with matching shapes and logs a warning listing what was skipped. Loading nothing
    at all is always an error.
    """
    new_variables, report = load_pretrained_with_report(variables, path, prefix=prefix, strict=strict)
    logging.info("Loaded %d pretrained variables under prefix %r from %s.", len(report.loaded),
                 prefix, report.path)
    if report.skipped:
        logging.warning("Pretrained weights %s (prefix %r): skipped %s.", report.path, prefix,
                        report.describe())
    return new_variables


def save_npz(variables: Mapping[str, Any], path: str) -> None:
    """Writes every variable as ``<collection>/<module path>/<name>`` into the .npz file ``path``.

    The file is written at exactly ``path`` (no ``.npz`` is appended); parent directories are
    created. bfloat16 (and other non-numpy) dtypes are stored as float32; :func:`load_pretrained`
    casts back to the model's dtype. In a multi-host run call it on one process only.
    """
    flat = {}
    for key, leaf in _flatten(variables).items():
        value = np.asarray(jax.device_get(leaf))
        if value.dtype.kind == "V" or value.dtype == jnp.bfloat16:
            value = value.astype(np.float32)
        flat[key] = value
    if not flat:
        raise ValueError("variables is empty: nothing to save.")
    directory = os.path.dirname(os.fspath(path))
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, **flat)
