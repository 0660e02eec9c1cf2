"""Affinity paper §4.4 (Fig. 6) on Fashion-MNIST: keep 10%, 5% or 2.5% of the training images of classes 0-4
(step profile), Gaussian-affinity loss (m = 5) against softmax CE."""

from experiments.sweeps import Sweep
from experiments.sweeps.fmnist_main import BASE, METHODS

SWEEP = Sweep(
    name="affinity_imbalance",
    base_config=BASE,
    methods={name: METHODS[name] for name in ("CE", "Affinity (m=5)")},
    seeds=(0, 1),
    common_overrides={"data.imbalance.profile": "step", "data.imbalance.minority_classes": (0, 1, 2, 3, 4)},
    grid={"data.imbalance.fraction": [0.1, 0.05, 0.025]},
    description="Affinity paper §4.4: the affinity loss beats softmax CE at every minority fraction, by more as "
                "the imbalance grows.",
)
