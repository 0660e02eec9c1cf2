"""Per-class loss weights for class-imbalanced training.

Every function returns float weights ``w[C]`` normalised so that ``sum(w) == C`` (uniform weights
are all ones), accepts numpy or JAX arrays and is jit-able (string/float hyper-parameters are
static Python values; ``epoch`` in :func:`drw_weights` may be traced).

Zero class counts (a class absent from the training set) are clipped to 1 before any formula
(see :func:`safe_class_counts`), so no weight is ever NaN or inf. A class without training samples
contributes no loss term, so its weight only matters through the normalisation to ``sum == C``.
"""
from __future__ import annotations

from typing import Union

import chex
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

Array = jax.Array

CDB_BIAS_EPSILON = 1e-4  # TriCDB paper Eq. (2); the CDB reference code uses 0.01.


def safe_class_counts(class_counts: ArrayLike) -> Array:
    """Class counts ``n[C]`` as floats, clipped to ``>= 1`` so priors, margins and weights stay finite."""
    counts = jnp.asarray(class_counts)
    chex.assert_rank(counts, 1)
    if not (jnp.issubdtype(counts.dtype, jnp.integer) or jnp.issubdtype(counts.dtype, jnp.floating)):
        raise ValueError(f"class_counts must be an integer or float array, got dtype {counts.dtype}.")
    float_dtype = counts.dtype if jnp.issubdtype(counts.dtype, jnp.floating) else jnp.result_type(float)
    return jnp.maximum(counts.astype(float_dtype), 1.0)


def _normalise_to_num_classes(weights: Array) -> Array:
    """Rescale non-negative ``weights[C]`` to sum to C; an all-zero vector becomes uniform ones."""
    num_classes = weights.shape[0]
    total = jnp.sum(weights)
    positive = total > 0
    safe_total = jnp.where(positive, total, 1.0)
    return jnp.where(positive, weights * (num_classes / safe_total), jnp.ones_like(weights))


def inverse_frequency_weights(class_counts: ArrayLike) -> Array:
    """Inverse-frequency weights ``w_c ∝ 1 / n_c``, normalised to sum C (counts clipped to >= 1)."""
    counts = safe_class_counts(class_counts)
    return _normalise_to_num_classes(1.0 / counts)


def _check_beta(beta: float) -> None:
    if isinstance(beta, (int, float)) and not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must lie in [0, 1], got {beta}.")


def class_balanced_weights(class_counts: ArrayLike, *, beta: float = 0.9999) -> Array:
    """Class-balanced weights of Cui et al. (CVPR 2019): ``w_c ∝ 1 / E_{n_c} = (1 − β) / (1 − β^{n_c})``.

    ``1 − β^n`` is evaluated as ``−expm1(n·log β)`` for accuracy in float32. Since the weights are
    normalised to sum C, the constant ``1 − β`` cancels; ``β = 1`` uses the limit ``w_c ∝ 1/n_c``
    (inverse frequency) and ``β = 0`` gives uniform weights. Counts are clipped to >= 1.
    """
    _check_beta(beta)
    counts = safe_class_counts(class_counts)
    beta_arr = jnp.asarray(beta, dtype=counts.dtype)
    below_one = beta_arr < 1.0
    safe_beta = jnp.where(below_one, beta_arr, 0.5)
    one_minus_beta_pow_n = -jnp.expm1(counts * jnp.log(safe_beta))  # 1 − β^n, in (0, 1]
    effective_number = jnp.where(below_one, one_minus_beta_pow_n / (1.0 - safe_beta), counts)
    return _normalise_to_num_classes(1.0 / effective_number)


def cdb_weights(class_accuracy: ArrayLike, *, tau: Union[str, float] = "dynamic") -> Array:
    """Class-wise difficulty-based weights (Sinha et al. 2020; TriCDB paper Eqs. (1)–(3)).

    ``d_c = 1 − A_c`` (Eq. 1); with ``tau="dynamic"``, ``b = max_c A_c / (min_c A_c + 1e-4) − 1``
    (Eq. 2) and ``τ = sigmoid(b)``; otherwise ``τ`` is the given float (>= 0). ``w_c = d_c^τ``
    (Eq. 3), normalised so that ``sum(w) == C`` as in the reference code.

    Edge cases (reference behaviour kept where it is defined): a class with zero difficulty
    (``A_c = 1``) gets weight 0 whenever ``τ > 0`` (the dynamic τ is always > 0), exactly as
    ``numpy`` ``0 ** τ`` in the reference; with ``τ = 0`` every weight is ``d^0 = 1`` (``0^0 = 1``,
    as numpy). If every class is perfect the reference divides 0 by 0; here the weights are uniform
    (all ones). Accuracies are clipped to ``[0, 1]``. Deviation: the CDB reference code computes
    ``τ = sigmoid(max A / (min A + 0.01))`` (0.01 and no ``− 1``); we follow the TriCDB paper's Eq. (2).
    """
    accuracy = jnp.asarray(class_accuracy)
    chex.assert_rank(accuracy, 1)
    if not jnp.issubdtype(accuracy.dtype, jnp.floating):
        accuracy = accuracy.astype(jnp.result_type(float))
    accuracy = jnp.clip(accuracy, 0.0, 1.0)
    if isinstance(tau, str):
        if tau != "dynamic":
            raise ValueError(f"tau must be 'dynamic' or a non-negative float, got {tau!r}.")
        bias = jnp.max(accuracy) / (jnp.min(accuracy) + CDB_BIAS_EPSILON) - 1.0
        tau_arr = jax.nn.sigmoid(bias)
    else:
        if isinstance(tau, (int, float)) and tau < 0:
            raise ValueError(f"tau must be 'dynamic' or a non-negative float, got {tau!r}.")
        tau_arr = jnp.asarray(tau, dtype=accuracy.dtype)
    difficulty = 1.0 - accuracy
    positive = difficulty > 0
    safe_difficulty = jnp.where(positive, difficulty, 1.0)
    zero_difficulty_weight = jnp.where(tau_arr == 0, 1.0, 0.0).astype(accuracy.dtype)
    weights = jnp.where(positive, jnp.exp(tau_arr * jnp.log(safe_difficulty)), zero_difficulty_weight)
    return _normalise_to_num_classes(weights)


def drw_weights(
    epoch: Union[int, Array], class_counts: ArrayLike, *, start_epoch: int, beta: float = 0.9999
) -> Array:
    """Deferred re-weighting (DRW; Cao et al., NeurIPS 2019, Algorithm 1).

    Uniform weights (all ones) while ``epoch < start_epoch``; class-balanced weights
    (:func:`class_balanced_weights` with ``beta``) from ``start_epoch`` on. ``epoch`` may be traced.
    """
    _check_beta(beta)
    balanced = class_balanced_weights(class_counts, beta=beta)
    return jnp.where(jnp.asarray(epoch) >= start_epoch, balanced, jnp.ones_like(balanced))
