"""Data sources, splits, imbalance profiles, samplers and the tf.data pipelines."""

import gzip
import os
import struct

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from imbalance_jax.data import imbalance as imb
from imbalance_jax.data import samplers
from imbalance_jax.data.pipeline import PipelineOptions, eval_batches, train_batches
from imbalance_jax.data.sources import (FASHION_MNIST_DEBIAN_DIR, ArraySplit, DatasetError, celeba_mouth_smile_label,
                                        load_raw_dataset, read_idx)
from imbalance_jax.experiment import splits_from_config


def data_config(**kw):
    """configs/default.py's config.data (every field) on digits, with ``kw`` replacing fields."""
    from configs import default

    cfg = default.get_config().data
    cfg.name, cfg.val_per_class, cfg.sampler, cfg.download = "digits", 10, "random", False
    cfg.imbalance.profile, cfg.imbalance.ratio = "exponential", 10.0
    for key, value in kw.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                cfg[key][sub] = v
        else:
            cfg[key] = value
    return cfg


def build_splits(data, seed):
    return splits_from_config(data, seed)


def test_exponential_profile_matches_cifar_lt_protocol():
    counts = imb.exponential_profile(5000, 10, 100.0)
    assert counts[0] == 5000 and counts[-1] == 50
    assert counts.sum() == 12406  # CIFAR-10-LT, rho = 100 (Cao et al. 2019)


def test_digits_splits_balanced_holdouts_before_imbalance():
    splits = build_splits(data_config(), seed=0)
    counts = splits.class_counts()
    assert counts["val"] == [10] * 10
    test_counts = np.array(counts["test"])
    assert test_counts.min() >= 35 and test_counts.max() <= 37  # 20% of each class
    train = np.array(counts["train"])
    assert train[0] / train[-1] == pytest.approx(10, rel=0.1) and np.all(np.diff(train) <= 0)
    assert splits.train.images.dtype == np.uint8 and splits.image_shape == (8, 8, 1)
    # The three splits are disjoint: no image of val/test is in train (digits images are almost all distinct).
    train_set = {img.tobytes() for img in splits.train.images}
    overlap = sum(img.tobytes() in train_set for img in splits.test.images)
    assert overlap <= 2


def test_splits_are_deterministic_from_the_seed():
    a, b, c = (build_splits(data_config(), seed=s) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.train.images, b.train.images)
    assert not np.array_equal(a.train.labels, c.train.labels) or not np.array_equal(a.train.images, c.train.images)


def test_step_profile_and_explicit_counts():
    step = build_splits(data_config(imbalance={"profile": "step", "minority_classes": (0, 1, 2, 3, 4),
                                               "fraction": 0.1, "ratio": 1.0, "counts": ()}), seed=0)
    counts = np.array(step.class_counts()["train"])
    assert np.all(counts[:5] == counts[5] // 10) and np.all(counts[5:] == counts[5])
    explicit = build_splits(data_config(imbalance={"profile": "counts", "counts": tuple(range(10, 20)),
                                                   "ratio": 1.0, "minority_classes": (), "fraction": 1.0}), seed=0)
    assert explicit.class_counts()["train"] == list(range(10, 20))


def test_symmetric_label_noise_rate_and_never_same_label():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 20000)
    noisy = imb.symmetric_label_noise(labels, 10, 0.3, np.random.default_rng(1))
    assert np.mean(noisy != labels) == pytest.approx(0.3, abs=0.02)
    flipped = noisy[noisy != labels]
    assert np.all((flipped >= 0) & (flipped < 10))


def test_class_balanced_sampler_is_uniform_over_classes():
    labels = np.repeat(np.arange(5), [500, 200, 50, 10, 5])
    order = samplers.epoch_order(labels, 5, "class_balanced", seed=0, epoch=0)
    hist = np.bincount(labels[order], minlength=5) / len(order)
    # 765 draws, p = 0.2: binomial std ≈ 0.0145; allow 4 std.
    np.testing.assert_allclose(hist, 0.2, atol=0.06)
    # Without replacement within a class: the 500 images of class 0 are never repeated in one epoch.
    zero = order[labels[order] == 0]
    assert len(np.unique(zero)) == len(zero)


def test_square_root_and_progressive_probabilities():
    counts = np.array([400, 100, 0])
    np.testing.assert_allclose(samplers.class_probabilities(counts, "square_root"), [20 / 30, 10 / 30, 0])
    np.testing.assert_allclose(samplers.class_probabilities(counts, "progressive", 0, 10), [0.8, 0.2, 0])
    np.testing.assert_allclose(samplers.class_probabilities(counts, "progressive", 9, 10), [0.5, 0.5, 0])


def _options(batch, process_index=0, process_count=1, **kw):
    return PipelineOptions(global_batch_size=batch, mean=np.zeros(1, np.float32), std=np.ones(1, np.float32),
                           process_index=process_index, process_count=process_count, **kw)


def _split(n=37):
    images = (np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 1), np.uint8))
    return ArraySplit(images, np.arange(n) % 3)


def test_eval_pipeline_yields_every_example_exactly_once_with_padding_mask():
    split = _split(37)
    seen = []
    for batch in eval_batches(split, _options(16)):
        assert batch["image"].shape == (16, 4, 4, 1)
        ids = np.round(batch["image"][:, 0, 0, 0] * 255).astype(int)
        seen.extend(ids[batch["valid"]].tolist())
    assert sorted(seen) == list(range(37))


def test_eval_pipeline_shards_processes_without_overlap():
    split = _split(37)
    seen = []
    for p in range(2):
        for batch in eval_batches(split, _options(8, p, 2)):
            assert batch["image"].shape[0] == 4
            seen.extend(np.round(batch["image"][:, 0, 0, 0] * 255).astype(int)[batch["valid"]].tolist())
    assert sorted(seen) == list(range(37))


def test_train_pipeline_is_deterministic_and_augments():
    split = _split(40)
    opts = _options(8, crop_padding=2, flip=True)
    first = list(train_batches(split, opts, num_classes=3, sampler="random", seed=0, epoch=0, num_epochs=2))
    again = list(train_batches(split, opts, num_classes=3, sampler="random", seed=0, epoch=0, num_epochs=2))
    other = list(train_batches(split, opts, num_classes=3, sampler="random", seed=0, epoch=1, num_epochs=2))
    assert len(first) == 5
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a["image"], b["image"])
    assert any(not np.array_equal(a["label"], b["label"]) for a, b in zip(first, other))
    # Zero-padded random crops: some images have zero (padding) borders.
    assert any((batch["image"] == 0).any() for batch in first)


def _write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_reader_and_fashion_mnist_from_config_dir(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 20)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    raw = load_raw_dataset(data_config(name="fashion_mnist", dir=str(tmp_path)))
    assert raw.train.images.shape == (30, 28, 28, 1) and len(raw.test) == 20
    np.testing.assert_array_equal(read_idx(str(tmp_path / "t10k-labels-idx1-ubyte.gz")), np.arange(20) % 10)


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DEBIAN_DIR),
                    reason=f"Debian package dataset-fashion-mnist not installed ({FASHION_MNIST_DEBIAN_DIR} missing)")
def test_fashion_mnist_debian_files():
    raw = load_raw_dataset(data_config(name="fashion_mnist"))
    assert raw.train.images.shape == (60000, 28, 28, 1) and raw.test.images.shape == (10000, 28, 28, 1)
    assert np.bincount(raw.test.labels).tolist() == [1000] * 10


def test_missing_fashion_mnist_names_paths_and_remedy(tmp_path, monkeypatch):
    from imbalance_jax.data import sources
    monkeypatch.setattr(sources, "FASHION_MNIST_DEBIAN_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError) as info:
        load_raw_dataset(data_config(name="fashion_mnist", dir="", tfds_data_dir=str(tmp_path / "tfds")))
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message and str(tmp_path / "tfds") in message
    assert "apt-get install -y dataset-fashion-mnist" in message and "--config.data.dir" in message
    assert "\n" not in message


@pytest.mark.parametrize("name, shape, classes", [("mnist", (28, 28, 1), 10), ("cifar10", (32, 32, 3), 10)])
def test_tfds_sources_under_mock_data(name, shape, classes):
    with tfds.testing.mock_data(num_examples=24):
        raw = load_raw_dataset(data_config(name=name))
    assert raw.train.images.shape[1:] == shape and raw.num_classes == classes
    assert len(raw.train) == 24 and len(raw.test) == 24


def test_celeb_a_four_class_task_under_mock_data():
    with tfds.testing.mock_data(num_examples=400):
        raw = load_raw_dataset(data_config(name="celeb_a", image_size=16, celeba_counts=(12, 10, 8, 6)))
    assert raw.num_classes == 4 and raw.test is None
    assert np.bincount(raw.train.labels, minlength=4).tolist() == [12, 10, 8, 6]
    assert raw.train.images.shape[1:] == (16, 16, 3)
    assert celeba_mouth_smile_label({"Mouth_Slightly_Open": True, "Smiling": False}) == 2


def test_image_folder_from_class_dirs_and_csv(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    rows = ["path,label"]
    for cls, n in (("cat", 3), ("dog", 2)):
        os.makedirs(tmp_path / cls)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
            rows.append(f"{cls}/{i}.png,{cls}")
    raw = load_raw_dataset(data_config(name="image_folder", dir=str(tmp_path), image_size=8, storage="memory"))
    assert raw.class_names == ["cat", "dog"] and raw.train.images.shape == (5, 8, 8, 3)
    files = load_raw_dataset(data_config(name="image_folder", dir=str(tmp_path), image_size=8))  # storage="auto"
    assert files.class_names == ["cat", "dog"] and files.train.image_shape == (8, 8, 3)
    assert files.train.paths.tolist() == [str(tmp_path / c / f"{i}.png") for c, n in (("cat", 3), ("dog", 2))
                                          for i in range(n)]
    assert files.train.read(np.arange(5)).shape == (5, 8, 8, 3)
    np.testing.assert_array_equal(files.train.labels, raw.train.labels)
    (tmp_path / "list.csv").write_text("\n".join(rows))
    listed = load_raw_dataset(data_config(name="image_folder", dir=str(tmp_path), image_size=8,
                                          train_list="list.csv", label_column="label"))
    np.testing.assert_array_equal(listed.train.labels, raw.train.labels)
    with pytest.raises(DatasetError, match="config.data.dir"):
        load_raw_dataset(data_config(name="image_folder", dir=str(tmp_path / "missing")))


def test_pk_sampler_batches_hold_p_classes_times_k_images():
    labels = np.repeat(np.arange(6), [50, 20, 10, 5, 3, 2])
    order = samplers.epoch_order(labels, 6, "pk", seed=0, epoch=0, batch_size=12, images_per_class=3)
    assert len(order) == len(labels)
    full = order[: (len(labels) // 12) * 12].reshape(-1, 12)
    for batch in full:
        classes, counts = np.unique(labels[batch], return_counts=True)
        assert len(classes) == 4 and np.all(counts == 3)  # P = 12 / 3
        assert np.all(labels[batch].reshape(4, 3) == labels[batch].reshape(4, 3)[:, :1])  # K in a row
    # Every class with images is drawn (uniformly over classes, not over images), and the order is reproducible.
    assert set(labels[full.ravel()]) == set(range(6))
    np.testing.assert_array_equal(order, samplers.epoch_order(labels, 6, "pk", seed=0, epoch=0, batch_size=12,
                                                              images_per_class=3))


def test_pk_sampler_rejects_impossible_batches():
    labels = np.repeat(np.arange(3), 10)
    with pytest.raises(ValueError, match="multiple of config.data.pk_images_per_class=4"):
        samplers.epoch_order(labels, 3, "pk", seed=0, epoch=0, batch_size=10, images_per_class=4)
    with pytest.raises(ValueError, match="only 3 classes have training images"):
        samplers.epoch_order(labels, 3, "pk", seed=0, epoch=0, batch_size=16, images_per_class=4)


def test_pk_sampler_trains_and_its_batch_is_checked(tmp_path):
    from imbalance_jax import train
    from imbalance_jax.experiment import ConfigError, build_experiment
    from test_train import tiny_config

    config = tiny_config(**{"data.sampler": "pk", "data.pk_images_per_class": 4})
    assert train.train_and_evaluate(config, str(tmp_path))["epochs_trained"] == 1
    config.data.pk_images_per_class = 5
    with pytest.raises(ConfigError, match=r"config.batch_size=32 must be a multiple of "
                                          r"config.data.pk_images_per_class=5"):
        build_experiment(config)
    config.data.pk_images_per_class = 2  # P = 16 classes > 10
    with pytest.raises(ConfigError, match="needs P = config.batch_size / config.data.pk_images_per_class = 16"):
        build_experiment(config)
