"""SE-ResNet / SE-ResNeXt (Hu et al. 2018) and CBAM-ResNet (Woo et al. 2018).

Both are the torchvision-layout ``ResNet`` of ``edgeconv.zoo.resnet`` with its ``attention_layer`` hook: every block
gets a module (``layerN.M.attention``) that reweights the residual branch right before the addition, as in both papers.
The SE module is ``edgeconv.zoo.layers.SqueezeExcitation`` (1x1 convs with bias, reduction 16). CBAM is channel
attention (the SE MLP shared by average- and max-pooled descriptors, summed before the sigmoid) followed by spatial
attention (channel-wise max and mean -> 7x7 conv -> BN -> sigmoid), as in the authors' released code.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeconv.errors import InvalidArgumentError
from edgeconv.zoo.layers import SqueezeExcitation
from edgeconv.zoo.registry import ModelSpec, Paper, PaperFigures, register_model
from edgeconv.zoo.resnet import RESNET_CONFIGS, AttentionLayer, ResNet, stride_note

HU_2018 = Paper("J. Hu, L. Shen, G. Sun", 2018, "Squeeze-and-Excitation Networks")
WOO_2018 = Paper("S. Woo, J. Park, J.-Y. Lee, I. S. Kweon", 2018, "CBAM: Convolutional Block Attention Module")


def _check_reduction(reduction: int) -> int:
    if not isinstance(reduction, int) or reduction < 1:
        raise InvalidArgumentError(f"reduction must be a positive integer (the papers use 16), got {reduction!r}")
    return reduction


class ChannelAttention(nn.Module):
    """CBAM's channel gate: sigmoid(MLP(avgpool(x)) + MLP(maxpool(x))) * x, with one MLP shared by both pools."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.fc2(self.relu(self.fc1(torch.mean(x, dim=(2, 3), keepdim=True))))
        peak = self.fc2(self.relu(self.fc1(torch.amax(x, dim=(2, 3), keepdim=True))))
        return torch.sigmoid(avg + peak) * x


class SpatialAttention(nn.Module):
    """CBAM's spatial gate: sigmoid(BN(conv7x7([max_c(x), mean_c(x)]))) * x."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat((torch.amax(x, dim=1, keepdim=True), torch.mean(x, dim=1, keepdim=True)), dim=1)
        return torch.sigmoid(self.bn(self.conv(pooled))) * x


class CBAM(nn.Module):
    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


class _SELayer:
    """Picklable factory: channels -> SqueezeExcitation(channels, channels // reduction)."""

    def __init__(self, reduction: int) -> None:
        self.reduction = reduction

    def __call__(self, channels: int) -> nn.Module:
        return SqueezeExcitation(channels, channels // self.reduction)


class _CBAMLayer:
    def __init__(self, reduction: int) -> None:
        self.reduction = reduction

    def __call__(self, channels: int) -> nn.Module:
        return CBAM(channels, self.reduction)


def _attention_resnet(variant: str, attention: AttentionLayer, num_classes: int) -> ResNet:
    return ResNet.from_config(RESNET_CONFIGS[variant], num_classes=num_classes, attention_layer=attention)


def se_resnet50(*, num_classes: int = 1000, reduction: int = 16) -> ResNet:
    return _attention_resnet("resnet50", _SELayer(_check_reduction(reduction)), num_classes)


def se_resnext50_32x4d(*, num_classes: int = 1000, reduction: int = 16) -> ResNet:
    return _attention_resnet("resnext50_32x4d", _SELayer(_check_reduction(reduction)), num_classes)


def cbam_resnet50(*, num_classes: int = 1000, reduction: int = 16) -> ResNet:
    return _attention_resnet("resnet50", _CBAMLayer(_check_reduction(reduction)), num_classes)


_CBAM_TABLE = "Woo et al. 2018 (CBAM), Table 4 (seed 002)"

register_model(
    ModelSpec(
        name="se_resnet50",
        family="senet",
        paper=HU_2018,
        builder=se_resnet50,
        figures=PaperFigures(
            28.09e6,
            3.860e9,
            f"{_CBAM_TABLE}: 'ResNet50 + SE 28.09M 3.860'; Hu et al. 2018, Table 2: SE-ResNet-50 3.87 GFLOPs",
            stride_note(4.091699200e9, 3.860488192e9),
        ),
        description="ResNet-50 with a squeeze-and-excitation block (reduction 16) on every residual branch.",
    )
)
register_model(
    ModelSpec(
        name="se_resnext50_32x4d",
        family="senet",
        paper=HU_2018,
        builder=se_resnext50_32x4d,
        figures=PaperFigures(
            27.56e6,
            3.771e9,
            f"{_CBAM_TABLE}: 'ResNeXt50 (32x4d) + SE 27.56M 3.771'",
            stride_note(4.232994816e9, 3.770572800e9),
        ),
        description="ResNeXt-50 (32x4d) with a squeeze-and-excitation block (reduction 16) on every residual branch.",
    )
)
register_model(
    ModelSpec(
        name="cbam_resnet50",
        family="cbam",
        paper=WOO_2018,
        builder=cbam_resnet50,
        figures=PaperFigures(
            28.09e6,
            3.864e9,
            f"{_CBAM_TABLE}: 'ResNet50 + CBAM 28.09M 3.864'",
            stride_note(4.095573110e9, 3.864362102e9),
        ),
        description="ResNet-50 with CBAM (channel then spatial attention, 7x7) on every residual branch.",
    )
)
