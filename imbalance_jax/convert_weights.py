"""Converts torchvision checkpoints into the ``.npz`` that ``--config.model.pretrained_path`` loads.

    python -m imbalance_jax.convert_weights --source=torchvision --model=resnet50 \\
        --input=resnet50-11ad3fa6.pth --output=resnet50.npz

Supported (``--model``, ours = torchvision): resnet18/34/50/101/152, vgg16 = vgg16_bn (VGG-16 with
BatchNorm; the plain vgg16 has no BatchNorm and is refused), efficientnet_b0..b3, vit_b = vit_b_16 (any
patch size and resolution: both are read from the checkpoint). The torchvision names ``vgg16_bn`` and
``vit_b_16`` are accepted as aliases.

Input: a state dict (parameter name -> tensor), the format of torchvision's published weights.
``.safetensors`` files are read with ``safetensors.numpy`` (no PyTorch needed). ``.pth`` / ``.pt`` files
are read only through ``torch.load(path, map_location="cpu", weights_only=True)``, which loads tensors and
plain containers and refuses arbitrary pickled objects; PyTorch is needed for those. A state dict nested
under ``"state_dict"`` or ``"model"``, or saved from ``nn.DataParallel`` (``module.`` prefixes), is
unwrapped. ``num_batches_tracked`` counters are dropped.

Output: a ``.npz`` of flattened variable paths, written by
:func:`imbalance_jax.models.pretrained.save_npz`: ``params/backbone/...`` and
``batch_stats/backbone/...`` for the backbone and, when the checkpoint has its classification layer,
``params/classifier/{kernel,bias}`` (the Dense of :class:`ImageClassifier`, ``num_classes`` = its output
size, 1000 for ImageNet). The configs load with ``pretrained_prefix="backbone"`` (the default), so only the
backbone is taken; ``--config.model.pretrained_prefix=""`` also loads the classifier, for a model built with
the same number of classes and ``head_widths=()``. Every array is float32.

Layouts (PyTorch -> Flax):

* Conv2d ``weight`` [out, in, kh, kw] (OIHW) -> ``kernel`` [kh, kw, in, out] (HWIO); a depthwise conv's
  [C, 1, k, k] -> [k, k, 1, C] (``feature_group_count=C``). Conv biases (ViT ``conv_proj``) are copied.
* Linear ``weight`` [out, in] -> Dense ``kernel`` [in, out]; ``bias`` copied. EfficientNet's
  squeeze-excitation 1x1 convs (``fc1``/``fc2``, [out, in, 1, 1]) become Dense kernels [in, out].
* BatchNorm2d ``weight`` / ``bias`` -> ``params`` ``scale`` / ``bias``; ``running_mean`` /
  ``running_var`` -> ``batch_stats`` ``mean`` / ``var`` (same epsilon 1e-5; PyTorch's momentum 0.1 is
  flax's 0.9, as the project's BatchNorm).
* VGG-16: torchvision's conv biases sit right before a BatchNorm; ours have none, so each bias is folded
  into the running mean (``mean = running_mean - conv bias``), exact at inference and irrelevant in
  training (batch statistics subtract any constant). The first FC layer reads the 512x7x7 map flattened in
  NCHW order, ours flattens NHWC: its [4096, 512*7*7] weight is reshaped to [4096, 512, 7, 7], transposed
  to [7, 7, 512, 4096] and flattened to [25088, 4096]. Its two 4096-wide FC layers go to
  ``backbone/fc0`` and ``backbone/fc1`` (load with ``--config.model.fc_layers=True``); ``--no-fc_layers``
  converts only the 13 conv layers, for the default globally average-pooled VGG-16.
* ViT: ``conv_proj`` -> ``backbone/embedding``; ``class_token`` [1, 1, D] -> ``backbone/cls``;
  ``encoder.pos_embedding`` [1, 1 + N, D] (class-token position first) -> ``backbone/pos_embedding``, so
  the model must run at the resolution with N patches (224 px for ``IMAGENET1K_V1``); the attention's
  packed ``in_proj_weight`` [3D, D] / ``in_proj_bias`` [3D] split into query, key, value rows, each
  transposed and reshaped to flax's per-head [D, heads, D/heads] kernel / [heads, D/heads] bias;
  ``out_proj.weight`` [D, D] -> ``out`` kernel [heads, D/heads, D]; ``ln_1``/``ln_2``/``encoder.ln`` ->
  ``ln1``/``ln2``/``encoder_norm`` (epsilon 1e-6); ``mlp.0``/``mlp.3`` (or the older checkpoints'
  ``mlp.linear_1``/``mlp.linear_2``) -> ``mlp/fc1``/``mlp/fc2``; ``heads.head`` -> the classifier.

Every model variable must come from the checkpoint and every checkpoint entry must be used: otherwise the
conversion fails naming the missing / unexpected keys and any shape mismatch.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from imbalance_jax.models.efficientnet import B0_STAGES
from imbalance_jax.models.vgg import FC_POOL, VGG16_PLAN

SOURCES: tuple[str, ...] = ("torchvision",)
# Our backbone name -> torchvision's model function.
TORCHVISION_MODELS: dict[str, str] = {
    "resnet18": "resnet18", "resnet34": "resnet34", "resnet50": "resnet50",
    "resnet101": "resnet101", "resnet152": "resnet152",
    "vgg16": "vgg16_bn",
    "efficientnet_b0": "efficientnet_b0", "efficientnet_b1": "efficientnet_b1",
    "efficientnet_b2": "efficientnet_b2", "efficientnet_b3": "efficientnet_b3",
    "vit_b": "vit_b_16",
}
ALIASES: dict[str, str] = {"vgg16_bn": "vgg16", "vit_b_16": "vit_b"}
INPUT_SUFFIXES: tuple[str, ...] = (".safetensors", ".pth", ".pt")
# The final classification layer of each torchvision family (its weight fixes num_classes).
_HEADS: dict[str, str] = {"resnet": "fc", "vgg": "classifier.6", "efficientnet": "classifier.1",
                          "vit": "heads.head"}
_SHOWN = 6  # keys listed per problem in an error message


def _family(model: str) -> str:
    return re.match(r"[a-z]+", model).group(0)


def _few(names: Sequence[str]) -> str:
    names = sorted(names)
    more = f", ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


# ------------------------------------------------------------------------------------------ reading
def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise ValueError("reading a .safetensors file needs the safetensors package "
                         "(pip install -r requirements.txt).") from None
    try:
        return load_file(path)
    except Exception as e:  # the Rust reader raises its own error types
        raise ValueError(f"--input={path!r} is not a readable safetensors file "
                         f"({type(e).__name__}: {_first_line(e)}).") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _read_torch(path: str) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise ValueError(f"--input={path!r}: reading a .pth/.pt checkpoint needs PyTorch (pip install torch); "
                         "without it, pass a .safetensors file of the same state dict.") from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError for refused objects, RuntimeError for corrupt files
        raise ValueError(f"--input={path!r} could not be read with torch.load(weights_only=True), which only "
                         f"loads tensors and plain containers ({type(e).__name__}: {_first_line(e)}).") from None
    state = _unwrap(loaded, path)
    arrays = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"--input={path!r}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                             "expected a state dict of tensors.")
        value = value.detach().cpu()
        arrays[key] = (value.float() if value.is_floating_point() else value).numpy()
    return arrays


def _unwrap(loaded: Any, path: str) -> Mapping[str, Any]:
    """The state dict itself, or the one under a ``"state_dict"`` / ``"model"`` key of a training checkpoint."""
    if not isinstance(loaded, Mapping):
        raise ValueError(f"--input={path!r} holds a {type(loaded).__name__}, not a state dict "
                         "(parameter name -> tensor).")
    for wrapper in ("state_dict", "model"):
        inner = loaded.get(wrapper)
        if isinstance(inner, Mapping):
            return inner
    return loaded


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """Parameter name -> numpy array of a ``.safetensors`` or ``.pth``/``.pt`` state dict (see module doc)."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in INPUT_SUFFIXES:
        raise ValueError(f"--input={path!r} must end in one of {list(INPUT_SUFFIXES)}.")
    if not os.path.isfile(path):
        raise ValueError(f"--input={path!r} does not exist.")
    arrays = _read_safetensors(path) if suffix == ".safetensors" else _read_torch(path)
    if not arrays:
        raise ValueError(f"--input={path!r} holds no tensors.")
    return arrays


def _normalise(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Drops BatchNorm counters and ``module.`` prefixes, renames the older ViT MLP keys, casts to float32."""
    keys = list(state)
    strip = all(k.startswith("module.") for k in keys)
    out = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        if strip:
            key = key[len("module."):]
        # torchvision's MLPBlock before v0.13 (https://github.com/pytorch/vision/pull/6053): linear_1/2 -> 0/3.
        key = re.sub(r"\.mlp\.linear_1\.", ".mlp.0.", key)
        key = re.sub(r"\.mlp\.linear_2\.", ".mlp.3.", key)
        value = np.asarray(value)
        out[key] = value.astype(np.float32) if np.issubdtype(value.dtype, np.floating) else value
    return out


# ------------------------------------------------------------------------------------- layouts
Transform = Callable[[Sequence[np.ndarray], tuple[int, ...]], np.ndarray]


def _copy(arrays: Sequence[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    return arrays[0]


def _kernel(arrays: Sequence[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """Conv OIHW -> HWIO; Linear [out, in] -> [in, out]; a 1x1 conv [out, in, 1, 1] read as a Dense -> [in, out]."""
    w = arrays[0]
    if w.ndim == 4 and len(shape) == 4:
        return np.transpose(w, (2, 3, 1, 0))
    if w.ndim == 4 and len(shape) == 2 and w.shape[2:] == (1, 1):
        return np.transpose(w[:, :, 0, 0])
    if w.ndim == 2:
        return np.transpose(w)
    return w  # wrong rank: reported as a shape mismatch


def _bn_mean_minus_bias(arrays: Sequence[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """VGG: BN(conv(x) + b) with running mean m equals BN(conv(x)) with running mean m - b."""
    return arrays[0] - arrays[1]


def _vgg_fc0(arrays: Sequence[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """[out, C*7*7] over an NCHW flatten -> [7*7*C, out] over our NHWC flatten."""
    w = arrays[0]
    out, flat = w.shape
    if flat % (FC_POOL * FC_POOL):
        return w
    w = w.reshape(out, flat // (FC_POOL * FC_POOL), FC_POOL, FC_POOL)
    return np.transpose(w, (2, 3, 1, 0)).reshape(flat, out)


def _qkv(index: int, kernel: bool) -> Transform:
    """Rows [index*D, (index+1)*D) of the packed in_proj weight/bias, as flax's per-head kernel/bias."""
    def transform(arrays: Sequence[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
        w = arrays[0]
        d = w.shape[0] // 3
        part = w[index * d:(index + 1) * d]
        part = np.transpose(part) if kernel else part
        return part.reshape(shape) if part.size == math.prod(shape) else part

    return transform


def _attention_out(arrays: Sequence[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """out_proj.weight [D_out, heads*head_dim] -> [heads, head_dim, D_out]."""
    w = np.transpose(arrays[0])
    return w.reshape(shape) if w.size == math.prod(shape) else w


# --------------------------------------------------------------------------------------- naming
@dataclasses.dataclass(frozen=True)
class _Entry:
    """One of our variables: the torchvision keys it is computed from and how."""

    key: str  # "params/backbone/conv_init/kernel"
    sources: tuple[str, ...]
    transform: Transform


_LEAF_NAMES: dict[tuple[str, str], str] = {
    ("params", "kernel"): "weight", ("params", "bias"): "bias", ("params", "scale"): "weight",
    ("batch_stats", "mean"): "running_mean", ("batch_stats", "var"): "running_var",
}


def _default_entry(key: str, collection: str, leaf: str, module: str) -> _Entry:
    name = _LEAF_NAMES[(collection, leaf)]
    return _Entry(key, (f"{module}.{name}",), _kernel if leaf == "kernel" else _copy)


def _block(name: str) -> tuple[int, int]:
    """'stage3_block2' -> (3, 2)."""
    match = re.fullmatch(r"stage(\d+)_block(\d+)", name)
    if not match:
        raise KeyError(name)
    return int(match.group(1)), int(match.group(2))


def _resnet_module(modules: tuple[str, ...]) -> str:
    if modules == ("classifier",):
        return "fc"
    m = modules[1:]
    if m in (("conv_init",), ("bn_init",)):
        return {"conv_init": "conv1", "bn_init": "bn1"}[m[0]]
    stage, block = _block(m[0])
    base = f"layer{stage}.{block - 1}"
    if m[1] == "shortcut":
        return f"{base}.downsample.{ {'conv': 0, 'bn': 1}[m[2]] }"
    return f"{base}.{m[1]}"


def _resnet_entry(key: str, collection: str, modules: tuple[str, ...], leaf: str) -> _Entry:
    return _default_entry(key, collection, leaf, _resnet_module(modules))


def _vgg_conv_indices() -> list[int]:
    """Index of each conv in torchvision's vgg16_bn ``features`` (conv, BN, ReLU per conv; one max-pool)."""
    index, indices = 0, []
    for mult in VGG16_PLAN:
        if mult == 0:
            index += 1
        else:
            indices.append(index)
            index += 3
    return indices


def _vgg_entry(key: str, collection: str, modules: tuple[str, ...], leaf: str) -> _Entry:
    if modules == ("classifier",):
        return _default_entry(key, collection, leaf, "classifier.6")
    name = modules[1]
    if name in ("fc0", "fc1"):
        module = {"fc0": "classifier.0", "fc1": "classifier.3"}[name]
        if name == "fc0" and leaf == "kernel":
            return _Entry(key, (f"{module}.weight",), _vgg_fc0)
        return _default_entry(key, collection, leaf, module)
    kind, number = re.fullmatch(r"(conv|bn)(\d+)", name).groups()
    conv = _vgg_conv_indices()[int(number)]
    if kind == "conv":
        return _default_entry(key, collection, leaf, f"features.{conv}")
    if leaf == "mean":
        return _Entry(key, (f"features.{conv + 1}.running_mean", f"features.{conv}.bias"),
                      _bn_mean_minus_bias)
    return _default_entry(key, collection, leaf, f"features.{conv + 1}")


def _efficientnet_entry(key: str, collection: str, modules: tuple[str, ...], leaf: str) -> _Entry:
    if modules == ("classifier",):
        return _default_entry(key, collection, leaf, "classifier.1")
    m = modules[1:]
    fixed = {"stem_conv": "features.0.0", "stem_bn": "features.0.1",
             "head_conv": f"features.{len(B0_STAGES) + 1}.0", "head_bn": f"features.{len(B0_STAGES) + 1}.1"}
    if m[0] in fixed:
        return _default_entry(key, collection, leaf, fixed[m[0]])
    stage, block = _block(m[0])
    base = f"features.{stage}.{block - 1}.block"
    first = 1 if B0_STAGES[stage - 1][0] != 1 else 0  # the expansion conv comes first when there is one
    layers = {"expand_conv": "0.0", "expand_bn": "0.1",
              "depthwise_conv": f"{first}.0", "depthwise_bn": f"{first}.1",
              "project_conv": f"{first + 2}.0", "project_bn": f"{first + 2}.1"}
    if m[1] == "se":
        return _default_entry(key, collection, leaf,
                              f"{base}.{first + 1}.{ {'reduce': 'fc1', 'expand': 'fc2'}[m[2]] }")
    return _default_entry(key, collection, leaf, f"{base}.{layers[m[1]]}")


def _vit_entry(key: str, collection: str, modules: tuple[str, ...], leaf: str) -> _Entry:
    if modules == ("classifier",):
        return _default_entry(key, collection, leaf, "heads.head")
    m = modules[1:]
    if not m:
        return _Entry(key, ({"cls": "class_token", "pos_embedding": "encoder.pos_embedding"}[leaf],), _copy)
    if m[0] in ("embedding", "encoder_norm"):
        return _default_entry(key, collection, leaf, {"embedding": "conv_proj", "encoder_norm": "encoder.ln"}[m[0]])
    block = int(re.fullmatch(r"block(\d+)", m[0]).group(1))
    layer = f"encoder.layers.encoder_layer_{block}"
    if m[1] == "attention":
        attention = f"{layer}.self_attention"
        if m[2] == "out":
            if leaf == "kernel":
                return _Entry(key, (f"{attention}.out_proj.weight",), _attention_out)
            return _default_entry(key, collection, leaf, f"{attention}.out_proj")
        index = ("query", "key", "value").index(m[2])
        source = f"{attention}.in_proj_{'weight' if leaf == 'kernel' else 'bias'}"
        return _Entry(key, (source,), _qkv(index, kernel=leaf == "kernel"))
    sub = {("ln1",): "ln_1", ("ln2",): "ln_2", ("mlp", "fc1"): "mlp.0", ("mlp", "fc2"): "mlp.3"}[m[1:]]
    return _default_entry(key, collection, leaf, f"{layer}.{sub}")


_ENTRIES: dict[str, Callable[[str, str, tuple[str, ...], str], _Entry]] = {
    "resnet": _resnet_entry, "vgg": _vgg_entry, "efficientnet": _efficientnet_entry, "vit": _vit_entry,
}


# ------------------------------------------------------------------------------------ conversion
@dataclasses.dataclass(frozen=True)
class Conversion:
    """A converted checkpoint: ``arrays`` (npz key -> float32 array) and how to build the model that loads it.

    ``model_options``: the ``config.model`` fields the model needs besides ``name`` (``fc_layers`` for
    VGG-16, ``patch_size`` for a ViT whose patches are not 16 px); ``image_size``: the resolution fixed by
    a ViT's position embeddings (None for CNNs); ``num_classes``: output size of the converted classifier
    (None when the checkpoint had none or it was not converted).
    """

    model: str
    arrays: dict[str, np.ndarray]
    model_options: dict[str, Any]
    image_size: int | None
    num_classes: int | None

    @property
    def num_parameters(self) -> int:
        return sum(a.size for k, a in self.arrays.items() if k.startswith("params/"))

    def usage(self, output: str) -> str:
        """The training flags that load this file."""
        flags = [f"--config.model.name={self.model}"]
        flags += [f"--config.model.{k}={v}" for k, v in self.model_options.items()]
        if self.image_size:
            flags.append(f"--config.data.image_size={self.image_size}")
        flags.append(f"--config.model.pretrained_path={output}")
        return " ".join(flags)


def resolve_model(model: str) -> str:
    """Our backbone name for ``model`` (ours or a torchvision alias); ValueError listing the choices."""
    name = ALIASES.get(model, model) if isinstance(model, str) else model
    if not isinstance(name, str) or name not in TORCHVISION_MODELS:
        raise ValueError(f"--model={model!r} has no torchvision converter; choose one of "
                         f"{sorted(TORCHVISION_MODELS)} (aliases: {sorted(ALIASES)}).")
    return name


def _model_shapes(model: str, options: Mapping[str, Any], num_classes: int,
                  image_size: int) -> dict[str, tuple[int, ...]]:
    """Flattened variable path -> shape of our model, traced only (no parameters are allocated)."""
    import jax
    import jax.numpy as jnp
    from flax import traverse_util

    from imbalance_jax.models import create_model

    classifier = create_model(model, num_classes, **options)
    images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    variables = jax.eval_shape(
        lambda x: classifier.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, x, train=False),
        images)
    return {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(dict(variables), sep="/").items()}


def _vit_geometry(state: Mapping[str, np.ndarray]) -> tuple[int, int]:
    """(patch size, image size) from ``conv_proj.weight`` and ``encoder.pos_embedding``."""
    missing = [k for k in ("conv_proj.weight", "encoder.pos_embedding") if k not in state]
    if missing:
        raise ValueError(f"not a torchvision ViT state dict: missing {missing}.")
    patch = int(state["conv_proj.weight"].shape[-1])
    shape = state["encoder.pos_embedding"].shape
    tokens = int(shape[1]) - 1 if len(shape) == 3 else 0
    side = math.isqrt(max(tokens, 0))
    if tokens < 1 or side * side != tokens:
        raise ValueError(f"encoder.pos_embedding has shape {tuple(state['encoder.pos_embedding'].shape)}: "
                         "expected 1 + n*n tokens (class token + a square grid of patches).")
    return patch, patch * side


def convert_state_dict(state: Mapping[str, np.ndarray], model: str, *,
                       fc_layers: bool | None = None) -> Conversion:
    """Converts a torchvision state dict (name -> array) for our backbone ``model`` (see the module doc).

    ``fc_layers``: VGG-16 only (None = True): convert torchvision's two 4096-wide FC layers and its
    classifier (for ``config.model.fc_layers=True``), or only the conv layers (False).
    ValueError naming the missing / unexpected keys or mismatched shapes when the state dict is not
    torchvision's ``model``.
    """
    model = resolve_model(model)
    family = _family(model)
    if fc_layers is not None and family != "vgg":
        raise ValueError(f"--fc_layers / --no-fc_layers only applies to --model=vgg16, not {model!r}.")
    state = _normalise(state)
    options: dict[str, Any] = {}
    image_size, ignored = 32, set()  # any size gives a CNN's variable shapes
    if family == "vgg":
        if "features.1.running_mean" not in state and "features.0.weight" in state:
            raise ValueError("this is torchvision's vgg16 without BatchNorm; our VGG-16 has BatchNorm: "
                             "convert vgg16_bn weights (VGG16_BN_Weights) instead.")
        if fc_layers is None or fc_layers:
            options["fc_layers"] = True
        else:
            ignored = {k for k in state if k.startswith("classifier.")}
    if family == "vit":
        patch, image_size = _vit_geometry(state)
        if patch != 16:
            options["patch_size"] = patch
    head = _HEADS[family]
    with_classifier = f"{head}.weight" in state and f"{head}.weight" not in ignored
    num_classes = int(state[f"{head}.weight"].shape[0]) if with_classifier else 1
    shapes = _model_shapes(model, options, num_classes, image_size)
    if not with_classifier:
        shapes = {k: s for k, s in shapes.items() if not k.startswith("params/classifier/")}

    entries = []
    for key in shapes:
        collection, *modules, leaf = key.split("/")
        entries.append(_ENTRIES[family](key, collection, tuple(modules), leaf))
    needed = {s for e in entries for s in e.sources}
    missing = sorted(needed - set(state))
    unexpected = sorted(set(state) - needed - ignored)
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_few(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_few(unexpected)}")
    if family == "vgg" and any(k.startswith("classifier.") for k in missing):
        problems.append("for the conv layers only, pass --no-fc_layers")
    if problems:
        raise ValueError(f"not a torchvision {TORCHVISION_MODELS[model]} state dict: {'; '.join(problems)}.")

    arrays, mismatched = {}, []
    for entry in entries:
        value = entry.transform([state[s] for s in entry.sources], shapes[entry.key])
        if tuple(value.shape) != shapes[entry.key]:
            source_shapes = ", ".join(f"{s} {tuple(state[s].shape)}" for s in entry.sources)
            mismatched.append(f"{entry.key} needs {shapes[entry.key]} from {source_shapes}")
        arrays[entry.key] = np.ascontiguousarray(value, dtype=np.float32)
    if mismatched:
        raise ValueError(f"shapes do not fit our {model}: {len(mismatched)} mismatch(es): "
                         f"{'; '.join(mismatched[:_SHOWN])}.")
    return Conversion(model=model, arrays=arrays, model_options=options,
                      image_size=image_size if family == "vit" else None,
                      num_classes=num_classes if with_classifier else None)


def convert_file(input_path: str, output_path: str, model: str, *, source: str = "torchvision",
                 fc_layers: bool | None = None) -> Conversion:
    """Reads ``input_path``, converts it (:func:`convert_state_dict`) and writes the ``.npz`` ``output_path``."""
    from flax import traverse_util

    from imbalance_jax.data.normalization import IMAGENET_MEAN, IMAGENET_STD
    from imbalance_jax.models.pretrained import INPUT_NORMALIZATION_KEY, save_npz

    if source not in SOURCES:
        raise ValueError(f"--source={source!r} is not supported; choose one of {list(SOURCES)}.")
    model = resolve_model(model)
    if not output_path:
        raise ValueError("--output must be a path for the .npz file.")
    conversion = convert_state_dict(read_state_dict(input_path), model, fc_layers=fc_layers)
    variables = traverse_util.unflatten_dict(conversion.arrays, sep="/")
    variables[INPUT_NORMALIZATION_KEY] = np.stack([IMAGENET_MEAN, IMAGENET_STD])  # torchvision's ImageNet inputs
    save_npz(variables, output_path)
    return conversion


# ------------------------------------------------------------------------------------------- CLI
class _Parser(argparse.ArgumentParser):
    """argparse printing a bad command line as one line instead of usage + message."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m imbalance_jax.convert_weights",
                     description="Convert a torchvision checkpoint (.pth or .safetensors state dict) into the "
                                 ".npz that --config.model.pretrained_path loads.")
    parser.add_argument("--source", default="torchvision", help=f"checkpoint family: {', '.join(SOURCES)}")
    parser.add_argument("--model", required=True,
                        help=f"our backbone name: {', '.join(sorted(TORCHVISION_MODELS))} "
                             f"(or torchvision's {', '.join(sorted(ALIASES))})")
    parser.add_argument("--input", required=True, help="state dict: .safetensors, or .pth/.pt (needs PyTorch)")
    parser.add_argument("--output", required=True, help="the .npz to write")
    parser.add_argument("--fc_layers", action=argparse.BooleanOptionalAction, default=None,
                        help="vgg16 only: convert the two FC layers and the classifier (default) or, with "
                             "--no-fc_layers, the conv layers only (for the default average-pooled VGG-16)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (errors are printed as one line on stderr)."""
    args = _parser().parse_args(argv)
    try:
        conversion = convert_file(args.input, args.output, args.model, source=args.source,
                                  fc_layers=args.fc_layers)
    except (ValueError, OSError) as e:
        print(f"convert_weights: error: {e}", file=sys.stderr)
        return 1
    classifier = (f" + {conversion.num_classes}-class classifier" if conversion.num_classes else "")
    print(f"Wrote {len(conversion.arrays)} arrays ({conversion.num_parameters:,} parameters; torchvision "
          f"{TORCHVISION_MODELS[conversion.model]} backbone{classifier}) to {args.output}.\n"
          f"Train from it with: {conversion.usage(args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
