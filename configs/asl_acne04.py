"""ASLoss paper, acne-severity task (Table 1, best row EfficientNet-B3 + ASLoss L2): ACNE04 (4 severity grades)
from an image folder or label list, EfficientNet-B3 at 300 px + linear projection layers narrowing to 2-D,
CE + ASLoss(L2) on the 2-D layer, paper weights, Adam 1e-3, batch 16, 400 epochs.

Data: put ACNE04 under DIR and pass --config.data.dir=DIR with either DIR/<grade>/*.jpg, or the dataset's split
lists (`path label` per line) via --config.data.train_list=NNEW_trainval_0.txt --config.data.test_list=NNEW_test_0.txt
(paths relative to DIR). Without a test list, 20% per class is held out.

The EfficientNet-B3 starts from ImageNet weights: convert torchvision's (README, "Pretrained weights") with
`python -m imbalance_jax.convert_weights --model=efficientnet_b3 --input=efficientnet_b3_rwightman-b3899882.pth
--output=efficientnet_b3.npz` and pass --config.model.pretrained_path=efficientnet_b3.npz. Left empty, the
backbone trains from scratch.
"""

from configs import asl_celeba


def get_config():
    config = asl_celeba.get_config()
    config.data.name = "image_folder"
    config.data.dir = ""
    config.data.image_size = 300
    config.data.channels = 3
    config.data.train_list = ""
    config.data.test_list = ""
    config.data.label_column = "label"
    config.model.name = "efficientnet_b3"
    config.model.pretrained_path = ""  # ImageNet EfficientNet-B3 .npz from imbalance_jax.convert_weights
    return config
