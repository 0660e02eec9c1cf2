"""Epoch orderings of the training set; deterministic functions of (seed, epoch).

An epoch always has ``len(labels)`` draws. Samplers:
- ``random``: a permutation of the training set (instance-balanced).
- ``class_balanced``: each draw picks a class uniformly, then an image of it without replacement
  (a class's images are reshuffled when exhausted) — Dorozynski & Rottensteiner, silk paper §3.3.
- ``square_root``: class probability ∝ sqrt(n_c) (Mahajan et al. 2018), images without replacement.
- ``progressive``: progressively balanced (Kang et al. 2020): p_c(t) = (1 − t/T)·n_c/N + (t/T)/C.
- ``pk``: P×K batches for metric learning (pytorch-metric-learning's ``MPerClassSampler``; Hermans et al. 2017,
  "In defense of the triplet loss", §3): every global batch holds P = batch_size / K classes drawn uniformly
  without replacement among the classes that have images, and K images of each, drawn without replacement from
  the class (reshuffled when exhausted, so a class with fewer than K images repeats some). The epoch has as many
  full batches as the other samplers; the remaining draws (dropped by the pipeline) are random.
"""

from __future__ import annotations

import numpy as np

SAMPLERS = ("random", "class_balanced", "square_root", "progressive", "pk")


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


def _pk_order(labels: np.ndarray, num_classes: int, batch_size: int, images_per_class: int,
              rng: np.random.Generator) -> np.ndarray:
    num, k = len(labels), images_per_class
    if batch_size < 1 or k < 1 or batch_size % k:
        raise ValueError(f"the pk sampler needs config.batch_size={batch_size} to be a multiple of "
                         f"config.data.pk_images_per_class={k}")
    present = np.flatnonzero(np.bincount(labels, minlength=num_classes) > 0)
    p = batch_size // k
    if p > len(present):
        raise ValueError(f"the pk sampler needs P = config.batch_size / config.data.pk_images_per_class = {p} "
                         f"classes per batch, but only {len(present)} classes have training images")
    pools = {c: np.flatnonzero(labels == c) for c in present}
    queues = {c: np.zeros(0, np.int64) for c in present}

    def take(c: int) -> np.ndarray:
        while len(queues[c]) < k:
            queues[c] = np.concatenate([queues[c], rng.permutation(pools[c])])
        out, queues[c] = queues[c][:k], queues[c][k:]
        return out

    batches = [np.concatenate([take(c) for c in rng.choice(present, size=p, replace=False)])
               for _ in range(num // batch_size)]
    tail = rng.permutation(num)[: num - len(batches) * batch_size]
    return np.concatenate(batches + [tail]).astype(np.int64)


def epoch_order(labels: np.ndarray, num_classes: int, sampler: str, seed: int, epoch: int,
                num_epochs: int = 1, *, batch_size: int = 0, images_per_class: int = 4) -> np.ndarray:
    """Indices into the training set for one epoch (``batch_size`` and ``images_per_class``: the pk sampler's
    global batch and K)."""
    rng = np.random.default_rng([seed, 1000 + epoch])
    if sampler == "random":
        return rng.permutation(len(labels))
    if sampler == "pk":
        return _pk_order(np.asarray(labels), num_classes, batch_size, images_per_class, rng)
    counts = np.bincount(labels, minlength=num_classes)
    return _class_aware_order(labels, class_probabilities(counts, sampler, epoch, num_epochs), rng)
