"""Re-evaluate a finished or interrupted run from one of its checkpoints:

    python -m imbalance_jax.evaluate --workdir=DIR [--checkpoint=best|latest|EPOCH] [--split=train,val,test]

Rebuilds the run from ``DIR/config.json`` (same data splits, model and seed), restores the checkpoint — ``best``
(``DIR/best_checkpoint``, the epoch chosen by ``config.checkpoint.best_metric``), ``latest`` or an epoch number
still kept in ``DIR/checkpoints`` — and writes into ``DIR/eval_<checkpoint>/``: metrics.json (every metric of the
training run's own metrics.json, with the post-hoc corrections), ``logits_<split>.npz`` (``logits``, ``labels``,
``features`` of the embedding layer), report.md and the plots. Evaluated from the checkpoint the run itself
evaluated, the numbers are those of the run's metrics.json.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from typing import Any

from absl import app, flags, logging

from imbalance_jax.xla_flags import set_default_xla_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The run's directory (holds config.json and checkpoints/).")
flags.DEFINE_string("checkpoint", "best", "best | latest | an epoch number kept in checkpoints/.")
flags.DEFINE_list("split", ["train", "val", "test"], "Comma-separated splits to evaluate (those the run has).")
flags.mark_flags_as_required(["workdir"])

SPLITS = ("train", "val", "test")
# metrics.json entries written by the training loop about the run itself, copied from the run's metrics.json.
LOOP_RECORDS = ("skipped_steps", "config_changes", "run_notes")


class EvaluateError(ValueError):
    """The workdir or the flags cannot be evaluated; the message says which and why."""


def _tuples(node: Any) -> Any:
    """JSON lists back to the tuples configs hold."""
    if isinstance(node, dict):
        return {k: _tuples(v) for k, v in node.items()}
    if isinstance(node, list):
        return tuple(_tuples(v) for v in node)
    return node


def load_run_config(workdir: str):
    """The run's resolved config from ``workdir/config.json``, over ``configs/default.py`` when that file can be
    imported (run from the repository root): a run written before a field existed gets that field's default.
    ``loss.aux`` is taken as saved (its entries are the run's auxiliary losses, not defaults to merge into)."""
    import ml_collections

    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise EvaluateError(f"--workdir={workdir}: no config.json there (is it a run directory of "
                            "python -m imbalance_jax.main?)")
    with open(path) as f:
        saved = _tuples(json.load(f))
    try:
        from configs import default
    except ImportError:
        return ml_collections.ConfigDict(saved)
    config = default.get_config()

    def merge(node: ml_collections.ConfigDict, values: dict) -> None:
        for key, value in values.items():
            if key != "aux" and isinstance(value, dict) and isinstance(node.get(key), ml_collections.ConfigDict):
                merge(node[key], value)
            else:
                node[key] = ml_collections.ConfigDict(value) if isinstance(value, dict) else value

    with config.unlocked():
        merge(config, saved)
    return config


def checkpoint_location(workdir: str, checkpoint: str, max_to_keep: int):
    """(CheckpointManager, step) of ``--checkpoint``; EvaluateError naming what exists otherwise."""
    from imbalance_jax import train

    if checkpoint == "best":
        manager = train.checkpoint_manager(workdir, 1, "best_checkpoint")
    else:
        manager = train.checkpoint_manager(workdir, max_to_keep)
    steps = sorted(manager.all_steps())
    if checkpoint in ("best", "latest"):
        if not steps:
            raise EvaluateError(f"--checkpoint={checkpoint}: {manager.directory} holds no checkpoint")
        return manager, steps[-1]
    if not checkpoint.isdigit() or int(checkpoint) not in steps:
        raise EvaluateError(f"--checkpoint={checkpoint!r}: allowed: best, latest or one of the epochs kept in "
                            f"{manager.directory}: {steps}")
    return manager, int(checkpoint)


def evaluate_run(workdir: str, checkpoint: str = "best", splits: tuple[str, ...] = SPLITS,
                 command: str | None = None) -> dict:
    """Evaluates ``workdir``'s ``checkpoint`` on ``splits``; writes ``workdir/eval_<checkpoint>/``; returns its
    metrics."""
    from imbalance_jax import train
    from imbalance_jax.experiment import build_experiment

    unknown = sorted(set(splits) - set(SPLITS))
    if unknown or not splits:
        raise EvaluateError(f"--split={','.join(splits)}: allowed: a comma-separated subset of {list(SPLITS)}")
    start = time.time()
    config = load_run_config(workdir)
    exp = build_experiment(config)
    manager, step = checkpoint_location(workdir, checkpoint, int(config.checkpoint.max_to_keep))
    state, meta = train.restore_checkpoint(manager, step, train.initial_state(exp))
    progress = train.checkpoint_manager(workdir, int(config.checkpoint.max_to_keep))
    if progress.latest_step() is not None:  # the run's own progress (epochs trained, early stop), as metrics.json
        meta = train.read_meta(progress, progress.latest_step())
    _, eval_fn = train.compile_steps(exp)
    out = os.path.join(workdir, f"eval_{checkpoint}")
    os.makedirs(out, exist_ok=True)
    meta = {**meta, "evaluated_epoch": step}
    logging.info("Evaluating %s epoch %d on %s", manager.directory, step, ",".join(splits))
    # What the training loop recorded about itself (not about the evaluated state) is carried over as it was.
    run_metrics_path = os.path.join(workdir, "metrics.json")
    extra = {}
    if os.path.isfile(run_metrics_path):
        with open(run_metrics_path) as f:
            run_metrics = json.load(f)
        extra = {k: run_metrics[k] for k in LOOP_RECORDS if k in run_metrics}
    return train.evaluate_and_write(exp, eval_fn, state, out, meta=meta, start_time=start, command=command,
                                    splits=tuple(s for s in SPLITS if s in splits), extra=extra)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    set_default_xla_flags()
    import tensorflow as tf

    from imbalance_jax.compilation_cache import enable_from_environment
    from imbalance_jax.data import DatasetError
    from imbalance_jax.experiment import ConfigError

    tf.config.set_visible_devices([], "GPU")
    enable_from_environment()
    command = " ".join(["python -m imbalance_jax.evaluate", *(shlex.quote(arg) for arg in sys.argv[1:])])
    try:
        evaluate_run(FLAGS.workdir, FLAGS.checkpoint, tuple(FLAGS.split), command=command)
    except (EvaluateError, ConfigError, DatasetError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main)
