"""Tests for imbalance_jax.models: registry, (logits, features) contract, heads, BN, dropout, dtypes.

Big models are only traced (jax.eval_shape: shapes and parameter counts without compute);
real forward passes use the small CNN and other tiny configurations.
"""
from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from imbalance_jax.models import BACKBONES, CosineClassifier, create_model
from imbalance_jax.models.cifar_resnet import option_a_shortcut
import flax.linen as nn

from imbalance_jax.models.common import batch_norm, max_pool_2x2
from imbalance_jax.models.heads import TDEClassifier

# Pooled backbone width of every registered backbone at its default width.
FEATURE_DIMS = {
    "small_cnn": 64, "cnn4": 128,
    "resnet20": 64, "resnet32": 64, "resnet56": 64,
    "resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048, "resnet152": 2048,
    "vgg16": 512, "vit_ti": 192, "vit_s": 384, "vit_b": 768,
    "efficientnet_b0": 1280, "efficientnet_b1": 1280, "efficientnet_b2": 1408,
    "efficientnet_b3": 1536,
}
WITHOUT_BATCHNORM = {"cnn4", "vit_ti", "vit_s", "vit_b"}
INPUT_SHAPES = {"small_cnn": (2, 8, 8, 1), "cnn4": (2, 28, 28, 1)}  # others: (2, 32, 32, 3)

KEY = jax.random.key(0)
INIT_RNGS = {"params": jax.random.key(1), "dropout": jax.random.key(2)}


def model_config(**fields) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(fields)


def n_params(params) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))


def abstract_init(model, shape):
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    return jax.eval_shape(lambda x: model.init(INIT_RNGS, x, train=False), x)


def images(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def init(model, x):
    """Real (jitted) init: one compilation instead of op-by-op dispatch."""
    return jax.jit(lambda x: model.init(INIT_RNGS, x, train=False))(x)


# ----------------------------------------------------------------------------- registry / contract
def test_registry_lists_every_backbone():
    assert set(BACKBONES) == set(FEATURE_DIMS)


@pytest.mark.parametrize("name", sorted(FEATURE_DIMS))
def test_backbone_contract_shapes(name):
    """Every backbone: logits [B, C] float32, documented feature keys and shapes, train and eval."""
    model = create_model(**model_config(name=name, head_widths=(8, 2), dropout=0.1), num_classes=7)
    shape = INPUT_SHAPES.get(name, (2, 32, 32, 3))
    variables = abstract_init(model, shape)
    assert ("batch_stats" in variables) == (name not in WITHOUT_BATCHNORM)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    (logits, feats), new_state = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=True, rngs={"dropout": KEY}, mutable=["batch_stats"]),
        variables, x)
    eval_logits, eval_feats = jax.eval_shape(lambda v, x: model.apply(v, x, train=False),
                                             variables, x)
    expected = {"backbone": (2, FEATURE_DIMS[name]), "head_0": (2, 8), "head_1": (2, 2),
                "head_last": (2, 2), "classifier_input": (2, 2)}
    for out_logits, out_feats in ((logits, feats), (eval_logits, eval_feats)):
        assert out_logits.shape == (2, 7) and out_logits.dtype == jnp.float32
        assert {k: v.shape for k, v in out_feats.items()} == expected
        assert all(v.dtype == jnp.float32 for v in out_feats.values())
    if name not in WITHOUT_BATCHNORM:
        assert jax.tree_util.tree_structure(new_state["batch_stats"]) == \
            jax.tree_util.tree_structure(variables["batch_stats"])


# ------------------------------------------------------------------------------ parameter counts
# Published counts (torchvision / timm / the ResNet paper); counted on abstract params only.
PUBLISHED_PARAMS = [
    ("resnet20", 10, 32, 0.27e6),  # He et al. 2016, Table 6
    ("resnet32", 10, 32, 0.46e6),
    ("resnet56", 10, 32, 0.85e6),
    ("resnet18", 1000, 224, 11.69e6),  # torchvision
    ("resnet34", 1000, 224, 21.80e6),
    ("resnet50", 1000, 224, 25.56e6),
    ("resnet101", 1000, 224, 44.55e6),
    ("resnet152", 1000, 224, 60.19e6),
    ("vit_ti", 1000, 224, 5.72e6),  # timm vit_{tiny,small,base}_patch16_224
    ("vit_s", 1000, 224, 22.05e6),
    ("vit_b", 1000, 224, 86.57e6),
    ("efficientnet_b0", 1000, 224, 5.29e6),  # Tan & Le 2019, Table 2 / torchvision
    ("efficientnet_b1", 1000, 240, 7.79e6),
    ("efficientnet_b2", 1000, 260, 9.11e6),
    ("efficientnet_b3", 1000, 300, 12.23e6),
    # torchvision vgg16_bn minus its three FC layers and conv biases, plus a 512x1000 classifier.
    ("vgg16", 1000, 224, 15.23e6),
    # conv 832 + 51,264 + 204,928, FC 2048x128 + 128, classifier 128x10 + 10.
    ("cnn4", 10, 28, 520_586),
]


@pytest.mark.parametrize("name,num_classes,size,expected", PUBLISHED_PARAMS)
def test_parameter_counts_match_published(name, num_classes, size, expected):
    model = create_model(**model_config(name=name), num_classes=num_classes)
    channels = 1 if name == "cnn4" else 3
    variables = abstract_init(model, (1, size, size, channels))
    assert n_params(variables["params"]) == pytest.approx(expected, rel=0.02)


def test_width_and_small_input_options():
    narrow = create_model(**model_config(name="resnet20", width=8), num_classes=10)
    assert n_params(abstract_init(narrow, (1, 32, 32, 3))["params"]) < 0.27e6 / 3
    (_, feats) = jax.eval_shape(
        lambda v: narrow.apply(v, jnp.zeros((1, 32, 32, 3)), train=False),
        abstract_init(narrow, (1, 32, 32, 3)))
    assert feats["backbone"].shape == (1, 32)
    for small_input, kernel in ((False, (7, 7, 3, 64)), (True, (3, 3, 3, 64))):
        model = create_model(**model_config(name="resnet18", small_input=small_input), num_classes=10)
        params = abstract_init(model, (1, 32, 32, 3))["params"]
        assert params["backbone"]["conv_init"]["kernel"].shape == kernel


def test_vgg16_fc_layers_option():
    """fc_layers=True: torchvision's vgg16_bn head (138,365,992 parameters) minus the 13 conv biases (4,224; the
    weight converter folds them into the BatchNorm means); the backbone output is the 4096-d FC output."""
    model = create_model(**model_config(name="vgg16", fc_layers=True), num_classes=1000)
    variables = abstract_init(model, (1, 224, 224, 3))
    assert n_params(variables["params"]) == 138_365_992 - 4_224
    small = abstract_init(model, (1, 32, 32, 3))  # the 7x7 adaptive pool makes the FC shapes size-independent
    assert jax.tree_util.tree_structure(small) == jax.tree_util.tree_structure(variables)
    (_, feats), _ = jax.eval_shape(
        lambda v: model.apply(v, jnp.zeros((2, 32, 32, 3)), train=True, rngs={"dropout": KEY},
                              mutable=["batch_stats"]), small)
    assert feats["backbone"].shape == (2, 4096)
    with pytest.raises(ValueError, match=r"config\.model\.fc_layers=True is not used by backbone 'resnet18'"):
        create_model(**model_config(name="resnet18", fc_layers=True), num_classes=10)
    with pytest.raises(ValueError, match=r"config\.model\.fc_layers must be a bool"):
        create_model(**model_config(name="vgg16", fc_layers=1), num_classes=10)


# -------------------------------------------------------------------------- bad configurations
@pytest.mark.parametrize("fields,field_name", [
    (dict(name="resnet99"), "config.model.name"),
    (dict(name="small_cnn", classifier="svm"), "config.model.classifier"),
    (dict(name="small_cnn", head_activation="swish"), "config.model.head_activation"),
    (dict(name="small_cnn", dtype="float16"), "config.model.dtype"),
    (dict(name="small_cnn", head_widths=(8, 0)), "config.model.head_widths"),
    (dict(name="small_cnn", dropout=1.0), "config.model.dropout"),
    (dict(name="small_cnn", width=0), "config.model.width"),
    (dict(name="resnet20", patch_size=4), "config.model.patch_size"),
    (dict(name="resnet20", small_input=True), "config.model.small_input"),
    (dict(name="vit_ti", width=32), "config.model.width"),
    (dict(name="small_cnn", head_widths=8), "config.model.head_widths"),
    (dict(name="small_cnn", cosine_scale=0.0), "config.model.cosine_scale"),
    (dict(name="small_cnn", affinity=dict(num_centres=0)), "config.model.affinity.num_centres"),
])
def test_bad_config_raises_naming_the_field(fields, field_name):
    with pytest.raises(ValueError, match=field_name.replace(".", r"\.")):
        create_model(**model_config(**fields), num_classes=10)


def test_bad_name_lists_allowed_values():
    with pytest.raises(ValueError, match="resnet32"):
        create_model(**model_config(name="resnet99"), num_classes=10)


def test_vit_patch_size_must_divide_image():
    model = create_model(**model_config(name="vit_ti", patch_size=5), num_classes=10)
    with pytest.raises(ValueError, match="patch_size"):
        abstract_init(model, (1, 32, 32, 3))


# --------------------------------------------------------------- real forward passes (small CNN)
@functools.lru_cache(maxsize=None)
def _jitted_apply(model, train: bool):
    """One compiled apply per (model, mode), reused across calls with new variables, inputs, keys."""
    if train:
        return jax.jit(lambda v, x, r: model.apply(v, x, train=True, rngs={"dropout": r},
                                                   mutable=["batch_stats"]))
    return jax.jit(lambda v, x: model.apply(v, x, train=False))


def _apply_eval(model, variables, x):
    return _jitted_apply(model, False)(variables, x)


def _apply_train(model, variables, x, rng):
    return _jitted_apply(model, True)(variables, x, rng)


@pytest.fixture(scope="module")
def head_model():
    model = create_model(**model_config(name="small_cnn", head_widths=(8, 2)), num_classes=5)
    x = images((4, 8, 8, 1))
    return model, init(model, x), x


def test_projection_head_layers_and_classifier(head_model):
    """head_0 = relu(Dense(backbone)), head_1 = Dense(head_0) (linear), logits = Dense(head_1)."""
    model, variables, x = head_model
    # A very negative last-layer bias: any activation (relu) on head_1 would show up as clipping.
    variables = jax.tree_util.tree_map(lambda a: a, variables)
    variables["params"]["head"]["dense1"]["bias"] = jnp.full((2,), -10.0)
    logits, feats = _apply_eval(model, variables, x)
    head, cls = variables["params"]["head"], variables["params"]["classifier"]
    h0 = jax.nn.relu(feats["backbone"] @ head["dense0"]["kernel"] + head["dense0"]["bias"])
    h1 = h0 @ head["dense1"]["kernel"] + head["dense1"]["bias"]
    np.testing.assert_allclose(feats["head_0"], h0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats["head_1"], h1, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(feats["head_1"]) < 0)  # the last head layer is linear
    np.testing.assert_array_equal(feats["head_last"], feats["head_1"])
    np.testing.assert_array_equal(feats["classifier_input"], feats["head_1"])
    np.testing.assert_allclose(logits, h1 @ cls["kernel"] + cls["bias"], rtol=1e-5, atol=1e-6)


def test_train_updates_batch_stats_and_eval_uses_them(head_model):
    model, variables, x = head_model
    (train_logits, _), new_state = _apply_train(model, variables, x, KEY)
    old, new = variables["batch_stats"], new_state["batch_stats"]
    changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), old, new)
    assert all(jax.tree_util.tree_leaves(changed))
    updated = {"params": variables["params"], "batch_stats": new}
    # Eval: running averages, so a sample's logits do not depend on the rest of the batch.
    full, _ = _apply_eval(model, updated, x)
    first, _ = _apply_eval(model, updated, x[:1])
    np.testing.assert_allclose(first[0], full[0], rtol=1e-5, atol=1e-6)
    # Train: batch statistics, so they do.
    (train_first, _), _ = _apply_train(model, variables, x[:2], KEY)
    assert not np.allclose(train_first[0], train_logits[0], atol=1e-4)


def test_batch_norm_settings():
    """Project BN: momentum 0.9 (new = 0.9 old + 0.1 batch), epsilon 1e-5, biased batch variance."""
    x = images((16, 3), seed=3) * 2.0 + 1.0
    bn = batch_norm(True, jnp.float32)()
    y, state = jax.jit(lambda x: bn.apply(bn.init(KEY, x), x, mutable=["batch_stats"]))(x)
    mean, var = np.mean(np.asarray(x), 0), np.var(np.asarray(x), 0)
    np.testing.assert_allclose(state["batch_stats"]["mean"], 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state["batch_stats"]["var"], 0.9 + 0.1 * var, rtol=1e-5)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)


def test_dropout_uses_the_rng():
    model = create_model(**model_config(name="small_cnn", dropout=0.5), num_classes=5)
    x = images((4, 8, 8, 1))
    variables = init(model, x)
    (l_a, f_a), _ = _apply_train(model, variables, x, jax.random.key(10))
    (l_a2, _), _ = _apply_train(model, variables, x, jax.random.key(10))
    (l_b, f_b), _ = _apply_train(model, variables, x, jax.random.key(11))
    np.testing.assert_array_equal(l_a, l_a2)
    assert not np.allclose(l_a, l_b)
    np.testing.assert_array_equal(f_a["backbone"], f_b["backbone"])  # "backbone" is pre-dropout
    kept = np.asarray(f_a["classifier_input"]) != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_allclose(np.asarray(f_a["classifier_input"])[kept],
                               2.0 * np.asarray(f_a["backbone"])[kept], rtol=1e-6)
    _, eval_feats = _apply_eval(model, variables, x)
    np.testing.assert_array_equal(eval_feats["classifier_input"], eval_feats["backbone"])


def test_bfloat16_computes_in_bf16_returns_float32():
    x = images((4, 8, 8, 1))
    f32 = create_model(**model_config(name="small_cnn", head_widths=(8, 2)), num_classes=5)
    bf16 = create_model(**model_config(name="small_cnn", head_widths=(8, 2), dtype="bfloat16"), num_classes=5)
    variables = init(bf16, x)
    assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(variables))
    assert "bf16" in str(jax.make_jaxpr(lambda v: bf16.apply(v, x, train=False))(variables))
    logits, feats = _apply_eval(bf16, variables, x)
    assert logits.dtype == jnp.float32 and logits.shape == (4, 5)
    assert all(v.dtype == jnp.float32 for v in feats.values())
    ref, _ = _apply_eval(f32, variables, x)
    np.testing.assert_allclose(logits, ref, rtol=0.05, atol=0.05)


def test_sharded_batch_matches_single_device():
    """BatchNorm statistics are global: a batch sharded over 4 devices gives the same step."""
    model = create_model(**model_config(name="small_cnn"), num_classes=5)
    x = images((8, 8, 8, 1))
    variables = init(model, x)
    mesh = Mesh(np.array(jax.devices()[:4]), ("data",))
    x_sharded = jax.device_put(x, NamedSharding(mesh, P("data")))
    variables_rep = jax.device_put(variables, NamedSharding(mesh, P()))
    (logits, _), state = _apply_train(model, variables, x, KEY)
    (logits_s, _), state_s = _apply_train(model, variables_rep, x_sharded, KEY)
    np.testing.assert_allclose(logits_s, logits, rtol=1e-5, atol=1e-6)
    jax.tree_util.tree_map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6),
                           state_s["batch_stats"], state["batch_stats"])


# --------------------------------------------------------------------------------- classifiers
def test_cosine_classifier_bounded_by_scale_and_finite_at_zero():
    head = CosineClassifier(num_classes=4, scale=16.0)
    x = images((3, 6))

    @jax.jit
    def run(x):
        logits, params = head.init_with_output(KEY, x)
        grad_at_zero = jax.grad(lambda z: jnp.sum(head.apply(params, z)))(jnp.zeros_like(x))
        return logits, params["params"], grad_at_zero

    logits, params, grad_at_zero = jax.device_get(run(x))
    assert float(params["scale"]) == 16.0
    assert np.all(np.abs(logits) <= 16.0 + 1e-4)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    w = params["kernel"] / np.linalg.norm(params["kernel"], axis=0)
    np.testing.assert_allclose(logits, 16.0 * unit @ w, rtol=1e-5, atol=1e-5)
    assert np.all(np.isfinite(grad_at_zero))


def test_cosine_classifier_in_model():
    model = create_model(**model_config(name="small_cnn", classifier="cosine", cosine_scale=8.0), num_classes=5)
    x = images((2, 8, 8, 1))
    variables = init(model, x)
    logits, _ = _apply_eval(model, variables, x)
    assert logits.shape == (2, 5) and np.all(np.abs(logits) <= 8.0 + 1e-4)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_affinity_classifier(batch_norm):
    """Features -> AffinityHead (paper: only the softmax layer is replaced); BatchNorm in front only on request."""
    cfg = model_config(name="small_cnn", head_widths=(16,), classifier="affinity",
                       affinity=dict(num_centres=3, sigma=10.0, distance="sq_l2",
                                     similarity="gaussian", batch_norm=batch_norm))
    model = create_model(**cfg, num_classes=5)
    x = images((4, 8, 8, 1))
    variables = init(model, x)
    assert variables["params"]["classifier"]["prototypes"].shape == (5, 3, 16)
    assert ("classifier_norm" in variables["batch_stats"]) == batch_norm
    (logits, feats), _ = _apply_train(model, variables, x, KEY)
    assert logits.shape == (4, 5) and logits.dtype == jnp.float32
    assert np.all((np.asarray(logits) > 0) & (np.asarray(logits) <= 1))
    if batch_norm:  # training-mode BatchNorm (scale 1, bias 0 at init) standardises each feature over the batch
        np.testing.assert_allclose(np.mean(np.asarray(feats["classifier_input"]), 0), 0, atol=1e-4)
    else:  # the head's last layer goes in unchanged
        np.testing.assert_array_equal(feats["classifier_input"], feats["head_last"])


def test_affinity_options_are_checked():
    with pytest.raises(ValueError, match="config.model.affinity.batch_norm must be True or False"):
        create_model(**model_config(name="small_cnn", classifier="affinity", affinity=dict(batch_norm="yes")), num_classes=3)
    with pytest.raises(ValueError, match="config.model.affinity.prototype_init must be one of"):
        create_model(**model_config(name="small_cnn", classifier="affinity", affinity=dict(prototype_init="x")), num_classes=3)


def test_classifier_bias_prior_init():
    """CDB-CE reference code: b_c = -log((1 - pi) / pi), pi = 1 / C, so softmax starts near uniform."""
    model = create_model(**model_config(name="small_cnn", classifier_bias_init="prior"), num_classes=10)
    bias = init(model, images((2, 8, 8, 1)))["params"]["classifier"]["bias"]
    np.testing.assert_allclose(bias, np.full(10, -np.log(9.0)), rtol=1e-6)
    with pytest.raises(ValueError, match="config.model.classifier_bias_init must be one of"):
        create_model(**model_config(name="small_cnn", classifier_bias_init="ones"), num_classes=10)


# ------------------------------------------------------------------------------ building blocks
def test_option_a_shortcut_subsamples_and_zero_pads():
    x = images((2, 4, 4, 16))
    y, same = jax.device_get(jax.jit(
        lambda x: (option_a_shortcut(x, 32, 2), option_a_shortcut(x, 16, 1)))(x))
    assert y.shape == (2, 2, 2, 32)
    np.testing.assert_array_equal(y[..., 8:24], x[:, ::2, ::2, :])
    assert not np.any(y[..., :8]) and not np.any(y[..., 24:])
    np.testing.assert_array_equal(same, x)


# ----------------------------------------------------------------------------------- TDE classifier
def _tde_reference(x, kernel, feature_mean, *, num_heads, tau, gamma, alpha):
    """Tang et al. 2020, Eq. 6 (alpha = 0: Eq. 4), written out per head and class in numpy float64."""
    x, kernel, xbar = (np.asarray(a, np.float64) for a in (x, kernel, feature_mean))
    batch, dim = x.shape
    h = dim // num_heads
    out = np.zeros((batch, kernel.shape[1]))
    for k in range(num_heads):
        xk, wk, ck = x[:, k * h:(k + 1) * h], kernel[k * h:(k + 1) * h], xbar[k * h:(k + 1) * h]
        d = ck / np.linalg.norm(ck)
        for i in range(kernel.shape[1]):
            w = wk[:, i]
            denom = np.linalg.norm(w) + gamma
            for b in range(batch):
                cos = xk[b] @ d / np.linalg.norm(xk[b])
                out[b, i] += tau / num_heads * (
                    w @ xk[b] / (denom * np.linalg.norm(xk[b])) - alpha * cos * (w @ d) / denom)
    return out


def _tde_head_run(head, x, feature_mean):
    """Init the head, set its moving average, return (kernel, eval logits, train logits, new mean)."""
    @jax.jit
    def run(x, feature_mean):
        variables = head.init(KEY, x, train=False)
        variables = {"params": variables["params"], "batch_stats": {"feature_mean": feature_mean}}
        eval_logits = head.apply(variables, x, train=False)
        train_logits, state = head.apply(variables, x, train=True, mutable=["batch_stats"])
        return (variables["params"]["kernel"], eval_logits, train_logits,
                state["batch_stats"]["feature_mean"])

    return jax.device_get(run(x, feature_mean))


@pytest.mark.parametrize("num_heads", [1, 2, 3])
def test_tde_head_matches_numpy_formula(num_heads):
    head = TDEClassifier(num_classes=4, num_heads=num_heads, tau=16.0, gamma=1 / 32, alpha=1.5,
                         momentum=0.9)
    x, xbar = images((5, 6), seed=1), images((6,), seed=2) + 0.5
    kernel, eval_logits, train_logits, new_mean = _tde_head_run(head, x, xbar)
    args = dict(num_heads=num_heads, tau=16.0, gamma=1 / 32)
    np.testing.assert_allclose(eval_logits, _tde_reference(x, kernel, xbar, alpha=1.5, **args),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(train_logits, _tde_reference(x, kernel, xbar, alpha=0.0, **args),
                               rtol=1e-5, atol=1e-5)
    assert not np.allclose(eval_logits, train_logits, atol=1e-3)  # the counterfactual term is there
    np.testing.assert_allclose(new_mean, 0.9 * xbar + 0.1 * x.mean(0), rtol=1e-6)


def test_tde_alpha_zero_eval_equals_train_logits():
    head = TDEClassifier(num_classes=3, num_heads=2, alpha=0.0)
    x, xbar = images((4, 8), seed=3), images((8,), seed=4)
    _, eval_logits, train_logits, _ = _tde_head_run(head, x, xbar)
    np.testing.assert_allclose(eval_logits, train_logits, rtol=1e-6, atol=1e-6)


def test_tde_head_finite_at_zero_and_heads_must_divide_width():
    head = TDEClassifier(num_classes=3, num_heads=2)
    x = jnp.zeros((2, 4))

    @jax.jit
    def run(x):
        params = head.init(KEY, x, train=False)["params"]
        zero_w = {"params": {"kernel": jnp.zeros_like(params["kernel"])},
                  "batch_stats": {"feature_mean": jnp.zeros((4,))}}
        loss = lambda p, z: jnp.sum(head.apply(p, z, train=False))
        return head.apply(zero_w, x, train=False), jax.grad(loss, argnums=(0, 1))(zero_w, x)

    logits, grads = jax.device_get(run(x))
    assert np.all(logits == 0)
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))
    with pytest.raises(ValueError, match=r"config\.model\.tde\.num_heads"):
        jax.eval_shape(lambda z: TDEClassifier(3, num_heads=3).init(KEY, z, train=False),
                       jax.ShapeDtypeStruct((2, 4), jnp.float32))


def test_tde_classifier_in_model_moving_average_and_eval_formula():
    """config.model.tde reaches the head; the train step updates batch_stats, evaluation does not."""
    tde = dict(num_heads=4, tau=10.0, gamma=0.1, alpha=1.0, momentum=0.8)
    model = create_model(**model_config(name="small_cnn", classifier="tde", tde=tde), num_classes=5)
    x = images((4, 8, 8, 1), seed=5)
    variables = init(model, x)
    mean0 = variables["batch_stats"]["classifier"]["feature_mean"]
    assert mean0.shape == (64,) and not np.any(mean0)
    (_, feats), state = _apply_train(model, variables, x, KEY)
    mean1 = state["batch_stats"]["classifier"]["feature_mean"]
    np.testing.assert_allclose(mean1, 0.2 * np.mean(feats["classifier_input"], 0), rtol=1e-5,
                               atol=1e-7)
    (_, feats2), state2 = _apply_train(model, {**variables, "batch_stats": state["batch_stats"]},
                                       x[::-1] * 2.0, KEY)
    np.testing.assert_allclose(state2["batch_stats"]["classifier"]["feature_mean"],
                               0.8 * mean1 + 0.2 * np.mean(feats2["classifier_input"], 0),
                               rtol=1e-5, atol=1e-7)
    trained = {"params": variables["params"], "batch_stats": state["batch_stats"]}
    (logits, eval_feats), eval_state = jax.jit(lambda v: model.apply(
        v, x, train=False, mutable=["batch_stats"]))(trained)
    jax.tree_util.tree_map(np.testing.assert_array_equal, eval_state["batch_stats"],
                           trained["batch_stats"])
    expected = _tde_reference(eval_feats["classifier_input"],
                              trained["params"]["classifier"]["kernel"], mean1, num_heads=4,
                              tau=10.0, gamma=0.1, alpha=1.0)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


def test_tde_defaults_from_config():
    model = create_model(**model_config(name="small_cnn", classifier="tde"), num_classes=5)
    assert (model.tde_num_heads, model.tde_tau, model.tde_gamma, model.tde_alpha,
            model.tde_momentum) == (2, 16.0, 1 / 32, 1.5, 0.9)


@pytest.mark.parametrize("tde,field_name", [
    (dict(num_heads=0), "config.model.tde.num_heads"),
    (dict(tau=0.0), "config.model.tde.tau"),
    (dict(gamma=-0.1), "config.model.tde.gamma"),
    (dict(alpha=-1.0), "config.model.tde.alpha"),
    (dict(momentum=1.0), "config.model.tde.momentum"),
    (dict(heads=2), "config.model.tde"),
])
def test_tde_bad_config_raises_naming_the_field(tde, field_name):
    with pytest.raises(ValueError, match=field_name.replace(".", r"\.")):
        create_model(**model_config(name="small_cnn", classifier="tde", tde=tde), num_classes=10)


def test_classifier_activation_is_applied_before_the_classifier_only():
    import ml_collections
    from imbalance_jax.models import create_model
    cfg = ml_collections.ConfigDict({"name": "small_cnn", "head_widths": (8, 3), "classifier_activation": "relu"})
    model = create_model(**cfg, num_classes=4)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 8, 8, 1)), jnp.float32)
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    logits, features = model.apply(variables, x, train=False)
    assert (features["head_last"] < 0).any()  # the 3-d layer itself stays linear
    dense = variables["params"]["classifier"]
    expected = jnp.maximum(features["head_last"], 0) @ dense["kernel"] + dense["bias"]
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="config.model.classifier_activation"):
        create_model(**ml_collections.ConfigDict({"name": "small_cnn", "classifier_activation": "softplus"}), num_classes=4)


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (2, 7, 5, 3), (1, 1, 1, 2), (3, 28, 28, 4)])
def test_max_pool_2x2_equals_flax_max_pool_same(shape):
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    ours = max_pool_2x2(x)
    reference = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
    chex.assert_equal_shape([ours, reference])
    np.testing.assert_array_equal(ours, reference)
    # Without ties the gradient is the same one-hot selection as select_and_scatter's.
    g_ours = jax.grad(lambda v: jnp.sum(max_pool_2x2(v) ** 2))(x)
    g_ref = jax.grad(lambda v: jnp.sum(nn.max_pool(v, (2, 2), strides=(2, 2), padding="SAME") ** 2))(x)
    np.testing.assert_allclose(g_ours, g_ref, rtol=1e-6)
    assert np.all(np.isfinite(g_ours))


def test_normed_linear_is_the_cosine_of_input_and_class_weight():
    model = create_model(**model_config(name="small_cnn", classifier="normed_linear"), num_classes=5)
    x = images((4, 8, 8, 1))
    variables = init(model, x)
    logits, feats = model.apply(variables, x, train=False)
    kernel = np.asarray(variables["params"]["classifier"]["kernel"])
    f = np.asarray(feats["classifier_input"])
    expected = (f / np.linalg.norm(f, axis=1, keepdims=True)) @ (kernel / np.linalg.norm(kernel, axis=0))
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(np.asarray(logits)) <= 1 + 1e-6)


def test_ldam_uses_the_normed_classifier_unless_told_not_to():
    from configs import default
    from imbalance_jax.experiment import ConfigError, classifier_name

    config = default.get_config()
    config.loss.name = "ldam"
    assert classifier_name(config) == "normed_linear"
    config.loss.ldam_normed_classifier = False
    assert classifier_name(config) == "linear"
    config.loss.ldam_normed_classifier = True
    config.model.classifier = "tde"
    with pytest.raises(ConfigError, match="config.loss.ldam_normed_classifier=True needs"):
        classifier_name(config)
