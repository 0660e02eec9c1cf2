"""The classifier wrapper: backbone -> dropout -> projection head -> classifier, returning named features.

Call convention (big_vision style)::

    variables = model.init({"params": k1, "dropout": k2}, images, train=False)
    (logits, features), new_state = model.apply(
        variables, images, train=True, rngs={"dropout": k}, mutable=["batch_stats"])
    logits, features = model.apply(variables, images, train=False)

``features`` (all float32):
  "backbone"         pooled backbone output [B, F], before dropout;
  "head_0".."head_{k-1}"  each projection-head Dense output (activated, except the last, linear);
  "head_last"        the last head layer, or "backbone" when there is no head;
  "classifier_input" exactly what the classifier reads: head_last (with dropout applied when there
                     is no head), passed through BatchNorm for the affinity classifier only when
                     ``affinity_batch_norm`` is set (off by default, see below).
Logits are float32 [B, num_classes] whatever the compute dtype. The projection head and the
classifier always compute in float32 (they are tiny and feed the losses); only the backbone uses
``dtype``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from imbalance_jax.models.common import batch_norm, check_images, get_activation
from imbalance_jax.models.heads import CosineClassifier, NormedLinear, ProjectionHead, TDEClassifier

CLASSIFIERS: tuple[str, ...] = ("affinity", "cosine", "linear", "normed_linear", "tde")
BIAS_INITS: tuple[str, ...] = ("prior", "zeros")


class ImageClassifier(nn.Module):
    """Backbone + optional Dense projection head + linear / cosine / normed-linear / affinity / TDE classifier.

    Parameter names: "backbone", "head" (when head_widths is non-empty), "classifier" (the Dense,
    the cosine classifier, the AffinityHead, whose prototypes the affinity loss reads, or the
    TDEClassifier) and, for the affinity classifier with ``affinity_batch_norm``, "classifier_norm"
    (a BatchNorm on its input features). Hayat et al. (ICCV 2019, §4.2) only replace the softmax layer,
    so by default the last feature layer feeds the affinity head directly; the BatchNorm (found in an
    unofficial port) pins each feature dimension's variance and strands whole classes far from their
    prototypes (similarity ~e^-10 and below, no gradient), see docs/design.md §5.2. The TDE classifier
    keeps its feature moving average in ``batch_stats["classifier"]["feature_mean"]``, updated by every
    train-mode call, and returns the counterfactual TDE logits when ``train=False`` (see
    :class:`TDEClassifier`).
    """

    backbone: nn.Module
    num_classes: int
    head_widths: Sequence[int] = ()
    head_activation: str = "relu"
    dropout: float = 0.0
    classifier: str = "linear"
    classifier_activation: str = "none"  # applied to head_last before the classifier (silk paper: ReLU)
    cosine_scale: float = 16.0
    affinity_num_centres: int = 1
    affinity_sigma: float = 10.0
    affinity_distance: str = "sq_l2"
    affinity_similarity: str = "gaussian"
    affinity_batch_norm: bool = False
    classifier_bias_init: str = "zeros"  # linear classifier: "zeros" or "prior" (log-odds of a uniform prior)
    tde_num_heads: int = 2
    tde_tau: float = 16.0
    tde_gamma: float = 1.0 / 32.0
    tde_alpha: float = 1.5
    tde_momentum: float = 0.9

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
        check_images(images)
        pooled = self.backbone(images, train=train).astype(jnp.float32)
        features = {"backbone": pooled}
        x = pooled
        if self.dropout > 0.0:
            x = nn.Dropout(rate=self.dropout, deterministic=not train, name="dropout")(x)
        features["head_last"] = pooled
        if self.head_widths:
            outputs = ProjectionHead(tuple(self.head_widths), self.head_activation,
                                     name="head")(x)
            features.update({f"head_{i}": out for i, out in enumerate(outputs)})
            features["head_last"] = x = outputs[-1]
        x = self._classifier_input(x, train)
        features["classifier_input"] = x
        logits = self._logits(x, train)
        return logits.astype(jnp.float32), features

    def _classifier_input(self, x: jax.Array, train: bool) -> jax.Array:
        x = get_activation(self.classifier_activation, "config.model.classifier_activation")(x)
        if self.classifier == "affinity" and self.affinity_batch_norm:
            return batch_norm(train, jnp.float32)(name="classifier_norm")(x)
        return x

    def _bias_init(self):
        """``"prior"``: b = -log((1 - π) / π) with π = 1/C, the classifier-bias initialisation of the CDB-CE
        reference code (hitachi-rd-cv/CDB-loss, CIFAR-LT) after Lin et al. (2017, focal loss, §4.1)."""
        if self.classifier_bias_init == "zeros":
            return nn.initializers.zeros
        if self.classifier_bias_init == "prior":
            prior = 1.0 / self.num_classes
            return nn.initializers.constant(-math.log((1.0 - prior) / prior) if self.num_classes > 1 else 0.0)
        raise ValueError(f"config.model.classifier_bias_init must be one of {list(BIAS_INITS)}, "
                         f"got {self.classifier_bias_init!r}.")

    def _logits(self, x: jax.Array, train: bool) -> jax.Array:
        if self.classifier == "linear":
            return nn.Dense(self.num_classes, bias_init=self._bias_init(), name="classifier")(x)
        if self.classifier == "cosine":
            return CosineClassifier(self.num_classes, self.cosine_scale, name="classifier")(x)
        if self.classifier == "normed_linear":
            return NormedLinear(self.num_classes, name="classifier")(x)
        if self.classifier == "affinity":
            # Imported here so the models package works without the affinity head module.
            from imbalance_jax.models.affinity_head import AffinityHead

            return AffinityHead(
                self.num_classes,
                num_centres=self.affinity_num_centres,
                sigma=self.affinity_sigma,
                distance=self.affinity_distance,
                similarity=self.affinity_similarity,
                name="classifier",
            )(x)
        if self.classifier == "tde":
            return TDEClassifier(
                self.num_classes,
                num_heads=self.tde_num_heads,
                tau=self.tde_tau,
                gamma=self.tde_gamma,
                alpha=self.tde_alpha,
                momentum=self.tde_momentum,
                name="classifier",
            )(x, train=train)
        raise ValueError(
            f"config.model.classifier must be one of {list(CLASSIFIERS)}, got {self.classifier!r}.")


def apply_model(model: nn.Module, params, batch_stats, images: jax.Array, *, train: bool,
                rng: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array], object]:
    """``(logits, features, batch_stats)`` of one forward pass; in training mode the BatchNorm statistics are
    updated (returned) and dropout draws from ``rng``."""
    variables = {"params": params}
    if batch_stats:
        variables["batch_stats"] = batch_stats
    if train:
        (logits, features), new_vars = model.apply(variables, images, train=True, rngs={"dropout": rng},
                                                   mutable=["batch_stats"])
        return logits, features, new_vars.get("batch_stats", batch_stats)
    logits, features = model.apply(variables, images, train=False)
    return logits, features, batch_stats
