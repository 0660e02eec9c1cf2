"""Affinity paper §4.6 (Fig. 7) on Fashion-MNIST-LT: cluster spread σ ∈ {0.1, 0.5, 1, 5, 10, 20, 50}, set on the
affinity head and on the loss together (the run checks they are equal)."""

from experiments.sweeps import Sweep, tied
from experiments.sweeps.fmnist_main import BASE, METHODS

SWEEP = Sweep(
    name="affinity_sigma",
    base_config=BASE,
    methods={"Affinity (m=5)": METHODS["Affinity (m=5)"]},
    seeds=(0, 1),
    grid={"sigma": tied(("model.affinity.sigma", "loss.aux.affinity.sigma"),
                        [0.1, 0.5, 1.0, 5.0, 10.0, 20.0, 50.0])},
    description="Affinity paper §4.6: σ between 5 and 20 is best; a very large σ spreads the clusters into each "
                "other.",
)
