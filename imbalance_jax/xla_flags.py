"""Default XLA flags of the command-line entry points (not of the library: importing the losses changes nothing).

``--xla_cpu_experimental_ynn_fusion_type=`` (an empty list) keeps XLA:CPU's YNNPACK library for the convolutions
and matmuls but lets XLA fuse the elementwise operations itself. With jaxlib 0.10.2 (requirements.txt) that made
the 4-layer CNN's train step 1.3-1.4x faster and ResNet-32's 1.1x, values unchanged up to float rounding
(experiments/benchmarks/README.md §2). It only concerns the CPU backend.
"""
from __future__ import annotations

import os
from typing import MutableMapping

CPU_FLAGS: dict[str, str] = {"--xla_cpu_experimental_ynn_fusion_type": ""}


def set_default_xla_flags(environ: MutableMapping[str, str] = os.environ) -> str:
    """Appends each of ``CPU_FLAGS`` to ``XLA_FLAGS`` unless the user already set that flag; returns the result.

    XLA reads ``XLA_FLAGS`` when JAX creates its first backend, so call this before anything touches a device
    (importing jax is fine).
    """
    flags = environ.get("XLA_FLAGS", "").split()
    names = {flag.split("=", 1)[0] for flag in flags}
    flags += [f"{name}={value}" for name, value in CPU_FLAGS.items() if name not in names]
    environ["XLA_FLAGS"] = " ".join(flags)
    return environ["XLA_FLAGS"]
