"""Pre-activation ResNet (He et al. 2016, "Identity Mappings in Deep Residual Networks"), ImageNet layout.

Each residual unit is BN -> ReLU -> conv (twice, or three times in the bottleneck) with nothing after the addition, so
the shortcut path is a clean identity. A projection shortcut (1x1 conv, no BN) takes the *pre-activated* input, as in
the authors' fb.resnet.torch ``preresnet.lua``. The stem (conv 7x7 -> BN -> ReLU -> max pool) is the plain ResNet's; the
first unit of ``layer1`` therefore skips its own BN -> ReLU (``preactivate=False``, the Lua code's 'no_preact'), and a
final BN -> ReLU precedes the pooling.

The blocks here are reused by ``wide_resnet28_10`` (pre-activation WRN, ``edgeconv.zoo.resnet``).
"""

from __future__ import annotations

import torch
from torch import nn

from edgeconv.zoo.layers import init_resnet_style
from edgeconv.zoo.registry import ModelSpec, Paper, PaperFigures, register_model

HE_2016_IDENTITY = Paper("K. He, X. Zhang, S. Ren, J. Sun", 2016, "Identity Mappings in Deep Residual Networks")


class PreActBasicBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-[dropout]-conv3x3, plus the shortcut; dropout is Wide ResNet's (0 = none)."""

    expansion = 1

    def __init__(
        self, in_channels: int, planes: int, stride: int = 1, *, dropout: float = 0.0, preactivate: bool = True
    ) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_channels) if preactivate else nn.Identity()
        self.relu1 = nn.ReLU(inplace=False) if preactivate else nn.Identity()
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(planes, out_channels, 3, 1, 1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu1(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(self.dropout(self.relu2(self.bn2(out))))
        return out + shortcut


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv1x1-BN-ReLU-conv3x3(stride)-BN-ReLU-conv1x1 (x4 channels), plus the shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, *, preactivate: bool = True) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_channels) if preactivate else nn.Identity()
        self.relu1 = nn.ReLU(inplace=False) if preactivate else nn.Identity()
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu1(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    def __init__(
        self,
        block: type[PreActBasicBlock] | type[PreActBottleneck],
        layers: tuple[int, int, int, int],
        *,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_channels = 64
        stages = []
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            stride = 1 if index == 0 else 2
            units: list[nn.Module] = []
            for unit in range(blocks):
                # The stem already ends in BN -> ReLU: the very first unit must not apply them twice.
                preactivate = not (index == 0 and unit == 0)
                units.append(block(in_channels, planes, stride if unit == 0 else 1, preactivate=preactivate))
                in_channels = planes * block.expansion
            stages.append(nn.Sequential(*units))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn_final = nn.BatchNorm2d(in_channels)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        init_resnet_style(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.relu(self.bn_final(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def preact_resnet18(*, num_classes: int = 1000) -> PreActResNet:
    return PreActResNet(PreActBasicBlock, (2, 2, 2, 2), num_classes=num_classes)


def preact_resnet50(*, num_classes: int = 1000) -> PreActResNet:
    return PreActResNet(PreActBottleneck, (3, 4, 6, 3), num_classes=num_classes)


_CBAM_TABLE = "Woo et al. 2018 (CBAM), Table 4, plain ResNet row (seed 002)"
_NOTE = (
    "the Identity Mappings paper reports no ImageNet counts for this depth; these are the plain ResNet's figures. "
    "Pre-activation moves BN/ReLU but keeps every conv, so only BN scale/shift counts differ (extra final BN)."
)
_NOTE_50 = _NOTE + (
    " Mult-adds: 4.089 G here; the stride 2 sits on the 3x3 conv (as in the authors' fb.resnet.torch), the table's "
    "Caffe ResNet-50 strides the first 1x1 (3.858 G)."
)

# name, builder, paper figures: (params, mult-adds)
_VARIANTS = (
    ("preact_resnet18", preact_resnet18, 11.69e6, 1.814e9, "'ResNet18 11.69M 1.814'", _NOTE),
    ("preact_resnet50", preact_resnet50, 25.56e6, 3.858e9, "'ResNet50 25.56M 3.858'", _NOTE_50),
)

for _name, _builder, _params, _macs, _quote, _note in _VARIANTS:
    register_model(
        ModelSpec(
            name=_name,
            family="preact_resnet",
            paper=HE_2016_IDENTITY,
            builder=_builder,
            figures=PaperFigures(params=_params, macs=_macs, source=f"{_CBAM_TABLE}: {_quote}", note=_note),
            description="Pre-activation residual units (BN-ReLU-conv), identity shortcuts, final BN-ReLU before "
            "pooling; ImageNet stem as in the authors' fb.resnet.torch preresnet.",
        )
    )
