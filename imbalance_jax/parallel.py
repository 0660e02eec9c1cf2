"""Devices and shardings of a run: a 1-D ``('data',)`` mesh, the batch sharded along it, the state replicated.

One ``jax.jit`` over this mesh replaces ``pmap`` (``docs/design.md``, "Parallelism"): the auxiliary pair and
triplet losses see the global batch, so a run gives the same numbers on 1 or N devices up to float tolerance.
"""

from __future__ import annotations

from typing import Mapping

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def create_mesh(num_devices: int = 0) -> Mesh:
    """A 1-D ``('data',)`` mesh over all devices (``num_devices`` = 0) or the first ``num_devices``.
    ValueError when more are asked for than exist, or a subset is asked for in a multi-process run."""
    devices = jax.devices()
    if num_devices:
        if num_devices > len(devices):
            raise ValueError(f"config.num_devices={num_devices} but only {len(devices)} devices are available")
        if jax.process_count() > 1:
            raise ValueError("config.num_devices must be 0 (all devices) in a multi-host run")
        devices = devices[:num_devices]
    return Mesh(np.asarray(devices), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def to_global(batch: Mapping[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """Per-process local arrays → global arrays with ``sharding`` (the batch axis split over processes)."""
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


def fetch(x: jax.Array) -> np.ndarray:
    """A (possibly multi-host sharded) array as a full numpy array on every host."""
    if jax.process_count() > 1:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
