"""Dorozynski & Rottensteiner auxiliary clustering loss (silk paper §3; docs/design.md §5.4) on a SILKNOW-style CSV:
backbone (ResNet-152) → ReLU → dropout 0.3 → Dense [1024, 32] = f_tfc → classifier; the semantic-triplet and
colour-similarity losses read f_tfc and L2-normalise it (the clustering branch, used only in training).
L = λ_C·CE + λ_aux·(α_sem·L_sem + α_co·L_co) with λ_C = λ_aux = 1, α_sem = α_co = 0.5; Adam 1e-3, batch 180,
early stopping on the validation loss. Colour histograms (hue–saturation polar grid, 25 bins) are computed from the
un-augmented images when the loss needs them.

Data: --config.data.dir=DIR with DIR/labels.csv (columns `path` and one column per variable, e.g. material,
timespan, place, technique; empty = unknown) and --config.data.variable=material picks the task.
--config.data.sampler=class_balanced for the paper's balanced mini-batches (N_MB ≤ N_min·K).

The ResNet-152 starts from ImageNet weights: convert torchvision's (README, "Pretrained weights") with
`python -m imbalance_jax.convert_weights --model=resnet152 --input=resnet152-f82ba261.pth --output=resnet152.npz`
and pass --config.model.pretrained_path=resnet152.npz (the backbone is loaded; f_tfc and the classifier start
fresh). Left empty, the backbone trains from scratch.
"""

from configs import default
from imbalance_jax.objectives import aux_loss_config


def set_clustering(config, semantic: float = 0.5, colour: float = 0.5) -> None:
    config.model.head_widths = (1024, 32)
    config.model.head_activation = "relu"
    config.model.dropout = 0.3
    config.model.classifier_activation = "relu"  # f_tfc → ReLU → Dense → softmax
    config.loss.name = "ce"
    config.loss.weight = 1.0
    config.loss.aux = {
        "semantic_triplet": aux_loss_config("semantic_triplet", weight=semantic, layers=("head_last",)),
        "colour_similarity": aux_loss_config("colour_similarity", weight=colour, layers=("head_last",)),
    }


def get_config():
    config = default.get_config()
    config.num_epochs = 200
    config.batch_size = 180
    config.eval_batch_size = 180
    config.data.name = "image_folder"
    config.data.dir = ""
    config.data.train_list = "labels.csv"
    config.data.test_list = ""
    config.data.variable = "material"
    config.data.image_size = 224
    config.data.channels = 3
    config.data.test_fraction = 0.2
    config.data.val_per_class = 0
    config.data.val_fraction = 0.1
    config.data.imbalance.profile = "none"
    config.data.sampler = "random"
    config.data.augment.flip = True
    config.model.name = "resnet152"
    config.model.pretrained_path = ""  # ImageNet ResNet-152 .npz from imbalance_jax.convert_weights (see above)
    set_clustering(config)
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "constant"
    config.early_stopping.enabled = True
    config.early_stopping.patience = 10
    return config
