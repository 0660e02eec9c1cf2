"""File-backed storage for tfds sources (``config.data.storage="files"``, or "auto" above
``sources.MEMORY_LIMIT_BYTES``): the split is exported once, streaming, to its encoded image files plus an index
written last; the FileSplit over them gives the pixels and labels of the in-memory path, the export is reused while
its index exists and redone when it does not, and two exports racing each other leave one complete export."""

import json
import os
import shutil

import numpy as np
import pytest

from imbalance_jax import train
from imbalance_jax.data import ArraySplit, FileSplit, load_raw_dataset
from imbalance_jax.data import sources, tfds_export
from imbalance_jax.data.sources import DatasetError
from imbalance_jax.experiment import ConfigError, check_fields
from tests.test_data import data_config
from tests.test_train import tiny_config
from tests.tfds_fakes import prepare_offline

CELEBA_COUNTS = (5, 4, 3, 2)


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory) -> str:
    """One tfds data dir with tiny mnist, fashion_mnist, cifar10 and celeb_a, prepared by tfds' own builders."""
    root = str(tmp_path_factory.mktemp("tfds"))
    for name, per_class in (("mnist", (6, 2)), ("fashion_mnist", (3, 1)), ("cifar10", (3, 1)),
                            ("celeb_a", (6, 1))):
        prepare_offline(name, root, per_class=per_class)
    return root


def _load(tfds_dir: str, files_dir, **kw):
    return load_raw_dataset(data_config(tfds_data_dir=tfds_dir, files_dir=str(files_dir), **kw))


def _everything(split: "ArraySplit | FileSplit") -> np.ndarray:
    return split.read(np.arange(len(split)))


# ---------------------------------------------------------------------------------- same data as in memory
@pytest.mark.parametrize("name, image_size, shape", [("mnist", 0, (28, 28, 1)), ("cifar10", 0, (32, 32, 3)),
                                                     ("cifar10", 16, (16, 16, 3))])
def test_file_backed_tfds_split_equals_the_in_memory_split(tfds_dir, tmp_path, name, image_size, shape):
    memory = _load(tfds_dir, tmp_path / "unused", name=name, image_size=image_size, storage="memory")
    files = _load(tfds_dir, tmp_path / "exports", name=name, image_size=image_size, storage="files")
    assert files.class_names == memory.class_names and files.num_classes == memory.num_classes
    for split in ("train", "test"):
        got, want = getattr(files, split), getattr(memory, split)
        assert isinstance(got, FileSplit) and isinstance(want, ArraySplit)
        assert got.image_shape == want.image_shape == shape
        assert all(p.startswith(str(tmp_path / "exports") + "/") and p.endswith(".png") for p in got.paths)
        np.testing.assert_array_equal(got.labels, want.labels)
        np.testing.assert_array_equal(_everything(got), want.images)  # PNG is lossless
    assert not os.path.exists(tmp_path / "unused")


def test_default_export_location_is_next_to_the_prepared_tfds_version(tfds_dir):
    raw = load_raw_dataset(data_config(name="mnist", tfds_data_dir=tfds_dir, storage="files"))
    assert raw.train.paths[0].startswith(f"{tfds_dir}/mnist/3.0.1/imbalance_jax_files/mnist-3.0.1-train/")
    assert raw.test.paths[0].startswith(f"{tfds_dir}/mnist/3.0.1/imbalance_jax_files/mnist-3.0.1-test/")
    assert len(load_raw_dataset(data_config(name="mnist", tfds_data_dir=tfds_dir, storage="memory")).train) == 60


def test_celeb_a_export_holds_exactly_the_selected_images(tfds_dir, tmp_path):
    memory = _load(tfds_dir, tmp_path / "exports", name="celeb_a", image_size=16, celeba_counts=CELEBA_COUNTS,
                   storage="memory")
    files = _load(tfds_dir, tmp_path / "exports", name="celeb_a", image_size=16, celeba_counts=CELEBA_COUNTS,
                  storage="files")
    assert isinstance(files.train, FileSplit) and files.test is None and files.class_names == memory.class_names
    np.testing.assert_array_equal(files.train.labels, memory.train.labels)
    assert np.bincount(files.train.labels, minlength=4).tolist() == list(CELEBA_COUNTS)
    assert all(p.endswith(".jpg") for p in files.train.paths)  # tfds' JPEG bytes, unchanged
    assert _everything(files.train).shape == (sum(CELEBA_COUNTS), 16, 16, 3)
    # Other counts select other images: another export, keyed by them.
    other = _load(tfds_dir, tmp_path / "exports", name="celeb_a", image_size=16, celeba_counts=(1, 1, 1, 1),
                  storage="files")
    assert np.bincount(other.train.labels).tolist() == [1, 1, 1, 1]
    assert sorted(os.listdir(tmp_path / "exports")) == ["celeb_a-2.1.0-train-mouth_smile-1_1_1_1",
                                                        "celeb_a-2.1.0-train-mouth_smile-5_4_3_2"]


def test_native_size_of_non_square_images_is_one_error_naming_image_size(tfds_dir, tmp_path):
    with pytest.raises(DatasetError, match=r"config.data.image_size=0 \(native size\) needs square images, but "
                                           r"celeb_a is file-backed .* its images are 218x178; set "
                                           r"config.data.image_size"):
        _load(tfds_dir, tmp_path / "exports", name="celeb_a", celeba_counts=CELEBA_COUNTS, storage="files")
    assert not os.path.exists(tmp_path / "exports")  # checked before anything is exported


# ---------------------------------------------------------------------------------- export reuse and redo
TFDS_LOAD = sources._tfds_load


def _count_tfds_loads(monkeypatch) -> list:
    """Patches the sources' tfds reads to be counted; returns the list of splits read."""
    calls = []

    def counting(builder, name, split, data_config, decoders=None):
        calls.append(split)
        return TFDS_LOAD(builder, name, split, data_config, decoders=decoders)

    monkeypatch.setattr(sources, "_tfds_load", counting)
    return calls


def test_export_is_reused_without_reading_tfds_and_redone_without_its_index(tfds_dir, tmp_path, monkeypatch):
    calls = _count_tfds_loads(monkeypatch)
    first = _load(tfds_dir, tmp_path / "exports", name="mnist", storage="files")
    assert calls == ["train", "test"]

    def refuse(*args, **kwargs):
        raise AssertionError("tfds read again although the export is complete")

    monkeypatch.setattr(sources, "_tfds_load", refuse)
    again = _load(tfds_dir, tmp_path / "exports", name="mnist", storage="files")
    np.testing.assert_array_equal(again.train.paths, first.train.paths)
    np.testing.assert_array_equal(again.train.labels, first.train.labels)

    calls = _count_tfds_loads(monkeypatch)
    train_dir = tmp_path / "exports" / "mnist-3.0.1-train"
    (train_dir / tfds_export.EXPORT_INDEX).unlink()  # an export without its index: interrupted, redone
    os.remove(first.train.paths[0])
    redone = _load(tfds_dir, tmp_path / "exports", name="mnist", storage="files")
    assert calls == ["train"]
    np.testing.assert_array_equal(redone.train.paths, first.train.paths)
    memory = _load(tfds_dir, tmp_path / "unused", name="mnist", storage="memory")
    np.testing.assert_array_equal(_everything(redone.train), memory.train.images)
    assert sorted(os.listdir(tmp_path / "exports")) == ["mnist-3.0.1-test", "mnist-3.0.1-train"]


def test_interrupted_export_leaves_nothing_behind(tfds_dir, tmp_path, monkeypatch):
    real, written = tfds_export.image_extension, []

    def crash_after_five(data):
        if len(written) == 5:
            raise KeyboardInterrupt  # the process is stopped half-way
        written.append(data)
        return real(data)

    monkeypatch.setattr(tfds_export, "image_extension", crash_after_five)
    with pytest.raises(KeyboardInterrupt):
        _load(tfds_dir, tmp_path / "exports", name="mnist", storage="files")
    assert os.listdir(tmp_path / "exports") == []
    monkeypatch.setattr(tfds_export, "image_extension", real)
    assert len(_load(tfds_dir, tmp_path / "exports", name="mnist", storage="files").train) == 60


def test_export_finished_first_by_another_process_is_used_and_ours_discarded(tfds_dir, tmp_path, monkeypatch):
    real, winners = tfds_export.publish, []

    def other_process_wins(tmp, directory):
        shutil.copytree(tmp, directory)  # another process of a multi-host run renamed its export into place
        winners.append(directory)
        real(tmp, directory)

    monkeypatch.setattr(tfds_export, "publish", other_process_wins)
    raw = _load(tfds_dir, tmp_path / "exports", name="mnist", storage="files")
    assert len(winners) == 2 and sorted(os.listdir(tmp_path / "exports")) == ["mnist-3.0.1-test", "mnist-3.0.1-train"]
    assert raw.train.paths[0].startswith(winners[0] + "/") and len(_everything(raw.train)) == 60


def test_unwritable_export_location_is_one_error_naming_files_dir(tfds_dir, tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(DatasetError, match=r"cannot export tfds mnist split 'train' to .*; set config.data.files_dir"):
        _load(tfds_dir, tmp_path / "file" / "exports", name="mnist", storage="files")


# ------------------------------------------------------------------------------------------ storage="auto"
def test_auto_keeps_small_tfds_splits_in_memory_and_exports_above_the_limit(tfds_dir, tmp_path, monkeypatch):
    for name in ("mnist", "cifar10"):
        raw = _load(tfds_dir, tmp_path / "exports", name=name)  # storage="auto", the default
        assert isinstance(raw.train, ArraySplit) and isinstance(raw.test, ArraySplit)
    assert not os.path.exists(tmp_path / "exports")
    monkeypatch.setattr(sources, "MEMORY_LIMIT_BYTES", 28 * 28 * 80)  # mnist: 60 train + 20 test images
    assert isinstance(_load(tfds_dir, tmp_path / "exports", name="mnist").train, ArraySplit)
    monkeypatch.setattr(sources, "MEMORY_LIMIT_BYTES", 28 * 28 * 80 - 1)
    raw = _load(tfds_dir, tmp_path / "exports", name="mnist")
    assert isinstance(raw.train, FileSplit) and isinstance(raw.test, FileSplit)  # one storage per dataset
    # celeb_a: the selected images count (14 of 24), at data.image_size.
    monkeypatch.setattr(sources, "MEMORY_LIMIT_BYTES", 14 * 16 * 16 * 3)
    assert isinstance(_load(tfds_dir, tmp_path / "exports", name="celeb_a", image_size=16,
                            celeba_counts=CELEBA_COUNTS).train, ArraySplit)
    assert isinstance(_load(tfds_dir, tmp_path / "exports", name="celeb_a", image_size=17,
                            celeba_counts=CELEBA_COUNTS).train, FileSplit)


def test_uses_files_decides_auto_by_the_decoded_size():
    assert sources.uses_files("image_folder", "auto") and not sources.uses_files("digits", "auto")
    assert not sources.uses_files("mnist", "auto", sources.MEMORY_LIMIT_BYTES)
    assert sources.uses_files("mnist", "auto", sources.MEMORY_LIMIT_BYTES + 1)
    assert sources.uses_files("cifar10", "auto", None)  # shape unknown: files
    assert sources.uses_files("mnist", "files", 1) and not sources.uses_files("mnist", "memory", None)


# ---------------------------------------------------------------------------------------- fashion-mnist
def test_fashion_mnist_files_read_tfds_and_idx_dir_stays_in_memory(tfds_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "FASHION_MNIST_DEBIAN_DIR", str(tmp_path / "no_system_copy"))
    raw = _load(tfds_dir, tmp_path / "exports", name="fashion_mnist", dir="", storage="files")
    assert isinstance(raw.train, FileSplit) and raw.class_names[0] == "T-shirt/top" and len(raw.train) == 30
    memory = _load(tfds_dir, tmp_path / "unused", name="fashion_mnist", dir="", storage="memory")  # tfds, in memory
    np.testing.assert_array_equal(_everything(raw.train), memory.train.images)
    np.testing.assert_array_equal(raw.test.labels, memory.test.labels)
    with pytest.raises(DatasetError, match=r"config.data.storage='files' reads fashion_mnist through tfds, but "
                                           r"config.data.dir='/some/idx' is set"):
        _load(tfds_dir, tmp_path / "exports", name="fashion_mnist", dir="/some/idx", storage="files")
    with pytest.raises(ConfigError, match=r"config.data.storage='files' reads fashion_mnist through tfds"):
        check_fields(tiny_config(**{"data.name": "fashion_mnist", "data.dir": "/some/idx",
                                    "data.storage": "files"}), num_devices=1)


# ------------------------------------------------------------------------------------------- config checks
def test_storage_values_are_checked_with_one_message(tfds_dir):
    with pytest.raises(DatasetError, match=r"^config.data.storage='disk' is not valid; allowed: "
                                           r"\['auto', 'memory', 'files'\]$"):
        load_raw_dataset(data_config(name="mnist", tfds_data_dir=tfds_dir, storage="disk"))
    with pytest.raises(ConfigError, match=r"config.data.storage='disk' is not valid; allowed: "):
        check_fields(tiny_config(**{"data.name": "mnist", "data.storage": "disk"}), num_devices=1)
    for name in sources.TFDS_SOURCES:
        check_fields(tiny_config(**{"data.name": name, "data.storage": "files"}), num_devices=1)
    with pytest.raises(DatasetError, match=r"config.data.storage='files' is not valid for config.data.name='digits'"):
        load_raw_dataset(data_config(name="digits", storage="files"))


# ------------------------------------------------------------------------------------------------ training
def test_training_on_file_backed_tfds_mnist_finishes(tfds_dir, tmp_path):
    config = tiny_config(batch_size=8, eval_batch_size=16, **{
        "data.name": "mnist", "data.tfds_data_dir": tfds_dir, "data.storage": "files",
        "data.files_dir": str(tmp_path / "exports"), "data.val_per_class": 1, "data.download": False,
        "data.augment.flip": True, "data.augment.crop_padding": 2})
    metrics = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert 0.0 <= metrics["test"]["balanced_accuracy"] <= 1.0
    assert "test" in json.loads((tmp_path / "run" / "metrics.json").read_text())
    counts = json.loads((tmp_path / "run" / "class_counts.json").read_text())
    assert counts["test"] == [2] * 10 and counts["val"] == [1] * 10
    assert sorted(os.listdir(tmp_path / "exports")) == ["mnist-3.0.1-test", "mnist-3.0.1-train"]
