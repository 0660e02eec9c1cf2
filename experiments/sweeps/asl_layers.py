"""ASLoss paper Table 2 on Fashion-MNIST-LT: ASLoss (L2) on the last 1, 2, 3 or 4 layers of the projection head
(64, 32, 16, 2) before the classifier, against the same network without ASLoss."""

from experiments.sweeps import Sweep
from experiments.sweeps.fmnist_main import ASL

HEAD_LAYERS = ("head_0", "head_1", "head_2", "head_3")  # configs/fmnist_lt_asl.py: head_widths = (64, 32, 16, 2)

SWEEP = Sweep(
    name="asl_layers",
    base_config=ASL,
    methods={
        "Base model (no ASLoss)": {"loss.aux.asl.weight": 0.0},
        **{f"ASLoss (L2) on the last {k} layer{'s' if k > 1 else ''}": {"loss.aux.asl.layers": HEAD_LAYERS[-k:]}
           for k in (1, 2, 3, 4)},
    },
    seeds=(0, 1),
    description="ASLoss paper, Table 2: applying ASLoss to more layers before the classifier does not help; the "
                "last (2-D) layer alone is best, and every variant beats the base model.",
)
