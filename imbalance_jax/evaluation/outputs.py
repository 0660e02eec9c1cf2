"""What a run writes besides its checkpoints: config.json, class_counts.json, TensorBoard scalars and, at the end,
metrics.json, the confusion-matrix and embedding plots, the embedding samples (.npz) and report.md; or, for a run
that diverged, a report.md that says so. JSON files are strict (a non-finite number is written as ``null`` and its
path listed under ``"non_finite"``) and replaced atomically. Only process 0 writes."""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping, Optional, Sequence

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


NON_FINITE_KEY = "non_finite"  # a JSON file's list of the paths whose value was not finite (written as null)


def finite_json(obj: Any, path: str = "") -> tuple[Any, list[str]]:
    """``obj`` with every NaN/inf replaced by None (numpy scalars as Python numbers), and the dotted paths of the
    replaced values."""
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None, [path or "."]
    if isinstance(obj, Mapping):
        out, bad = {}, []
        for key, value in obj.items():
            out[key], sub = finite_json(value, f"{path}.{key}" if path else str(key))
            bad += sub
        return out, bad
    if isinstance(obj, (list, tuple)):
        out, bad = [], []
        for index, value in enumerate(obj):
            clean, sub = finite_json(value, f"{path}.{index}" if path else str(index))
            out.append(clean)
            bad += sub
        return out, bad
    return obj, []


def write_json(path: str, obj: Any) -> None:
    """Strict JSON (see :func:`finite_json`; a dict gets the ``"non_finite"`` list when a value was replaced),
    written to a temporary file and renamed, so a killed process never leaves half a file."""
    if not _is_writer():
        return
    clean, bad = finite_json(obj)
    if bad and isinstance(clean, dict):
        clean[NON_FINITE_KEY] = bad
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(clean, f, indent=2, allow_nan=False)
    os.replace(tmp, path)


def write_run_description(workdir: str, config: ml_collections.ConfigDict, class_counts: Mapping[str, list],
                          class_names: list[str], config_changes: Sequence[Mapping[str, Any]] = ()) -> None:
    """config.json (the resolved config, plus ``"config_changes"`` when a rerun changed it with
    ``config.allow_config_change``) and class_counts.json (realised per-class counts of every split)."""
    description = json.loads(config.to_json_best_effort())
    if config_changes:
        description["config_changes"] = list(config_changes)
    write_json(os.path.join(workdir, "config.json"), description)
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
                        meta: Mapping[str, Any], wall_time: float, command: Optional[str] = None,
                        notes: Sequence[str] = (), extra: Optional[Mapping[str, Any]] = None) -> dict:
    """metrics.json, plots, embedding samples, report.md and the printed table; returns the metrics.

    ``notes`` are lines for the report's "Run notes" (config changes, checkpoint fall-backs, skipped steps);
    ``extra`` entries are added to metrics.json as they are."""
    metrics = {name: {**r.metrics, "confusion": np.asarray(r.confusion).astype(int).tolist()}
               for name, r in results.items()}
    metrics["imbalance"] = imbalance_statistics(class_counts["train"])
    metrics["epochs_trained"] = meta["epoch"]
    metrics["stopped_early"] = meta["stopped_early"]
    metrics["evaluated_epoch"] = meta.get("evaluated_epoch", meta["epoch"])
    metrics.update(extra or {})
    _, non_finite = finite_json(metrics)
    notes = list(notes) + ([f"non-finite values, written as null in metrics.json: {', '.join(non_finite)}"]
                           if non_finite else [])
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
                 wall_time_s=wall_time, command=command, class_names=class_names, notes=notes)
    print(f"\nTest metrics after {meta['epoch']} epochs ({wall_time:.1f} s), outputs in {workdir}:\n{table}",
          flush=True)
    return metrics


def write_diverged_report(workdir: str, *, config: ml_collections.ConfigDict, class_counts: Mapping[str, list],
                          class_names: list[str], message: str, notes: Sequence[str] = (), wall_time: float,
                          command: Optional[str] = None) -> None:
    """report.md of a run that diverged: what went non-finite where, and no metrics (no metrics.json either:
    the state that diverged has none worth reporting, and a sweep must not count the run as finished)."""
    if not _is_writer():
        return
    write_report(os.path.join(workdir, "report.md"), title=f"imbalance_jax run: {config.data.name} (diverged)",
                 config_text=str(config), metrics={}, imbalance={}, class_counts=class_counts, figures=[],
                 wall_time_s=wall_time, command=command, class_names=class_names,
                 notes=[f"**the run diverged**: {message}", *notes])
