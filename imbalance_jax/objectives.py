"""Training objectives from named parts: a classification loss, per-class weights and auxiliary losses.

Everything here takes plain arguments; :mod:`imbalance_jax.experiment` maps ``config.loss`` onto them.

- Classification losses by name (``CLASSIFICATION_LOSSES``), built by :func:`classification_loss`.
- Class weightings by name (``CLASS_WEIGHTINGS``): :class:`ClassWeighting` gives each epoch's weights; they live
  in the train state and are recomputed after every epoch's validation (CDB) or switched at an epoch (DRW).
- Auxiliary losses by name (``AUX_LOSSES``): each one is a pure kernel of :mod:`imbalance_jax.losses` called on
  named feature layers (or, for the affinity loss, on the affinity head's similarities and prototypes).

The kernels themselves are pure functions in :mod:`imbalance_jax.losses`; nothing else switches on loss names.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from imbalance_jax import losses
from imbalance_jax.losses.clustering import semantic_triplet_terms
from imbalance_jax.models.affinity_head import PROTOTYPES_PATH

Array = jax.Array
Batch = Mapping[str, Array]


class ObjectiveConfigError(ValueError):
    """An auxiliary-loss entry built by :func:`aux_loss_config` names an unknown loss or option."""


# ------------------------------------------------------------------------------ classification losses
ClassificationLoss = Callable[[Array, Array, Array, Array], Array]  # (logits, labels, valid, class_weights)
CLASSIFICATION_LOSSES = ("ce", "focal", "ldam", "logit_adjusted", "none")
# How class weights reduce over a batch: "mean" = mean_i w_{y_i}·ℓ_i (the kernels'; the CDB-CE reference code);
# "weighted_mean" = Σ_i w_{y_i}·ℓ_i / Σ_i w_{y_i} (PyTorch's cross_entropy(weight=...): the LDAM-DRW reference code).
REDUCTIONS = ("mean", "weighted_mean")


def classification_loss(name: str, class_counts: np.ndarray, *, focal_gamma: float = 2.0,
                        ldam_max_margin: float = 0.5, ldam_scale: float = 30.0,
                        logit_adjustment_tau: float = 1.0, reduction: str = "mean") -> ClassificationLoss:
    """The classification loss ``name`` as ``(logits, labels, valid, class_weights) -> scalar``.

    ``"logit_adjusted"`` ignores the class weights (its prior correction replaces them); ``"none"`` is 0
    (an objective made of auxiliary losses only, e.g. the affinity loss). ``reduction`` (``REDUCTIONS``):
    with ``"weighted_mean"`` the weights are rescaled per batch by N_valid / Σ_i w_{y_i}, which turns the kernels'
    mean_i w_{y_i}·ℓ_i into Σ_i w_{y_i}·ℓ_i / Σ_i w_{y_i}."""
    base = _classification_loss(name, class_counts, focal_gamma=focal_gamma, ldam_max_margin=ldam_max_margin,
                                ldam_scale=ldam_scale, logit_adjustment_tau=logit_adjustment_tau)
    if reduction == "mean":
        return base
    if reduction != "weighted_mean":
        raise ValueError(f"class-weight reduction {reduction!r}; allowed: {list(REDUCTIONS)}")

    def weighted_mean(z, y, v, w):
        valid = v.astype(w.dtype)
        scale = jnp.sum(valid) / jnp.maximum(jnp.sum(w[y] * valid), 1e-12)
        return base(z, y, v, w * scale)

    return weighted_mean


def _classification_loss(name: str, class_counts: np.ndarray, *, focal_gamma: float, ldam_max_margin: float,
                         ldam_scale: float, logit_adjustment_tau: float) -> ClassificationLoss:
    counts = jnp.asarray(class_counts, jnp.float32)
    if name == "ce":
        return lambda z, y, v, w: losses.softmax_cross_entropy(z, y, v, class_weights=w)
    if name == "focal":
        return lambda z, y, v, w: losses.focal_loss(z, y, v, gamma=focal_gamma, class_weights=w)
    if name == "ldam":
        return lambda z, y, v, w: losses.ldam_loss(z, y, counts, v, max_margin=ldam_max_margin, scale=ldam_scale,
                                                   class_weights=w)
    if name == "logit_adjusted":
        return lambda z, y, v, w: losses.logit_adjusted_loss(z, y, counts, v, tau=logit_adjustment_tau)
    if name == "none":
        return lambda z, y, v, w: jnp.zeros((), jnp.float32)
    raise ValueError(f"classification loss {name!r}; allowed: {list(CLASSIFICATION_LOSSES)}")


# ------------------------------------------------------------------------------------ class weights
CLASS_WEIGHTINGS = ("none", "inverse_frequency", "class_balanced", "cdb", "drw")


@dataclasses.dataclass(frozen=True)
class ClassWeighting:
    """Per-class loss weights for each epoch, computed on the host between epochs."""

    name: str
    class_counts: np.ndarray
    beta: float = 0.9999
    tau: object = "dynamic"
    start_epoch: int = 0

    def __post_init__(self):
        if self.name not in CLASS_WEIGHTINGS:
            raise ValueError(f"class weighting {self.name!r}; allowed: {list(CLASS_WEIGHTINGS)}")

    def weights(self, epoch: int, val_class_accuracy: Optional[np.ndarray] = None) -> np.ndarray:
        """Weights for ``epoch`` (0-based); ``val_class_accuracy`` is the previous epoch's per-class
        validation accuracy (None before the first epoch ⇒ CDB starts uniform)."""
        c = len(self.class_counts)
        if self.name == "inverse_frequency":
            w = losses.inverse_frequency_weights(self.class_counts)
        elif self.name == "class_balanced":
            w = losses.class_balanced_weights(self.class_counts, beta=self.beta)
        elif self.name == "drw":
            w = losses.drw_weights(epoch, self.class_counts, start_epoch=self.start_epoch, beta=self.beta)
        elif self.name == "cdb" and val_class_accuracy is not None:
            w = losses.cdb_weights(np.asarray(val_class_accuracy, np.float32), tau=self.tau)
        else:  # "none", and CDB before the first validation
            w = np.ones(c)
        return np.asarray(w, np.float32)


# ---------------------------------------------------------------------------------- auxiliary losses
@dataclasses.dataclass(frozen=True)
class AuxLossSpec:
    """How the trainer calls an auxiliary kernel:
    ``kernel(x, batch[second_input], [params[param_path]], batch['valid'], **options)`` with ``x`` each of the
    term's feature layers in turn (summed), or the model's logits when ``reads_logits``."""

    kernel: Callable[..., Array]
    second_input: str = "label"  # the batch field passed after the embeddings
    default_layers: tuple[str, ...] = ("head_last",)
    param_path: tuple[str, ...] = ()  # model parameters the kernel needs (the affinity prototypes)
    reads_logits: bool = False  # the kernel reads the logits (the affinity head's similarities), not a layer
    # The kernel's companion returning named terms (same arguments): the loss is its ``value_key`` entry, and the
    # ``logged`` entries are logged per step (e.g. ASLoss inner / outer / boundary, the active-triplet fraction).
    terms_kernel: Optional[Callable[..., Mapping[str, Array]]] = None
    value_key: str = "loss"
    logged: tuple[str, ...] = ()

    def kernel_defaults(self) -> dict:
        """The kernel's keyword-only arguments and their defaults (what a config may set)."""
        params = inspect.signature(self.kernel).parameters.values()
        return {p.name: p.default for p in params
                if p.kind == inspect.Parameter.KEYWORD_ONLY and p.name != "axis_name"}


AUX_LOSSES: dict[str, AuxLossSpec] = {
    "asl": AuxLossSpec(losses.aggregation_separation_loss, terms_kernel=losses.aggregation_separation_terms,
                       value_key="total", logged=("inner", "outer", "boundary")),
    "triplet": AuxLossSpec(losses.triplet_loss, default_layers=("backbone",), terms_kernel=losses.triplet_loss_terms,
                           logged=("fraction_active",)),
    "semantic_triplet": AuxLossSpec(losses.semantic_triplet_loss, terms_kernel=semantic_triplet_terms,
                                    logged=("fraction_active",)),
    "colour_similarity": AuxLossSpec(losses.colour_similarity_loss, second_input="colour_hist"),
    # Hayat et al. (2019): the max-margin loss on the affinity head's own similarities and prototypes
    # (config.model.classifier="affinity", whose config.model.affinity sets σ, distance and similarity).
    "affinity": AuxLossSpec(losses.affinity_margin_loss, default_layers=(), param_path=PROTOTYPES_PATH,
                            reads_logits=True, terms_kernel=losses.affinity_margin_terms, value_key="total",
                            logged=("max_margin", "diversity")),
}


def aux_loss_config(name: str, weight: float = 0.0, layers: Optional[tuple[str, ...]] = None,
                    **overrides) -> ml_collections.ConfigDict:
    """A complete ``config.loss.aux.<name>`` entry: weight, layers and every kernel keyword with its default,
    so that each one can be overridden from the command line (for config files)."""
    if name not in AUX_LOSSES:
        raise ObjectiveConfigError(f"config.loss.aux.{name}: unknown auxiliary loss; allowed: {sorted(AUX_LOSSES)}")
    spec = AUX_LOSSES[name]
    entry = {"weight": float(weight), "layers": tuple(layers or spec.default_layers), **spec.kernel_defaults()}
    for key, value in overrides.items():
        if key not in entry:
            raise ObjectiveConfigError(f"config.loss.aux.{name}.{key}: unknown option; allowed: {sorted(entry)}")
        entry[key] = value
    return ml_collections.ConfigDict(entry)


@dataclasses.dataclass(frozen=True)
class AuxTerm:
    """One weighted auxiliary loss: ``weight * Σ_layers kernel(...)``."""

    name: str
    spec: AuxLossSpec
    weight: float
    layers: tuple[str, ...]
    kwargs: Mapping[str, object]

    def __call__(self, logits: Array, features: Mapping[str, Array], batch: Batch,
                 params: Optional[Mapping] = None) -> Array:
        return self.with_terms(logits, features, batch, params)[0]

    def with_terms(self, logits: Array, features: Mapping[str, Array], batch: Batch,
                   params: Optional[Mapping] = None) -> tuple[Array, dict[str, Array]]:
        """The loss (summed over the layers) and its logged terms, named ``<name>/<term>`` (one layer) or
        ``<name>/<layer>/<term>`` (several)."""
        extra = []
        if self.spec.param_path:
            node = params
            for key in self.spec.param_path:
                node = node[key]
            extra.append(node)
        names = ["logits"] if self.spec.reads_logits else list(self.layers)
        inputs = [logits] if self.spec.reads_logits else [features[layer] for layer in self.layers]
        kernel = self.spec.terms_kernel or self.spec.kernel
        total, logged = 0.0, {}
        for name, x in zip(names, inputs):
            out = kernel(x, batch[self.spec.second_input], *extra, batch["valid"], **self.kwargs)
            if self.spec.terms_kernel is None:
                total = total + out
                continue
            total = total + out[self.spec.value_key]
            prefix = self.name if len(names) == 1 else f"{self.name}/{name}"
            logged.update({f"{prefix}/{key}": out[key] for key in self.spec.logged})
        return total, logged


def aux_term(name: str, weight: float, layers: Sequence[str], options: Mapping[str, object]) -> AuxTerm:
    """The auxiliary loss ``name`` with its kernel ``options``; unknown names or options raise ValueError."""
    if name not in AUX_LOSSES:
        raise ValueError(f"auxiliary loss {name!r}; allowed: {sorted(AUX_LOSSES)}")
    spec = AUX_LOSSES[name]
    unknown = sorted(set(options) - set(spec.kernel_defaults()))
    if unknown:
        raise ValueError(f"auxiliary loss {name!r}: unknown option(s) {unknown}; allowed: "
                         f"{sorted(spec.kernel_defaults())}")
    return AuxTerm(name, spec, float(weight), tuple(layers), dict(options))


# ------------------------------------------------------------------------------------------ objective
@dataclasses.dataclass(frozen=True)
class Objective:
    """total = λ_cls·classification + Σ_aux weight·aux; returns ``(total, named terms)``."""

    classification: ClassificationLoss
    classification_weight: float
    aux: tuple[AuxTerm, ...]

    @property
    def batch_fields(self) -> set[str]:
        return {t.spec.second_input for t in self.aux}

    @property
    def feature_layers(self) -> set[str]:
        return {layer for t in self.aux for layer in t.layers}

    def __call__(self, logits: Array, features: Mapping[str, Array], batch: Batch, class_weights: Array,
                 params: Optional[Mapping] = None) -> tuple[Array, dict[str, Array]]:
        cls = self.classification(logits, batch["label"], batch["valid"], class_weights)
        terms = {"classification_loss": cls}
        total = self.classification_weight * cls
        for term in self.aux:
            value, logged = term.with_terms(logits, features, batch, params)
            terms[f"{term.name}_loss"] = value
            terms.update(logged)
            total = total + term.weight * value
        return total, terms
