"""Input normalisation (``config.data.normalization``): the training split's statistics, torchvision's ImageNet
statistics, or those recorded in the pretrained file; bad combinations are one clear error."""

import numpy as np
import pytest

from configs import default
from imbalance_jax import experiment
from imbalance_jax.data.normalization import IMAGENET_MEAN, IMAGENET_STD, resolve
from imbalance_jax.models.pretrained import INPUT_NORMALIZATION_KEY, read_pretrained, recorded_normalization

RGB_MEAN, RGB_STD = np.array([0.1, 0.2, 0.3]), np.array([0.4, 0.5, 0.6])
RECORDED = np.array([[0.7, 0.7, 0.7], [0.2, 0.2, 0.2]], np.float32)


@pytest.mark.parametrize("choice, recorded, mean, std, source", [
    ("dataset", None, RGB_MEAN, RGB_STD, "dataset"),
    ("dataset", RECORDED, RGB_MEAN, RGB_STD, "dataset"),
    ("auto", None, RGB_MEAN, RGB_STD, "dataset"),
    ("auto", RECORDED, RECORDED[0], RECORDED[1], "pretrained file w.npz"),
    ("imagenet", None, IMAGENET_MEAN, IMAGENET_STD, "imagenet"),
    ("imagenet", RECORDED, IMAGENET_MEAN, IMAGENET_STD, "imagenet"),
])
def test_resolve_picks_the_statistics_of_the_choice(choice, recorded, mean, std, source):
    chosen = resolve(choice, RGB_MEAN, RGB_STD, recorded, "w.npz")
    np.testing.assert_allclose(chosen.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(chosen.std, std, rtol=1e-6)
    assert chosen.source == source and chosen.mean.dtype == np.float32


@pytest.mark.parametrize("choice, recorded, match", [
    ("standard", None, r"config.data.normalization='standard' is not valid; allowed: \['auto', 'dataset', 'imagenet'\]"),
    ("imagenet", None, r"'imagenet' needs RGB images"),
    ("auto", RECORDED, r"recorded in config.model.pretrained_path='w.npz', which are for 3 channels, but the images "
                       r"have 1"),
])
def test_resolve_rejects_what_cannot_apply(choice, recorded, match):
    with pytest.raises(ValueError, match=match):
        resolve(choice, np.array([0.5]), np.array([0.2]), recorded, "w.npz")


def test_recorded_normalization_is_metadata_not_a_variable(tmp_path):
    path = str(tmp_path / "w.npz")
    np.savez(path, **{"params/backbone/w": np.ones(2, np.float32), INPUT_NORMALIZATION_KEY: RECORDED})
    np.testing.assert_array_equal(recorded_normalization(path), RECORDED)
    assert list(read_pretrained(path)) == ["params/backbone/w"]
    np.savez(str(tmp_path / "plain.npz"), w=np.ones(2))
    assert recorded_normalization(str(tmp_path / "plain.npz")) is None
    assert recorded_normalization(str(tmp_path)) is None and recorded_normalization("") is None


def test_run_normalises_with_the_pretrained_files_statistics_and_reports_them(tmp_path):
    """digits (1 channel) with a pretrained file recording its own 1-channel statistics: "auto" uses them, the
    metrics' data summary says so; "dataset" keeps the split's; an RGB record is a ConfigError."""
    path = str(tmp_path / "w.npz")
    np.savez(path, **{INPUT_NORMALIZATION_KEY: np.array([[0.5], [0.25]], np.float32)})
    config = default.get_config()
    auto = experiment.splits_from_config(config.data, 0, path)
    assert auto.load_summary()["normalization"] == {"source": f"pretrained file {path}", "mean": [0.5],
                                                    "std": [0.25]}
    config.data.normalization = "dataset"
    own = experiment.splits_from_config(config.data, 0, path)
    assert own.normalization == "dataset" and abs(float(own.mean[0]) - 0.5) > 0.1
    np.savez(path, **{INPUT_NORMALIZATION_KEY: np.stack([IMAGENET_MEAN, IMAGENET_STD])})
    config.data.normalization = "auto"
    with pytest.raises(experiment.ConfigError, match="config.data.normalization='auto'"):
        experiment.splits_from_config(config.data, 0, path)


def test_older_workdirs_without_the_field_rerun_unchanged():
    config = default.get_config()
    recorded = experiment.flatten_config(config)
    del recorded["data.normalization"]
    assert experiment.computation_changes(recorded, config, 1) == []
    config.data.normalization = "imagenet"
    assert [c.path for c in experiment.computation_changes(recorded, config, 1)] == ["data.normalization"]
