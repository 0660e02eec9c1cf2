"""TriCDB-CE paper Table 1 on Fashion-MNIST-LT: triplet-loss weight λ ∈ {0.25, 0.5, 0.75, 1.0}, plus λ = 0 (the
triplet term off: CDB-CE alone) as the reference, each with the squared L2 distance of the paper's Eq. 5 (on the
L2-normalised backbone features, configs/fmnist_lt_tricdb.py; docs/design.md §5.3) and with the cosine distance
(see "TriCDB-CE (cosine)" in fmnist_main.py)."""

from experiments.sweeps import Sweep, tied
from experiments.sweeps.fmnist_main import TRICDB

SWEEP = Sweep(
    name="tricdb_lambda",
    base_config=TRICDB,
    methods={"TriCDB-CE": {}},
    seeds=(0, 1),
    grid={"lambda": tied(("loss.aux.triplet.weight",), [0.0, 0.25, 0.5, 0.75, 1.0]),
          "loss.aux.triplet.metric": ["sq_l2", "cosine"]},
    description="TriCDB-CE paper Table 1: λ = 1.0 gives the best results; adding the triplet term helps CDB-CE.",
)
