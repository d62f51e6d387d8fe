"""DenseNet (Huang et al. 2017, "Densely Connected Convolutional Networks"): ImageNet DenseNet-BC and CIFAR DenseNet-BC.

Module names follow torchvision's current layout (``features.denseblock1.denselayer1.norm1``, ``features.transition1``,
``features.norm5``, ``classifier``), so ``torchvision.models.densenet121().state_dict()`` loads strictly. Old-style
checkpoints from torchvision's download URLs use ``norm.1`` / ``conv.2``; torchvision renames them in its own loader,
and so must a user who brings such a file (``denselayer1.norm.1.weight`` -> ``denselayer1.norm1.weight``).

Every layer is BN-ReLU-conv1x1 (4k channels) -> BN-ReLU-conv3x3 (k channels), concatenated onto its input; transitions
halve the channels (compression 0.5) and the resolution. The CIFAR networks start with one 3x3 conv of 2k channels and
use three blocks of (L - 4) / 6 layers each.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from edgeconv.zoo.registry import CIFAR_MEAN, CIFAR_STD, ModelSpec, Paper, PaperFigures, register_model

HUANG_2017 = Paper(
    "G. Huang, Z. Liu, L. van der Maaten, K. Q. Weinberger", 2017, "Densely Connected Convolutional Networks"
)


class _DenseLayer(nn.Module):
    def __init__(self, num_input_features: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, 1, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, 1, 1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(features, 1)
        x = self.conv1(self.relu1(self.norm1(x)))
        return self.conv2(self.relu2(self.norm2(x)))


class _DenseBlock(nn.ModuleDict):
    def __init__(self, num_layers: int, num_input_features: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        for i in range(num_layers):
            self.add_module(
                f"denselayer{i + 1}", _DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    def __init__(self, num_input_features: int, num_output_features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(num_input_features, num_output_features, 1, 1, bias=False)
        self.pool = nn.AvgPool2d(2, 2)


class DenseNet(nn.Module):
    """``cifar_stem``: one 3x3 conv (no BN, no pool) as the paper's CIFAR networks, instead of conv7x7 / max pool."""

    def __init__(
        self,
        *,
        growth_rate: int = 32,
        block_config: tuple[int, ...] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        num_classes: int = 1000,
        cifar_stem: bool = False,
    ) -> None:
        super().__init__()
        if cifar_stem:
            stem: list[tuple[str, nn.Module]] = [("conv0", nn.Conv2d(3, num_init_features, 3, 1, 1, bias=False))]
        else:
            stem = [
                ("conv0", nn.Conv2d(3, num_init_features, 7, 2, 3, bias=False)),
                ("norm0", nn.BatchNorm2d(num_init_features)),
                ("relu0", nn.ReLU(inplace=True)),
                ("pool0", nn.MaxPool2d(3, 2, 1)),
            ]
        self.features = nn.Sequential(OrderedDict(stem))
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}", _DenseBlock(num_layers, num_features, growth_rate, bn_size))
            num_features += num_layers * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", _Transition(num_features, num_features // 2))
                num_features //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(num_features))
        self.classifier = nn.Linear(num_features, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.features(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# ImageNet variants (paper Table 1, k = 32, 64 stem channels): dense layers per block.
IMAGENET_BLOCKS: dict[str, tuple[int, int, int, int]] = {
    "densenet121": (6, 12, 24, 16),
    "densenet169": (6, 12, 32, 32),
    "densenet201": (6, 12, 48, 32),
    "densenet264": (6, 12, 64, 48),
}

# CIFAR DenseNet-BC (paper Table 2): name -> (depth L, growth rate k); (L - 4) / 6 bottleneck layers per block.
CIFAR_BC: dict[str, tuple[int, int]] = {
    "densenet_bc_100_12": (100, 12),
    "densenet_bc_250_24": (250, 24),
    "densenet_bc_190_40": (190, 40),
}


def _imagenet(name: str, num_classes: int) -> DenseNet:
    return DenseNet(block_config=IMAGENET_BLOCKS[name], num_classes=num_classes)


def _cifar_bc(name: str, num_classes: int) -> DenseNet:
    depth, growth_rate = CIFAR_BC[name]
    layers = (depth - 4) // 6  # each bottleneck layer is two convs: (L - 4) / 2 convs over three blocks
    return DenseNet(
        growth_rate=growth_rate,
        block_config=(layers, layers, layers),
        num_init_features=2 * growth_rate,
        num_classes=num_classes,
        cifar_stem=True,
    )


def densenet121(*, num_classes: int = 1000) -> DenseNet:
    return _imagenet("densenet121", num_classes)


def densenet169(*, num_classes: int = 1000) -> DenseNet:
    return _imagenet("densenet169", num_classes)


def densenet201(*, num_classes: int = 1000) -> DenseNet:
    return _imagenet("densenet201", num_classes)


def densenet264(*, num_classes: int = 1000) -> DenseNet:
    return _imagenet("densenet264", num_classes)


def densenet_bc_100_12(*, num_classes: int = 10) -> DenseNet:
    return _cifar_bc("densenet_bc_100_12", num_classes)


def densenet_bc_250_24(*, num_classes: int = 10) -> DenseNet:
    return _cifar_bc("densenet_bc_250_24", num_classes)


def densenet_bc_190_40(*, num_classes: int = 10) -> DenseNet:
    return _cifar_bc("densenet_bc_190_40", num_classes)


_EFFNET_TABLE = "Tan & Le 2019 (EfficientNet), Table 2 (seeds 002, 004)"
_CIFAR_TABLE = "Huang et al. 2017, Table 2 (seed 004)"

_IMAGENET_ENTRIES = (
    (
        "densenet121",
        densenet121,
        PaperFigures(None, None, "Huang et al. 2017 report no count for DenseNet-121 (only Figure 3's plot)"),
        True,
    ),
    (
        "densenet169",
        densenet169,
        PaperFigures(
            14e6,
            3.5e9,
            f"{_EFFNET_TABLE}: 'DenseNet-169 14M 3.5B'",
            note="14,149,480 params (+1.1%), exactly torchvision's. Mult-adds 3.360 G here (conv + FC, -4.0%); the "
            "EfficientNet table does not say what its FLOPs include, and DenseNet-264 shows the same -4.1%.",
        ),
        True,
    ),
    (
        "densenet201",
        densenet201,
        PaperFigures(20e6, None, "Huang et al. 2017, Sec. 4.4: 'DenseNet-201 with 20M parameters'"),
        True,
    ),
    (
        "densenet264",
        densenet264,
        PaperFigures(
            34e6,
            6.0e9,
            f"{_EFFNET_TABLE}: 'DenseNet-264 34M 6.0B'; block sizes from Huang et al. 2017, Table 1 (seed 004)",
            note="33,337,704 params here (-1.9%); the EfficientNet table rounds to two significant figures. "
            "Mult-adds 5.752 G here (conv + FC, -4.1%), the same gap as DenseNet-169's.",
        ),
        False,
    ),
)

for _name, _builder, _figures, _in_torchvision in _IMAGENET_ENTRIES:
    register_model(
        ModelSpec(
            name=_name,
            family="densenet",
            paper=HUANG_2017,
            builder=_builder,
            figures=_figures,
            torchvision_name=_name if _in_torchvision else None,
            description=f"ImageNet DenseNet-BC, k = 32, dense blocks {IMAGENET_BLOCKS[_name]}.",
        )
    )

_CIFAR_ENTRIES = (
    (
        "densenet_bc_100_12",
        densenet_bc_100_12,
        0.8e6,
        "'DenseNet-BC (k = 12) 100 0.8M'",
        "769,162 here (-3.9%): the table gives one decimal of a million, and 0.769M rounds to 0.8M. "
        "Of ours, 23,988 are BN scale/shift.",
    ),
    ("densenet_bc_250_24", densenet_bc_250_24, 15.3e6, "'DenseNet-BC (k = 24) 250 15.3M'", ""),
    (
        "densenet_bc_190_40",
        densenet_bc_190_40,
        25.6e6,
        "'DenseNet-BC (k = 40) 190 25.6M'; Zoph et al. 2018 (NASNet) CIFAR table, seed 002",
        "",
    ),
)

for _name, _builder, _params, _quote, _note in _CIFAR_ENTRIES:
    _depth, _growth = CIFAR_BC[_name]
    register_model(
        ModelSpec(
            name=_name,
            family="densenet",
            paper=HUANG_2017,
            builder=_builder,
            input_size=(3, 32, 32),
            num_classes=10,
            mean=CIFAR_MEAN,
            std=CIFAR_STD,
            crop_pct=1.0,  # trained and evaluated on whole images: no centre crop
            dataset="cifar10",
            figures=PaperFigures(_params, None, f"{_CIFAR_TABLE}: {_quote}", _note),
            description=f"CIFAR DenseNet-BC, L = {_depth}, k = {_growth}: 3x3 stem of {2 * _growth} channels, three "
            f"blocks of {(_depth - 4) // 6} bottleneck layers, compression 0.5.",
        )
    )
