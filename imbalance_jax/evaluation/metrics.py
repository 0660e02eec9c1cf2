"""Confusion-matrix metrics and class-imbalance statistics.

`confusion_matrix` is JAX (jit-able, runs inside the eval step); everything else is numpy on the
host and returns JSON-serialisable Python values (floats, ints, lists, None — never inf or NaN).

Conventions (shared by all functions here):
- The confusion matrix has rows = true class, columns = predicted class.
- A class with no test examples ("absent class") has an undefined recall and F1: they are reported
  as None and the class is left out of every average (balanced accuracy, macro P/R/F1, minority F1,
  many/medium/few-shot accuracy). This matches scikit-learn's `balanced_accuracy_score` and
  `precision_recall_fscore_support(..., labels=<classes present in y_true>, zero_division=0)`.
- A class that is never predicted has precision 0 (scikit-learn's `zero_division=0`).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["confusion_matrix", "classification_metrics", "imbalance_statistics"]


def confusion_matrix(
    labels: jax.Array,
    predictions: jax.Array,
    num_classes: int,
    valid: Optional[jax.Array] = None,
) -> jax.Array:
    """Counts of (true class, predicted class) pairs as an int32 [C, C] matrix.

    Rows are true classes, columns predicted classes. Rows with `valid == False` are ignored, and
    so are rows whose label or prediction lies outside [0, num_classes) (padding commonly uses -1).
    Matrices of several batches accumulate by addition. Under `jax.jit`, `num_classes` must be
    static (e.g. `jax.jit(confusion_matrix, static_argnums=2)` or `functools.partial`).

    Args:
      labels: int[B] true classes.
      predictions: int[B] predicted classes.
      num_classes: number of classes C (positive Python int).
      valid: optional bool[B] mask; None means every row counts.
    """
    if not isinstance(num_classes, (int, np.integer)) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive Python int, got {num_classes!r}.")
    num_classes = int(num_classes)
    labels = jnp.asarray(labels)
    predictions = jnp.asarray(predictions)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D int[B], got shape {labels.shape}.")
    if predictions.shape != labels.shape:
        raise ValueError(
            f"predictions must have the shape of labels {labels.shape}, got {predictions.shape}."
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer) or not jnp.issubdtype(predictions.dtype, jnp.integer):
        raise ValueError(
            f"labels and predictions must be integer arrays, got {labels.dtype} and {predictions.dtype}."
        )
    if valid is None:
        keep = jnp.ones(labels.shape, dtype=bool)
    else:
        valid = jnp.asarray(valid)
        if valid.shape != labels.shape:
            raise ValueError(f"valid must have the shape of labels {labels.shape}, got {valid.shape}.")
        keep = valid.astype(bool)
    keep = keep & (labels >= 0) & (labels < num_classes) & (predictions >= 0) & (predictions < num_classes)
    # Ignored rows scatter a 0 into cell (0, 0), so indices stay in bounds and nothing is counted.
    rows = jnp.where(keep, labels, 0).astype(jnp.int32)
    cols = jnp.where(keep, predictions, 0).astype(jnp.int32)
    counts = jnp.zeros((num_classes, num_classes), dtype=jnp.int32)
    return counts.at[rows, cols].add(keep.astype(jnp.int32))


def _counts_vector(class_counts: Any, name: str) -> np.ndarray:
    """Validates a 1-D vector of non-negative, finite class counts and returns it as float64."""
    counts = np.asarray(class_counts)
    if counts.ndim != 1 or counts.shape[0] < 1:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of counts, got shape {counts.shape}.")
    if not (np.issubdtype(counts.dtype, np.integer) or np.issubdtype(counts.dtype, np.floating)):
        raise ValueError(f"{name} must be numeric, got dtype {counts.dtype}.")
    counts = counts.astype(np.float64)
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError(f"{name} must be finite and non-negative, got {counts.tolist()}.")
    return counts


def _minority_mask(counts: np.ndarray) -> np.ndarray:
    """Minority classes: train share ζ_c = n_c / Σn < 1/K, evaluated exactly as K·n_c < Σn."""
    return counts * counts.shape[0] < counts.sum()


def _mean_or_none(values: np.ndarray) -> Optional[float]:
    return float(np.mean(values)) if values.size else None


def _list_with_none(values: np.ndarray, defined: np.ndarray) -> list:
    return [float(v) if d else None for v, d in zip(values, defined)]


def classification_metrics(
    confusion: Any,
    train_class_counts: Any,
    *,
    many_shot_threshold: int = 100,
    few_shot_threshold: int = 20,
) -> dict:
    """Accuracy, balanced accuracy, macro/per-class P/R/F1, minority F1 and shot-group accuracies.

    Args:
      confusion: [C, C] counts, rows = true class, columns = predicted (see `confusion_matrix`).
      train_class_counts: [C] training images per class; defines the minority classes and the
        many/medium/few-shot groups.
      many_shot_threshold: classes with more than this many training images are "many-shot".
      few_shot_threshold: classes with fewer than this many training images are "few-shot"; the
        rest are "medium-shot". Must not exceed `many_shot_threshold`.

    Returns:
      A JSON-serialisable dict with exactly these keys:
      - accuracy: trace / total (None when the matrix is empty).
      - balanced_accuracy: mean per-class recall over the classes present in the test set
        (= sklearn `balanced_accuracy_score`); equal to macro_recall.
      - macro_precision, macro_recall, macro_f1: unweighted means of the per-class values over the
        classes present in the test set (macro F1 is the mean of per-class F1, as in sklearn).
      - per_class_precision: list of C floats (0 for a class never predicted).
      - per_class_recall, per_class_f1: lists of C values, None for a class absent from the test set.
      - minority_f1: mean F1 over the minority classes (training share ζ_c < 1/K, Dorozynski &
        Rottensteiner 2022) present in the test set; None if there is none.
      - many_shot_accuracy, medium_shot_accuracy, few_shot_accuracy: mean per-class recall (i.e.
        per-class top-1 accuracy) over the classes of each group, as in the long-tail literature
        (Liu et al. 2019, OLTR protocol); None where a group has no class present in the test set.
      - num_examples: total count in the matrix (int).
    """
    conf = np.asarray(confusion)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1] or conf.shape[0] < 1:
        raise ValueError(f"confusion must be a non-empty square [C, C] matrix, got shape {conf.shape}.")
    if not (np.issubdtype(conf.dtype, np.integer) or np.issubdtype(conf.dtype, np.floating)):
        raise ValueError(f"confusion must be numeric, got dtype {conf.dtype}.")
    conf = conf.astype(np.float64)
    if not np.all(np.isfinite(conf)) or np.any(conf < 0):
        raise ValueError("confusion must contain finite, non-negative counts.")
    num_classes = conf.shape[0]
    train_counts = _counts_vector(train_class_counts, "train_class_counts")
    if train_counts.shape[0] != num_classes:
        raise ValueError(
            f"train_class_counts must have one entry per class ({num_classes}), got {train_counts.shape[0]}."
        )
    if few_shot_threshold > many_shot_threshold:
        raise ValueError(
            f"few_shot_threshold ({few_shot_threshold}) must not exceed many_shot_threshold "
            f"({many_shot_threshold})."
        )

    true_pos = np.diag(conf)
    support = conf.sum(axis=1)  # true examples per class
    predicted = conf.sum(axis=0)  # predictions per class
    total = conf.sum()
    present = support > 0

    precision = np.divide(true_pos, predicted, out=np.zeros(num_classes), where=predicted > 0)
    recall = np.divide(true_pos, support, out=np.zeros(num_classes), where=present)
    pr_sum = precision + recall
    f1 = np.divide(2.0 * precision * recall, pr_sum, out=np.zeros(num_classes), where=pr_sum > 0)

    macro_recall = _mean_or_none(recall[present])
    minority = _minority_mask(train_counts)
    many = train_counts > many_shot_threshold
    few = train_counts < few_shot_threshold
    medium = ~many & ~few
    return {
        "accuracy": float(true_pos.sum() / total) if total > 0 else None,
        "balanced_accuracy": macro_recall,
        "macro_precision": _mean_or_none(precision[present]),
        "macro_recall": macro_recall,
        "macro_f1": _mean_or_none(f1[present]),
        "per_class_precision": [float(p) for p in precision],
        "per_class_recall": _list_with_none(recall, present),
        "per_class_f1": _list_with_none(f1, present),
        "minority_f1": _mean_or_none(f1[minority & present]),
        "many_shot_accuracy": _mean_or_none(recall[many & present]),
        "medium_shot_accuracy": _mean_or_none(recall[medium & present]),
        "few_shot_accuracy": _mean_or_none(recall[few & present]),
        "num_examples": int(round(total)),
    }


def _total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """d_TV(p, q) = ½ Σ |p − q| (Gibbs & Su 2002)."""
    return 0.5 * float(np.abs(p - q).sum())


def _as_python_counts(counts: Sequence[Any]) -> list:
    return [int(c) if float(c).is_integer() else float(c) for c in counts]


def imbalance_statistics(class_counts: Any) -> dict:
    """Imbalance ratio and balance deviation of a class distribution (Dorozynski & Rottensteiner 2022,
    Eqs. 6–7).

    With ζ_c = n_c / Σ n the class shares, K classes and e the uniform distribution:
    - imbalance_ratio IR = max ζ / min ζ (Eq. 6). If some class has 0 images IR is infinite and is
      reported as None (JSON has no infinity).
    - balance_deviation BD = d_TV(ζ, e) / d_TV(ι_m, e), d_TV(p, q) = ½ Σ|p − q|, where
      m = #{c : ζ_c < 1/K} and ι_m has m zeros, K−m−1 entries 1/K and one entry 1 − (K−m−1)/K.
      Deviation from the paper's text: Eq. 7 prints the denominator as d(ζ, τ); we use the
      normaliser of the imbalance degree of Ortigosa-Hernández et al. (2017),
      on which the paper says BD relies; it reproduces the paper's Table 2 (material 0.66,
      technique 0.91, place 0.78, time 0.51) and keeps BD in [0, 1]. A balanced distribution
      (m = 0) and a single class (K = 1) give BD = 0 rather than 0/0.
    - minority_classes: the indices c with ζ_c < 1/K (compared exactly as K·n_c < Σ n).

    Args:
      class_counts: [K] non-negative counts (or shares) per class with a positive sum.

    Returns:
      dict with imbalance_ratio (float or None), balance_deviation (float), minority_classes
      (list of int), num_classes (int), class_counts (list of int, or float for non-integral input).
    """
    counts = _counts_vector(class_counts, "class_counts")
    total = counts.sum()
    if total <= 0:
        raise ValueError(f"class_counts must have a positive sum, got {counts.tolist()}.")
    num_classes = counts.shape[0]
    shares = counts / total
    uniform = np.full(num_classes, 1.0 / num_classes)
    minority = _minority_mask(counts)
    num_minority = int(minority.sum())
    if num_minority == 0:
        balance_deviation = 0.0
    else:
        extreme = np.concatenate(
            [
                np.zeros(num_minority),
                np.full(num_classes - num_minority - 1, 1.0 / num_classes),
                [1.0 - (num_classes - num_minority - 1) / num_classes],
            ]
        )
        balance_deviation = _total_variation(shares, uniform) / _total_variation(extreme, uniform)
    smallest = counts.min()
    return {
        "imbalance_ratio": float(counts.max() / smallest) if smallest > 0 else None,
        "balance_deviation": float(min(max(balance_deviation, 0.0), 1.0)),
        "minority_classes": [int(c) for c in np.flatnonzero(minority)],
        "num_classes": int(num_classes),
        "class_counts": _as_python_counts(np.asarray(class_counts).tolist()),
    }
