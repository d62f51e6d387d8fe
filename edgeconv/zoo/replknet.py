"""RepLKNet (Ding et al. 2022): depthwise kernels up to 31x31, trained with a parallel small-kernel branch.

Each ``ReparamLargeKernelConv`` sums a large depthwise conv + BN (``lkb_origin``) and a 5x5 depthwise conv + BN
(``small_conv``). ``reparameterize()`` folds both BNs, zero-pads the 5x5 kernel to the large size, adds it to the centre
and keeps one depthwise conv with bias (``lkb_reparam``). Attribute names follow the official repository
(github.com/DingXiaoH/RepLKNet-pytorch) so that its checkpoints load; SyncBatchNorm there is plain BatchNorm2d here
(same state_dict).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from edgeconv.fuse.bn_fold import fold_bn_weights
from edgeconv.zoo.convnext import StochasticDepth, linear_drop_path_rates
from edgeconv.zoo.registry import ModelSpec, Paper, PaperFigures, register_model

DING_2022 = Paper(
    "X. Ding, X. Zhang, J. Han, G. Ding",
    2022,
    "Scaling Up Your Kernels to 31x31: Revisiting Large Kernel Design in CNNs",
)


def conv_bn(
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    stride: int = 1,
    padding: int | tuple[int, int] = 0,
    groups: int = 1,
) -> nn.Sequential:
    """Conv (no bias) -> BN with named children ``conv`` / ``bn`` (the official checkpoints' keys)."""
    result = nn.Sequential()
    result.add_module(
        "conv", nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False)
    )
    result.add_module("bn", nn.BatchNorm2d(out_channels))
    return result


def conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0, groups: int = 1
) -> nn.Sequential:
    result = conv_bn(in_channels, out_channels, kernel_size, stride, padding, groups)
    result.add_module("nonlinear", nn.ReLU())
    return result


def fold_conv_bn(branch: nn.Sequential) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a ``conv_bn`` branch with its BN folded into the conv."""
    conv, bn = cast(nn.Conv2d, branch.conv), cast(nn.BatchNorm2d, branch.bn)
    return fold_bn_weights(conv.weight, conv.bias, bn)


class ReparamLargeKernelConv(nn.Module):
    """Depthwise ``kernel_size`` conv-BN plus a parallel depthwise ``small_kernel`` conv-BN (same stride, centred)."""

    def __init__(self, channels: int, kernel_size: int, small_kernel: int | None, stride: int = 1) -> None:
        super().__init__()
        if small_kernel is not None and not (small_kernel <= kernel_size and small_kernel % 2 == kernel_size % 2 == 1):
            raise ValueError(f"small_kernel {small_kernel} must be odd and at most kernel_size {kernel_size}")
        self.channels = channels
        self.kernel_size = kernel_size
        self.small_kernel = small_kernel
        self.stride = stride
        self.lkb_origin: nn.Sequential | None = conv_bn(
            channels, channels, kernel_size, stride, kernel_size // 2, groups=channels
        )
        self.small_conv: nn.Sequential | None = (
            conv_bn(channels, channels, small_kernel, stride, small_kernel // 2, groups=channels)
            if small_kernel is not None
            else None
        )
        # Registered empty now, so that reparameterize() fills a slot rather than adding a child module while a
        # caller may be iterating over model.modules().
        self.lkb_reparam: nn.Conv2d | None
        self.register_module("lkb_reparam", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.lkb_reparam is not None:
            return self.lkb_reparam(x)
        assert self.lkb_origin is not None  # narrowing for mypy: lkb_origin and lkb_reparam are never both None
        out = self.lkb_origin(x)
        if self.small_conv is not None:
            out = out + self.small_conv(x)
        return out

    @torch.no_grad()
    def get_equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.lkb_origin is None:
            raise RuntimeError("this ReparamLargeKernelConv is already re-parameterized; its branches are gone")
        kernel, bias = fold_conv_bn(self.lkb_origin)
        if self.small_conv is not None and self.small_kernel is not None:
            small_kernel, small_bias = fold_conv_bn(self.small_conv)
            kernel = kernel + F.pad(small_kernel, [(self.kernel_size - self.small_kernel) // 2] * 4)
            bias = bias + small_bias
        return kernel, bias

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Merge into one depthwise conv with bias (``lkb_reparam``); a second call does nothing."""
        if self.lkb_reparam is not None:
            return
        kernel, bias = self.get_equivalent_kernel_bias()
        conv = nn.Conv2d(
            self.channels,
            self.channels,
            self.kernel_size,
            self.stride,
            self.kernel_size // 2,
            groups=self.channels,
            device="meta",  # no random init: the weights are replaced right away
        )
        conv.weight = nn.Parameter(kernel)
        conv.bias = nn.Parameter(bias)
        self.lkb_reparam = conv
        self.lkb_origin = None
        self.small_conv = None


class RepLKBlock(nn.Module):
    """BN -> 1x1 conv-BN-ReLU -> large depthwise conv (re-parameterizable) -> ReLU -> 1x1 conv-BN, plus the input."""

    def __init__(
        self, in_channels: int, dw_channels: int, kernel_size: int, small_kernel: int, drop_path: float
    ) -> None:
        super().__init__()
        self.pw1 = conv_bn_relu(in_channels, dw_channels, 1)
        self.pw2 = conv_bn(dw_channels, in_channels, 1)
        self.large_kernel = ReparamLargeKernelConv(dw_channels, kernel_size, small_kernel)
        self.lk_nonlinear = nn.ReLU()
        self.prelkb_bn = nn.BatchNorm2d(in_channels)
        self.drop_path = StochasticDepth(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pw2(self.lk_nonlinear(self.large_kernel(self.pw1(self.prelkb_bn(x)))))
        return x + self.drop_path(out)


class ConvFFN(nn.Module):
    """BN -> 1x1 conv-BN (4x) -> GELU -> 1x1 conv-BN, plus the input."""

    def __init__(self, channels: int, internal_channels: int, drop_path: float) -> None:
        super().__init__()
        self.drop_path = StochasticDepth(drop_path)
        self.preffn_bn = nn.BatchNorm2d(channels)
        self.pw1 = conv_bn(channels, internal_channels, 1)
        self.pw2 = conv_bn(internal_channels, channels, 1)
        self.nonlinear = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.pw2(self.nonlinear(self.pw1(self.preffn_bn(x)))))


class RepLKNetStage(nn.Module):
    def __init__(
        self,
        channels: int,
        num_blocks: int,
        kernel_size: int,
        small_kernel: int,
        drop_path: list[float],
        dw_ratio: float = 1.0,
        ffn_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for index in range(num_blocks):
            blocks.append(RepLKBlock(channels, int(channels * dw_ratio), kernel_size, small_kernel, drop_path[index]))
            blocks.append(ConvFFN(channels, int(channels * ffn_ratio), drop_path[index]))
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.Identity()  # the official code's per-stage norm is for RepLKNet-XL on downstream tasks only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


@dataclass(frozen=True)
class RepLKNetConfig:
    kernel_sizes: tuple[int, int, int, int]
    layers: tuple[int, int, int, int]
    channels: tuple[int, int, int, int]
    small_kernel: int
    params: float
    macs: float


# The paper's RepLKNet-31B: kernel sizes [31, 29, 27, 13], blocks [2, 2, 18, 2], channels [128, 256, 512, 1024], 5x5
# re-parameterization kernels; its ImageNet-1K table: 79M params, 15.3G FLOPs at 224^2.
REPLKNET_CONFIGS: dict[str, RepLKNetConfig] = {
    "31b": RepLKNetConfig((31, 29, 27, 13), (2, 2, 18, 2), (128, 256, 512, 1024), 5, 79e6, 15.3e9),
}


class RepLKNet(nn.Module):
    """Stem (3x3/2 conv, 3x3 dw, 1x1, 3x3/2 dw) -> 4 stages of RepLK blocks + ConvFFNs, with 1x1 + 3x3/2 dw transitions
    -> BN -> GAP -> Linear."""

    def __init__(
        self,
        kernel_sizes: tuple[int, ...],
        layers: tuple[int, ...],
        channels: tuple[int, ...],
        small_kernel: int,
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        width = channels[0]
        self.stem = nn.ModuleList(
            [
                conv_bn_relu(in_channels, width, 3, stride=2, padding=1),
                conv_bn_relu(width, width, 3, stride=1, padding=1, groups=width),
                conv_bn_relu(width, width, 1),
                conv_bn_relu(width, width, 3, stride=2, padding=1, groups=width),
            ]
        )
        rates = linear_drop_path_rates(drop_path_rate, sum(layers))
        self.stages = nn.ModuleList()
        self.transitions = nn.ModuleList()
        for index, (kernel, num_blocks, channel) in enumerate(zip(kernel_sizes, layers, channels, strict=True)):
            start = sum(layers[:index])
            self.stages.append(
                RepLKNetStage(channel, num_blocks, kernel, small_kernel, rates[start : start + num_blocks])
            )
            if index < len(layers) - 1:
                following = channels[index + 1]
                self.transitions.append(
                    nn.Sequential(
                        conv_bn_relu(channel, following, 1),
                        conv_bn_relu(following, following, 3, stride=2, padding=1, groups=following),
                    )
                )
        self.norm = nn.BatchNorm2d(channels[-1])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.stem:
            x = layer(x)
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index < len(self.transitions):
                x = self.transitions[index](x)
        return self.head(torch.flatten(self.avgpool(self.norm(x)), 1))

    def reparameterize(self) -> RepLKNet:
        """Merge every small-kernel branch into its large kernel (in place); safe to call twice."""
        for module in self.modules():
            if isinstance(module, ReparamLargeKernelConv):
                module.reparameterize()
        return self


def replknet_31b(*, num_classes: int = 1000, in_channels: int = 3, drop_path_rate: float = 0.0) -> RepLKNet:
    config = REPLKNET_CONFIGS["31b"]
    return RepLKNet(
        config.kernel_sizes,
        config.layers,
        config.channels,
        config.small_kernel,
        num_classes=num_classes,
        in_channels=in_channels,
        drop_path_rate=drop_path_rate,
    )


register_model(
    ModelSpec(
        name="replknet_31b",
        family="replknet",
        paper=DING_2022,
        builder=replknet_31b,
        figures=PaperFigures(
            params=REPLKNET_CONFIGS["31b"].params,
            macs=REPLKNET_CONFIGS["31b"].macs,
            source="Ding et al. 2022, ImageNet-1K results table (RepLKNet-31B at 224^2)",
            note="79,864,168 params (+1.1%) and 15.43 G mult-adds in this training-time form; after reparameterize() "
            "(5x5 branches merged) 79,527,272 params and 15.35 G mult-adds, the paper's 79 M / 15.3 G.",
        ),
        description="RepLKNet-31B: depthwise kernels 31-29-27-13 with parallel 5x5 branches (merged by "
        "reparameterize()), channels 128-256-512-1024, blocks 2-2-18-2.",
    )
)
