"""ASLoss paper (Table 1, Figs. 5-6) on a small proxy of its protocol: configs/fmnist4_asl.py, Fashion-MNIST's four
confusable upper-body classes in ACNE04's proportions 633:519:182:123, balanced test set, Adam 1e-3, batch 16.
CE against CE + ASLoss with L1 / L2 / cosine distance on the same linear head narrowing to 2-D, and CE against
CE + ASLoss (L2) with the wider head whose last layer is 32-d; 3 seeds.

Budget: NUM_EPOCHS epochs at a constant learning rate (the paper's Adam 1e-3), past the point where CE's validation
balanced accuracy stops improving (experiments/RESULTS.md, "Budgets").
"""

from experiments.sweeps import Sweep

BASE = "configs/fmnist4_asl.py"
NUM_EPOCHS = 40
WIDE = {"model.head_widths": (64, 32)}

SWEEP = Sweep(
    name="asl_fourclass",
    base_config=BASE,
    methods={
        "CE (2-D head)": {"loss.aux.asl.weight": 0.0},
        "ASLoss (L1)": {"loss.aux.asl.metric": "l1"},
        "ASLoss (L2)": {"loss.aux.asl.metric": "l2"},
        "ASLoss (cosine)": {"loss.aux.asl.metric": "cosine"},
        "CE (32-d head)": {**WIDE, "loss.aux.asl.weight": 0.0},
        "ASLoss (L2, 32-d head)": {**WIDE, "loss.aux.asl.metric": "l2"},
    },
    seeds=(0, 1, 2),
    common_overrides={"num_epochs": NUM_EPOCHS},
    comparisons=(("ASLoss (L1)", "CE (2-D head)"), ("ASLoss (L2)", "CE (2-D head)"),
                 ("ASLoss (cosine)", "CE (2-D head)"), ("ASLoss (L2, 32-d head)", "CE (32-d head)")),
    description="ASLoss paper Table 1: CE + ASLoss beats CE on the same network (accuracy, macro F1), L2 best; "
                "Fig. 5: the 2-D representations of the classes are tighter and further apart.",
)
