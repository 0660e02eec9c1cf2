"""Tests for imbalance_jax.models.pretrained: .npz and orbax round trips, strict / non-strict matching."""
from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from imbalance_jax.models import create_model
from imbalance_jax.models.pretrained import load_pretrained, load_pretrained_with_report, save_npz

FIELD = r"config\.model\.pretrained_path"


def _init(num_classes: int, seed: int, **fields) -> dict:
    model = create_model(**dict(name="small_cnn", width=4, **fields), num_classes=num_classes)
    return jax.device_get(jax.jit(lambda: model.init(
        {"params": jax.random.key(seed)}, jnp.zeros((1, 8, 8, 1)), train=False))())


@pytest.fixture(scope="module")
def source():
    """Variables whose BatchNorm statistics differ from a fresh init (so loading them is visible)."""
    variables = _init(3, seed=1)
    variables["batch_stats"] = jax.tree_util.tree_map(lambda a: a + 0.5, variables["batch_stats"])
    return variables


@pytest.fixture(scope="module")
def target():
    return _init(3, seed=2)


def _assert_tree_equal(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


def _assert_backbone_from_source(loaded, source, target):
    for col in ("params", "batch_stats"):
        _assert_tree_equal(loaded[col]["backbone"], source[col]["backbone"])
    _assert_tree_equal(loaded["params"]["classifier"], target["params"]["classifier"])
    assert not np.array_equal(source["params"]["classifier"]["kernel"],
                              target["params"]["classifier"]["kernel"])


def test_npz_round_trip(tmp_path, source, target):
    path = tmp_path / "sub" / "weights.npz"
    save_npz(source, str(path))
    with np.load(path) as data:
        assert "params/backbone/conv0/kernel" in data.files
        assert "batch_stats/backbone/bn0/mean" in data.files
    loaded = load_pretrained(target, str(path))
    _assert_backbone_from_source(loaded, source, target)
    _assert_tree_equal(load_pretrained(target, str(path), prefix=""), source)


def test_npz_keys_without_params_prefix_and_dtype_cast(tmp_path, source, target):
    flat = {f"backbone/conv{i}/kernel": np.asarray(source["params"]["backbone"][f"conv{i}"]["kernel"],
                                                   np.float64) for i in range(3)}
    flat["backbone/bn0/scale"] = np.full((4,), 3.0)
    path = tmp_path / "converted.npz"
    np.savez(path, **flat)
    loaded, report = load_pretrained_with_report(target, str(path), prefix="backbone/conv1",
                                                 strict=True)
    assert report.loaded == ("params/backbone/conv1/kernel",)
    kernel = loaded["params"]["backbone"]["conv1"]["kernel"]
    assert kernel.dtype == jnp.float32
    np.testing.assert_array_equal(kernel, source["params"]["backbone"]["conv1"]["kernel"])
    np.testing.assert_array_equal(loaded["params"]["backbone"]["conv0"]["kernel"],
                                  target["params"]["backbone"]["conv0"]["kernel"])


def test_orbax_standard_save_round_trip(tmp_path, source, target):
    path = tmp_path / "pretrained"
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(path, source)
    ckptr.wait_until_finished()
    _assert_backbone_from_source(load_pretrained(target, str(path)), source, target)


def test_orbax_train_checkpoint(tmp_path, source, target):
    """The layout train.save_checkpoint writes: <dir>/<step>/state = StandardSave'd TrainState."""
    from imbalance_jax import train

    model = create_model(**dict(name="small_cnn", width=4), num_classes=3)
    state = train.TrainState.create(apply_fn=model.apply, params=source["params"],
                                    tx=optax.adam(1e-3), batch_stats=source["batch_stats"],
                                    rng=jax.random.PRNGKey(0), class_weights=jnp.ones(3))
    root = tmp_path / "checkpoints"
    manager = ocp.CheckpointManager(str(root), item_names=("state", "meta"),
                                    options=ocp.CheckpointManagerOptions(
                                        create=True, enable_async_checkpointing=False))
    train.save_checkpoint(manager, 2, state, {"epoch": 2})
    for path in (root, root / "2", root / "2" / "state"):
        _assert_tree_equal(load_pretrained(target, str(path), prefix=""), source)


def test_shape_mismatch_names_variable_and_shapes(tmp_path, source):
    path = tmp_path / "w.npz"
    save_npz(source, str(path))
    other = _init(5, seed=3)  # classifier kernel (8, 5) in the model, (8, 3) in the file
    with pytest.raises(ValueError, match=FIELD) as err:
        load_pretrained(other, str(path), prefix="")
    message = str(err.value)
    assert "params/classifier/kernel (model (8, 5), file (8, 3))" in message
    assert "params/classifier/bias (model (5,), file (3,))" in message
    # The backbone alone matches, so the default prefix loads it.
    loaded = load_pretrained(other, str(path))
    _assert_tree_equal(loaded["params"]["backbone"], source["params"]["backbone"])


def test_missing_and_unexpected_names_are_listed(tmp_path, source, target):
    flat = {k: v for k, v in _flat(source).items() if "conv2" not in k}
    flat["params/backbone/extra/kernel"] = np.zeros((2, 2), np.float32)
    path = tmp_path / "partial.npz"
    np.savez(path, **flat)
    with pytest.raises(ValueError, match=FIELD) as err:
        load_pretrained(target, str(path))
    message = str(err.value)
    assert "missing from the file: params/backbone/conv2/kernel" in message
    assert "unexpected (not in the model): params/backbone/extra/kernel" in message


def test_non_strict_loads_intersection_and_reports_skipped(tmp_path, source, target, caplog):
    flat = {k: v for k, v in _flat(source).items() if "conv2" not in k}
    flat["params/backbone/extra/kernel"] = np.zeros((2, 2), np.float32)
    flat["params/backbone/conv1/kernel"] = np.zeros((3, 3, 4, 9), np.float32)  # wrong shape
    path = tmp_path / "partial.npz"
    np.savez(path, **flat)
    loaded, report = load_pretrained_with_report(target, str(path), strict=False)
    assert report.missing == ("params/backbone/conv2/kernel",)
    assert report.unexpected == ("params/backbone/extra/kernel",)
    assert report.mismatched == (("params/backbone/conv1/kernel", (3, 3, 4, 8), (3, 3, 4, 9)),)
    assert "params/backbone/conv0/kernel" in report.loaded
    assert "batch_stats/backbone/bn2/var" in report.loaded
    backbone = loaded["params"]["backbone"]
    np.testing.assert_array_equal(backbone["conv0"]["kernel"],
                                  source["params"]["backbone"]["conv0"]["kernel"])
    for skipped in ("conv1", "conv2"):  # skipped variables keep the model's values
        np.testing.assert_array_equal(backbone[skipped]["kernel"],
                                      target["params"]["backbone"][skipped]["kernel"])
    _assert_tree_equal(loaded["batch_stats"], source["batch_stats"])
    with caplog.at_level(logging.WARNING):
        load_pretrained(target, str(path), strict=False)
    logged = caplog.text
    assert "params/backbone/conv2/kernel" in logged and "params/backbone/extra/kernel" in logged
    assert "params/backbone/conv1/kernel" in logged


@pytest.mark.parametrize("make_path,match", [
    (lambda d: d / "absent.npz", "does not exist"),
    (lambda d: d, "not an orbax checkpoint"),
    (lambda d: _write(d / "garbage.npz", b"not a zip file"), "not a readable .npz"),
])
def test_bad_paths_raise_naming_the_field(tmp_path, target, make_path, match):
    with pytest.raises(ValueError, match=FIELD + ".*" + match):
        load_pretrained(target, str(make_path(tmp_path)))


def test_nothing_loadable_raises_even_when_not_strict(tmp_path, source, target):
    path = tmp_path / "w.npz"
    save_npz(source, str(path))
    with pytest.raises(ValueError, match="prefix='head'.*classifier"):
        load_pretrained(target, str(path), prefix="head", strict=False)
    np.savez(path, **{"params/backbone/other/kernel": np.zeros(2)})
    with pytest.raises(ValueError, match=FIELD + ".*no variable"):
        load_pretrained(target, str(path), strict=False)


def _flat(variables) -> dict[str, np.ndarray]:
    from flax import traverse_util

    return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(variables, sep="/").items()}


def _write(path, data: bytes):
    path.write_bytes(data)
    return path
