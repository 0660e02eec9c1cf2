"""Flax Linen image classifiers; every model returns ``(logits, features: dict)``.

``create_model(config.model, num_classes)`` builds an :class:`ImageClassifier` around a backbone
chosen by name from ``BACKBONES``; see ``classifier.py`` for the call convention and feature keys.
"""
from imbalance_jax.models.classifier import CLASSIFIERS, ImageClassifier
from imbalance_jax.models.heads import CosineClassifier, ProjectionHead
from imbalance_jax.models.registry import BACKBONE_OPTIONS, BACKBONES, create_model

__all__ = [
    "BACKBONES",
    "BACKBONE_OPTIONS",
    "CLASSIFIERS",
    "CosineClassifier",
    "ImageClassifier",
    "ProjectionHead",
    "create_model",
]
