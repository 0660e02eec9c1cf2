"""Hayat et al. (ICCV 2019), imbalanced MNIST: keep 10% of the training images of digits 0-4, the 4-layer CNN
(conv 5×5 32/64/128, FC 128), features → BatchNorm → Gaussian-affinity head with m = 5 centres per class,
σ = 10, λ = 0.75, diversity weight γ = 1 (DESIGN.md §3.2). Prediction = argmax similarity.
The affinity loss replaces softmax CE (loss.name = "none"). Vary the minority fraction with
--config.data.imbalance.fraction=0.025 and label noise with --config.data.label_noise=0.3
(plus --config.early_stopping.enabled=True, as in the paper's noise experiments).
Needs MNIST through tensorflow-datasets.
"""

from configs import default
from imbalance_jax.objectives import aux_loss_config

SIGMA, DISTANCE, SIMILARITY = 10.0, "sq_l2", "gaussian"


def set_affinity(config, num_centres: int = 5) -> None:
    """Affinity classifier + loss; the kernel's σ/distance/similarity are the head's (checked at start-up)."""
    config.model.head_widths = ()
    config.model.classifier = "affinity"
    config.model.affinity = {"num_centres": num_centres, "sigma": SIGMA, "distance": DISTANCE,
                             "similarity": SIMILARITY}
    config.loss.name = "none"
    config.loss.weight = 0.0
    config.loss.aux = {"affinity": aux_loss_config("affinity", weight=1.0, sigma=SIGMA, distance=DISTANCE,
                                                   similarity=SIMILARITY, margin=0.75, diversity_weight=1.0)}
    config.evaluation.embedding_layer = "classifier_input"


def get_config():
    config = default.get_config()
    config.num_epochs = 30
    config.batch_size = 128
    config.eval_batch_size = 500
    config.data.name = "mnist"
    config.data.val_per_class = 100
    config.data.imbalance.profile = "step"
    config.data.imbalance.minority_classes = (0, 1, 2, 3, 4)
    config.data.imbalance.fraction = 0.1
    config.data.sampler = "random"
    config.model.name = "cnn4"
    set_affinity(config, num_centres=5)
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "constant"
    return config
