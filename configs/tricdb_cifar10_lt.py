"""TriCDB-CE (Darkwah Jnr. & Kang, 2023: triplet + class-wise difficulty-based CE; docs/design.md §5.3):
CIFAR-10-LT, ρ = 100, in the training regime of the CDB-CE reference code (Sinha et al., ACCV 2020;
hitachi-rd-cv/CDB-loss, CIFAR-LT/cifar_train.py), which the TriCDB-CE paper says it follows:

- data: a balanced validation set of 25 images per class held out before the imbalance, n_c = int(n_max·ρ^(−c/9)),
  random crop (pad 4) + horizontal flip;
- model: ResNet-32 (option-A shortcuts), classifier bias initialised to the prior −log((1−π)/π), π = 1/C;
- optimisation: SGD lr 0.1, momentum 0.9, weight decay 5e-4 on every parameter but the classifier bias, batch 32,
  240 epochs, lr ×0.01 from epoch 160 and ×0.01 again from epoch 210 (absolute factors 1e-2, 1e-4);
- the final test uses the checkpoint with the best validation accuracy.

Loss: L = λ·L_tri + L_CDB-CE with λ = 1; violating-triplet mining with margin α = 0.2 on the L2-normalised backbone
embedding (FaceNet's α is defined on unit vectors; the paper does not give α), CDB weights with dynamic τ recomputed
from the validation accuracies after every epoch.

The LDAM-DRW baseline keeps its own schedule: configs/ldam_drw_cifar10_lt.py. Needs CIFAR-10 through
tensorflow-datasets.
"""

from configs import default
from imbalance_jax.objectives import aux_loss_config


def set_tricdb(config, triplet_weight: float = 1.0) -> None:
    """CDB-CE (dynamic τ) + λ·triplet (violating, α = 0.2, squared L2 on L2-normalised backbone features)."""
    config.loss.name = "ce"
    config.loss.weight = 1.0
    config.loss.class_weighting.name = "cdb"
    config.loss.class_weighting.tau = "dynamic"
    config.loss.aux = {"triplet": aux_loss_config("triplet", weight=triplet_weight, layers=("backbone",),
                                                  margin=0.2, metric="sq_l2", mining="violating", normalize=True)}
    config.evaluation.embedding_layer = "backbone"


def set_cifar_lt(config, dataset: str) -> None:
    """The CIFAR-LT data protocol shared by the LDAM-DRW and CDB-CE reference codes."""
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


def get_config(dataset: str = "cifar10"):
    config = default.get_config()
    set_cifar_lt(config, dataset)
    config.num_epochs = 240
    config.batch_size = 32
    config.model.classifier_bias_init = "prior"
    set_tricdb(config)
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 0.1
    config.optimizer.momentum = 0.9
    config.optimizer.weight_decay = 5e-4
    config.optimizer.weight_decay_exclude = ("classifier/bias",)
    config.optimizer.schedule = "multistep"
    config.optimizer.warmup_epochs = 0.0
    config.optimizer.boundaries = (160, 210)
    config.optimizer.decay_factors = (0.01, 0.0001)
    config.checkpoint.best_metric = "val_accuracy"
    config.checkpoint.evaluate_best = True
    return config
