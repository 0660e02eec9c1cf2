"""Affinity paper §4.6 (Table 4) on Fashion-MNIST-LT: distance {squared L2, L1, L2} × similarity {Gaussian,
inverse 1/(1+d)}; each is set on the affinity head and on the loss together (the run checks they are equal)."""

from experiments.sweeps import Sweep, tied
from experiments.sweeps.fmnist_main import BASE, METHODS

SWEEP = Sweep(
    name="affinity_distance",
    base_config=BASE,
    methods={"Affinity (m=5)": METHODS["Affinity (m=5)"]},
    seeds=(0, 1),
    grid={"distance": tied(("model.affinity.distance", "loss.aux.affinity.distance"), ["sq_l2", "l1", "l2"]),
          "similarity": tied(("model.affinity.similarity", "loss.aux.affinity.similarity"),
                             ["gaussian", "inverse"])},
    description="Affinity paper Table 4: squared L2 with the Gaussian similarity is best; every combination "
                "trains except L1 with the Gaussian similarity, which does not converge.",
)
