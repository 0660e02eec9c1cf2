"""Data sources never give a silently wrong run: tfds datasets load through tfds' real path from a prepared
``tfds_data_dir`` (no mock_data), and a missing directory, an empty class folder or an unreadable image is one clear
error (or, with an explicit option, a warned drop / a skip counted in the run's report)."""

import importlib
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from imbalance_jax import train
from imbalance_jax.experiment import ConfigError, check_fields
from imbalance_jax.data.sources import DatasetError, load_raw_dataset
from tests.test_data import data_config
from tests.test_train import REPO, tiny_config
from tests.tfds_fakes import prepare_offline


# ------------------------------------------------------------------------------------------------ tfds
@pytest.mark.parametrize("name, shape, num_classes, first_class", [
    ("mnist", (28, 28, 1), 10, "0"), ("cifar10", (32, 32, 3), 10, "airplane"),
    ("cifar100", (32, 32, 3), 100, "fine0")])
def test_tfds_source_loads_through_tfds_from_a_prepared_data_dir(tmp_path, name, shape, num_classes, first_class):
    prepare_offline(name, str(tmp_path / "tfds"), per_class=(3, 1))
    raw = load_raw_dataset(data_config(name=name, tfds_data_dir=str(tmp_path / "tfds")))
    assert raw.train.images.shape == (3 * num_classes,) + shape and raw.test.images.shape == (num_classes,) + shape
    assert raw.num_classes == num_classes and raw.class_names[0] == first_class
    assert np.bincount(raw.train.labels, minlength=num_classes).tolist() == [3] * num_classes


def test_celeb_a_task_loads_through_tfds_from_a_prepared_data_dir(tmp_path):
    prepare_offline("celeb_a", str(tmp_path / "tfds"), per_class=(5, 1))
    raw = load_raw_dataset(data_config(name="celeb_a", tfds_data_dir=str(tmp_path / "tfds"), image_size=16,
                                       celeba_counts=(5, 4, 3, 2)))
    assert np.bincount(raw.train.labels, minlength=4).tolist() == [5, 4, 3, 2]
    assert raw.train.images.shape[1:] == (16, 16, 3) and raw.test is None


def test_empty_tfds_data_dir_is_tfds_default_never_the_current_directory(tmp_path, monkeypatch):
    from tensorflow_datasets.core import constants
    default_dir, cwd = tmp_path / "tfds_default", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(constants, "DATA_DIR", str(default_dir))
    with pytest.raises(DatasetError) as info:  # not prepared yet: the message names tfds' default, absolute
        load_raw_dataset(data_config(name="mnist", tfds_data_dir=""))
    assert f"{default_dir}/mnist/3.0.1 (config.data.tfds_data_dir='', empty = tfds default)" in str(info.value)
    prepare_offline("mnist", str(default_dir), per_class=(2, 1))
    raw = load_raw_dataset(data_config(name="mnist", tfds_data_dir=""))
    assert len(raw.train) == 20 and len(raw.test) == 10
    assert os.listdir(cwd) == []


def test_tfds_dataset_not_prepared_says_where_it_looked_and_how_to_prepare_it(tmp_path):
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(DatasetError) as info:
        load_raw_dataset(data_config(name="cifar10", tfds_data_dir=data_dir, download=False))
    message = str(info.value)
    assert f"not prepared in {data_dir}/cifar10/3.0.2 (config.data.tfds_data_dir='{data_dir}')" in message
    assert f"`tfds build cifar10 --data_dir={data_dir}`" in message and "config.data.download=True" in message
    assert "\n" not in message and "importlib_resources" not in message
    # With download on, the (refused, see conftest) download fails with the same advice.
    with pytest.raises(DatasetError, match=r"could not download and prepare 'cifar10' into .*ConnectionError.*"
                                           r"tfds build cifar10 --data_dir="):
        load_raw_dataset(data_config(name="cifar10", tfds_data_dir=data_dir, download=True))


def test_affinity_mnist_config_gets_past_loading_from_a_prepared_tfds_data_dir(tmp_path):
    prepare_offline("mnist", str(tmp_path / "tfds"), per_class=(20, 3))
    config = importlib.import_module("configs.affinity_mnist").get_config()
    config.data.tfds_data_dir = str(tmp_path / "tfds")
    config.num_epochs, config.batch_size, config.eval_batch_size, config.num_devices = 1, 8, 8, 1
    config.disable_progress_bar = True
    config.data.val_per_class = 1
    metrics = train.train_and_evaluate(config, str(tmp_path / "run"))
    counts = json.loads((tmp_path / "run" / "class_counts.json").read_text())
    assert counts["test"] == [3] * 10 and counts["val"] == [1] * 10  # the prepared files, not mock data
    assert counts["train"][9] == 19 and counts["train"][0] < counts["train"][9]  # step profile on 0-4
    assert 0.0 <= metrics["test"]["balanced_accuracy"] <= 1.0


# --------------------------------------------------------------------------------------- fashion-mnist
def test_fashion_mnist_explicit_dir_that_does_not_exist_is_an_error_not_a_fall_back(tmp_path, monkeypatch):
    from imbalance_jax.data import sources
    from tests.test_configs import tiny_fashion_mnist
    (tmp_path / "system").mkdir()
    monkeypatch.setattr(sources, "FASHION_MNIST_DEBIAN_DIR", tiny_fashion_mnist(tmp_path / "system"))
    assert len(load_raw_dataset(data_config(name="fashion_mnist", dir="")).train) == 120  # the fall-back exists
    with pytest.raises(DatasetError, match=r"config.data.dir='/nonexistent' does not exist; for fashion_mnist"):
        load_raw_dataset(data_config(name="fashion_mnist", dir="/nonexistent"))
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "train-images-idx3-ubyte.gz").write_bytes(
        (tmp_path / "system" / "train-images-idx3-ubyte.gz").read_bytes())
    with pytest.raises(DatasetError, match=r"lacks the Fashion-MNIST IDX file\(s\) \['train-labels-idx1-ubyte', "
                                           r"'t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'\]"):
        load_raw_dataset(data_config(name="fashion_mnist", dir=str(tmp_path / "partial")))


def test_truncated_idx_file_is_an_error_naming_it(tmp_path):
    from tests.test_configs import tiny_fashion_mnist
    root = tmp_path / "fmnist"
    root.mkdir()
    tiny_fashion_mnist(root)
    path = root / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DatasetError, match=rf"cannot read IDX file {path} \(EOFError: .*replace it with a fresh copy"):
        load_raw_dataset(data_config(name="fashion_mnist", dir=str(root)))


# ----------------------------------------------------------------------------------------- image folder
def image_folder(root, counts: dict, truncated: str = "") -> str:
    """``root/<class>/<i>.jpg`` with ``counts[class]`` images (0: an empty folder); ``truncated`` = "class/name.jpg"
    adds a JPEG cut off half-way (an interrupted copy)."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            colour = rng.integers(0, 255, 3)
            Image.fromarray(np.clip(rng.normal(colour, 20, (16, 16, 3)), 0, 255).astype(np.uint8)).save(
                root / cls / f"{i}.jpg")
    if truncated:
        data = (root / next(c for c, n in counts.items() if n) / "0.jpg").read_bytes()
        (root / truncated).write_bytes(data[: len(data) // 2])
    return str(root)


def test_empty_class_folder_is_an_error_naming_it(tmp_path):
    root = image_folder(tmp_path / "images", {"cat": 3, "dog": 3, "owl": 0})
    with pytest.raises(DatasetError) as info:
        load_raw_dataset(data_config(name="image_folder", dir=root, image_size=8))
    assert (f"config.data.dir='{root}': empty class 'owl' (folder {root}/owl has no images" in str(info.value)
            and "config.data.empty_class_folders='drop'" in str(info.value))


def test_empty_class_folder_is_dropped_with_a_warning_when_asked(tmp_path, caplog):
    root = image_folder(tmp_path / "images", {"cat": 3, "dog": 3, "owl": 0})
    with caplog.at_level(logging.WARNING):
        raw = load_raw_dataset(data_config(name="image_folder", dir=root, image_size=8,
                                           empty_class_folders="drop"))
    assert raw.class_names == ["cat", "dog"] and len(raw.train) == 6
    assert "dropping class 'owl'" in caplog.text and f"{root}/owl" in caplog.text
    assert raw.dropped_classes[0].startswith("owl (folder ")


def test_unreadable_image_is_an_error_naming_the_file(tmp_path):
    root = image_folder(tmp_path / "images", {"cat": 3, "dog": 3}, truncated="dog/broken.jpg")
    with pytest.raises(DatasetError) as info:
        load_raw_dataset(data_config(name="image_folder", dir=root, image_size=8))
    message = str(info.value)
    assert f"cannot read image {root}/dog/broken.jpg (OSError:" in message
    assert "config.data.unreadable_images='skip'" in message and "\n" not in message


def test_unreadable_images_skipped_and_empty_class_dropped_are_in_metrics_and_report(tmp_path):
    root = image_folder(tmp_path / "images", {"cat": 12, "dog": 12, "owl": 0, "yak": 12}, truncated="dog/broken.jpg")
    (tmp_path / "images" / "yak" / "notes.jpg").write_text("not an image")
    config = tiny_config(**{"data.name": "image_folder", "data.dir": root, "data.image_size": 16,
                            "data.val_per_class": 1, "data.imbalance.profile": "none", "batch_size": 8,
                            "eval_batch_size": 8, "data.empty_class_folders": "drop",
                            "data.unreadable_images": "skip"})
    train.train_and_evaluate(config, str(tmp_path / "run"))
    data = json.loads((tmp_path / "run" / "metrics.json").read_text())["data"]
    assert data["skipped_images"] == 2 and data["dropped_classes"][0].startswith("owl (folder")
    assert [s.split(" (")[0] for s in data["skipped_images_first"]] == [f"{root}/dog/broken.jpg",
                                                                          f"{root}/yak/notes.jpg"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "- unreadable images skipped: 2, empty classes dropped: 1" in report
    assert f"- `{root}/dog/broken.jpg (OSError:" in report and "- owl (folder" in report
    counts = json.loads((tmp_path / "run" / "class_counts.json").read_text())
    assert counts["class_names"] == ["cat", "dog", "yak"]


def test_class_with_only_unreadable_images_counts_as_empty(tmp_path):
    root = image_folder(tmp_path / "images", {"cat": 3, "dog": 3, "owl": 0})
    (tmp_path / "images" / "owl" / "0.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    with pytest.raises(DatasetError, match=r"empty class 'owl' \(all its 1 train images are unreadable\)"):
        load_raw_dataset(data_config(name="image_folder", dir=root, image_size=8, unreadable_images="skip"))


def test_invalid_data_options_are_config_errors():
    for field in ("empty_class_folders", "unreadable_images"):
        with pytest.raises(ConfigError, match=rf"config.data.{field}='maybe' is not valid; allowed: \["):
            check_fields(tiny_config(**{f"data.{field}": "maybe"}), num_devices=1)


# -------------------------------------------------------------------------------- through the entry point
@pytest.mark.parametrize("case", ["mnist_not_prepared", "fashion_mnist_dir_missing", "empty_class", "corrupt_jpeg"])
def test_main_reports_data_errors_in_one_line_without_traceback(tmp_path, case):
    if case == "mnist_not_prepared":
        overrides = ["--config.data.name=mnist", f"--config.data.tfds_data_dir={tmp_path}/tfds",
                     "--config.data.download=False"]
        expected = f"error: tfds dataset 'mnist' is not prepared in {tmp_path}/tfds/mnist/3.0.1"
    elif case == "fashion_mnist_dir_missing":
        overrides = ["--config.data.name=fashion_mnist", "--config.data.dir=/nonexistent"]
        expected = "error: config.data.dir='/nonexistent' does not exist"
    elif case == "empty_class":
        root = image_folder(tmp_path / "images", {"cat": 3, "owl": 0})
        overrides, expected = ["--config.data.name=image_folder", f"--config.data.dir={root}"], "empty class 'owl'"
    else:
        root = image_folder(tmp_path / "images", {"cat": 3}, truncated="cat/x.jpg")
        overrides = ["--config.data.name=image_folder", f"--config.data.dir={root}"]
        expected = f"cannot read image {root}/cat/x.jpg"
    result = subprocess.run(
        [sys.executable, "-m", "imbalance_jax.main", "--config=configs/default.py", f"--workdir={tmp_path}/run",
         "--config.num_devices=1", *overrides], cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and expected in errors[0], result.stderr[-2000:]

