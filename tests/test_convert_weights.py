"""Tests for imbalance_jax.convert_weights: torchvision state dicts -> the .npz of config.model.pretrained_path.

The torch-free tests build a ResNet-18 state dict with torchvision's names and shapes by hand and read it from
.safetensors. The parity tests need PyTorch + torchvision (tests/requirements-torch.txt; skipped without them):
a randomly initialised torchvision model and its conversion must give the same penultimate features and logits
(max abs diff <= 1e-4, float32, CPU, eval mode).
"""
from __future__ import annotations

import importlib.util
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from imbalance_jax import convert_weights as cw
from imbalance_jax.models import create_model
from imbalance_jax.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from imbalance_jax.models.pretrained import load_pretrained_with_report, recorded_normalization

TOLERANCE = 1e-4


def save_file(arrays: dict[str, np.ndarray], path: str) -> None:
    """safetensors.numpy.save_file, imported here: without safetensors (a requirement) only these tests fail."""
    from safetensors.numpy import save_file as save

    save(arrays, path)


# ------------------------------------------------------------------------------- torch-free tests
def torchvision_resnet18_state(num_classes: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Random arrays under torchvision's ResNet-18 names and PyTorch layouts (OIHW convs, [out, in] Linear)."""
    rng = np.random.default_rng(seed)
    state: dict[str, np.ndarray] = {}

    def array(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    def bn(prefix: str, channels: int) -> None:
        state[f"{prefix}.weight"], state[f"{prefix}.bias"] = array(channels), array(channels)
        state[f"{prefix}.running_mean"] = array(channels)
        state[f"{prefix}.running_var"] = np.abs(array(channels)) + 0.5
        state[f"{prefix}.num_batches_tracked"] = np.array(7, np.int64)

    state["conv1.weight"] = array(64, 3, 7, 7)
    bn("bn1", 64)
    channels = 64
    for stage, width in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            prefix = f"layer{stage}.{block}"
            state[f"{prefix}.conv1.weight"] = array(width, channels, 3, 3)
            bn(f"{prefix}.bn1", width)
            state[f"{prefix}.conv2.weight"] = array(width, width, 3, 3)
            bn(f"{prefix}.bn2", width)
            if block == 0 and stage > 1:
                state[f"{prefix}.downsample.0.weight"] = array(width, channels, 1, 1)
                bn(f"{prefix}.downsample.1", width)
            channels = width
    state["fc.weight"], state["fc.bias"] = array(num_classes, 512), array(num_classes)
    return state


@pytest.fixture(scope="module")
def resnet18_state() -> dict[str, np.ndarray]:
    return torchvision_resnet18_state()


def _model_variables(name: str, num_classes: int, size: int = 32, **options) -> dict:
    model = create_model(name, num_classes, **options)
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    return jax.eval_shape(lambda x: model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, x,
                                               train=False), x)


def test_safetensors_cli_layouts_and_loading(tmp_path, resnet18_state, capsys):
    """.safetensors -> CLI -> .npz without PyTorch: every variable of our resnet18 filled, layouts transposed."""
    source, output = tmp_path / "resnet18.safetensors", tmp_path / "out" / "resnet18.npz"
    save_file(resnet18_state, str(source))
    assert cw.main(["--source=torchvision", "--model=resnet18", f"--input={source}", f"--output={output}"]) == 0
    printed = capsys.readouterr().out
    assert f"--config.model.name=resnet18 --config.model.pretrained_path={output}" in printed
    with np.load(output) as data:
        arrays = dict(data)
    state = resnet18_state
    np.testing.assert_array_equal(arrays["params/backbone/conv_init/kernel"],
                                  state["conv1.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(arrays["params/backbone/stage2_block1/shortcut/conv/kernel"],
                                  state["layer2.0.downsample.0.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(arrays["params/backbone/stage4_block2/bn2/scale"], state["layer4.1.bn2.weight"])
    np.testing.assert_array_equal(arrays["batch_stats/backbone/bn_init/mean"], state["bn1.running_mean"])
    np.testing.assert_array_equal(arrays["batch_stats/backbone/stage3_block1/shortcut/bn/var"],
                                  state["layer3.0.downsample.1.running_var"])
    np.testing.assert_array_equal(arrays["params/classifier/kernel"], state["fc.weight"].T)
    np.testing.assert_array_equal(arrays["params/classifier/bias"], state["fc.bias"])
    assert all(a.dtype == np.float32 for a in arrays.values())
    # The file records torchvision's ImageNet input normalisation (config.data.normalization="auto" reads it) ...
    np.testing.assert_array_equal(recorded_normalization(str(output)), [IMAGENET_MEAN, IMAGENET_STD])
    # ... and is otherwise exactly our model's variables: strict loading of the whole model, and of the backbone.
    variables = _model_variables("resnet18", 10)
    _, report = load_pretrained_with_report(variables, str(output), prefix="", strict=True)
    assert not report.skipped and len(report.loaded) == len(arrays) - 1
    _, report = load_pretrained_with_report(_model_variables("resnet18", 4), str(output), strict=True)
    assert not any("classifier" in k for k in report.loaded)


def test_missing_unexpected_and_mismatched_keys_are_named(resnet18_state):
    state = {k: v for k, v in resnet18_state.items() if k != "layer4.1.bn2.running_var"}
    state["layer5.0.conv1.weight"] = np.zeros((1, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match="torchvision resnet18") as err:
        cw.convert_state_dict(state, "resnet18")
    assert "1 missing key(s): layer4.1.bn2.running_var" in str(err.value)
    assert "1 unexpected key(s): layer5.0.conv1.weight" in str(err.value)
    state = dict(resnet18_state, **{"conv1.weight": np.zeros((64, 3, 5, 5), np.float32)})
    with pytest.raises(ValueError, match=r"params/backbone/conv_init/kernel needs \(7, 7, 3, 64\) from "
                                         r"conv1.weight \(64, 3, 5, 5\)"):
        cw.convert_state_dict(state, "resnet18")
    # A ResNet-18 checkpoint is not a ResNet-50 one: the bottleneck convs are missing.
    with pytest.raises(ValueError, match=r"not a torchvision resnet50 state dict: \d+ missing key\(s\): "):
        cw.convert_state_dict(resnet18_state, "resnet50")


def test_state_dict_without_classifier_converts_the_backbone_only(resnet18_state):
    state = {k: v for k, v in resnet18_state.items() if not k.startswith("fc.")}
    conversion = cw.convert_state_dict(state, "resnet18")
    assert conversion.num_classes is None
    assert not any(k.startswith("params/classifier/") for k in conversion.arrays)


def _run_cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        status = cw.main(argv)
    except SystemExit as e:  # argparse
        status = e.code
    err = capsys.readouterr().err
    return status, err


@pytest.mark.parametrize("flags,expected", [
    (["--model=resnet99"], r"--model='resnet99' has no torchvision converter; choose one of \[.*'resnet50'"),
    (["--model=resnet50", "--source=timm"], r"--source='timm' is not supported; choose one of \['torchvision'\]"),
    (["--model=resnet50", "--input=missing.safetensors"], r"--input='missing.safetensors' does not exist"),
    (["--model=resnet50", "--input=weights.ckpt"], r"--input='weights.ckpt' must end in one of"),
    (["--model=resnet50", "--no-fc_layers"], r"--fc_layers / --no-fc_layers only applies to --model=vgg16"),
    (["--model=vit_b", "--input=corrupt.safetensors"], r"is not a readable safetensors file"),
])
def test_cli_errors_are_one_line(flags, expected, tmp_path, capsys, monkeypatch, resnet18_state):
    monkeypatch.chdir(tmp_path)
    save_file(resnet18_state, "weights.safetensors")
    (tmp_path / "corrupt.safetensors").write_bytes(b"not a safetensors file")
    argv = ["--input=weights.safetensors", "--output=out.npz"] + flags
    status, err = _run_cli(argv, capsys)
    assert status == 1
    assert err.startswith("convert_weights: error: ") and err.count("\n") == 1, err
    assert re.search(expected, err), err
    assert not (tmp_path / "out.npz").exists()


def test_cli_usage_errors_are_one_line(capsys):
    status, err = _run_cli([], capsys)
    assert status == 2 and err.count("\n") == 1
    assert "the following arguments are required: --model, --input, --output" in err
    status, err = _run_cli(["--model=resnet50", "--input=a.pth", "--output=b.npz", "--bogus"], capsys)
    assert status == 2 and err.count("\n") == 1 and "--bogus" in err


def test_pth_without_torch_says_what_to_do(tmp_path, monkeypatch):
    path = tmp_path / "resnet50.pth"
    path.write_bytes(b"\x80")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    with pytest.raises(ValueError, match=r"needs PyTorch \(pip install torch\).*\.safetensors"):
        cw.read_state_dict(str(path))


def test_vgg16_without_batchnorm_and_bad_vit_position_embeddings_are_refused():
    plain_vgg = {"features.0.weight": np.zeros((64, 3, 3, 3), np.float32),
                 "features.0.bias": np.zeros((64,), np.float32)}
    with pytest.raises(ValueError, match="vgg16 without BatchNorm.*vgg16_bn"):
        cw.convert_state_dict(plain_vgg, "vgg16")
    vit = {"conv_proj.weight": np.zeros((768, 3, 16, 16), np.float32),
           "encoder.pos_embedding": np.zeros((1, 7, 768), np.float32)}
    with pytest.raises(ValueError, match=r"encoder.pos_embedding has shape \(1, 7, 768\): expected 1 \+ n\*n"):
        cw.convert_state_dict(vit, "vit_b_16")


def test_adaptive_avg_pool_matches_pytorch_bins():
    """VGG's 7x7 adaptive pool: identity on 7x7, replication of a 1x1 map, overlapping bins on 2x2."""
    from imbalance_jax.models.vgg import adaptive_avg_pool

    x = np.random.default_rng(0).standard_normal((1, 7, 7, 2)).astype(np.float32)
    np.testing.assert_allclose(adaptive_avg_pool(jnp.asarray(x), 7), x, rtol=1e-6)
    one = jnp.full((1, 1, 1, 3), 2.5)
    np.testing.assert_array_equal(adaptive_avg_pool(one, 7), jnp.full((1, 7, 7, 3), 2.5))
    two = jnp.asarray([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    pooled = np.asarray(adaptive_avg_pool(two, 7))[0, :, :, 0]
    # Rows/columns 0-2 read index 0, row/column 3 averages both, 4-6 read index 1 (PyTorch's bin boundaries).
    np.testing.assert_allclose(pooled[0, 0], 1.0)
    np.testing.assert_allclose(pooled[3, 3], 2.5)
    np.testing.assert_allclose(pooled[6, 0], 3.0)
    np.testing.assert_allclose(pooled[0, 3], 1.5)


# ---------------------------------------------------------------------- parity with torchvision
_TORCH_OP_SCHEMAS = None  # keeps the operator definitions of _import_torchvision alive


def _import_torchvision():
    """torchvision, or a skip when PyTorch or torchvision is not installed.

    PyPI's Linux torchvision wheels are built against the CUDA PyTorch wheel; next to the CPU wheel their C++
    ops (_C.so: NMS, RoIAlign, ...) cannot load. The classification models never use them, but
    torchvision 0.28 registers fake kernels for nms and qnms unconditionally at import, which fails when the
    ops do not exist: defining their schemas first lets it import. (With torchvision's own CPU wheels,
    https://download.pytorch.org/whl/cpu, the ops load and this is not needed.)
    """
    global _TORCH_OP_SCHEMAS
    torch = pytest.importorskip("torch")
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed (pip install -r tests/requirements-torch.txt)")
    try:
        import torchvision
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        _TORCH_OP_SCHEMAS = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            _TORCH_OP_SCHEMAS.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import torchvision
    return torch, torchvision


def _well_conditioned(torch, torchvision, model, size: int, seed: int = 0) -> None:
    """Random BatchNorm / LayerNorm affine parameters, conv biases and ViT class token / head, then BatchNorm
    running statistics of one train-mode batch of 16 random images; eval mode.

    The BatchNorm that ends a residual branch (ResNet bn2/bn3, EfficientNet's projection BN where the block
    is residual) gets a small scale in [0.1, 0.3] (torchvision's zero_init_residual and Goyal et al. 2017 set
    it to 0; trained networks keep it small), the others [0.5, 1.5]. With scale ~1 everywhere, a randomly
    initialised ResNet-50 amplifies float32 rounding through its depth until torchvision's own float32
    features differ from float64 by ~2e-4, and two exact float32 implementations cannot agree to 1e-4;
    here that float32 noise floor is ~5e-6, while any layout error still shows as O(1) differences.
    """
    generator = torch.Generator().manual_seed(seed)
    branch_ends = set()
    for module in model.modules():
        if isinstance(module, torchvision.models.resnet.Bottleneck):
            branch_ends.add(id(module.bn3))
        elif isinstance(module, torchvision.models.resnet.BasicBlock):
            branch_ends.add(id(module.bn2))
        elif isinstance(module, torchvision.models.efficientnet.MBConv) and module.use_res_connect:
            branch_ends.add(id(module.block[-1][1]))

    def uniform(shape, low, high):
        return torch.rand(shape, generator=generator) * (high - low) + low

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
                low, high = (0.1, 0.3) if id(module) in branch_ends else (0.5, 1.5)
                module.weight.copy_(uniform(module.weight.shape, low, high))
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
            if isinstance(module, torch.nn.BatchNorm2d):
                module.reset_running_stats()
                module.momentum = None  # cumulative average: the running statistics of the batch below
            if isinstance(module, torch.nn.Conv2d) and module.bias is not None:  # VGG, ViT: zero at init
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
        for name, parameter in model.named_parameters():
            if name == "class_token" or name.startswith("heads."):  # zero at init
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)
        if any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()):
            model.train()
            model(torch.randn(16, 3, size, size, generator=generator))
    model.eval()


# (our name, image size): 64 px for the CNNs (VGG's adaptive pool then averages overlapping bins of a 2x2 map);
# ViT-B/16 is built at 32 px by torchvision (image_size=32: 2x2 patches + class token), as ours.
PARITY = [("resnet18", 64), ("resnet50", 64), ("vgg16", 64), ("efficientnet_b0", 64), ("efficientnet_b3", 64),
          ("vit_b", 32)]


@pytest.mark.parametrize("name,size", PARITY)
def test_parity_with_torchvision(name, size):
    torch, torchvision = _import_torchvision()
    torch.manual_seed(0)
    kwargs = {"image_size": size} if name == "vit_b" else {}
    reference = getattr(torchvision.models, cw.TORCHVISION_MODELS[name])(**kwargs)
    _well_conditioned(torch, torchvision, reference, size)
    last_linear = [m for m in reference.modules() if isinstance(m, torch.nn.Linear)][-1]
    penultimate = {}
    last_linear.register_forward_hook(lambda module, inputs, output: penultimate.update(x=inputs[0]))
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = reference(images).numpy()
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    del reference

    conversion = cw.convert_state_dict(state, name)
    assert conversion.num_classes == 1000
    if name == "vit_b":  # the key names of torchvision's published ViT weights (MLPBlock before v0.13)
        legacy = {k.replace(".mlp.0.", ".mlp.linear_1.").replace(".mlp.3.", ".mlp.linear_2."): v
                  for k, v in state.items()}
        assert any(".mlp.linear_1." in k for k in legacy)
        legacy_arrays = cw.convert_state_dict(legacy, name).arrays
        assert all(np.array_equal(legacy_arrays[k], v) for k, v in conversion.arrays.items())
    model = create_model(name, conversion.num_classes, **conversion.model_options)
    variables = traverse_util.unflatten_dict(conversion.arrays, sep="/")
    ours, features = jax.jit(lambda v, x: model.apply(v, x, train=False))(
        variables, jnp.asarray(images.numpy().transpose(0, 2, 3, 1)))
    feature_diff = float(np.abs(np.asarray(features["backbone"]) - penultimate["x"].numpy()).max())
    logit_diff = float(np.abs(np.asarray(ours) - logits).max())
    print(f"{name}: max |features diff| {feature_diff:.2e}, max |logits diff| {logit_diff:.2e}")
    assert features["backbone"].shape == tuple(penultimate["x"].shape)
    assert feature_diff <= TOLERANCE and logit_diff <= TOLERANCE
    assert np.abs(logits).max() > 0.1  # not a trivially zero comparison


@pytest.mark.parametrize("name", ["resnet34", "resnet101", "resnet152", "efficientnet_b1", "efficientnet_b2"])
def test_other_torchvision_models_convert_to_exactly_our_variables(name, tmp_path):
    """The remaining counterparts: every torchvision tensor used, every variable of ours filled, shapes equal."""
    torch, torchvision = _import_torchvision()
    reference = getattr(torchvision.models, cw.TORCHVISION_MODELS[name])()
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    del reference
    conversion = cw.convert_state_dict(state, name)
    variables = _model_variables(name, 1000)
    flat = traverse_util.flatten_dict(dict(variables), sep="/")
    assert set(conversion.arrays) == set(flat)
    assert all(conversion.arrays[k].shape == v.shape for k, v in flat.items())


def test_vgg16_conv_layers_only_for_the_average_pooled_model():
    torch, torchvision = _import_torchvision()
    state = {k: v.numpy() for k, v in torchvision.models.vgg16_bn().state_dict().items()}
    conversion = cw.convert_state_dict(state, "vgg16", fc_layers=False)
    assert conversion.num_classes is None and conversion.model_options == {}
    flat = traverse_util.flatten_dict(dict(_model_variables("vgg16", 10)), sep="/")
    assert set(conversion.arrays) == {k for k in flat if k.split("/")[1] == "backbone"}
    # The conv bias is folded into the BatchNorm running mean.
    np.testing.assert_allclose(conversion.arrays["batch_stats/backbone/bn0/mean"],
                               state["features.1.running_mean"] - state["features.0.bias"])
    full = cw.convert_state_dict(state, "vgg16")
    assert full.model_options == {"fc_layers": True} and full.num_classes == 1000


class _Marker:
    """Unpickling sets ``loaded``: torch.load(weights_only=True) must refuse it before that happens."""

    loaded = False

    def __setstate__(self, state):
        type(self).loaded = True


def test_pth_is_read_with_weights_only(tmp_path, resnet18_state, capsys):
    """A .pth state dict (nested under "state_dict", saved from DataParallel) converts like the .safetensors
    file; a pickled object is refused without being unpickled."""
    torch, _ = _import_torchvision()
    wrapped = {"state_dict": {f"module.{k}": torch.from_numpy(v) for k, v in resnet18_state.items()}}
    torch.save(wrapped, tmp_path / "resnet18.pth")
    save_file(resnet18_state, str(tmp_path / "resnet18.safetensors"))
    for suffix in ("pth", "safetensors"):
        assert cw.main(["--model=resnet18", f"--input={tmp_path / f'resnet18.{suffix}'}",
                        f"--output={tmp_path / f'{suffix}.npz'}"]) == 0
    with np.load(tmp_path / "pth.npz") as a, np.load(tmp_path / "safetensors.npz") as b:
        assert set(a.files) == set(b.files)
        assert all(np.array_equal(a[k], b[k]) for k in a.files)

    torch.save({"conv1.weight": torch.zeros(1), "extra": _Marker()}, tmp_path / "pickled.pth")
    status, err = _run_cli(["--model=resnet18", f"--input={tmp_path / 'pickled.pth'}",
                            f"--output={tmp_path / 'x.npz'}"], capsys)
    assert status == 1 and err.count("\n") == 1
    assert "could not be read with torch.load(weights_only=True)" in err
    assert not _Marker.loaded
