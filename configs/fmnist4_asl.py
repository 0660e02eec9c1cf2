"""A small proxy of the ASLoss paper's protocol (its §5–6: four confusable, mildly imbalanced classes, about a
thousand training images): Fashion-MNIST's four upper-body classes T-shirt/top, Pullover, Coat and Shirt (source ids
0, 2, 4, 6, relabelled 0–3) with the training counts in ACNE04's proportions 633 : 519 : 182 : 123 (1457 images),
a balanced validation hold-out of 25 per class (taken before the imbalance) and Fashion-MNIST's balanced test set
(1000 per class). The 4-layer CNN + a head of linear mapping layers narrowing to 2-D (no activation between them,
paper §2 / §6.1), CE + ASLoss (L2) on the 2-D layer with the paper's weights (λ_cls = λ_asl = 0.5, λ_in = λ_out =
1e-3, λ_b = 1e-2), Adam 1e-3, batch 16, constant learning rate.

Variants: --config.loss.aux.asl.metric=l1|cosine; plain CE on the same network: --config.loss.aux.asl.weight=0;
the wider head (ASLoss on a 32-d last layer): --config.model.head_widths="(64, 32)".
"""

from configs import default
from imbalance_jax.objectives import aux_loss_config

ACNE04_COUNTS = (633, 519, 182, 123)
UPPER_BODY_CLASSES = (0, 2, 4, 6)  # T-shirt/top, Pullover, Coat, Shirt


def get_config():
    config = default.get_config()
    config.num_epochs = 60
    config.batch_size = 16
    config.eval_batch_size = 1000
    config.data.name = "fashion_mnist"
    config.data.classes = UPPER_BODY_CLASSES
    config.data.val_per_class = 25
    config.data.imbalance.profile = "counts"
    config.data.imbalance.counts = ACNE04_COUNTS
    config.data.sampler = "random"
    config.model.name = "cnn4"
    config.model.head_widths = (64, 32, 16, 2)
    config.model.head_activation = "none"
    config.loss.name = "ce"
    config.loss.weight = 0.5
    config.loss.aux = {"asl": aux_loss_config("asl", weight=0.5, layers=("head_last",), metric="l2")}
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "constant"
    config.evaluation.embedding_layer = "head_last"
    return config
