"""The papers' set-ups as the configs build them: the affinity head without BatchNorm and with prototypes at the
features' scale, the triplet term on L2-normalised embeddings, the CDB-CE training regime of the TriCDB CIFAR
configs, linear ASLoss heads and the four-class ASLoss proxy; each with a short training run."""

import importlib
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import curves
from imbalance_jax import models, optim, train
from imbalance_jax.data import eval_batches
from imbalance_jax.models import affinity_head
from test_configs import CONFIG_NAMES, tiny_fashion_mnist
from test_train import override, tiny_config


def _configs():
    return {name: importlib.import_module(f"configs.{name}").get_config() for name in CONFIG_NAMES}


# ------------------------------------------------------------------------------------------ config defaults
def test_every_config_follows_the_papers():
    configs = _configs()
    for name, config in configs.items():
        aux = config.loss.aux
        if config.model.classifier == "affinity":
            assert config.model.affinity.batch_norm is False, name
            assert config.model.affinity.prototype_init == "class_means", name
            assert config.checkpoint.best_metric == "val_balanced_accuracy", name
        if "triplet" in aux and aux.triplet.weight > 0:
            assert aux.triplet.normalize is True and aux.triplet.margin == 0.2, name
        if "asl" in aux and aux.asl.weight > 0:
            assert config.model.head_activation == "none", name
    for name in ("tricdb_cifar10_lt", "tricdb_cifar100_lt"):
        c = configs[name]
        assert (c.optimizer.name, c.optimizer.learning_rate, c.optimizer.momentum, c.optimizer.weight_decay) == (
            "sgd", 0.1, 0.9, 5e-4)
        assert c.optimizer.weight_decay_exclude == ("classifier/bias",)
        assert (c.batch_size, c.num_epochs, c.optimizer.boundaries, c.optimizer.decay_factors) == (
            32, 240, (160, 210), (0.01, 0.0001))
        assert c.model.classifier_bias_init == "prior" and c.data.val_per_class == 25
        assert c.checkpoint.best_metric == "val_accuracy" and c.checkpoint.evaluate_best
    ldam = configs["ldam_drw_cifar10_lt"]
    assert (ldam.batch_size, ldam.num_epochs, ldam.optimizer.boundaries, ldam.loss.class_weighting.start_epoch) == (
        128, 200, (160, 180), 160)
    four = configs["fmnist4_asl"]
    assert four.data.classes == (0, 2, 4, 6) and four.data.imbalance.counts == (633, 519, 182, 123)
    assert (four.batch_size, four.optimizer.name, four.optimizer.learning_rate) == (16, "adam", 1e-3)


# ------------------------------------------------------------------------------------ affinity prototypes
def test_prototype_groups_are_disjoint_per_class_and_cover_small_classes():
    labels = np.array([0] * 20 + [1] * 2 + [2] * 0 + [3] * 7)
    sample, groups, mask = affinity_head.prototype_groups(labels, 4, 3, np.random.default_rng(0), images_per_centre=4)
    assert groups.shape == mask.shape == (4, 3, 4)
    chosen = [[sample[groups[c, t][mask[c, t]]] for t in range(3)] for c in range(4)]
    for c in range(4):
        for t in range(3):
            assert np.all(labels[chosen[c][t]] == c)
    assert [len(g) for g in chosen[0]] == [4, 4, 4] and len(np.unique(np.concatenate(chosen[0]))) == 12
    assert [len(g) for g in chosen[1]] == [1, 1, 1]  # 2 images, 3 centres: reused cyclically
    assert not mask[2].any()  # no image: keeps its initial prototypes
    assert sorted(np.concatenate(chosen[3]).tolist()) == list(range(22, 29))  # 7 images dealt to 3 centres


def test_class_mean_prototypes_hand_computed():
    features = jnp.array([[0.0, 2.0], [4.0, 2.0], [10.0, 10.0]])
    groups = jnp.array([[[0, 1]], [[2, 0]], [[0, 0]]])
    mask = jnp.array([[[True, True]], [[True, False]], [[False, False]]])
    initial = jnp.full((3, 1, 2), -1.0)
    got = affinity_head.class_mean_prototypes(features, groups, mask, initial)
    np.testing.assert_allclose(got, [[[2.0, 2.0]], [[10.0, 10.0]], [[-1.0, -1.0]]])


def _affinity_config(**overrides):
    from configs.affinity_mnist import set_affinity

    config = tiny_config(num_epochs=4, **{"model.head_widths": (32,), "model.head_activation": "relu"})
    set_affinity(config, num_centres=2)
    config.model.head_widths = (32,)
    config.data.sampler = "random"
    config.optimizer.learning_rate = 3e-3
    return override(config, **overrides)


def test_class_mean_prototypes_start_at_the_feature_scale():
    """Initialised from the features, prototypes have the features' norm (he-normal ones have norm ~sqrt(2) whatever
    the features are) and already rank an image's own class above the others."""
    ratios = {}
    for init in ("class_means", "he_normal"):
        exp = train.build_experiment(_affinity_config(**{"model.affinity.prototype_init": init}))
        state = train.initial_state(exp)
        batch = next(iter(eval_batches(exp.splits.train, exp.eval_options)))
        logits, features, _ = models.apply_model(exp.model, state.params, state.batch_stats, batch["image"],
                                                 train=False)
        valid, labels = batch["valid"], batch["label"]
        feature_norm = np.linalg.norm(np.asarray(features["classifier_input"])[valid], axis=1).mean()
        prototypes = np.asarray(state.params["classifier"]["prototypes"])
        ratios[init] = np.linalg.norm(prototypes, axis=-1).mean() / feature_norm
        if init == "class_means":
            sims = np.asarray(logits)[valid]
            own = np.take_along_axis(sims, labels[valid][:, None], 1)[:, 0]
            assert np.mean(np.argmax(sims, 1) == labels[valid]) > 0.3  # 10 classes: chance 0.1
            assert own.mean() > sims.mean()
    assert 0.5 < ratios["class_means"] < 1.5
    assert not 0.5 < ratios["he_normal"] < 1.5


def test_affinity_without_batch_norm_trains(tmp_path):
    metrics = train.train_and_evaluate(_affinity_config(), str(tmp_path))
    assert metrics["test"]["balanced_accuracy"] > 0.6  # 10 classes: chance 0.1
    assert metrics["evaluated_epoch"] == metrics["epochs_trained"]


# ------------------------------------------------------------------------------------ triplet, normalised
def test_tricdb_with_normalised_triplet_trains(tmp_path):
    from configs.tricdb_cifar10_lt import set_tricdb

    config = tiny_config(num_epochs=3, **{"model.head_widths": (), "evaluation.embedding_layer": "backbone",
                                          "data.sampler": "random"})
    set_tricdb(config)
    assert config.loss.aux.triplet.normalize is True
    assert config.loss.class_weighting.name == "cdb"
    metrics = train.train_and_evaluate(config, str(tmp_path))
    assert metrics["test"]["balanced_accuracy"] > 0.6
    # The CDB weights each epoch trained with are logged: uniform in epoch 1, then from the validation accuracy,
    # normalised to sum to the number of classes.
    num_classes = len(metrics["test"]["per_class_recall"])
    weights = np.array([_val_curve(tmp_path, f"train/class_weight/{c}") for c in range(num_classes)]).T
    assert weights.shape == (3, num_classes)
    np.testing.assert_allclose(weights[0], 1.0)
    np.testing.assert_allclose(weights.sum(axis=1), num_classes, rtol=1e-5)
    assert np.ptp(weights[1:]) > 0


# -------------------------------------------------------------------------------------- CDB-CE regime
def test_weight_decay_skips_the_excluded_parameters():
    params = {"classifier": {"bias": jnp.ones(3), "kernel": jnp.ones((2, 3))}, "backbone": {"w": jnp.ones(2)}}
    tx, _ = optim.create_optimizer("sgd", 1.0, 10, 1, weight_decay=0.5, momentum=0.0,
                                   weight_decay_exclude=("classifier/bias",))
    zero = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zero, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_allclose(new["classifier"]["bias"], 1.0)  # not decayed
    np.testing.assert_allclose(new["classifier"]["kernel"], 0.5)  # decayed: 1 - lr * wd * 1
    np.testing.assert_allclose(new["backbone"]["w"], 0.5)


def _val_curve(workdir: pathlib.Path, tag: str) -> list[float]:
    """The values of one logged scalar, by epoch (empty when the run did not log it)."""
    values = curves.read_scalars(workdir, [tag])[tag]
    return [values[k] for k in sorted(values)]


def test_best_validation_accuracy_checkpoint_is_evaluated(tmp_path):
    config = tiny_config(num_epochs=4, **{"checkpoint.best_metric": "val_accuracy", "checkpoint.evaluate_best": True,
                                          "optimizer.learning_rate": 0.05, "optimizer.schedule": "constant",
                                          "model.classifier_bias_init": "prior"})
    metrics = train.train_and_evaluate(config, str(tmp_path))
    curve = _val_curve(tmp_path, "val/accuracy")
    assert len(curve) == 4 and metrics["epochs_trained"] == 4
    best = int(np.argmax(curve))  # first maximum: later ties are not improvements
    assert metrics["evaluated_epoch"] == best + 1
    assert metrics["val"]["accuracy"] == pytest.approx(curve[best])
    assert _val_curve(tmp_path, "train/class_weight/0") == []  # unweighted runs log no class weights


# -------------------------------------------------------------------------------- four-class ASLoss proxy
def test_fourclass_proxy_selects_and_relabels_classes(tmp_path):
    config = importlib.import_module("configs.fmnist4_asl").get_config()
    config.data.dir = tiny_fashion_mnist(tmp_path)  # 12 train / 3 test images per class
    config.data.val_per_class = 2
    config.data.imbalance.counts = (9, 7, 3, 2)
    config.num_epochs, config.num_devices, config.disable_progress_bar = 1, 1, True
    metrics = train.train_and_evaluate(config, str(tmp_path / "run"))
    counts = json.loads((tmp_path / "run" / "class_counts.json").read_text())
    assert counts["train"] == [9, 7, 3, 2] and counts["val"] == [2] * 4 and counts["test"] == [3] * 4
    assert counts["class_names"] == ["T-shirt/top", "Pullover", "Coat", "Shirt"]
    assert np.asarray(metrics["test"]["confusion"]).shape == (4, 4)


def test_bad_class_selection_names_the_field(tmp_path):
    from imbalance_jax.data import DatasetError

    config = tiny_config(**{"data.classes": (3, 3)})
    with pytest.raises(DatasetError, match=r"config.data.classes=\(3, 3\) must list at least 2 distinct"):
        train.train_and_evaluate(config, str(tmp_path))
