"""Data sources never give a silently wrong run: tfds datasets load through tfds' real path from a prepared
``tfds_data_dir`` (no mock_data), and an explicit Fashion-MNIST ``data.dir`` that does not hold the files is an error,
never a fall-back."""

import importlib
import json
import os

import numpy as np
import pytest

from imbalance_jax import train
from imbalance_jax.data.sources import DatasetError, load_raw_dataset
from tests.test_data import data_config
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
