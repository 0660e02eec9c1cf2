"""Flax Linen image classifiers; every model returns ``(logits, features: dict)``.

``create_model(name, num_classes, **options)`` builds an :class:`ImageClassifier` around a backbone
chosen by name from ``BACKBONES``; see ``classifier.py`` for the call convention and feature keys.
"""
from imbalance_jax.models.classifier import CLASSIFIERS, ImageClassifier, apply_model
from imbalance_jax.models.heads import CosineClassifier, ProjectionHead, TDEClassifier
from imbalance_jax.models.pretrained import load_pretrained, save_npz
from imbalance_jax.models.registry import BACKBONE_OPTIONS, BACKBONES, create_model

__all__ = [
    "BACKBONES",
    "BACKBONE_OPTIONS",
    "CLASSIFIERS",
    "CosineClassifier",
    "ImageClassifier",
    "ProjectionHead",
    "TDEClassifier",
    "apply_model",
    "load_pretrained",
    "save_npz",
    "create_model",
]
