"""TriCDB-CE paper Table 1 on Fashion-MNIST-LT: triplet-loss weight λ ∈ {0.25, 0.5, 0.75, 1.0}, plus λ = 0 (the
triplet term off: CDB-CE alone) as the reference, each with the triplet distance of DESIGN.md (squared L2 on the
raw backbone features) and on unit-normalised features (cosine; see "TriCDB-CE (cosine)" in fmnist_main.py)."""

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
