"""Affinity paper §4.6 (Fig. 8) on Fashion-MNIST-LT: m = 1, 2, 5, 10, 20 prototypes per class (set on the model;
the loss reads the model's prototypes)."""

from experiments.sweeps import Sweep
from experiments.sweeps.fmnist_main import AFFINITY, BASE

SWEEP = Sweep(
    name="affinity_centres",
    base_config=BASE,
    methods={"Affinity": {"config": AFFINITY}},
    seeds=(0, 1),
    grid={"model.affinity.num_centres": [1, 2, 5, 10, 20]},
    description="Affinity paper §4.6: m >= 5 centres per class is best; fewer centres do worse, more do not hurt.",
)
