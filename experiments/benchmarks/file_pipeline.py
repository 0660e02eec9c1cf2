"""Peak RSS and images/s of the file-backed input pipeline against the in-memory one, and a one-epoch training run
on the file path with its peak RSS (the whole process, runtime included).

Data: a generated image folder (not in the repository; ``--root``, reused when complete): ``--num-images`` (>= 30k)
JPEGs of ``--size`` px (128) in ``--classes`` class folders with exponentially long-tailed counts (n_max / n_min =
``--ratio``). Each image is a smooth random pattern around a class colour (16 x 16 noise upsampled), so files are
small and classes learnable.

Pipelines: ``imbalance_jax.data.pipeline.train_batches`` over the ``image_folder`` splits built by
``experiment.splits_from_config`` with ``data.storage`` "files" or "memory" (image_size = ``--size``, no
imbalance applied: the folder is long-tailed already), batch ``--batch-size``, one timed pass of ``--batches``
batches with horizontal flip (files: also random-resized crop). Each mode runs in its own process, whose peak RSS
(``ru_maxrss``) covers loading, the normalisation statistics and the timed pass. Training:
``python -m imbalance_jax.main`` with configs/default.py on the folder (cnn4, CE only, one epoch, storage "files"),
its peak RSS from ``os.wait4`` (training and evaluation batch ``--train-batch-size``, 64: at 128 px cnn4's
activation buffers grow with the batch; at batch 128 the process passed 3 GB, with evaluation batch 128 after
training batch 64 it reached 2.6 GB; the data pipeline's share is a few batches).

Usage (generation ~1-3 min, in-memory load ~1 min, training several minutes on 2 CPU cores):
  .venv/bin/python experiments/benchmarks/file_pipeline.py --root /tmp/lt_folder_30k
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, REPO)
import bench_utils  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="/tmp/imbalance_jax_lt_folder")
    p.add_argument("--num-images", type=int, default=30000)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--ratio", type=float, default=50.0)
    p.add_argument("--batch-size", type=int, default=128, help="pipeline passes")
    p.add_argument("--train-batch-size", type=int, default=64,
                   help="training run (cnn4 at 128 px, batch 128: XLA's activation buffers alone pass 2 GB)")
    p.add_argument("--batches", type=int, default=60, help="batches per timed pipeline pass")
    p.add_argument("--modes", type=lambda s: s.split(","), default=["files", "files_rrc", "memory"])
    p.add_argument("--no-train", action="store_true", help="skip the one-epoch training run")
    p.add_argument("--workdir", default="/tmp/imbalance_jax_file_pipeline_run")
    p.add_argument("--output", default=None)
    p.add_argument("--mode-worker", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def class_counts(total: int, classes: int, ratio: float) -> list[int]:
    """Exponential long tail n_c = n_max * ratio^(-c / (C - 1)) with n_max chosen so the counts sum to >= total."""
    shape = ratio ** (-np.arange(classes) / max(classes - 1, 1))
    n_max = total / shape.sum()
    counts = np.maximum(1, np.floor(n_max * shape)).astype(int)
    counts[0] += max(0, total - counts.sum())
    return counts.tolist()


def _write_class(job) -> None:
    from PIL import Image

    root, cls, n, size = job
    rng = np.random.default_rng(cls)
    colour = rng.integers(0, 255, 3)
    folder = os.path.join(root, f"{cls:03d}")
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        small = np.clip(rng.normal(colour, 60, (16, 16, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(small).resize((size, size), Image.BILINEAR).save(os.path.join(folder, f"{i}.jpg"), quality=90)


def generate(args) -> list[int]:
    """Writes the folder unless its marker file says it is complete with the same parameters."""
    counts = class_counts(args.num_images, args.classes, args.ratio)
    marker = os.path.join(args.root, "COMPLETE.json")
    spec = {"counts": counts, "size": args.size}
    if os.path.exists(marker) and json.load(open(marker)) == spec:
        return counts
    os.makedirs(args.root, exist_ok=True)
    start = time.time()
    with multiprocessing.Pool(os.cpu_count()) as pool:
        pool.map(_write_class, [(args.root, c, n, args.size) for c, n in enumerate(counts)])
    json.dump(spec, open(marker, "w"))
    print(f"wrote {sum(counts)} JPEGs in {time.time() - start:.0f} s to {args.root}", flush=True)
    return counts


def mode_worker(args) -> None:
    """One pipeline measurement in this process; prints a JSON line."""
    from configs import default
    from imbalance_jax import experiment
    from imbalance_jax.data import PipelineOptions, train_batches

    config = default.get_config()
    data = config.data
    data.name, data.dir, data.image_size = "image_folder", args.root, args.size
    data.storage = "memory" if args.mode_worker == "memory" else "files"
    data.imbalance.profile, data.val_per_class, data.test_fraction = "none", 0, 0.1
    start = time.perf_counter()
    splits = experiment.splits_from_config(data, 0)
    load_s = time.perf_counter() - start
    options = PipelineOptions(global_batch_size=args.batch_size, mean=splits.mean, std=splits.std, flip=True,
                              random_resized_crop=args.mode_worker == "files_rrc")
    batches = min(args.batches, len(splits.train) // args.batch_size)
    start = time.perf_counter()
    for i, batch in enumerate(train_batches(splits.train, options, num_classes=splits.num_classes, sampler="random",
                                            seed=0, epoch=0, num_epochs=1)):
        if i + 1 == batches:
            break
    seconds = time.perf_counter() - start
    print(json.dumps({"mode": args.mode_worker, "train_images": len(splits.train), "load_s": load_s,
                      "images_per_s": batches * args.batch_size / seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)


def run_child(command: list[str]) -> tuple[str, float, float]:
    """Runs ``command``; returns its stdout, its own peak RSS in MiB (``os.wait4``) and its wall seconds."""
    import tempfile

    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=err, text=True,
                                env={**os.environ, "JAX_PLATFORMS": "cpu"})
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    return stdout, usage.ru_maxrss / 1024, time.perf_counter() - start


def run(args) -> str:
    counts = generate(args)
    load_before = bench_utils.load_average()
    rows = []
    for mode in args.modes:
        out, _, _ = run_child([sys.executable, os.path.abspath(__file__), "--root", args.root, "--size",
                               str(args.size), "--batch-size", str(args.batch_size), "--batches", str(args.batches),
                               "--mode-worker", mode])
        result = json.loads(out.strip().splitlines()[-1])
        label = {"files": "files (resize + centre crop, flip)", "files_rrc": "files (random-resized crop, flip)",
                 "memory": "memory (decoded at load, flip)"}[mode]
        rows.append([label, f"{result['load_s']:.0f}", f"{result['images_per_s']:.0f}",
                     f"{result['peak_rss_mb']:.0f}"])
        print("| " + " | ".join(rows[-1]) + " |", flush=True)
    table = bench_utils.markdown_table(["storage", "load (s)", "images/s", "peak RSS (MiB)"], rows, "lrrr")
    train_line = ""
    if not args.no_train:
        command = [sys.executable, "-m", "imbalance_jax.main", "--config=configs/default.py",
                   f"--workdir={args.workdir}", "--config.data.name=image_folder", f"--config.data.dir={args.root}",
                   f"--config.data.image_size={args.size}", "--config.data.storage=files",
                   "--config.data.imbalance.profile=none", "--config.data.val_per_class=5",
                   "--config.data.test_fraction=0.1", "--config.data.sampler=random",
                   "--config.data.augment.random_resized_crop=True", "--config.data.augment.flip=True",
                   "--config.model.name=cnn4", "--config.loss.aux.asl.weight=0", "--config.num_epochs=1",
                   f"--config.batch_size={args.train_batch_size}",
                   f"--config.eval_batch_size={args.train_batch_size}",
                   "--config.disable_progress_bar=True"]
        if os.path.isdir(args.workdir):
            import shutil
            shutil.rmtree(args.workdir)
        _, rss, seconds = run_child(command)
        metrics = json.load(open(os.path.join(args.workdir, "metrics.json")))
        train_line = (f"\n\nOne-epoch training run (python -m imbalance_jax.main, cnn4, CE, storage=files, "
                      f"random-resized crop + flip, batch {args.train_batch_size} (evaluation too), final evaluation of train/val/test "
                      "included): "
                      f"peak RSS {rss:.0f} MiB, wall {seconds:.0f} s, test balanced accuracy "
                      f"{metrics['test']['balanced_accuracy']:.3f}.")
        print(train_line.strip(), flush=True)
    decoded = sum(counts) * args.size * args.size * 3 / 2**20
    intro = (f"{bench_utils.machine_line()} Load average before the runs: {load_before}.\n"
             f"Folder: {sum(counts)} JPEGs of {args.size} px in {len(counts)} classes ({counts[0]} ... {counts[-1]} "
             f"images per class; {decoded:.0f} MiB decoded at {args.size} px); {args.batches} batches of "
             f"{args.batch_size} per timed pass, each mode in its own process (peak RSS of that process).")
    return intro + "\n\n" + table + train_line


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.mode_worker:
        mode_worker(args)
        return
    bench_utils.emit_table(run(args), args.output)


if __name__ == "__main__":
    main()
