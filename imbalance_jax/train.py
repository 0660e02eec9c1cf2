"""Train state, jitted data-parallel train/eval steps, the epoch loop, checkpoints and run outputs.

Parallelism (DESIGN.md §2): one ``jax.jit`` over a 1-D ``('data',)`` mesh; the state is replicated,
the batch is sharded along ``data``. The auxiliary pair/triplet losses therefore see the global
batch, and a run gives the same numbers on 1 or N devices up to float tolerance.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import time
from typing import Any, Iterator, Mapping, Optional

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import tensorflow as tf
from absl import logging
from flax.training import train_state
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm import tqdm

from imbalance_jax import models, objectives, optim
from imbalance_jax.config_validation import ConfigError, check_batch_divisible, validate_config
from imbalance_jax.data import DataSplits, PipelineOptions, build_splits, colour_histogram, eval_batches, train_batches
from imbalance_jax.data.pipeline import steps_per_epoch as count_steps
from imbalance_jax.evaluation import (classification_metrics, confusion_matrix, format_metrics_table,
                                      imbalance_statistics, plot_confusion_matrix, plot_embedding, write_report)

Array = jax.Array


class TrainState(train_state.TrainState):
    """Params, optimizer state and step (from flax) plus BatchNorm statistics, the dropout rng and the
    per-class loss weights (non-trainable loss state, recomputed between epochs)."""

    batch_stats: Any
    rng: Array
    class_weights: Array


# ------------------------------------------------------------------------------------------ devices
def create_mesh(num_devices: int = 0) -> Mesh:
    """A 1-D ``('data',)`` mesh over all devices (``num_devices`` = 0) or the first ``num_devices``."""
    devices = jax.devices()
    if num_devices:
        if num_devices > len(devices):
            raise ConfigError(f"config.num_devices={num_devices} but only {len(devices)} devices are available")
        if jax.process_count() > 1:
            raise ConfigError("config.num_devices must be 0 (all devices) in a multi-host run")
        devices = devices[:num_devices]
    return Mesh(np.asarray(devices), ("data",))


def to_global(batch: Mapping[str, np.ndarray], sharding: NamedSharding) -> dict[str, Array]:
    """Per-process local batch → global arrays sharded along the batch axis."""
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


def fetch(x: Array) -> np.ndarray:
    """A (possibly multi-host sharded) array as a full numpy array on every host."""
    if jax.process_count() > 1:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


# ------------------------------------------------------------------------------------------- steps
def apply_model(model, state_or_params, batch_stats, images, *, train: bool, rng: Optional[Array] = None):
    variables = {"params": state_or_params}
    if batch_stats:
        variables["batch_stats"] = batch_stats
    if train:
        (logits, features), new_vars = model.apply(variables, images, train=True, rngs={"dropout": rng},
                                                   mutable=["batch_stats"])
        return logits, features, new_vars.get("batch_stats", batch_stats)
    logits, features = model.apply(variables, images, train=False)
    return logits, features, batch_stats


def train_step(state: TrainState, batch: Mapping[str, Array], *, model, objective: objectives.Objective,
               schedule) -> tuple[TrainState, dict[str, Array]]:
    """One optimisation step on a global batch; returns the new state and the step's metrics."""
    rng = jax.random.fold_in(state.rng, state.step)

    def loss_fn(params):
        logits, features, new_stats = apply_model(model, params, state.batch_stats, batch["image"], train=True,
                                                  rng=rng)
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
    """Confusion matrix, summed plain cross-entropy and the embedding of one (padded) global batch."""
    logits, features, _ = apply_model(model, state.params, state.batch_stats, batch["image"], train=False)
    valid = batch["valid"]
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32))
    nll = -jnp.take_along_axis(log_p, batch["label"][:, None], axis=-1)[:, 0]
    return {"confusion": confusion_matrix(batch["label"], jnp.argmax(logits, -1), num_classes, valid),
            "loss_sum": jnp.sum(jnp.where(valid, nll, 0.0)),
            "count": jnp.sum(valid.astype(jnp.int32)),
            "embedding": features[embedding_layer].astype(jnp.float32)}


# ------------------------------------------------------------------------------------- experiment
@dataclasses.dataclass
class Experiment:
    """Everything built once at start-up from the config."""

    config: ml_collections.ConfigDict
    splits: DataSplits
    mesh: Mesh
    model: Any
    objective: objectives.Objective
    weighting: objectives.ClassWeighting
    tx: optax.GradientTransformation
    schedule: Any
    steps_per_epoch: int
    train_options: PipelineOptions
    eval_options: PipelineOptions
    extras: dict[str, dict[str, np.ndarray]]

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    @property
    def data_sharding(self) -> NamedSharding:
        return NamedSharding(self.mesh, P("data"))


def _pipeline_options(config, splits: DataSplits, batch_size: int, train: bool) -> PipelineOptions:
    aug = config.data.get("augment", ml_collections.ConfigDict())
    return PipelineOptions(global_batch_size=batch_size, mean=splits.mean, std=splits.std,
                           process_index=jax.process_index(), process_count=jax.process_count(),
                           crop_padding=int(aug.get("crop_padding", 0)) if train else 0,
                           flip=bool(aug.get("flip", False)) if train else False)


def _split_extras(splits: DataSplits, fields: set[str]) -> dict[str, dict[str, np.ndarray]]:
    """Per-example arrays the objective needs besides image/label, computed from the un-augmented images."""
    extras: dict[str, dict[str, np.ndarray]] = {"train": {}, "val": {}, "test": {}}
    if "colour_hist" in fields:
        for name in extras:
            split = getattr(splits, name)
            if split is not None:
                extras[name]["colour_hist"] = np.stack([colour_histogram(img) for img in split.images])
    return extras


def build_experiment(config: ml_collections.ConfigDict) -> Experiment:
    mesh = create_mesh(int(config.get("num_devices", 0)))
    validate_config(config, mesh.size, jax.process_count())
    splits = build_splits(config.data, int(config.seed))
    counts = np.bincount(splits.train.labels, minlength=splits.num_classes)
    if len(splits.train) < config.batch_size:
        raise ConfigError(f"config.batch_size={config.batch_size} is larger than the training set "
                          f"({len(splits.train)} images after the imbalance); use at most {len(splits.train)}")
    try:
        objective = objectives.build_objective(config.loss, counts)
        weighting = objectives.build_class_weighting(config.loss, counts)
    except objectives.ObjectiveConfigError as e:
        raise ConfigError(str(e)) from None
    if weighting.name == "cdb" and splits.val is None:
        raise ConfigError("config.loss.class_weighting.name='cdb' needs a balanced validation set: set "
                          "config.data.val_per_class (e.g. 25) or config.data.val_fraction")
    steps = count_steps(len(splits.train), config.batch_size)
    tx, schedule = optim.create_optimizer(config.optimizer, steps, int(config.num_epochs))
    try:
        model = models.create_model(config.model, splits.num_classes)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return Experiment(config, splits, mesh, model, objective, weighting, tx, schedule, steps,
                      _pipeline_options(config, splits, config.batch_size, True),
                      _pipeline_options(config, splits, config.eval_batch_size, False),
                      _split_extras(splits, objective.batch_fields))


def initial_state(exp: Experiment) -> TrainState:
    """Initialises the model on one dummy example and replicates the state over the mesh."""
    rng = jax.random.PRNGKey(int(exp.config.seed))
    init_rng, dropout_rng, state_rng = jax.random.split(rng, 3)
    dummy = jnp.zeros((1,) + exp.splits.image_shape, jnp.float32)
    class_weights = jnp.asarray(exp.weighting.weights(0))

    def init():
        variables = exp.model.init({"params": init_rng, "dropout": dropout_rng}, dummy, train=False)
        return TrainState.create(apply_fn=exp.model.apply, params=variables["params"], tx=exp.tx,
                                 batch_stats=variables.get("batch_stats", {}), rng=state_rng,
                                 class_weights=class_weights)

    state = jax.jit(init, out_shardings=exp.replicated)()
    path = exp.config.model.get("pretrained_path", "")
    if path:
        try:
            variables = models.load_pretrained({"params": state.params, "batch_stats": state.batch_stats}, path,
                                               prefix=exp.config.model.get("pretrained_prefix", "backbone"),
                                               strict=bool(exp.config.model.get("pretrained_strict", True)))
        except (ValueError, FileNotFoundError) as e:
            raise ConfigError(str(e)) from None
        state = state.replace(params=variables["params"], batch_stats=variables["batch_stats"])
    return init_affinity_prototypes(exp, state)


def init_affinity_prototypes(exp: Experiment, state: TrainState) -> TrainState:
    """``config.model.affinity.prototype_init="class_means"``: each prototype of the affinity head becomes the
    mean classifier input of a few training images of its class under the initial (or pretrained) network,
    so prototypes and features start at the same scale (``models.affinity_head.class_mean_prototypes``)."""
    model_config = exp.config.model
    if model_config.classifier != "affinity" or model_config.affinity.prototype_init != "class_means":
        return state
    from imbalance_jax.models import affinity_head

    sample, groups, mask = affinity_head.prototype_groups(
        exp.splits.train.labels, exp.splits.num_classes, int(model_config.affinity.num_centres),
        np.random.default_rng([int(exp.config.seed), 5]))
    images = (exp.splits.train.images[sample].astype(np.float32) / 255.0 - exp.splits.mean) / exp.splits.std
    images = jax.make_array_from_process_local_data(exp.replicated, images)

    def with_prototypes(params, batch_stats, images):
        _, features, _ = apply_model(exp.model, params, batch_stats, images, train=False)
        initial = params["classifier"]["prototypes"]
        prototypes = affinity_head.class_mean_prototypes(features["classifier_input"], jnp.asarray(groups),
                                                         jnp.asarray(mask), initial)
        return {**params, "classifier": {**params["classifier"], "prototypes": prototypes}}

    params = jax.jit(with_prototypes, out_shardings=exp.replicated)(state.params, state.batch_stats, images)
    return state.replace(params=params)


def check_model_and_objective(exp: Experiment, state: TrainState) -> None:
    """Every layer the objective or the embedding plot reads must be a feature the model returns, and the
    objective must accept its options: both checked by tracing (no compute) before training starts."""
    batch = {"image": jax.ShapeDtypeStruct((2,) + exp.splits.image_shape, jnp.float32),
             "label": jax.ShapeDtypeStruct((2,), jnp.int32), "valid": jax.ShapeDtypeStruct((2,), jnp.bool_)}
    for name, values in exp.extras["train"].items():
        batch[name] = jax.ShapeDtypeStruct((2,) + values.shape[1:], jnp.float32)
    logits, features, _ = jax.eval_shape(
        lambda p, s, x: apply_model(exp.model, p, s, x, train=False), state.params, state.batch_stats, batch["image"])
    for term in exp.objective.aux:
        for layer in term.layers:
            if layer not in features:
                raise ConfigError(f"config.loss.aux.{term.name}.layers: {layer!r} is not a feature of model "
                                  f"{exp.config.model.name!r}; allowed: {sorted(features)}")
    layer = embedding_layer(exp.config)
    if layer not in features:
        raise ConfigError(f"config.evaluation.embedding_layer={layer!r}; allowed: {sorted(features)}")
    checks = [("config.loss", lambda z, f, b: exp.objective.classification(z, b["label"], b["valid"],
                                                                           state.class_weights))]
    checks += [(f"config.loss.aux.{t.name}", lambda z, f, b, t=t: t(f, b, state.params)) for t in exp.objective.aux]
    for field, check in checks:
        try:
            jax.eval_shape(check, logits, features, batch)
        except KeyError as e:
            raise ConfigError(f"{field}: the model has no parameter {e}; the affinity loss needs "
                              "config.model.classifier='affinity'") from None
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{field}: {e}") from None


def embedding_layer(config: ml_collections.ConfigDict) -> str:
    return config.get("evaluation", ml_collections.ConfigDict()).get("embedding_layer", "head_last")


def compile_steps(exp: Experiment):
    """The jitted train and eval steps with their shardings (state donated to the train step)."""
    train_fn = jax.jit(functools.partial(train_step, model=exp.model, objective=exp.objective,
                                         schedule=exp.schedule),
                       in_shardings=(exp.replicated, exp.data_sharding),
                       out_shardings=(exp.replicated, exp.replicated), donate_argnums=0)
    eval_fn = jax.jit(functools.partial(eval_step, model=exp.model, num_classes=exp.splits.num_classes,
                                        embedding_layer=embedding_layer(exp.config)),
                      in_shardings=(exp.replicated, exp.data_sharding),
                      out_shardings={"confusion": exp.replicated, "loss_sum": exp.replicated,
                                     "count": exp.replicated, "embedding": exp.data_sharding})
    return train_fn, eval_fn


# -------------------------------------------------------------------------------------- evaluation
@dataclasses.dataclass
class EvalResult:
    metrics: dict
    confusion: np.ndarray
    embedding: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None

    @property
    def class_accuracy(self) -> np.ndarray:
        rows = self.confusion.sum(1)
        return np.diag(self.confusion) / np.maximum(rows, 1)


def evaluate(exp: Experiment, eval_fn, state: TrainState, split_name: str, *,
             collect_embedding: bool = False) -> EvalResult:
    split = getattr(exp.splits, split_name)
    outputs = [eval_fn(state, to_global(batch, exp.data_sharding))
               for batch in eval_batches(split, exp.eval_options, exp.extras[split_name])]
    # Sum on the host: eager jnp ops on sharded outputs would each compile a tiny XLA program.
    confusion_np = sum(np.asarray(o["confusion"]) for o in outputs)
    loss_sum = sum(float(o["loss_sum"]) for o in outputs)
    count = sum(int(o["count"]) for o in outputs)
    counts = np.bincount(exp.splits.train.labels, minlength=exp.splits.num_classes)
    ev = exp.config.get("evaluation", ml_collections.ConfigDict())
    metrics = classification_metrics(confusion_np, counts,
                                     many_shot_threshold=int(ev.get("many_shot_threshold", 100)),
                                     few_shot_threshold=int(ev.get("few_shot_threshold", 20)))
    metrics["loss"] = float(loss_sum) / max(int(count), 1)
    if not collect_embedding:
        return EvalResult(metrics, confusion_np)
    embeddings = np.concatenate([fetch(o["embedding"]) for o in outputs])[: len(split)]
    return EvalResult(metrics, confusion_np, embeddings, split.labels)


# ------------------------------------------------------------------------------------- checkpoints
def checkpoint_manager(workdir: str, config: ml_collections.ConfigDict, name: str = "checkpoints",
                       max_to_keep: Optional[int] = None) -> ocp.CheckpointManager:
    ck = config.checkpoint
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep or int(ck.get("max_to_keep", 2)), create=True,
                                           enable_async_checkpointing=False)
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


# ---------------------------------------------------------------------------------------- logging
class ScalarWriter:
    """TensorBoard scalars (process 0 only)."""

    def __init__(self, logdir: str):
        self._writer = tf.summary.create_file_writer(logdir) if jax.process_index() == 0 else None

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        if self._writer is None:
            return
        with self._writer.as_default():
            for name, value in scalars.items():
                if value is not None and np.isscalar(value):
                    tf.summary.scalar(name, float(value), step=step)
        self._writer.flush()


def _scalars(prefix: str, metrics: Mapping[str, Any]) -> dict[str, float]:
    return {f"{prefix}/{k}": v for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None}


def _write_json(path: str, obj: Any) -> None:
    if jax.process_index() == 0:
        with open(path, "w") as f:
            json.dump(obj, f, indent=2)


# --------------------------------------------------------------------------------------- the loop
def train_epoch(exp: Experiment, train_fn, state: TrainState, epoch: int, progress: tqdm) -> tuple[TrainState, dict]:
    step_metrics = []
    log_every = max(1, exp.steps_per_epoch // 10)
    batches = train_batches(exp.splits.train, exp.train_options, num_classes=exp.splits.num_classes,
                            sampler=exp.config.data.get("sampler", "random"), seed=int(exp.config.seed),
                            epoch=epoch, num_epochs=int(exp.config.num_epochs), extras=exp.extras["train"])
    for i, batch in enumerate(batches):
        state, metrics = train_fn(state, to_global(batch, exp.data_sharding))
        step_metrics.append(metrics)
        progress.update(1)
        if i % log_every == 0:
            progress.set_postfix(epoch=epoch + 1, loss=f"{float(metrics['loss']):.4f}")
    step_metrics = jax.device_get(step_metrics)
    averages = {k: float(np.mean([m[k] for m in step_metrics])) for k in step_metrics[0]}
    return state, averages


# config.checkpoint.best_metric: the validation metric that picks the best checkpoint (and drives early
# stopping), and whether larger is better.
BEST_METRICS = {"val_loss": False, "val_accuracy": True, "val_balanced_accuracy": True}


def _is_improvement(best_metric: str, value: Optional[float], best: Optional[float]) -> bool:
    if value is None:
        return False
    if best is None:
        return True
    return value > best if BEST_METRICS[best_metric] else value < best


def _should_stop_early(config, meta: dict, val_value: Optional[float]) -> bool:
    es = config.early_stopping
    if not es.enabled or val_value is None:
        return False
    return meta["epochs_without_improvement"] >= int(es.patience)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       stop_after_epoch: Optional[int] = None) -> dict:
    """Trains ``config`` in ``workdir`` (resuming from its latest checkpoint), evaluates and writes the outputs.

    ``stop_after_epoch`` ends the process-level run right after that epoch's checkpoint, as an
    interruption would (used by the resume test); the returned dict is then empty.
    Returns the metrics written to ``metrics.json``.
    """
    start_time = time.time()
    os.makedirs(workdir, exist_ok=True)
    exp = build_experiment(config)
    state = initial_state(exp)
    check_model_and_objective(exp, state)
    _write_json(os.path.join(workdir, "config.json"), json.loads(config.to_json_best_effort()))
    _write_json(os.path.join(workdir, "class_counts.json"),
                {**exp.splits.class_counts(), "class_names": list(exp.splits.class_names)})
    train_fn, eval_fn = compile_steps(exp)
    manager = checkpoint_manager(workdir, config)
    best_manager = checkpoint_manager(workdir, config, "best_checkpoint", max_to_keep=1)
    best_metric = config.checkpoint.best_metric
    meta = {"epoch": 0, "best_value": None, "epochs_without_improvement": 0, "stopped_early": False}
    if manager.latest_step() is not None:
        state, meta = restore_checkpoint(manager, manager.latest_step(), state)
        logging.info("Resumed from %s at epoch %d", manager.directory, meta["epoch"])
    writer = ScalarWriter(os.path.join(workdir, "tensorboard"))
    num_epochs = int(config.num_epochs)
    progress = tqdm(total=num_epochs * exp.steps_per_epoch, initial=meta["epoch"] * exp.steps_per_epoch,
                    desc="train", unit="step", dynamic_ncols=True, mininterval=1.0,
                    disable=jax.process_index() != 0 or bool(config.get("disable_progress_bar", False)),
                    file=sys.stderr)
    while meta["epoch"] < num_epochs and not meta["stopped_early"]:
        epoch = meta["epoch"]
        state, train_metrics = train_epoch(exp, train_fn, state, epoch, progress)
        scalars = _scalars("train", train_metrics)
        val = evaluate(exp, eval_fn, state, "val") if exp.splits.val is not None else None
        test = evaluate(exp, eval_fn, state, "test")
        if val is not None:
            scalars.update(_scalars("val", val.metrics))
        scalars.update(_scalars("test", test.metrics))
        writer.write(epoch + 1, scalars)
        new_weights = exp.weighting.weights(epoch + 1, None if val is None else val.class_accuracy)
        state = state.replace(class_weights=jax.device_put(jnp.asarray(new_weights), exp.replicated))
        val_loss = None if val is None else val.metrics["loss"]
        val_value = None if val is None else val.metrics[best_metric[len("val_"):]]
        improved = _is_improvement(best_metric, val_value, meta["best_value"])
        meta = {"epoch": epoch + 1,
                "best_value": val_value if improved else meta["best_value"],
                "epochs_without_improvement": 0 if improved else meta["epochs_without_improvement"] + 1,
                "stopped_early": False}
        meta["stopped_early"] = _should_stop_early(config, meta, val_value)
        logging.info("epoch %d: train loss %.4f, test balanced accuracy %.4f%s", epoch + 1, train_metrics["loss"],
                     test.metrics["balanced_accuracy"],
                     "" if val is None else f", val loss {val_loss:.4f}")
        if improved:
            save_checkpoint(best_manager, epoch + 1, state, meta)
        save_checkpoint(manager, epoch + 1, state, meta)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and meta["epoch"] < num_epochs:
            progress.close()
            return {}
    progress.close()
    evaluate_best = config.early_stopping.enabled or config.checkpoint.evaluate_best
    if evaluate_best and best_manager.latest_step() is not None:
        meta["evaluated_epoch"] = best_manager.latest_step()
        state, _ = restore_checkpoint(best_manager, best_manager.latest_step(), state)
        logging.info("Evaluating the best epoch by %s: %d", best_metric, best_manager.latest_step())
    return write_outputs(exp, eval_fn, state, workdir, meta, time.time() - start_time)


def _command_line() -> str:
    """The command that started this process, as ``python -m imbalance_jax.main ...`` when run through main."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(os.path.join("imbalance_jax", "main.py")):
        argv[0] = "python -m imbalance_jax.main"
    return " ".join(argv)


def save_embedding_sample(path: str, embedding: np.ndarray, labels: np.ndarray, layer: str,
                          max_points: int = 5000) -> None:
    """The embedding the plot shows, as ``embedding`` [n, D] float32, ``labels`` [n] and ``layer``: at most
    ``max_points`` rows, the same seed-0 subset as ``plot_embedding`` (for figures that combine runs)."""
    keep = np.arange(len(labels))
    if len(keep) > max_points:
        keep = np.sort(np.random.default_rng(0).choice(len(keep), max_points, replace=False))
    np.savez_compressed(path, embedding=np.asarray(embedding, np.float32)[keep],
                        labels=np.asarray(labels)[keep], layer=np.asarray(layer))


def write_outputs(exp: Experiment, eval_fn, state: TrainState, workdir: str, meta: dict, wall_time: float) -> dict:
    """Final evaluation of every split: metrics.json, plots, report.md and the printed table."""
    results = {name: evaluate(exp, eval_fn, state, name, collect_embedding=True)
               for name in ("train", "val", "test") if getattr(exp.splits, name) is not None}
    counts = exp.splits.class_counts()
    metrics = {name: {**r.metrics, "confusion": np.asarray(r.confusion).astype(int).tolist()}
               for name, r in results.items()}
    metrics["imbalance"] = imbalance_statistics(counts["train"])
    metrics["epochs_trained"] = meta["epoch"]
    metrics["stopped_early"] = meta["stopped_early"]
    metrics["evaluated_epoch"] = meta.get("evaluated_epoch", meta["epoch"])
    metrics["data"] = exp.splits.load_summary()
    _write_json(os.path.join(workdir, "metrics.json"), metrics)
    figures = []
    if jax.process_index() == 0:
        names = list(exp.splits.class_names)
        layer = embedding_layer(exp.config)
        for split in ("train", "test"):
            r = results[split]
            conf_path = os.path.join(workdir, f"confusion_{split}.png")
            emb_path = os.path.join(workdir, f"embedding_{split}.png")
            plot_confusion_matrix(r.confusion, conf_path, class_names=names, title=f"Confusion matrix ({split})")
            plot_embedding(r.embedding, r.labels, emb_path, class_names=names,
                           title=f"{layer} representation ({split})")
            save_embedding_sample(os.path.join(workdir, f"embedding_{split}.npz"), r.embedding, r.labels, layer)
            figures += [conf_path, emb_path]
        table = format_metrics_table({k: metrics[k] for k in results})
        write_report(os.path.join(workdir, "report.md"), title=f"imbalance_jax run: {exp.config.data.name}",
                     config_text=str(exp.config), metrics={k: metrics[k] for k in results},
                     imbalance={"train": metrics["imbalance"]}, class_counts=counts, figures=figures,
                     wall_time_s=wall_time, command=_command_line(), class_names=names, data=metrics["data"])
        print(f"\nTest metrics after {meta['epoch']} epochs ({wall_time:.1f} s), outputs in {workdir}:\n{table}",
              flush=True)
    return metrics
