"""RepVGG (Ding et al. 2021) in its training-time multi-branch form, with structural re-parameterization.

Every block sums three branches, ``rbr_dense`` (3x3 conv + BN), ``rbr_1x1`` (1x1 conv + BN) and, where the shape allows,
``rbr_identity`` (BN alone), then applies ReLU. ``reparameterize()`` folds each BN into its branch and adds the three
kernels (1x1 zero-padded to 3x3, identity as a 3x3 kernel with a single 1 at the centre of its own channel) into one 3x3
conv ``rbr_reparam`` with bias: the inference-time VGG-style body. Attribute names follow the official repository
(github.com/DingXiaoH/RepVGG) so that its released training-time (``*-train.pth``) and converted (``*-deploy.pth``)
state_dicts load: the latter after ``reparameterize()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from edgeconv.fuse.bn_fold import fold_bn_weights
from edgeconv.zoo.registry import ModelSpec, Paper, PaperFigures, register_model

DING_2021 = Paper(
    "X. Ding, X. Zhang, N. Ma, J. Han, G. Ding, J. Sun", 2021, "RepVGG: Making VGG-style ConvNets Great Again"
)


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int) -> nn.Sequential:
    # Named children (conv, bn) rather than indices: the official checkpoints use `rbr_dense.conv.weight`.
    branch = nn.Sequential()
    branch.add_module("conv", nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False))
    branch.add_module("bn", nn.BatchNorm2d(out_channels))
    return branch


def _fold_branch(branch: nn.Sequential) -> tuple[torch.Tensor, torch.Tensor]:
    conv, bn = cast(nn.Conv2d, branch.conv), cast(nn.BatchNorm2d, branch.bn)
    return fold_bn_weights(conv.weight, conv.bias, bn)


class RepVGGBlock(nn.Module):
    """3x3 conv-BN + 1x1 conv-BN (+ identity BN when in == out and stride 1), summed, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.nonlinearity = nn.ReLU()
        self.rbr_identity: nn.BatchNorm2d | None = (
            nn.BatchNorm2d(in_channels) if in_channels == out_channels and stride == 1 else None
        )
        self.rbr_dense: nn.Sequential | None = _conv_bn(in_channels, out_channels, 3, stride, 1)
        self.rbr_1x1: nn.Sequential | None = _conv_bn(in_channels, out_channels, 1, stride, 0)
        # Registered empty now, so that reparameterize() fills a slot rather than adding a child module while a
        # caller may be iterating over model.modules().
        self.rbr_reparam: nn.Conv2d | None
        self.register_module("rbr_reparam", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rbr_reparam is not None:
            return self.nonlinearity(self.rbr_reparam(x))
        assert self.rbr_dense is not None and self.rbr_1x1 is not None  # narrowing for mypy; set together
        out = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            out = out + self.rbr_identity(x)
        return self.nonlinearity(out)

    @torch.no_grad()
    def get_equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The single 3x3 kernel and bias equal (in eval mode) to the sum of the three branches."""
        if self.rbr_dense is None or self.rbr_1x1 is None:
            raise RuntimeError("this RepVGGBlock is already re-parameterized; its branches are gone")
        kernel, bias = _fold_branch(self.rbr_dense)
        kernel_1x1, bias_1x1 = _fold_branch(self.rbr_1x1)
        kernel = kernel + F.pad(kernel_1x1, [1, 1, 1, 1])
        bias = bias + bias_1x1
        if self.rbr_identity is not None:
            identity = torch.zeros(self.in_channels, self.in_channels, 3, 3, dtype=kernel.dtype, device=kernel.device)
            identity[:, :, 1, 1] = torch.eye(self.in_channels, dtype=kernel.dtype, device=kernel.device)
            kernel_id, bias_id = fold_bn_weights(identity, None, self.rbr_identity)
            kernel = kernel + kernel_id
            bias = bias + bias_id
        return kernel, bias

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Merge the branches into ``rbr_reparam`` (3x3 conv with bias) and drop them. A second call does nothing."""
        if self.rbr_reparam is not None:
            return
        kernel, bias = self.get_equivalent_kernel_bias()
        # Built on the meta device: its random init would be overwritten anyway and costs seconds on the B models.
        conv = nn.Conv2d(self.in_channels, self.out_channels, 3, self.stride, 1, bias=True, device="meta")
        conv.weight = nn.Parameter(kernel)
        conv.bias = nn.Parameter(bias)
        self.rbr_reparam = conv
        self.rbr_dense = None
        self.rbr_1x1 = None
        self.rbr_identity = None


@dataclass(frozen=True)
class RepVGGConfig:
    """Depths and multipliers of one variant (paper Tables 2-3) and its Table 4 figures (inference-time form)."""

    num_blocks: tuple[int, int, int, int]  # blocks in stages 1-4 (stage 0 is a single block)
    width_multiplier: tuple[float, float, float, float]  # (a, a, a, b): stages 1-3 scale 64/128/256, stage 4 scales 512
    deploy_params: float  # Table 4, "Params (M)" of the converted model
    macs: float  # Table 4, "Theo FLOPs (B)" (multiply-adds) at 224x224


# RepVGG-A: 2-4-14-1 blocks after stage 0; RepVGG-B: 4-6-16-1. Multipliers (a, b) as in the paper.
REPVGG_CONFIGS: dict[str, RepVGGConfig] = {
    "a0": RepVGGConfig((2, 4, 14, 1), (0.75, 0.75, 0.75, 2.5), 8.30e6, 1.4e9),
    "a1": RepVGGConfig((2, 4, 14, 1), (1.0, 1.0, 1.0, 2.5), 12.78e6, 2.4e9),
    "a2": RepVGGConfig((2, 4, 14, 1), (1.5, 1.5, 1.5, 2.75), 25.49e6, 5.1e9),
    "b0": RepVGGConfig((4, 6, 16, 1), (1.0, 1.0, 1.0, 2.5), 14.33e6, 3.1e9),
    "b1": RepVGGConfig((4, 6, 16, 1), (2.0, 2.0, 2.0, 4.0), 51.82e6, 11.8e9),
    "b2": RepVGGConfig((4, 6, 16, 1), (2.5, 2.5, 2.5, 5.0), 80.31e6, 18.4e9),
    "b3": RepVGGConfig((4, 6, 16, 1), (3.0, 3.0, 3.0, 5.0), 110.96e6, 26.2e9),
}


class RepVGG(nn.Module):
    """stage0 (one stride-2 block, min(64, 64a) channels) -> stages 1-4 (first block stride 2) -> GAP -> linear."""

    def __init__(
        self,
        num_blocks: tuple[int, int, int, int],
        width_multiplier: tuple[float, float, float, float],
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        widths = [int(base * mult) for base, mult in zip((64, 128, 256, 512), width_multiplier, strict=True)]
        self.in_planes = min(64, widths[0])
        self.stage0 = RepVGGBlock(in_channels, self.in_planes, stride=2)
        self.stage1 = self._make_stage(widths[0], num_blocks[0])
        self.stage2 = self._make_stage(widths[1], num_blocks[1])
        self.stage3 = self._make_stage(widths[2], num_blocks[2])
        self.stage4 = self._make_stage(widths[3], num_blocks[3])
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(widths[3], num_classes)

    def _make_stage(self, planes: int, num_blocks: int) -> nn.Sequential:
        blocks = []
        for index in range(num_blocks):
            blocks.append(RepVGGBlock(self.in_planes, planes, stride=2 if index == 0 else 1))
            self.in_planes = planes
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage0(x)
        x = self.stage1(x)
        x = self.stage2(x)
        x = self.stage3(x)
        x = self.stage4(x)
        return self.linear(torch.flatten(self.gap(x), 1))

    def reparameterize(self) -> RepVGG:
        """Convert every block to its single-3x3-conv inference form (in place); safe to call twice."""
        for module in self.modules():
            if isinstance(module, RepVGGBlock):
                module.reparameterize()
        return self


def _repvgg(variant: str, *, num_classes: int = 1000, in_channels: int = 3) -> RepVGG:
    config = REPVGG_CONFIGS[variant]
    return RepVGG(config.num_blocks, config.width_multiplier, num_classes=num_classes, in_channels=in_channels)


def repvgg_a0(*, num_classes: int = 1000, in_channels: int = 3) -> RepVGG:
    return _repvgg("a0", num_classes=num_classes, in_channels=in_channels)


def repvgg_a1(*, num_classes: int = 1000, in_channels: int = 3) -> RepVGG:
    return _repvgg("a1", num_classes=num_classes, in_channels=in_channels)


def repvgg_a2(*, num_classes: int = 1000, in_channels: int = 3) -> RepVGG:
    return _repvgg("a2", num_classes=num_classes, in_channels=in_channels)


def repvgg_b0(*, num_classes: int = 1000, in_channels: int = 3) -> RepVGG:
    return _repvgg("b0", num_classes=num_classes, in_channels=in_channels)


def repvgg_b1(*, num_classes: int = 1000, in_channels: int = 3) -> RepVGG:
    return _repvgg("b1", num_classes=num_classes, in_channels=in_channels)


def repvgg_b2(*, num_classes: int = 1000, in_channels: int = 3) -> RepVGG:
    return _repvgg("b2", num_classes=num_classes, in_channels=in_channels)


def repvgg_b3(*, num_classes: int = 1000, in_channels: int = 3) -> RepVGG:
    return _repvgg("b3", num_classes=num_classes, in_channels=in_channels)


# Training-time form, counted here (mmpretrain's RepVGG table lists the same: 9.11 / 14.09 / 28.21 / 15.82 / 57.42 /
# 89.02 / 123.09 M): the 1x1 branches add in*out weights each and every branch its BN (2 params a channel).
_TRAIN_PARAMS = {
    "a0": "9,108,968",
    "a1": "14,092,264",
    "a2": "28,210,600",
    "b0": "15,817,960",
    "b1": "57,415,016",
    "b2": "89,022,376",
    "b3": "123,085,288",
}

for _variant, _builder in {
    "a0": repvgg_a0,
    "a1": repvgg_a1,
    "a2": repvgg_a2,
    "b0": repvgg_b0,
    "b1": repvgg_b1,
    "b2": repvgg_b2,
    "b3": repvgg_b3,
}.items():
    _config = REPVGG_CONFIGS[_variant]
    register_model(
        ModelSpec(
            name=f"repvgg_{_variant}",
            family="repvgg",
            paper=DING_2021,
            builder=_builder,
            figures=PaperFigures(
                params=_config.deploy_params,
                macs=_config.macs,
                source=f"Ding et al. 2021, Table 4 (RepVGG-{_variant.upper()}, inference-time structure)",
                note=f"The paper counts the re-parameterized (deploy) form; this entry builds the training-time "
                f"multi-branch form, {_TRAIN_PARAMS[_variant]} params, larger by the 1x1 branches and the branch BNs. "
                "After reparameterize() the count is within 0.2% of the paper's (tests/test_repvgg.py checks it).",
            ),
            description=f"RepVGG-{_variant.upper()}: blocks {'-'.join(map(str, (1, *_config.num_blocks)))}, "
            f"width multipliers a={_config.width_multiplier[0]}, b={_config.width_multiplier[3]}; "
            "training-time 3x3 + 1x1 + identity branches, reparameterize() gives the plain 3x3 VGG body.",
        )
    )
