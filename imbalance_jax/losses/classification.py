"""Classification losses for imbalanced data: CE, weighted CE, focal, LDAM, logit-adjusted, CDB-CE.

Shared conventions:

* ``logits`` float[B, C], ``labels`` int[B] in ``[0, C)`` for valid rows, ``valid`` bool[B] or None.
  Invalid (padding) rows take part in nothing: their logits and labels are replaced by zeros before
  any arithmetic, so garbage there (even inf/NaN or label -1) gives zero gradient and no NaN.
* Reduction: ``mean_i w_{y_i}·ℓ_i`` over the valid rows — NOT divided by ``Σ w_{y_i}`` (PyTorch's
  ``cross_entropy(weight=...)`` divides by the weight sum; the CDB/TriCDB reference code uses the
  plain mean, and so do we). No valid row ⇒ 0 with zero gradient.
* ``axis_name``: inside ``jax.shard_map`` with the batch sharded over that mesh axis, the mean is
  taken over the global batch (psum of the masked sum and the count), so every device returns the
  value of a single call on the concatenated batch. Works with ``check_vma`` on or off.
* ``class_counts`` float/int[C] may contain zeros; they are clipped to 1 for priors and margins
  (:func:`imbalance_jax.losses.weighting.safe_class_counts`).
"""
from __future__ import annotations

from typing import Optional, Union

import jax
import jax.numpy as jnp

from imbalance_jax.losses.batch import check_embeddings_labels_valid, resolve_valid
from imbalance_jax.losses.reductions import per_example_mean
from imbalance_jax.losses.weighting import cdb_weights, safe_class_counts

Array = jax.Array


def _prepare(
    logits: Array, labels: Array, valid: Optional[Array]
) -> tuple[Array, Array, Array]:
    """Checks the inputs and neutralises invalid rows (zero logits, label 0)."""
    check_embeddings_labels_valid(logits, labels, valid)
    valid = resolve_valid(valid, logits.shape[0])
    logits = jnp.where(valid[:, None], logits, jnp.zeros_like(logits))
    labels = jnp.where(valid, labels, jnp.zeros_like(labels))
    return logits, labels, valid


def _check_per_class(array: Optional[Array], num_classes: int, name: str) -> None:
    if array is None:
        return
    if jnp.ndim(array) != 1 or jnp.shape(array)[0] != num_classes:
        raise ValueError(
            f"{name} must have shape ({num_classes},) to match logits, got {jnp.shape(array)}."
        )


def _true_class_log_prob(logits: Array, labels: Array) -> Array:
    """``log softmax(logits)[i, y_i]`` (stable for huge logits)."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]


def _reduce(
    per_example: Array,
    labels: Array,
    valid: Array,
    class_weights: Optional[Array],
    axis_name: Optional[str],
) -> Array:
    """``mean_i w_{y_i} ℓ_i`` over valid rows (global batch with ``axis_name``)."""
    if class_weights is not None:
        weights = jnp.asarray(class_weights, dtype=per_example.dtype)
        per_example = per_example * weights[labels]
    return per_example_mean(per_example, valid, axis_name)


def softmax_cross_entropy(
    logits: Array,
    labels: Array,
    valid: Optional[Array] = None,
    *,
    class_weights: Optional[Array] = None,
    axis_name: Optional[str] = None,
) -> Array:
    """(Weighted) softmax cross-entropy ``mean_i w_{y_i}·(−log softmax(z_i)_{y_i})``.

    With ``class_weights`` from :mod:`imbalance_jax.losses.weighting` this is weighted CE
    (inverse frequency), class-balanced softmax CE (Cui et al. 2019) or CDB-CE.
    """
    logits, labels, valid = _prepare(logits, labels, valid)
    _check_per_class(class_weights, logits.shape[-1], "class_weights")
    per_example = -_true_class_log_prob(logits, labels)
    return _reduce(per_example, labels, valid, class_weights, axis_name)


def _modulating_factor(log_p: Array, gamma: Union[float, Array]) -> Array:
    """``(1 − p)^γ`` with finite value and gradient at ``p = 1`` (``0^0 = 1``, ``0^γ = 0``)."""
    one_minus_p = -jnp.expm1(log_p)
    positive = one_minus_p > 0
    safe = jnp.where(positive, one_minus_p, jnp.ones_like(one_minus_p))
    at_zero = jnp.where(gamma == 0, 1.0, 0.0).astype(log_p.dtype)
    return jnp.where(positive, jnp.exp(gamma * jnp.log(safe)), at_zero)


def focal_loss(
    logits: Array,
    labels: Array,
    valid: Optional[Array] = None,
    *,
    gamma: float = 2.0,
    class_weights: Optional[Array] = None,
    axis_name: Optional[str] = None,
) -> Array:
    """Softmax focal loss, Lin et al. (ICCV 2017) Eq. (5): ``−α_t (1 − p_t)^γ log p_t``.

    ``class_weights`` plays the role of ``α_t`` (per true class). ``gamma = 0`` equals
    :func:`softmax_cross_entropy`. Deviation: the paper uses a sigmoid per class for detection; the
    multi-class softmax form (as in the class-balanced / LDAM baselines) is used here.
    """
    if isinstance(gamma, (int, float)) and gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}.")
    logits, labels, valid = _prepare(logits, labels, valid)
    _check_per_class(class_weights, logits.shape[-1], "class_weights")
    log_p = _true_class_log_prob(logits, labels)
    per_example = -_modulating_factor(log_p, jnp.asarray(gamma, dtype=log_p.dtype)) * log_p
    return _reduce(per_example, labels, valid, class_weights, axis_name)


def ldam_margins(class_counts: Array, max_margin: float = 0.5) -> Array:
    """LDAM margins ``Δ_c = K / n_c^{1/4}`` (Cao et al., NeurIPS 2019, Eq. 13), ``K`` set so max Δ = ``max_margin``.

    Counts are clipped to >= 1 (a class without samples gets the largest margin, ``max_margin``).
    """
    counts = safe_class_counts(class_counts)
    margins = counts ** -0.25
    return margins * (max_margin / jnp.max(margins))


def ldam_loss(
    logits: Array,
    labels: Array,
    class_counts: Array,
    valid: Optional[Array] = None,
    *,
    max_margin: float = 0.5,
    scale: float = 30.0,
    class_weights: Optional[Array] = None,
    axis_name: Optional[str] = None,
) -> Array:
    """LDAM loss, Cao et al. (NeurIPS 2019) Eq. (13): CE of ``s·(z − Δ_y·onehot(y))``.

    The margin ``Δ_{y_i}`` (:func:`ldam_margins`) is subtracted from the true-class logit, then all
    logits are multiplied by ``scale`` ``s`` before the CE. Deviation: Eq. (13) has no ``s``; the
    authors' code uses ``s = 30`` (meant for normalised features/weights) and so do we. Combine with
    :func:`imbalance_jax.losses.weighting.drw_weights` as ``class_weights`` for LDAM-DRW.
    """
    if isinstance(max_margin, (int, float)) and max_margin < 0:
        raise ValueError(f"max_margin must be >= 0, got {max_margin}.")
    if isinstance(scale, (int, float)) and scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}.")
    logits, labels, valid = _prepare(logits, labels, valid)
    num_classes = logits.shape[-1]
    _check_per_class(class_counts, num_classes, "class_counts")
    _check_per_class(class_weights, num_classes, "class_weights")
    margins = ldam_margins(class_counts, max_margin).astype(logits.dtype)
    one_hot = jax.nn.one_hot(labels, num_classes, dtype=logits.dtype)
    adjusted = scale * (logits - one_hot * margins[labels][:, None])
    per_example = -_true_class_log_prob(adjusted, labels)
    return _reduce(per_example, labels, valid, class_weights, axis_name)


def log_class_prior(class_counts: Array) -> Array:
    """``log π_c`` with ``π = n / Σ n``, counts clipped to >= 1 (so every class has a finite log prior)."""
    counts = safe_class_counts(class_counts)
    return jnp.log(counts) - jnp.log(jnp.sum(counts))


def logit_adjusted_loss(
    logits: Array,
    labels: Array,
    class_counts: Array,
    valid: Optional[Array] = None,
    *,
    tau: float = 1.0,
    axis_name: Optional[str] = None,
) -> Array:
    """Logit-adjusted softmax CE, Menon et al. (ICLR 2021) Eq. (10): CE of ``z + τ·log π``.

    ``τ = 1`` is the balanced softmax (Ren et al. 2020); ``τ = 0`` is plain CE. The prior ``π`` is
    the training class frequency (:func:`log_class_prior`, zero counts clipped to 1). Predict with
    the unadjusted logits.
    """
    logits, labels, valid = _prepare(logits, labels, valid)
    _check_per_class(class_counts, logits.shape[-1], "class_counts")
    adjusted = logits + tau * log_class_prior(class_counts).astype(logits.dtype)
    per_example = -_true_class_log_prob(adjusted, labels)
    return _reduce(per_example, labels, valid, None, axis_name)


def cdb_cross_entropy(
    logits: Array,
    labels: Array,
    class_accuracy: Array,
    valid: Optional[Array] = None,
    *,
    tau: Union[str, float] = "dynamic",
    axis_name: Optional[str] = None,
) -> Array:
    """CDB-CE (TriCDB paper Eq. 4): CE weighted by :func:`~imbalance_jax.losses.weighting.cdb_weights`.

    ``class_accuracy`` [C] is the per-class accuracy on the balanced validation set (epoch 0:
    pass ones or zeros for uniform weights). The weights are treated as constants (stop_gradient).
    """
    _check_per_class(class_accuracy, logits.shape[-1], "class_accuracy")
    weights = jax.lax.stop_gradient(cdb_weights(class_accuracy, tau=tau))
    return softmax_cross_entropy(
        logits, labels, valid, class_weights=weights, axis_name=axis_name
    )
