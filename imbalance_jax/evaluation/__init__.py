"""Evaluation: confusion-matrix and logit metrics, imbalance statistics, plots and the run report."""
from imbalance_jax.evaluation.metrics import (classification_metrics, confusion_matrix, expected_calibration_error,
                                              g_mean, imbalance_statistics, logit_metrics, top_k_accuracy)
from imbalance_jax.evaluation.plots import (plot_confusion_matrix, plot_embedding, plot_long_tail,
                                            plot_reliability_diagram)
from imbalance_jax.evaluation.report import format_metrics_table, write_report

__all__ = [
    "classification_metrics",
    "confusion_matrix",
    "expected_calibration_error",
    "format_metrics_table",
    "g_mean",
    "imbalance_statistics",
    "logit_metrics",
    "plot_confusion_matrix",
    "plot_embedding",
    "plot_long_tail",
    "plot_reliability_diagram",
    "top_k_accuracy",
    "write_report",
]
