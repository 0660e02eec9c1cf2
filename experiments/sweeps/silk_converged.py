"""The silk paper's Table 3 claims that grayscale images can test, at the converged budget: {random, class-balanced}
mini-batches × {C, C + sem}, 3 seeds. The colour term's rows are left out: on Fashion-MNIST every colour histogram
is the same, so that term only pulls all embeddings together (``silk_grid``, 5 epochs, has all eight rows).

Budget: NUM_EPOCHS epochs with the base config's Adam 1e-3 and cosine schedule, as ``tricdb_rho`` on the same
Fashion-MNIST-LT ρ = 100 (experiments/RESULTS.md, "Budgets").
"""

from experiments.sweeps import Sweep
from experiments.sweeps._methods import CLUSTERING, SAMPLERS, clustering

NUM_EPOCHS = 20
ROWS = ("C", "C + sem")

SWEEP = Sweep(
    name="silk_converged",
    base_config=CLUSTERING,
    methods={f"{losses} ({name} batches)": clustering(losses, sampler)
             for name, sampler in SAMPLERS.items() for losses in ROWS},
    seeds=(0, 1, 2),
    common_overrides={"num_epochs": NUM_EPOCHS},
    comparisons=(("C (balanced batches)", "C (random batches)"), ("C + sem (random batches)", "C (random batches)"),
                 ("C + sem (balanced batches)", "C (balanced batches)"),
                 ("C + sem (balanced batches)", "C (random batches)")),
    description="Silk paper Table 3 at the converged budget: class-balanced mini-batches and the semantic clustering "
                "term raise the mean F1 and the minority-class F1 over the CE baseline with random mini-batches.",
)
