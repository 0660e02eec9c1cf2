"""The silk paper's Table 3 grid on Fashion-MNIST-LT: {random, class-balanced} mini-batches × {none, sem, co,
sem + co} auxiliary losses, 2 seeds each (the paper ran 3; budget). Fashion-MNIST is grayscale, so every colour histogram
is the same and the colour term only pulls all embeddings together (see configs/fmnist_lt_clustering.py)."""

from experiments.sweeps import Sweep
from experiments.sweeps._methods import CLUSTERING, CLUSTERING_LOSSES, SAMPLERS, clustering

SWEEP = Sweep(
    name="silk_grid",
    base_config=CLUSTERING,
    methods={losses: {k: v for k, v in clustering(losses).items() if k != "data.sampler"}
             for losses in CLUSTERING_LOSSES},
    seeds=(0, 1),
    grid={"data.sampler": list(SAMPLERS.values())},
    description="Silk paper Table 3: class-balanced mini-batches and the semantic clustering term raise the mean "
                "F1 and the minority-class F1 over the CE baseline with random mini-batches.",
)
