"""Evaluation: confusion-matrix metrics, imbalance statistics, plots and the run report."""
from imbalance_jax.evaluation.metrics import classification_metrics, confusion_matrix, imbalance_statistics
from imbalance_jax.evaluation.plots import plot_confusion_matrix, plot_embedding
from imbalance_jax.evaluation.report import format_metrics_table, write_report

__all__ = [
    "classification_metrics",
    "confusion_matrix",
    "format_metrics_table",
    "imbalance_statistics",
    "plot_confusion_matrix",
    "plot_embedding",
    "write_report",
]
