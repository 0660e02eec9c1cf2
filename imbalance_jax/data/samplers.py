"""Epoch orderings of the training set; deterministic functions of (seed, epoch).

An epoch always has ``len(labels)`` draws. Samplers:
- ``random``: a permutation of the training set (instance-balanced).
- ``class_balanced``: each draw picks a class uniformly, then an image of it without replacement
  (a class's images are reshuffled when exhausted) — Dorozynski & Rottensteiner, silk paper §3.3.
- ``square_root``: class probability ∝ sqrt(n_c) (Mahajan et al. 2018), images without replacement.
- ``progressive``: progressively balanced (Kang et al. 2020): p_c(t) = (1 − t/T)·n_c/N + (t/T)/C.
"""

from __future__ import annotations

import numpy as np

SAMPLERS = ("random", "class_balanced", "square_root", "progressive")


def class_probabilities(counts: np.ndarray, sampler: str, epoch: int = 0, num_epochs: int = 1) -> np.ndarray:
    """Class-sampling probabilities of a sampler (classes without images get 0)."""
    counts = np.asarray(counts, np.float64)
    present = counts > 0
    if sampler in ("random", "instance"):
        p = counts
    elif sampler == "class_balanced":
        p = present.astype(np.float64)
    elif sampler == "square_root":
        p = np.sqrt(counts)
    elif sampler == "progressive":
        t = min(epoch / max(num_epochs - 1, 1), 1.0)
        p = (1 - t) * counts / counts.sum() + t * present / present.sum()
    else:
        raise ValueError(f"config.data.sampler={sampler!r}; allowed: {list(SAMPLERS)}")
    return p / p.sum()


def _class_aware_order(labels: np.ndarray, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draws a class per slot from ``probs``, then that class's images without replacement (cycling)."""
    num = len(labels)
    classes = rng.choice(len(probs), size=num, p=probs)
    order = np.empty(num, np.int64)
    for c in np.unique(classes):
        slots = np.flatnonzero(classes == c)
        pool = np.flatnonzero(labels == c)
        reps = -(-len(slots) // len(pool))
        draws = np.concatenate([rng.permutation(pool) for _ in range(reps)])
        order[slots] = draws[: len(slots)]
    return order


def epoch_order(labels: np.ndarray, num_classes: int, sampler: str, seed: int, epoch: int,
                num_epochs: int = 1) -> np.ndarray:
    """Indices into the training set for one epoch."""
    rng = np.random.default_rng([seed, 1000 + epoch])
    if sampler == "random":
        return rng.permutation(len(labels))
    counts = np.bincount(labels, minlength=num_classes)
    return _class_aware_order(labels, class_probabilities(counts, sampler, epoch, num_epochs), rng)
