"""Optimizers and learning-rate schedules (epochs converted to steps); plain arguments, no config objects."""

from __future__ import annotations

import fnmatch
from typing import Any, Callable, Sequence

import jax
import optax

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "multistep", "cosine")


def create_schedule(learning_rate: float, steps_per_epoch: int, num_epochs: int, *, schedule: str = "constant",
                    warmup_epochs: float = 0.0, boundaries: Sequence[int] = (), decay_factors: Sequence[float] = (),
                    final_lr_fraction: float = 0.0) -> optax.Schedule:
    """Base schedule (constant / multistep / cosine) with an optional linear warm-up of ``warmup_epochs``.

    ``multistep``: ``boundaries`` are epochs, ``decay_factors`` the absolute factor applied from each
    boundary on (e.g. boundaries (160, 180), factors (0.01, 0.0001) as in the LDAM-DRW CIFAR-LT protocol).
    ``cosine``: decays to ``final_lr_fraction * learning_rate`` at the last step.
    """
    lr = float(learning_rate)
    warmup_steps = int(round(float(warmup_epochs) * steps_per_epoch))
    total_steps = max(num_epochs * steps_per_epoch, 1)
    if schedule == "constant":
        base = optax.constant_schedule(lr)
    elif schedule == "multistep":
        if len(boundaries) != len(decay_factors):
            raise ValueError("config.optimizer.boundaries and config.optimizer.decay_factors must have the same "
                             f"length, got {len(boundaries)} and {len(decay_factors)}")
        # optax multiplies successive scales; convert absolute factors into successive ratios.
        prev, scales = 1.0, {}
        for b, f in zip(boundaries, decay_factors):
            scales[int(b) * steps_per_epoch] = float(f) / prev
            prev = float(f)
        base = optax.piecewise_constant_schedule(lr, scales)
    elif schedule == "cosine":
        base = optax.cosine_decay_schedule(lr, decay_steps=max(total_steps - warmup_steps, 1),
                                           alpha=float(final_lr_fraction))
    else:
        raise ValueError(f"config.optimizer.schedule={schedule!r}; allowed: {list(SCHEDULES)}")
    if warmup_steps <= 0:
        return base
    if schedule == "cosine":
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


def create_optimizer(name: str, learning_rate: float, steps_per_epoch: int, num_epochs: int, *,
                     schedule: str = "constant", warmup_epochs: float = 0.0, boundaries: Sequence[int] = (),
                     decay_factors: Sequence[float] = (), final_lr_fraction: float = 0.0, weight_decay: float = 0.0,
                     weight_decay_exclude: Sequence[str] = (), momentum: float = 0.9, nesterov: bool = False,
                     grad_clip_norm: float = 0.0) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Optimizer ``name`` (``OPTIMIZERS``) on the schedule of :func:`create_schedule`.

    ``weight_decay`` is L2 decay added to the gradient for adam/sgd (coupled, as PyTorch's ``weight_decay``) and
    decoupled for adamw; ``weight_decay_exclude`` lists parameter-path globs it skips (see :func:`decay_mask`).
    ``grad_clip_norm`` > 0 clips the global gradient norm first.
    """
    lr_schedule = create_schedule(learning_rate, steps_per_epoch, num_epochs, schedule=schedule,
                                  warmup_epochs=warmup_epochs, boundaries=boundaries, decay_factors=decay_factors,
                                  final_lr_fraction=final_lr_fraction)
    wd = float(weight_decay)
    mask = decay_mask(weight_decay_exclude) if weight_decay_exclude else None
    if name == "adam":
        tx = optax.chain(optax.add_decayed_weights(wd, mask=mask), optax.adam(lr_schedule)) if wd \
            else optax.adam(lr_schedule)
    elif name == "adamw":
        tx = optax.adamw(lr_schedule, weight_decay=wd, mask=mask)
    elif name == "sgd":
        sgd = optax.sgd(lr_schedule, momentum=float(momentum) or None, nesterov=bool(nesterov))
        tx = optax.chain(optax.add_decayed_weights(wd, mask=mask), sgd) if wd else sgd
    else:
        raise ValueError(f"config.optimizer.name={name!r}; allowed: {list(OPTIMIZERS)}")
    if grad_clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(float(grad_clip_norm)), tx)
    return tx, lr_schedule
