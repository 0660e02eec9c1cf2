"""The one place that turns ``config.loss`` into a training objective (a small registry by name).

``config.loss``:
- ``name``: the classification loss (``CLASSIFICATION_LOSSES``), ``weight`` its factor λ_cls;
  hyper-parameters as flat fields (``focal_gamma``, ``ldam_max_margin``, ``ldam_scale``, ``logit_adjustment_tau``).
- ``class_weighting``: ``{name, beta, tau, start_epoch}``, name in ``CLASS_WEIGHTINGS``; the weights live in
  the train state and are recomputed after every epoch's validation (CDB) or switched at an epoch (DRW).
- ``aux``: a ConfigDict keyed by auxiliary loss name (``AUX_LOSSES``); each entry has ``weight`` (0 disables it),
  ``layers`` (feature names the loss reads; the loss is summed over them) and the kernel's keyword arguments.

The kernels themselves are pure functions in :mod:`imbalance_jax.losses`; nothing else switches on loss names.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from imbalance_jax import losses

Array = jax.Array
Batch = Mapping[str, Array]


class ObjectiveConfigError(ValueError):
    """A ``config.loss`` value is invalid; the message names the field and the allowed values."""


# ------------------------------------------------------------------------------ classification losses
ClassificationLoss = Callable[[Array, Array, Array, Array], Array]  # (logits, labels, valid, class_weights)


def _classification_losses(cfg: ml_collections.ConfigDict, counts: np.ndarray) -> dict[str, Callable[[], ClassificationLoss]]:
    counts = jnp.asarray(counts, jnp.float32)
    return {
        "ce": lambda: lambda z, y, v, w: losses.softmax_cross_entropy(z, y, v, class_weights=w),
        "focal": lambda: lambda z, y, v, w: losses.focal_loss(z, y, v, gamma=float(cfg.get("focal_gamma", 2.0)),
                                                              class_weights=w),
        "ldam": lambda: lambda z, y, v, w: losses.ldam_loss(
            z, y, counts, v, max_margin=float(cfg.get("ldam_max_margin", 0.5)),
            scale=float(cfg.get("ldam_scale", 30.0)), class_weights=w),
        "logit_adjusted": lambda: lambda z, y, v, w: losses.logit_adjusted_loss(
            z, y, counts, v, tau=float(cfg.get("logit_adjustment_tau", 1.0))),
        "none": lambda: lambda z, y, v, w: jnp.zeros((), jnp.float32),
    }


CLASSIFICATION_LOSSES = ("ce", "focal", "ldam", "logit_adjusted", "none")


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

    def weights(self, epoch: int, val_class_accuracy: Optional[np.ndarray] = None) -> np.ndarray:
        """Weights for ``epoch`` (0-based); ``val_class_accuracy`` is the previous epoch's per-class
        validation accuracy (None before the first epoch ⇒ CDB starts uniform)."""
        c = len(self.class_counts)
        if self.name == "none":
            w = np.ones(c)
        elif self.name == "inverse_frequency":
            w = losses.inverse_frequency_weights(self.class_counts)
        elif self.name == "class_balanced":
            w = losses.class_balanced_weights(self.class_counts, beta=self.beta)
        elif self.name == "drw":
            w = losses.drw_weights(epoch, self.class_counts, start_epoch=self.start_epoch, beta=self.beta)
        elif self.name == "cdb":
            w = np.ones(c) if val_class_accuracy is None else losses.cdb_weights(
                np.asarray(val_class_accuracy, np.float32), tau=self.tau)
        else:
            raise ObjectiveConfigError(f"config.loss.class_weighting.name={self.name!r}; allowed: {list(CLASS_WEIGHTINGS)}")
        return np.asarray(w, np.float32)


# ---------------------------------------------------------------------------------- auxiliary losses
@dataclasses.dataclass(frozen=True)
class AuxLossSpec:
    """How the trainer calls an auxiliary kernel:
    ``kernel(features[layer], batch[second_input], [params[param_path]], batch['valid'], **kw)``."""

    kernel: Callable[..., Array]
    second_input: str = "label"  # the batch field passed after the embeddings
    default_layers: tuple[str, ...] = ("head_last",)
    param_path: tuple[str, ...] = ()  # model parameters the kernel needs (e.g. the affinity prototypes)

    def kernel_defaults(self) -> dict:
        """The kernel's keyword-only arguments and their defaults (what a config may set)."""
        params = inspect.signature(self.kernel).parameters.values()
        return {p.name: p.default for p in params
                if p.kind == inspect.Parameter.KEYWORD_ONLY and p.name != "axis_name"}


AUX_LOSSES: dict[str, AuxLossSpec] = {
    "asl": AuxLossSpec(losses.aggregation_separation_loss),
    "triplet": AuxLossSpec(losses.triplet_loss, default_layers=("backbone",)),
    "semantic_triplet": AuxLossSpec(losses.semantic_triplet_loss),
    "colour_similarity": AuxLossSpec(losses.colour_similarity_loss, second_input="colour_hist"),
    # Hayat et al.: the max-margin loss on the affinity classifier's input features and its prototypes
    # (config.model.classifier="affinity"; sigma/distance/similarity must equal config.model.affinity's).
    "affinity": AuxLossSpec(losses.affinity_loss, default_layers=("classifier_input",),
                            param_path=("classifier", "prototypes")),
}


def aux_loss_config(name: str, weight: float = 0.0, layers: Optional[tuple[str, ...]] = None,
                    **overrides) -> ml_collections.ConfigDict:
    """A complete ``config.loss.aux.<name>`` entry: weight, layers and every kernel keyword with its default,
    so that each one can be overridden from the command line."""
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
    name: str
    spec: AuxLossSpec
    weight: float
    layers: tuple[str, ...]
    kwargs: Mapping[str, object]

    def __call__(self, features: Mapping[str, Array], batch: Batch, params: Optional[Mapping] = None) -> Array:
        extra = []
        if self.spec.param_path:
            node = params
            for key in self.spec.param_path:
                node = node[key]
            extra.append(node)
        return sum(self.spec.kernel(features[layer], batch[self.spec.second_input], *extra, batch["valid"],
                                    **self.kwargs)
                   for layer in self.layers)


def _aux_terms(aux_config: ml_collections.ConfigDict) -> tuple[AuxTerm, ...]:
    terms = []
    for name in sorted(aux_config.keys()):
        if name not in AUX_LOSSES:
            raise ObjectiveConfigError(f"config.loss.aux.{name}: unknown auxiliary loss; allowed: {sorted(AUX_LOSSES)}")
        entry = aux_config[name].to_dict()
        weight = float(entry.pop("weight", 0.0))
        if weight < 0:
            raise ObjectiveConfigError(f"config.loss.aux.{name}.weight={weight} must be >= 0 (0 disables the loss)")
        layers = entry.pop("layers", AUX_LOSSES[name].default_layers)
        layers = (layers,) if isinstance(layers, str) else tuple(layers)
        allowed = AUX_LOSSES[name].kernel_defaults()
        unknown = sorted(set(entry) - set(allowed))
        if unknown:
            raise ObjectiveConfigError(f"config.loss.aux.{name}: unknown option(s) {unknown}; allowed: "
                                       f"{sorted(allowed) + ['layers', 'weight']}")
        if weight > 0:
            terms.append(AuxTerm(name, AUX_LOSSES[name], weight, layers, entry))
    return tuple(terms)


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
            value = term(features, batch, params)
            terms[f"{term.name}_loss"] = value
            total = total + term.weight * value
        return total, terms


def build_objective(loss_config: ml_collections.ConfigDict, class_counts: np.ndarray) -> Objective:
    name = loss_config.get("name", "ce")
    registry = _classification_losses(loss_config, class_counts)
    if name not in registry:
        raise ObjectiveConfigError(f"config.loss.name={name!r}; allowed: {list(CLASSIFICATION_LOSSES)}")
    aux = _aux_terms(loss_config.get("aux", ml_collections.ConfigDict()))
    return Objective(registry[name](), float(loss_config.get("weight", 1.0)), aux)


def build_class_weighting(loss_config: ml_collections.ConfigDict, class_counts: np.ndarray) -> ClassWeighting:
    cw = loss_config.get("class_weighting", ml_collections.ConfigDict({"name": "none"}))
    name = cw.get("name", "none")
    if name not in CLASS_WEIGHTINGS:
        raise ObjectiveConfigError(f"config.loss.class_weighting.name={name!r}; allowed: {list(CLASS_WEIGHTINGS)}")
    tau = cw.get("tau", "dynamic")
    return ClassWeighting(name, np.asarray(class_counts), beta=float(cw.get("beta", 0.9999)),
                          tau=tau if tau == "dynamic" else float(tau), start_epoch=int(cw.get("start_epoch", 0)))


def validate_loss_config(loss_config: ml_collections.ConfigDict) -> None:
    """Raises ObjectiveConfigError for an unknown loss, weighting or auxiliary option (no data needed)."""
    dummy_counts = np.ones(2)
    build_objective(loss_config, dummy_counts)
    build_class_weighting(loss_config, dummy_counts)
