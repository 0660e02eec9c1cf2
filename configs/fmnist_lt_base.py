"""Fashion-MNIST-LT, the offline long-tailed benchmark every method runs on: ρ = 100 exponential profile on the
training set after a balanced validation hold-out of 25 images per class, the balanced 10k test set, the 4-layer
CNN of the affinity paper, 5 epochs (about 1.5 min on 2 CPU cores: the budget that lets
every sweep of experiments/ fit a few hours). The fmnist_lt_*.py configs start from this one and differ only in the loss (and the
head/classifier that loss reads). Every baseline of docs/design.md §5.5 is an override away, e.g.
  --config.loss.name=focal --config.loss.focal_gamma=2
  --config.loss.class_weighting.name=inverse_frequency            (weighted CE)
  --config.loss.name=focal --config.loss.class_weighting.name=class_balanced   (class-balanced focal)
  --config.loss.name=ldam --config.loss.class_weighting.name=drw --config.loss.class_weighting.start_epoch=4
  --config.loss.name=logit_adjusted --config.loss.logit_adjustment_tau=1
  --config.loss.class_weighting.name=cdb                          (CDB-CE)
  --config.model.classifier=tde                                   (TDE)
  --config.data.sampler=class_balanced | square_root | progressive
Data: the Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist), --config.data.dir, or tfds.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.num_epochs = 5
    config.batch_size = 128
    config.eval_batch_size = 1000
    config.data.name = "fashion_mnist"
    config.data.val_per_class = 25
    config.data.imbalance.profile = "exponential"
    config.data.imbalance.ratio = 100.0
    config.data.sampler = "random"
    config.model.name = "cnn4"
    config.model.head_widths = ()
    config.loss.name = "ce"
    config.loss.weight = 1.0
    config.loss.aux = {}
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "cosine"
    config.evaluation.embedding_layer = "backbone"
    return config
