"""Tiny stand-ins for the files tfds downloads, so tfds' own builders prepare real datasets offline.

``prepare_offline(name, data_dir, per_class)`` writes a few-image version of the upstream archive(s) of ``name``
(``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``, ``celeb_a``), points tfds' ``DownloadManager`` at them instead
of the network and runs the builder's ``download_and_prepare`` into ``data_dir``. Everything after the download
(extraction, parsing, encoding, TFRecord writing, dataset_info.json) is tfds' own code, exactly as after a real
download.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import struct
import tarfile
import zipfile
from typing import Callable, Iterator
from unittest import mock

import numpy as np

def _idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _labels(num_classes: int, per_class: int) -> np.ndarray:
    return np.tile(np.arange(num_classes), per_class)


def _fake_mnist(root: str, per_class: dict[str, int]) -> tuple[dict[str, str], dict[str, int]]:
    """The four gzipped IDX files under their upstream names; returns (url basename -> path, example counts)."""
    rng = np.random.default_rng(0)
    files, counts = {}, {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        labels = _labels(10, per_class[split])
        counts[split] = len(labels)
        for kind, array in (("images-idx3", rng.integers(0, 255, (len(labels), 28, 28))),
                            ("labels-idx1", labels)):
            path = os.path.join(root, f"{prefix}-{kind}-ubyte.gz")
            with gzip.open(path, "wb") as f:
                f.write(_idx_bytes(array))
            files[os.path.basename(path)] = path
    return files, counts


def _cifar_records(labels: list[np.ndarray], rng: np.random.Generator) -> bytes:
    """CIFAR binary format: per image, its label byte(s) then 3072 bytes of CHW pixels."""
    out = io.BytesIO()
    for row in zip(*labels):
        out.write(bytes(int(v) for v in row))
        out.write(rng.integers(0, 255, 3072, dtype=np.uint8).tobytes())
    return out.getvalue()


def _write_tar_gz(path: str, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _fake_cifar10(root: str, per_class: dict[str, int]) -> dict[str, str]:
    rng = np.random.default_rng(0)
    members = {"cifar-10-batches-bin/batches.meta.txt":
               "\n".join(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                          "truck"]).encode() + b"\n"}
    for i, labels in enumerate(np.array_split(_labels(10, per_class["train"]), 5)):  # five batches, as upstream
        members[f"cifar-10-batches-bin/data_batch_{i + 1}.bin"] = _cifar_records([labels], rng)
    members["cifar-10-batches-bin/test_batch.bin"] = _cifar_records([_labels(10, per_class["test"])], rng)
    path = os.path.join(root, "cifar-10-binary.tar.gz")
    _write_tar_gz(path, members)
    return {os.path.basename(path): path}


def _fake_cifar100(root: str, per_class: dict[str, int]) -> dict[str, str]:
    rng = np.random.default_rng(0)
    members = {"cifar-100-binary/coarse_label_names.txt": "\n".join(f"coarse{i}" for i in range(20)).encode(),
               "cifar-100-binary/fine_label_names.txt": "\n".join(f"fine{i}" for i in range(100)).encode()}
    for split, name in (("train", "train.bin"), ("test", "test.bin")):
        fine = _labels(100, per_class[split])
        members[f"cifar-100-binary/{name}"] = _cifar_records([fine // 5, fine], rng)
    path = os.path.join(root, "cifar-100-binary.tar.gz")
    _write_tar_gz(path, members)
    return {os.path.basename(path): path}


def _fake_celeb_a(root: str, per_class: dict[str, int]) -> dict[str, str]:
    """The aligned-image zip and the four list files: ``per_class["train"]`` images per (mouth open, smiling)
    class in the train partition, ``per_class["test"]`` in each of validation and test."""
    from PIL import Image
    from tensorflow_datasets.datasets.celeb_a import celeb_a_dataset_builder as celeb

    rng = np.random.default_rng(0)
    partitions = [0] * (4 * per_class["train"]) + [1] * (4 * per_class["test"]) + [2] * (4 * per_class["test"])
    names = [f"{i + 1:06d}.jpg" for i in range(len(partitions))]
    mouth, smile = celeb.ATTR_HEADINGS.index("Mouth_Slightly_Open"), celeb.ATTR_HEADINGS.index("Smiling")
    attr_rows, landmark_rows = [], []
    with zipfile.ZipFile(os.path.join(root, "img_align_celeba.zip"), "w") as archive:
        for i, name in enumerate(names):
            image = Image.fromarray(rng.integers(0, 255, (218, 178, 3), dtype=np.uint8))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG")
            archive.writestr(f"img_align_celeba/{name}", buffer.getvalue())
            attributes = -np.ones(len(celeb.ATTR_HEADINGS), np.int64)
            attributes[mouth], attributes[smile] = (1 if (i % 4) // 2 else -1), (1 if i % 2 else -1)
            attr_rows.append(f"{name} " + " ".join(map(str, attributes)))
            landmark_rows.append(f"{name} " + " ".join(["70"] * len(celeb.LANDMARK_HEADINGS)))
    texts = {
        "list_eval_partition.txt": "".join(f"{n} {p}\n" for n, p in zip(names, partitions)),
        "list_attr_celeba.txt": f"{len(names)}\n{' '.join(celeb.ATTR_HEADINGS)}\n" + "\n".join(attr_rows) + "\n",
        "list_landmarks_align_celeba.txt":
            f"{len(names)}\n{' '.join(celeb.LANDMARK_HEADINGS)}\n" + "\n".join(landmark_rows) + "\n",
        "identity_CelebA.txt": "".join(f"{n} {i + 1}\n" for i, n in enumerate(names)),
    }
    for file_name, text in texts.items():
        with open(os.path.join(root, file_name), "w") as f:
            f.write(text)
    return {celeb.IMG_ALIGNED_DATA: os.path.join(root, "img_align_celeba.zip"),
            celeb.EVAL_LIST: os.path.join(root, "list_eval_partition.txt"),
            celeb.ATTR_DATA: os.path.join(root, "list_attr_celeba.txt"),
            celeb.LANDMARKS_DATA: os.path.join(root, "list_landmarks_align_celeba.txt"),
            celeb.IDENTITY_DATA: os.path.join(root, "identity_CelebA.txt")}


@contextlib.contextmanager
def local_downloads(lookup: Callable[[str], str]) -> Iterator[None]:
    """``DownloadManager.download`` (and ``download_and_extract``, which then extracts with tfds' own extractor)
    answer each URL with ``lookup(url)``, a local path, instead of fetching it."""
    import tree
    from etils import epath
    from tensorflow_datasets.core.download import download_manager

    def download(self, url_or_urls):
        return tree.map_structure(lambda url: epath.Path(lookup(url)), url_or_urls)

    def download_and_extract(self, url_or_urls):
        return self.extract(download(self, url_or_urls))

    with mock.patch.object(download_manager.DownloadManager, "download", download), \
            mock.patch.object(download_manager.DownloadManager, "download_and_extract", download_and_extract):
        yield


def prepare_offline(name: str, data_dir: str, per_class: tuple[int, int] = (6, 2)) -> None:
    """Prepares ``name`` with ``per_class`` = (train, test) random images per class into ``data_dir`` with tfds' own
    builder, from fake local downloads."""
    import tensorflow_datasets as tfds

    per_class = {"train": per_class[0], "test": per_class[1]}
    source_dir = os.path.join(data_dir, "_fake_downloads", name)
    os.makedirs(source_dir, exist_ok=True)
    patches = contextlib.ExitStack()
    if name in ("mnist", "fashion_mnist"):  # the same IDX files under the same names
        from tensorflow_datasets.image_classification import mnist

        by_basename, counts = _fake_mnist(source_dir, per_class)
        # The builder reads exactly this many records from each file (60000 / 10000 upstream).
        patches.enter_context(mock.patch.object(mnist, "_TRAIN_EXAMPLES", counts["train"]))
        patches.enter_context(mock.patch.object(mnist, "_TEST_EXAMPLES", counts["test"]))
        lookup = lambda url: by_basename[url.rsplit("/", 1)[-1]]  # noqa: E731
    elif name in ("cifar10", "cifar100"):
        by_basename = (_fake_cifar10 if name == "cifar10" else _fake_cifar100)(source_dir, per_class)
        lookup = lambda url: by_basename[url.rsplit("/", 1)[-1]]  # noqa: E731
    elif name == "celeb_a":
        lookup = _fake_celeb_a(source_dir, per_class).__getitem__
    else:
        raise ValueError(f"no fake downloads for {name!r}")
    with patches, local_downloads(lookup):
        tfds.builder(name, data_dir=data_dir).download_and_prepare()
