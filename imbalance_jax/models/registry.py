"""Backbone registry and ``create_model(name, num_classes, **options)``.

Each registry entry is a factory taking keyword arguments only: ``dtype`` always, and whichever of
the backbone options below the backbone understands. ``create_model`` takes those options as keyword
arguments (absent or None means the backbone's default) and refuses a non-default option that the
chosen backbone does not use. Error messages name the ``config.model`` field of each option.

Backbone options (keyword arguments, and config.model fields of the same name):
  width        int: base filters / width (small_cnn 32, cnn4 32, CIFAR ResNets 16,
               ImageNet ResNets 64, vgg16 64). Not used by ViT or EfficientNet.
  small_input  bool: ImageNet ResNets only; 3x3 stride-1 stem without max-pool (<= 64 px inputs).
  patch_size   int: ViT only (default 16).
  fc_layers    bool: vgg16 only; torchvision's two 4096-wide FC layers instead of global average
               pooling (what torchvision's ImageNet VGG-16 weights load into in full).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from imbalance_jax.losses.affinity import AFFINITY_DISTANCES, AFFINITY_SIMILARITIES
from imbalance_jax.models.affinity_head import PROTOTYPE_INITS
from imbalance_jax.models.cifar_resnet import CifarResNet
from imbalance_jax.models.classifier import BIAS_INITS, CLASSIFIERS, ImageClassifier
from imbalance_jax.models.common import ACTIVATIONS, Dtype, parse_dtype
from imbalance_jax.models.efficientnet import EFFICIENTNET_COEFFICIENTS, EfficientNet
from imbalance_jax.models.resnet import BasicBlock, Bottleneck, ResNet
from imbalance_jax.models.small_cnn import CNN4, SmallCNN
from imbalance_jax.models.vgg import VGG
from imbalance_jax.models.vit import VIT_SIZES, VisionTransformer


def small_cnn(*, dtype: Dtype = jnp.float32, width: int = 32) -> nn.Module:
    """Tiny CNN for 8x8 digits."""
    return SmallCNN(width=width, dtype=dtype)


def cnn4(*, dtype: Dtype = jnp.float32, width: int = 32) -> nn.Module:
    """4-layer CNN of Hayat et al. (conv 5x5 32/64/128, FC 128)."""
    return CNN4(width=width, dtype=dtype)


def _cifar_resnet(blocks_per_stage: int) -> Callable[..., nn.Module]:
    def build(*, dtype: Dtype = jnp.float32, width: int = 16) -> nn.Module:
        return CifarResNet(blocks_per_stage=blocks_per_stage, width=width, dtype=dtype)

    build.__doc__ = f"CIFAR ResNet-{6 * blocks_per_stage + 2} (option-A shortcuts)."
    return build


def _resnet(stage_sizes: tuple[int, ...], block_cls: type[nn.Module]) -> Callable[..., nn.Module]:
    def build(*, dtype: Dtype = jnp.float32, width: int = 64,
              small_input: bool = False) -> nn.Module:
        return ResNet(stage_sizes=stage_sizes, block_cls=block_cls, width=width,
                      small_input=small_input, dtype=dtype)

    build.__doc__ = f"ImageNet ResNet with {stage_sizes} {block_cls.__name__}s."
    return build


def vgg16(*, dtype: Dtype = jnp.float32, width: int = 64, fc_layers: bool = False) -> nn.Module:
    """VGG-16 with BN, global average pooling instead of the FC layers unless ``fc_layers``."""
    return VGG(width=width, fc_layers=fc_layers, dtype=dtype)


def _vit(size: str) -> Callable[..., nn.Module]:
    def build(*, dtype: Dtype = jnp.float32, patch_size: int = 16) -> nn.Module:
        return VisionTransformer(**VIT_SIZES[size], patch_size=patch_size, dtype=dtype)

    build.__doc__ = f"ViT-{size.upper()} with class token."
    return build


def _efficientnet(variant: str) -> Callable[..., nn.Module]:
    width_coefficient, depth_coefficient = EFFICIENTNET_COEFFICIENTS[variant]

    def build(*, dtype: Dtype = jnp.float32) -> nn.Module:
        return EfficientNet(width_coefficient, depth_coefficient, dtype=dtype)

    build.__doc__ = f"EfficientNet-{variant.upper()}."
    return build


BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": small_cnn,
    "cnn4": cnn4,
    "resnet20": _cifar_resnet(3),
    "resnet32": _cifar_resnet(5),
    "resnet56": _cifar_resnet(9),
    "resnet18": _resnet((2, 2, 2, 2), BasicBlock),
    "resnet34": _resnet((3, 4, 6, 3), BasicBlock),
    "resnet50": _resnet((3, 4, 6, 3), Bottleneck),
    "resnet101": _resnet((3, 4, 23, 3), Bottleneck),
    "resnet152": _resnet((3, 8, 36, 3), Bottleneck),
    "vgg16": vgg16,
    "vit_ti": _vit("ti"),
    "vit_s": _vit("s"),
    "vit_b": _vit("b"),
    **{f"efficientnet_{v}": _efficientnet(v) for v in EFFICIENTNET_COEFFICIENTS},
}

# Backbone options and the value that means "not set" (a backbone that does not take the option
# accepts only this value).
BACKBONE_OPTIONS: dict[str, Any] = {"width": None, "small_input": False, "patch_size": None,
                                    "fc_layers": False}


def _field(name: str) -> str:
    return f"config.model.{name}"


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{_field(name)} must be a positive int, got {value!r}.")
    return value


def _check_positive_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{_field(name)} must be a positive number, got {value!r}.")
    return float(value)


def _check_float_in(value: Any, name: str, low: float, high: float = float("inf")) -> float:
    """A number in [low, high); ValueError naming the field otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
        raise ValueError(f"{_field(name)} must be a number in [{low}, {high}), got {value!r}.")
    return float(value)


# config.model.tde fields and their defaults (TDE reference code; alpha of its CIFAR-100-LT config).
TDE_DEFAULTS: dict[str, Any] = {"num_heads": 2, "tau": 16.0, "gamma": 1.0 / 32.0, "alpha": 1.5,
                                "momentum": 0.9}


def _nested_options(given: Optional[Mapping[str, Any]], defaults: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``defaults`` updated with ``given``; unknown fields are refused, naming ``config.model.<name>``."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"{_field(name)} has unknown field(s) {unknown}; allowed: {sorted(defaults)}.")
    return {**defaults, **given}


def _tde_options(tde: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """Validated TDE options (defaults for absent fields; unknown fields are refused)."""
    value = _nested_options(tde, TDE_DEFAULTS, "tde")
    return {
        "tde_num_heads": _check_positive_int(value["num_heads"], "tde.num_heads"),
        "tde_tau": _check_positive_float(value["tau"], "tde.tau"),
        "tde_gamma": _check_float_in(value["gamma"], "tde.gamma", 0.0),
        "tde_alpha": _check_float_in(value["alpha"], "tde.alpha", 0.0),
        "tde_momentum": _check_float_in(value["momentum"], "tde.momentum", 0.0, 1.0),
    }


# Affinity head options (Hayat et al. 2019; reference implementation's σ = 10, m = 1) and their defaults.
AFFINITY_DEFAULTS: dict[str, Any] = {"num_centres": 1, "sigma": 10.0, "distance": "sq_l2",
                                     "similarity": "gaussian", "batch_norm": False,
                                     "prototype_init": "class_means"}


def _affinity_options(affinity: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    value = _nested_options(affinity, AFFINITY_DEFAULTS, "affinity")
    if not isinstance(value["batch_norm"], bool):
        raise ValueError(f"{_field('affinity.batch_norm')} must be True or False, got {value['batch_norm']!r}.")
    _check_choice(value["prototype_init"], "affinity.prototype_init", PROTOTYPE_INITS)
    return {
        "affinity_num_centres": _check_positive_int(value["num_centres"], "affinity.num_centres"),
        "affinity_sigma": _check_positive_float(value["sigma"], "affinity.sigma"),
        "affinity_distance": _check_choice(value["distance"], "affinity.distance", AFFINITY_DISTANCES),
        "affinity_similarity": _check_choice(value["similarity"], "affinity.similarity", AFFINITY_SIMILARITIES),
        "affinity_batch_norm": value["batch_norm"],
    }


def _check_choice(value: Any, name: str, allowed: Any) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{_field(name)} must be one of {sorted(allowed)}, got {value!r}.")
    return value


def _backbone_options(given: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The backbone options of ``given`` that are set; rejects unknown ones and those ``name`` does not take."""
    unknown = sorted(set(given) - set(BACKBONE_OPTIONS))
    if unknown:
        raise ValueError(f"create_model got unknown option(s) {unknown}; backbone options: {sorted(BACKBONE_OPTIONS)}.")
    accepted = inspect.signature(BACKBONES[name]).parameters
    options = {}
    for option, unset in BACKBONE_OPTIONS.items():
        value = given.get(option, unset)
        if value is None or value == unset:
            continue
        if option not in accepted:
            users = sorted(n for n, f in BACKBONES.items()
                           if option in inspect.signature(f).parameters)
            raise ValueError(f"{_field(option)}={value!r} is not used by backbone {name!r}; "
                             f"only {users} take it (leave it unset or {unset!r}).")
        if isinstance(unset, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{_field(option)} must be a bool, got {value!r}.")
        else:
            _check_positive_int(value, option)
        options[option] = value
    return options


def create_model(name: str, num_classes: int, *, head_widths: Sequence[int] = (), head_activation: str = "relu",
                 dropout: float = 0.0, classifier: str = "linear", classifier_activation: str = "none",
                 classifier_bias_init: str = "zeros", dtype: str = "float32", cosine_scale: float = 16.0,
                 affinity: Optional[Mapping[str, Any]] = None, tde: Optional[Mapping[str, Any]] = None,
                 **backbone_options: Any) -> ImageClassifier:
    """Builds an :class:`ImageClassifier`: backbone ``name`` (``BACKBONES``) + optional projection head of
    ``head_widths`` + the ``classifier`` (``CLASSIFIERS``). Every argument is checked; a bad value raises
    ValueError naming its ``config.model`` field and the allowed values.

    ``affinity``: fields of ``AFFINITY_DEFAULTS`` (classifier "affinity"; ``prototype_init`` is applied by the
    trainer, see ``affinity_head.PROTOTYPE_INITS``); ``tde``: fields of ``TDE_DEFAULTS`` (classifier "tde": K
    heads, scale tau, causal-norm gamma, TDE strength alpha >= 0 used at evaluation only, feature
    moving-average momentum in [0, 1); see heads.TDEClassifier); ``backbone_options``: those of this
    module's docstring. ``classifier_bias_init``: "zeros" or "prior" (linear classifier).
    """
    _check_choice(name, "name", BACKBONES)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}.")
    head_widths = head_widths or ()
    if not isinstance(head_widths, (tuple, list)) or not all(
            isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in head_widths):
        raise ValueError(f"{_field('head_widths')} must be a tuple of positive ints "
                         f"(() for no head), got {head_widths!r}.")
    _check_choice(head_activation, "head_activation", ACTIVATIONS)
    _check_choice(classifier_activation, "classifier_activation", ACTIVATIONS)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"{_field('dropout')} must be a float in [0, 1), got {dropout!r}.")
    _check_choice(classifier, "classifier", CLASSIFIERS)
    _check_choice(classifier_bias_init, "classifier_bias_init", BIAS_INITS)
    compute_dtype = parse_dtype(dtype, _field("dtype"))
    backbone = BACKBONES[name](dtype=compute_dtype, **_backbone_options(backbone_options, name))
    return ImageClassifier(
        backbone=backbone,
        num_classes=num_classes,
        head_widths=tuple(int(w) for w in head_widths),
        head_activation=head_activation,
        dropout=float(dropout),
        classifier=classifier,
        classifier_activation=classifier_activation,
        classifier_bias_init=classifier_bias_init,
        cosine_scale=_check_positive_float(cosine_scale, "cosine_scale"),
        **_affinity_options(affinity),
        **_tde_options(tde),
    )
