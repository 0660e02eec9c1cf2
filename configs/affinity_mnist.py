"""Hayat et al. (ICCV 2019), imbalanced MNIST: keep 10% of the training images of digits 0-4, the 4-layer CNN
(conv 5×5 32/64/128, FC 128) whose FC-128 features feed the Gaussian-affinity head directly (the paper "only
changes the output softmax layer", §4.2; --config.model.affinity.batch_norm=True puts a BatchNorm in front), m = 5
centres per class initialised at the features' scale (class means, --config.model.affinity.prototype_init), σ = 10,
λ = 0.75, diversity weight γ = 1. Prediction = argmax similarity. The best checkpoint is the one with the highest
validation balanced accuracy (CE over similarities is nearly flat, so the validation loss says little).
The affinity loss replaces softmax CE (loss.name = "none"). Vary the minority fraction with
--config.data.imbalance.fraction=0.025 and label noise with --config.data.label_noise=0.3
(plus --config.early_stopping.enabled=True, as in the paper's noise experiments).
Needs MNIST through tensorflow-datasets.
"""

from configs import default
from imbalance_jax.objectives import aux_loss_config

SIGMA, DISTANCE, SIMILARITY = 10.0, "sq_l2", "gaussian"


def set_affinity(config, num_centres: int = 5) -> None:
    """Affinity classifier (σ, distance, similarity, m in config.model.affinity) + its max-margin loss, which
    reads the head's similarities and prototypes."""
    config.model.head_widths = ()
    config.model.classifier = "affinity"
    config.model.affinity.num_centres = num_centres
    config.model.affinity.sigma = SIGMA
    config.model.affinity.distance = DISTANCE
    config.model.affinity.similarity = SIMILARITY
    config.checkpoint.best_metric = "val_balanced_accuracy"
    config.loss.name = "none"
    config.loss.weight = 0.0
    config.loss.aux = {"affinity": aux_loss_config("affinity", weight=1.0, margin=0.75, diversity_weight=1.0)}
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
