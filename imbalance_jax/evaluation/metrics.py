"""Confusion-matrix metrics and class-imbalance statistics.

`confusion_matrix` is JAX (jit-able, runs inside the eval step); everything else is numpy on the
host and returns JSON-serialisable Python values (floats, ints, lists, None — never inf or NaN).
`classification_metrics` needs only the confusion matrix; `logit_metrics` (top-k accuracy, expected
calibration error, G-mean) needs the gathered logits of the split.

Conventions (shared by all functions here):
- The confusion matrix has rows = true class, columns = predicted class.
- A class with no test examples ("absent class") has an undefined recall and F1: they are reported
  as None and the class is left out of every average (balanced accuracy, macro P/R/F1, minority F1,
  many/medium/few-shot accuracy). This matches scikit-learn's `balanced_accuracy_score` and
  `precision_recall_fscore_support(..., labels=<classes present in y_true>, zero_division=0)`.
- A class that is never predicted has precision 0 (scikit-learn's `zero_division=0`).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, TypedDict

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "CalibrationBins", "classification_metrics", "confusion_matrix", "expected_calibration_error", "g_mean",
    "imbalance_statistics", "logit_metrics", "top_k_accuracy",
]


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
      - shot_groups: {"many_shot_threshold", "few_shot_threshold", "many_shot_classes",
        "medium_shot_classes", "few_shot_classes"}: the thresholds used and the class indices of
        each group, so a report can say that a group is empty instead of showing an empty value.
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
        "shot_groups": {
            "many_shot_threshold": _python_number(many_shot_threshold),
            "few_shot_threshold": _python_number(few_shot_threshold),
            "many_shot_classes": [int(c) for c in np.flatnonzero(many)],
            "medium_shot_classes": [int(c) for c in np.flatnonzero(medium)],
            "few_shot_classes": [int(c) for c in np.flatnonzero(few)],
        },
    }


def _python_number(value: Any) -> "int | float":
    value = float(value)
    return int(value) if value.is_integer() else value


# ------------------------------------------------------------------------------ metrics from logits
def _scores_and_labels(scores: Any, labels: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Validates float[N, C] scores (finite, N >= 1) and int[N] labels in [0, C)."""
    values = np.asarray(scores)
    if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 1:
        raise ValueError(f"{name} must be a non-empty float [N, C] array, got shape {values.shape}.")
    if values.dtype.kind in "bOSUMm":  # bool, object, strings, dates; bfloat16 (kind "V") converts fine
        raise ValueError(f"{name} must be a float array, got dtype {values.dtype}.")
    values = values.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be finite; {int((~np.isfinite(values)).any(axis=1).sum())} rows are not.")
    targets = np.asarray(labels)
    if targets.shape != (values.shape[0],):
        raise ValueError(f"labels must be int[N] with N = {values.shape[0]} (the rows of {name}), "
                         f"got shape {targets.shape}.")
    if not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {targets.dtype}.")
    num_classes = values.shape[1]
    if targets.min() < 0 or targets.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}) (the columns of {name}), "
                         f"got values in [{targets.min()}, {targets.max()}].")
    return values, targets.astype(np.int64)


def top_k_accuracy(scores: Any, labels: Any, *, k: int = 5) -> float:
    """Share of examples whose true class is among the k highest scores.

    `scores` are logits or probabilities (any monotone transform ranks the same). Ties are broken
    toward the lower class index, as `argmax` does, so k = 1 equals the accuracy of the confusion
    matrix; without ties this is scikit-learn's `top_k_accuracy_score(labels, scores, k=k,
    labels=range(C))`.

    Args:
      scores: float[N, C] finite scores, N >= 1.
      labels: int[N] true classes in [0, C).
      k: how many of the highest-scoring classes count as a hit; an int in [1, C].
    """
    values, targets = _scores_and_labels(scores, labels, "scores")
    num_classes = values.shape[1]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= num_classes:
        raise ValueError(f"k must be an int in [1, {num_classes}] (the number of classes), got {k!r}.")
    ranked = np.argsort(-values, axis=1, kind="stable")[:, : int(k)]  # descending, lower index first on ties
    return float(np.mean(np.any(ranked == targets[:, None], axis=1)))


class CalibrationBins(TypedDict):
    """Result of :func:`expected_calibration_error`: the ECE and the reliability-diagram data."""

    ece: float
    num_bins: int
    bin_edges: list  # num_bins + 1 floats, 0 ... 1
    bin_count: list  # examples per bin (int)
    bin_confidence: list  # mean confidence per bin; None for an empty bin
    bin_accuracy: list  # accuracy per bin; None for an empty bin


def expected_calibration_error(probs: Any, labels: Any, *, num_bins: int = 15) -> CalibrationBins:
    """Expected calibration error with equal-width confidence bins (Guo et al. 2017, Eq. 3).

    The confidence of an example is its largest probability, its prediction the argmax (lower
    class index on ties). Bin m (1-based) holds the confidences in ((m−1)/M, m/M] (a confidence of
    exactly 0 goes to the first bin), and

        ECE = Σ_m |B_m| / N · |acc(B_m) − conf(B_m)|,

    acc(B_m) the share of correct predictions and conf(B_m) the mean confidence in bin m. Empty bins
    add nothing. Guo et al. use M = 15.

    Args:
      probs: float[N, C] class probabilities (rows non-negative and summing to 1 within 1e-3), N >= 1.
        For logits use :func:`logit_metrics`, which applies the softmax in float64.
      labels: int[N] true classes in [0, C).
      num_bins: M, a positive int.

    Returns:
      :class:`CalibrationBins`: the ECE, M, the M + 1 bin edges, and per bin the count, the mean
      confidence and the accuracy (None for an empty bin): the data of a reliability diagram.
    """
    values, targets = _scores_and_labels(probs, labels, "probs")
    if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive int, got {num_bins!r}.")
    if values.min() < -1e-6 or values.max() > 1.0 + 1e-6 or not np.allclose(values.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("probs must be probabilities: entries in [0, 1] and every row summing to 1 "
                         "(pass logits to logit_metrics instead).")
    num_bins = int(num_bins)
    confidence = values.max(axis=1)
    correct = (values.argmax(axis=1) == targets).astype(np.float64)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    # searchsorted(side="left") on the inner edges maps (edges[m], edges[m + 1]] to m (and 0 to bin 0).
    bins = np.searchsorted(edges[1:-1], confidence, side="left")
    count = np.bincount(bins, minlength=num_bins)
    confidence_sum = np.bincount(bins, weights=confidence, minlength=num_bins)
    correct_sum = np.bincount(bins, weights=correct, minlength=num_bins)
    filled = count > 0
    mean_confidence = np.divide(confidence_sum, count, out=np.zeros(num_bins), where=filled)
    accuracy = np.divide(correct_sum, count, out=np.zeros(num_bins), where=filled)
    ece = float(np.sum(count / confidence.shape[0] * np.abs(accuracy - mean_confidence)))
    return {
        "ece": ece,
        "num_bins": num_bins,
        "bin_edges": [float(e) for e in edges],
        "bin_count": [int(c) for c in count],
        "bin_confidence": _list_with_none(mean_confidence, filled),
        "bin_accuracy": _list_with_none(accuracy, filled),
    }


def g_mean(per_class_recall: Sequence[Optional[float]], *, correction: float = 0.0) -> Optional[float]:
    """Geometric mean of the per-class recalls, (Π_c r_c)^(1/K) over the K classes with a recall.

    None entries (classes absent from the test set, as in `classification_metrics`) are left out,
    like in balanced accuracy; no defined recall gives None. A class with recall 0 makes the G-mean
    0, unless `correction` > 0 replaces zero recalls by that value (imbalanced-learn's
    `geometric_mean_score(..., average="multiclass", correction=...)`, after Kubat & Matwin 1997).
    Computed as exp(mean(log r)), which does not underflow for many classes.

    Args:
      per_class_recall: recalls in [0, 1], or None for an undefined one.
      correction: value substituted for a zero recall, in [0, 1] (default 0: no substitution).
    """
    if isinstance(per_class_recall, (str, bytes)) or np.ndim(np.asarray(per_class_recall, dtype=object)) != 1:
        raise ValueError("per_class_recall must be a 1-D sequence of recalls (float in [0, 1] or None).")
    if not 0.0 <= float(correction) <= 1.0:
        raise ValueError(f"correction must be in [0, 1], got {correction!r}.")
    defined = np.array([float(r) for r in per_class_recall if r is not None], dtype=np.float64)
    if defined.size == 0:
        return None
    if not np.all(np.isfinite(defined)) or defined.min() < 0.0 or defined.max() > 1.0:
        raise ValueError(f"per_class_recall must hold values in [0, 1] or None, got {list(per_class_recall)}.")
    defined = np.where(defined == 0.0, float(correction), defined)
    if np.any(defined == 0.0):
        return 0.0
    return float(np.exp(np.mean(np.log(defined))))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def logit_metrics(logits: Any, labels: Any, *, k: int = 5, num_bins: int = 15) -> dict:
    """The metrics that need the logits rather than the confusion matrix, for one split.

    Returns a JSON-serialisable dict to merge into the `classification_metrics` dict of the same
    split (no key overlaps):
      - top_{k}_accuracy (e.g. "top_5_accuracy"): only when C > k (otherwise it is trivially 1).
      - expected_calibration_error: ECE of softmax(logits) (float64) with `num_bins` equal-width
        bins (Guo et al. 2017, Eq. 3; see `expected_calibration_error`).
      - calibration: the `CalibrationBins` (per-bin count, confidence, accuracy) for the
        reliability diagram (`imbalance_jax.evaluation.plots.plot_reliability_diagram`).
      - g_mean: geometric mean of the per-class recalls of the argmax predictions over the classes
        present in `labels` (see `g_mean`; 0 when some present class is never recognised).

    If some logits are not finite (a diverged run), every value is None (no exception at the end of
    a run); `top_k_accuracy` and `expected_calibration_error` themselves raise on such input.

    Args:
      logits: float[N, C] (the gathered eval outputs without padding rows), N >= 1.
      labels: int[N] true classes in [0, C).
      k: top-k accuracy's k, a positive int (default 5).
      num_bins: ECE bins, a positive int (default 15, as Guo et al.).
    """
    values = np.asarray(logits)
    if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 1:
        raise ValueError(f"logits must be a non-empty float [N, C] array, got shape {values.shape}.")
    if values.dtype.kind in "bOSUMm":
        raise ValueError(f"logits must be a float array, got dtype {values.dtype}.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}.")
    num_classes = values.shape[1]
    top_key = f"top_{int(k)}_accuracy"
    if not np.all(np.isfinite(values.astype(np.float64))):
        _scores_and_labels(np.zeros(values.shape), labels, "logits")  # still reject malformed labels
        result: dict = {"expected_calibration_error": None, "calibration": None, "g_mean": None}
        if num_classes > k:
            result[top_key] = None
        return result
    values, targets = _scores_and_labels(values, labels, "logits")
    calibration = expected_calibration_error(_softmax(values), targets, num_bins=num_bins)
    predictions = values.argmax(axis=1)
    support = np.bincount(targets, minlength=num_classes)
    hits = np.bincount(targets[predictions == targets], minlength=num_classes)
    recall = [float(h / n) if n > 0 else None for h, n in zip(hits, support)]
    result = {}
    if num_classes > k:
        result[top_key] = top_k_accuracy(values, targets, k=int(k))
    result.update({"expected_calibration_error": calibration["ece"], "calibration": dict(calibration),
                   "g_mean": g_mean(recall)})
    return result


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
