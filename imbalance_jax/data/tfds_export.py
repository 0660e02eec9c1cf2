"""Writing a dataset split as files: each example's encoded image bytes unchanged in a file, then an index (relative
path, label) written last, so that a directory without its index is an unfinished export. An export is built in a
uniquely named sibling directory (:func:`temporary_sibling`) and renamed into place (:func:`publish`): processes
exporting at once (several hosts on one shared filesystem) never see a partial export; the first rename wins.
:mod:`imbalance_jax.data.sources` exports tfds splits with it for file-backed storage.
"""

from __future__ import annotations

import os
import shutil
import uuid
from typing import Iterable, Optional, Sequence

import numpy as np
from absl import logging

# An exported tfds split: the encoded images under <export>/<shard>/<number>.<ext> and this index, written last.
EXPORT_INDEX = "index.tsv"
_INDEX_HEADER = "path\tlabel\n"
_EXPORT_SHARD = 1000  # files per sub-directory


def read_index(directory: str) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(absolute paths, labels) of the export in ``directory``; None when it has no complete index."""
    path = os.path.join(directory, EXPORT_INDEX)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        if f.readline() != _INDEX_HEADER:
            return None
        rows = [line.rstrip("\n").split("\t") for line in f]
    paths = np.asarray([os.path.join(directory, rel) for rel, _ in rows], dtype=str)
    return paths, np.asarray([int(label) for _, label in rows], np.int32)


def write_index(directory: str, rows: Sequence[tuple[str, int]]) -> None:
    """The index of ``rows`` (relative path, label), through a temporary file and an atomic rename."""
    tmp = os.path.join(directory, f"{EXPORT_INDEX}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(_INDEX_HEADER)
        f.writelines(f"{rel}\t{label}\n" for rel, label in rows)
    os.replace(tmp, os.path.join(directory, EXPORT_INDEX))


def image_extension(data: bytes) -> str:
    """The file extension of encoded image ``data`` from its magic number (.bin: decode_image reads the rest)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if data.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    return ".bin"


def write_images(directory: str, examples: Iterable[tuple[dict, int]], image_key: str) -> list[tuple[str, int]]:
    """Writes each example's encoded image bytes unchanged under ``directory``; returns (relative path, label)."""
    rows = []
    for i, (example, label) in enumerate(examples):
        data = example[image_key]
        shard = f"{i // _EXPORT_SHARD:05d}"
        if i % _EXPORT_SHARD == 0:
            os.makedirs(os.path.join(directory, shard), exist_ok=True)
        rel = f"{shard}/{i:08d}{image_extension(data)}"
        with open(os.path.join(directory, rel), "wb") as f:
            f.write(data)
        rows.append((rel, label))
    return rows


def publish(tmp: str, directory: str) -> None:
    """Renames the finished export ``tmp`` to ``directory``. A ``directory`` without an index (an interrupted or
    damaged export) is moved aside and removed first; one with an index (another process finished first) is kept
    and ``tmp`` is left for the caller to remove."""
    if os.path.isdir(directory) and read_index(directory) is None:
        stale = f"{directory}.stale-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(directory, stale)
        except FileNotFoundError:  # another process moved it first
            pass
        else:
            shutil.rmtree(stale, ignore_errors=True)
    try:
        os.rename(tmp, directory)
    except OSError:
        if read_index(directory) is None:
            raise
        logging.info("another process exported %s first; using its export", directory)


def temporary_sibling(directory: str) -> str:
    """A new, uniquely named directory next to ``directory``, to build its export in."""
    tmp = f"{directory}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.makedirs(tmp)
    return tmp


def export(directory: str, examples: Iterable[tuple[dict, int]], image_key: str) -> None:
    """Writes ``examples`` ((example, label); ``example[image_key]`` the encoded image bytes) as the export
    ``directory``: built in a temporary sibling, index last, then published. Raises OSError when it cannot write."""
    tmp = temporary_sibling(directory)
    try:
        write_index(tmp, write_images(tmp, examples, image_key))
        publish(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
