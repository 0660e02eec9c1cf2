"""ASLoss boundary constraint (paper Eq. 5; its value is not given in the paper, default 1.0): the distance to
the origin the 2-D representations are pulled to, and the loss without the boundary term."""

from experiments.sweeps import Sweep
from experiments.sweeps.fmnist_main import ASL

CONSTRAINTS = (0.25, 1.0, 4.0, 16.0)

SWEEP = Sweep(
    name="asl_constraint",
    base_config=ASL,
    methods={
        "Base model (no ASLoss)": {"loss.aux.asl.weight": 0.0},
        "ASLoss without boundary term": {"loss.aux.asl.boundary_weight": 0.0},
        **{f"ASLoss constraint {c:g}": {"loss.aux.asl.constraint": c} for c in CONSTRAINTS},
    },
    seeds=(0, 1),
    description="ASLoss paper §4.3: the boundary constraint keeps the separation term from diverging; its value "
                "(not given in the paper) trades cluster room against convergence speed.",
)
