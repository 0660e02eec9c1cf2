"""Fashion-MNIST-LT (ρ = 100), CE + ASLoss(L2) on the 2-D last layer of a head of linear mapping layers (no
activation between them, ASLoss paper §2 and §6.1; ASLoss paper weights: λ_cls = λ_asl = 0.5, λ_in = λ_out = 1e-3,
λ_b = 1e-2). Other metrics: --config.loss.aux.asl.metric=l1|cosine; several layers:
--config.loss.aux.asl.layers="('head_1','head_2')"; the wider-head variant (ASLoss on a 32-d last layer, the loss
"can be adopted on any linear feature extraction layers", §1): --config.model.head_widths="(64, 32)"."""

from configs import fmnist_lt_base
from imbalance_jax.objectives import aux_loss_config


def get_config():
    config = fmnist_lt_base.get_config()
    config.model.head_widths = (64, 32, 16, 2)
    config.model.head_activation = "none"
    config.loss.weight = 0.5
    config.loss.aux = {"asl": aux_loss_config("asl", weight=0.5, layers=("head_last",), metric="l2")}
    config.evaluation.embedding_layer = "head_last"
    return config
