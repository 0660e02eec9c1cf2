"""Post-hoc corrections of a trained model's logits, chosen on the validation split and reported on the others.

Logit adjustment (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, Eq. 8 — the post-hoc
form): predict ``argmax_y f_y(x) − τ·log π_y`` with ``π`` the training-class prior, for a grid of τ; τ = 0 is the
plain model. τ is chosen by validation balanced accuracy (ties: the smaller τ), and every split is reported at that
τ. Nothing is retrained: only the saved logits are needed.

The TDE strength α (Tang et al., NeurIPS 2020) enters only inference too; its grid needs the model itself and is
run by the trainer and ``python -m imbalance_jax.evaluate`` (``sweep_choice`` picks it the same way).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from imbalance_jax.evaluation.metrics import classification_metrics

DEFAULT_TAUS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
# What the post-hoc tables report per split.
REPORTED = ("accuracy", "balanced_accuracy", "macro_f1", "minority_f1", "many_shot_accuracy",
            "medium_shot_accuracy", "few_shot_accuracy")


def adjust_logits(logits: np.ndarray, train_class_counts: Sequence[int], tau: float) -> np.ndarray:
    """``logits − τ·log π`` with ``π = counts / Σ counts`` (a class without training images gets π = 1/N_total,
    as if it had one, so the adjustment stays finite)."""
    counts = np.maximum(np.asarray(train_class_counts, np.float64), 1.0)
    return np.asarray(logits, np.float64) - tau * np.log(counts / counts.sum())


def confusion_from_predictions(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """[C, C] counts, rows = true class."""
    return np.bincount(np.asarray(labels) * num_classes + np.asarray(predictions),
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def metrics_of_logits(logits: np.ndarray, labels: np.ndarray, train_class_counts: Sequence[int],
                      **thresholds: Any) -> dict:
    """``classification_metrics`` of the argmax predictions of ``logits``."""
    num_classes = np.asarray(logits).shape[1]
    confusion = confusion_from_predictions(labels, np.argmax(logits, axis=1), num_classes)
    return classification_metrics(confusion, np.asarray(train_class_counts), **thresholds)


def sweep_choice(val_scores: Mapping[float, float]) -> float:
    """The grid value with the best validation score; ties go to the smallest value (the least correction)."""
    best = max(val_scores.values())
    return min(value for value, score in val_scores.items() if score >= best)


def logit_adjustment(split_logits: Mapping[str, tuple[np.ndarray, np.ndarray]], train_class_counts: Sequence[int],
                     *, taus: Sequence[float] = DEFAULT_TAUS, select_on: str = "val", **thresholds: Any) -> dict:
    """Post-hoc logit adjustment over ``taus``, τ chosen on ``select_on`` by balanced accuracy.

    Args:
      split_logits: split name -> (logits [N, C], labels [N]); must contain ``select_on``.
      train_class_counts: [C] training images per class (the prior π).
      taus: the τ grid (include 0 to keep the plain model as a candidate).
      thresholds: many/few-shot thresholds passed to ``classification_metrics``.

    Returns ``{"tau": chosen τ, "selected_on": select_on, "grid": {split: {τ: balanced accuracy}},
    "metrics": {split: REPORTED metrics at the chosen τ}}`` (JSON-serialisable; τ keys are strings).
    """
    if select_on not in split_logits:
        raise ValueError(f"logit_adjustment needs the {select_on!r} split to choose tau; got {sorted(split_logits)}")
    grid: dict[str, dict[float, float]] = {}
    for split, (logits, labels) in split_logits.items():
        grid[split] = {float(tau): metrics_of_logits(adjust_logits(logits, train_class_counts, tau), labels,
                                                     train_class_counts, **thresholds)["balanced_accuracy"]
                       for tau in taus}
    tau = sweep_choice(grid[select_on])
    chosen = {split: {k: metrics_of_logits(adjust_logits(logits, train_class_counts, tau), labels,
                                           train_class_counts, **thresholds)[k] for k in REPORTED}
              for split, (logits, labels) in split_logits.items()}
    return {"tau": tau, "selected_on": select_on,
            "grid": {split: {f"{t:g}": v for t, v in values.items()} for split, values in grid.items()},
            "metrics": chosen}
