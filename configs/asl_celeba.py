"""ASLoss paper (Table 1 / Fig. 5, facial-expression task): CelebA 4-class mouth-open × smiling task with the
ACNE04 class proportions (633:519:182:123 of 1000 images, 80/20 split per class), ResNet-50 + linear projection
layers narrowing to 2-D, CE + ASLoss(L2) on the 2-D layer, λ_in = λ_out = 1e-3, λ_b = 1e-2, λ_asl = λ_cls = 0.5,
Adam 1e-3, batch 16, 400 epochs (the paper's hyper-parameters, its §5.1; docs/design.md §5.1).

The paper does not give the widths of its "linear mapping layers" (Fig. 2): (512, 128, 32, 2), no activation, is ours.
`constraint` (the norm target of the boundary term) is not given either: 1.0.
Needs CelebA through tensorflow-datasets (`tfds build celeb_a`, or --config.data.tfds_data_dir=DIR).

The ResNet-50 starts from ImageNet weights: convert torchvision's (README, "Pretrained weights") with
`python -m imbalance_jax.convert_weights --model=resnet50 --input=resnet50-11ad3fa6.pth --output=resnet50.npz`
and pass --config.model.pretrained_path=resnet50.npz (the backbone is loaded; the head layers start fresh).
Left empty, the backbone trains from scratch.
"""

from configs import default
from imbalance_jax.objectives import aux_loss_config


def get_config():
    config = default.get_config()
    config.num_epochs = 400
    config.batch_size = 16
    config.eval_batch_size = 64
    config.data.name = "celeb_a"
    config.data.image_size = 224
    config.data.test_fraction = 0.2
    config.data.val_per_class = 0
    config.data.imbalance.profile = "none"  # the ACNE04 proportions are drawn by the loader
    config.data.sampler = "random"
    config.data.augment.flip = True
    config.model.name = "resnet50"
    config.model.head_widths = (512, 128, 32, 2)
    config.model.head_activation = "none"
    config.model.pretrained_path = ""  # ImageNet ResNet-50 .npz from imbalance_jax.convert_weights (see above)
    config.loss.name = "ce"
    config.loss.weight = 0.5
    config.loss.aux.asl = aux_loss_config("asl", weight=0.5, layers=("head_last",), metric="l2")
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "constant"
    return config
