"""The one place that reads and checks a run's config.

``build_experiment(config)`` turns a config (``configs/default.py`` lists every field and is the one source of
their defaults) into an :class:`Experiment`: the device mesh, the data splits, the model, the objective, the class
weighting, the optimizer, the input-pipeline options and the :class:`TrainingOptions` of the loop. ``check(config)``
runs every check that needs no data (field values, and a shape-only trace of the model and the losses for the
datasets whose image shape is known), for sweeps that validate many configs in seconds.

Every problem is a :class:`ConfigError` whose one-line message names the config field and the allowed values.
:func:`computation_changes` compares a config with the one a workdir's checkpoints were trained with (the
workdir guard of :mod:`imbalance_jax.workdir`); :data:`SAFE_FIELDS` lists the fields a rerun may change.
Everything downstream (``models``, ``data``, ``optim``, ``objectives``, ``train``) takes plain arguments.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh, NamedSharding

from imbalance_jax import models, objectives, optim, parallel
from imbalance_jax.data import (DATASETS, SAMPLERS, DataSplits, PipelineOptions, build_splits, colour_histogram,
                                load_raw_dataset)
from imbalance_jax.data import normalization
from imbalance_jax.data.imbalance import PROFILES
from imbalance_jax.data.samplers import epoch_order
from imbalance_jax.data.sources import (EMPTY_CLASS_FOLDERS, STORAGE, UNREADABLE_IMAGES, DatasetError,
                                        SourceOptions, check_storage)
from imbalance_jax.data.pipeline import steps_per_epoch as count_steps
from imbalance_jax.models.pretrained import recorded_normalization

REQUIRED_FIELDS = ("seed", "num_epochs", "batch_size", "eval_batch_size", "data", "model", "loss", "optimizer",
                   "checkpoint")

# The validation metric that picks the best checkpoint (and drives early stopping) -> larger is better.
BEST_METRICS: dict[str, bool] = {"val_loss": False, "val_accuracy": True, "val_balanced_accuracy": True}

# Native image shape and class count of the datasets whose configs ``check`` traces without loading data.
NATIVE_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "digits": ((8, 8, 1), 10), "fashion_mnist": ((28, 28, 1), 10), "mnist": ((28, 28, 1), 10),
    "cifar10": ((32, 32, 3), 10), "cifar100": ((32, 32, 3), 100)}

# What a step with a non-finite loss or gradient does (config.nan_policy).
NAN_POLICIES = ("stop", "skip_step")

# config.model fields that are not create_model arguments.
_MODEL_FIELDS_READ_ELSEWHERE = ("pretrained_path", "pretrained_prefix", "pretrained_strict")


class ConfigError(ValueError):
    """The config cannot run; the message names the offending field and what is allowed."""


@dataclasses.dataclass(frozen=True)
class TrainingOptions:
    """What the epoch loop needs from the config."""

    seed: int
    num_epochs: int
    sampler: str
    pk_images_per_class: int  # K of the pk sampler
    max_to_keep: int
    best_metric: str  # a key of BEST_METRICS
    evaluate_best: bool  # final evaluation on the best checkpoint (always with early stopping)
    early_stopping_patience: Optional[int]  # None: no early stopping
    disable_progress_bar: bool
    device_prefetch: int  # global batches put on the mesh ahead of the step (0: on demand)
    embedding_layer: str
    many_shot_threshold: int
    few_shot_threshold: int
    pretrained_path: str
    pretrained_prefix: str
    pretrained_strict: bool
    prototype_init: Optional[str]  # affinity classifier only
    num_centres: int
    allow_config_change: bool  # continue a workdir trained with another config (recorded)
    nan_policy: str  # one of NAN_POLICIES
    nan_max_consecutive_skips: int  # skip_step: non-finite steps in a row that end the run


@dataclasses.dataclass
class Experiment:
    """Everything built once at start-up from the config."""

    config: ml_collections.ConfigDict
    options: TrainingOptions
    splits: DataSplits
    mesh: Mesh
    model: models.ImageClassifier
    objective: objectives.Objective
    weighting: objectives.ClassWeighting
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    steps_per_epoch: int
    train_options: PipelineOptions
    eval_options: PipelineOptions
    extras: dict[str, dict[str, np.ndarray]]
    warnings: tuple[str, ...] = ()  # settings that would silently do nothing (also logged at start-up)

    @property
    def replicated(self) -> NamedSharding:
        return parallel.replicated(self.mesh)

    @property
    def data_sharding(self) -> NamedSharding:
        return parallel.batch_sharded(self.mesh)


# ------------------------------------------------------------------------------------------ field checks
def _one_of(field: str, value: Any, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{field}={value!r} is not valid; allowed: {sorted(allowed)}")


def _positive_int(field: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{field}={value!r} must be a positive integer")


def _check_batch_divisible(field: str, batch_size: int, num_devices: int, process_count: int) -> None:
    _positive_int(field, batch_size)
    if batch_size % num_devices:
        raise ConfigError(f"{field}={batch_size} is not divisible by the number of devices ({num_devices}); "
                          f"use a multiple of {num_devices}")
    if batch_size % process_count:
        raise ConfigError(f"{field}={batch_size} is not divisible by the number of processes ({process_count})")


def check_required_fields(config: ml_collections.ConfigDict) -> None:
    """ConfigError naming the top-level fields of :data:`REQUIRED_FIELDS` that ``config`` lacks, or a
    ``config.allow_config_change`` that is not a bool: what the workdir guard reads before the run is built."""
    missing = [f for f in REQUIRED_FIELDS if f not in config]
    if missing:
        raise ConfigError(f"config is missing required top-level field(s) {missing}")
    if not isinstance(config.allow_config_change, bool):
        raise ConfigError(f"config.allow_config_change={config.allow_config_change!r} must be True or False")


def check_fields(config: ml_collections.ConfigDict, num_devices: int, process_count: int = 1) -> None:
    """Every check of single field values that needs neither data nor a model."""
    check_required_fields(config)
    _positive_int("config.num_epochs", config.num_epochs)
    _one_of("config.nan_policy", config.nan_policy, NAN_POLICIES)
    _positive_int("config.nan_max_consecutive_skips", config.nan_max_consecutive_skips)
    _check_batch_divisible("config.batch_size", config.batch_size, num_devices, process_count)
    _check_batch_divisible("config.eval_batch_size", config.eval_batch_size, num_devices, process_count)
    if not isinstance(config.device_prefetch, int) or isinstance(config.device_prefetch, bool) \
            or config.device_prefetch < 0:
        raise ConfigError(f"config.device_prefetch={config.device_prefetch!r} must be an integer >= 0")

    data = config.data
    _one_of("config.data.name", data.name, DATASETS)
    _one_of("config.data.sampler", data.sampler, SAMPLERS)
    _one_of("config.data.empty_class_folders", data.empty_class_folders, EMPTY_CLASS_FOLDERS)
    _one_of("config.data.unreadable_images", data.unreadable_images, UNREADABLE_IMAGES)
    _one_of("config.data.normalization", data.normalization, normalization.NORMALIZATIONS)
    if data.name == "image_folder":  # the only source whose channels the config sets
        try:
            normalization.check_channels(data.normalization, int(data.channels))
        except ValueError as e:
            raise ConfigError(str(e)) from None
    _one_of("config.data.storage", data.storage, STORAGE)
    try:
        check_storage(data.name, data.storage, data.dir)
    except DatasetError as e:
        raise ConfigError(str(e)) from None
    aug = data.augment
    for field, (low, high) in (("crop_scale", (0.0, 1.0)), ("crop_ratio", (0.0, float("inf")))):
        value = tuple(float(v) for v in aug[field])
        if len(value) != 2 or not low < value[0] <= value[1] <= high:
            raise ConfigError(f"config.data.augment.{field}={tuple(aug[field])!r} must be (min, max) with "
                              f"{low} < min <= max <= {high}")
    imb = data.imbalance
    _one_of("config.data.imbalance.profile", imb.profile, PROFILES)
    if imb.profile == "exponential" and not float(imb.ratio) >= 1.0:
        raise ConfigError(f"config.data.imbalance.ratio={imb.ratio} must be >= 1 (n_max / n_min)")
    if imb.profile == "step" and not 0.0 < float(imb.fraction) <= 1.0:
        raise ConfigError(f"config.data.imbalance.fraction={imb.fraction} must be in (0, 1]")
    if not 0.0 <= float(data.label_noise) < 1.0:
        raise ConfigError(f"config.data.label_noise={data.label_noise} must be in [0, 1)")
    for field in ("test_fraction", "val_fraction"):
        if not 0.0 <= float(data[field]) < 1.0:
            raise ConfigError(f"config.data.{field}={data[field]} must be in [0, 1)")

    _one_of("config.model.name", config.model.name, models.BACKBONES)
    _one_of("config.optimizer.name", config.optimizer.name, optim.OPTIMIZERS)
    _one_of("config.optimizer.schedule", config.optimizer.schedule, optim.SCHEDULES)
    if not float(config.optimizer.learning_rate) > 0:
        raise ConfigError(f"config.optimizer.learning_rate={config.optimizer.learning_rate} must be > 0")
    _one_of("config.checkpoint.best_metric", config.checkpoint.best_metric, BEST_METRICS)
    _positive_int("config.checkpoint.max_to_keep", config.checkpoint.max_to_keep)

    loss = config.loss
    _one_of("config.loss.name", loss.name, objectives.CLASSIFICATION_LOSSES)
    _one_of("config.loss.class_weighting.name", loss.class_weighting.name, objectives.CLASS_WEIGHTINGS)
    _one_of("config.loss.class_weighting.reduction", loss.class_weighting.reduction, objectives.REDUCTIONS)
    for name in loss.aux.keys():
        if name not in objectives.AUX_LOSSES:
            raise ConfigError(f"config.loss.aux.{name}: unknown auxiliary loss; allowed: {sorted(objectives.AUX_LOSSES)}")
        if float(loss.aux[name].weight) < 0:
            raise ConfigError(f"config.loss.aux.{name}.weight={loss.aux[name].weight} must be >= 0 "
                              "(0 disables the loss)")
    affinity = loss.aux.get("affinity", None)  # an optional entry of the aux dict, not a defaulted field
    if affinity is not None and float(affinity.weight) > 0 and config.model.classifier != "affinity":
        raise ConfigError("config.loss.aux.affinity needs config.model.classifier='affinity' (its prototypes); "
                          f"got {config.model.classifier!r}")


# ------------------------------------------------------------------------------------------- builders
def classifier_name(config: ml_collections.ConfigDict) -> str:
    """``config.model.classifier``, except that LDAM (``config.loss.name='ldam'``) turns a linear classifier into
    the normalised one of its reference code when ``config.loss.ldam_normed_classifier`` (the default)."""
    if config.loss.name == "ldam" and config.loss.ldam_normed_classifier:
        if config.model.classifier not in ("linear", "normed_linear"):
            raise ConfigError(f"config.loss.ldam_normed_classifier=True needs config.model.classifier='linear' or "
                              f"'normed_linear', got {config.model.classifier!r}; set "
                              "config.loss.ldam_normed_classifier=False to keep it")
        return "normed_linear"
    return config.model.classifier


def model_from_config(model_config: ml_collections.ConfigDict, num_classes: int,
                      classifier: Optional[str] = None) -> models.ImageClassifier:
    """``models.create_model`` with every field of ``config.model`` except the pretrained-weight fields;
    ``classifier`` replaces ``config.model.classifier`` (see :func:`classifier_name`)."""
    options = {k: (v.to_dict() if isinstance(v, ml_collections.ConfigDict) else v)
               for k, v in model_config.items() if k not in _MODEL_FIELDS_READ_ELSEWHERE}
    if classifier is not None:
        options["classifier"] = classifier
    try:
        return models.create_model(num_classes=num_classes, **options)
    except ValueError as e:  # create_model's contract: ValueError = a bad option, named in the message
        raise ConfigError(str(e)) from None


def objective_from_config(loss_config: ml_collections.ConfigDict, class_counts: np.ndarray) -> objectives.Objective:
    """The objective of ``config.loss``: its classification loss and the auxiliary losses with weight > 0."""
    classification = objectives.classification_loss(
        loss_config.name, class_counts, focal_gamma=float(loss_config.focal_gamma),
        ldam_max_margin=float(loss_config.ldam_max_margin), ldam_scale=float(loss_config.ldam_scale),
        logit_adjustment_tau=float(loss_config.logit_adjustment_tau),
        reduction=loss_config.class_weighting.reduction)
    terms = []
    for name in sorted(loss_config.aux.keys()):
        entry = loss_config.aux[name].to_dict()
        weight = float(entry.pop("weight"))
        layers = entry.pop("layers")
        layers = (layers,) if isinstance(layers, str) else tuple(layers)
        try:
            term = objectives.aux_term(name, weight, layers, entry)
        except ValueError as e:  # aux_term's contract: ValueError = unknown option, named in the message
            raise ConfigError(f"config.loss.aux.{name}: {e}") from None
        if weight > 0:
            terms.append(term)
    return objectives.Objective(classification, float(loss_config.weight), tuple(terms))


def class_weighting_from_config(loss_config: ml_collections.ConfigDict,
                                class_counts: np.ndarray) -> objectives.ClassWeighting:
    cw = loss_config.class_weighting
    return objectives.ClassWeighting(cw.name, np.asarray(class_counts), beta=float(cw.beta),
                                     tau=cw.tau if cw.tau == "dynamic" else float(cw.tau),
                                     start_epoch=int(cw.start_epoch))


def optimizer_from_config(opt_config: ml_collections.ConfigDict, steps_per_epoch: int,
                          num_epochs: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    try:
        return optim.create_optimizer(
            opt_config.name, float(opt_config.learning_rate), steps_per_epoch, num_epochs,
            schedule=opt_config.schedule, warmup_epochs=float(opt_config.warmup_epochs),
            boundaries=tuple(opt_config.boundaries), decay_factors=tuple(opt_config.decay_factors),
            final_lr_fraction=float(opt_config.final_lr_fraction), weight_decay=float(opt_config.weight_decay),
            weight_decay_exclude=tuple(opt_config.weight_decay_exclude), momentum=float(opt_config.momentum),
            nesterov=bool(opt_config.nesterov), grad_clip_norm=float(opt_config.grad_clip_norm))
    except ValueError as e:  # create_optimizer's contract: ValueError = inconsistent options, named
        raise ConfigError(str(e)) from None


def splits_from_config(data_config: ml_collections.ConfigDict, seed: int, pretrained_path: str = "") -> DataSplits:
    """Loads ``config.data.name``, builds the balanced hold-outs, the imbalance and the label noise, and sets the
    input normalisation of ``config.data.normalization`` (``pretrained_path``: ``config.model.pretrained_path``)."""
    imb = data_config.imbalance
    source = SourceOptions(
        name=data_config.name, dir=data_config.dir, tfds_data_dir=data_config.tfds_data_dir,
        download=bool(data_config.download), image_size=int(data_config.image_size),
        channels=int(data_config.channels), train_list=data_config.train_list, test_list=data_config.test_list,
        label_column=data_config.label_column, variable=data_config.variable,
        celeba_counts=tuple(data_config.celeba_counts), empty_class_folders=data_config.empty_class_folders,
        unreadable_images=data_config.unreadable_images, storage=data_config.storage,
        files_dir=data_config.files_dir)
    splits = build_splits(load_raw_dataset(source), seed=seed, classes=tuple(data_config.classes),
                          test_fraction=float(data_config.test_fraction), val_per_class=int(data_config.val_per_class),
                          val_fraction=float(data_config.val_fraction), profile=imb.profile, ratio=float(imb.ratio),
                          minority_classes=tuple(imb.minority_classes), fraction=float(imb.fraction),
                          counts=tuple(imb.counts), label_noise=float(data_config.label_noise))
    recorded = recorded_normalization(pretrained_path) if data_config.normalization == "auto" else None
    try:
        chosen = normalization.resolve(data_config.normalization, splits.mean, splits.std, recorded, pretrained_path)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return dataclasses.replace(splits, mean=chosen.mean, std=chosen.std, normalization=chosen.source)


def _check_pk(config: ml_collections.ConfigDict, splits: DataSplits) -> None:
    k = config.data.pk_images_per_class
    _positive_int("config.data.pk_images_per_class", k)
    if config.batch_size % k:
        raise ConfigError(f"config.batch_size={config.batch_size} must be a multiple of "
                          f"config.data.pk_images_per_class={k} (P classes × K images) for the pk sampler")
    present = int(np.sum(np.bincount(splits.train.labels, minlength=splits.num_classes) > 0))
    if config.batch_size // k > present:
        raise ConfigError(f"the pk sampler needs P = config.batch_size / config.data.pk_images_per_class = "
                          f"{config.batch_size // k} classes per batch; the training set has {present}")


def training_options(config: ml_collections.ConfigDict) -> TrainingOptions:
    affinity = config.model.classifier == "affinity"
    return TrainingOptions(
        seed=int(config.seed), num_epochs=int(config.num_epochs), sampler=config.data.sampler,
        pk_images_per_class=int(config.data.pk_images_per_class),
        max_to_keep=int(config.checkpoint.max_to_keep), best_metric=config.checkpoint.best_metric,
        evaluate_best=bool(config.checkpoint.evaluate_best or config.early_stopping.enabled),
        early_stopping_patience=int(config.early_stopping.patience) if config.early_stopping.enabled else None,
        disable_progress_bar=bool(config.disable_progress_bar), device_prefetch=int(config.device_prefetch),
        embedding_layer=config.evaluation.embedding_layer,
        many_shot_threshold=int(config.evaluation.many_shot_threshold),
        few_shot_threshold=int(config.evaluation.few_shot_threshold),
        pretrained_path=config.model.pretrained_path, pretrained_prefix=config.model.pretrained_prefix,
        pretrained_strict=bool(config.model.pretrained_strict),
        prototype_init=config.model.affinity.prototype_init if affinity else None,
        num_centres=int(config.model.affinity.num_centres),
        allow_config_change=bool(config.allow_config_change), nan_policy=config.nan_policy,
        nan_max_consecutive_skips=int(config.nan_max_consecutive_skips))


def _pipeline_options(config: ml_collections.ConfigDict, splits: DataSplits, batch_size: int,
                      train: bool) -> PipelineOptions:
    aug = config.data.augment
    return PipelineOptions(global_batch_size=batch_size, mean=splits.mean, std=splits.std,
                           process_index=jax.process_index(), process_count=jax.process_count(),
                           crop_padding=int(aug.crop_padding) if train else 0, flip=bool(aug.flip) if train else False,
                           random_resized_crop=bool(aug.random_resized_crop) if train else False,
                           crop_scale=tuple(float(v) for v in aug.crop_scale),
                           crop_ratio=tuple(float(v) for v in aug.crop_ratio))


def _split_extras(splits: DataSplits, fields: set[str]) -> dict[str, dict[str, np.ndarray]]:
    """Per-example arrays the objective needs besides image/label, computed from the un-augmented images (file-backed
    splits: each image decoded once as for evaluation, in chunks of ``_EXTRAS_CHUNK``, and dropped after use)."""
    extras: dict[str, dict[str, np.ndarray]] = {"train": {}, "val": {}, "test": {}}
    if "colour_hist" in fields:
        for name in extras:
            split = getattr(splits, name)
            if split is not None:
                extras[name]["colour_hist"] = np.stack([
                    colour_histogram(img) for start in range(0, len(split), _EXTRAS_CHUNK)
                    for img in split.read(np.arange(start, min(start + _EXTRAS_CHUNK, len(split))))])
    return extras


_EXTRAS_CHUNK = 512  # images decoded at a time for the per-example extras


# Auxiliary losses that act on pairs / triplets of same-class images (zero on a batch without any).
_PAIR_LOSSES = ("asl", "triplet", "semantic_triplet")


def startup_warnings(config: ml_collections.ConfigDict, splits: DataSplits,
                     objective: objectives.Objective) -> tuple[str, ...]:
    """Settings that run but silently do nothing (or less than asked): DRW that never starts, a class-balanced
    batch larger than the silk paper's bound N_MB <= N_min·K (Dorozynski & Rottensteiner, §3.3), and a pair or
    triplet loss whose batches mostly hold no two images of one class (measured on the first epoch's order)."""
    found = []
    cw = config.loss.class_weighting
    if cw.name == "drw" and int(cw.start_epoch) >= int(config.num_epochs):
        found.append(f"config.loss.class_weighting.start_epoch={cw.start_epoch} >= config.num_epochs="
                     f"{config.num_epochs}: DRW never re-weights (the run is plain {config.loss.name})")
    counts = np.bincount(splits.train.labels, minlength=splits.num_classes)
    present = counts[counts > 0]
    if config.data.sampler == "class_balanced" and config.batch_size > present.min() * len(present):
        found.append(f"config.batch_size={config.batch_size} > N_min·K = {present.min()}·{len(present)}: a "
                     "class-balanced batch then repeats images of the smallest class (silk paper §3.3)")
    pair_terms = [t.name for t in objective.aux if t.name in _PAIR_LOSSES]
    if pair_terms:
        order = epoch_order(splits.train.labels, splits.num_classes, config.data.sampler, int(config.seed), 0,
                            int(config.num_epochs), batch_size=config.batch_size,
                            images_per_class=int(config.data.pk_images_per_class))
        steps = len(order) // config.batch_size
        batches = splits.train.labels[order[: steps * config.batch_size]].reshape(steps, config.batch_size)
        without = np.mean([len(np.unique(b)) == len(b) for b in batches]) if steps else 0.0
        if without > 0.5:
            for name in pair_terms:
                found.append(f"config.loss.aux.{name}: {100 * without:.0f}% of the first epoch's batches hold no "
                             "two images of one class, where the loss is 0; use a larger config.batch_size or "
                             "config.data.sampler='pk'")
    return tuple(found)


def trace_model_and_objective(config: ml_collections.ConfigDict, model: models.ImageClassifier,
                              objective: objectives.Objective, image_shape: tuple[int, ...], num_classes: int,
                              extra_shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Every layer the objective or the embedding plot reads must be a feature of the model, and every loss
    must accept its options: checked on abstract shapes (``jax.eval_shape``, nothing computed)."""
    rng = jax.random.PRNGKey(0)
    variables = jax.eval_shape(lambda: model.init({"params": rng, "dropout": rng},
                                                  jnp.zeros((1, *image_shape)), train=False))
    batch = {"image": jax.ShapeDtypeStruct((2, *image_shape), jnp.float32),
             "label": jax.ShapeDtypeStruct((2,), jnp.int32), "valid": jax.ShapeDtypeStruct((2,), jnp.bool_),
             **{k: jax.ShapeDtypeStruct((2, *shape), jnp.float32) for k, shape in extra_shapes.items()}}
    params, batch_stats = variables["params"], variables.get("batch_stats", {})
    logits, features, _ = jax.eval_shape(
        lambda p, s, x: models.apply_model(model, p, s, x, train=False), params, batch_stats, batch["image"])
    for term in objective.aux:
        for layer in term.layers:
            if layer not in features:
                raise ConfigError(f"config.loss.aux.{term.name}.layers: {layer!r} is not a feature of model "
                                  f"{config.model.name!r}; allowed: {sorted(features)}")
    layer = config.evaluation.embedding_layer
    if layer not in features:
        raise ConfigError(f"config.evaluation.embedding_layer={layer!r}; allowed: {sorted(features)}")
    weights = jax.ShapeDtypeStruct((num_classes,), jnp.float32)
    checks = [("config.loss", lambda z, f, b, w, p: objective.classification(z, b["label"], b["valid"], w))]
    checks += [(f"config.loss.aux.{t.name}", lambda z, f, b, w, p, t=t: t(z, f, b, p)) for t in objective.aux]
    for field, check in checks:
        try:
            jax.eval_shape(check, logits, features, batch, weights, params)
        except (ValueError, TypeError) as e:  # the kernels' argument checks (chex, check_metric)
            raise ConfigError(f"{field}: {e}") from None


def check(config: ml_collections.ConfigDict, num_devices: int = 1, process_count: int = 1) -> None:
    """The start-up checks that need no data: :func:`check_fields`, the model options, the loss options and,
    for the datasets in ``NATIVE_SHAPES``, a shape-only trace of the model and every loss. Raises ConfigError."""
    check_fields(config, num_devices, process_count)
    classes = len(config.data.classes) or None
    if config.data.name not in NATIVE_SHAPES:
        model_from_config(config.model, classes or 2, classifier_name(config))
        objective_from_config(config.loss, np.ones(classes or 2))
        return
    shape, num_classes = NATIVE_SHAPES[config.data.name]
    num_classes = classes or num_classes
    if int(config.data.image_size):
        shape = (int(config.data.image_size), int(config.data.image_size), shape[2])
    model = model_from_config(config.model, num_classes, classifier_name(config))
    objective = objective_from_config(config.loss, np.ones(num_classes))
    extras = {"colour_hist": colour_histogram(np.zeros((2, 2, 3), np.uint8)).shape} \
        if "colour_hist" in objective.batch_fields else {}
    trace_model_and_objective(config, model, objective, shape, num_classes, extras)


def build_experiment(config: ml_collections.ConfigDict) -> Experiment:
    """Builds and checks everything a run needs; raises ConfigError (or the data's DatasetError)."""
    try:
        mesh = parallel.create_mesh(int(config.num_devices))
    except ValueError as e:  # create_mesh's contract: ValueError = config.num_devices cannot be met
        raise ConfigError(str(e)) from None
    check_fields(config, mesh.size, jax.process_count())
    splits = splits_from_config(config.data, int(config.seed), config.model.pretrained_path)
    if len(splits.train) < config.batch_size:
        raise ConfigError(f"config.batch_size={config.batch_size} is larger than the training set "
                          f"({len(splits.train)} images after the imbalance); use at most {len(splits.train)}")
    if config.data.sampler == "pk":
        _check_pk(config, splits)
    counts = np.bincount(splits.train.labels, minlength=splits.num_classes)
    objective = objective_from_config(config.loss, counts)
    weighting = class_weighting_from_config(config.loss, counts)
    if weighting.name == "cdb" and splits.val is None:
        raise ConfigError("config.loss.class_weighting.name='cdb' needs a balanced validation set: set "
                          "config.data.val_per_class (e.g. 25) or config.data.val_fraction")
    steps = count_steps(len(splits.train), config.batch_size)
    tx, schedule = optimizer_from_config(config.optimizer, steps, int(config.num_epochs))
    model = model_from_config(config.model, splits.num_classes, classifier_name(config))
    extras = _split_extras(splits, objective.batch_fields)
    trace_model_and_objective(config, model, objective, splits.image_shape, splits.num_classes,
                              {k: v.shape[1:] for k, v in extras["train"].items()})
    warnings = startup_warnings(config, splits, objective)
    for warning in warnings:
        logging.warning("%s", warning)
    return Experiment(config, training_options(config), splits, mesh, model, objective, weighting, tx, schedule,
                      steps, _pipeline_options(config, splits, config.batch_size, True),
                      _pipeline_options(config, splits, config.eval_batch_size, False), extras, warnings)


# ------------------------------------------------------------------------------- rerunning a workdir
# Fields a rerun in a workdir may change without changing what its checkpoints hold or how training goes on
# from them (``computation_changes`` ignores them). Every other field changes the computation.
# ``num_epochs`` is safe only under the conditions of ``_num_epochs_change``.
SAFE_FIELDS: dict[str, str] = {
    "disable_progress_bar": "display only",
    "allow_config_change": "the permission to change the others, not part of the computation",
    "eval_batch_size": "evaluation only: every example is evaluated once in any batch size (BatchNorm uses its "
                       "running statistics); sums over batches may differ in the last bits",
    "checkpoint.max_to_keep": "how many old checkpoints are kept",
    "checkpoint.evaluate_best": "which saved state the final evaluation reads; best_checkpoint/ is kept either way",
    "num_devices": "the same global batches and steps over more or fewer devices (equal up to float rounding, "
                   "tests/test_train.py); the default 0 already means 'every device of this machine'",
    "multi_host": "how the processes are started, not what they compute",
    "data.files_dir": "where a tfds split's exported files live: the same encoded bytes wherever they are",
    "device_prefetch": "how far ahead batches are put on the devices, not what is computed (bit-identical, "
                       "tests/test_parallel.py)",
    "nan_policy": "acts only at a non-finite step; every step before one is the same under both policies "
                  "(skipped steps are counted in the checkpoints)",
    "nan_max_consecutive_skips": "acts only at non-finite steps (see nan_policy)",
    "evaluation.embedding_layer": "the plotted layer only",
    "evaluation.many_shot_threshold": "shot-group metrics only, recomputed from the state at the end "
                                      "(earlier epochs' TensorBoard values keep the old groups)",
    "evaluation.few_shot_threshold": "as evaluation.many_shot_threshold",
}

# Fields added after runs were recorded without them, with the values that compute what those runs computed: a
# rerun of an older workdir with one of these values is no change.
ADDED_FIELDS: dict[str, tuple[Any, ...]] = {
    "data.normalization": ("auto", "dataset"),  # the training-split statistics ("auto": unless the pretrained
                                                # file records others, which no older file did)
}

ABSENT = "(absent)"  # how a field that one of two configs lacks is shown and recorded


@dataclasses.dataclass(frozen=True)
class FieldChange:
    """A field whose new value changes the computation a workdir's checkpoints come from."""

    path: str  # dotted, without the leading "config."
    old: Any  # JSON value, or ABSENT
    new: Any
    reason: str = ""  # why a conditionally safe field (num_epochs) is not safe here

    def describe(self) -> str:
        return f"{self.path} {_show(self.old)} -> {_show(self.new)}" + (f" ({self.reason})" if self.reason else "")


def _show(value: Any) -> str:
    return value if value is ABSENT else json.dumps(value)


def flatten_config(config: "ml_collections.ConfigDict | Mapping[str, Any]") -> dict[str, Any]:
    """``{dotted path: JSON value}`` of every leaf field (tuples as lists, as in config.json)."""
    tree = json.loads(config.to_json_best_effort()) if isinstance(config, ml_collections.ConfigDict) else config
    flat: dict[str, Any] = {}

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, Mapping) and value:
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value
    walk(tree, "")
    return flat


def config_digest(config: ml_collections.ConfigDict) -> str:
    """SHA-256 of the fields that change the computation (every field but :data:`SAFE_FIELDS`)."""
    flat = {k: v for k, v in flatten_config(config).items() if k not in SAFE_FIELDS}
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()


def _num_epochs_change(config: ml_collections.ConfigDict, trained_epochs: int) -> Optional[str]:
    """None when a new ``num_epochs`` leaves the epochs trained so far and the ones to come as they would have
    been (constant or multistep schedule, whose epochs are absolute; no progressive sampler; not below the
    checkpoints' epoch); else why not."""
    if config.optimizer.schedule == "cosine":
        return "the cosine schedule decays over num_epochs"
    if config.data.sampler == "progressive":
        return "the progressive sampler moves towards balance over num_epochs"
    if int(config.num_epochs) < trained_epochs:
        return f"the checkpoints are already at epoch {trained_epochs}"
    return None


def computation_changes(recorded: Mapping[str, Any], config: ml_collections.ConfigDict,
                        trained_epochs: int) -> list[FieldChange]:
    """The fields of ``config`` that differ from ``recorded`` (the flattened config a workdir's checkpoints were
    trained with, up to epoch ``trained_epochs``) and change the computation: every field but
    :data:`SAFE_FIELDS`, and ``num_epochs`` unless :func:`_num_epochs_change` allows it. A field that only one
    of them has counts as changed (shown as ``(absent)``) unless it is safe or one of :data:`ADDED_FIELDS` with a
    value that computes what the older run did."""
    new = flatten_config(config)
    changes = []
    for path in sorted(set(recorded) | set(new)):
        old_value, new_value = recorded.get(path, ABSENT), new.get(path, ABSENT)
        if path in SAFE_FIELDS or json.dumps(old_value, sort_keys=True) == json.dumps(new_value, sort_keys=True):
            continue
        if old_value is ABSENT and new_value in ADDED_FIELDS.get(path, ()):
            continue
        reason = ""
        if path == "num_epochs" and old_value is not ABSENT and new_value is not ABSENT:
            reason = _num_epochs_change(config, trained_epochs)
            if reason is None:
                continue
        changes.append(FieldChange(path, old_value, new_value, reason))
    return changes
