"""imbalance_jax.experiment: start-up warnings for settings that would silently do nothing."""

import re

import pytest

from imbalance_jax.experiment import build_experiment
from test_train import tiny_config


@pytest.mark.parametrize("overrides, expected", [
    ({"loss.class_weighting.name": "drw", "loss.class_weighting.start_epoch": 3},
     r"config.loss.class_weighting.start_epoch=3 >= config.num_epochs=1: DRW never re-weights"),
    ({"batch_size": 256, "data.sampler": "class_balanced"}, r"config.batch_size=256 > N_min·K = \d+·10"),
    ({"batch_size": 2, "data.sampler": "random"},
     r"config.loss.aux.asl: [5-9]\d% of the first epoch's batches hold no two images of one class"),
])
def test_startup_warnings(overrides, expected):
    exp = build_experiment(tiny_config(**overrides))
    assert any(re.match(expected, w) for w in exp.warnings), exp.warnings


def test_no_warning_for_the_default_run():
    assert build_experiment(tiny_config()).warnings == ()
