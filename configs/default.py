"""Default experiment: scikit-learn's bundled digits made long-tailed (ratio 10), small CNN + linear projection
head narrowing to 2-D, CE + ASLoss (L2) on the 2-D layer (ASLoss paper weights λ_cls = λ_asl = 0.5).

Runs offline on 2 CPU cores in well under 3 minutes:
    python -m imbalance_jax.main --config=configs/default.py --workdir=runs/default
"""

import ml_collections

from imbalance_jax.objectives import aux_loss_config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.num_epochs = 60
    config.batch_size = 32  # global batch, split over the devices of the ('data',) mesh
    config.eval_batch_size = 128
    config.num_devices = 0  # 0 = every local device
    config.device_prefetch = 2  # global batches copied onto the devices ahead of the step (0: on demand)
    config.multi_host = False  # True: jax.distributed.initialize() at start-up
    config.disable_progress_bar = False
    # A rerun in a workdir whose checkpoints were trained with another config stops, naming the differing fields;
    # True continues that run under this config instead and records the change in config.json and report.md.
    config.allow_config_change = False
    # A step whose loss or gradient is not finite: "stop" ends the run with one message (step, epoch, the loss
    # terms, the last good checkpoint); "skip_step" leaves that step's update out, counts it and goes on.
    config.nan_policy = "stop"  # stop | skip_step
    config.nan_max_consecutive_skips = 10  # skip_step: stop after this many non-finite steps in a row

    config.data = ml_collections.ConfigDict()
    config.data.name = "digits"
    config.data.dir = ""  # dataset files (fashion_mnist IDX, image_folder root); when set, it must hold the data
    config.data.tfds_data_dir = ""  # tfds data_dir ("" = tfds' default: $TFDS_DATA_DIR, else ~/tensorflow_datasets)
    config.data.download = True  # tfds: fetch + prepare a dataset missing from tfds_data_dir (internet); False: error
    config.data.empty_class_folders = "error"  # image_folder, a class without images: "error" | "drop" (warns)
    config.data.unreadable_images = "error"  # image_folder, an undecodable file: "error" | "skip" (listed in report.md)
    # "files" keeps a file index and decodes each image in tf.data (nothing held in RAM; image_folder, and the tfds
    # datasets, each split exported once to its encoded image files under files_dir), "memory" decodes every image
    # at load time; "auto" = files for image_folder; for a tfds dataset memory when its decoded images (all splits,
    # at image_size) fit in sources.MEMORY_LIMIT_BYTES (1 GiB), else files; memory for digits and IDX fashion_mnist.
    # fashion_mnist with "files" reads tfds (data.dir empty). Files are centre-cropped squares: image_size=0 (native)
    # needs square images (celeb_a is 218x178: set image_size).
    config.data.storage = "auto"
    # tfds with file-backed storage: the directory of the exported splits ("" = <tfds builder.data_dir>/
    # imbalance_jax_files, next to the prepared dataset version); an export is reused while its index.tsv exists
    config.data.files_dir = ""
    # Input mean / std: "dataset" (training-split statistics), "imagenet" (torchvision's, for ImageNet weights),
    # "auto" = the statistics recorded in model.pretrained_path (convert_weights records ImageNet's), else "dataset"
    config.data.normalization = "auto"
    config.data.image_size = 0  # 0 = native size (image_folder: 64)
    config.data.channels = 3  # image_folder: 1 (grayscale) or 3
    config.data.train_list = ""  # image_folder: CSV/TXT list of training images, relative to data.dir ("" = folders)
    config.data.test_list = ""  # image_folder: the same for the test images ("" = a balanced test split is carved)
    config.data.label_column = "label"  # image_folder CSV: the label column
    config.data.variable = ""  # image_folder CSV (SILKNOW): the column of the task; overrides label_column
    config.data.celeba_counts = ()  # celeb_a 4-class task: images per class (() = ACNE04's 633:519:182:123)
    config.data.classes = ()  # keep only these source class ids, relabelled 0..K-1 in this order (() = all)
    config.data.test_fraction = 0.2  # balanced test split per class, used when the source has no test split
    config.data.val_per_class = 10  # balanced validation hold-out, taken before the imbalance
    config.data.val_fraction = 0.0
    config.data.imbalance = ml_collections.ConfigDict()
    config.data.imbalance.profile = "exponential"  # none | exponential | step | counts
    config.data.imbalance.ratio = 10.0  # n_max / n_min for the exponential profile
    config.data.imbalance.minority_classes = ()  # step profile
    config.data.imbalance.fraction = 1.0  # step profile: fraction of n_max kept for the minority classes
    config.data.imbalance.counts = ()  # counts profile: explicit per-class counts
    config.data.label_noise = 0.0  # symmetric noise rate on the training labels
    config.data.sampler = "class_balanced"  # random | class_balanced | square_root | progressive | pk
    config.data.pk_images_per_class = 4  # pk sampler: K images of each of batch_size / K classes per batch
    config.data.augment = ml_collections.ConfigDict()
    config.data.augment.crop_padding = 0
    config.data.augment.flip = False
    config.data.augment.random_resized_crop = False  # Inception-style random-resized crop (before padding / flip)
    config.data.augment.crop_scale = (0.08, 1.0)  # random_resized_crop: area fraction range
    config.data.augment.crop_ratio = (3 / 4, 4 / 3)  # random_resized_crop: aspect ratio range

    config.model = ml_collections.ConfigDict()
    config.model.name = "small_cnn"
    config.model.head_widths = (32, 2)
    config.model.head_activation = "none"  # ASLoss paper: linear mapping layers, no activation between them
    config.model.dropout = 0.0
    config.model.classifier = "linear"  # linear | cosine | affinity | tde
    config.model.classifier_activation = "none"  # activation between head_last and the classifier
    config.model.dtype = "float32"  # compute dtype of the backbone: float32 | bfloat16
    config.model.cosine_scale = 16.0  # classifier="cosine"
    config.model.classifier_bias_init = "zeros"  # linear classifier: zeros | prior (CDB-CE reference code)
    config.model.affinity = ml_collections.ConfigDict(  # classifier="affinity" (Hayat et al.)
        {"num_centres": 1, "sigma": 10.0, "distance": "sq_l2", "similarity": "gaussian",
         "batch_norm": False,  # a BatchNorm in front of the head (not in the paper; off)
         "prototype_init": "class_means"})  # class_means (feature scale, from data) | he_normal
    config.model.tde = ml_collections.ConfigDict(  # classifier="tde" (Tang et al. 2020)
        {"num_heads": 2, "tau": 16.0, "gamma": 1 / 32, "alpha": 1.5, "momentum": 0.9})
    config.model.fc_layers = False  # vgg16 only: torchvision's 4096-wide FC layers instead of global average pooling
    # Local .npz or orbax checkpoint; nothing is ever downloaded (ImageNet weights: imbalance_jax.convert_weights).
    config.model.pretrained_path = ""
    config.model.pretrained_prefix = "backbone"
    config.model.pretrained_strict = True

    config.loss = ml_collections.ConfigDict()
    config.loss.name = "ce"
    config.loss.weight = 0.5  # λ_cls
    config.loss.focal_gamma = 2.0
    config.loss.ldam_max_margin = 0.5
    config.loss.ldam_scale = 30.0
    config.loss.ldam_normed_classifier = True  # LDAM: cosine logits (NormedLinear of the LDAM-DRW code), scaled by s
    config.loss.logit_adjustment_tau = 1.0
    config.loss.class_weighting = ml_collections.ConfigDict()
    config.loss.class_weighting.name = "none"  # none | inverse_frequency | class_balanced | cdb | drw
    config.loss.class_weighting.beta = 0.9999
    config.loss.class_weighting.tau = "dynamic"
    config.loss.class_weighting.start_epoch = 0
    # mean: mean_i w_y·ℓ_i (CDB-CE's reference code); weighted_mean: Σ w_y·ℓ_i / Σ w_y (PyTorch's weight=, LDAM-DRW's)
    config.loss.class_weighting.reduction = "mean"
    config.loss.aux = ml_collections.ConfigDict()
    config.loss.aux.asl = aux_loss_config("asl", weight=0.5, layers=("head_last",), metric="l2")

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 3e-3
    config.optimizer.weight_decay = 0.0
    config.optimizer.weight_decay_exclude = ()  # glob patterns of parameter paths, e.g. ("classifier/bias",)
    config.optimizer.momentum = 0.9
    config.optimizer.nesterov = False
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_epochs = 0.0
    config.optimizer.boundaries = ()
    config.optimizer.decay_factors = ()
    config.optimizer.final_lr_fraction = 0.0  # cosine: the last step's learning rate as a fraction of the first
    config.optimizer.grad_clip_norm = 0.0

    config.checkpoint = ml_collections.ConfigDict()
    config.checkpoint.max_to_keep = 2
    config.checkpoint.best_metric = "val_loss"  # val_loss | val_accuracy | val_balanced_accuracy
    config.checkpoint.evaluate_best = False  # final evaluation on the best checkpoint (always with early stopping)

    config.early_stopping = ml_collections.ConfigDict()
    config.early_stopping.enabled = False
    config.early_stopping.patience = 10

    config.evaluation = ml_collections.ConfigDict()
    config.evaluation.embedding_layer = "head_last"
    config.evaluation.many_shot_threshold = 100
    config.evaluation.few_shot_threshold = 20
    return config
