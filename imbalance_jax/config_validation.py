"""Start-up checks of a run's config: one clear message naming the field and the allowed values."""

from __future__ import annotations

import ml_collections

from imbalance_jax import models, objectives, optim
from imbalance_jax.data import DATASETS, SAMPLERS
from imbalance_jax.data.imbalance import PROFILES
from imbalance_jax.data.sources import EMPTY_CLASS_FOLDERS, UNREADABLE_IMAGES

REQUIRED_FIELDS = ("seed", "num_epochs", "batch_size", "eval_batch_size", "data", "model", "loss", "optimizer",
                   "checkpoint")


class ConfigError(ValueError):
    """The config cannot run; the message names the offending field and what is allowed."""


def _one_of(field: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{field}={value!r} is not valid; allowed: {sorted(allowed)}")


def _positive_int(field: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{field}={value!r} must be a positive integer")


def check_batch_divisible(field: str, batch_size: int, num_devices: int, process_count: int = 1) -> None:
    _positive_int(field, batch_size)
    if batch_size % num_devices:
        raise ConfigError(f"{field}={batch_size} is not divisible by the number of devices ({num_devices}); "
                          f"use a multiple of {num_devices}")
    if batch_size % process_count:
        raise ConfigError(f"{field}={batch_size} is not divisible by the number of processes ({process_count})")


def validate_config(config: ml_collections.ConfigDict, num_devices: int, process_count: int = 1) -> None:
    """Checks everything that can be checked before the data are loaded."""
    missing = [f for f in REQUIRED_FIELDS if f not in config]
    if missing:
        raise ConfigError(f"config is missing required top-level field(s) {missing}")
    _positive_int("config.num_epochs", config.num_epochs)
    check_batch_divisible("config.batch_size", config.batch_size, num_devices, process_count)
    check_batch_divisible("config.eval_batch_size", config.eval_batch_size, num_devices, process_count)

    data = config.data
    _one_of("config.data.name", data.name, DATASETS)
    _one_of("config.data.sampler", data.get("sampler", "random"), SAMPLERS)
    _one_of("config.data.empty_class_folders", data.empty_class_folders, EMPTY_CLASS_FOLDERS)
    _one_of("config.data.unreadable_images", data.unreadable_images, UNREADABLE_IMAGES)
    imb = data.get("imbalance", ml_collections.ConfigDict({"profile": "none"}))
    _one_of("config.data.imbalance.profile", imb.get("profile", "none"), PROFILES)
    if imb.get("profile") == "exponential" and not float(imb.get("ratio", 1.0)) >= 1.0:
        raise ConfigError(f"config.data.imbalance.ratio={imb.get('ratio')} must be >= 1 (n_max / n_min)")
    if imb.get("profile") == "step" and not 0.0 < float(imb.get("fraction", 1.0)) <= 1.0:
        raise ConfigError(f"config.data.imbalance.fraction={imb.get('fraction')} must be in (0, 1]")
    noise = float(data.get("label_noise", 0.0))
    if not 0.0 <= noise < 1.0:
        raise ConfigError(f"config.data.label_noise={noise} must be in [0, 1)")
    for field in ("test_fraction", "val_fraction"):
        value = float(data.get(field, 0.0))
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"config.data.{field}={value} must be in [0, 1)")

    _one_of("config.model.name", config.model.name, models.BACKBONES)
    _one_of("config.checkpoint.best_metric", config.checkpoint.best_metric, ("val_accuracy", "val_balanced_accuracy",
                                                                           "val_loss"))
    _one_of("config.optimizer.name", config.optimizer.name, optim.OPTIMIZERS)
    _one_of("config.optimizer.schedule", config.optimizer.get("schedule", "constant"), optim.SCHEDULES)
    if not float(config.optimizer.learning_rate) > 0:
        raise ConfigError(f"config.optimizer.learning_rate={config.optimizer.learning_rate} must be > 0")
    affinity = config.loss.get("aux", {}).get("affinity", None)
    if affinity is not None and float(affinity.get("weight", 0.0)) > 0:
        if config.model.get("classifier", "linear") != "affinity":
            raise ConfigError("config.loss.aux.affinity needs config.model.classifier='affinity' (its prototypes); "
                              f"got {config.model.get('classifier', 'linear')!r}")
        head = config.model.get("affinity", {})
        for key in ("sigma", "distance", "similarity"):
            if key in head and head[key] != affinity.get(key):
                raise ConfigError(f"config.loss.aux.affinity.{key}={affinity.get(key)!r} differs from "
                                  f"config.model.affinity.{key}={head[key]!r}; they must be equal")
    try:
        objectives.validate_loss_config(config.loss)
    except objectives.ObjectiveConfigError as e:
        raise ConfigError(str(e)) from None
