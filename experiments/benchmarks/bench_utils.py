"""Shared helpers of the benchmark scripts: interleaved timing, machine description, Markdown tables.

Benchmarks compare frameworks *in the same run*: each repeat times every contender once, in
turn, so that load from other processes on the (shared) machine hits all of them alike, and the
table reports medians and their ratio. Never compare absolute times across runs.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable, Optional, Sequence

THREADS = 2  # both frameworks get the same cores; see set_torch_threads


def set_torch_threads(torch_module, threads: int = THREADS) -> None:
    """Intra-op threads of PyTorch = the cores XLA:CPU uses by default on this machine."""
    torch_module.set_num_threads(threads)


def use_torch_device(torch_module, device: str) -> Callable[[object], object]:
    """Makes ``device`` ("cpu" or "cuda") PyTorch's default device (factory calls such as ``torch.eye``
    land there) and returns the sync to pass to ``time_once``: CUDA kernels run asynchronously, so a
    timed run ends only when the device has finished."""
    torch_module.set_default_device(device)

    def sync(result: object) -> object:
        if device.startswith("cuda"):
            torch_module.cuda.synchronize()
        return result

    return sync


def stub_tensorflow_if_missing() -> bool:
    """Lets ``imbalance_jax.train`` be imported where TensorFlow is not installed (the GPU image of
    the ``device`` tool): ``tensorflow`` and ``tensorflow_datasets`` become empty modules whose every
    attribute is a ``MagicMock``.
    Only for benchmarks that build the train step on synthetic in-memory batches and never touch
    tf.data or the summary writer. Returns whether it stubbed."""
    import importlib.machinery
    import importlib.util
    import sys
    import types
    from unittest import mock

    if importlib.util.find_spec("tensorflow") is not None:
        return False
    for name in ("tensorflow", "tensorflow_datasets"):
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)  # torch._dynamo calls find_spec
        module.__getattr__ = lambda attr, _name=name: mock.MagicMock(name=f"{_name}.{attr}")
        sys.modules[name] = module
    return True


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def machine_line(extra: str = "") -> str:
    """One line describing the machine and the software versions."""
    import jax

    parts = [f"{cpu_name()}, {os.cpu_count()} cores", f"jax {jax.__version__} ({jax.default_backend()}: {jax.devices()[0].device_kind})"]
    try:
        import torch

        parts.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    except ImportError:
        pass
    parts.append(f"load average {load_average()} (1/5/15 min)")
    if extra:
        parts.append(extra)
    return "Machine: " + "; ".join(parts) + "."


def time_once(fn: Callable[[], object], sync: Callable[[object], object] = lambda x: x) -> float:
    start = time.perf_counter()
    sync(fn())
    return time.perf_counter() - start


def interleaved(contenders: Sequence[Optional[Callable[[], float]]], repeats: int,
                warmup: int = 1, pause: float = 0.0) -> list[Optional[float]]:
    """Median seconds of each contender; contenders are zero-argument functions returning the
    seconds of one run (``None`` entries are skipped). Each repeat runs them in turn, with
    ``pause`` seconds between runs (default 0: an idle pause makes the next sub-millisecond run
    pay the threads' wake-up, ~0.2 ms here)."""
    live = [c for c in contenders if c is not None]
    for _ in range(warmup):
        for c in live:
            c()
    times: list[list[float]] = [[] for _ in contenders]
    for _ in range(repeats):
        for i, c in enumerate(contenders):
            if c is not None:
                time.sleep(pause)
                times[i].append(c())
    return [statistics.median(t) if t else None for t in times]


def calls_per_run(seconds_one_call: float, min_run_seconds: float, max_calls: int = 1000) -> int:
    """How many back-to-back calls make one timed run last at least ``min_run_seconds``."""
    if seconds_one_call <= 0:
        return max_calls
    return int(max(1, min(max_calls, -(-min_run_seconds // seconds_one_call))))


def fmt_ms(seconds: Optional[float], digits: int = 2) -> str:
    if seconds is None:
        return ""
    ms = 1e3 * seconds
    return f"{ms:.{digits}f}" if ms < 1000 else f"{ms:.0f}"


def fmt_ratio(num: Optional[float], den: Optional[float]) -> str:
    if num is None or den is None or den == 0:
        return ""
    r = num / den
    return f"{r:.3g}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]],
                   align: Optional[str] = None) -> str:
    """``align``: one character per column, 'l' or 'r' (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def emit_table(table: str, output: Optional[str] = None) -> None:
    """Prints the finished table after a blank line and, when ``output`` is given, writes it there too."""
    print()
    print(table)
    if output:
        with open(output, "w") as f:
            f.write(table + "\n")


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]
