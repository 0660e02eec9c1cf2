"""LDAM-DRW baseline (Cao et al., NeurIPS 2019) on CIFAR-10-LT, ρ = 100, in its own reference code's schedule
(kaidic/LDAM-DRW, cifar_train.py): the CIFAR-LT data protocol of tricdb_cifar10_lt.py, ResNet-32, SGD momentum 0.9,
weight decay 2e-4, batch 128, 200 epochs, 5-epoch linear warm-up to 0.1, lr ×0.01 at 160 and ×0.0001 at 180,
LDAM (max margin 0.5, scale 30, on the normalised classifier of its code) with deferred re-weighting
(class-balanced, β = 0.9999) from epoch 160, reduced as PyTorch's ``cross_entropy(weight=...)`` (weighted mean).
CIFAR-100-LT: --config.data.name=cifar100. Needs CIFAR through tensorflow-datasets.
"""

from configs import default, tricdb_cifar10_lt


def get_config():
    config = default.get_config()
    tricdb_cifar10_lt.set_cifar_lt(config, "cifar10")
    config.num_epochs = 200
    config.batch_size = 128
    config.loss.name = "ldam"
    config.loss.weight = 1.0
    config.loss.aux = {}
    config.loss.class_weighting.name = "drw"
    config.loss.class_weighting.start_epoch = 160
    config.loss.class_weighting.reduction = "weighted_mean"  # F.cross_entropy(weight=...) in its reference code
    config.evaluation.embedding_layer = "backbone"
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 0.1
    config.optimizer.momentum = 0.9
    config.optimizer.weight_decay = 2e-4
    config.optimizer.schedule = "multistep"
    config.optimizer.warmup_epochs = 5.0
    config.optimizer.boundaries = (160, 180)
    config.optimizer.decay_factors = (0.01, 0.0001)
    return config
