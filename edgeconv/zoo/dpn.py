"""Dual Path Networks (Chen et al. 2017): DPN-68 and DPN-92.

Each block runs a ResNeXt-style grouped bottleneck (BN-ReLU-conv, pre-activation as in the authors' MXNet code) whose
output is split in two: the first ``num_1x1_c`` channels are *added* to the residual path, the remaining ``inc``
channels are *concatenated* to the densely connected path. The first block of every stage projects its input with a
1x1 conv (stride 2 from conv3 on) to create both paths. Module names follow timm's port of the authors' MXNet weights
(``features.conv2_1.c1x1_a.bn``, ``features.conv5_bn_ac``, a 1x1-conv ``classifier``; Cadene's ``pretrainedmodels``
calls the classifier ``last_linear``), and BN keeps the MXNet epsilon 1e-3, so converted checkpoints load unchanged.

DPN-68 is the small variant: 3x3 stem of 10 channels, bottleneck widths not multiplied by 4.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgeconv.zoo.layers import init_resnet_style
from edgeconv.zoo.registry import ModelSpec, Paper, PaperFigures, register_model

CHEN_2017 = Paper("Y. Chen, J. Li, H. Xiao, X. Jin, S. Yan, J. Feng", 2017, "Dual Path Networks")

_BN_EPS = 1e-3  # the MXNet default the released weights were trained with


class CatBnAct(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels, eps=_BN_EPS)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = torch.cat(x, dim=1) if isinstance(x, tuple) else x
        return self.act(self.bn(x))


class BnActConv2d(nn.Module):
    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0, groups: int = 1
    ) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels, eps=_BN_EPS)
        self.act = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.act(self.bn(x)))


class InputBlock(nn.Module):
    def __init__(self, num_init_features: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, num_init_features, kernel_size, 2, kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(num_init_features, eps=_BN_EPS)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.bn(self.conv(x))))


class DualPathBlock(nn.Module):
    """``block_type``: 'proj' (first block of conv2), 'down' (first block of conv3-5, stride 2) or 'normal'."""

    def __init__(
        self, in_channels: int, num_1x1_a: int, num_3x3_b: int, num_1x1_c: int, inc: int, groups: int, block_type: str
    ) -> None:
        super().__init__()
        self.num_1x1_c = num_1x1_c
        self.key_stride = 2 if block_type == "down" else 1
        self.has_proj = block_type in ("proj", "down")
        # The stride-2 and stride-1 projections carry different names in the released weights.
        if block_type == "down":
            self.c1x1_w_s2 = BnActConv2d(in_channels, num_1x1_c + 2 * inc, 1, stride=2)
        elif block_type == "proj":
            self.c1x1_w_s1 = BnActConv2d(in_channels, num_1x1_c + 2 * inc, 1)
        self.c1x1_a = BnActConv2d(in_channels, num_1x1_a, 1)
        self.c3x3_b = BnActConv2d(num_1x1_a, num_3x3_b, 3, self.key_stride, 1, groups)
        self.c1x1_c = BnActConv2d(num_3x3_b, num_1x1_c + inc, 1)

    def forward(self, x: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x_in = torch.cat(x, dim=1) if isinstance(x, tuple) else x
        if self.has_proj:
            projection = self.c1x1_w_s2(x_in) if self.key_stride == 2 else self.c1x1_w_s1(x_in)
            residual, dense = projection[:, : self.num_1x1_c], projection[:, self.num_1x1_c :]
        else:
            residual, dense = x  # type: ignore[misc]  # a non-projecting block always follows another block
        out = self.c1x1_c(self.c3x3_b(self.c1x1_a(x_in)))
        return residual + out[:, : self.num_1x1_c], torch.cat((dense, out[:, self.num_1x1_c :]), dim=1)


@dataclass(frozen=True)
class DPNConfig:
    small: bool  # DPN-68: 3x3 stem, bottleneck widths x1 instead of x4
    num_init_features: int  # stem channels
    k_r: int  # 3x3 (grouped) width of conv2 blocks, scaled with the stage
    groups: int  # cardinality of the 3x3 convs
    k_sec: tuple[int, int, int, int]  # blocks per stage (conv2 ... conv5)
    inc_sec: tuple[int, int, int, int]  # dense-path growth per block, per stage


DPN_CONFIGS: dict[str, DPNConfig] = {
    "dpn68": DPNConfig(True, 10, 128, 32, (3, 4, 12, 3), (16, 32, 32, 64)),
    "dpn92": DPNConfig(False, 64, 96, 32, (3, 4, 20, 3), (16, 32, 24, 128)),
}


class DPN(nn.Module):
    def __init__(self, config: DPNConfig, *, num_classes: int = 1000) -> None:
        super().__init__()
        bw_factor = 1 if config.small else 4
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        blocks["conv1_1"] = InputBlock(config.num_init_features, 3 if config.small else 7)
        in_channels = config.num_init_features
        for stage, (num_blocks, inc) in enumerate(zip(config.k_sec, config.inc_sec, strict=True)):
            bw = 64 * (2**stage) * bw_factor  # residual-path width
            r = config.k_r * bw // (64 * bw_factor)  # bottleneck width
            prefix = f"conv{stage + 2}_"
            blocks[prefix + "1"] = DualPathBlock(
                in_channels, r, r, bw, inc, config.groups, "proj" if stage == 0 else "down"
            )
            in_channels = bw + 3 * inc
            for i in range(2, num_blocks + 1):
                blocks[prefix + str(i)] = DualPathBlock(in_channels, r, r, bw, inc, config.groups, "normal")
                in_channels += inc
        blocks["conv5_bn_ac"] = CatBnAct(in_channels)
        self.features = nn.Sequential(blocks)
        # A 1x1 conv classifier as in the released weights (key ``classifier.weight`` is 4-D).
        self.classifier = nn.Conv2d(in_channels, num_classes, 1, bias=True)
        init_resnet_style(self)
        if self.classifier.bias is not None:
            nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return torch.flatten(self.classifier(x), 1)


def dpn68(*, num_classes: int = 1000) -> DPN:
    return DPN(DPN_CONFIGS["dpn68"], num_classes=num_classes)


def dpn92(*, num_classes: int = 1000) -> DPN:
    return DPN(DPN_CONFIGS["dpn92"], num_classes=num_classes)


_TABLE = "Chen et al. 2017, Table 2 (ImageNet-1k, 224x224)"

register_model(
    ModelSpec(
        name="dpn68",
        family="dpn",
        paper=CHEN_2017,
        builder=dpn68,
        figures=PaperFigures(
            12.8e6,
            2.5e9,
            f"{_TABLE}: 'DPN-68 12.8M 2.5 GFLOPs' (the seeds list DPN only by name)",
            note="12,611,602 params (-1.5%) and 2.326 G conv + FC mult-adds (-7%) here, for the network of the "
            "authors' released DPN-68 weights (same blocks, widths and key layout). DPN-92's 37.8M / 6.5 G match "
            "within 0.3%, so the gap is in how the paper rounded or counted the small model, not in its structure.",
        ),
        description="Small DPN: 3x3 stem (10 channels), blocks (3, 4, 12, 3), cardinality 32, dense growth "
        "(16, 32, 32, 64).",
    )
)
register_model(
    ModelSpec(
        name="dpn92",
        family="dpn",
        paper=CHEN_2017,
        builder=dpn92,
        figures=PaperFigures(37.8e6, 6.5e9, f"{_TABLE}: 'DPN-92 37.8M 6.5 GFLOPs' (the seeds list DPN only by name)"),
        description="DPN-92: 7x7 stem (64 channels), blocks (3, 4, 20, 3), cardinality 32, dense growth "
        "(16, 32, 24, 128).",
    )
)
