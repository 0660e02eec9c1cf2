"""Builds the train / val / test splits of a run from config, deterministically from the seed.

Order: load the source → keep the classes of ``data.classes`` (relabelled 0..K-1 in that order) → carve a balanced test split when the source has none →
hold out a balanced validation set → apply the imbalance profile to what is left → label noise
on the training labels. The balanced hold-outs are taken *before* the imbalance. Every step is an index
operation, the same on in-memory (:class:`ArraySplit`) and file-backed (:class:`FileSplit`) splits.

Normalisation statistics: the per-channel mean and std of every training pixel for in-memory splits; for
file-backed splits, of a fixed random sample of ``STATS_SAMPLE`` training images (drawn from the seed, decoded as
for evaluation), so that no pass over the whole dataset is needed.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

from imbalance_jax.data import imbalance as imb
from imbalance_jax.data.sources import ArraySplit, DatasetError, FileSplit, RawDataset, load_raw_dataset

STATS_SAMPLE = 512  # file-backed splits: training images whose pixels give the normalisation mean / std


@dataclasses.dataclass
class DataSplits:
    train: "ArraySplit | FileSplit"
    val: "Optional[ArraySplit | FileSplit]"
    test: "ArraySplit | FileSplit"
    num_classes: int
    class_names: Sequence[str]
    mean: np.ndarray  # per-channel mean of the training images, in [0, 1]
    std: np.ndarray
    skipped_images: Sequence[str] = ()  # "path (error)": unreadable, skipped (data.unreadable_images="skip")
    dropped_classes: Sequence[str] = ()  # "name (why)": empty, dropped (data.empty_class_folders="drop")
    normalization: str = "dataset"  # where mean / std come from (imbalance_jax.data.normalization)

    def load_summary(self, max_listed: int = 10) -> dict:
        """What loading left out, for metrics.json and report.md: the number of skipped unreadable images, the
        first ``max_listed`` of them, and the dropped empty classes; and the input normalisation."""
        return {"skipped_images": len(self.skipped_images),
                "skipped_images_first": list(self.skipped_images[:max_listed]),
                "dropped_classes": list(self.dropped_classes),
                "normalization": {"source": self.normalization, "mean": [float(v) for v in self.mean],
                                  "std": [float(v) for v in self.std]}}

    def class_counts(self) -> dict[str, list[int]]:
        out = {"train": imb.class_counts(self.train.labels, self.num_classes).tolist(),
               "test": imb.class_counts(self.test.labels, self.num_classes).tolist()}
        if self.val is not None:
            out["val"] = imb.class_counts(self.val.labels, self.num_classes).tolist()
        return out

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.train.image_shape


def channel_statistics(images: np.ndarray, chunk: int = 1 << 18) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (at least 1e-3) of the pixels of uint8 ``images`` [N, H, W, C], in [0, 1]; two
    passes over chunks of ``chunk`` pixels, so memory stays at one chunk in float64 (6 MiB for RGB)."""
    channels = images.shape[-1]
    pixels = images.reshape(-1, channels)
    count = max(len(pixels), 1)

    def pieces():
        for i in range(0, len(pixels), chunk):
            yield pixels[i:i + chunk].astype(np.float64) / 255.0

    mean = sum((p.sum(0) for p in pieces()), np.zeros(channels)) / count
    var = sum((((p - mean) ** 2).sum(0) for p in pieces()), np.zeros(channels)) / count
    return mean, np.maximum(np.sqrt(var), 1e-3)


def _split_rng(seed: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng([seed, purpose])


def select_classes(raw: RawDataset, classes: Sequence[int]) -> RawDataset:
    """The source restricted to ``classes`` (source label ids), relabelled 0..K-1 in the given order;
    ``()`` keeps every class. Raises DatasetError naming ``config.data.classes`` for a bad list."""
    if not classes:
        return raw
    ids = [int(c) for c in classes]
    if len(set(ids)) != len(ids) or not all(0 <= c < raw.num_classes for c in ids) or len(ids) < 2:
        raise DatasetError(f"config.data.classes={tuple(classes)!r} must list at least 2 distinct class ids in "
                         f"[0, {raw.num_classes - 1}]")
    lookup = np.full(raw.num_classes, -1, np.int64)
    lookup[ids] = np.arange(len(ids))

    def restrict(split):
        if split is None:
            return None
        keep = np.flatnonzero(lookup[split.labels] >= 0)
        return split.take(keep).with_labels(lookup[split.labels[keep]])

    return RawDataset(restrict(raw.train), restrict(raw.test), len(ids), [raw.class_names[c] for c in ids],
                      raw.skipped_images, raw.dropped_classes)


def build_splits(raw: RawDataset, *, seed: int, classes: Sequence[int] = (), test_fraction: float = 0.2,
                 val_per_class: int = 0, val_fraction: float = 0.0, profile: str = "none", ratio: float = 1.0,
                 minority_classes: Sequence[int] = (), fraction: float = 1.0, counts: Sequence[int] = (),
                 label_noise: float = 0.0) -> DataSplits:
    """The train / val / test splits of ``raw`` (see the module docstring for the order), deterministic from
    ``seed``. ``profile``, ``ratio``, ``minority_classes``, ``fraction``, ``counts``: the imbalance
    (:func:`imbalance.target_counts`); ``label_noise``: symmetric noise rate on the training labels."""
    raw = select_classes(raw, classes)
    num_classes = raw.num_classes
    train, test = raw.train, raw.test

    if test is None:
        kept, held = imb.balanced_holdout(train.labels, num_classes, _split_rng(seed, 1), fraction=test_fraction)
        train, test = train.take(kept), train.take(held)

    val = None
    if val_per_class or val_fraction:
        kept, held = imb.balanced_holdout(train.labels, num_classes, _split_rng(seed, 2),
                                          per_class=val_per_class, fraction=val_fraction)
        train, val = train.take(kept), train.take(held)

    available = imb.class_counts(train.labels, num_classes)
    target = imb.target_counts(profile, available, ratio=ratio, minority_classes=tuple(minority_classes),
                               fraction=fraction, counts=tuple(counts) or None)
    train = train.take(imb.subsample_per_class(train.labels, target, _split_rng(seed, 3)))

    if label_noise > 0:
        train = train.with_labels(imb.symmetric_label_noise(train.labels, num_classes, label_noise,
                                                            _split_rng(seed, 4)))

    if isinstance(train, FileSplit):
        sample = _split_rng(seed, 6).permutation(len(train))[:STATS_SAMPLE]
        images = train.read(np.sort(sample))
    else:
        images = train.images
    mean, std = channel_statistics(images)
    return DataSplits(train, val, test, num_classes, list(raw.class_names), mean.astype(np.float32),
                      std.astype(np.float32), tuple(raw.skipped_images), tuple(raw.dropped_classes))
