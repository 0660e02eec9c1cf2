"""TriCDB-CE paper (Table 2/3) on Fashion-MNIST-LT at a converged budget: ρ ∈ {10, 100}; plain CE, CDB-CE,
TriCDB-CE (triplet on L2-normalised backbone embeddings, α = 0.2, λ = 1), LDAM-DRW (re-weighting over the last
20 % of training, as 160 of 200 epochs in its reference code) and logit adjustment (τ = 1); CDB-CE and TriCDB-CE
again with 100 validation images per class for CDB's weights (LARGE_VAL); 3 seeds.

Budget: NUM_EPOCHS epochs with the base config's cosine schedule (Adam 1e-3, batch 128). With a constant learning rate,
CE's validation balanced accuracy on ρ = 100 stops improving after about 10 epochs (experiments/RESULTS.md,
"Budgets"); twice that with a decaying schedule is the converged budget used here. The paper's ρ = 50 point is cut
to fit the machine (experiments/RESULTS.md, "Budgets").
"""

from experiments.sweeps import Sweep
from experiments.sweeps._methods import BASE, METHODS

NUM_EPOCHS = 20
# CDB's weights w_c = (1 - A_c)^τ come from per-class validation accuracy. With the base config's 25 images per class,
# classes reach A_c = 1 and get weight 0 for the next epoch (0^τ, as in the reference code); training then
# oscillates between class sets (experiments/RESULTS.md, TriCDB-CE). The "(val 100)" rows hold out 100 per class.
LARGE_VAL = {"data.val_per_class": 100}

SWEEP = Sweep(
    name="tricdb_rho",
    base_config=BASE,
    methods={**{name: METHODS[name] for name in ("CE", "CDB-CE", "TriCDB-CE", "Logit adjustment")},
             "LDAM-DRW": {**METHODS["LDAM-DRW"], "loss.class_weighting.start_epoch": int(0.8 * NUM_EPOCHS)},
             "CDB-CE (val 100)": {**METHODS["CDB-CE"], **LARGE_VAL},
             "TriCDB-CE (val 100)": {**METHODS["TriCDB-CE"], **LARGE_VAL}},
    seeds=(0, 1, 2),
    common_overrides={"num_epochs": NUM_EPOCHS},
    grid={"data.imbalance.ratio": [100.0, 10.0]},
    comparisons=(("TriCDB-CE", "CDB-CE"), ("TriCDB-CE", "CE"), ("CDB-CE", "CE"),
                 ("TriCDB-CE (val 100)", "CDB-CE (val 100)"), ("TriCDB-CE (val 100)", "CE"), ("CDB-CE (val 100)", "CE"),
                 ("LDAM-DRW", "CE"), ("Logit adjustment", "CE")),
    description="TriCDB-CE paper Tables 2-3: TriCDB-CE improves on CDB-CE and on plain CE at every imbalance ratio, "
                "and every method degrades as ρ grows.",
)
