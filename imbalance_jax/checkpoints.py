"""Checkpoints of a run: one orbax ``CheckpointManager`` per directory (``checkpoints/``, ``best_checkpoint/``),
each step an epoch holding the train state and a small JSON ``meta``.

Every save records a digest of the state in its meta; :func:`restore_latest` validates a checkpoint before
trusting it (its stored shapes against the config's model, the restore itself, the digest) and falls back to the
previous one when the newest cannot be read: the unreadable step is moved out of the way (to
``<workdir>/unreadable_checkpoints/``) with one warning naming it. A checkpoint whose shapes do not fit the
config is not a damaged file but a workdir trained with another model: one :class:`CheckpointError` says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import logging as std_logging
import os
import shutil
import signal
import sys
import threading
from typing import Any, Iterator, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from imbalance_jax.errors import CheckpointError

UNREADABLE_DIR = "unreadable_checkpoints"  # where unreadable steps are moved, inside the workdir
DIGEST_KEY = "state_digest"  # in a checkpoint's meta
_MAX_REASON = 160  # characters of an exception message quoted in a warning


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Ctrl-C during the block takes effect right after it (as KeyboardInterrupt). Around orbax saves and
    restores: interrupted in the middle, orbax's writer threads go on against a shutting-down interpreter (a
    half-written step and pages of tracebacks at exit). Main thread only; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    except Exception:
        if received:
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    if received:
        raise KeyboardInterrupt


def checkpoint_manager(workdir: str, max_to_keep: int, name: str = "checkpoints") -> ocp.CheckpointManager:
    """The manager of ``<workdir>/<name>`` (created when missing), synchronous saves."""
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False)
    return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, name)), options=options,
                                 item_handlers={"state": ocp.StandardCheckpointHandler(),
                                                "meta": ocp.JsonCheckpointHandler()})


def latest_step_on_disk(workdir: str, name: str = "checkpoints") -> Optional[int]:
    """The newest finished step in ``<workdir>/<name>`` (None when there is none); reads the directory only."""
    directory = os.path.abspath(os.path.join(workdir, name))
    if not os.path.isdir(directory):
        return None
    options = ocp.CheckpointManagerOptions(create=False)  # (read_only=True logs two warnings)
    return ocp.CheckpointManager(directory, options=options, item_names=("state", "meta")).latest_step()


def step_path(manager: ocp.CheckpointManager, step: int) -> str:
    return os.path.join(str(manager.directory), str(step))


def state_digest(state: Any) -> str:
    """BLAKE2b over every leaf's path, dtype, shape and bytes (the state is replicated: one shard per leaf)."""
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    values = jax.device_get([leaf.addressable_shards[0].data if isinstance(leaf, jax.Array) else leaf
                             for _, leaf in leaves])
    digest = hashlib.blake2b(digest_size=16)
    for (path, _), value in zip(leaves, values):
        value = np.ascontiguousarray(value)
        digest.update(f"{jax.tree_util.keystr(path)}|{value.dtype}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def save_checkpoint(manager: ocp.CheckpointManager, epoch: int, state: Any, meta: dict) -> None:
    """Saves ``state`` and ``meta`` (plus the state's digest) as step ``epoch``, replacing a step of that number
    (orbax would skip it silently: e.g. a best checkpoint of an epoch retrained after a fall-back)."""
    meta = {**meta, DIGEST_KEY: state_digest(state)}
    with sigint_deferred():
        if epoch in manager.all_steps():
            manager.delete(epoch)
        manager.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
        manager.wait_until_finished()


def _restore(manager: ocp.CheckpointManager, step: int, like: Any) -> tuple[Any, dict]:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    with sigint_deferred():
        restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                 meta=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["meta"])


def restore_checkpoint(manager: ocp.CheckpointManager, step: int, like: Any) -> tuple[Any, dict]:
    """Step ``step`` restored onto the shapes and shardings of ``like``, without validation; returns
    ``(state, meta)`` (meta without the digest)."""
    state, meta = _restore(manager, step, like)
    meta.pop(DIGEST_KEY, None)
    return state, meta


def _path_name(path: tuple) -> str:
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def shape_mismatches(stored: Any, like: Any) -> list[str]:
    """Leaves whose path or shape differ between a checkpoint's metadata tree and the state ``like``."""
    have = {_path_name(p): tuple(getattr(v, "shape", ())) for p, v in jax.tree_util.tree_flatten_with_path(stored)[0]}
    want = {_path_name(p): tuple(getattr(v, "shape", ())) for p, v in jax.tree_util.tree_flatten_with_path(like)[0]}
    problems = []
    # The parameters first: they name the layer that differs; its optimizer moments follow.
    for name in sorted(set(have) | set(want), key=lambda n: (not n.startswith("params/"), n)):
        if name not in have:
            problems.append(f"{name} is not in the checkpoint")
        elif name not in want:
            problems.append(f"{name} is in the checkpoint but not in this config's model")
        elif have[name] != want[name]:
            problems.append(f"{name} {have[name]} in the checkpoint, {want[name]} for this config")
    return problems


class _FailedReadEchoes(std_logging.Filter):
    """Silences what a failed orbax read leaves behind on stderr after its exception was handled: tensorstore
    callbacks that find orbax's event loop closed (``RuntimeError: Event loop is closed`` through
    ``sys.unraisablehook``), unawaited read coroutines and asyncio's "Task exception was never retrieved" log
    records, each a traceback of dozens of lines. Installed at the first failed read; it drops only those
    errors and ones that name a step that failed, and passes everything else on."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: set[str] = set()
        self.dropped = 0
        self._previous_hook = None

    def watch(self, path: str) -> None:
        self.paths.add(path)
        if self._previous_hook is None:
            self._previous_hook = sys.unraisablehook
            sys.unraisablehook = self._unraisable
            std_logging.getLogger("asyncio").addFilter(self)
        gc.collect()  # finalise the failed read's coroutines now

    def _is_echo(self, text: str) -> bool:
        return any(path in text for path in self.paths)

    def _unraisable(self, info: Any) -> None:
        text = str(info.exc_value)
        if (isinstance(info.exc_value, RuntimeError) and text == "Event loop is closed") or self._is_echo(text):
            self.dropped += 1
            return
        self._previous_hook(info)

    def filter(self, record: std_logging.LogRecord) -> bool:
        if record.getMessage().startswith("Task exception was never retrieved") and self._is_echo(
                record.getMessage() + str(record.exc_info[1] if record.exc_info else "")):
            self.dropped += 1
            return False
        return True


_ECHOES = _FailedReadEchoes()


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split()).split(" See full TensorStore details")[0]  # drop the store's spec dump
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= _MAX_REASON else text[:_MAX_REASON - 1] + "…"


@dataclasses.dataclass
class Restored:
    """A validated checkpoint and the newer ones that could not be read."""

    state: Any
    meta: dict
    step: int
    fallbacks: list[str]  # one line per unreadable newer step: its path, why, where it was moved


def _set_aside(manager: ocp.CheckpointManager, step: int, workdir: str) -> str:
    """Moves an unreadable step into ``<workdir>/unreadable_checkpoints/`` (process 0; the others only look)."""
    source = step_path(manager, step)
    target_dir = os.path.join(workdir, UNREADABLE_DIR)
    os.makedirs(target_dir, exist_ok=True)
    base = os.path.join(target_dir, f"{os.path.basename(str(manager.directory))}-{step}")
    target, n = base, 1
    while os.path.exists(target):
        target, n = f"{base}.{n}", n + 1
    if jax.process_index() == 0:
        shutil.move(source, target)
    return target


def restore_latest(manager: ocp.CheckpointManager, like: Any, workdir: str) -> Optional[Restored]:
    """The newest checkpoint of ``manager`` that can be read, restored onto ``like``; None when there is none.

    A step is read when its metadata loads, its shapes fit ``like``, the restore succeeds and the state's digest
    equals the one saved with it (checkpoints from before the digest skip that test). A step that fails is moved
    to ``<workdir>/unreadable_checkpoints/`` with a warning naming its path, and the previous one is tried.
    Raises CheckpointError when a step's shapes do not fit ``like`` (another model trained this workdir), or
    when steps exist but none can be read (naming the directory)."""
    steps = sorted(manager.all_steps(), reverse=True)
    failed: list[tuple[int, str]] = []
    for step in steps:
        path = step_path(manager, step)
        try:
            stored = manager.item_metadata(step)["state"]
            if stored is None:
                raise ValueError("the state's metadata is missing")
        except Exception as e:  # noqa: BLE001 - orbax/tensorstore/json raise many kinds for damaged files
            failed.append((step, _reason(e)))
            _ECHOES.watch(path)
            continue
        mismatch = shape_mismatches(stored, like)
        if mismatch:
            more = f" (and {len(mismatch) - 3} more)" if len(mismatch) > 3 else ""
            raise CheckpointError(
                f"checkpoint {path} does not fit this config's model: {'; '.join(mismatch[:3])}{more}. The workdir "
                "was trained with another model (see its config.json); use a new --workdir "
                "(--config.allow_config_change cannot change the model's shapes)")
        try:
            state, meta = _restore(manager, step, like)
            saved_digest = meta.pop(DIGEST_KEY, None)
        except Exception as e:  # noqa: BLE001
            failed.append((step, _reason(e)))
            _ECHOES.watch(path)
            continue
        if saved_digest is not None and saved_digest != state_digest(state):
            failed.append((step, "its contents differ from the digest saved with it"))
            continue
        fallbacks = []
        for bad_step, reason in failed:
            bad_path = step_path(manager, bad_step)
            moved = _set_aside(manager, bad_step, workdir)
            fallbacks.append(f"checkpoint {bad_path} could not be read ({reason}); moved to {moved}; "
                             f"resumed from epoch {step} instead")
            logging.warning("%s", fallbacks[-1])
        if failed:
            manager.reload()
        return Restored(state, meta, step, fallbacks)
    if failed:
        tried = "; ".join(f"epoch {step}: {reason}" for step, reason in failed)
        raise CheckpointError(f"no checkpoint in {manager.directory} can be read ({tried}); delete that directory "
                              "to start the run over, or use a new --workdir")
    return None


def read_meta(manager: ocp.CheckpointManager, step: int) -> dict:
    """The loop's progress record (epoch, best value, early stopping) saved with checkpoint ``step``."""
    return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
