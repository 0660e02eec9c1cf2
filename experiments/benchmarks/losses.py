"""Benchmark of the loss kernels in ``imbalance_jax.losses``: fwd+bwd time and peak memory.

For every kernel and batch size B (D = 128 embeddings, C classes for logits), the jitted
``value_and_grad`` is compiled once, its XLA memory analysis read (temp + output bytes: the
buffers the computation itself allocates, which works on CPU), then run once to warm up and
``--repeats`` times more; the table reports the median wall time (``block_until_ready``).
The scalable triplet loss is measured next to the dense B^3 reference
(``triplet_loss_dense``) in the same run, with fast/dense ratio columns; the dense version is
skipped when one B^3 float32 tensor exceeds ``--dense-limit-gib`` or when its compiled buffers
exceed ``--dense-max-temp-gib``.

Kernels of the optional modules (classification, affinity, weighting) are included when the
modules import. Class-weight kernels have no batch dimension and get their own small table
(forward only).

Usage:
  python experiments/benchmarks/losses.py --batch-sizes 64,256,1024,4096 --repeats 5 \
      --large-batch 1024 --large-repeats 2
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import os
import platform
import statistics
import sys
import time
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_utils  # noqa: E402

GIB = 1 << 30
MIB = 1 << 20


@dataclasses.dataclass
class Kernel:
    """A benchmark case: ``make(B, D, C, rng) -> (loss_fn, args, argnums)``."""

    name: str
    make: Callable
    dense: Optional[Callable] = None  # a dense reference built the same way


@dataclasses.dataclass
class Measurement:
    seconds: Optional[float] = None
    mebibytes: Optional[float] = None
    note: str = ""


def _embedding_batch(b, d, c, rng):
    emb = jnp.asarray(rng.normal(size=(b, d)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, c, b), jnp.int32)
    return emb, labels


def _embedding_kernel(fn, **kw):
    def make(b, d, c, rng):
        emb, labels = _embedding_batch(b, d, c, rng)
        return functools.partial(fn, **kw), (emb, labels), 0

    return make


def _colour_kernel(fn):
    def make(b, d, c, rng):
        emb, _ = _embedding_batch(b, d, c, rng)
        hist = jnp.asarray(rng.dirichlet(np.ones(25), b), jnp.float32)
        return fn, (emb, hist), 0

    return make


def _logit_kernel(fn, extra: Optional[str] = None, **kw):
    def make(b, d, c, rng):
        logits = jnp.asarray(rng.normal(size=(b, c)), jnp.float32)
        labels = jnp.asarray(rng.integers(0, c, b), jnp.int32)
        args = (logits, labels)
        if extra == "counts":
            args += (jnp.asarray(np.round(1000 * 0.01 ** (np.arange(c) / (c - 1))), jnp.float32),)
        elif extra == "accuracy":
            args += (jnp.asarray(rng.uniform(0.2, 0.9, c), jnp.float32),)
        return functools.partial(fn, **kw), args, 0

    return make


def _affinity_kernel(fn, centres: int):
    def make(b, d, c, rng):
        emb, labels = _embedding_batch(b, d, c, rng)
        protos = jnp.asarray(rng.normal(size=(c, centres, d)) * 0.1, jnp.float32)
        return fn, (emb, labels, protos), (0, 2)

    return make


def _import(name: str):
    try:
        return importlib.import_module(f"imbalance_jax.losses.{name}")
    except ImportError as err:  # a module another part of the project has not written yet
        print(f"<!-- skipping imbalance_jax.losses.{name}: {err} -->")
        return None


def build_kernels() -> list[Kernel]:
    """Every batch kernel of ``imbalance_jax.losses`` that imports."""
    kernels: list[Kernel] = []
    asl = _import("aggregation_separation")
    if asl:
        for metric in asl.ASL_METRICS:
            kernels.append(Kernel(f"aggregation_separation_loss[{metric}]",
                                  _embedding_kernel(asl.aggregation_separation_loss, metric=metric)))
    tri = _import("triplet")
    if tri:
        for mining in tri.MINING:
            kernels.append(Kernel(
                f"triplet_loss[sq_l2,{mining}]",
                _embedding_kernel(tri.triplet_loss, mining=mining),
                dense=_embedding_kernel(tri.triplet_loss_dense, mining=mining),
            ))
    clu = _import("clustering")
    if clu:
        kernels.append(Kernel("semantic_triplet_loss", _embedding_kernel(clu.semantic_triplet_loss)))
        kernels.append(Kernel("colour_similarity_loss", _colour_kernel(clu.colour_similarity_loss)))
    aff = _import("affinity")
    if aff:
        kernels.append(Kernel("affinity_loss[m=5]", _affinity_kernel(aff.affinity_loss, 5)))
    cls = _import("classification")
    if cls:
        kernels += [
            Kernel("softmax_cross_entropy", _logit_kernel(cls.softmax_cross_entropy)),
            Kernel("focal_loss", _logit_kernel(cls.focal_loss)),
            Kernel("ldam_loss", _logit_kernel(cls.ldam_loss, extra="counts")),
            Kernel("logit_adjusted_loss", _logit_kernel(cls.logit_adjusted_loss, extra="counts")),
            Kernel("cdb_cross_entropy", _logit_kernel(cls.cdb_cross_entropy, extra="accuracy")),
        ]
    return kernels


def _time(fn: Callable, args: Sequence, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _compile(loss_fn, args, argnums):
    grad_fn = jax.jit(jax.value_and_grad(loss_fn, argnums=argnums))
    compiled = grad_fn.lower(*args).compile()
    mem = compiled.memory_analysis()
    mib = None if mem is None else (mem.temp_size_in_bytes + mem.output_size_in_bytes) / MIB
    return compiled, mib


def measure(make, b, d, c, repeats, seed=0) -> Measurement:
    loss_fn, args, argnums = make(b, d, c, np.random.default_rng(seed))
    compiled, mib = _compile(loss_fn, args, argnums)
    return Measurement(_time(compiled, args, repeats), mib)


def measure_dense(make, b, d, c, repeats, limit_gib, max_temp_gib) -> Measurement:
    if b ** 3 * 4 > limit_gib * GIB:
        return Measurement(note="skipped (B³ too large)")
    loss_fn, args, argnums = make(b, d, c, np.random.default_rng(0))
    compiled, mib = _compile(loss_fn, args, argnums)
    if mib is not None and mib > max_temp_gib * 1024:
        return Measurement(mebibytes=mib, note=f"skipped (needs {mib / 1024:.1f} GiB)")
    return Measurement(_time(compiled, args, repeats), mib)


def _fmt_ms(m: Measurement) -> str:
    return m.note or ("" if m.seconds is None else f"{1e3 * m.seconds:.2f}")


def _fmt_mib(m: Optional[float]) -> str:
    if m is None:
        return ""
    return f"{m:.0f}" if m >= 100 else f"{m:.3g}"


def _ratio(a: Optional[float], b: Optional[float]) -> str:
    return "" if a is None or b is None or b == 0 else f"{a / b:.3g}"


def run(args) -> str:
    kernels = [k for k in build_kernels() if not args.kernels or any(s in k.name for s in args.kernels)]
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, {jax.device_count()} "
        f"{jax.default_backend()} device(s), jax {jax.__version__}. D = {args.dim}, "
        f"C = {args.num_classes}. Time: median of {args.repeats} runs after one warm-up "
        f"({args.large_repeats} for B >= {args.large_batch}). Memory: XLA temp + output buffers.",
        "",
        "| kernel | B | fwd+bwd ms | MiB | dense ms | dense MiB | time fast/dense | MiB fast/dense |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kernel in kernels:
        for b in args.batch_sizes:
            repeats = args.large_repeats if b >= args.large_batch else args.repeats
            fast = measure(kernel.make, b, args.dim, args.num_classes, repeats)
            dense = Measurement()
            if kernel.dense is not None and not args.no_dense:
                dense = measure_dense(kernel.dense, b, args.dim, args.num_classes, repeats,
                                      args.dense_limit_gib, args.dense_max_temp_gib)
            row = (f"| {kernel.name} | {b} | {_fmt_ms(fast)} | {_fmt_mib(fast.mebibytes)} | "
                   f"{_fmt_ms(dense)} | {_fmt_mib(dense.mebibytes)} | "
                   f"{_ratio(fast.seconds, dense.seconds)} | "
                   f"{_ratio(fast.mebibytes, dense.mebibytes if dense.seconds else None)} |")
            print(row, flush=True)
            lines.append(row)

    weighting = _import("weighting")
    if weighting and (not args.kernels or any("weights" in s for s in args.kernels)):
        lines += ["", "Class-weight kernels (no batch dimension; forward only, jitted):", "",
                  "| kernel | C | fwd ms |", "|---|---:|---:|"]
        for c in (args.num_classes, 1000):
            counts = jnp.asarray(np.round(5000 * 0.01 ** (np.arange(c) / (c - 1))), jnp.float32)
            acc = jnp.asarray(np.random.default_rng(0).uniform(0.2, 0.9, c), jnp.float32)
            cases = [
                ("inverse_frequency_weights", weighting.inverse_frequency_weights, (counts,)),
                ("class_balanced_weights", weighting.class_balanced_weights, (counts,)),
                ("cdb_weights", weighting.cdb_weights, (acc,)),
                ("drw_weights", functools.partial(weighting.drw_weights, start_epoch=160),
                 (jnp.asarray(170), counts)),
            ]
            for name, fn, fn_args in cases:
                seconds = _time(jax.jit(fn), fn_args, args.repeats)
                row = f"| {name} | {c} | {1e3 * seconds:.3f} |"
                print(row, flush=True)
                lines.append(row)
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")],
                   default=[64, 256, 1024, 4096])
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5, help="timed runs per case (median)")
    p.add_argument("--large-batch", type=int, default=1024, help="B from which --large-repeats applies")
    p.add_argument("--large-repeats", type=int, default=2)
    p.add_argument("--dense-limit-gib", type=float, default=4.0,
                   help="skip the dense triplet when one B^3 float32 tensor exceeds this")
    p.add_argument("--dense-max-temp-gib", type=float, default=12.0,
                   help="skip the dense triplet when its compiled buffers exceed this")
    p.add_argument("--no-dense", action="store_true", help="do not run the dense reference")
    p.add_argument("--kernels", type=lambda s: s.split(","), default=None,
                   help="comma-separated substrings of kernel names to run (default: all)")
    p.add_argument("--output", default=None, help="also write the Markdown table to this file")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    table = run(args)
    bench_utils.emit_table(table, args.output)


if __name__ == "__main__":
    main()
