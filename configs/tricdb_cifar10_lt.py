"""TriCDB-CE (DESIGN.md §3.3): CIFAR-10-LT, ρ = 100, the LDAM/CDB protocol — balanced validation of 25 images per
class held out before the imbalance, n_c = int(n_max·ρ^(−c/9)), ResNet-32 (option-A shortcuts), SGD momentum 0.9,
weight decay 2e-4, batch 128, 200 epochs, 5-epoch linear warm-up to 0.1, lr ×0.01 at 160 and ×0.0001 at 180,
random crop (pad 4) + flip. L = λ·L_tri + L_CDB-CE with λ = 1, violating-triplet mining, margin α = 0.2 on the
backbone embedding (squared L2), CDB weights with dynamic τ recomputed from the validation accuracies every epoch.
Needs CIFAR-10 through tensorflow-datasets.
"""

from configs import default
from imbalance_jax.objectives import aux_loss_config


def set_tricdb(config, triplet_weight: float = 1.0) -> None:
    config.loss.name = "ce"
    config.loss.weight = 1.0
    config.loss.class_weighting.name = "cdb"
    config.loss.class_weighting.tau = "dynamic"
    config.loss.aux = {"triplet": aux_loss_config("triplet", weight=triplet_weight, layers=("backbone",),
                                                  margin=0.2, metric="sq_l2", mining="violating")}
    config.evaluation.embedding_layer = "backbone"


def get_config(dataset: str = "cifar10"):
    config = default.get_config()
    config.num_epochs = 200
    config.batch_size = 128
    config.eval_batch_size = 500
    config.data.name = dataset
    config.data.val_per_class = 25
    config.data.imbalance.profile = "exponential"
    config.data.imbalance.ratio = 100.0
    config.data.sampler = "random"
    config.data.augment.crop_padding = 4
    config.data.augment.flip = True
    config.model.name = "resnet32"
    config.model.head_widths = ()
    set_tricdb(config)
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 0.1
    config.optimizer.momentum = 0.9
    config.optimizer.weight_decay = 2e-4
    config.optimizer.schedule = "multistep"
    config.optimizer.warmup_epochs = 5.0
    config.optimizer.boundaries = (160, 180)
    config.optimizer.decay_factors = (0.01, 0.0001)
    return config
