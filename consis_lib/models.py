"""Model factory: AlexNet, VGG-16 and ResNet-18 at paper scale and at small scale.

Every model takes images in [0, 1] of shape ``[B, 3, H, W]``; the ImageNet mean/std
normalisation is its first module (``model.normalize``), so attacks work in pixel
space (DESIGN section 2: "normalisation lives inside the model").

Scales
------
``paper``
    Exactly torchvision's ``alexnet`` / ``vgg16`` / ``resnet18`` (same modules, same
    parameter count, same ``state_dict`` keys), optionally with ImageNet weights
    from torchvision's weights API or a local folder of state_dicts
    (:func:`consis_lib.weights.weights_file`). Weights load strictly: only a classifier head of
    another class count is replaced, with a warning (:func:`consis_lib.weights.load_pretrained`).
    The normalisation buffers are non-persistent, so the state dict is
    torchvision's own.
``small``
    Width-scaled variants for 32 or 64 px inputs that train on a CPU in minutes.
    Channel widths are torchvision's divided by ``width_divisor``. AlexNet and
    VGG-16 get BatchNorm after every convolution (plain ones stayed at chance in a
    prototype); the stems are 3x3/stride 1 at 32 px (stride 2 at 64 px) so that the
    metric layer keeps a spatial map (4x4 for VGG/ResNet, 8x8 for AlexNet at 32 px).

The metric layer (:func:`metric_layer`) is the last convolutional layer's output
after its ReLU: AlexNet ``features.11``, VGG-16 ``features.29``, ResNet-18
``layer4`` at paper scale; ``features.16``, ``features.41`` and ``layer4`` at small
scale.

Example
-------
>>> model = build_model("resnet18", num_classes=10)
>>> model(torch.rand(2, 3, 32, 32)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from consis_lib.config import ModelConfig
from consis_lib.errors import ConsisError
from consis_lib.weights import load_pretrained


ARCHS = ("alexnet", "vgg16", "resnet18")
SCALES = ("small", "paper")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_METRIC_LAYERS = {
    ("alexnet", "paper"): "features.11",
    ("vgg16", "paper"): "features.29",
    ("resnet18", "paper"): "layer4",
    ("alexnet", "small"): "features.16",
    ("vgg16", "small"): "features.41",
    ("resnet18", "small"): "layer4",
}


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; maps [0,1] images to the network's input.

    The buffers are not persistent, so they never enter a ``state_dict``.
    """

    def __init__(
        self, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _put_normalize_first(model: nn.Module) -> None:
    """Register ``model.normalize`` as the first child (so it leads ``named_modules``)."""
    children = OrderedDict([("normalize", Normalize())])
    children.update((k, v) for k, v in model._modules.items() if k != "normalize")
    model._modules = children


class AlexNet(torchvision.models.AlexNet):
    """torchvision's AlexNet with :class:`Normalize` applied first. Input ``[B,3,H,W]`` in [0,1]."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__(num_classes=num_classes, dropout=dropout)
        _put_normalize_first(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.normalize(x))


class VGG16(torchvision.models.VGG):
    """torchvision's VGG-16 (configuration "D", no BatchNorm) with :class:`Normalize` first."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        cfg: list[Any] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M"]
        cfg += [512, 512, 512, "M", 512, 512, 512, "M"]
        features = torchvision.models.vgg.make_layers(cfg, batch_norm=False)
        super().__init__(features, num_classes=num_classes, dropout=dropout)
        _put_normalize_first(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.normalize(x))


class ResNet18(torchvision.models.ResNet):
    """torchvision's ResNet-18 with :class:`Normalize` first."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__(torchvision.models.resnet.BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
        _put_normalize_first(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.normalize(x))


class SmallAlexNet(nn.Module):
    """Width-scaled AlexNet with BatchNorm for 32/64 px images.

    Five 3x3 convolutions (64, 192, 384, 256, 256 channels / ``width_divisor``), each
    followed by BatchNorm and ReLU, max-pooling after the first two; the metric layer
    ``features.16`` is the last ReLU (``[B, 256/d, 8, 8]`` at 32 px).
    """

    def __init__(self, num_classes: int, width_divisor: int = 4, image_size: int = 32) -> None:
        super().__init__()
        w = [max(4, c // width_divisor) for c in (64, 192, 384, 256, 256)]
        stride = 2 if image_size >= 64 else 1
        layers: list[nn.Module] = []
        cin = 3
        for i, c in enumerate(w):
            layers += [
                nn.Conv2d(cin, c, 3, stride=stride if i == 0 else 1, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
            ]
            if i < 2:
                layers.append(nn.MaxPool2d(2))
            cin = c
        self.normalize = Normalize()
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        hidden = max(16, 1024 // width_divisor)
        self.classifier = nn.Sequential(
            nn.Dropout(0.25), nn.Linear(cin, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.normalize(x))
        return self.classifier(torch.flatten(self.avgpool(x), 1))


class SmallVGG16(nn.Module):
    """Width-scaled VGG-16 with BatchNorm for 32/64 px images.

    Thirteen 3x3 convolutions in torchvision's channel plan / ``width_divisor``, with
    max-pooling after blocks 1-3 only (the last two blocks run at 4x4 for 32 px); the
    metric layer ``features.41`` is the ReLU after the thirteenth convolution.
    """

    def __init__(self, num_classes: int, width_divisor: int = 4, image_size: int = 32) -> None:
        super().__init__()
        plan: list[Any] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M"]
        plan += [512, 512, 512, 512, 512, 512]
        stride = 2 if image_size >= 64 else 1
        layers: list[nn.Module] = []
        cin, first = 3, True
        for v in plan:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            c = max(4, int(v) // width_divisor)
            layers += [
                nn.Conv2d(cin, c, 3, stride=stride if first else 1, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
            ]
            cin, first = c, False
        self.normalize = Normalize()
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.25), nn.Linear(cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.normalize(x))
        return self.classifier(torch.flatten(self.avgpool(x), 1))


class _Block(nn.Module):
    """ResNet basic block (two 3x3 conv-BN, identity or 1x1 projection shortcut)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class SmallResNet18(nn.Module):
    """Width-scaled ResNet-18 (CIFAR-style 3x3 stem, no stem max-pool) for 32/64 px.

    Stages of 2 basic blocks with 64, 128, 256, 512 channels / ``width_divisor``; the
    metric layer ``layer4`` outputs ``[B, 512/d, 4, 4]`` at 32 px (after the block's ReLU).
    """

    def __init__(self, num_classes: int, width_divisor: int = 4, image_size: int = 32) -> None:
        super().__init__()
        w = [max(4, c // width_divisor) for c in (64, 128, 256, 512)]
        self.normalize = Normalize()
        self.conv1 = nn.Conv2d(3, w[0], 3, 2 if image_size >= 64 else 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w[0])
        self.relu = nn.ReLU(inplace=True)
        stages = []
        cin = w[0]
        for i, c in enumerate(w):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(_Block(cin, c, stride), _Block(c, c, 1)))
            cin = c
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(self.normalize(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


_PAPER = {"alexnet": AlexNet, "vgg16": VGG16, "resnet18": ResNet18}
_SMALL = {"alexnet": SmallAlexNet, "vgg16": SmallVGG16, "resnet18": SmallResNet18}


def _check(arch: str, scale: str) -> None:
    if arch not in ARCHS:
        raise ConsisError(f"unknown arch {arch!r}: choose one of {', '.join(ARCHS)}")
    if scale not in SCALES:
        raise ConsisError(f"unknown model scale {scale!r}: choose one of {', '.join(SCALES)}")


def metric_layer(arch: str, scale: str = "small") -> str:
    """Dotted name of the metric layer: the last conv layer's output after ReLU.

    Parameters
    ----------
    arch : ``"alexnet"``, ``"vgg16"`` or ``"resnet18"``.
    scale : ``"paper"`` (torchvision) or ``"small"``.

    Returns
    -------
    str, e.g. ``"features.29"`` for VGG-16 at paper scale; its output is ``[B, K, h, w]``.

    Example
    -------
    >>> metric_layer("alexnet", "paper")
    'features.11'
    """
    _check(arch, scale)
    return _METRIC_LAYERS[(arch, scale)]


def build_model(
    arch: str,
    num_classes: int,
    scale: str = "small",
    width_divisor: int = 4,
    image_size: int = 32,
    pretrained: bool = False,
    weights: str | Path | None = None,
) -> nn.Module:
    """Build a classifier that takes [0,1] images ``[B, 3, H, W]`` and returns logits ``[B, C]``.

    Parameters
    ----------
    arch : ``"alexnet"``, ``"vgg16"`` or ``"resnet18"``.
    num_classes : number of output classes C.
    scale : ``"paper"`` for torchvision's exact architecture, ``"small"`` for the
        width-scaled BatchNorm variant (see the module docstring).
    width_divisor : small scale only: channel widths are torchvision's / this.
    image_size : small scale only: 32 (stride-1 stem) or 64 (stride-2 stem).
    pretrained : paper scale only: load ImageNet weights strictly
        (:func:`consis_lib.weights.load_pretrained`; a head of another class count is replaced, with a warning).
    weights : a folder of state_dicts (:func:`consis_lib.weights.weights_file`) instead of torchvision's
        weights API.

    Example
    -------
    >>> m = build_model("vgg16", 1000, scale="paper")
    >>> sum(p.numel() for p in m.parameters())
    138357544
    """
    _check(arch, scale)
    if num_classes < 2:
        raise ConsisError(f"num_classes must be >= 2, got {num_classes}: check the data folder")
    if scale == "paper":
        model = _PAPER[arch](num_classes=num_classes)
        if pretrained:
            load_pretrained(model, arch, weights)
        return model
    if pretrained or weights:
        raise ConsisError("pretrained weights exist only for scale='paper': use pretrained=False")
    if width_divisor < 1:
        raise ConsisError(f"width_divisor must be >= 1, got {width_divisor}")
    if image_size < 16:
        raise ConsisError(f"image_size {image_size} is too small for the small models: use 32 or 64")
    return _SMALL[arch](num_classes=num_classes, width_divisor=width_divisor, image_size=image_size)


def model_from_config(mcfg: ModelConfig, num_classes: int, image_size: int) -> nn.Module:
    """:func:`build_model` from a :class:`~consis_lib.config.ModelConfig`.

    Example
    -------
    >>> model_from_config(ModelConfig(arch="alexnet"), num_classes=8, image_size=32)
    SmallAlexNet(...)
    """
    return build_model(
        mcfg.arch,
        num_classes,
        scale=mcfg.scale,
        width_divisor=mcfg.width_divisor,
        image_size=image_size,
        pretrained=mcfg.pretrained,
        weights=mcfg.weights or None,
    )
