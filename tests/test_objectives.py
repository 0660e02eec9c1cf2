"""The loss registry (objectives.py): names, options, class weighting and its update during training."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from imbalance_jax import experiment, losses, objectives, train
from test_train import tiny_config


def test_aux_loss_config_lists_every_kernel_option():
    entry = objectives.aux_loss_config("triplet", weight=1.0)
    assert entry.weight == 1.0 and entry.layers == ("backbone",)
    assert entry.margin == 0.2 and entry.mining == "violating" and entry.metric == "sq_l2"
    with pytest.raises(objectives.ObjectiveConfigError, match=r"config.loss.aux.triplet.alpha: unknown option"):
        objectives.aux_loss_config("triplet", alpha=0.3)


def test_objective_sums_weighted_terms():
    cfg = tiny_config(**{"loss.weight": 0.5}).loss
    cfg.aux = {"asl": objectives.aux_loss_config("asl", weight=2.0, layers=("head_0", "head_1"))}
    objective = experiment.objective_from_config(cfg, np.array([5, 3]))
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(6, 2)), jnp.float32)
    features = {"head_0": jnp.asarray(rng.normal(size=(6, 4)), jnp.float32),
                "head_1": jnp.asarray(rng.normal(size=(6, 2)), jnp.float32)}
    batch = {"label": jnp.array([0, 1, 0, 1, 1, 0]), "valid": jnp.ones(6, bool)}
    total, terms = objective(logits, features, batch, jnp.ones(2))
    ce = losses.softmax_cross_entropy(logits, batch["label"])
    asl = sum(losses.aggregation_separation_loss(features[k], batch["label"]) for k in ("head_0", "head_1"))
    np.testing.assert_allclose(terms["asl_loss"], asl, rtol=1e-6)
    np.testing.assert_allclose(total, 0.5 * ce + 2.0 * asl, rtol=1e-6)


def test_zero_weight_disables_an_aux_loss():
    cfg = tiny_config(**{"loss.aux.asl.weight": 0.0}).loss
    assert experiment.objective_from_config(cfg, np.ones(3)).aux == ()


def test_drw_switches_at_its_epoch_and_cdb_starts_uniform():
    counts = np.array([100, 10, 1])
    drw = objectives.ClassWeighting("drw", counts, beta=0.999, start_epoch=3)
    np.testing.assert_allclose(drw.weights(2), np.ones(3))
    np.testing.assert_allclose(drw.weights(3), losses.class_balanced_weights(counts, beta=0.999), rtol=1e-6)
    cdb = objectives.ClassWeighting("cdb", counts)
    np.testing.assert_allclose(cdb.weights(0), np.ones(3))
    acc = np.array([0.9, 0.5, 0.2], np.float32)
    np.testing.assert_allclose(cdb.weights(1, acc), losses.cdb_weights(acc), rtol=1e-6)


def test_cdb_weights_follow_validation_accuracy_between_epochs(tmp_path):
    config = tiny_config(num_epochs=3, **{"loss.class_weighting.name": "cdb"})
    train.train_and_evaluate(config, str(tmp_path), stop_after_epoch=2)
    exp = train.build_experiment(config)
    _, eval_fn = train.compile_steps(exp)
    manager = train.checkpoint_manager(str(tmp_path), config.checkpoint.max_to_keep)
    weights = []
    for epoch in (1, 2):
        state, meta = train.restore_checkpoint(manager, epoch, train.initial_state(exp))
        val = train.evaluate(exp, eval_fn, state, "val")
        expected = losses.cdb_weights(val.class_accuracy.astype(np.float32))
        np.testing.assert_allclose(state.class_weights, expected, rtol=1e-5)
        weights.append(np.asarray(state.class_weights))
    assert not np.allclose(weights[0], 1.0) and not np.allclose(weights[0], weights[1])


def test_affinity_loss_reads_the_prototypes_of_the_affinity_classifier(tmp_path):
    config = tiny_config()
    config.model.head_widths = ()
    config.model.classifier = "affinity"
    config.model.affinity.num_centres = 2
    config.loss.name = "none"
    config.loss.aux = {"affinity": objectives.aux_loss_config("affinity", weight=1.0)}
    metrics = train.train_and_evaluate(config, str(tmp_path))
    assert metrics["test"]["balanced_accuracy"] > 0.1


def test_affinity_loss_without_affinity_classifier_is_rejected(tmp_path):
    config = tiny_config()
    config.loss.aux = {"affinity": objectives.aux_loss_config("affinity", weight=1.0)}
    with pytest.raises(train.ConfigError, match="config.loss.aux.affinity needs config.model.classifier='affinity'"):
        train.train_and_evaluate(config, str(tmp_path))


def test_objective_logs_the_named_terms_of_the_auxiliary_losses():
    cfg = tiny_config().loss
    cfg.aux = {"asl": objectives.aux_loss_config("asl", weight=1.0, layers=("head_0", "head_1")),
               "triplet": objectives.aux_loss_config("triplet", weight=1.0, layers=("head_1",), normalize=True)}
    objective = experiment.objective_from_config(cfg, np.ones(2))
    rng = np.random.default_rng(0)
    features = {"head_0": jnp.asarray(rng.normal(size=(8, 4)), jnp.float32),
                "head_1": jnp.asarray(rng.normal(size=(8, 2)), jnp.float32)}
    batch = {"label": jnp.array([0, 1] * 4), "valid": jnp.ones(8, bool)}
    total, terms = objective(jnp.zeros((8, 2)), features, batch, jnp.ones(2))
    asl = losses.aggregation_separation_terms(features["head_0"], batch["label"])
    for key in ("inner", "outer", "boundary"):
        np.testing.assert_allclose(terms[f"asl/head_0/{key}"], asl[key], rtol=1e-6)
    tri = losses.triplet_loss_terms(features["head_1"], batch["label"], normalize=True)
    np.testing.assert_allclose(terms["triplet/fraction_active"], tri["fraction_active"], rtol=1e-6)
    np.testing.assert_allclose(terms["triplet_loss"], tri["loss"], rtol=1e-6)


@pytest.mark.parametrize("name", ["ce", "focal", "ldam"])
def test_weighted_mean_reduction_divides_by_the_sum_of_weights(name):
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)
    labels = jnp.array([0, 1, 2, 2, 1, 0])
    valid = jnp.array([True, True, True, True, False, True])
    weights = jnp.array([0.2, 1.0, 3.0])
    counts = np.array([50, 10, 2])
    mean = objectives.classification_loss(name, counts)
    weighted = objectives.classification_loss(name, counts, reduction="weighted_mean")
    ones = objectives.classification_loss(name, counts)(logits, labels, valid, jnp.ones(3))
    per_example = [float(objectives.classification_loss(name, counts)(logits[i:i + 1], labels[i:i + 1],
                                                                      jnp.ones(1, bool), jnp.ones(3)))
                   for i in range(6)]
    w = np.asarray(weights)[np.asarray(labels)] * np.asarray(valid)
    np.testing.assert_allclose(weighted(logits, labels, valid, weights), np.sum(w * per_example) / np.sum(w),
                               rtol=1e-5)
    np.testing.assert_allclose(mean(logits, labels, valid, weights), np.sum(w * per_example) / 5, rtol=1e-5)
    np.testing.assert_allclose(weighted(logits, labels, valid, jnp.ones(3)), ones, rtol=1e-6)
    with pytest.raises(ValueError, match="allowed: \\['mean', 'weighted_mean'\\]"):
        objectives.classification_loss(name, counts, reduction="sum")
