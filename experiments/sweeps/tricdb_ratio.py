"""TriCDB-CE paper Table 2 on Fashion-MNIST-LT: imbalance ratio ρ ∈ {200, 100, 50, 10} for CDB-CE, TriCDB-CE
and TriCDB-CE on unit-normalised features (cosine). Plain CE at ρ = 100 is in the main table."""

from experiments.sweeps import Sweep
from experiments.sweeps.fmnist_main import BASE, METHODS

SWEEP = Sweep(
    name="tricdb_ratio",
    base_config=BASE,
    methods={name: METHODS[name] for name in ("CDB-CE", "TriCDB-CE", "TriCDB-CE (cosine)")},
    seeds=(0, 1),
    grid={"data.imbalance.ratio": [200.0, 100.0, 50.0, 10.0]},
    description="TriCDB-CE paper Table 2: every metric falls as ρ grows (ρ = 10 best, 200 worst); TriCDB-CE "
                "improves on CDB-CE at each ratio.",
)
