"""ShuffleNet V1 (Zhang et al. 2018) and ShuffleNet V2 (Ma et al. 2018).

V2 keeps torchvision's layout (``conv1``, ``stage2-4`` of units with ``branch1`` / ``branch2``, ``conv5``, ``fc``) so
that torchvision checkpoints load strictly. V1 has no torchvision counterpart; it follows Table 1 of its paper.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgeconv.errors import InvalidArgumentError
from edgeconv.zoo.layers import ConvBNAct, channel_shuffle, check_width_mult, make_divisible
from edgeconv.zoo.registry import ModelSpec, Paper, PaperFigures, register_model

ZHANG_2018 = Paper(
    "X. Zhang, X. Zhou, M. Lin, J. Sun",
    2018,
    "ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices",
)
MA_2018 = Paper(
    "N. Ma, X. Zhang, H.-T. Zheng, J. Sun",
    2018,
    "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
)

# ---------------------------------------------------------------------------------------------------------------------
# ShuffleNet V1
# ---------------------------------------------------------------------------------------------------------------------

# Table 1 of Zhang et al. 2018: output channels of stages 2-4 of ShuffleNet 1x for each group count g.
V1_STAGE_CHANNELS: dict[int, tuple[int, int, int]] = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}
V1_REPEATS = (4, 8, 4)  # units per stage; the first of each has stride 2
V1_WIDTHS = (0.25, 2.0)


class ShuffleUnit(nn.Module):
    """Fig. 2 (b)/(c): 1x1 GConv -> shuffle -> 3x3 DWConv (stride) -> 1x1 GConv, added to / concatenated with the input.

    ``first_unit_of_net``: the paper applies no group conv to the first pointwise layer of stage 2 ("the number of input
    channels is relatively small").
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int, stride: int, first_unit_of_net: bool) -> None:
        super().__init__()
        self.stride = stride
        self.groups = 1 if first_unit_of_net else groups
        branch_out = out_channels - in_channels if stride == 2 else out_channels  # concat keeps the input channels
        mid = out_channels // 4
        self.gconv1 = ConvBNAct(in_channels, mid, 1, groups=self.groups)
        self.dwconv = ConvBNAct(mid, mid, 3, stride=stride, groups=mid, activation_layer=None)
        self.gconv2 = ConvBNAct(mid, branch_out, 1, groups=groups, activation_layer=None)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.gconv1(x)
        if self.groups > 1:
            y = channel_shuffle(y, self.groups)
        y = self.gconv2(self.dwconv(y))
        if self.stride == 2:
            return self.relu(torch.cat((self.shortcut(x), y), dim=1))
        return self.relu(x + y)


def _v1_channels(groups: int, width_mult: float) -> tuple[int, tuple[int, ...]]:
    # Every stage width must split into g groups both at the bottleneck (out / 4) and in the concat branch
    # (out - in), hence multiples of 4g for the stages and of lcm(4, g) for the stem (24 at 1x, as the paper).
    stem = make_divisible(24 * width_mult, math.lcm(4, groups))
    stages = tuple(make_divisible(c * width_mult, 4 * groups) for c in V1_STAGE_CHANNELS[groups])
    return stem, stages


class ShuffleNetV1(nn.Module):
    stage2: nn.Sequential
    stage3: nn.Sequential
    stage4: nn.Sequential

    def __init__(self, *, num_classes: int = 1000, groups: int = 3, width_mult: float = 1.0) -> None:
        super().__init__()
        if groups not in V1_STAGE_CHANNELS:
            raise InvalidArgumentError(
                f"shufflenet_v1 groups {groups!r} is not one of the paper's; "
                f"use one of {', '.join(map(str, V1_STAGE_CHANNELS))}"
            )
        width_mult = check_width_mult(width_mult, *V1_WIDTHS)
        stem, stage_channels = _v1_channels(groups, width_mult)
        self.conv1 = ConvBNAct(3, stem, 3, stride=2)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = stem
        for index, (repeats, out) in enumerate(zip(V1_REPEATS, stage_channels, strict=True)):
            units = [ShuffleUnit(channels, out, groups, 2, first_unit_of_net=index == 0)]
            units += [ShuffleUnit(out, out, groups, 1, first_unit_of_net=False) for _ in range(repeats - 1)]
            setattr(self, f"stage{index + 2}", nn.Sequential(*units))
            channels = out
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage4(self.stage3(self.stage2(self.maxpool(self.conv1(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def shufflenet_v1(*, num_classes: int = 1000, groups: int = 3, width_mult: float = 1.0) -> ShuffleNetV1:
    return ShuffleNetV1(num_classes=num_classes, groups=groups, width_mult=width_mult)


# ---------------------------------------------------------------------------------------------------------------------
# ShuffleNet V2 (torchvision layout)
# ---------------------------------------------------------------------------------------------------------------------


class InvertedResidual(nn.Module):
    """Fig. 3 (c)/(d) of Ma et al.: channel split, one branch conv'd, concat, shuffle (stride 2: both branches)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        branch = out_channels // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(in_channels, in_channels, 3, stride, 1, bias=False, groups=in_channels),
                nn.BatchNorm2d(in_channels),
                nn.Conv2d(in_channels, branch, 1, bias=False),
                nn.BatchNorm2d(branch),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(in_channels if stride > 1 else branch, branch, 1, bias=False),
            nn.BatchNorm2d(branch),
            nn.ReLU(inplace=True),
            nn.Conv2d(branch, branch, 3, stride, 1, bias=False, groups=branch),
            nn.BatchNorm2d(branch),
            nn.Conv2d(branch, branch, 1, bias=False),
            nn.BatchNorm2d(branch),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    stage2: nn.Sequential
    stage3: nn.Sequential
    stage4: nn.Sequential

    def __init__(self, *, stage_channels: tuple[int, ...], num_classes: int = 1000) -> None:
        super().__init__()
        stem, *stages, last = stage_channels
        self.conv1 = nn.Sequential(nn.Conv2d(3, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels = stem
        for index, (repeats, out) in enumerate(zip((4, 8, 4), stages, strict=True)):
            units = [InvertedResidual(channels, out, 2)] + [InvertedResidual(out, out, 1) for _ in range(repeats - 1)]
            setattr(self, f"stage{index + 2}", nn.Sequential(*units))
            channels = out
        self.conv5 = nn.Sequential(
            nn.Conv2d(channels, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU(inplace=True)
        )
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage4(self.stage3(self.stage2(self.maxpool(self.conv1(x)))))
        return self.fc(self.conv5(x).mean([2, 3]))


# Table 5 of Ma et al. (seed 003): (stem, stage2, stage3, stage4, conv5) channels, paper FLOPs, paper weights.
V2_VARIANTS: dict[str, tuple[tuple[int, ...], float, float]] = {
    "shufflenet_v2_x0_5": ((24, 48, 96, 192, 1024), 41e6, 1.4e6),
    "shufflenet_v2_x1_0": ((24, 116, 232, 464, 1024), 146e6, 2.3e6),
    "shufflenet_v2_x1_5": ((24, 176, 352, 704, 1024), 299e6, 3.5e6),
    "shufflenet_v2_x2_0": ((24, 244, 488, 976, 2048), 591e6, 7.4e6),
}
V2_NOTES = {
    "shufflenet_v2_x0_5": "1,366,792 here (-2.4%), exactly torchvision's count: the paper rounds to one decimal "
    "(1.37 M -> 1.4 M).",
}


def _v2_builder(name: str):  # noqa: ANN202  (one keyword-only builder per table row)
    channels = V2_VARIANTS[name][0]

    def build(*, num_classes: int = 1000) -> ShuffleNetV2:
        return ShuffleNetV2(stage_channels=channels, num_classes=num_classes)

    build.__name__ = build.__qualname__ = name
    return build


# ---------------------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------------------

register_model(
    ModelSpec(
        name="shufflenet_v1",
        family="shufflenet",
        paper=ZHANG_2018,
        builder=shufflenet_v1,
        kwargs={"groups": 3, "width_mult": 1.0},
        figures=PaperFigures(
            params=None,
            macs=137e6,
            source="Zhang et al. 2018, Table 1 (ShuffleNet 1x, g=3: 137 MFLOPs, i.e. mult-adds); the paper gives no "
            "parameter count for 1x. Sandler et al. 2018 Table 4 (seed 003), g=3: 1.5x 3.4M / 292M, 2x 5.4M / 524M.",
            note="1x g=3: 1,865,728 params / 137.5 M MACs here (g=1/2/4/8: 143.1/140.8/134.3/138.4 M vs the paper's "
            "143/140/133/137 M). g=3 1.5x: 3,443,212 (+1.3%) / 299.6 M (+2.6%, our stem is 36 channels, 1.5 x 24); "
            "2x: 5,450,776 (+0.9%) / 524.0 M.",
        ),
        description="Pointwise group convs + channel shuffle; groups 1/2/3/4/8, width_mult 0.25-2.0.",
    )
)

for _name, (_channels, _flops, _weights) in V2_VARIANTS.items():
    register_model(
        ModelSpec(
            name=_name,
            family="shufflenet",
            paper=MA_2018,
            builder=_v2_builder(_name),
            figures=PaperFigures(
                params=_weights, macs=_flops, source="Ma et al. 2018, Table 5 (seed 003)", note=V2_NOTES.get(_name, "")
            ),
            torchvision_name=_name,
            description=f"Channel split + shuffle units, stage widths {_channels[1:4]}; torchvision layout.",
        )
    )
