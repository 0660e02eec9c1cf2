"""Evaluates a train state on one split: confusion matrix, metrics, loss and (optionally) the embedding."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import numpy as np

from imbalance_jax import parallel
from imbalance_jax.data import eval_batches
from imbalance_jax.evaluation.metrics import classification_metrics


@dataclasses.dataclass
class EvalResult:
    metrics: dict
    confusion: np.ndarray
    embedding: Optional[np.ndarray] = None  # [N, D] features of the embedding layer
    labels: Optional[np.ndarray] = None
    logits: Optional[np.ndarray] = None  # [N, C]

    @property
    def class_accuracy(self) -> np.ndarray:
        rows = self.confusion.sum(1)
        return np.diag(self.confusion) / np.maximum(rows, 1)


def evaluate(exp: Any, eval_fn: Callable, state: Any, split_name: str, *,
             collect_embedding: bool = False) -> EvalResult:
    """Runs the jitted ``eval_fn`` (``train.compile_steps``) over every example of ``exp.splits.<split_name>``
    exactly once; ``exp`` is an :class:`imbalance_jax.experiment.Experiment`. ``collect_embedding`` also
    gathers the logits and the embedding layer's features of every example."""
    split = getattr(exp.splits, split_name)
    batches = eval_batches(split, exp.eval_options, exp.extras[split_name])
    outputs = [eval_fn(state, batch)
               for batch in parallel.prefetch_to_mesh(batches, exp.data_sharding, exp.options.device_prefetch)]
    # Sum on the host: eager jnp ops on sharded outputs would each compile a tiny XLA program.
    confusion = sum(np.asarray(o["confusion"]) for o in outputs)
    loss_sum = sum(float(o["loss_sum"]) for o in outputs)
    count = sum(int(o["count"]) for o in outputs)
    counts = np.bincount(exp.splits.train.labels, minlength=exp.splits.num_classes)
    metrics = classification_metrics(confusion, counts, many_shot_threshold=exp.options.many_shot_threshold,
                                     few_shot_threshold=exp.options.few_shot_threshold)
    metrics["loss"] = float(loss_sum) / max(int(count), 1)
    if not collect_embedding:
        return EvalResult(metrics, confusion)
    embeddings = np.concatenate([parallel.fetch(o["embedding"]) for o in outputs])[: len(split)]
    logits = np.concatenate([parallel.fetch(o["logits"]) for o in outputs])[: len(split)]
    return EvalResult(metrics, confusion, embeddings, split.labels, logits)
