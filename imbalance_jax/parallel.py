"""Devices and shardings of a run: a 1-D ``('data',)`` mesh, the batch sharded along it, the state replicated.

One ``jax.jit`` over this mesh replaces ``pmap`` (``docs/design.md``, "Parallelism"): the auxiliary pair and
triplet losses see the global batch, so a run gives the same numbers on 1 or N devices up to float tolerance.
Also: the device prefetch of the input batches (:func:`prefetch_to_mesh`) and the start-up of a multi-process run
(:func:`initialize_distributed`).
"""

from __future__ import annotations

import collections
import os
from typing import Iterable, Iterator, Mapping, Optional

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


def prefetch_to_mesh(batches: Iterable[Mapping[str, np.ndarray]], sharding: NamedSharding,
                     size: int = 2) -> Iterator[dict[str, jax.Array]]:
    """:func:`to_global` of each local batch, ``size`` batches ahead of the consumer.

    The host→device copies are dispatched asynchronously (on accelerators they return before the data has
    arrived), so the next ``size`` batches are in flight while the current step runs. ``size`` = 0 converts each batch on demand. The
    values are those of ``to_global(batch)``: prefetching changes when a copy starts, not what is copied.
    """
    if size < 0:
        raise ValueError(f"prefetch size={size} must be >= 0")
    queue: collections.deque[dict[str, jax.Array]] = collections.deque()
    for batch in batches:
        queue.append(to_global(batch, sharding))
        if len(queue) > size:
            yield queue.popleft()
    while queue:
        yield queue.popleft()


def fetch(x: jax.Array) -> np.ndarray:
    """A (possibly multi-host sharded) array as a full numpy array on every host."""
    if jax.process_count() > 1:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


# The variables of a launch without a cluster environment that jax.distributed auto-detects (SLURM, Open MPI,
# Cloud TPU, ...): all three, or none of them.
DISTRIBUTED_VARIABLES = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def distributed_arguments(environ: Mapping[str, str] = os.environ) -> dict[str, Optional[object]]:
    """``jax.distributed.initialize`` keyword arguments from ``DISTRIBUTED_VARIABLES``: all three set → the
    coordinator address and the integers; none set → all None (jax.distributed then detects the cluster).
    ValueError naming the variables when only some are set or a value is malformed."""
    values = {name: environ.get(name, "").strip() for name in DISTRIBUTED_VARIABLES}
    present = [name for name, value in values.items() if value]
    if not present:
        return {"coordinator_address": None, "num_processes": None, "process_id": None}
    if len(present) < len(DISTRIBUTED_VARIABLES):
        missing = [name for name in DISTRIBUTED_VARIABLES if name not in present]
        raise ValueError(f"multi-host: {', '.join(present)} set but {', '.join(missing)} not; set all of "
                         f"{', '.join(DISTRIBUTED_VARIABLES)} or none (cluster auto-detection)")
    address = values["JAX_COORDINATOR_ADDRESS"]
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"multi-host: JAX_COORDINATOR_ADDRESS={address!r} must be HOST:PORT")
    numbers = {}
    for name in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        try:
            numbers[name] = int(values[name])
        except ValueError:
            raise ValueError(f"multi-host: {name}={values[name]!r} must be an integer") from None
    if numbers["JAX_NUM_PROCESSES"] < 1 or not 0 <= numbers["JAX_PROCESS_ID"] < numbers["JAX_NUM_PROCESSES"]:
        raise ValueError(f"multi-host: JAX_PROCESS_ID={numbers['JAX_PROCESS_ID']} must be in "
                         f"[0, JAX_NUM_PROCESSES={numbers['JAX_NUM_PROCESSES']})")
    return {"coordinator_address": address, "num_processes": numbers["JAX_NUM_PROCESSES"],
            "process_id": numbers["JAX_PROCESS_ID"]}


def initialize_distributed(environ: Mapping[str, str] = os.environ) -> None:
    """``jax.distributed.initialize`` for a multi-host run, before anything touches a device: with the
    arguments of :func:`distributed_arguments` (None → jax.distributed's cluster auto-detection) and, for CPU
    processes, the gloo cross-process collectives. ValueError (naming the variables) on an incomplete set."""
    arguments = distributed_arguments(environ)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(**arguments)
    except ValueError as e:
        if arguments["coordinator_address"] is not None:
            raise
        raise ValueError(f"multi-host: no cluster environment detected ({e}); set "
                         f"{', '.join(DISTRIBUTED_VARIABLES)}") from None
