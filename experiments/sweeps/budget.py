"""How long each paper's protocol needs: plain CE at a constant learning rate for longer than any sweep trains, one
seed, on the three Fashion-MNIST protocols of asl_fourclass, affinity_step and tricdb_rho. The epoch at which CE's
validation balanced accuracy stops improving sets each sweep's NUM_EPOCHS (``python -m experiments.curves budget``
prints the curves; experiments/RESULTS.md, "Budgets").

The two "step 2.5 percent" cells test whether the affinity loss only needs longer than CE where it trails CE in
affinity_step (classes 0-4 at 2.5 %): CE and the affinity loss (m = 1) at the same constant learning rate, the
affinity loss for three times the sweep's 15 epochs."""

from experiments.sweeps import Sweep
from experiments.sweeps._methods import METHODS
from experiments.sweeps.affinity_step import step

SWEEP = Sweep(
    name="budget",
    base_config="configs/fmnist_lt_base.py",
    methods={
        "CE, four classes (2-D head)": {"config": "configs/fmnist4_asl.py", "num_epochs": 100,
                                        "loss.aux.asl.weight": 0.0},
        "CE, step 10 percent": {"num_epochs": 20, **step(0.1)},
        "CE, Fashion-MNIST-LT rho=100": {"num_epochs": 30},
        "CE, step 2.5 percent": {"num_epochs": 20, **step(0.025)},
        "Affinity (m=1), step 2.5 percent": {**METHODS["Affinity (m=1)"], "num_epochs": 45, **step(0.025)},
    },
    seeds=(0,),
    common_overrides={"optimizer.schedule": "constant"},
    description="Plain CE at a constant learning rate: where its validation balanced accuracy plateaus.",
)
