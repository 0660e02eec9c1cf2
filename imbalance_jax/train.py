"""The train state, the jitted train and eval steps, checkpoints and the epoch loop.

``train_and_evaluate(config, workdir)`` builds the run with :func:`imbalance_jax.experiment.build_experiment`,
trains (resuming from the workdir's latest checkpoint), evaluates and hands the results to
:mod:`imbalance_jax.evaluation.outputs`. Parallelism: one ``jax.jit`` over the ``('data',)`` mesh of
:mod:`imbalance_jax.parallel`, state replicated, batch sharded.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax.training import train_state
from tqdm import tqdm

from imbalance_jax import models, parallel
from imbalance_jax.data import train_batches
from imbalance_jax.evaluation import outputs, posthoc
from imbalance_jax.evaluation.evaluator import evaluate
from imbalance_jax.evaluation.metrics import confusion_matrix
from imbalance_jax.experiment import BEST_METRICS, ConfigError, Experiment, build_experiment
from imbalance_jax.models import affinity_head
from imbalance_jax.objectives import Objective

Array = jax.Array


class TrainState(train_state.TrainState):
    """Params, optimizer state and step (from flax) plus BatchNorm statistics, the dropout rng and the
    per-class loss weights (non-trainable loss state, recomputed between epochs)."""

    batch_stats: Any
    rng: Array
    class_weights: Array


# ------------------------------------------------------------------------------------------- steps
def train_step(state: TrainState, batch: Mapping[str, Array], *, model, objective: Objective,
               schedule) -> tuple[TrainState, dict[str, Array]]:
    """One optimisation step on a global batch; returns the new state and the step's metrics."""
    rng = jax.random.fold_in(state.rng, state.step)

    def loss_fn(params):
        logits, features, new_stats = models.apply_model(model, params, state.batch_stats, batch["image"],
                                                         train=True, rng=rng)
        total, terms = objective(logits, features, batch, state.class_weights, params)
        return total, (terms, new_stats, logits)

    (total, (terms, new_stats, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new_state = state.apply_gradients(grads=grads, batch_stats=new_stats)
    valid = batch["valid"].astype(jnp.float32)
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    metrics = {"loss": total, **terms, "accuracy": jnp.sum(correct * valid) / jnp.maximum(jnp.sum(valid), 1.0),
               "learning_rate": jnp.asarray(schedule(state.step), jnp.float32)}
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
                                         schedule=exp.schedule),
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


# ------------------------------------------------------------------------------------- checkpoints
def checkpoint_manager(workdir: str, max_to_keep: int, name: str = "checkpoints") -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False)
    return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, name)), options=options,
                                 item_names=("state", "meta"))


def save_checkpoint(manager: ocp.CheckpointManager, epoch: int, state: TrainState, meta: dict) -> None:
    manager.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                meta=ocp.args.JsonSave(meta)))
    manager.wait_until_finished()


def restore_checkpoint(manager: ocp.CheckpointManager, step: int, like: TrainState) -> tuple[TrainState, dict]:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                             meta=ocp.args.JsonRestore()))
    return restored["state"], restored["meta"]


def read_meta(manager: ocp.CheckpointManager, step: int) -> dict:
    """The loop's progress record (epoch, best value, early stopping) saved with checkpoint ``step``."""
    return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]


# --------------------------------------------------------------------------------------- the loop
def train_epoch(exp: Experiment, train_fn, state: TrainState, epoch: int, progress: tqdm) -> tuple[TrainState, dict]:
    step_metrics = []
    log_every = max(1, exp.steps_per_epoch // 10)
    batches = train_batches(exp.splits.train, exp.train_options, num_classes=exp.splits.num_classes,
                            sampler=exp.options.sampler, seed=exp.options.seed, epoch=epoch,
                            num_epochs=exp.options.num_epochs, extras=exp.extras["train"],
                            images_per_class=exp.options.pk_images_per_class)
    for i, batch in enumerate(batches):
        state, metrics = train_fn(state, parallel.to_global(batch, exp.data_sharding))
        step_metrics.append(metrics)
        progress.update(1)
        if i % log_every == 0:
            progress.set_postfix(epoch=epoch + 1, loss=f"{float(metrics['loss']):.4f}")
    step_metrics = jax.device_get(step_metrics)
    averages = {k: float(np.mean([m[k] for m in step_metrics])) for k in step_metrics[0]}
    return state, averages


def _is_improvement(best_metric: str, value: Optional[float], best: Optional[float]) -> bool:
    if value is None:
        return False
    if best is None:
        return True
    return value > best if BEST_METRICS[best_metric] else value < best


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, command: Optional[str] = None,
                       stop_after_epoch: Optional[int] = None) -> dict:
    """Trains ``config`` in ``workdir`` (resuming from its latest checkpoint), evaluates and writes the outputs.

    ``command`` is the command line shown in report.md. ``stop_after_epoch`` ends the process-level run right
    after that epoch's checkpoint, as an interruption would (used by the resume test); the returned dict is then
    empty. Returns the metrics written to ``metrics.json``.
    """
    start_time = time.time()
    os.makedirs(workdir, exist_ok=True)
    exp = build_experiment(config)
    opts = exp.options
    state = initial_state(exp)
    outputs.write_run_description(workdir, config, exp.splits.class_counts(), list(exp.splits.class_names))
    train_fn, eval_fn = compile_steps(exp)
    manager = checkpoint_manager(workdir, opts.max_to_keep)
    best_manager = checkpoint_manager(workdir, 1, "best_checkpoint")
    meta = {"epoch": 0, "best_value": None, "epochs_without_improvement": 0, "stopped_early": False}
    if manager.latest_step() is not None:
        state, meta = restore_checkpoint(manager, manager.latest_step(), state)
        logging.info("Resumed from %s at epoch %d", manager.directory, meta["epoch"])
    writer = outputs.MetricWriter(os.path.join(workdir, "tensorboard"))
    if meta["epoch"] == 0:
        writer.write_hparams(config)
    progress = tqdm(total=opts.num_epochs * exp.steps_per_epoch, initial=meta["epoch"] * exp.steps_per_epoch,
                    desc="train", unit="step", dynamic_ncols=True, mininterval=1.0,
                    disable=jax.process_index() != 0 or opts.disable_progress_bar, file=sys.stderr)
    while meta["epoch"] < opts.num_epochs and not meta["stopped_early"]:
        epoch = meta["epoch"]
        state, train_metrics = train_epoch(exp, train_fn, state, epoch, progress)
        val = evaluate(exp, eval_fn, state, "val") if exp.splits.val is not None else None
        test = evaluate(exp, eval_fn, state, "test")
        writer.write(epoch + 1, {**outputs.scalars("train", train_metrics),
                                 **(outputs.scalars("val", val.metrics) if val is not None else {}),
                                 **outputs.scalars("test", test.metrics)})
        new_weights = exp.weighting.weights(epoch + 1, None if val is None else val.class_accuracy)
        state = state.replace(class_weights=jax.device_put(jnp.asarray(new_weights), exp.replicated))
        val_value = None if val is None else val.metrics[opts.best_metric[len("val_"):]]
        improved = _is_improvement(opts.best_metric, val_value, meta["best_value"])
        meta = {"epoch": epoch + 1,
                "best_value": val_value if improved else meta["best_value"],
                "epochs_without_improvement": 0 if improved else meta["epochs_without_improvement"] + 1,
                "stopped_early": False}
        meta["stopped_early"] = (opts.early_stopping_patience is not None and val_value is not None
                                 and meta["epochs_without_improvement"] >= opts.early_stopping_patience)
        logging.info("epoch %d: train loss %.4f, test balanced accuracy %.4f%s", epoch + 1, train_metrics["loss"],
                     test.metrics["balanced_accuracy"],
                     "" if val is None else f", val loss {val.metrics['loss']:.4f}")
        if improved:
            save_checkpoint(best_manager, epoch + 1, state, meta)
        save_checkpoint(manager, epoch + 1, state, meta)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and meta["epoch"] < opts.num_epochs:
            progress.close()
            return {}
    progress.close()
    if opts.evaluate_best and best_manager.latest_step() is not None:
        meta["evaluated_epoch"] = best_manager.latest_step()
        state, _ = restore_checkpoint(best_manager, best_manager.latest_step(), state)
        logging.info("Evaluating the best epoch by %s: %d", opts.best_metric, best_manager.latest_step())
    return evaluate_and_write(exp, eval_fn, state, workdir, meta=meta, start_time=start_time, command=command,
                              writer=writer)


def evaluate_and_write(exp: Experiment, eval_fn, state: TrainState, workdir: str, *, meta: Mapping[str, Any],
                       start_time: float, command: Optional[str] = None, splits: tuple[str, ...] = ("train", "val", "test"),
                       writer: Optional[outputs.MetricWriter] = None) -> dict:
    """The final evaluation of ``state`` on ``splits`` (those the run has), the post-hoc corrections and every
    output file in ``workdir``; returns the metrics written to metrics.json."""
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
        data_summary=exp.splits.load_summary())


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
