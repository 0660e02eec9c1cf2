"""The input normalisation of a run: the per-channel mean and std (of pixels in [0, 1]) the pipeline subtracts
and divides by, chosen by ``config.data.normalization``:

* ``"dataset"``: the statistics of the training split (:func:`imbalance_jax.data.splits.channel_statistics`);
* ``"imagenet"``: torchvision's ImageNet statistics, the inputs ImageNet-pretrained torchvision weights were trained
  on (``transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])``);
* ``"auto"``: the statistics recorded in ``config.model.pretrained_path`` when the file has them (every ``.npz``
  written by ``imbalance_jax.convert_weights`` records ImageNet's), else ``"dataset"``.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

NORMALIZATIONS = ("auto", "dataset", "imagenet")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


@dataclasses.dataclass(frozen=True)
class Normalization:
    """What a run normalises with: ``mean`` / ``std`` [C] and where they come from (``source``)."""

    mean: np.ndarray
    std: np.ndarray
    source: str  # "dataset" | "imagenet" | "pretrained file <path>"


def check_channels(choice: str, channels: int) -> None:
    """ValueError naming the field when ``config.data.normalization=choice`` cannot apply to images with
    ``channels`` channels (ImageNet's statistics are RGB's)."""
    if choice == "imagenet" and channels != 3:
        raise ValueError(f"config.data.normalization='imagenet' needs RGB images (config.data.channels=3); the "
                         f"images have {channels} channel(s): use 'dataset' or 'auto'")


def resolve(choice: str, dataset_mean: np.ndarray, dataset_std: np.ndarray,
            recorded: Optional[np.ndarray] = None, pretrained_path: str = "") -> Normalization:
    """The normalisation of ``config.data.normalization=choice`` for images with ``len(dataset_mean)`` channels;
    ``recorded`` is the [2, C] (mean; std) stored in ``pretrained_path``, if any. A choice whose statistics do not
    have the images' channel count is a ValueError naming the field."""
    if choice not in NORMALIZATIONS:
        raise ValueError(f"config.data.normalization={choice!r} is not valid; allowed: {list(NORMALIZATIONS)}")
    channels = len(dataset_mean)
    if choice == "auto" and recorded is not None:
        mean, std = np.asarray(recorded[0], np.float32), np.asarray(recorded[1], np.float32)
        if len(mean) != channels:
            raise ValueError(f"config.data.normalization='auto' takes the statistics recorded in "
                             f"config.model.pretrained_path={pretrained_path!r}, which are for {len(mean)} channels, "
                             f"but the images have {channels}; set config.data.normalization='dataset' (or "
                             f"config.data.channels={len(mean)})")
        return Normalization(mean, std, f"pretrained file {pretrained_path}")
    if choice == "imagenet":
        check_channels(choice, channels)
        return Normalization(IMAGENET_MEAN, IMAGENET_STD, "imagenet")
    return Normalization(np.asarray(dataset_mean, np.float32), np.asarray(dataset_std, np.float32), "dataset")
