"""tf.data input pipelines over in-memory or file-backed splits.

Training: the epoch's index order comes from a sampler (a function of seed and epoch), each process
reads its own slice of every global batch, augmentation uses stateless ops seeded per example — so an
epoch's batches are identical whether a run is resumed or not, and on any number of devices.
Evaluation: every example exactly once, in order; the last batch is padded and carries ``valid``.

File-backed splits (:class:`FileSplit`): only the index (paths, labels, extras) is a tensor; each example's file is
read and decoded inside ``Dataset.map`` (``num_parallel_calls=AUTOTUNE``, ``deterministic=True``) and batches are
prefetched (``FILE_PREFETCH`` batches: a fixed bound, not AUTOTUNE's), so memory holds a few batches, never the
dataset. Training images are either resized (shorter side) and centre-cropped or, with ``random_resized_crop``,
Inception-style crops of the decoded file; evaluation resizes and centre-crops (:mod:`imbalance_jax.data.decode`).
A file that fails to decode stops the iterator with a DatasetError naming it. Random-resized crop also applies to
in-memory images (a crop of the stored image, resized back to its size).
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Mapping, Optional

import numpy as np
import tensorflow as tf

from imbalance_jax.data import decode
from imbalance_jax.data.samplers import epoch_order
from imbalance_jax.data.sources import ArraySplit, FileSplit, unreadable_files_error


@dataclasses.dataclass(frozen=True)
class PipelineOptions:
    global_batch_size: int
    mean: np.ndarray
    std: np.ndarray
    process_index: int = 0
    process_count: int = 1
    crop_padding: int = 0  # random crop after zero-padding by this many pixels; 0 disables
    flip: bool = False  # random horizontal flip
    random_resized_crop: bool = False  # Inception-style crop resized to the image size (before crop_padding / flip)
    crop_scale: tuple[float, float] = (0.08, 1.0)  # random_resized_crop: area fraction range
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # random_resized_crop: aspect ratio range

    @property
    def local_batch_size(self) -> int:
        return self.global_batch_size // self.process_count


def _process_slice(indices: np.ndarray, options: PipelineOptions) -> np.ndarray:
    """Rows of ``indices`` [steps * global_batch, ...] that this process reads, batch by batch."""
    steps = len(indices) // options.global_batch_size
    shaped = indices[: steps * options.global_batch_size].reshape(
        (steps, options.process_count, options.local_batch_size) + indices.shape[1:])
    return shaped[:, options.process_index].reshape((-1,) + indices.shape[1:])


def _normaliser(options: PipelineOptions):
    mean = tf.constant(options.mean, tf.float32)
    std = tf.constant(options.std, tf.float32)
    return lambda image: (tf.cast(image, tf.float32) / 255.0 - mean) / std


def augment(image: tf.Tensor, seed: tf.Tensor, crop_padding: int, flip: bool) -> tf.Tensor:
    """Random crop with zero padding and horizontal flip, stateless (same seed ⇒ same image)."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    if crop_padding > 0:
        shape = tf.shape(image)
        padded = tf.pad(image, [[crop_padding, crop_padding], [crop_padding, crop_padding], [0, 0]])
        image = tf.image.stateless_random_crop(padded, shape, seed=seeds[0])
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
    return image


def _per_example_tensors(split: "ArraySplit | FileSplit", extras: Optional[Mapping[str, np.ndarray]]):
    """The tensors gathered per example: the images (in memory) or the paths (file-backed), labels, extras."""
    if isinstance(split, FileSplit):
        tensors = {"path": tf.constant(split.paths)}
    else:
        tensors = {"image": tf.constant(split.images)}
    tensors["label"] = tf.constant(split.labels)
    for name, values in (extras or {}).items():
        tensors[name] = tf.constant(values)
    return tensors


def _gather(tensors, index, split: "ArraySplit | FileSplit", train: bool, options: PipelineOptions,
            aug_seed=None) -> dict:
    """One example: its image at the split's image size (decoded and resized or cropped when file-backed) and the
    other per-example tensors."""
    example = {name: tf.gather(t, index) for name, t in tensors.items()}
    rrc = train and options.random_resized_crop
    if isinstance(split, FileSplit):
        image = decode.decode_file(example.pop("path"), split.channels)
        if not rrc:
            image = decode.resize_centre_crop(image, split.image_size)
    else:
        image = example["image"]
    if rrc:
        image = decode.random_resized_crop(image, split.image_shape[0], tf.random.experimental.stateless_fold_in(
            aug_seed, 7), options.crop_scale, options.crop_ratio)
    example["image"] = image
    return example


def _numpy_batches(ds: tf.data.Dataset, split: "ArraySplit | FileSplit", indices: np.ndarray,
                   local_batch: int) -> Iterator[dict[str, np.ndarray]]:
    """``ds``'s batches as numpy; a decode failure of a file-backed split becomes a DatasetError naming the file
    (batch ``i`` holds ``indices[i * local_batch:(i + 1) * local_batch]``: the map is deterministic)."""
    iterator = ds.as_numpy_iterator()
    i = 0
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except tf.errors.OpError as e:
            if not isinstance(split, FileSplit):
                raise
            raise unreadable_files_error(split, indices[i * local_batch:(i + 1) * local_batch], e) from None
        yield batch
        i += 1


FILE_PREFETCH = 2  # batches prefetched from a file-backed split


def _prefetch(split: "ArraySplit | FileSplit") -> int:
    return FILE_PREFETCH if isinstance(split, FileSplit) else tf.data.AUTOTUNE


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
    return num_examples // global_batch_size


def train_batches(split: "ArraySplit | FileSplit", options: PipelineOptions, *, num_classes: int, sampler: str,
                  seed: int, epoch: int, num_epochs: int, extras: Optional[Mapping[str, np.ndarray]] = None,
                  images_per_class: int = 4) -> Iterator[dict[str, np.ndarray]]:
    """One epoch of local training batches {image float32, label int32, valid bool, *extras}.

    The last incomplete global batch is dropped (a training step needs a full global batch).
    """
    order = epoch_order(split.labels, num_classes, sampler, seed, epoch, num_epochs,
                        batch_size=options.global_batch_size, images_per_class=images_per_class)
    aug_seeds = np.random.default_rng([seed, 2000 + epoch]).integers(0, 2**31 - 1, size=(len(order), 2))
    order, aug_seeds = _process_slice(order, options), _process_slice(aug_seeds, options)
    tensors = _per_example_tensors(split, extras)
    normalise = _normaliser(options)

    def load(index, aug_seed):
        example = _gather(tensors, index, split, True, options, aug_seed)
        image = example["image"]
        if options.crop_padding or options.flip:
            image = augment(image, aug_seed, options.crop_padding, options.flip)
        example["image"] = normalise(image)
        example["valid"] = tf.constant(True)
        return example

    ds = tf.data.Dataset.from_tensor_slices((order, aug_seeds.astype(np.int64)))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(options.local_batch_size, drop_remainder=True).prefetch(_prefetch(split))
    return _numpy_batches(ds, split, order, options.local_batch_size)


def eval_batches(split: "ArraySplit | FileSplit", options: PipelineOptions,
                 extras: Optional[Mapping[str, np.ndarray]] = None) -> Iterator[dict[str, np.ndarray]]:
    """Every example exactly once, in order, in local batches; padding rows have ``valid=False``."""
    n = len(split)
    padded = -(-n // options.global_batch_size) * options.global_batch_size
    indices = _process_slice(np.arange(padded), options)
    valid = indices < n
    indices = np.where(valid, indices, 0)
    tensors = _per_example_tensors(split, extras)
    normalise = _normaliser(options)

    def load(index, is_valid):
        example = _gather(tensors, index, split, False, options)
        example["image"] = normalise(example["image"])
        example["valid"] = is_valid
        return example

    ds = tf.data.Dataset.from_tensor_slices((indices, valid))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(options.local_batch_size, drop_remainder=True).prefetch(_prefetch(split))
    return _numpy_batches(ds, split, indices, options.local_batch_size)
