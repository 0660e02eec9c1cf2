"""Dataset registry: every source returns its splits with integer labels, as in-memory uint8 images
(:class:`ArraySplit`) or as a file index (:class:`FileSplit`: paths + labels; the input pipeline decodes the
images, none is held in RAM). ``data.storage`` chooses (:data:`STORAGE`): "memory"; "files" (``image_folder`` and
the tfds sources); "auto" = files for ``image_folder``, for a tfds source memory up to :data:`MEMORY_LIMIT_BYTES` of
decoded images and files above, memory for the rest (digits, Fashion-MNIST's IDX files).

A file-backed tfds split is exported once: ``tfds.load`` with ``SkipDecoding`` streams each kept example's encoded
image (PNG for mnist / cifar, JPEG for celeb_a), whose bytes are written unchanged as a file, then ``index.tsv``
(relative path, label). The export is built in a uniquely named sibling directory and renamed into place, so
processes exporting at once (several hosts on one shared filesystem) never see a partial export: the first rename
wins, the others discard theirs. It lives in ``data.files_dir`` (empty: ``<tfds builder.data_dir>/imbalance_jax_files``)
under ``<name>-<version>-<split>[-<selection>]`` (celeb_a: the label task and per-class counts) and is reused,
without reading tfds, while its index exists; one without its index is redone. The pipeline resizes each image's
shorter side to ``data.image_size`` and crops the centre square (0: the native size, which must then be square).

A source is a function ``(SourceOptions) -> RawDataset``; :class:`SourceOptions` holds the plain values of the
``config.data`` fields the sources read (``imbalance_jax.experiment`` builds it). Sources with an official test split return it;
sources without one (digits, the CelebA 4-class task, a flat image folder) return ``test=None`` and
the split builder carves a balanced test split per class (``config.data.test_fraction``).

Nothing falls back silently: an explicit ``data.dir`` must hold the data, an empty class folder and an
unreadable image stop the load (unless ``data.empty_class_folders="drop"`` / ``data.unreadable_images="skip"``,
whose drops and skips travel with the dataset into the run's report), and tfds reads ``data.tfds_data_dir``
(empty: tfds' own default) and says how to prepare a dataset it does not find there.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import os
import struct
from typing import Callable, Iterable, Iterator, Optional, Sequence

import ml_collections
import numpy as np
from absl import logging

from imbalance_jax.data import tfds_export


class DatasetError(ValueError):
    """A dataset cannot be loaded; the message says what was tried and how to get it."""


@dataclasses.dataclass
class ArraySplit:
    """One split held in memory: images uint8 [N, H, W, C], labels int32 [N]."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 [N, H, W, C], got {self.images.dtype} {self.images.shape}")
        self.labels = np.asarray(self.labels, dtype=np.int32)
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must be [N={self.images.shape[0]}], got {self.labels.shape}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, indices: np.ndarray) -> "ArraySplit":
        return ArraySplit(self.images[indices], self.labels[indices])

    def with_labels(self, labels: np.ndarray) -> "ArraySplit":
        return ArraySplit(self.images, labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.images.shape[1:])

    def read(self, indices: np.ndarray) -> np.ndarray:
        """The images at ``indices``, uint8 [n, H, W, C]."""
        return self.images[np.asarray(indices, np.int64)]


@dataclasses.dataclass
class FileSplit:
    """One split as a file index: image paths [N] (str) and labels int32 [N]; the images are decoded on the fly
    at ``image_size`` x ``image_size`` x ``channels`` (:mod:`imbalance_jax.data.decode`), never all held in RAM.
    Same ``take`` / ``labels`` / ``len`` interface as :class:`ArraySplit`, so hold-outs, imbalance and noise are
    index operations on both."""

    paths: np.ndarray
    labels: np.ndarray
    image_size: int
    channels: int

    def __post_init__(self):
        self.paths = np.asarray(self.paths, dtype=str).reshape(-1)
        self.labels = np.asarray(self.labels, dtype=np.int32)
        if self.labels.shape != self.paths.shape:
            raise ValueError(f"labels must be [N={len(self.paths)}], got {self.labels.shape}")
        if self.image_size < 1 or self.channels not in (1, 3):
            raise ValueError(f"image_size must be >= 1 and channels 1 or 3, got {self.image_size}, {self.channels}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, indices: np.ndarray) -> "FileSplit":
        return FileSplit(self.paths[indices], self.labels[indices], self.image_size, self.channels)

    def with_labels(self, labels: np.ndarray) -> "FileSplit":
        return FileSplit(self.paths, labels, self.image_size, self.channels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, self.channels)

    def read(self, indices: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """The images at ``indices`` decoded as for evaluation (shorter side resized, centre crop) and rounded to
        uint8 [n, H, W, C]; for the few reads outside the pipeline (statistics, histograms, prototypes)."""
        import tensorflow as tf

        from imbalance_jax.data import decode

        indices = np.asarray(indices, np.int64)
        if not len(indices):
            return np.zeros((0,) + self.image_shape, np.uint8)
        size, channels = self.image_size, self.channels

        def load(path):
            image = decode.resize_centre_crop(decode.decode_file(path, channels), size)
            return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)

        ds = tf.data.Dataset.from_tensor_slices(self.paths[indices])
        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(batch_size)
        try:
            return np.concatenate(list(ds.as_numpy_iterator()))
        except tf.errors.OpError as e:
            raise unreadable_files_error(self, indices, e) from None


def unreadable_files_error(split: FileSplit, indices: Sequence[int], error: BaseException) -> DatasetError:
    """The DatasetError for a decode failure among ``split.paths[indices]``: each file is decoded on its own to
    name the ones that fail (the index-time checks of ``data.unreadable_images`` cannot see every corruption)."""
    import tensorflow as tf

    from imbalance_jax.data import decode

    bad = []
    for path in dict.fromkeys(split.paths[np.asarray(indices, np.int64)].tolist()):
        try:
            decode.decode_file(tf.constant(path), split.channels)
        except tf.errors.OpError as e:
            bad.append(f"{path} ({type(e).__name__}: {' '.join(str(e.message).split())[:200]})")
    named = "; ".join(bad[:3]) if bad else f"one of {len(indices)} files ({_one_line(error, 200)})"
    return DatasetError(f"cannot decode image {named}; fix or remove the file (the index-time check of "
                        "config.data.unreadable_images only sees unidentifiable or truncated files)")


@dataclasses.dataclass
class RawDataset:
    """A loaded source; ``skipped_images`` ("path (error)") and ``dropped_classes`` ("name (why)") record what
    ``data.unreadable_images="skip"`` and ``data.empty_class_folders="drop"`` left out."""

    train: "ArraySplit | FileSplit"
    test: "Optional[ArraySplit | FileSplit]"
    num_classes: int
    class_names: Sequence[str]
    skipped_images: Sequence[str] = ()
    dropped_classes: Sequence[str] = ()


# Allowed values of config.data.empty_class_folders and config.data.unreadable_images (first = default).
EMPTY_CLASS_FOLDERS = ("error", "drop")
UNREADABLE_IMAGES = ("error", "skip")
# Allowed values of config.data.storage: "memory" decodes every image at load time (ArraySplit), "files" keeps a
# file index (FileSplit, sources in FILE_SOURCES only; a tfds split is first exported to files once), "auto" = files
# for image_folder; for a tfds source, memory when its decoded images fit in MEMORY_LIMIT_BYTES, else files; memory
# for the rest (digits, fashion_mnist's IDX files).
STORAGE = ("auto", "memory", "files")
TFDS_SOURCES = ("mnist", "cifar10", "cifar100", "celeb_a", "fashion_mnist")
FILE_SOURCES = ("image_folder",) + TFDS_SOURCES
# storage="auto", tfds sources: the largest decoded dataset (the kept examples of all its splits × H × W × C bytes,
# uint8, at data.image_size or the native size) held in memory; a larger one, or one whose image shape tfds does not
# know, is file-backed (all its splits).
MEMORY_LIMIT_BYTES = 1 << 30


SourceFn = Callable[["SourceOptions"], RawDataset]
DATASETS: dict[str, SourceFn] = {}


def register(name: str) -> Callable[[SourceFn], SourceFn]:
    def wrap(fn: SourceFn) -> SourceFn:
        DATASETS[name] = fn
        return fn

    return wrap


@dataclasses.dataclass(frozen=True)
class SourceOptions:
    """What the sources read, named as the ``config.data`` fields (library defaults; runs pass every field)."""

    name: str
    dir: str = ""  # dataset files: fashion_mnist IDX, image_folder root
    tfds_data_dir: str = ""  # "" = tfds' own default
    download: bool = True  # tfds may download and prepare a dataset it does not find
    image_size: int = 0  # 0 = native size (image_folder: 64)
    channels: int = 3  # image_folder
    train_list: str = ""  # image_folder: CSV/TXT list of training images (relative to dir)
    test_list: str = ""
    label_column: str = "label"  # image_folder CSV column with the label
    variable: str = ""  # image_folder CSV: the column of the task (SILKNOW), overrides label_column
    celeba_counts: tuple[int, ...] = ()  # celeb_a: images per class (default ACNE04's proportions)
    empty_class_folders: str = "error"  # error | drop
    unreadable_images: str = "error"  # error | skip
    storage: str = "auto"  # auto | memory | files (see STORAGE)
    files_dir: str = ""  # tfds with file-backed storage: where splits are exported ("" = next to the tfds data)

    @classmethod
    def from_mapping(cls, data: "ml_collections.ConfigDict | dict") -> "SourceOptions":
        """The options of a ``config.data``-like mapping (absent fields keep the defaults above)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: data[k] for k in data.keys() if k in fields}
        if "celeba_counts" in values:
            values["celeba_counts"] = tuple(values["celeba_counts"] or ())
        return cls(**values)


def load_raw_dataset(options: "SourceOptions | ml_collections.ConfigDict") -> RawDataset:
    """Loads ``options.name`` from the registry (a ``config.data`` mapping is read with
    :meth:`SourceOptions.from_mapping`)."""
    if not isinstance(options, SourceOptions):
        options = SourceOptions.from_mapping(options)
    if options.name not in DATASETS:
        raise ValueError(f"config.data.name={options.name!r} is not a known dataset; allowed: {sorted(DATASETS)}")
    check_storage(options.name, options.storage, options.dir)
    return DATASETS[options.name](options)


def check_storage(name: str, storage: str, directory: str = "") -> None:
    """Raises DatasetError unless ``storage`` is one of STORAGE and allowed for source ``name`` (files:
    FILE_SOURCES only; fashion_mnist only through tfds, i.e. without ``data.dir``, whose IDX files load into
    memory)."""
    if storage not in STORAGE:
        raise DatasetError(f"config.data.storage={storage!r} is not valid; allowed: {list(STORAGE)}")
    if storage == "files" and name not in FILE_SOURCES:
        raise DatasetError(f"config.data.storage={storage!r} is not valid for config.data.name={name!r}; allowed: "
                           f"['auto', 'memory'] (file-backed storage exists for {list(FILE_SOURCES)})")
    if storage == "files" and name == "fashion_mnist" and directory:
        raise DatasetError(f"config.data.storage='files' reads fashion_mnist through tfds, but config.data.dir="
                           f"{directory!r} is set: IDX files are held in memory only; leave config.data.dir empty, "
                           "or use config.data.storage='auto' or 'memory'")


def uses_files(name: str, storage: str, decoded_bytes: Optional[int] = None) -> bool:
    """Whether source ``name`` with ``config.data.storage=storage`` gives file-backed splits: "files" does (for
    FILE_SOURCES), "memory" does not; "auto" does for image_folder, and for a tfds source whose splits decode to
    ``decoded_bytes`` (None: unknown) above :data:`MEMORY_LIMIT_BYTES`."""
    if name not in FILE_SOURCES or storage == "memory":
        return False
    if storage == "files" or name == "image_folder":
        return True
    return decoded_bytes is None or decoded_bytes > MEMORY_LIMIT_BYTES


# --------------------------------------------------------------------------------------------- digits
@register("digits")
def load_digits(data_config: SourceOptions) -> RawDataset:
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes); never downloads anything."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return RawDataset(ArraySplit(images, bunch.target), None, 10, [str(c) for c in range(10)])


# ------------------------------------------------------------------------------------- fashion-mnist
FASHION_MNIST_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: str) -> np.ndarray:
    """Reads an IDX file (optionally gzip-compressed) into a numpy array; a corrupt or truncated file is a
    DatasetError naming it."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype_code != 0x08:
            raise DatasetError(f"{path} is not an unsigned-byte IDX file")
        shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
        return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)
    except (OSError, EOFError, ValueError, struct.error) as e:  # bad gzip, cut-off download, wrong size
        if isinstance(e, DatasetError):
            raise
        raise DatasetError(f"cannot read IDX file {path} ({_one_line(e, 200)}); it is corrupt or truncated: "
                           "replace it with a fresh copy") from e


def _find_idx(directory: str, stem: str) -> Optional[str]:
    for candidate in (stem, stem + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.exists(path):
            return path
    return None


def _missing_idx(directory: str) -> list[str]:
    """The IDX files (of ``_IDX_FILES``) that ``directory`` lacks, neither plain nor gzipped."""
    return [stem for stems in _IDX_FILES.values() for stem in stems if _find_idx(directory, stem) is None]


def _load_idx_dir(directory: str) -> dict[str, ArraySplit]:
    """The train and test splits from the four IDX files in ``directory`` (which must all be there)."""
    return {split: ArraySplit(read_idx(_find_idx(directory, img))[..., None], read_idx(_find_idx(directory, lbl)))
            for split, (img, lbl) in _IDX_FILES.items()}


@register("fashion_mnist")
def load_fashion_mnist(data_config: SourceOptions) -> RawDataset:
    """Fashion-MNIST from IDX files in ``config.data.dir`` when set (only there: a missing directory or file is
    an error), else from the Debian package's directory, else through tfds.

    IDX files are held in memory only: ``data.storage="files"`` reads tfds' ``fashion_mnist`` (from
    ``data.tfds_data_dir``, prepared there or downloaded with ``data.download``) and exports it to files, and is an
    error with ``data.dir`` set."""
    directory = data_config.dir
    files = "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"
    if data_config.storage == "files":  # without data.dir (check_storage)
        return _load_tfds("fashion_mnist", data_config, class_names=FASHION_MNIST_CLASSES)
    if directory:
        if not os.path.isdir(directory):
            raise DatasetError(f"config.data.dir={directory!r} does not exist; for fashion_mnist it must be a "
                               f"directory with the four IDX files ({files}, each optionally .gz), or leave "
                               f"config.data.dir empty to read {FASHION_MNIST_DEBIAN_DIR} or tfds")
        missing = _missing_idx(directory)
        if missing:
            raise DatasetError(f"config.data.dir={directory!r} lacks the Fashion-MNIST IDX file(s) {missing} "
                               f"(plain or .gz); it needs all four ({files}), or leave config.data.dir empty to read "
                               f"{FASHION_MNIST_DEBIAN_DIR} or tfds")
        splits = _load_idx_dir(directory)
        return RawDataset(splits["train"], splits["test"], 10, FASHION_MNIST_CLASSES)
    if os.path.isdir(FASHION_MNIST_DEBIAN_DIR) and not _missing_idx(FASHION_MNIST_DEBIAN_DIR):
        splits = _load_idx_dir(FASHION_MNIST_DEBIAN_DIR)
        return RawDataset(splits["train"], splits["test"], 10, FASHION_MNIST_CLASSES)
    try:
        return _load_tfds("fashion_mnist", data_config, class_names=FASHION_MNIST_CLASSES)
    except DatasetError as e:
        tfds_error = str(e)
    raise DatasetError(
        f"Fashion-MNIST not found: config.data.dir is empty, {FASHION_MNIST_DEBIAN_DIR} does not hold the IDX files "
        f"({files}, each optionally .gz), and tfds failed ({tfds_error}). Get it with "
        f"`apt-get install -y dataset-fashion-mnist` (Debian/Ubuntu, puts the files in {FASHION_MNIST_DEBIAN_DIR}), "
        "or download the four IDX files and pass --config.data.dir=DIR, or run `tfds build fashion_mnist` on a "
        "machine with internet.")


# ------------------------------------------------------------------------------------------- tfds
def _resize_uint8(images: np.ndarray, size: Optional[int]) -> np.ndarray:
    if not size or images.shape[1:3] == (size, size):
        return images
    import tensorflow as tf

    out = []
    for start in range(0, len(images), 1024):
        chunk = tf.image.resize(images[start:start + 1024], (size, size), antialias=True)
        out.append(np.clip(np.round(chunk.numpy()), 0, 255).astype(np.uint8))
    return np.concatenate(out) if out else images


def _tfds_data_dir(data_config: SourceOptions) -> Optional[str]:
    """``config.data.tfds_data_dir``, or None when empty: tfds' own default ($TFDS_DATA_DIR, else
    ~/tensorflow_datasets), never the current directory (tfds reads ``""`` as a relative path)."""
    return os.path.expanduser(data_config.tfds_data_dir) if data_config.tfds_data_dir else None


def _one_line(error: BaseException, limit: int = 400) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def _missing_package(name: str, error: ModuleNotFoundError) -> DatasetError:
    return DatasetError(f"tensorflow-datasets cannot prepare or read {name!r}: the Python package {error.name!r} is "
                        "missing; install the pinned dependencies with `pip install -r requirements.txt`")


def _tfds_builder(name: str, data_config: SourceOptions):
    """tfds' builder of ``name`` rooted at ``config.data.tfds_data_dir`` (tfds' default when empty)."""
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name, data_dir=_tfds_data_dir(data_config))
    except ModuleNotFoundError as e:
        raise _missing_package(name, e) from e


def _tfds_load(builder, name: str, split: str, data_config: SourceOptions, decoders: Optional[dict] = None):
    """``tfds.load`` of one split (``decoders``: tfds' per-feature decoders, e.g. SkipDecoding); a dataset missing
    from the data dir is downloaded only with ``config.data.download``, and every failure becomes one DatasetError
    saying where tfds looked and how to prepare the dataset there."""
    import tensorflow_datasets as tfds

    data_dir = _tfds_data_dir(data_config)
    where = (f"{builder.data_dir} (config.data.tfds_data_dir={data_config.tfds_data_dir!r}"
             f"{'' if data_config.tfds_data_dir else ', empty = tfds default'})")
    prepare = (f"prepare it with `tfds build {name} --data_dir={builder.data_dir_root}` on a machine with internet "
               "(copy that directory here if needed and point config.data.tfds_data_dir at it)")
    download = bool(data_config.download)
    if download and not builder.is_prepared():
        logging.warning("tfds dataset %r is not prepared in %s: downloading and preparing it there "
                        "(config.data.download=True; needs internet)", name, where)
    try:
        return tfds.load(name, split=split, data_dir=data_dir, download=download, shuffle_files=False,
                         decoders=decoders)
    except ModuleNotFoundError as e:
        raise _missing_package(name, e) from e
    except Exception as e:  # tfds raises many types (network, missing files, not prepared)
        if builder.is_prepared():
            raise DatasetError(f"tfds.load({name!r}, split={split!r}) from {where} failed: {_one_line(e)}") from e
        if not download:
            raise DatasetError(f"tfds dataset {name!r} is not prepared in {where} and config.data.download=False; "
                               f"{prepare}, or run once with internet and config.data.download=True") from e
        raise DatasetError(f"tfds could not download and prepare {name!r} into {where}: {_one_line(e)}; without "
                           f"internet, {prepare}") from e


def _source_builder(name: str, data_config: SourceOptions):
    """The builder of tfds source ``name``. Unless ``data.storage="memory"`` (whose ``tfds.load`` prepares the
    dataset as it reads it), the dataset is prepared first (or the error of :func:`_tfds_load` raised): choosing
    the storage and exporting need its split sizes and image shape."""
    builder = _tfds_builder(name, data_config)
    if data_config.storage == "memory" or builder.is_prepared():
        return builder
    _tfds_load(builder, name, "train", data_config)  # downloads and prepares, or raises
    return _tfds_builder(name, data_config)  # a fresh builder reads the prepared dataset's info


def _selected_examples(examples: Iterable[dict], name: str, label_fn: Optional[Callable[[dict], int]],
                       label_key: str, per_class_limit: Optional[Sequence[int]]) -> Iterator[tuple[dict, int]]:
    """(example, label) for each example kept, in tfds order: every one, or with ``per_class_limit`` the first
    ``per_class_limit[c]`` of each class c (a DatasetError when a class has fewer)."""
    taken = None if per_class_limit is None else np.zeros(len(per_class_limit), np.int64)
    for example in examples:
        label = int(label_fn(example) if label_fn else example[label_key])
        if taken is not None:
            if taken[label] >= per_class_limit[label]:
                if np.all(taken >= per_class_limit):
                    break
                continue
            taken[label] += 1
        yield example, label
    if taken is not None and np.any(taken < per_class_limit):
        raise DatasetError(f"{name}: wanted {list(per_class_limit)} images per class, found only {taken.tolist()}")


def _tfds_split_to_arrays(name: str, split: str, data_config, label_fn=None, image_key="image",
                          label_key="label", per_class_limit: Optional[Sequence[int]] = None,
                          builder=None) -> ArraySplit:
    """``data.storage="memory"``: every kept image decoded (and resized to ``data.image_size``) into memory."""
    import tensorflow_datasets as tfds

    ds = _tfds_load(builder or _tfds_builder(name, data_config), name, split, data_config)
    size = data_config.image_size
    images, labels = [], []
    for example, label in _selected_examples(tfds.as_numpy(ds), name, label_fn, label_key, per_class_limit):
        image = example[image_key]
        if size and image.shape[:2] != (size, size):
            image = _resize_uint8(image[None], size)[0]
        images.append(image)
        labels.append(label)
    return ArraySplit(np.stack(images).astype(np.uint8), np.asarray(labels))


def _kept_examples(builder, split: str, per_class_limit: Optional[Sequence[int]]) -> int:
    """How many examples of ``split`` are kept: all, or at most ``sum(per_class_limit)``."""
    count = int(builder.info.splits[split].num_examples)
    return count if per_class_limit is None else min(count, int(sum(per_class_limit)))


def _decoded_bytes(builder, image_key: str, num_examples: int, image_size: int) -> Optional[int]:
    """Bytes of ``num_examples`` decoded uint8 images at ``image_size`` (0: the native size); None when tfds does
    not know the shape (images of varying size or channels)."""
    shape = tuple(builder.info.features[image_key].shape)
    if image_size:
        shape = (image_size, image_size, shape[-1])
    if any(d is None for d in shape):
        return None
    return int(num_examples) * int(np.prod(shape))


def _file_geometry(builder, name: str, image_key: str, data_config: SourceOptions) -> tuple[int, int]:
    """(image_size, channels) of the FileSplit of tfds source ``name``: ``data.image_size``, or the native size of
    square images when it is 0; channels from the tfds image feature."""
    shape = tuple(builder.info.features[image_key].shape)
    if shape[-1] not in (1, 3):
        raise DatasetError(f"{name}: its images have {shape[-1]} channels; file-backed storage reads 1 or 3 "
                           "(use config.data.storage='memory')")
    if data_config.image_size:
        return int(data_config.image_size), int(shape[-1])
    height, width = shape[:2]
    if height is None or height != width:
        size = "of varying size" if height is None or width is None else f"{height}x{width}"
        raise DatasetError(f"config.data.image_size=0 (native size) needs square images, but {name} is file-backed "
                           f"(config.data.storage={data_config.storage!r}) and its images are {size}; set "
                           "config.data.image_size (files are resized on the shorter side and centre-cropped)")
    return int(height), int(shape[-1])


def _export_dir(builder, name: str, split: str, selection: str, files_dir: str) -> str:
    """Where the export of ``split`` lives: ``<files_dir>/<name>-<version>-<split>[-<selection>]``, ``files_dir``
    empty = ``<tfds builder.data_dir>/imbalance_jax_files`` (next to the prepared dataset version)."""
    root = os.path.expanduser(files_dir) if files_dir else os.path.join(os.fspath(builder.data_dir),
                                                                        "imbalance_jax_files")
    key = "-".join([name, str(builder.info.version), split] + ([selection] if selection else []))
    return os.path.join(os.path.abspath(root), key)


def _export_split(directory: str, builder, name: str, split: str, data_config: SourceOptions,
                  label_fn: Optional[Callable[[dict], int]], image_key: str, label_key: str,
                  per_class_limit: Optional[Sequence[int]]) -> None:
    """Exports the kept examples of tfds split ``split`` to ``directory`` (:func:`tfds_export.export`), streaming:
    the images are read as their encoded bytes, never decoded nor all held in memory."""
    import tensorflow_datasets as tfds

    logging.info("exporting tfds %s split %r to %s (once; later runs reuse it)", name, split, directory)
    try:
        ds = _tfds_load(builder, name, split, data_config, decoders={image_key: tfds.decode.SkipDecoding()})
        tfds_export.export(directory, _selected_examples(tfds.as_numpy(ds), name, label_fn, label_key,
                                                         per_class_limit), image_key)
    except OSError as e:
        raise DatasetError(f"cannot export tfds {name} split {split!r} to {directory} ({_one_line(e, 200)}); set "
                           f"config.data.files_dir (now {data_config.files_dir!r}; empty = next to the tfds data) "
                           "to a writable directory") from e


def _tfds_split_to_files(name: str, split: str, data_config: SourceOptions, builder, label_fn=None,
                         image_key: str = "image", label_key: str = "label",
                         per_class_limit: Optional[Sequence[int]] = None, selection: str = "") -> FileSplit:
    """File-backed storage: the FileSplit of the export of ``split`` (see :func:`_export_dir`), made on first use
    and reused while its index exists."""
    size, channels = _file_geometry(builder, name, image_key, data_config)
    directory = _export_dir(builder, name, split, selection, data_config.files_dir)
    index = tfds_export.read_index(directory)
    if index is None:
        _export_split(directory, builder, name, split, data_config, label_fn, image_key, label_key, per_class_limit)
        index = tfds_export.read_index(directory)
    return FileSplit(index[0], index[1], size, channels)


def _tfds_files(name: str, builder, data_config: SourceOptions, splits: Sequence[str], image_key: str = "image",
                per_class_limit: Optional[Sequence[int]] = None) -> bool:
    """Whether tfds source ``name`` is file-backed (``builder`` from :func:`_source_builder`): ``data.storage``,
    "auto" deciding by the decoded size of the kept examples of all its ``splits`` together (one storage per
    dataset). "auto" without tfds' split sizes (a data dir without them, ``tfds.testing.mock_data``): memory."""
    if data_config.storage == "memory":
        return False
    if data_config.storage == "auto" and any(split not in builder.info.splits for split in splits):
        return False
    count = sum(_kept_examples(builder, split, per_class_limit) for split in splits)
    return uses_files(name, data_config.storage, _decoded_bytes(builder, image_key, count, data_config.image_size))


def _tfds_split(name: str, split: str, data_config: SourceOptions, builder, files: bool, label_fn=None,
                image_key: str = "image", label_key: str = "label", per_class_limit: Optional[Sequence[int]] = None,
                selection: str = "") -> "ArraySplit | FileSplit":
    """One split of tfds source ``name``, file-backed when ``files`` (:func:`_tfds_files`). ``selection`` names
    what ``label_fn`` / ``per_class_limit`` select, for the export's key."""
    if not files:
        return _tfds_split_to_arrays(name, split, data_config, label_fn=label_fn, image_key=image_key,
                                     label_key=label_key, per_class_limit=per_class_limit, builder=builder)
    if (label_fn is not None or per_class_limit is not None) and not selection:
        raise ValueError("a tfds split with label_fn or per_class_limit needs a selection name for its export key")
    return _tfds_split_to_files(name, split, data_config, builder, label_fn=label_fn, image_key=image_key,
                                label_key=label_key, per_class_limit=per_class_limit, selection=selection)


def _load_tfds(name: str, data_config, class_names: Optional[Sequence[str]] = None) -> RawDataset:
    builder = _source_builder(name, data_config)
    files = _tfds_files(name, builder, data_config, ("train", "test"))
    train = _tfds_split(name, "train", data_config, builder, files)
    test = _tfds_split(name, "test", data_config, builder, files)
    label = builder.info.features["label"]  # defined by the builder's code: known offline
    return RawDataset(train, test, int(label.num_classes), list(class_names or label.names))


def _register_tfds(name: str) -> None:
    register(name)(lambda data_config: _load_tfds(name, data_config))


for _name in ("mnist", "cifar10", "cifar100"):
    _register_tfds(_name)


# --------------------------------------------------------------------------------------- CelebA task
CELEBA_CLASSES = ["closed, no smile", "closed, smile", "open, no smile", "open, smile"]
ACNE04_PROPORTIONS = (633, 519, 182, 123)


def celeba_mouth_smile_label(attributes) -> int:
    """ASLoss paper 4-class task: 2 * Mouth_Slightly_Open + Smiling."""
    return 2 * int(bool(attributes["Mouth_Slightly_Open"])) + int(bool(attributes["Smiling"]))


@register("celeb_a")
def load_celeb_a(data_config: SourceOptions) -> RawDataset:
    """CelebA mouth/smile 4-class task with the ACNE04 class proportions (633:519:182:123 of 1000 images).

    The first ``n_c`` images of each class in the tfds train split are taken (deterministic); the
    80/20 train/test split per class is carved by the split builder (``data.test_fraction=0.2``).
    ``data.celeba_counts`` overrides the per-class counts. File-backed storage exports exactly these images
    (their JPEG bytes); ``data.image_size=0`` (native 218x178) is then an error, as the file path crops squares.
    """
    counts = tuple(int(c) for c in (data_config.celeba_counts or ACNE04_PROPORTIONS))
    builder = _source_builder("celeb_a", data_config)
    files = _tfds_files("celeb_a", builder, data_config, ("train",), per_class_limit=counts)
    split = _tfds_split("celeb_a", "train", data_config, builder, files, image_key="image",
                        label_fn=lambda ex: celeba_mouth_smile_label(ex["attributes"]), per_class_limit=counts,
                        selection=f"mouth_smile-{'_'.join(map(str, counts))}")
    return RawDataset(split, None, 4, CELEBA_CLASSES)


# -------------------------------------------------------------------------------------- image folder
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def _choice(data_config: SourceOptions, field: str, allowed: Sequence[str]) -> str:
    value = getattr(data_config, field)
    if value not in allowed:
        raise DatasetError(f"config.data.{field}={value!r} is not valid; allowed: {list(allowed)}")
    return value


def _decode_images(paths: Sequence[str], size: int, channels: int, unreadable: str,
                   root: str) -> tuple[np.ndarray, list[int], list[str]]:
    """Decodes and resizes every readable file of ``paths``. Returns the images, their indices in ``paths`` and
    "path (error)" for each unreadable file, which ``unreadable="error"`` turns into a DatasetError naming it."""
    from PIL import Image

    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(paths), size, size, channels), np.uint8)
    kept, skipped = [], []
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                img = img.convert(mode).resize((size, size), Image.BILINEAR)
                out[len(kept)] = np.asarray(img).reshape(size, size, channels)
        except Exception as e:  # PIL raises OSError, ValueError, SyntaxError, ... on corrupt or truncated files
            _unreadable_image(e, path, unreadable, root, skipped)
            continue
        kept.append(i)
    return out[:len(kept)], kept, skipped


def _unreadable_image(error: Exception, path: str, policy: str, root: str, skipped: list[str]) -> None:
    """``data.unreadable_images``: "error" raises a DatasetError naming the file; "skip" records and warns."""
    if policy == "error":
        raise DatasetError(f"config.data.dir={root!r}: cannot read image {path} ({_one_line(error, 200)}); fix or "
                           "remove the file, or set config.data.unreadable_images='skip' to skip unreadable "
                           "images (they are counted and listed in the run's report)") from error
    skipped.append(f"{path} ({_one_line(error, 200)})")
    logging.warning("skipping unreadable image %s (config.data.unreadable_images='skip')", skipped[-1])


# Formats tf.io.decode_image reads (PIL's names), and the bytes a complete file of each ends with (searched for
# in its last _TRAILER_BYTES bytes: some writers append padding after the end marker).
_TF_FORMATS = {"JPEG": b"\xff\xd9", "PNG": b"IEND", "GIF": b"\x3b", "BMP": b""}
_TRAILER_BYTES = 1024


def _check_file(path: str) -> None:
    """Raises OSError unless ``path`` starts like an image tf.io.decode_image reads and is complete (its format's
    end marker near the end): two small reads, no decode."""
    from PIL import Image

    with Image.open(path) as img:  # reads the header only
        fmt = img.format
    if fmt not in _TF_FORMATS:
        raise OSError(f"format {fmt} is not one tf.io.decode_image reads ({', '.join(_TF_FORMATS)})")
    marker = _TF_FORMATS[fmt]
    if marker:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _TRAILER_BYTES))
            if marker not in f.read():
                raise OSError(f"truncated {fmt} file: no end marker {marker!r} in its last {_TRAILER_BYTES} bytes")


def _check_files(paths: Sequence[str], unreadable: str, root: str) -> tuple[list[int], list[str]]:
    """File-backed storage's index-time check of ``data.unreadable_images``: the indices of the files of ``paths``
    that pass :func:`_check_file`, and "path (error)" for the others (``unreadable="error"``: a DatasetError)."""
    kept, skipped = [], []
    for i, path in enumerate(paths):
        try:
            _check_file(path)
        except Exception as e:  # PIL raises OSError, ValueError, SyntaxError, ... on unidentifiable files
            _unreadable_image(e, path, unreadable, root, skipped)
            continue
        kept.append(i)
    return kept, skipped


def _scan_class_folders(root: str) -> tuple[list[str], list[str], dict[str, str]]:
    """Image paths under ``root/<class>/`` (recursively), their class names, and every class folder by name
    (including folders without images)."""
    folders = {d: os.path.join(root, d) for d in sorted(os.listdir(root)) if os.path.isdir(os.path.join(root, d))}
    paths, names = [], []
    for cls, folder in folders.items():
        for dirpath, _, files in sorted(os.walk(folder)):
            for f in sorted(files):
                if f.lower().endswith(IMAGE_EXTENSIONS):
                    paths.append(os.path.join(dirpath, f))
                    names.append(cls)
    return paths, names, folders


def _read_list_file(path: str, root: str, label_column: str, field: str) -> tuple[list[str], list[str]]:
    """CSV with a header (columns ``path`` and ``label_column``) or a TXT list of ``path label`` lines."""
    if not os.path.isfile(path):
        raise DatasetError(f"config.data.{field}: list file {path} does not exist (paths are relative to "
                           f"config.data.dir={root!r})")
    paths, names = [], []
    with open(path, newline="") as f:
        if path.endswith(".csv"):
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "path" not in reader.fieldnames or label_column not in reader.fieldnames:
                raise DatasetError(f"{path}: CSV needs columns 'path' and {label_column!r} "
                                   f"(config.data.label_column); found {reader.fieldnames}")
            rows = [(r["path"], r[label_column]) for r in reader if r[label_column] not in ("", None)]
        else:
            rows = [tuple(line.split()[:2]) for line in f if line.strip()]
    for rel, label in rows:
        paths.append(rel if os.path.isabs(rel) else os.path.join(root, rel))
        names.append(str(label))
    return paths, names


def _empty_classes_to_drop(empty: dict[str, str], policy: str, root: str) -> list[str]:
    """``empty`` maps class name -> why it has no images. ``policy="error"`` raises one DatasetError naming
    them; ``"drop"`` warns about each by name and returns "name (why)" for the report."""
    if not empty:
        return []
    described = [f"{cls!r} ({why})" for cls, why in empty.items()]
    if policy == "error":
        more = f" and {len(described) - 3} more" if len(described) > 3 else ""
        raise DatasetError(f"config.data.dir={root!r}: empty class {', '.join(described[:3])}{more}; add images "
                           "or remove the folder, or set config.data.empty_class_folders='drop' to drop such classes "
                           "with a warning")
    for cls, why in empty.items():
        logging.warning("dropping class %r from every split: %s (config.data.empty_class_folders='drop')", cls, why)
    return [f"{cls} ({why})" for cls, why in empty.items()]


def _class_order(names) -> list[str]:
    return sorted(set(names), key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n))


@register("image_folder")
def load_image_folder(data_config: SourceOptions) -> RawDataset:
    """Images from ``data.dir``: ``<dir>/<class>/*.jpg``, or ``<dir>/train`` and ``<dir>/test`` of that form,
    or list files ``data.train_list`` / ``data.test_list`` (CSV with ``path`` + ``data.label_column``, or
    TXT ``path label`` lines; paths relative to ``data.dir``; ``data.variable``, when set, names the CSV
    column, as in SILKNOW's one-column-per-variable lists; rows with an empty label are skipped).

    ``data.storage`` "files" or "auto" (the default): the splits are :class:`FileSplit` indexes; every file's header
    and end marker are checked here (:func:`_check_file`, no decode) and the input pipeline decodes the images at
    ``data.image_size``. "memory": every image is decoded and resized (squashed) to ``data.image_size`` here
    (:class:`ArraySplit`; fine up to tens of thousands of small images).

    A class folder without images, or a class whose every image in a split is unreadable, is an error unless
    ``data.empty_class_folders="drop"`` (the class leaves every split, with a warning); an unreadable image is
    an error naming the file unless ``data.unreadable_images="skip"``."""
    root = data_config.dir
    if not root or not os.path.isdir(root):
        raise DatasetError(f"config.data.dir={root!r} is not a directory; image_folder needs "
                           "<dir>/<class>/*.jpg (or train/ and test/ of that form, or list files)")
    empty_policy = _choice(data_config, "empty_class_folders", EMPTY_CLASS_FOLDERS)
    unreadable_policy = _choice(data_config, "unreadable_images", UNREADABLE_IMAGES)
    size = int(data_config.image_size or 64)
    channels = int(data_config.channels)
    files = uses_files("image_folder", data_config.storage)
    label_column = data_config.variable or data_config.label_column
    train_list, test_list = data_config.train_list, data_config.test_list
    empty: dict[str, str] = {}
    if train_list:
        split_entries = {"train": _read_list_file(os.path.join(root, train_list), root, label_column, "train_list")}
        if test_list:
            split_entries["test"] = _read_list_file(os.path.join(root, test_list), root, label_column, "test_list")
    else:
        split_roots = ({s: os.path.join(root, s) for s in ("train", "test") if os.path.isdir(os.path.join(root, s))}
                       if os.path.isdir(os.path.join(root, "train")) else {"train": root})
        split_entries = {}
        for split, split_root in split_roots.items():
            paths, names, folders = _scan_class_folders(split_root)
            split_entries[split] = (paths, names)
            present = set(names)
            for cls, folder in folders.items():
                if cls not in present:
                    empty.setdefault(cls, f"folder {folder} has no images ({', '.join(IMAGE_EXTENSIONS)})")
    dropped = _empty_classes_to_drop(empty, empty_policy, root)
    split_entries = {split: ([p for p, n in zip(paths, names) if n not in empty],
                             [n for n in names if n not in empty]) for split, (paths, names) in split_entries.items()}
    class_names = _class_order(n for _, names in split_entries.values() for n in names)
    if not class_names:
        raise DatasetError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under config.data.dir={root!r}")
    splits, skipped, unreadable_classes = {}, [], {}
    for split, (paths, names) in split_entries.items():
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            raise DatasetError(f"{len(missing)} listed images do not exist, e.g. {missing[:3]}")
        if files:
            kept, split_skipped = _check_files(paths, unreadable_policy, root)
            images = np.asarray(paths, dtype=str)[np.asarray(kept, np.int64)]
        else:
            images, kept, split_skipped = _decode_images(paths, size, channels, unreadable_policy, root)
        skipped += split_skipped
        labels = [names[i] for i in kept]
        for cls in sorted(set(names) - set(labels)):
            unreadable_classes.setdefault(cls, f"all its {names.count(cls)} {split} images are unreadable")
        splits[split] = (images, labels)
    dropped += _empty_classes_to_drop(unreadable_classes, empty_policy, root)
    class_names = [n for n in class_names if n not in unreadable_classes]
    index = {n: i for i, n in enumerate(class_names)}
    arrays = {}
    for split, (images, labels) in splits.items():
        keep = [i for i, n in enumerate(labels) if n in index]
        split_labels = np.array([index[labels[i]] for i in keep], np.int64)
        keep = np.asarray(keep, np.int64)
        arrays[split] = (FileSplit(images[keep], split_labels, size, channels) if files
                         else ArraySplit(images[keep], split_labels))
    return RawDataset(arrays["train"], arrays.get("test"), len(class_names), class_names,
                      skipped_images=tuple(skipped), dropped_classes=tuple(dropped))
