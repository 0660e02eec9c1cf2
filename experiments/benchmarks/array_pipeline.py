"""An in-memory split above TensorFlow's 2 GB constant limit through the project's pipeline: peak RSS and images/s.

Data: ``--num-images`` random uint8 images of ``--size`` x ``--size`` x 3 (default 46 000 at 128 px = 2.1 GiB, every
page written) as an ``ArraySplit``. One process per run: allocate the array, then one evaluation pass
(``eval_batches``) and ``--train-batches`` training batches (``train_batches``, random sampler, flip) of batch
``--batch-size``. Reported: the RSS after the array is filled, the process's peak RSS (``ru_maxrss``) and the
images/s of each pass. Run it at two commits to compare implementations of the in-memory gather
(experiments/benchmarks/README.md §10).

Usage (~1 min, ~2-3x the array in RAM at most):
  .venv/bin/python experiments/benchmarks/array_pipeline.py
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
import bench_utils  # noqa: E402


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) / 1024


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-images", type=int, default=46_000)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--train-batches", type=int, default=40)
    args = p.parse_args(argv)

    from imbalance_jax.data.pipeline import PipelineOptions, eval_batches, train_batches
    from imbalance_jax.data.sources import ArraySplit

    imports = rss_mib()
    rng = np.random.default_rng(0)
    images = np.empty((args.num_images, args.size, args.size, 3), np.uint8)
    for start in range(0, args.num_images, 4096):  # every page written: the array is resident
        images[start:start + 4096] = rng.integers(0, 256, images[start:start + 4096].shape, dtype=np.uint8)
    split = ArraySplit(images, np.arange(args.num_images) % 10)
    filled = rss_mib()
    options = PipelineOptions(global_batch_size=args.batch_size, mean=np.full(3, 0.5, np.float32),
                              std=np.full(3, 0.25, np.float32), flip=True)
    start = time.perf_counter()
    seen = sum(len(b["label"]) for b in eval_batches(split, options))
    eval_rate = seen / (time.perf_counter() - start)
    start = time.perf_counter()
    batches = train_batches(split, options, num_classes=10, sampler="random", seed=0, epoch=0, num_epochs=1)
    trained = sum(len(b["label"]) for b in itertools.islice(batches, args.train_batches))
    train_rate = trained / (time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(bench_utils.machine_line())
    print(bench_utils.markdown_table(
        ["array (MiB)", "RSS after imports (MiB)", "RSS with the array (MiB)", "peak RSS (MiB)", "eval images/s",
         "train images/s"],
        [[f"{images.nbytes / 2**20:.0f}", f"{imports:.0f}", f"{filled:.0f}", f"{peak:.0f}", f"{eval_rate:.0f}",
          f"{train_rate:.0f}"]]))


if __name__ == "__main__":
    main()
