"""Xception (Chollet 2017): Inception modules taken to the limit, i.e. depthwise separable convolutions with residual
connections, in 36 conv layers (entry flow, 8 middle-flow blocks, exit flow; the paper's Fig. 5).

Attribute names follow timm's ``legacy_xception`` (ported from Keras through Cadene's pretrainedmodels), so its
checkpoints load unchanged. BatchNorm follows every (separable) conv; as in the paper, the separable convs have no
ReLU between their depthwise and pointwise parts.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeconv.zoo.inception import INCEPTION_MEAN, INCEPTION_STD
from edgeconv.zoo.registry import ModelSpec, Paper, PaperFigures, register_model

CHOLLET_2017 = Paper("F. Chollet", 2017, "Xception: Deep Learning with Depthwise Separable Convolutions")


class SeparableConv2d(nn.Module):
    """Depthwise kxk conv (``conv1``) then pointwise 1x1 conv, both without bias (BatchNorm follows)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, kernel_size, stride, padding, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.conv1(x))


class Block(nn.Module):
    """``reps`` x (ReLU -> SeparableConv 3x3 -> BN), then a 3x3/2 max pool if strided; plus a shortcut
    (1x1 strided conv + BN where the shape changes, identity otherwise).

    ``grow_first``: the first separable conv changes the width (else the last); ``start_with_relu=False`` for the
    first block, which follows a ReLU already.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        reps: int,
        stride: int = 1,
        start_with_relu: bool = True,
        grow_first: bool = True,
    ) -> None:
        super().__init__()
        if out_channels != in_channels or stride != 1:
            self.skip: nn.Module | None = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            self.skipbn: nn.Module | None = nn.BatchNorm2d(out_channels)
        else:
            self.skip = self.skipbn = None
        layers: list[nn.Module] = []
        for i in range(reps):
            if grow_first:
                inc, outc = (in_channels if i == 0 else out_channels), out_channels
            else:
                inc, outc = in_channels, (in_channels if i < reps - 1 else out_channels)
            # the first ReLU sees the block input, which the shortcut also reads: it must not run in place
            layers += [nn.ReLU(inplace=i > 0), SeparableConv2d(inc, outc), nn.BatchNorm2d(outc)]
        if not start_with_relu:
            layers = layers[1:]
        if stride != 1:
            layers.append(nn.MaxPool2d(3, stride, 1))
        self.rep = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skipbn(self.skip(x)) if self.skip is not None and self.skipbn is not None else x
        return self.rep(x) + skip


# (in, out, reps, stride, start_with_relu, grow_first): entry flow, 8 x middle flow, the exit flow's block
XCEPTION_BLOCKS = (
    (64, 128, 2, 2, False, True),
    (128, 256, 2, 2, True, True),
    (256, 728, 2, 2, True, True),
    *[(728, 728, 3, 1, True, True)] * 8,
    (728, 1024, 2, 2, True, False),
)


class Xception(nn.Module):
    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3, 2, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(32, 64, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.act2 = nn.ReLU(inplace=True)
        for index, row in enumerate(XCEPTION_BLOCKS, start=1):
            self.add_module(f"block{index}", Block(*row))
        self.conv3 = SeparableConv2d(1024, 1536)
        self.bn3 = nn.BatchNorm2d(1536)
        self.act3 = nn.ReLU(inplace=True)
        self.conv4 = SeparableConv2d(1536, 2048)
        self.bn4 = nn.BatchNorm2d(2048)
        self.act4 = nn.ReLU(inplace=True)
        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.head_drop = nn.Dropout(dropout)  # the paper: 0.5 before the classifier on ImageNet, none on JFT
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))))
        for index in range(1, len(XCEPTION_BLOCKS) + 1):
            x = getattr(self, f"block{index}")(x)
        x = self.act3(self.bn3(self.conv3(x)))
        x = self.act4(self.bn4(self.conv4(x)))
        return self.fc(self.head_drop(self.global_pool(x)))


def xception(*, num_classes: int = 1000, dropout: float = 0.5) -> Xception:
    return Xception(num_classes=num_classes, dropout=dropout)


register_model(
    ModelSpec(
        name="xception",
        family="xception",
        paper=CHOLLET_2017,
        builder=xception,
        input_size=(3, 299, 299),
        mean=INCEPTION_MEAN,
        std=INCEPTION_STD,
        figures=PaperFigures(
            params=22_855_952,
            macs=8.38e9,
            source="Chollet 2017, Table 3 (22,855,952 parameters); mult-adds: Zoph et al. 2018 (NASNet) Table 2, "
            "seed 002 (22.8M, 8.38B)",
            note="",
        ),
        description="Xception at 299x299: entry flow, 8 middle-flow blocks of 3 separable convs, exit flow; "
        "residual shortcuts.",
    )
)
