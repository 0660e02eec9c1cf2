"""The two rules of a workdir: one process at a time, and one computation.

**Lock.** ``<workdir>/.lock`` holds the PID, host and start time of the process that runs in the workdir; a
second process stops with one message. A lock whose process is gone (``kill -9``, a crashed machine: same host,
PID not running or now another process) is stale: it is taken over with a warning. A lock from another host
cannot be checked from here; the message says to delete it if that run has ended. Only JAX process 0 takes the
lock (the processes of a multi-host run share the workdir).

**Fingerprint.** ``<workdir>/fingerprint.json`` records the flattened config the checkpoints were trained with,
a SHA-256 of it, and every change accepted with ``--config.allow_config_change=True`` (epoch, fields, old and new
values). A rerun compares its config with that record field by field
(:func:`imbalance_jax.experiment.computation_changes`; workdirs from before this file compare with their
``config.json``) and :func:`accept_changes` stops it, naming the differing fields and the two ways out, unless
changes are allowed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import time
from typing import Any, Iterator, Mapping, Optional, Sequence

from absl import logging

from imbalance_jax.errors import WorkdirError

LOCK_FILE = ".lock"
FINGERPRINT_FILE = "fingerprint.json"
CONFIG_FILE = "config.json"
CONFIG_CHANGES_KEY = "config_changes"  # the accepted changes, in fingerprint.json and config.json
_LOCK_WRITE_GRACE_S = 2.0  # an unreadable lock younger than this may be in the middle of being written


# ------------------------------------------------------------------------------------------------- lock
def _process_start(pid: int) -> Optional[str]:
    """The start time of process ``pid`` in clock ticks since boot (Linux ``/proc``), None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]  # a zombie has ended; field 22 of stat is the start time


def _running(pid: int, started: Optional[str]) -> bool:
    """Whether ``pid`` runs on this host and is still the process that wrote the lock."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    now = _process_start(pid)
    if os.path.exists(f"/proc/{pid}/stat") and now is None:
        return False  # a zombie
    return started is None or now is None or now == started


def _read_text(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _read_json(path: str) -> Optional[dict]:
    text = _read_text(path)
    try:
        value = json.loads(text) if text is not None else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _describe_holder(holder: Mapping[str, Any]) -> str:
    return f"process {holder.get('pid')} on {holder.get('host')} (since {holder.get('since', 'an unknown time')})"


def _acquire(workdir: str) -> dict:
    path = os.path.join(workdir, LOCK_FILE)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": _process_start(os.getpid()),
          "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(20):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            seen = _read_text(path)
            holder = _read_json(path)
            if holder is not None and not (isinstance(holder.get("pid"), int) and holder["pid"] > 0):
                holder = None  # not a lock this module wrote
            if holder is None:
                try:
                    age = time.time() - os.path.getmtime(path)
                except FileNotFoundError:
                    continue  # released meanwhile
                if age < _LOCK_WRITE_GRACE_S:  # its owner may be writing it right now
                    time.sleep(0.2)
                    continue
                logging.warning("%s cannot be read; taking it over as stale", path)
            elif holder.get("host") != me["host"]:
                raise WorkdirError(
                    f"{workdir} is locked by {_describe_holder(holder)}, a host this machine cannot check: if that "
                    f"run has ended, delete {path}; else use another --workdir")
            elif _running(holder["pid"], holder.get("started")):
                raise WorkdirError(f"{workdir} is in use by {_describe_holder(holder)} (lock file {path}): wait for "
                                   "it to finish, or use another --workdir")
            else:
                logging.warning("%s: %s is no longer running; taking over its stale lock", path,
                                _describe_holder(holder))
            stale = f"{path}.stale-{os.getpid()}"
            try:
                os.rename(path, stale)  # atomic: of several processes taking over, one renames it
            except FileNotFoundError:
                continue  # another process took it over first; try again
            if _read_text(stale) != seen:  # a fresh lock written meanwhile by another process: put it back
                try:
                    os.link(stale, path)
                except FileExistsError:
                    pass
            os.remove(stale)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return me
    raise WorkdirError(f"could not take the lock {path} (other processes keep taking it); use another --workdir")


def _release(workdir: str, me: Mapping[str, Any]) -> None:
    path = os.path.join(workdir, LOCK_FILE)
    holder = _read_json(path)
    if holder is not None and holder.get("pid") == me["pid"] and holder.get("host") == me["host"]:
        os.remove(path)


@contextlib.contextmanager
def locked(workdir: str, enabled: bool = True) -> Iterator[None]:
    """Holds ``<workdir>/.lock`` while the block runs (the workdir must exist); WorkdirError when a live process
    holds it. ``enabled=False`` (JAX processes other than 0) does nothing."""
    if not enabled:
        yield
        return
    me = _acquire(workdir)
    try:
        yield
    finally:
        _release(workdir, me)


# ------------------------------------------------------------------------------------------ fingerprint
@dataclasses.dataclass(frozen=True)
class Record:
    """What a workdir says about the config its checkpoints were trained with."""

    config: dict[str, Any]  # {dotted path: JSON value}, or the nested config.json of an older workdir
    changes: list[dict]  # accepted changes, oldest first
    source: str  # the file it was read from


def read_record(workdir: str) -> Optional[Record]:
    """fingerprint.json, else (a workdir from before it) config.json; None when neither can be read."""
    path = os.path.join(workdir, FINGERPRINT_FILE)
    record = _read_json(path)
    if record is not None and isinstance(record.get("config"), dict):
        return Record(record["config"], list(record.get(CONFIG_CHANGES_KEY, [])), path)
    if os.path.exists(path):
        logging.warning("%s cannot be read; comparing the config with config.json instead", path)
    path = os.path.join(workdir, CONFIG_FILE)
    config = _read_json(path)
    if config is None:
        return None
    changes = config.pop(CONFIG_CHANGES_KEY, [])
    return Record(config, list(changes), path)


def accept_changes(workdir: str, changes: Sequence[Any], *, trained_epochs: int, allow: bool,
                   source: str) -> Optional[dict]:
    """Stops the run (WorkdirError naming every differing field and the two ways out) when ``changes``
    (:class:`imbalance_jax.experiment.FieldChange`) is not empty and ``allow`` is False; with ``allow``, returns
    the change to record: ``{"epoch", "fields": {path: {"old", "new"}}}``."""
    if not changes:
        return None
    fields = "; ".join(change.describe() for change in changes)
    if not allow:
        raise WorkdirError(
            f"{workdir} holds a run of another config (checkpoints up to epoch {trained_epochs}, config in "
            f"{source}): {fields}. Use a new --workdir, or rerun with --config.allow_config_change=True to continue "
            "this run under the new config (the change is recorded in config.json and report.md)")
    return {"epoch": trained_epochs, "fields": {c.path: {"old": c.old, "new": c.new} for c in changes}}


def write_json_atomic(path: str, obj: Any) -> None:
    """Writes ``obj`` as strict JSON through a temporary file and a rename: a killed process leaves the old file
    or the new one, never half of one."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, allow_nan=False)
    os.replace(tmp, path)


def write_fingerprint(workdir: str, flat_config: Mapping[str, Any], digest: str, changes: Sequence[dict]) -> None:
    """fingerprint.json: the flattened config, its SHA-256 and the accepted changes."""
    write_json_atomic(os.path.join(workdir, FINGERPRINT_FILE),
                      {"sha256": digest, "config": dict(flat_config), CONFIG_CHANGES_KEY: list(changes)})


def describe_change(change: Mapping[str, Any]) -> str:
    """One line for report.md: ``at epoch 3: optimizer.learning_rate 0.003 -> 0.01``."""
    fields = "; ".join(f"{path} {json.dumps(v['old'])} -> {json.dumps(v['new'])}"
                       for path, v in change["fields"].items())
    return f"config changed after epoch {change['epoch']} (allow_config_change): {fields}"
