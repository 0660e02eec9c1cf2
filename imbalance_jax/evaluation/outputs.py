"""What a run writes besides its checkpoints: config.json, class_counts.json, TensorBoard (scalars per epoch,
hyper-parameters, images at the end) and, at the end, metrics.json (with top-k accuracy, calibration, G-mean and
the post-hoc corrections), the logits of val/test (.npz), the confusion-matrix, embedding, reliability and
long-tail plots, the embedding samples (.npz) and report.md; or, for a run that diverged, a report.md that says
so. JSON files are strict (a non-finite number is written as ``null`` and its path listed under
``"non_finite"``) and replaced atomically. Only process 0 writes."""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping, Optional, Sequence

import jax
import ml_collections
import numpy as np
from clu import metric_writers

from imbalance_jax.evaluation.evaluator import EvalResult
from imbalance_jax.evaluation.metrics import imbalance_statistics, logit_metrics
from imbalance_jax.evaluation.plots import (plot_confusion_matrix, plot_embedding, plot_long_tail,
                                            plot_reliability_diagram)
from imbalance_jax.evaluation.posthoc import logit_adjustment
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


class MetricWriter:
    """TensorBoard through CommonLoopUtils' ``metric_writers`` (process 0 only): per-epoch scalars, the run's
    hyper-parameters (the flattened config, so sweep runs compare side by side) and images at the end."""

    def __init__(self, logdir: str):
        self._writer = metric_writers.SummaryWriter(logdir) if _is_writer() else None

    def write_hparams(self, config: ml_collections.ConfigDict) -> None:
        if self._writer is not None:
            self._writer.write_hparams(flat_hparams(config))
            self._writer.flush()

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        if self._writer is None:
            return
        values = {name: float(value) for name, value in scalars.items() if value is not None and np.isscalar(value)}
        self._writer.write_scalars(step, values)
        self._writer.flush()

    def write_images(self, step: int, paths: Mapping[str, str]) -> None:
        """PNG files written by the plots, as TensorBoard images (RGB uint8)."""
        if self._writer is None:
            return
        from matplotlib import image as mpimg

        images = {}
        for name, path in paths.items():
            pixels = mpimg.imread(path)[..., :3]
            images[name] = (np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8)[None]
        self._writer.write_images(step, images)
        self._writer.flush()


def flat_hparams(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """``{dotted.path: value}`` of every config leaf; sequences become strings (TensorBoard's hparams take
    scalars and strings only)."""
    flat: dict[str, Any] = {}

    def visit(prefix: str, node: Any) -> None:
        if isinstance(node, (ml_collections.ConfigDict, dict)):
            for key in sorted(node.keys()):
                visit(f"{prefix}.{key}" if prefix else key, node[key])
        elif isinstance(node, (bool, int, float, str)):
            flat[prefix] = node
        else:
            flat[prefix] = str(node)

    visit("", config)
    return flat


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


def save_logits(path: str, result: EvalResult) -> None:
    """``logits`` [N, C], ``labels`` [N] and ``features`` [N, D] (the embedding layer) of every example of a split,
    for post-hoc corrections and paired tests without rerunning the model."""
    np.savez_compressed(path, logits=np.asarray(result.logits, np.float32), labels=np.asarray(result.labels),
                        features=np.asarray(result.embedding, np.float32))


def _posthoc_section(posthoc: Mapping[str, Any], metrics: Mapping[str, Mapping]) -> str:
    """Markdown: each post-hoc correction next to the plain model, per split, at the value chosen on val."""
    lines = ["## Post-hoc corrections (no retraining)", ""]
    names = {"logit_adjustment": ("logit adjustment z − τ·log π (Menon et al. 2021)", "τ"),
             "tde_alpha": ("TDE strength α (Tang et al. 2020)", "α")}
    for key, result in posthoc.items():
        title, symbol = names[key]
        value = result["tau"] if key == "logit_adjustment" else result["alpha"]
        lines += [f"**{title}**: {symbol} = {value:g}, chosen on the {result['selected_on']} split by balanced "
                  f"accuracy over {symbol} ∈ {{{', '.join(result['grid'][result['selected_on']])}}}.", "",
                  "| split | metric | plain | corrected |", "|---|---|---:|---:|"]
        for split, values in result["metrics"].items():
            for metric, corrected in values.items():
                plain = metrics.get(split, {}).get(metric)
                fmt = (lambda v: "n/a" if v is None else f"{v:.4f}")
                lines.append(f"| {split} | {metric} | {fmt(plain)} | {fmt(corrected)} |")
        lines.append("")
    return "\n".join(lines)


def write_final_outputs(workdir: str, *, config: ml_collections.ConfigDict, results: Mapping[str, EvalResult],
                        class_counts: Mapping[str, list], class_names: list[str], embedding_layer: str,
                        meta: Mapping[str, Any], wall_time: float, command: Optional[str] = None,
                        shot_thresholds: Optional[Mapping[str, int]] = None,
                        extra_posthoc: Optional[Mapping[str, Any]] = None,
                        writer: Optional[MetricWriter] = None, warnings: Sequence[str] = (),
                        data_summary: Optional[Mapping[str, Any]] = None, notes: Sequence[str] = (),
                        extra: Optional[Mapping[str, Any]] = None) -> dict:
    """metrics.json (with the logit metrics and the post-hoc corrections), the logits of val/test (.npz), plots,
    embedding samples, report.md, TensorBoard images and the printed table; returns the metrics.

    ``extra_posthoc``: corrections that need the model (the TDE alpha sweep), computed by the caller;
    ``data_summary``: what loading left out (``DataSplits.load_summary()``); ``notes`` are lines for the report's
    "Run notes" (config changes, checkpoint fall-backs, skipped steps); ``extra`` entries are added to metrics.json
    as they are."""
    thresholds = dict(shot_thresholds or {})
    metrics = {}
    for name, r in results.items():
        metrics[name] = {**r.metrics, "confusion": np.asarray(r.confusion).astype(int).tolist()}
        if r.logits is not None:
            metrics[name].update(logit_metrics(r.logits, r.labels))
    metrics["imbalance"] = imbalance_statistics(class_counts["train"])
    metrics["epochs_trained"] = meta["epoch"]
    metrics["stopped_early"] = meta["stopped_early"]
    metrics["evaluated_epoch"] = meta.get("evaluated_epoch", meta["epoch"])
    if data_summary is not None:
        metrics["data"] = dict(data_summary)
    posthoc = {}
    with_logits = {name: (r.logits, r.labels) for name, r in results.items() if r.logits is not None}
    if "val" in with_logits and np.all(np.isfinite(with_logits["val"][0])):
        posthoc["logit_adjustment"] = logit_adjustment(
            {k: v for k, v in with_logits.items() if k in ("val", "test")}, class_counts["train"], **thresholds)
    posthoc.update(extra_posthoc or {})
    if posthoc:
        metrics["posthoc"] = posthoc
    metrics.update(extra or {})
    _, non_finite = finite_json(metrics)
    notes = list(notes) + ([f"non-finite values, written as null in metrics.json: {', '.join(non_finite)}"]
                           if non_finite else [])
    write_json(os.path.join(workdir, "metrics.json"), metrics)
    if not _is_writer():
        return metrics
    for split in ("val", "test"):
        if split in results and results[split].logits is not None:
            save_logits(os.path.join(workdir, f"logits_{split}.npz"), results[split])
    figures, images = [], {}
    for split in ("train", "test"):
        if split not in results:
            continue
        r = results[split]
        conf_path = os.path.join(workdir, f"confusion_{split}.png")
        emb_path = os.path.join(workdir, f"embedding_{split}.png")
        plot_confusion_matrix(r.confusion, conf_path, class_names=class_names, title=f"Confusion matrix ({split})")
        plot_embedding(r.embedding, r.labels, emb_path, class_names=class_names,
                       title=f"{embedding_layer} representation ({split})")
        save_embedding_sample(os.path.join(workdir, f"embedding_{split}.npz"), r.embedding, r.labels,
                              embedding_layer)
        figures += [conf_path, emb_path]
        images[f"{split}/confusion_matrix"] = conf_path
    test = metrics.get("test", {})
    if test.get("calibration"):
        path = os.path.join(workdir, "reliability_test.png")
        plot_reliability_diagram(test["calibration"], path, title="Reliability diagram (test)")
        figures.append(path)
    if "per_class_recall" in test:
        path = os.path.join(workdir, "long_tail_test.png")
        plot_long_tail(class_counts["train"], test["per_class_recall"], path, label="test recall",
                       many_shot_threshold=thresholds.get("many_shot_threshold"),
                       few_shot_threshold=thresholds.get("few_shot_threshold"), class_names=class_names)
        figures.append(path)
        images["test/long_tail"] = path
    if writer is not None:
        writer.write_images(int(meta["epoch"]), images)
    table = format_metrics_table({k: metrics[k] for k in results})
    write_report(os.path.join(workdir, "report.md"), title=f"imbalance_jax run: {config.data.name}",
                 config_text=str(config), metrics={k: metrics[k] for k in results},
                 imbalance={"train": metrics["imbalance"]}, class_counts=class_counts, figures=figures,
                 wall_time_s=wall_time, command=command, class_names=class_names, data=metrics.get("data"), notes=notes,
                 sections=([_posthoc_section(posthoc, metrics)] if posthoc else [])
                 + (["## Start-up warnings\n\n" + "\n".join(f"- {w}" for w in warnings)] if warnings else []))
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
