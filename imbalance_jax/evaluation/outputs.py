"""What a run writes besides its checkpoints: config.json, class_counts.json, TensorBoard scalars and, at the end,
metrics.json, the confusion-matrix and embedding plots, the embedding samples (.npz) and report.md.
Only process 0 writes."""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional

import jax
import ml_collections
import numpy as np
import tensorflow as tf

from imbalance_jax.evaluation.evaluator import EvalResult
from imbalance_jax.evaluation.metrics import imbalance_statistics
from imbalance_jax.evaluation.plots import plot_confusion_matrix, plot_embedding
from imbalance_jax.evaluation.report import format_metrics_table, write_report


def _is_writer() -> bool:
    return jax.process_index() == 0


def write_json(path: str, obj: Any) -> None:
    if _is_writer():
        with open(path, "w") as f:
            json.dump(obj, f, indent=2)


def write_run_description(workdir: str, config: ml_collections.ConfigDict, class_counts: Mapping[str, list],
                          class_names: list[str]) -> None:
    """config.json (the resolved config) and class_counts.json (realised per-class counts of every split)."""
    write_json(os.path.join(workdir, "config.json"), json.loads(config.to_json_best_effort()))
    write_json(os.path.join(workdir, "class_counts.json"), {**class_counts, "class_names": class_names})


class ScalarWriter:
    """TensorBoard scalars (process 0 only)."""

    def __init__(self, logdir: str):
        self._writer = tf.summary.create_file_writer(logdir) if _is_writer() else None

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        if self._writer is None:
            return
        with self._writer.as_default():
            for name, value in scalars.items():
                if value is not None and np.isscalar(value):
                    tf.summary.scalar(name, float(value), step=step)
        self._writer.flush()


def scalars(prefix: str, metrics: Mapping[str, Any]) -> dict[str, float]:
    """The scalar entries of ``metrics`` as ``{prefix/name: value}``."""
    return {f"{prefix}/{k}": v for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None}


def save_embedding_sample(path: str, embedding: np.ndarray, labels: np.ndarray, layer: str,
                          max_points: int = 5000) -> None:
    """The embedding the plot shows, as ``embedding`` [n, D] float32, ``labels`` [n] and ``layer``: at most
    ``max_points`` rows, the same seed-0 subset as ``plot_embedding`` (for figures that combine runs)."""
    keep = np.arange(len(labels))
    if len(keep) > max_points:
        keep = np.sort(np.random.default_rng(0).choice(len(keep), max_points, replace=False))
    np.savez_compressed(path, embedding=np.asarray(embedding, np.float32)[keep],
                        labels=np.asarray(labels)[keep], layer=np.asarray(layer))


def write_final_outputs(workdir: str, *, config: ml_collections.ConfigDict, results: Mapping[str, EvalResult],
                        class_counts: Mapping[str, list], class_names: list[str], embedding_layer: str,
                        meta: Mapping[str, Any], wall_time: float, command: Optional[str] = None) -> dict:
    """metrics.json, plots, embedding samples, report.md and the printed table; returns the metrics."""
    metrics = {name: {**r.metrics, "confusion": np.asarray(r.confusion).astype(int).tolist()}
               for name, r in results.items()}
    metrics["imbalance"] = imbalance_statistics(class_counts["train"])
    metrics["epochs_trained"] = meta["epoch"]
    metrics["stopped_early"] = meta["stopped_early"]
    metrics["evaluated_epoch"] = meta.get("evaluated_epoch", meta["epoch"])
    write_json(os.path.join(workdir, "metrics.json"), metrics)
    if not _is_writer():
        return metrics
    figures = []
    for split in ("train", "test"):
        r = results[split]
        conf_path = os.path.join(workdir, f"confusion_{split}.png")
        emb_path = os.path.join(workdir, f"embedding_{split}.png")
        plot_confusion_matrix(r.confusion, conf_path, class_names=class_names, title=f"Confusion matrix ({split})")
        plot_embedding(r.embedding, r.labels, emb_path, class_names=class_names,
                       title=f"{embedding_layer} representation ({split})")
        save_embedding_sample(os.path.join(workdir, f"embedding_{split}.npz"), r.embedding, r.labels,
                              embedding_layer)
        figures += [conf_path, emb_path]
    table = format_metrics_table({k: metrics[k] for k in results})
    write_report(os.path.join(workdir, "report.md"), title=f"imbalance_jax run: {config.data.name}",
                 config_text=str(config), metrics={k: metrics[k] for k in results},
                 imbalance={"train": metrics["imbalance"]}, class_counts=class_counts, figures=figures,
                 wall_time_s=wall_time, command=command, class_names=class_names)
    print(f"\nTest metrics after {meta['epoch']} epochs ({wall_time:.1f} s), outputs in {workdir}:\n{table}",
          flush=True)
    return metrics
