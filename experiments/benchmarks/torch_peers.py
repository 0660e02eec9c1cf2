"""PyTorch equivalents of the project's models and auxiliary losses, for the train-step benchmark.

Only the benchmark venv has PyTorch; nothing in ``imbalance_jax`` imports this module.

* ``TorchClassifier``: backbone ("cnn4" or "resnet32", same layers, widths, padding and
  initialisation family as ``imbalance_jax.models``) -> optional dropout -> Dense projection
  head -> linear or affinity classifier, returning ``(logits, features)`` like
  ``imbalance_jax.models.ImageClassifier``.
* ``torch_objective``: CE + the auxiliary losses of a variant, using the loss functions of
  ``losses_vs_torch.py`` (pytorch-metric-learning for the triplet loss).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

import losses_vs_torch as peers


class CNN4(nn.Module):
    """conv5x5 32/64/128 (SAME) -> relu -> maxpool 2 (ceil, = SAME) x3, flatten, FC 128, relu."""

    def __init__(self, in_channels: int, size: int, width: int = 32, fc_width: int = 128):
        super().__init__()
        chans = [in_channels, width, 2 * width, 4 * width]
        self.convs = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], 5, padding=2) for i in range(3))
        for _ in range(3):
            size = -(-size // 2)
        self.fc = nn.Linear(4 * width * size * size, fc_width)
        self.out_features = fc_width

    def forward(self, x):
        for conv in self.convs:
            x = F.max_pool2d(F.relu(conv(x)), 2, ceil_mode=True)
        # NHWC flatten order as in Flax (only matters for weight import, not for speed).
        return F.relu(self.fc(x.permute(0, 2, 3, 1).flatten(1)))


class BasicBlockA(nn.Module):
    """conv3x3 -> BN -> relu -> conv3x3 -> BN, + option-A shortcut (subsample, zero-pad channels)."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=0.1, eps=1e-5)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=0.1, eps=1e-5)
        self.stride, self.extra = stride, planes - in_planes

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        s = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
        if self.extra:
            s = F.pad(s, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return F.relu(y + s)


class CifarResNet(nn.Module):
    """ResNet-6n+2 for CIFAR (n = 5: ResNet-32), 16/32/64 channels, global average pooling."""

    def __init__(self, in_channels: int, blocks_per_stage: int = 5, width: int = 16):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        layers, planes = [], width
        for stage in range(3):
            out = width * 2 ** stage
            for block in range(blocks_per_stage):
                layers.append(BasicBlockA(planes, out, 2 if stage > 0 and block == 0 else 1))
                planes = out
        self.layers = nn.Sequential(*layers)
        self.out_features = planes

    def forward(self, x):
        return self.layers(F.relu(self.bn(self.conv(x)))).mean((2, 3))


class TorchClassifier(nn.Module):
    """Backbone -> dropout -> projection head -> classifier; returns (logits, features)."""

    def __init__(self, backbone: str, image_shape: Sequence[int], num_classes: int,
                 head_widths: Sequence[int] = (), dropout: float = 0.0, classifier: str = "linear",
                 classifier_activation: str = "none", num_centres: int = 5, sigma: float = 10.0):
        super().__init__()
        h, _, c = image_shape
        self.backbone = CNN4(c, h) if backbone == "cnn4" else CifarResNet(c)
        width = self.backbone.out_features
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.ModuleList()
        for w in head_widths:
            self.head.append(nn.Linear(width, w))
            width = w
        self.classifier_activation = classifier_activation
        self.classifier = classifier
        self.sigma = sigma
        if classifier == "affinity":
            self.norm = nn.BatchNorm1d(width)
            self.prototypes = nn.Parameter(torch.randn(num_classes, num_centres, width) * (2 / width) ** 0.5)
        else:
            self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        pooled = self.backbone(x)
        features = {"backbone": pooled, "head_last": pooled}
        h = self.dropout(pooled)
        for i, layer in enumerate(self.head):
            h = layer(h)
            if i < len(self.head) - 1:
                h = F.relu(h)
            features[f"head_{i}"] = features["head_last"] = h
        if self.classifier_activation == "relu":
            h = F.relu(h)
        if self.classifier == "affinity":
            h = self.norm(h)
            features["classifier_input"] = h
            c, m, d = self.prototypes.shape
            flat = self.prototypes.reshape(c * m, d)
            dist = (h.pow(2).sum(1, keepdim=True) + flat.pow(2).sum(1)[None] - 2 * h @ flat.T).clamp(min=0)
            return torch.exp(-dist / self.sigma).reshape(-1, c, m).amax(-1), features
        features["classifier_input"] = h
        return self.fc(h), features


def torch_semantic(emb, labels):
    """Silk Eq. 3, dense B^3 (fine at B = 128): unit vectors, Euclidean distance, margin 1."""
    unit = F.normalize(emb, dim=1)
    dist = torch.cdist(unit, unit)
    same = labels[:, None] == labels[None, :]
    ap = same & ~torch.eye(len(labels), dtype=torch.bool)
    mask = ap[:, :, None] & ~same[:, None, :]
    hinge = F.relu(1.0 + dist[:, :, None] - dist[:, None, :])
    return (hinge * mask).sum() / mask.sum().clamp(min=1)


def torch_objective(variant: str) -> Callable:
    """(logits, features, labels, colour_hist, model) -> total loss of ``variant``."""
    asl = peers.torch_asl("l2")
    triplet = peers.pml_triplet("violating")

    def objective(logits, features, labels, hist, model):
        if variant == "affinity":
            return peers.torch_affinity(features["classifier_input"], labels, model.prototypes)
        ce = F.cross_entropy(logits, labels)
        if variant == "ce":
            return ce
        if variant == "asl":
            return 0.5 * ce + 0.5 * asl(features["head_last"], labels)
        if variant == "triplet":
            return ce + triplet(features["backbone"], labels)
        if variant == "clustering":
            f = features["head_last"]
            return ce + 0.5 * torch_semantic(f, labels) + 0.5 * peers.torch_colour(f, hist)
        raise ValueError(f"variant must be one of ('ce', 'asl', 'triplet', 'clustering', 'affinity'), "
                         f"got {variant!r}.")

    return objective
