"""Affinity paper §4.5 (Fig. 5) on Fashion-MNIST-LT: symmetric label noise on 10, 30 and 50% of the training labels,
early stopping on the validation loss (the best epoch is evaluated), affinity loss (m = 5) against CE."""

from experiments.sweeps import Sweep
from experiments.sweeps.fmnist_main import BASE, METHODS

SWEEP = Sweep(
    name="affinity_noise",
    base_config=BASE,
    methods={name: METHODS[name] for name in ("CE", "Affinity (m=5)")},
    seeds=(0, 1),
    common_overrides={"early_stopping.enabled": True, "early_stopping.patience": 3},
    grid={"data.label_noise": [0.1, 0.3, 0.5]},  # the paper's 10-50% range at 3 of its 5 levels (budget)
    description="Affinity paper §4.5: with noisy labels the affinity loss degrades less than softmax CE, "
                "especially at high noise rates.",
)
