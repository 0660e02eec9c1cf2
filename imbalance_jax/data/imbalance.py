"""Imbalance profiles, balanced hold-outs and label noise; all deterministic from a numpy Generator."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

PROFILES = ("none", "exponential", "step", "counts")


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(np.asarray(labels, np.int64), minlength=num_classes).astype(np.int64)


def exponential_profile(n_max: int, num_classes: int, ratio: float) -> np.ndarray:
    """CIFAR-LT profile (Cao et al. 2019): n_c = int(n_max * ratio^(-c / (C - 1))), class 0 the head."""
    if num_classes == 1:
        return np.array([n_max], np.int64)
    c = np.arange(num_classes)
    return np.array([int(n_max * ratio ** (-ci / (num_classes - 1))) for ci in c], np.int64)


def step_profile(n_max: int, num_classes: int, minority_classes: Sequence[int], fraction: float) -> np.ndarray:
    """Step profile: the listed classes keep ``fraction`` of ``n_max`` images (at least 1), the rest keep all."""
    counts = np.full(num_classes, n_max, np.int64)
    for c in minority_classes:
        counts[int(c)] = max(1, int(n_max * fraction))
    return counts


def target_counts(profile: str, available: np.ndarray, *, ratio: float = 1.0,
                  minority_classes: Sequence[int] = (), fraction: float = 1.0,
                  counts: Optional[Sequence[int]] = None) -> np.ndarray:
    """Per-class target counts of a profile, never more than is available in each class."""
    num_classes = len(available)
    n_max = int(available.min()) if profile in ("exponential", "step") else int(available.max())
    if profile == "none":
        target = available.copy()
    elif profile == "exponential":
        target = exponential_profile(n_max, num_classes, ratio)
    elif profile == "step":
        target = step_profile(n_max, num_classes, minority_classes, fraction)
    elif profile == "counts":
        target = np.asarray(counts, np.int64)
    else:
        raise ValueError(f"config.data.imbalance.profile={profile!r}; allowed: {list(PROFILES)}")
    return np.minimum(target, available)


def subsample_per_class(labels: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a random subset with ``counts[c]`` examples of each class c."""
    chosen = []
    for c, n in enumerate(counts):
        idx = np.flatnonzero(labels == c)
        chosen.append(rng.permutation(idx)[: int(n)])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def balanced_holdout(labels: np.ndarray, num_classes: int, rng: np.random.Generator, *,
                     per_class: int = 0, fraction: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Splits indices into (kept, held_out): ``per_class`` images of every class (or ``fraction`` of each
    class, rounded, at least 1 when fraction > 0) are held out. Returns sorted index arrays."""
    held = []
    for c in range(num_classes):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = per_class if per_class else (max(1, int(round(fraction * len(idx)))) if fraction > 0 else 0)
        if n >= len(idx) and n > 0:
            raise ValueError(f"class {c} has {len(idx)} images, cannot hold out {n} of them for a balanced "
                             "split (config.data.val_per_class / val_fraction / test_fraction)")
        held.append(idx[:n])
    held_idx = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    kept = np.setdiff1d(np.arange(len(labels)), held_idx)
    return kept, held_idx


def symmetric_label_noise(labels: np.ndarray, num_classes: int, rate: float,
                          rng: np.random.Generator) -> np.ndarray:
    """Symmetric noise: each label is, with probability ``rate``, replaced by a different class drawn uniformly."""
    labels = np.asarray(labels, np.int32).copy()
    if rate <= 0:
        return labels
    flip = rng.random(len(labels)) < rate
    offsets = rng.integers(1, num_classes, size=len(labels))
    labels[flip] = (labels[flip] + offsets[flip]) % num_classes
    return labels
