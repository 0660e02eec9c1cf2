"""Backbone registry and ``create_model(model_config, num_classes)``.

Each registry entry is a factory taking keyword arguments only: ``dtype`` always, and whichever of
the backbone options below the backbone understands. ``create_model`` reads those options from
``config.model`` (absent or None means the backbone's default) and refuses a non-default option
that the chosen backbone does not use.

Backbone options (config.model fields):
  width        int: base filters / width (small_cnn 32, cnn4 32, CIFAR ResNets 16,
               ImageNet ResNets 64, vgg16 64). Not used by ViT or EfficientNet.
  small_input  bool: ImageNet ResNets only; 3x3 stride-1 stem without max-pool (<= 64 px inputs).
  patch_size   int: ViT only (default 16).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from imbalance_jax.models.cifar_resnet import CifarResNet
from imbalance_jax.models.affinity_head import PROTOTYPE_INITS
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


def vgg16(*, dtype: Dtype = jnp.float32, width: int = 64) -> nn.Module:
    """VGG-16 with BN, global average pooling instead of the FC layers."""
    return VGG(width=width, dtype=dtype)


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
BACKBONE_OPTIONS: dict[str, Any] = {"width": None, "small_input": False, "patch_size": None}


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


def _tde_options(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Validated ``config.model.tde`` (defaults for absent fields; unknown fields are refused)."""
    tde = cfg.get("tde", None) or {}
    unknown = sorted(set(tde.keys()) - set(TDE_DEFAULTS))
    if unknown:
        raise ValueError(f"{_field('tde')} has unknown field(s) {unknown}; "
                         f"allowed: {sorted(TDE_DEFAULTS)}.")
    value = {k: tde.get(k, default) for k, default in TDE_DEFAULTS.items()}
    return {
        "tde_num_heads": _check_positive_int(value["num_heads"], "tde.num_heads"),
        "tde_tau": _check_positive_float(value["tau"], "tde.tau"),
        "tde_gamma": _check_float_in(value["gamma"], "tde.gamma", 0.0),
        "tde_alpha": _check_float_in(value["alpha"], "tde.alpha", 0.0),
        "tde_momentum": _check_float_in(value["momentum"], "tde.momentum", 0.0, 1.0),
    }


def _check_choice(value: Any, name: str, allowed: Any) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{_field(name)} must be one of {sorted(allowed)}, got {value!r}.")
    return value


def _backbone_options(cfg: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Reads the options the backbone ``name`` takes; rejects set options it does not take."""
    accepted = inspect.signature(BACKBONES[name]).parameters
    options = {}
    for option, unset in BACKBONE_OPTIONS.items():
        value = cfg.get(option, unset)
        if value is None or value == unset:
            continue
        if option not in accepted:
            users = sorted(n for n, f in BACKBONES.items()
                           if option in inspect.signature(f).parameters)
            raise ValueError(f"{_field(option)}={value!r} is not used by backbone {name!r}; "
                             f"only {users} take it (leave it unset or {unset!r}).")
        if option == "small_input":
            if not isinstance(value, bool):
                raise ValueError(f"{_field(option)} must be a bool, got {value!r}.")
        else:
            _check_positive_int(value, option)
        options[option] = value
    return options


def create_model(model_config: Mapping[str, Any], num_classes: int) -> ImageClassifier:
    """Builds the classifier described by ``config.model`` (a ConfigDict or a plain mapping).

    Fields (defaults when absent): name (required), head_widths=(), head_activation="relu",
    dropout=0.0, classifier="linear", classifier_bias_init="zeros" (linear classifier; "prior"),
    dtype="float32", cosine_scale=16.0,
    affinity={num_centres: 1, sigma: 10.0, distance: "sq_l2", similarity: "gaussian",
    batch_norm: False, prototype_init: "class_means"} (prototype_init is applied by the trainer, see
    ``affinity_head.PROTOTYPE_INITS``),
    tde={num_heads: 2, tau: 16.0, gamma: 1/32, alpha: 1.5, momentum: 0.9} (classifier "tde":
    K heads, scale tau, causal-norm gamma, TDE strength alpha >= 0 used at evaluation only, feature
    moving-average momentum in [0, 1); see heads.TDEClassifier), plus the backbone options of this
    module's docstring.
    """
    cfg = model_config
    name = cfg.get("name", None)
    _check_choice(name, "name", BACKBONES)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}.")

    head_widths = cfg.get("head_widths", ()) or ()
    if not isinstance(head_widths, (tuple, list)) or not all(
            isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in head_widths):
        raise ValueError(f"{_field('head_widths')} must be a tuple of positive ints "
                         f"(() for no head), got {head_widths!r}.")
    head_activation = _check_choice(cfg.get("head_activation", "relu"), "head_activation",
                                    ACTIVATIONS)
    classifier_activation = _check_choice(cfg.get("classifier_activation", "none"), "classifier_activation",
                                          ACTIVATIONS)
    dropout = cfg.get("dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"{_field('dropout')} must be a float in [0, 1), got {dropout!r}.")
    classifier = _check_choice(cfg.get("classifier", "linear"), "classifier", CLASSIFIERS)
    bias_init = _check_choice(cfg.get("classifier_bias_init", "zeros"), "classifier_bias_init", BIAS_INITS)
    dtype = parse_dtype(cfg.get("dtype", "float32"), _field("dtype"))
    cosine_scale = _check_positive_float(cfg.get("cosine_scale", 16.0), "cosine_scale")
    affinity = cfg.get("affinity", None) or {}
    num_centres = _check_positive_int(affinity.get("num_centres", 1), "affinity.num_centres")
    sigma = _check_positive_float(affinity.get("sigma", 10.0), "affinity.sigma")
    affinity_batch_norm = affinity.get("batch_norm", False)
    if not isinstance(affinity_batch_norm, bool):
        raise ValueError(f"{_field('affinity.batch_norm')} must be True or False, got {affinity_batch_norm!r}.")
    _check_choice(affinity.get("prototype_init", "class_means"), "affinity.prototype_init", PROTOTYPE_INITS)
    tde = _tde_options(cfg)

    backbone = BACKBONES[name](dtype=dtype, **_backbone_options(cfg, name))
    return ImageClassifier(
        backbone=backbone,
        num_classes=num_classes,
        head_widths=tuple(int(w) for w in head_widths),
        head_activation=head_activation,
        dropout=float(dropout),
        classifier=classifier,
        classifier_activation=classifier_activation,
        cosine_scale=cosine_scale,
        affinity_num_centres=num_centres,
        affinity_sigma=sigma,
        affinity_distance=str(affinity.get("distance", "sq_l2")),
        affinity_similarity=str(affinity.get("similarity", "gaussian")),
        affinity_batch_norm=affinity_batch_norm,
        classifier_bias_init=bias_init,
        **tde,
    )
