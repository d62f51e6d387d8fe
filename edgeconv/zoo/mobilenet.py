"""MobileNet V1 (Howard et al. 2017), V2 (Sandler et al. 2018) and V3 (Howard et al. 2019).

V2 and V3 keep torchvision's module layout (``features.N.conv...``, ``features.N.block...``, ``classifier.N``) so that
torchvision checkpoints load strictly. V1 has no torchvision counterpart; its layer types are kept clean (one standard
3x3 conv, depthwise 3x3 convs, pointwise 1x1 convs, one ``nn.Linear``) so the profiler can rebuild the paper's Table 2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from edgeconv.zoo.layers import ConvBNAct, SqueezeExcitation, check_width_mult, make_divisible
from edgeconv.zoo.registry import ModelSpec, Paper, PaperFigures, register_model
from edgeconv.zoo.weights import MOBILENET_V2_IMAGENET

HOWARD_2017 = Paper(
    "A. G. Howard, M. Zhu, B. Chen, D. Kalenichenko, W. Wang, T. Weyand, M. Andreetto, H. Adam",
    2017,
    "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
)
SANDLER_2018 = Paper(
    "M. Sandler, A. Howard, M. Zhu, A. Zhmoginov, L.-C. Chen",
    2018,
    "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
)
HOWARD_2019 = Paper(
    "A. Howard, M. Sandler, G. Chu, L.-C. Chen, B. Chen, M. Tan, W. Wang, Y. Zhu, R. Pang, V. Vasudevan, Q. V. Le, "
    "H. Adam",
    2019,
    "Searching for MobileNetV3",
)


def _init_weights(model: nn.Module) -> None:
    """torchvision's MobileNet initialisation (kaiming fan-out convs, unit BN, small normal FC)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------------------------------------
# MobileNet V1
# ---------------------------------------------------------------------------------------------------------------------

# Table 1 of Howard et al. 2017 after the stem: (pointwise output channels, depthwise stride). The table prints "s2" for
# the last depthwise conv, but its input-size column keeps 7x7 there; every reference implementation uses stride 1.
MOBILENET_V1_BODY: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


def _v1_channels(channels: int, width_mult: float) -> int:
    # The reference TF-slim implementation truncates and floors at 8 (min_depth), so 0.75 gives 24/48/.../768.
    return max(8, int(channels * width_mult))


class DepthwiseSeparable(nn.Sequential):
    """3x3 depthwise conv -> BN -> ReLU, then 1x1 pointwise conv -> BN -> ReLU (Fig. 3 right of the paper)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__(
            ConvBNAct(in_channels, in_channels, 3, stride=stride, groups=in_channels),
            ConvBNAct(in_channels, out_channels, 1),
        )


class MobileNetV1(nn.Module):
    def __init__(self, *, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.0) -> None:
        super().__init__()
        width_mult = check_width_mult(width_mult)
        channels = _v1_channels(32, width_mult)
        layers: list[nn.Module] = [ConvBNAct(3, channels, 3, stride=2)]
        for out, stride in MOBILENET_V1_BODY:
            out = _v1_channels(out, width_mult)
            layers.append(DepthwiseSeparable(channels, out, stride))
            channels = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # the paper's 7x7 average pool, for any input resolution
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(channels, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(self.dropout(x))


def mobilenet_v1(*, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.0) -> MobileNetV1:
    return MobileNetV1(num_classes=num_classes, width_mult=width_mult, dropout=dropout)


# ---------------------------------------------------------------------------------------------------------------------
# MobileNet V2 (torchvision layout)
# ---------------------------------------------------------------------------------------------------------------------

# Table 2 of Sandler et al. 2018: expansion t, output channels c, repeats n, first stride s.
MOBILENET_V2_BODY: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    """Expand 1x1 (ReLU6) -> depthwise 3x3 (ReLU6) -> linear 1x1 projection, residual when shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_channels, hidden, 1, activation_layer=nn.ReLU6))
        layers += [
            ConvBNAct(hidden, hidden, 3, stride=stride, groups=hidden, activation_layer=nn.ReLU6),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, *, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2) -> None:
        super().__init__()
        width_mult = check_width_mult(width_mult)
        channels = make_divisible(32 * width_mult)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult))  # the head is never thinned (paper Sec. 5.1)
        layers: list[nn.Module] = [ConvBNAct(3, channels, 3, stride=2, activation_layer=nn.ReLU6)]
        for t, c, n, s in MOBILENET_V2_BODY:
            out = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
                channels = out
        layers.append(ConvBNAct(channels, self.last_channel, 1, activation_layer=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v2(*, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2) -> MobileNetV2:
    return MobileNetV2(num_classes=num_classes, width_mult=width_mult, dropout=dropout)


# ---------------------------------------------------------------------------------------------------------------------
# MobileNet V3 (torchvision layout)
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class V3Block:
    """One bneck row of Tables 1 / 2 of Howard et al. 2019 (channels before width scaling)."""

    in_channels: int
    kernel: int
    expanded: int
    out_channels: int
    use_se: bool
    hardswish: bool
    stride: int


RE, HS = False, True
MOBILENET_V3_LARGE: tuple[V3Block, ...] = (
    V3Block(16, 3, 16, 16, False, RE, 1),
    V3Block(16, 3, 64, 24, False, RE, 2),
    V3Block(24, 3, 72, 24, False, RE, 1),
    V3Block(24, 5, 72, 40, True, RE, 2),
    V3Block(40, 5, 120, 40, True, RE, 1),
    V3Block(40, 5, 120, 40, True, RE, 1),
    V3Block(40, 3, 240, 80, False, HS, 2),
    V3Block(80, 3, 200, 80, False, HS, 1),
    V3Block(80, 3, 184, 80, False, HS, 1),
    V3Block(80, 3, 184, 80, False, HS, 1),
    V3Block(80, 3, 480, 112, True, HS, 1),
    V3Block(112, 3, 672, 112, True, HS, 1),
    V3Block(112, 5, 672, 160, True, HS, 2),
    V3Block(160, 5, 960, 160, True, HS, 1),
    V3Block(160, 5, 960, 160, True, HS, 1),
)
MOBILENET_V3_SMALL: tuple[V3Block, ...] = (
    V3Block(16, 3, 16, 16, True, RE, 2),
    V3Block(16, 3, 72, 24, False, RE, 2),
    V3Block(24, 3, 88, 24, False, RE, 1),
    V3Block(24, 5, 96, 40, True, HS, 2),
    V3Block(40, 5, 240, 40, True, HS, 1),
    V3Block(40, 5, 240, 40, True, HS, 1),
    V3Block(40, 5, 120, 48, True, HS, 1),
    V3Block(48, 5, 144, 48, True, HS, 1),
    V3Block(48, 5, 288, 96, True, HS, 2),
    V3Block(96, 5, 576, 96, True, HS, 1),
    V3Block(96, 5, 576, 96, True, HS, 1),
)
V3_LAST_CHANNEL = {"large": 1280, "small": 1024}
V3_BLOCKS = {"large": MOBILENET_V3_LARGE, "small": MOBILENET_V3_SMALL}


class V3InvertedResidual(nn.Module):
    def __init__(self, cfg: V3Block, width_mult: float, norm_layer: Callable[..., nn.Module]) -> None:
        super().__init__()
        inp, exp, out = (make_divisible(c * width_mult) for c in (cfg.in_channels, cfg.expanded, cfg.out_channels))
        self.use_res_connect = cfg.stride == 1 and inp == out
        act = nn.Hardswish if cfg.hardswish else nn.ReLU
        layers: list[nn.Module] = []
        if exp != inp:
            layers.append(ConvBNAct(inp, exp, 1, norm_layer=norm_layer, activation_layer=act))
        layers.append(
            ConvBNAct(exp, exp, cfg.kernel, stride=cfg.stride, groups=exp, norm_layer=norm_layer, activation_layer=act)
        )
        if cfg.use_se:
            layers.append(SqueezeExcitation(exp, make_divisible(exp // 4), scale_activation=nn.Hardsigmoid))
        layers.append(ConvBNAct(exp, out, 1, norm_layer=norm_layer, activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return y + x if self.use_res_connect else y


class MobileNetV3(nn.Module):
    def __init__(self, *, arch: str, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2) -> None:
        super().__init__()
        width_mult = check_width_mult(width_mult)
        blocks = V3_BLOCKS[arch]
        norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)  # TF's BN settings, as in the paper's training
        first = make_divisible(blocks[0].in_channels * width_mult)
        layers: list[nn.Module] = [ConvBNAct(3, first, 3, stride=2, norm_layer=norm, activation_layer=nn.Hardswish)]
        layers += [V3InvertedResidual(cfg, width_mult, norm) for cfg in blocks]
        last_in = make_divisible(blocks[-1].out_channels * width_mult)
        layers.append(ConvBNAct(last_in, 6 * last_in, 1, norm_layer=norm, activation_layer=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        last_channel = make_divisible(V3_LAST_CHANNEL[arch] * width_mult)
        self.classifier = nn.Sequential(
            nn.Linear(6 * last_in, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_classes),
        )
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def mobilenet_v3_large(*, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2) -> MobileNetV3:
    return MobileNetV3(arch="large", num_classes=num_classes, width_mult=width_mult, dropout=dropout)


def mobilenet_v3_small(*, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2) -> MobileNetV3:
    return MobileNetV3(arch="small", num_classes=num_classes, width_mult=width_mult, dropout=dropout)


# ---------------------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------------------

V2_TABLE = "Sandler et al. 2018, Table 4 (seed 003: 'Network / Top 1 / Params / MAdds')"

register_model(
    ModelSpec(
        name="mobilenet_v1",
        family="mobilenet",
        paper=HOWARD_2017,
        builder=mobilenet_v1,
        kwargs={"width_mult": 1.0},
        figures=PaperFigures(
            params=4.2e6,
            macs=569e6,
            source="Howard et al. 2017, Table 8 '1.0 MobileNet-224: 569 M mult-adds, 4.2 M parameters' (seed 000)",
            note="4,231,976 here, of which 21,888 are BN scale/shift that the paper does not count (folded at export).",
        ),
        description="Depthwise-separable convs: 3x3 stem, 13 (depthwise 3x3 + pointwise 1x1) pairs, avg pool, FC. "
        "width_mult 1.0/0.75/0.5/0.25 and any input resolution (the paper's 224/192/160/128).",
    )
)
register_model(
    ModelSpec(
        name="mobilenet_v2",
        family="mobilenet",
        paper=SANDLER_2018,
        builder=mobilenet_v2,
        kwargs={"width_mult": 1.0},
        figures=PaperFigures(
            params=3.4e6,
            macs=300e6,
            source=V2_TABLE + ": 'MobileNetV2 72.0 3.4M 300M'",
            note="3,504,872 here (+3.1%), exactly torchvision's count: the paper's 3.4M leaves out the 34,112 BN "
            "scale/shift parameters and rounds down (3,470,760 conv+FC weights).",
        ),
        torchvision_name="mobilenet_v2",
        weights=(MOBILENET_V2_IMAGENET,),
        description="Inverted residuals with linear bottlenecks, ReLU6; torchvision layout (its checkpoints load).",
    )
)
register_model(
    ModelSpec(
        name="mobilenet_v2_140",
        family="mobilenet",
        paper=SANDLER_2018,
        builder=mobilenet_v2,
        kwargs={"width_mult": 1.4},
        figures=PaperFigures(
            params=6.9e6,
            macs=585e6,
            source=V2_TABLE + ": 'MobileNetV2 (1.4) 74.7 6.9M 585M'",
            note="6,108,776 here (-11.5%), exactly torchvision's mobilenet_v2(width_mult=1.4) (head widened to 1792). "
            "Without BN that is 6,060,840, the 6.06 M (and 582 M MACs, 582.2 M here) that the authors' TF-slim "
            "release lists for mobilenet_v2_1.4_224; the paper's 6.9M does not match its own released network.",
        ),
        torchvision_name="mobilenet_v2",
        torchvision_kwargs={"width_mult": 1.4},
        description="MobileNetV2 with width multiplier 1.4 (torchvision's head rule).",
    )
)
register_model(
    ModelSpec(
        name="mobilenet_v3_large",
        family="mobilenet",
        paper=HOWARD_2019,
        builder=mobilenet_v3_large,
        kwargs={"width_mult": 1.0},
        figures=PaperFigures(
            params=5.4e6,
            macs=219e6,
            source="Howard et al. 2019, Table 3: 'V3-Large 1.0: 219 M MAdds, 5.4 M params'",
            note="5,483,032 here (+1.5%), exactly torchvision's count.",
        ),
        torchvision_name="mobilenet_v3_large",
        description="NAS-found inverted residuals with squeeze-excite and hard-swish; torchvision layout.",
    )
)
register_model(
    ModelSpec(
        name="mobilenet_v3_small",
        family="mobilenet",
        paper=HOWARD_2019,
        builder=mobilenet_v3_small,
        kwargs={"width_mult": 1.0},
        figures=PaperFigures(
            params=2.9e6,
            macs=66e6,
            source="Howard et al. 2019, arXiv:1905.02244v1 Table 3: 'V3-Small 1.0: 66 M MAdds, 2.9 M params'",
            note="2,542,856 here (-12.3%), exactly torchvision's count. The final (ICCV 2019) version of the paper "
            "reports 2.5 M params / 56 M MAdds for V3-Small 1.0 (56.5 M MACs here), which is the network defined "
            "here; 2.9M / 66M is the first arXiv version's figure for an earlier Small.",
        ),
        torchvision_name="mobilenet_v3_small",
        description="The small MobileNetV3 (11 bnecks); torchvision layout.",
    )
)
