"""PyramidNet (Han, Kim & Kim 2017, "Deep Pyramidal Residual Networks"), CIFAR, additive widening.

Instead of doubling the width at each downsampling, every residual unit widens by alpha / N (N = number of units), so
the widths rise linearly from 16 to 16 + alpha. Units are BN -> conv3x3 -> BN -> ReLU -> conv3x3 -> BN (no ReLU on the
input, none after the addition); the shortcut is an identity (2x2 average pool when the unit downsamples) whose missing
channels are zero-padded. Widths are floored: the paper's counts for alpha 48 / 84 / 270 (1.7M / 3.8M / 28.3M) match
1.74M / 3.86M / 28.49M with floor, while rounding (the authors' later PyTorch port) gives 1.77M / 3.90M / 28.49M.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edgeconv.errors import InvalidArgumentError
from edgeconv.zoo.layers import init_resnet_style
from edgeconv.zoo.registry import CIFAR_MEAN, CIFAR_STD, ModelSpec, Paper, PaperFigures, register_model

HAN_2017 = Paper("D. Han, J. Kim, J. Kim", 2017, "Deep Pyramidal Residual Networks")


class PyramidBasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = nn.AvgPool2d(2, 2, ceil_mode=True) if stride != 1 else None
        self.pad_channels = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.bn1(x))
        out = self.bn3(self.conv2(self.relu(self.bn2(out))))
        shortcut = x if self.downsample is None else self.downsample(x)
        if self.pad_channels > 0:  # zero-padded identity: F.pad over (W, W, H, H, C_front, C_back)
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.pad_channels))
        return out + shortcut


class PyramidNet(nn.Module):
    def __init__(self, *, depth: int = 110, alpha: float = 48, num_classes: int = 10) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise InvalidArgumentError(f"PyramidNet (basic blocks) depth must be 6n + 2 (20, 56, 110 ...); got {depth}")
        if alpha < 0:
            raise InvalidArgumentError(f"alpha (total widening) must be >= 0, got {alpha}")
        units_per_stage = (depth - 2) // 6
        total_units = 3 * units_per_stage
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_channels = 16
        stages = []
        for index in range(3):
            units = []
            for unit in range(units_per_stage):
                # Computed from the unit index, not accumulated: a float running sum can land at 63.999 and floor to 63.
                done = index * units_per_stage + unit + 1
                out_channels = int(math.floor(16 + alpha * done / total_units))
                stride = 2 if index > 0 and unit == 0 else 1
                units.append(PyramidBasicBlock(in_channels, out_channels, stride))
                in_channels = out_channels
            stages.append(nn.Sequential(*units))
        self.layer1, self.layer2, self.layer3 = stages
        self.bn_final = nn.BatchNorm2d(in_channels)
        self.relu_final = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        init_resnet_style(self, zero_linear_bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv1(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.relu_final(self.bn_final(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def pyramidnet(*, num_classes: int = 10, depth: int = 110, alpha: float = 48) -> PyramidNet:
    return PyramidNet(depth=depth, alpha=alpha, num_classes=num_classes)


register_model(
    ModelSpec(
        name="pyramidnet",
        family="pyramidnet",
        paper=HAN_2017,
        builder=pyramidnet,
        input_size=(3, 32, 32),
        num_classes=10,
        mean=CIFAR_MEAN,
        std=CIFAR_STD,
        crop_pct=1.0,  # trained and evaluated on whole images: no centre crop
        dataset="cifar10",
        figures=PaperFigures(
            1.7e6,
            None,
            "Han et al. 2017, CIFAR results table: 'PyramidNet (alpha = 48) 110 1.7M' (not in the seeds, which cite "
            "the paper, seed 002)",
            note="1,739,730 here (+2.3%). The paper's figures are truncated to one decimal (alpha 84: 3,855,054 "
            "here vs '3.8M'); 13,024 of ours are BN scale/shift. Rounding widths instead of flooring gives 1,772,706.",
        ),
        description="Additive PyramidNet-110 (alpha 48, basic units): widths grow by 48/54 per unit from 16 to 64; "
        "zero-padded identity shortcuts.",
    )
)
