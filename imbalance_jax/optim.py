"""Optimizers and learning-rate schedules built from ``config.optimizer`` (epochs converted to steps)."""

from __future__ import annotations

import fnmatch
from typing import Any, Callable, Sequence

import jax
import ml_collections
import optax

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "multistep", "cosine")


def create_schedule(opt_config: ml_collections.ConfigDict, steps_per_epoch: int, num_epochs: int) -> optax.Schedule:
    """Base schedule (constant / multistep / cosine) with an optional linear warm-up of ``warmup_epochs``.

    ``multistep``: ``boundaries`` are epochs, ``decay_factors`` the absolute factor applied from each
    boundary on (e.g. boundaries (160, 180), factors (0.01, 0.0001) as in the LDAM/CDB CIFAR-LT protocol).
    """
    lr = float(opt_config.learning_rate)
    name = opt_config.get("schedule", "constant")
    warmup_steps = int(round(float(opt_config.get("warmup_epochs", 0)) * steps_per_epoch))
    total_steps = max(num_epochs * steps_per_epoch, 1)
    if name == "constant":
        base = optax.constant_schedule(lr)
    elif name == "multistep":
        boundaries = [int(b) * steps_per_epoch for b in opt_config.get("boundaries", ())]
        factors = list(opt_config.get("decay_factors", ()))
        if len(boundaries) != len(factors):
            raise ValueError("config.optimizer.boundaries and config.optimizer.decay_factors must have the same "
                             f"length, got {len(boundaries)} and {len(factors)}")
        # optax multiplies successive scales; convert absolute factors into successive ratios.
        prev, scales = 1.0, {}
        for b, f in zip(boundaries, factors):
            scales[b] = float(f) / prev
            prev = float(f)
        base = optax.piecewise_constant_schedule(lr, scales)
    elif name == "cosine":
        base = optax.cosine_decay_schedule(lr, decay_steps=max(total_steps - warmup_steps, 1),
                                           alpha=float(opt_config.get("final_lr_fraction", 0.0)))
    else:
        raise ValueError(f"config.optimizer.schedule={name!r}; allowed: {list(SCHEDULES)}")
    if warmup_steps <= 0:
        return base
    if name == "cosine":
        warmup = optax.linear_schedule(lr / max(warmup_steps, 1), lr, warmup_steps)
        return optax.join_schedules([warmup, base], [warmup_steps])
    # Warm-up for step-wise schedules: scale the base by a linear ramp (keeps the epoch boundaries absolute).
    return lambda step: base(step) * optax.linear_schedule(1.0 / warmup_steps, 1.0, warmup_steps)(step)


def decay_mask(exclude: Sequence[str]) -> Callable[[Any], Any]:
    """optax mask for weight decay: False for the parameters whose "/"-joined path (e.g. ``classifier/bias``)
    matches one of the ``exclude`` glob patterns (``fnmatch``), True for every other parameter."""
    patterns = tuple(exclude)

    def mask(params):
        def keep(path, _):
            name = "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
            return not any(fnmatch.fnmatchcase(name, p) for p in patterns)
        return jax.tree_util.tree_map_with_path(keep, params)

    return mask


def create_optimizer(opt_config: ml_collections.ConfigDict, steps_per_epoch: int,
                     num_epochs: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    schedule = create_schedule(opt_config, steps_per_epoch, num_epochs)
    name = opt_config.name
    wd = float(opt_config.get("weight_decay", 0.0))
    exclude = tuple(opt_config.get("weight_decay_exclude", ()) or ())
    decay = optax.add_decayed_weights(wd, mask=decay_mask(exclude) if exclude else None)
    if name == "adam":
        tx = optax.chain(decay, optax.adam(schedule)) if wd else optax.adam(schedule)
    elif name == "adamw":
        tx = optax.adamw(schedule, weight_decay=wd, mask=decay_mask(exclude) if exclude else None)
    elif name == "sgd":
        sgd = optax.sgd(schedule, momentum=float(opt_config.get("momentum", 0.9)) or None,
                        nesterov=bool(opt_config.get("nesterov", False)))
        tx = optax.chain(decay, sgd) if wd else sgd
    else:
        raise ValueError(f"config.optimizer.name={name!r}; allowed: {list(OPTIMIZERS)}")
    clip = float(opt_config.get("grad_clip_norm", 0.0))
    if clip > 0:
        tx = optax.chain(optax.clip_by_global_norm(clip), tx)
    return tx, schedule
