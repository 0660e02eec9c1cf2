"""The methods on Fashion-MNIST-LT (ρ = 100, the 4-layer CNN, balanced 10k test set), defined once: the four
papers' methods and the baselines they compare against (docs/design.md §5.5). The sweeps take theirs from here.

Two rows are not in the papers' tables but help to read them: "CE (2-D head)" is CE on the very network the
ASLoss rows train (the head narrowing to 2-D), ASLoss's architecture-matched baseline; "TriCDB-CE (cosine)" takes
the triplet distance as 1 − cos of the embeddings (half the squared L2 distance of the normalised embeddings, with
the margin on that scale).
"""

BASE = "configs/fmnist_lt_base.py"
ASL = "configs/fmnist_lt_asl.py"
AFFINITY = "configs/fmnist_lt_affinity.py"
TRICDB = "configs/fmnist_lt_tricdb.py"
CLUSTERING = "configs/fmnist_lt_clustering.py"

# The silk paper's Table 3: (α_sem, α_co) of each experiment, with λ_C = λ_aux = 1.
CLUSTERING_LOSSES = {"C": (0.0, 0.0), "C + sem": (1.0, 0.0), "C + co": (0.0, 1.0), "C + co + sem": (0.5, 0.5)}
SAMPLERS = {"random": "random", "balanced": "class_balanced"}


def clustering(losses: str, sampler: str = "random") -> dict:
    """The silk paper's head and loss (configs/fmnist_lt_clustering.py) with one row of its Table 3."""
    semantic, colour = CLUSTERING_LOSSES[losses]
    return {"config": CLUSTERING, "data.sampler": sampler, "loss.aux.semantic_triplet.weight": semantic,
            "loss.aux.colour_similarity.weight": colour}


def affinity(num_centres: int) -> dict:
    """Gaussian-affinity head + loss; the loss reads the head's prototypes, so m is set on the model only."""
    return {"config": AFFINITY, "model.affinity.num_centres": num_centres}


METHODS = {
    "CE": {},
    "Weighted CE": {"loss.class_weighting.name": "inverse_frequency"},
    "Focal": {"loss.name": "focal", "loss.focal_gamma": 2.0},
    "Class-balanced focal": {"loss.name": "focal", "loss.focal_gamma": 2.0,
                             "loss.class_weighting.name": "class_balanced", "loss.class_weighting.beta": 0.9999},
    # DRW from epoch 4 of 5: the LDAM-DRW schedule (re-weighting for the last 20% of training, 160 of 200).
    "LDAM-DRW": {"loss.name": "ldam", "loss.class_weighting.name": "drw", "loss.class_weighting.start_epoch": 4,
                 "loss.class_weighting.reduction": "weighted_mean"},
    "Logit adjustment": {"loss.name": "logit_adjusted", "loss.logit_adjustment_tau": 1.0},
    "CDB-CE": {"loss.class_weighting.name": "cdb"},
    "TDE": {"model.classifier": "tde"},
    "CE (2-D head)": {"config": ASL, "loss.aux.asl.weight": 0.0},
    "ASLoss (L1)": {"config": ASL, "loss.aux.asl.metric": "l1"},
    "ASLoss (L2)": {"config": ASL, "loss.aux.asl.metric": "l2"},
    "ASLoss (cosine)": {"config": ASL, "loss.aux.asl.metric": "cosine"},
    "Affinity (m=1)": affinity(1),
    "Affinity (m=5)": affinity(5),
    "TriCDB-CE": {"config": TRICDB},
    "TriCDB-CE (cosine)": {"config": TRICDB, "loss.aux.triplet.metric": "cosine"},
    **{f"Clustering {losses[4:]} ({name} batches)": clustering(losses, sampler)
       for losses in ("C + sem", "C + co", "C + co + sem") for name, sampler in SAMPLERS.items()},
}
