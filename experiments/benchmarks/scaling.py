"""Scaling of the train step: time and compiled memory vs batch size per auxiliary loss, and epoch
time on 1, 2 and 4 (fake CPU) devices.

Part 1 - batch size. For each variant of ``train_step.py`` (the ``configs/fmnist_lt_*.py``
objectives on the 4-layer CNN, 28x28x1) and B in ``--batch-sizes`` (64 ... 4096): the jitted
train step's median time over ``--repeats`` runs (device-resident synthetic batch) and its
compiled memory (``memory_analysis()``: temp = buffers the step allocates, plus arguments and
outputs). "step - CE step" compares with the plain cnn4 + CE step (so it includes the variant's
head / classifier too); "aux terms" times the variant's auxiliary loss terms alone (value and
gradient w.r.t. the features and parameters they read, on the step's features), the robust
measure of what the auxiliary loss adds. All variants of one B are timed in one interleaved loop.

Part 2 - devices. ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` is set before JAX
starts, so the process sees 4 CPU devices that share the machine's cores. One epoch of
Fashion-MNIST-LT (``configs/fmnist_lt_*.py``, the real ``experiment.build_experiment`` /
``train.train_epoch`` path, tf.data pipeline included) with ``config.num_devices`` = 1, 2, 4:
the batch is sharded over a ('data',) mesh of that many devices, the auxiliary losses see the
global batch. On one 2-core machine this measures the overhead of the sharded program, not a
speed-up (the fake devices share the same cores).

Usage (either venv):
  .venv/bin/python experiments/benchmarks/scaling.py
"""

from __future__ import annotations

import os
import sys

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from imbalance_jax.xla_flags import set_default_xla_flags  # noqa: E402

set_default_xla_flags()  # the entry points' flags, before JAX starts its backend

import argparse  # noqa: E402
import functools  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_utils  # noqa: E402
import train_step  # noqa: E402

from imbalance_jax import experiment, parallel, train  # noqa: E402

MIB = 1 << 20


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-sizes", type=bench_utils.int_list, default=[64, 256, 1024, 4096])
    p.add_argument("--variants", type=lambda s: s.split(","), default=list(train_step.VARIANTS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--devices", type=bench_utils.int_list, default=[1, 2, 4])
    p.add_argument("--epoch-variants", type=lambda s: s.split(","), default=["ce", "triplet"])
    p.add_argument("--epoch-steps", type=int, default=0,
                   help="stop each epoch after this many steps (0: the whole epoch)")
    p.add_argument("--skip-batch", action="store_true")
    p.add_argument("--skip-devices", action="store_true")
    p.add_argument("--output", default=None)
    return p.parse_args(argv)


def batch_scaling(args) -> str:
    """All variants of one batch size timed in one interleaved loop, so "aux ms" compares like with like."""
    rows = []
    variants = ["ce"] + [v for v in args.variants if v != "ce"]
    for b in args.batch_sizes:
        runners = {}
        for variant in variants:
            config = train_step.make_config("cnn4", variant, True, "float32")
            runners[variant] = train_step.JaxRunner(config, (28, 28, 1), b, train_step.fields_of(config), 0)
        calls = 1 if b >= 1024 else 5
        aux = {v: r for v, r in runners.items() if r.aux_fn is not None}
        contenders = [functools.partial(r.steps, 1) for r in runners.values()]
        contenders += [functools.partial(r.aux_fn, calls) for r in aux.values()]
        times = bench_utils.interleaved(contenders, args.repeats)
        seconds = dict(zip(runners, times))
        aux_seconds = dict(zip(aux, times[len(runners):]))
        for variant, runner in runners.items():
            if variant not in args.variants:
                continue
            mem = runner.memory
            temp = mem.temp_size_in_bytes / MIB if mem else None
            total = ((mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
                      - mem.alias_size_in_bytes) / MIB) if mem else None
            t = seconds[variant]
            delta = "" if variant == "ce" else f"{1e3 * (t - seconds['ce']):+.1f}"
            terms = "" if variant not in aux_seconds else f"{1e3 * aux_seconds[variant]:.1f}"
            share = "" if variant not in aux_seconds else f"{100 * aux_seconds[variant] / t:.1f}%"
            rows.append([variant, b, f"{1e3 * t:.1f}", delta, terms, share, f"{b / t:.0f}",
                         "" if temp is None else f"{temp:.0f}", "" if total is None else f"{total:.0f}"])
            print("| " + " | ".join(str(c) for c in rows[-1]) + " |", flush=True)
        del runners
    rows.sort(key=lambda r: (train_step.VARIANTS.index(r[0]), r[1]))
    return bench_utils.markdown_table(
        ["variant", "B", "step ms", "step - CE step ms", "aux terms fwd+bwd ms", "aux terms / step", "images/s",
         "temp MiB", "peak MiB (temp + args + out)"], rows)


class EpochRunner:
    """An experiment of ``variant`` on ``num_devices`` devices, compiled and warmed up; ``run()``
    trains one epoch (the real ``train.train_epoch``: tf.data pipeline, transfer, jitted step)."""

    def __init__(self, variant: str, num_devices: int, max_steps: int):
        config = train_step.CONFIGS[variant].get_config()
        config.num_devices = num_devices
        config.disable_progress_bar = True
        self.exp = experiment.build_experiment(config)
        self.state = train.initial_state(self.exp)
        self.train_fn, _ = train.compile_steps(self.exp)
        self.max_steps = max_steps
        if max_steps:
            self.exp.steps_per_epoch = min(self.exp.steps_per_epoch, max_steps)
        batch = next(iter(train.train_batches(
            self.exp.splits.train, self.exp.train_options, num_classes=self.exp.splits.num_classes,
            sampler="random", seed=0, epoch=0, num_epochs=1, extras=self.exp.extras["train"])))
        self.state, metrics = self.train_fn(self.state, parallel.to_global(batch, self.exp.data_sharding))
        jax.block_until_ready(metrics["loss"])
        self.epoch = 0

    def run(self) -> float:
        from tqdm import tqdm

        original = train.train_batches
        if self.max_steps:  # truncate the epoch's iterator
            def limited(*a, **kw):
                for i, b in enumerate(original(*a, **kw)):
                    if i >= self.max_steps:
                        return
                    yield b

            train.train_batches = limited
        try:
            start = time.perf_counter()
            self.state, _ = train.train_epoch(self.exp, self.train_fn, self.state, self.epoch, tqdm(disable=True))
            jax.block_until_ready(self.state.params)
            self.epoch += 1
            return time.perf_counter() - start
        finally:
            train.train_batches = original


def device_scaling(args) -> str:
    """Per variant, the device counts' epochs are interleaved repeat by repeat."""
    rows = []
    for variant in args.epoch_variants:
        runners = {n: EpochRunner(variant, n, args.epoch_steps) for n in args.devices}
        times = bench_utils.interleaved([r.run for r in runners.values()], args.repeats, warmup=0)
        base = times[0]
        for (n, runner), seconds in zip(runners.items(), times):
            steps = runner.exp.steps_per_epoch
            rows.append([variant, n, steps, f"{seconds:.1f}", f"{steps * runner.exp.config.batch_size / seconds:.0f}",
                         f"{seconds / base:.2f}"])
            print("| " + " | ".join(str(c) for c in rows[-1]) + " |", flush=True)
        del runners
    return bench_utils.markdown_table(
        ["variant", "devices", "steps", "epoch s", "images/s", "time vs 1 device"], rows)


def main(argv=None) -> None:
    args = parse_args(argv)
    parts = [bench_utils.machine_line(f"{jax.device_count()} (fake) CPU devices")]
    if not args.skip_batch:
        parts += ["", f"Train step (cnn4, 28x28x1) vs batch size; median of {args.repeats} runs after one warm-up.", "",
                  batch_scaling(args)]
    if not args.skip_devices:
        parts += ["", f"Epoch time (Fashion-MNIST-LT, batch 128, tf.data pipeline included) vs devices; median of "
                      f"{args.repeats} epochs per device count, interleaved, after one warm-up step.", "",
                  device_scaling(args)]
    table = "\n".join(parts)
    bench_utils.emit_table(table, args.output)


if __name__ == "__main__":
    main()
