"""The train state, the jitted train and eval steps and the epoch loop.

``train_and_evaluate(config, workdir)`` locks the workdir, checks the config against the one the workdir's
checkpoints were trained with (:mod:`imbalance_jax.workdir`), builds the run with
:func:`imbalance_jax.experiment.build_experiment`, trains (resuming from the newest readable checkpoint,
:mod:`imbalance_jax.checkpoints`), evaluates and hands the results to :mod:`imbalance_jax.evaluation.outputs`.
Parallelism: one ``jax.jit`` over the ``('data',)`` mesh of :mod:`imbalance_jax.parallel`, state replicated,
batch sharded.

Non-finite steps (``config.nan_policy``): the train step returns a ``nonfinite`` flag (loss or gradient not
finite). The host reads each step's flag ``NONFINITE_CHECK_LAG`` steps after dispatching it (the other metrics
once per epoch), so the device always has steps queued and the check adds no idle time; the loop stops at most
that many steps after the bad one and names it exactly. Measured on the digits small CNN (batch 32, 3-6 ms a
step, 160-step loops, 2 CPU cores shared with a background job, three runs of 15-25 repetitions): reading the
flag two steps behind was within noise of no check at all (median -12 % to +1 %), reading it right after each
step (a wait per step) cost 16-53 % in best-of-N times. With ``skip_step`` the jitted step keeps the old
parameters, optimizer and BatchNorm state for such a step (``jnp.where``; a finite step is bit-identical to
``stop``'s), and the host counts the skips.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
import sys
import time
from typing import Any, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax.training import train_state
from tqdm import tqdm

from imbalance_jax import experiment, interrupts, models, parallel, workdir as workdir_rules
from imbalance_jax.checkpoints import (checkpoint_manager, latest_step_on_disk, read_meta, restore_checkpoint,
                                       restore_latest, save_checkpoint, step_path)
from imbalance_jax.data import train_batches
from imbalance_jax.errors import CheckpointError, DivergedError, Interrupted
from imbalance_jax.evaluation import outputs, posthoc
from imbalance_jax.evaluation.evaluator import evaluate
from imbalance_jax.evaluation.metrics import confusion_matrix
from imbalance_jax.experiment import BEST_METRICS, ConfigError, Experiment, build_experiment
from imbalance_jax.models import affinity_head
from imbalance_jax.objectives import Objective

Array = jax.Array

# Steps the host lets the device run ahead before it reads a step's metrics (the non-finite check).
NONFINITE_CHECK_LAG = 2


class TrainState(train_state.TrainState):
    """Params, optimizer state and step (from flax) plus BatchNorm statistics, the dropout rng and the
    per-class loss weights (non-trainable loss state, recomputed between epochs)."""

    batch_stats: Any
    rng: Array
    class_weights: Array


# ------------------------------------------------------------------------------------------- steps
def _all_finite(tree: Any) -> Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def train_step(state: TrainState, batch: Mapping[str, Array], *, model, objective: Objective,
               schedule, skip_nonfinite: bool = False) -> tuple[TrainState, dict[str, Array]]:
    """One optimisation step on a global batch; returns the new state and the step's metrics, among them
    ``nonfinite`` (1.0 when the loss or a gradient is NaN/inf). ``skip_nonfinite``: such a step leaves params,
    optimizer state and BatchNorm statistics as they were (the step counter still advances)."""
    rng = jax.random.fold_in(state.rng, state.step)

    def loss_fn(params):
        logits, features, new_stats = models.apply_model(model, params, state.batch_stats, batch["image"],
                                                         train=True, rng=rng)
        total, terms = objective(logits, features, batch, state.class_weights, params)
        return total, (terms, new_stats, logits)

    (total, (terms, new_stats, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    finite = jnp.isfinite(total) & _all_finite(grads)
    new_state = state.apply_gradients(grads=grads, batch_stats=new_stats)
    if skip_nonfinite:
        kept = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, state)
        new_state = kept.replace(step=new_state.step)
    valid = batch["valid"].astype(jnp.float32)
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    metrics = {"loss": total, **terms, "accuracy": jnp.sum(correct * valid) / jnp.maximum(jnp.sum(valid), 1.0),
               "learning_rate": jnp.asarray(schedule(state.step), jnp.float32),
               "nonfinite": 1.0 - finite.astype(jnp.float32)}
    return new_state, metrics


def eval_step(state: TrainState, batch: Mapping[str, Array], *, model, num_classes: int,
              embedding_layer: str) -> dict[str, Array]:
    """Confusion matrix, summed plain cross-entropy, the logits and the embedding of one (padded) global batch."""
    logits, features, _ = models.apply_model(model, state.params, state.batch_stats, batch["image"], train=False)
    valid = batch["valid"]
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32))
    nll = -jnp.take_along_axis(log_p, batch["label"][:, None], axis=-1)[:, 0]
    return {"confusion": confusion_matrix(batch["label"], jnp.argmax(logits, -1), num_classes, valid),
            "loss_sum": jnp.sum(jnp.where(valid, nll, 0.0)),
            "count": jnp.sum(valid.astype(jnp.int32)),
            "logits": logits.astype(jnp.float32),
            "embedding": features[embedding_layer].astype(jnp.float32)}


def compile_eval_step(exp: Experiment, model=None):
    """The jitted eval step of ``model`` (default ``exp.model``; e.g. a TDE model with another alpha)."""
    return jax.jit(functools.partial(eval_step, model=model or exp.model, num_classes=exp.splits.num_classes,
                                     embedding_layer=exp.options.embedding_layer),
                   in_shardings=(exp.replicated, exp.data_sharding),
                   out_shardings={"confusion": exp.replicated, "loss_sum": exp.replicated, "count": exp.replicated,
                                  "logits": exp.data_sharding, "embedding": exp.data_sharding})


def compile_steps(exp: Experiment):
    """The jitted train and eval steps with their shardings (state donated to the train step)."""
    train_fn = jax.jit(functools.partial(train_step, model=exp.model, objective=exp.objective,
                                         schedule=exp.schedule,
                                         skip_nonfinite=exp.options.nan_policy == "skip_step"),
                       in_shardings=(exp.replicated, exp.data_sharding),
                       out_shardings=(exp.replicated, exp.replicated), donate_argnums=0)
    return train_fn, compile_eval_step(exp)


# ------------------------------------------------------------------------------------------- state
def initial_state(exp: Experiment) -> TrainState:
    """Initialises the model on one dummy example, replicated over the mesh; then the pretrained weights and the
    affinity prototypes when configured."""
    rng = jax.random.PRNGKey(exp.options.seed)
    init_rng, dropout_rng, state_rng = jax.random.split(rng, 3)
    dummy = jnp.zeros((1,) + exp.splits.image_shape, jnp.float32)
    class_weights = jnp.asarray(exp.weighting.weights(0))

    def init():
        variables = exp.model.init({"params": init_rng, "dropout": dropout_rng}, dummy, train=False)
        return TrainState.create(apply_fn=exp.model.apply, params=variables["params"], tx=exp.tx,
                                 batch_stats=variables.get("batch_stats", {}), rng=state_rng,
                                 class_weights=class_weights)

    state = jax.jit(init, out_shardings=exp.replicated)()
    if exp.options.pretrained_path:
        try:
            variables = models.load_pretrained({"params": state.params, "batch_stats": state.batch_stats},
                                               exp.options.pretrained_path, prefix=exp.options.pretrained_prefix,
                                               strict=exp.options.pretrained_strict)
        except (ValueError, FileNotFoundError) as e:  # load_pretrained names config.model.pretrained_path
            raise ConfigError(str(e)) from None
        state = state.replace(params=variables["params"], batch_stats=variables["batch_stats"])
    return init_affinity_prototypes(exp, state)


def init_affinity_prototypes(exp: Experiment, state: TrainState) -> TrainState:
    """``config.model.affinity.prototype_init="class_means"``: each prototype of the affinity head becomes the
    mean classifier input of a few training images of its class under the initial (or pretrained) network,
    so prototypes and features start at the same scale (``models.affinity_head.class_mean_prototypes``)."""
    if exp.options.prototype_init != "class_means":
        return state
    sample, groups, mask = affinity_head.prototype_groups(
        exp.splits.train.labels, exp.splits.num_classes, exp.options.num_centres,
        np.random.default_rng([exp.options.seed, 5]))
    images = (exp.splits.train.read(sample).astype(np.float32) / 255.0 - exp.splits.mean) / exp.splits.std
    images = jax.make_array_from_process_local_data(exp.replicated, images)

    def with_prototypes(params, batch_stats, images):
        _, features, _ = models.apply_model(exp.model, params, batch_stats, images, train=False)
        node, *path = affinity_head.PROTOTYPES_PATH
        initial = params[node][path[0]]
        prototypes = affinity_head.class_mean_prototypes(features["classifier_input"], jnp.asarray(groups),
                                                         jnp.asarray(mask), initial)
        return {**params, node: {**params[node], path[0]: prototypes}}

    params = jax.jit(with_prototypes, out_shardings=exp.replicated)(state.params, state.batch_stats, images)
    return state.replace(params=params)


# --------------------------------------------------------------------------------------- the loop
_INITIAL_META = {"epoch": 0, "best_value": None, "epochs_without_improvement": 0, "stopped_early": False,
                 "skipped_steps": 0, "notes": []}
_STALE_OUTPUTS = ("metrics.json", "report.md")  # final outputs of an earlier, shorter state of the run


class _NonFinite(Exception):
    """A step with a non-finite loss or gradient that ends the run (raised in :func:`train_epoch`)."""

    def __init__(self, step: int, batch: int, values: Mapping[str, float], consecutive: int):
        super().__init__(step)
        self.step, self.batch, self.values, self.consecutive = step, batch, dict(values), consecutive


@dataclasses.dataclass
class _StepWatch:
    """The host side of ``config.nan_policy``: looks at each step's metrics once they are on the host."""

    policy: str  # experiment.NAN_POLICIES
    max_consecutive: int  # skip_step: this many skipped steps in a row end the run
    skipped: int = 0  # skipped steps of the whole run (kept in the checkpoints' meta)
    consecutive: int = 0

    def check(self, step: int, batch: int, metrics: Mapping[str, Array]) -> None:
        """Reads the step's ``nonfinite`` flag (a wait for that step only); the other metrics stay on the device
        unless the step was non-finite. Raises _NonFinite when the run must stop."""
        if not float(metrics["nonfinite"]):
            self.consecutive = 0
            return
        values = {k: float(v) for k, v in jax.device_get(dict(metrics)).items()}
        if self.policy == "stop":
            raise _NonFinite(step, batch, values, 0)
        self.skipped += 1
        self.consecutive += 1
        if self.consecutive >= self.max_consecutive:
            raise _NonFinite(step, batch, values, self.consecutive)


def train_epoch(exp: Experiment, train_fn, state: TrainState, epoch: int, progress: tqdm,
                watch: Optional[_StepWatch] = None) -> tuple[TrainState, dict]:
    """One epoch. Each step's ``nonfinite`` flag is read ``NONFINITE_CHECK_LAG`` steps after the step was
    dispatched, by ``watch`` (which raises at a non-finite step); the other metrics come to the host once, at the
    end. Returns the state and the epoch's mean metrics over the steps that were not skipped, with their
    ``skipped_steps``."""
    watch = watch or _StepWatch(exp.options.nan_policy, exp.options.nan_max_consecutive_skips)
    step_metrics: list[Mapping[str, Array]] = []
    log_every = max(1, exp.steps_per_epoch // 10)
    batches = train_batches(exp.splits.train, exp.train_options, num_classes=exp.splits.num_classes,
                            sampler=exp.options.sampler, seed=exp.options.seed, epoch=epoch,
                            num_epochs=exp.options.num_epochs, extras=exp.extras["train"],
                            images_per_class=exp.options.pk_images_per_class)
    pending: collections.deque = collections.deque()

    def look_at(index: int, metrics: Mapping[str, Array]) -> None:
        watch.check(epoch * exp.steps_per_epoch + index + 1, index + 1, metrics)
        step_metrics.append(metrics)
        if index % log_every == 0:
            progress.set_postfix(epoch=epoch + 1, loss=f"{float(metrics['loss']):.4f}")

    for i, batch in enumerate(parallel.prefetch_to_mesh(batches, exp.data_sharding, exp.options.device_prefetch)):
        interrupts.check()
        state, metrics = train_fn(state, batch)
        progress.update(1)
        pending.append((i, metrics))
        if len(pending) > NONFINITE_CHECK_LAG:
            look_at(*pending.popleft())
    while pending:
        look_at(*pending.popleft())
    step_metrics = jax.device_get(step_metrics)
    kept = [m for m in step_metrics if not m["nonfinite"]]
    averages: dict[str, Any] = {k: float(np.mean([m[k] for m in kept])) if kept else None
                                for k in step_metrics[0] if k != "nonfinite"}
    averages["skipped_steps"] = len(step_metrics) - len(kept)
    return state, averages


def _is_improvement(best_metric: str, value: Optional[float], best: Optional[float]) -> bool:
    if value is None:
        return False
    if best is None:
        return True
    return value > best if BEST_METRICS[best_metric] else value < best


def _log(progress: tqdm, text: str) -> None:
    """A log line that does not land inside the progress bar (above it while the bar is shown)."""
    if progress.disable:
        logging.info("%s", text)
    else:
        progress.write(text, file=sys.stderr)


def _divergence_message(bad: _NonFinite, epoch: int, exp: Experiment, manager) -> str:
    """One line: where the run went non-finite in (0-based) ``epoch``, which loss terms, the last good checkpoint
    (the one of the epoch before) and the ways out."""
    terms = {k: v for k, v in bad.values.items() if k.endswith("_loss")}
    named = [f"{k}={v}" for k, v in terms.items() if not np.isfinite(v)]
    if not named and not np.isfinite(bad.values["loss"]):
        named = [f"loss={bad.values['loss']}"]
    what = ("non-finite " + ", ".join(named)) if named else "a non-finite gradient (every loss term finite)"
    where = f"step {bad.step} (epoch {epoch + 1}, batch {bad.batch} of {exp.steps_per_epoch})"
    if bad.consecutive:
        head = (f"{bad.consecutive} steps in a row were skipped (config.nan_max_consecutive_skips="
                f"{exp.options.nan_max_consecutive_skips}), the last at {where} with {what}")
    else:
        head = f"{what} at {where}"
    last = (f"the last good checkpoint is epoch {epoch} ({step_path(manager, epoch)})" if epoch
            else "no checkpoint was saved before it")
    ways = "Lower --config.optimizer.learning_rate or set --config.optimizer.grad_clip_norm"
    if not bad.consecutive:
        ways += ", or skip such steps with --config.nan_policy=skip_step"
    return f"training diverged: {head}; {last}. {ways}"


def interrupted_message(workdir: str) -> str:
    """What Ctrl-C prints: the epoch a rerun of the same command resumes from."""
    try:
        step = latest_step_on_disk(workdir)
    except Exception:  # noqa: BLE001 - the message must not fail; the rerun validates the checkpoints anyway
        step = None
    if step is None:
        return f"interrupted before the first checkpoint; rerun the same command to start the run in {workdir} over"
    return (f"interrupted; rerun the same command to resume from epoch {step} "
            f"(checkpoint {os.path.join(workdir, 'checkpoints', str(step))})")


def _check_config_against_workdir(config: ml_collections.ConfigDict, workdir: str,
                                  manager) -> tuple[list[dict], Optional[dict]]:
    """The workdir guard: compares ``config`` with the config the workdir's checkpoints were trained with
    (WorkdirError when a field that changes the computation differs, unless config.allow_config_change).
    Runs before the data is loaded, so a wrong workdir is refused at once. Returns the run's accepted config
    changes (this one included) and the one accepted now (or None)."""
    steps = manager.all_steps()
    if not steps:
        return [], None  # nothing trained yet: the run starts over under this config
    trained = max(steps)
    record = workdir_rules.read_record(workdir)
    if record is None:
        logging.warning("%s has checkpoints but neither %s nor %s: cannot compare the config with theirs",
                        workdir, workdir_rules.FINGERPRINT_FILE, workdir_rules.CONFIG_FILE)
        return [], None
    changes = experiment.computation_changes(experiment.flatten_config(record.config), config, trained)
    accepted = workdir_rules.accept_changes(workdir, changes, trained_epochs=trained,
                                            allow=config.allow_config_change, source=record.source)
    return record.changes + ([accepted] if accepted else []), accepted


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, command: Optional[str] = None,
                       stop_after_epoch: Optional[int] = None) -> dict:
    """Trains ``config`` in ``workdir`` (resuming from its newest readable checkpoint), evaluates and writes the
    outputs.

    ``command`` is the command line shown in report.md. ``stop_after_epoch`` ends the process-level run right
    after that epoch's checkpoint, as an interruption would (used by the resume test); the returned dict is then
    empty. Returns the metrics written to ``metrics.json``. Raises ConfigError / DatasetError (the config or the
    data), WorkdirError (another process in the workdir, or a run of another config), CheckpointError,
    DivergedError and, on Ctrl-C, Interrupted: each with a one-line message.
    """
    start_time = time.time()
    os.makedirs(workdir, exist_ok=True)
    try:
        with interrupts.graceful(), workdir_rules.locked(workdir, enabled=jax.process_index() == 0):
            return _train_and_evaluate(config, workdir, command, stop_after_epoch, start_time)
    except KeyboardInterrupt as e:
        if isinstance(e, Interrupted):
            raise
        raise Interrupted(interrupted_message(workdir)) from None


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, command: Optional[str],
                        stop_after_epoch: Optional[int], start_time: float) -> dict:
    experiment.check_required_fields(config)  # what the workdir guard reads, before it reads it
    manager = checkpoint_manager(workdir, int(config.checkpoint.max_to_keep))
    config_changes, accepted = _check_config_against_workdir(config, workdir, manager)
    exp = build_experiment(config)
    opts = exp.options
    best_manager = checkpoint_manager(workdir, 1, "best_checkpoint")
    state = initial_state(exp)
    meta = {**_INITIAL_META, "notes": []}
    restored = restore_latest(manager, state, workdir)
    if restored is not None:
        state, meta = restored.state, {**_INITIAL_META, **restored.meta}
        meta["notes"] = list(meta["notes"]) + restored.fallbacks
        logging.info("Resumed from %s at epoch %d", step_path(manager, restored.step), meta["epoch"])
    if accepted is not None:
        logging.warning("%s: %s", workdir, workdir_rules.describe_change(accepted))
    # Only now, with the config accepted and the checkpoint fitting it, does the workdir describe this config.
    if jax.process_index() == 0:
        workdir_rules.write_fingerprint(workdir, experiment.flatten_config(config),
                                        experiment.config_digest(config), config_changes)
    outputs.write_run_description(workdir, config, exp.splits.class_counts(), list(exp.splits.class_names),
                                  config_changes=config_changes)
    if meta["epoch"] < opts.num_epochs and not meta["stopped_early"] and jax.process_index() == 0:
        for name in _STALE_OUTPUTS:
            if os.path.exists(os.path.join(workdir, name)):
                os.remove(os.path.join(workdir, name))
                logging.info("Removed %s of epoch %d: the run goes on to epoch %d and writes a new one",
                             name, meta["epoch"], opts.num_epochs)
    interrupts.check()
    train_fn, eval_fn = compile_steps(exp)
    writer = outputs.MetricWriter(os.path.join(workdir, "tensorboard"))
    if meta["epoch"] == 0:
        writer.write_hparams(config)
    progress = tqdm(total=opts.num_epochs * exp.steps_per_epoch, initial=meta["epoch"] * exp.steps_per_epoch,
                    desc="train", unit="step", dynamic_ncols=True, mininterval=1.0,
                    disable=jax.process_index() != 0 or opts.disable_progress_bar, file=sys.stderr)
    watch = _StepWatch(opts.nan_policy, opts.nan_max_consecutive_skips, skipped=int(meta["skipped_steps"]))
    try:
        while meta["epoch"] < opts.num_epochs and not meta["stopped_early"]:
            epoch = meta["epoch"]
            try:
                state, train_metrics = train_epoch(exp, train_fn, state, epoch, progress, watch)
            except _NonFinite as bad:
                progress.close()
                message = _divergence_message(bad, epoch, exp, manager)
                outputs.write_diverged_report(
                    workdir, config=config, class_counts=exp.splits.class_counts(),
                    class_names=list(exp.splits.class_names), message=message,
                    notes=_run_notes(config_changes, meta, watch.skipped), wall_time=time.time() - start_time,
                    command=command)
                raise DivergedError(message) from None
            val = evaluate(exp, eval_fn, state, "val") if exp.splits.val is not None else None
            test = evaluate(exp, eval_fn, state, "test")
            writer.write(epoch + 1, {**outputs.scalars("train", train_metrics),
                                     **_class_weight_scalars(exp, state),
                                     **(outputs.scalars("val", val.metrics) if val is not None else {}),
                                     **outputs.scalars("test", test.metrics)})
            new_weights = exp.weighting.weights(epoch + 1, None if val is None else val.class_accuracy)
            state = state.replace(class_weights=jax.device_put(jnp.asarray(new_weights), exp.replicated))
            val_value = None if val is None else val.metrics[opts.best_metric[len("val_"):]]
            improved = _is_improvement(opts.best_metric, val_value, meta["best_value"])
            meta = {**meta, "epoch": epoch + 1,
                    "best_value": val_value if improved else meta["best_value"],
                    "epochs_without_improvement": 0 if improved else meta["epochs_without_improvement"] + 1,
                    "skipped_steps": watch.skipped}
            meta["stopped_early"] = (opts.early_stopping_patience is not None and val_value is not None
                                     and meta["epochs_without_improvement"] >= opts.early_stopping_patience)
            train_loss = "n/a" if train_metrics["loss"] is None else f"{train_metrics['loss']:.4f}"
            skipped = f", {train_metrics['skipped_steps']} steps skipped" if train_metrics["skipped_steps"] else ""
            _log(progress, f"epoch {epoch + 1}: train loss {train_loss}, test balanced accuracy "
                           f"{test.metrics['balanced_accuracy']:.4f}"
                           + ("" if val is None else f", val loss {val.metrics['loss']:.4f}") + skipped)
            if improved:
                save_checkpoint(best_manager, epoch + 1, state, meta)
            save_checkpoint(manager, epoch + 1, state, meta)
            interrupts.check()
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and meta["epoch"] < opts.num_epochs:
                return {}
    finally:
        progress.close()
    interrupts.check()
    if opts.evaluate_best and best_manager.latest_step() is not None:
        try:
            best = restore_latest(best_manager, state, workdir)
        except CheckpointError as e:
            note = f"the best checkpoint cannot be used ({e}); evaluated the state of epoch {meta['epoch']} instead"
            logging.warning("%s", note)
            meta["notes"] = meta["notes"] + [note]
        else:
            if best is not None:
                meta["notes"] = meta["notes"] + best.fallbacks
                meta["evaluated_epoch"] = best.step
                state = best.state
                logging.info("Evaluating the best epoch by %s: %d", opts.best_metric, best.step)
    extra: dict[str, Any] = {"skipped_steps": watch.skipped}
    if config_changes:
        extra["config_changes"] = config_changes
    if meta["notes"]:
        extra["run_notes"] = meta["notes"]
    return evaluate_and_write(exp, eval_fn, state, workdir, meta=meta, start_time=start_time, command=command,
                              writer=writer, notes=_run_notes(config_changes, meta, watch.skipped), extra=extra)


def _class_weight_scalars(exp: Experiment, state: TrainState) -> dict[str, float]:
    """The per-class loss weights the epoch trained with, as ``train/class_weight/<class>`` (none when unweighted):
    CDB's weights follow the validation accuracy and DRW's switch on, so they are part of the training curves."""
    if exp.weighting.name == "none":
        return {}
    weights = np.asarray(state.class_weights.addressable_data(0), np.float64)  # replicated: any local copy
    return {f"train/class_weight/{c}": float(w) for c, w in enumerate(weights)}


def _run_notes(config_changes: list[dict], meta: Mapping[str, Any], skipped: int) -> list[str]:
    """The report's "Run notes": accepted config changes, checkpoint fall-backs, skipped steps."""
    notes = [workdir_rules.describe_change(change) for change in config_changes] + list(meta["notes"])
    if skipped:
        notes.append(f"{skipped} training step(s) had a non-finite loss or gradient and were skipped "
                     "(config.nan_policy='skip_step')")
    return notes


def evaluate_and_write(exp: Experiment, eval_fn, state: TrainState, workdir: str, *, meta: Mapping[str, Any],
                       start_time: float, command: Optional[str] = None,
                       splits: tuple[str, ...] = ("train", "val", "test"),
                       writer: Optional[outputs.MetricWriter] = None, notes: Sequence[str] = (),
                       extra: Optional[Mapping[str, Any]] = None) -> dict:
    """The final evaluation of ``state`` on ``splits`` (those the run has), the post-hoc corrections and every
    output file in ``workdir``; ``notes`` (report.md's "Run notes") and ``extra`` (more metrics.json entries) come
    from the loop. Returns the metrics written to metrics.json."""
    results = {name: evaluate(exp, eval_fn, state, name, collect_embedding=True)
               for name in splits if getattr(exp.splits, name) is not None}
    tde = tde_alpha_sweep(exp, state)
    return outputs.write_final_outputs(
        workdir, config=exp.config, results=results, class_counts=exp.splits.class_counts(),
        class_names=list(exp.splits.class_names), embedding_layer=exp.options.embedding_layer, meta=meta,
        wall_time=time.time() - start_time, command=command,
        shot_thresholds={"many_shot_threshold": exp.options.many_shot_threshold,
                         "few_shot_threshold": exp.options.few_shot_threshold},
        extra_posthoc={"tde_alpha": tde} if tde else None, writer=writer, warnings=exp.warnings,
        data_summary=exp.splits.load_summary(), notes=notes, extra=extra)


# TDE's counterfactual strength alpha only enters inference (Tang et al. 2020, §4.2): swept without retraining.
TDE_ALPHAS: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)


def tde_alpha_sweep(exp: Experiment, state: TrainState) -> Optional[dict]:
    """For a TDE classifier with a validation split: val/test metrics for every alpha of ``TDE_ALPHAS``, alpha
    chosen by validation balanced accuracy (``posthoc.sweep_choice``); None otherwise."""
    if exp.model.classifier != "tde" or exp.splits.val is None:
        return None
    per_alpha = {}
    for alpha in TDE_ALPHAS:
        eval_fn = compile_eval_step(exp, exp.model.clone(tde_alpha=alpha))
        per_alpha[alpha] = {split: evaluate(exp, eval_fn, state, split).metrics for split in ("val", "test")}
    alpha = posthoc.sweep_choice({a: m["val"]["balanced_accuracy"] for a, m in per_alpha.items()})
    return {"alpha": alpha, "selected_on": "val",
            "grid": {split: {f"{a:g}": m[split]["balanced_accuracy"] for a, m in per_alpha.items()}
                     for split in ("val", "test")},
            "metrics": {split: {k: per_alpha[alpha][split][k] for k in posthoc.REPORTED} for split in ("val", "test")}}
