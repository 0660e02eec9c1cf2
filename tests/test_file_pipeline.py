"""The file-backed input path (``config.data.storage="files"``, the default for image_folder): the index lives in
memory, images are decoded inside tf.data. It equals the in-memory path where the decode is lossless, is exact on
resume, names a file that fails to decode, splits batches over processes, and does not hold the images in RAM."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from imbalance_jax import train
from imbalance_jax.data import FileSplit, build_splits, load_raw_dataset
from imbalance_jax.data.pipeline import PipelineOptions, eval_batches, train_batches
from imbalance_jax.data.sources import DatasetError
from imbalance_jax.experiment import ConfigError, check_fields
from tests.test_data import data_config
from tests.test_train import REPO, tiny_config

COUNTS = {"a": 40, "b": 20, "c": 12, "d": 8}  # long-tailed


def long_tailed_folder(root, size: int = 16, fmt: str = "png", counts=None) -> str:
    """``root/<class>/<i>.<fmt>``: ``size`` x ``size`` noisy images around a class colour, ``counts`` per class."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for k, (cls, n) in enumerate((counts or COUNTS).items()):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            colour = np.array([60 * k, 255 - 50 * k, 128])
            image = np.clip(rng.normal(colour, 40, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(image).save(root / cls / f"{i}.{fmt}")
    return str(root)


def _splits(root: str, storage: str, seed: int = 0):
    cfg = data_config(name="image_folder", dir=root, image_size=16, storage=storage)
    return build_splits(load_raw_dataset(cfg), seed=seed, val_per_class=2, profile="exponential", ratio=3.0)


def test_file_splits_equal_in_memory_splits_when_the_decode_is_lossless(tmp_path):
    root = long_tailed_folder(tmp_path / "images")  # PNG at image_size: both paths see the same pixels
    memory, files = _splits(root, "memory"), _splits(root, "files")
    assert isinstance(files.train, FileSplit) and files.image_shape == memory.image_shape == (16, 16, 3)
    assert files.class_counts() == memory.class_counts()
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(files, name).labels, getattr(memory, name).labels)
        np.testing.assert_array_equal(getattr(files, name).read(np.arange(len(getattr(files, name)))),
                                      getattr(memory, name).images)
    # Fewer than STATS_SAMPLE training images: the sample is the whole training set.
    np.testing.assert_allclose(files.mean, memory.mean, rtol=1e-6)
    np.testing.assert_allclose(files.std, memory.std, rtol=1e-6)
    options = PipelineOptions(global_batch_size=8, mean=memory.mean, std=memory.std, crop_padding=2, flip=True)
    kwargs = dict(num_classes=4, sampler="class_balanced", seed=3, epoch=1, num_epochs=2)
    for got in ([list(train_batches(s.train, options, **kwargs)) for s in (files, memory)],
                [list(eval_batches(s.test, options)) for s in (files, memory)]):
        assert len(got[0]) == len(got[1]) > 0
        for a, b in zip(*got):
            np.testing.assert_array_equal(a["label"], b["label"])
            np.testing.assert_allclose(a["image"], b["image"], atol=1e-5)


def test_random_resized_crop_is_a_function_of_seed_and_epoch(tmp_path):
    root = long_tailed_folder(tmp_path / "images", size=24, fmt="jpg")
    splits = _splits(root, "files")
    options = PipelineOptions(global_batch_size=8, mean=splits.mean, std=splits.std, flip=True,
                              random_resized_crop=True)
    kwargs = dict(num_classes=4, sampler="random", seed=0, num_epochs=2)
    first, again, other = (np.concatenate([b["image"] for b in train_batches(splits.train, options, epoch=e, **kwargs)])
                           for e in (0, 0, 1))
    assert first.shape[1:] == (16, 16, 3)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    plain = PipelineOptions(global_batch_size=8, mean=splits.mean, std=splits.std)
    unaugmented = np.concatenate([b["image"] for b in train_batches(splits.train, plain, epoch=0, **kwargs)])
    assert not np.allclose(first, unaugmented)


def test_each_process_reads_its_own_files_of_every_global_batch(tmp_path):
    splits = _splits(long_tailed_folder(tmp_path / "images"), "files")
    kwargs = dict(num_classes=4, sampler="random", seed=0, epoch=0, num_epochs=1)
    whole = list(train_batches(splits.train, PipelineOptions(8, splits.mean, splits.std), **kwargs))
    parts = [list(train_batches(splits.train, PipelineOptions(8, splits.mean, splits.std, process_index=p,
                                                              process_count=2), **kwargs)) for p in (0, 1)]
    for step, batch in enumerate(whole):
        assert parts[0][step]["image"].shape[0] == 4
        np.testing.assert_array_equal(np.concatenate([parts[0][step]["image"], parts[1][step]["image"]]),
                                      batch["image"])


def test_file_that_fails_to_decode_is_a_dataset_error_naming_it(tmp_path):
    root = long_tailed_folder(tmp_path / "images")
    path = tmp_path / "images" / "b" / "3.png"
    data = bytearray(path.read_bytes())
    data[data.find(b"IDAT") + 20] ^= 0xFF  # header and end marker intact: passes the index-time check
    path.write_bytes(bytes(data))
    split = load_raw_dataset(data_config(name="image_folder", dir=root, image_size=16, storage="files")).train
    assert str(path) in split.paths.tolist()
    options = PipelineOptions(global_batch_size=8, mean=np.zeros(3), std=np.ones(3))
    message = rf"cannot decode image {path} \(InvalidArgumentError: .*PNG"
    with pytest.raises(DatasetError, match=message):
        list(eval_batches(split, options))
    with pytest.raises(DatasetError, match=message):
        list(train_batches(split, options, num_classes=4, sampler="random", seed=0, epoch=0, num_epochs=1))
    with pytest.raises(DatasetError, match=message):
        split.read(np.arange(len(split)))


def test_storage_field_is_checked():
    with pytest.raises(ConfigError, match=r"config.data.storage='disk' is not valid; allowed: \['auto', 'files', "):
        check_fields(tiny_config(**{"data.storage": "disk"}), num_devices=1)
    with pytest.raises(ConfigError, match=r"config.data.storage='files' is not valid for config.data.name='digits'"):
        check_fields(tiny_config(**{"data.storage": "files"}), num_devices=1)
    with pytest.raises(ConfigError, match=r"config.data.augment.crop_scale=\(0.5, 0.2\) must be"):
        check_fields(tiny_config(**{"data.augment.crop_scale": (0.5, 0.2)}), num_devices=1)


def test_file_backed_run_resumed_after_a_stop_matches_the_uninterrupted_run(tmp_path):
    root = long_tailed_folder(tmp_path / "images", size=20, fmt="jpg")
    config = tiny_config(num_epochs=2, batch_size=8, eval_batch_size=16, **{
        "data.name": "image_folder", "data.dir": root, "data.image_size": 16, "data.storage": "files",
        "data.val_per_class": 2, "data.imbalance.ratio": 3.0, "data.augment.random_resized_crop": True,
        "data.augment.flip": True, "model.classifier": "affinity", "model.dropout": 0.1})
    full = train.train_and_evaluate(config, str(tmp_path / "full"))
    assert train.train_and_evaluate(config, str(tmp_path / "resumed"), stop_after_epoch=1) == {}
    resumed = train.train_and_evaluate(config, str(tmp_path / "resumed"))
    assert resumed == full and full["epochs_trained"] == 2
    counts = json.loads((tmp_path / "full" / "class_counts.json").read_text())
    assert counts["class_names"] == list(COUNTS)


RSS_SCRIPT = textwrap.dedent("""
    import re, sys
    import numpy as np
    from imbalance_jax.data import build_splits, load_raw_dataset
    from imbalance_jax.data.pipeline import PipelineOptions, eval_batches, train_batches
    from tests.test_data import data_config

    def status_mb(field):
        return int(re.search(field + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024

    def epoch(splits):
        options = PipelineOptions(global_batch_size=64, mean=splits.mean, std=splits.std, flip=True)
        for batch in train_batches(splits.train, options, num_classes=splits.num_classes, sampler="random", seed=0,
                                   epoch=0, num_epochs=1):
            pass
        for batch in eval_batches(splits.test, options):
            pass

    # Warm-up on 256 of the files: TensorFlow's one-off runtime allocations are not the dataset's.
    cfg = data_config(name="image_folder", dir=sys.argv[1], image_size=128, storage="files", val_per_class=0)
    raw = load_raw_dataset(cfg)
    raw.train = raw.train.take(np.arange(0, len(raw.train), len(raw.train) // 256))
    epoch(build_splits(raw, seed=0, profile="none"))
    growth = {}
    for storage in ("files", "memory"):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak (VmHWM) to the current RSS
        before = status_mb("VmRSS")
        cfg = data_config(name="image_folder", dir=sys.argv[1], image_size=128, storage=storage, val_per_class=0)
        splits = build_splits(load_raw_dataset(cfg), seed=0, profile="none")
        epoch(splits)
        growth[storage] = status_mb("VmHWM") - before
        del splits
    print(growth["files"], growth["memory"])
""")


def _peak_rss_resettable() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return "VmHWM" in open("/proc/self/status").read()
    except OSError:
        return False


@pytest.mark.skipif(not _peak_rss_resettable(), reason="needs Linux's resettable peak RSS (/proc/self/clear_refs)")
def test_file_backed_epoch_does_not_hold_the_images_in_memory(tmp_path):
    """3000 files of 128 x 128 x 3 (141 MiB decoded; symlinks to 40 distinct JPEGs, so the folder is quick to
    write): after a warm-up on 256 of them, loading the index, the statistics sample, a training epoch and an
    evaluation pass on the file path raise the process's peak RSS (VmHWM, reset before each phase) above its RSS at
    the start of the phase by less than half of that (measured: 25-42 MiB), while the in-memory path (the control:
    the measurement sees held images) raises it by more (measured: ~470 MiB)."""
    from PIL import Image
    rng = np.random.default_rng(0)
    source = tmp_path / "source"
    source.mkdir()
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(source / f"{i}.jpg", quality=90)
    for cls in range(4):
        (tmp_path / "images" / str(cls)).mkdir(parents=True)
        for i in range(750):
            os.symlink(source / f"{(cls * 750 + i) % 40}.jpg", tmp_path / "images" / str(cls) / f"{i}.jpg")
    decoded_mb = 3000 * 128 * 128 * 3 / 2**20
    result = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(tmp_path / "images")], cwd=REPO, text=True,
                            capture_output=True, timeout=600, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr[-3000:]
    files_mb, memory_mb = map(float, result.stdout.split()[-2:])
    print(f"peak RSS growth: files {files_mb:.0f} MiB, memory {memory_mb:.0f} MiB, decoded {decoded_mb:.0f} MiB")
    assert files_mb < decoded_mb / 2, (files_mb, memory_mb, decoded_mb)
    assert memory_mb > decoded_mb, (files_mb, memory_mb, decoded_mb)

