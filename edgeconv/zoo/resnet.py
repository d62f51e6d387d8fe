"""ResNet (He et al. 2016), ResNeXt (Xie et al. 2017), Wide ResNet (Zagoruyko & Komodakis 2016).

The ImageNet models keep torchvision's module names (``conv1``, ``layer1.0.conv1``, ``layer2.0.downsample.0``, ``fc``)
so that torchvision checkpoints load strictly. One ``ResNet`` class covers every variant: block type, blocks per stage,
groups (ResNeXt's cardinality) and width per group (Wide ResNet-50-2 doubles it). ``attention_layer`` is the hook SE-Net
and CBAM (``edgeconv.zoo.senet``) plug into: a module built per block for its output channels and applied to the
residual branch right before the addition; without it the model is exactly torchvision's.

``wide_resnet28_10`` is the paper's own CIFAR network, a pre-activation ResNet (blocks from ``preact_resnet``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from edgeconv.errors import InvalidArgumentError
from edgeconv.zoo.layers import init_resnet_style
from edgeconv.zoo.preact_resnet import PreActBasicBlock
from edgeconv.zoo.registry import CIFAR_MEAN, CIFAR_STD, ModelSpec, Paper, PaperFigures, register_model

HE_2016 = Paper("K. He, X. Zhang, S. Ren, J. Sun", 2016, "Deep Residual Learning for Image Recognition")
XIE_2017 = Paper(
    "S. Xie, R. Girshick, P. Dollar, Z. Tu, K. He", 2017, "Aggregated Residual Transformations for Deep Neural Networks"
)
ZAGORUYKO_2016 = Paper("S. Zagoruyko, N. Komodakis", 2016, "Wide Residual Networks")

AttentionLayer = Callable[[int], nn.Module]


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride, 1, groups=groups, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        attention_layer: AttentionLayer | None = None,
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise InvalidArgumentError(
                f"BasicBlock supports groups=1 and width_per_group=64 only (got {groups}, {base_width}); "
                "use the bottleneck block for ResNeXt / Wide ResNet"
            )
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        # None adds no state_dict keys: without attention the model is torchvision's exactly.
        self.attention = attention_layer(planes) if attention_layer is not None else None
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.attention is not None:
            out = self.attention(out)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride, groups) -> 1x1 expand; stride on the 3x3 as torchvision ("ResNet v1.5")."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        attention_layer: AttentionLayer | None = None,
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = _conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.attention = attention_layer(planes * self.expansion) if attention_layer is not None else None
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.attention is not None:
            out = self.attention(out)
        return self.relu(out + identity)


@dataclass(frozen=True)
class ResNetConfig:
    block: type[BasicBlock] | type[Bottleneck]
    layers: tuple[int, int, int, int]  # blocks per stage (conv2_x ... conv5_x)
    groups: int = 1  # ResNeXt cardinality
    width_per_group: int = 64  # bottleneck width per group at planes=64 (ResNeXt "4d", Wide ResNet 128)


RESNET_CONFIGS: dict[str, ResNetConfig] = {
    "resnet18": ResNetConfig(BasicBlock, (2, 2, 2, 2)),
    "resnet34": ResNetConfig(BasicBlock, (3, 4, 6, 3)),
    "resnet50": ResNetConfig(Bottleneck, (3, 4, 6, 3)),
    "resnet101": ResNetConfig(Bottleneck, (3, 4, 23, 3)),
    "resnet152": ResNetConfig(Bottleneck, (3, 8, 36, 3)),
    "wide_resnet50_2": ResNetConfig(Bottleneck, (3, 4, 6, 3), width_per_group=128),
    "resnext50_32x4d": ResNetConfig(Bottleneck, (3, 4, 6, 3), groups=32, width_per_group=4),
    "resnext101_32x8d": ResNetConfig(Bottleneck, (3, 4, 23, 3), groups=32, width_per_group=8),
}


class ResNet(nn.Module):
    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        *,
        num_classes: int = 1000,
        groups: int = 1,
        width_per_group: int = 64,
        attention_layer: AttentionLayer | None = None,
    ) -> None:
        super().__init__()
        if groups < 1 or width_per_group < 1:
            raise InvalidArgumentError(f"groups and width_per_group must be >= 1, got {groups} and {width_per_group}")
        self.inplanes = 64
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(3, self.inplanes, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0], 1, attention_layer)
        self.layer2 = self._make_layer(block, 128, layers[1], 2, attention_layer)
        self.layer3 = self._make_layer(block, 256, layers[2], 2, attention_layer)
        self.layer4 = self._make_layer(block, 512, layers[3], 2, attention_layer)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        init_resnet_style(self)

    @classmethod
    def from_config(
        cls, config: ResNetConfig, *, num_classes: int = 1000, attention_layer: AttentionLayer | None = None
    ) -> ResNet:
        return cls(
            config.block,
            config.layers,
            num_classes=num_classes,
            groups=config.groups,
            width_per_group=config.width_per_group,
            attention_layer=attention_layer,
        )

    def _make_layer(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        planes: int,
        blocks: int,
        stride: int,
        attention_layer: AttentionLayer | None,
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion)
            )
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width, attention_layer)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, 1, None, self.groups, self.base_width, attention_layer))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(*, num_classes: int = 1000) -> ResNet:
    return ResNet.from_config(RESNET_CONFIGS["resnet18"], num_classes=num_classes)


def resnet34(*, num_classes: int = 1000) -> ResNet:
    return ResNet.from_config(RESNET_CONFIGS["resnet34"], num_classes=num_classes)


def resnet50(*, num_classes: int = 1000) -> ResNet:
    return ResNet.from_config(RESNET_CONFIGS["resnet50"], num_classes=num_classes)


def resnet101(*, num_classes: int = 1000) -> ResNet:
    return ResNet.from_config(RESNET_CONFIGS["resnet101"], num_classes=num_classes)


def resnet152(*, num_classes: int = 1000) -> ResNet:
    return ResNet.from_config(RESNET_CONFIGS["resnet152"], num_classes=num_classes)


def wide_resnet50_2(*, num_classes: int = 1000) -> ResNet:
    return ResNet.from_config(RESNET_CONFIGS["wide_resnet50_2"], num_classes=num_classes)


def resnext50_32x4d(*, num_classes: int = 1000, groups: int = 32, width_per_group: int = 4) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes=num_classes, groups=groups, width_per_group=width_per_group)


def resnext101_32x8d(*, num_classes: int = 1000, groups: int = 32, width_per_group: int = 8) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 23, 3), num_classes=num_classes, groups=groups, width_per_group=width_per_group)


# ---------------------------------------------------------------------------------------------------------------------
# Wide ResNet for CIFAR (WRN-d-k): pre-activation basic blocks, widths 16k / 32k / 64k, (d - 4) / 6 blocks per group
# ---------------------------------------------------------------------------------------------------------------------


class WideResNet(nn.Module):
    def __init__(self, *, depth: int = 28, widen_factor: int = 10, dropout: float = 0.0, num_classes: int = 10) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise InvalidArgumentError(
                f"Wide ResNet depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 40 ...); got {depth}"
            )
        if widen_factor < 1:
            raise InvalidArgumentError(f"widen_factor must be >= 1, got {widen_factor}")
        if not 0.0 <= dropout < 1.0:
            raise InvalidArgumentError(f"dropout must be in [0, 1), got {dropout}")
        blocks_per_group = (depth - 4) // 6
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        in_channels = 16
        groups = []
        for index, width in enumerate(widths):
            units = []
            for unit in range(blocks_per_group):
                stride = 2 if index > 0 and unit == 0 else 1
                units.append(PreActBasicBlock(in_channels, width, stride, dropout=dropout))
                in_channels = width
            groups.append(nn.Sequential(*units))
        self.block1, self.block2, self.block3 = groups
        self.bn = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        init_resnet_style(self, zero_linear_bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        x = self.relu(self.bn(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def wide_resnet28_10(
    *, num_classes: int = 10, depth: int = 28, widen_factor: int = 10, dropout: float = 0.0
) -> WideResNet:
    """WRN-28-10; ``dropout=0.3`` is the paper's best CIFAR setting (no effect in eval mode)."""
    return WideResNet(depth=depth, widen_factor=widen_factor, dropout=dropout, num_classes=num_classes)


# ---------------------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------------------

_CBAM_TABLE = "Woo et al. 2018 (CBAM), Table 4 (seed 002)"
_EFFNET_TABLE = "Tan & Le 2019 (EfficientNet), Table 2 (seeds 002, 004)"
_SE_TABLE = "Hu et al. 2018 (SENet), Table 2 re-implementation GFLOPs (seed 002)"


def stride_note(ours: float, original: float) -> str:
    """Why a bottleneck ResNet's mult-adds exceed the tables' (the parameters are the same)."""
    return (
        f"Mult-adds: {ours / 1e9:.3f} G here (conv + FC). Like torchvision, edgeconv puts the stride 2 of each stage's "
        "first bottleneck on its 3x3 conv ('ResNet v1.5', what torchvision checkpoints need); the papers' Caffe models "
        f"stride the first 1x1 instead, and so modified this network counts {original / 1e9:.3f} G, matching the table."
    )


@dataclass(frozen=True)
class _Entry:
    name: str
    builder: Callable[..., nn.Module]
    paper: Paper
    figures: PaperFigures
    description: str


_IMAGENET_ENTRIES = (
    _Entry(
        "resnet18",
        resnet18,
        HE_2016,
        PaperFigures(11.69e6, 1.814e9, f"{_CBAM_TABLE}: 'ResNet18 11.69M 1.814'"),
        "18 layers, basic blocks (2, 2, 2, 2).",
    ),
    _Entry(
        "resnet34",
        resnet34,
        HE_2016,
        PaperFigures(21.80e6, 3.664e9, f"{_CBAM_TABLE}: 'ResNet34 21.80M 3.664'"),
        "34 layers, basic blocks (3, 4, 6, 3).",
    ),
    _Entry(
        "resnet50",
        resnet50,
        HE_2016,
        PaperFigures(
            25.56e6,
            3.858e9,
            f"{_CBAM_TABLE}: 'ResNet50 25.56M 3.858'; {_EFFNET_TABLE} rounds to 26M / 4.1B",
            stride_note(4.089184256e9, 3.857973248e9),
        ),
        "50 layers, bottleneck blocks (3, 4, 6, 3), stride on the 3x3 (torchvision's v1.5).",
    ),
    _Entry(
        "resnet101",
        resnet101,
        HE_2016,
        PaperFigures(
            44.55e6, 7.570e9, f"{_CBAM_TABLE}: 'ResNet101 44.55M 7.570'", stride_note(7.801405440e9, 7.570194432e9)
        ),
        "101 layers, bottleneck blocks (3, 4, 23, 3).",
    ),
    _Entry(
        "resnet152",
        resnet152,
        HE_2016,
        PaperFigures(
            60e6,
            11.30e9,
            f"{_EFFNET_TABLE}: 'ResNet-152 60M 11B'; {_SE_TABLE}: 'ResNet-152 11.30'",
            "60,192,808 params here (+0.3%). " + stride_note(11.513626624e9, 11.282415616e9),
        ),
        "152 layers, bottleneck blocks (3, 8, 36, 3).",
    ),
    _Entry(
        "wide_resnet50_2",
        wide_resnet50_2,
        ZAGORUYKO_2016,
        PaperFigures(
            68.9e6,
            None,
            "Zagoruyko & Komodakis 2016, ImageNet table: 'WRN-50-2-bottleneck 68.9M' (not in the seeds; the seeds "
            "only state 'WRN-50 outperforms ResNet-152', seed 002)",
        ),
        "ResNet-50 with bottleneck 3x3 width doubled (width_per_group 128); torchvision layout.",
    ),
    _Entry(
        "resnext50_32x4d",
        resnext50_32x4d,
        XIE_2017,
        PaperFigures(
            25.03e6,
            3.768e9,
            f"{_CBAM_TABLE}: 'ResNeXt50 (32x4d) 25.03M 3.768'; {_SE_TABLE}: 'ResNeXt-50 4.24' (stride on the 3x3)",
            stride_note(4.230479872e9, 3.768057856e9),
        ),
        "ResNet-50 with grouped 3x3 bottlenecks: cardinality 32, 4 channels per group at stage 1.",
    ),
    _Entry(
        "resnext101_32x8d",
        resnext101_32x8d,
        XIE_2017,
        PaperFigures(
            83.6e6,
            None,
            "Zoph et al. 2018 (NASNet) ImageNet table: 'ResNeXt-101 (64 x 4d) 320x320 83.6 M 31.5 B' (seed 002); "
            f"{_EFFNET_TABLE}: 'ResNeXt-101 84M 32B'",
            note="The seeds' ResNeXt-101 is the paper's 64x4d (83.6M; its 31.5B mult-adds are at 320x320, so no MAC "
            "figure applies at 224). This entry is torchvision's resnext101_32x8d, 88,791,336 params (+6.2%): its "
            "stage-1 bottleneck is 32 x 8 = 256 wide like 64x4d's 64 x 4, but 32 groups of 8 hold twice the 3x3 "
            "weights of 64 groups of 4. The same ResNet class with groups=64, width_per_group=4 gives 83,455,272 "
            "(-0.2% vs the paper).",
        ),
        "ResNeXt-101, cardinality 32, 8 channels per group (torchvision's variant).",
    ),
)

for _entry in _IMAGENET_ENTRIES:
    register_model(
        ModelSpec(
            name=_entry.name,
            family="resnext" if _entry.name.startswith("resnext") else "resnet",
            paper=_entry.paper,
            builder=_entry.builder,
            figures=_entry.figures,
            torchvision_name=_entry.name,
            description=_entry.description,
        )
    )

register_model(
    ModelSpec(
        name="wide_resnet28_10",
        family="resnet",
        paper=ZAGORUYKO_2016,
        builder=wide_resnet28_10,
        input_size=(3, 32, 32),
        num_classes=10,
        mean=CIFAR_MEAN,
        std=CIFAR_STD,
        crop_pct=1.0,  # trained and evaluated on whole images: no centre crop
        dataset="cifar10",
        figures=PaperFigures(
            36.5e6,
            None,
            "Huang et al. 2017 (DenseNet), Table 2: 'Wide ResNet 28 36.5M' (seed 004); Zagoruyko & Komodakis 2016, "
            "CIFAR table 'WRN-28-10 36.5M'",
        ),
        description="CIFAR WRN-28-10: pre-activation basic blocks, 4 per group, widths 160/320/640, dropout kwarg.",
    )
)
