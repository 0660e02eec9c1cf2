"""Sanity check on the embedded digits-LT default (configs/default.py, ρ = 10, 60 epochs): CE against
CE + ASLoss (L2) on the 2-D head layer, same network, 3 seeds; runs offline in minutes."""

from experiments.sweeps import Sweep

SWEEP = Sweep(
    name="digits_sanity",
    base_config="configs/default.py",
    methods={"CE": {"loss.aux.asl.weight": 0.0}, "ASLoss (L2)": {}},
    seeds=(0, 1, 2),
    description="Digits-LT sanity check: the default run (CE + ASLoss) is at least as good as CE alone.",
)
