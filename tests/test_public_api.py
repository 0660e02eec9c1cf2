"""The public names of docs/design.md §7 exist with their documented keyword arguments."""

import inspect

from imbalance_jax import data, evaluation, losses

API = {
    "pairwise_distances": ["metric"],
    "aggregation_separation_loss": ["metric", "constraint", "inner_weight", "outer_weight", "boundary_weight",
                                    "include_self_pairs"],
    "affinity_similarity": ["sigma", "distance", "similarity"],
    "affinity_loss": ["sigma", "margin", "diversity_weight", "distance", "similarity"],
    "diversity_regularizer": [],
    "triplet_loss": ["margin", "metric", "mining"],
    "semantic_triplet_loss": [],
    "colour_similarity_loss": [],
    "softmax_cross_entropy": ["class_weights"],
    "focal_loss": ["gamma", "class_weights"],
    "ldam_loss": ["max_margin", "scale", "class_weights"],
    "logit_adjusted_loss": ["tau"],
    "inverse_frequency_weights": [],
    "class_balanced_weights": ["beta"],
    "cdb_weights": ["tau"],
}


def test_loss_api_names_and_keywords():
    for name, keywords in API.items():
        params = inspect.signature(getattr(losses, name)).parameters
        for kw in keywords:
            assert kw in params and params[kw].kind == inspect.Parameter.KEYWORD_ONLY, (name, kw)


def test_data_and_evaluation_api():
    assert callable(data.colour_histogram)
    assert callable(evaluation.classification_metrics) and callable(evaluation.imbalance_statistics)


def test_default_xla_flags_are_added_once_and_never_override_the_user():
    from imbalance_jax.xla_flags import CPU_FLAGS, set_default_xla_flags

    env = {}
    assert set_default_xla_flags(env) == " ".join(f"{k}={v}" for k, v in CPU_FLAGS.items())
    assert set_default_xla_flags(env) == env["XLA_FLAGS"]  # idempotent
    user = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4 --xla_cpu_experimental_ynn_fusion_type=conv"}
    assert set_default_xla_flags(user) == user["XLA_FLAGS"]
    assert "--xla_force_host_platform_device_count=4" in user["XLA_FLAGS"]
    assert user["XLA_FLAGS"].count("ynn_fusion_type") == 1
