"""Images/s delivered by the tf.data training pipeline vs the rate the train step consumes them.

Data: Fashion-MNIST-LT as in ``configs/fmnist_lt_base.py`` (rho = 100, 25 validation images per
class held out first; the Debian files at /usr/share/datasets/fashion-mnist or
``--data-dir``), built with ``imbalance_jax.experiment.splits_from_config``. The pipeline is the project's
``imbalance_jax.data.pipeline.train_batches`` (the one ``train.train_epoch`` iterates) with
random crop (zero padding 2) + horizontal flip, for the "random" and "class_balanced" samplers;
"none" is the same without augmentation. Each timed run iterates ``--batches`` global batches
of 128 (a fresh iterator per run, so the start-up cost of building the tf.data graph is
included, as it is once per epoch in training).

In the same process and interleaved with the pipeline runs, the jitted train step of the
4-layer CNN with CE (``train_step.JaxRunner``, device-resident batch) is timed; the table
reports pipeline images/s and the ratio pipeline / train step (target >= 5). The last row is
the train step fed by the augmented pipeline end to end (tf.data prefetching on the same two
cores while the step runs), relative to the device-resident step.

Usage (either venv):
  .venv/bin/python experiments/benchmarks/input_pipeline.py
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import bench_utils  # noqa: E402

from imbalance_jax.xla_flags import set_default_xla_flags  # noqa: E402

set_default_xla_flags()  # the train step as python -m imbalance_jax.main runs it (before JAX's backend starts)

from configs import fmnist_lt_base  # noqa: E402
from imbalance_jax import experiment  # noqa: E402
from imbalance_jax.data import PipelineOptions, train_batches  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--batches", type=int, default=60, help="global batches per timed run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--train-steps", type=int, default=5, help="train steps per timed run")
    p.add_argument("--data-dir", default="", help="directory with the Fashion-MNIST IDX files")
    p.add_argument("--samplers", type=lambda s: s.split(","), default=["random", "class_balanced"])
    p.add_argument("--no-train-step", action="store_true", help="skip the train-step reference")
    p.add_argument("--output", default=None)
    return p.parse_args(argv)


def pipeline_runner(splits, options, sampler: str, num_batches: int):
    """Seconds to pull ``num_batches`` batches from a fresh ``train_batches`` iterator."""
    epoch = [0]

    def run() -> float:
        epoch[0] += 1  # a new epoch order every run, as in training

        def go():
            batches = train_batches(splits.train, options, num_classes=splits.num_classes, sampler=sampler,
                                    seed=0, epoch=epoch[0], num_epochs=100)
            for i, batch in enumerate(batches):
                if i + 1 == num_batches:
                    return batch
            return None

        return bench_utils.time_once(go)

    return run


def fed_runner(runner, splits, options, steps: int):
    """Seconds of ``steps`` train steps fed from a fresh pipeline (transfer included), as in training."""
    from imbalance_jax import parallel

    def run() -> float:
        def go():
            batches = train_batches(splits.train, options, num_classes=splits.num_classes, sampler="random",
                                    seed=0, epoch=0, num_epochs=100)
            batches = iter(batches)
            next(batches)  # the iterator's start-up is measured by the pipeline rows
            metrics = None
            for _, batch in zip(range(steps), batches):
                runner.state, metrics = runner.train_fn(runner.state, parallel.to_global(
                    {k: batch[k] for k in ("image", "label", "valid")}, runner.exp.data_sharding))
            return metrics["loss"]

        import jax

        return bench_utils.time_once(go, jax.block_until_ready)

    return run


def run(args) -> str:
    config = fmnist_lt_base.get_config()
    if args.data_dir:
        config.data.dir = args.data_dir
    splits = experiment.splits_from_config(config.data, int(config.seed))
    n_train = len(splits.train)
    num_batches = min(args.batches, n_train // args.batch_size)
    cases = [("none", "random", 0, False)] + [(s, s, 2, True) for s in args.samplers]
    contenders, labels = [], []
    for name, sampler, pad, flip in cases:
        options = PipelineOptions(global_batch_size=args.batch_size, mean=splits.mean, std=splits.std,
                                  crop_padding=pad, flip=flip)
        contenders.append(pipeline_runner(splits, options, sampler, num_batches))
        labels.append((name if name == "none" else f"{name} + crop(2) + flip", sampler))
    step_rate = None
    if not args.no_train_step:
        import train_step  # noqa: E402  (imports JAX; the pipeline itself is TensorFlow only)

        cfg = train_step.make_config("cnn4", "ce", True, "float32")
        runner = train_step.JaxRunner(cfg, splits.image_shape, args.batch_size, {"image", "label", "valid"}, 0)
        contenders.append(lambda: runner.steps(args.train_steps))
        fed_options = PipelineOptions(global_batch_size=args.batch_size, mean=splits.mean, std=splits.std,
                                      crop_padding=2, flip=True)
        contenders.append(fed_runner(runner, splits, fed_options, 3 * args.train_steps))
    times = bench_utils.interleaved(contenders, args.repeats)
    if not args.no_train_step:
        step_rate = args.batch_size * args.train_steps / times[-2]
        fed_rate = args.batch_size * 3 * args.train_steps / times[-1]
    rows = []
    for (label, sampler), t in zip(labels, times):
        rate = num_batches * args.batch_size / t
        rows.append([label, sampler, f"{rate:.0f}", "" if step_rate is None else f"{rate / step_rate:.1f}"])
        print("| " + " | ".join(rows[-1]) + " |", flush=True)
    if step_rate is not None:
        rows.append(["train step fed by random + crop(2) + flip (end to end)", "random", f"{fed_rate:.0f}",
                     f"{fed_rate / step_rate:.2f}"])
        print("| " + " | ".join(rows[-1]) + " |", flush=True)
    intro = (f"{bench_utils.machine_line()}\nFashion-MNIST-LT rho = 100: {n_train} training images, "
             f"{num_batches} batches of {args.batch_size} per timed run (fresh iterator each run), median of "
             f"{args.repeats} interleaved runs after one warm-up. Train step (cnn4, CE, device-resident batch): "
             + ("skipped" if step_rate is None else f"{step_rate:.0f} images/s") + ".")
    return intro + "\n\n" + bench_utils.markdown_table(
        ["pipeline", "sampler", "images/s", "pipeline / train step"], rows, "llrr")


def main(argv=None) -> None:
    args = parse_args(argv)
    table = run(args)
    bench_utils.emit_table(table, args.output)


if __name__ == "__main__":
    main()
