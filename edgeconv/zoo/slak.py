"""SLaK (Liu et al. 2023): ConvNeXt with 51x51 kernels, each decomposed into two rectangular depthwise convs.

Every block's token mixer sums three depthwise conv + BN branches: ``Decom1`` (K x 5), ``Decom2`` (5 x K) and a 5x5
``small_conv``, with K = 51, 49, 47, 13 in stages 1-4; the channel widths are ConvNeXt-T's times 1.3. The paper trains
the network sparse (dynamic sparsity, 40% of the conv and linear weights zero) to pay for the 1.3x width. This module is
the **dense** network: sparsity is a training device, a trained sparse checkpoint loads into it as ordinary dense
tensors with zeros, and no inference path needs masks. Attribute names follow the official repository
(github.com/VITA-Group/SLaK, ``models/SLaK.py``), which runs these convs through its own CUDA large-kernel op; with
``nn.Conv2d`` each axis is padded by half of its own kernel length, so every branch keeps the feature-map size.

``reparameterize()`` folds the BNs and adds the 5x5 kernel into the centre of the K x 5 kernel (both are 5 wide),
leaving two depthwise convs with bias per block: ``lkb_reparam_vertical`` (K x 5), ``lkb_reparam_horizontal`` (5 x K).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from edgeconv.zoo.convnext import StochasticDepth, linear_drop_path_rates
from edgeconv.zoo.registry import ModelSpec, Paper, PaperFigures, register_model
from edgeconv.zoo.replknet import conv_bn, fold_conv_bn

LIU_2023 = Paper(
    "S. Liu, T. Chen, X. Chen, X. Chen, Q. Xiao, B. Wu, T. Karkkainen, M. Pechenizkiy, D. C. Mocanu, Z. Wang",
    2023,
    "More ConvNets in the 2020s: Scaling up Kernels Beyond 51x51 using Sparsity",
)


def _depthwise_with(weight: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    """A depthwise conv holding ``weight`` / ``bias``, padded to keep the feature-map size."""
    channels, _, height, width = weight.shape
    # Built on the meta device: no random init, the tensors are replaced right away.
    conv = nn.Conv2d(
        channels, channels, (height, width), padding=(height // 2, width // 2), groups=channels, device="meta"
    )
    conv.weight = nn.Parameter(weight)
    conv.bias = nn.Parameter(bias)
    return conv


class DecomposedLargeKernelConv(nn.Module):
    """Depthwise (K x s) conv-BN + (s x K) conv-BN + s x s conv-BN, summed (K = kernel_size, s = small_kernel)."""

    def __init__(self, channels: int, kernel_size: int, small_kernel: int) -> None:
        super().__init__()
        if not (small_kernel < kernel_size and small_kernel % 2 == kernel_size % 2 == 1):
            raise ValueError(f"small_kernel {small_kernel} must be odd and smaller than kernel_size {kernel_size}")
        self.channels = channels
        self.kernel_size = kernel_size
        self.small_kernel = small_kernel
        big, small = kernel_size, small_kernel
        self.Decom1: nn.Sequential | None = conv_bn(
            channels, channels, (big, small), 1, (big // 2, small // 2), channels
        )
        self.Decom2: nn.Sequential | None = conv_bn(
            channels, channels, (small, big), 1, (small // 2, big // 2), channels
        )
        self.small_conv: nn.Sequential | None = conv_bn(channels, channels, small, 1, small // 2, channels)
        # Registered empty now, so that reparameterize() fills a slot rather than adding a child module while a
        # caller may be iterating over model.modules().
        self.lkb_reparam_vertical: nn.Conv2d | None
        self.register_module("lkb_reparam_vertical", None)
        self.lkb_reparam_horizontal: nn.Conv2d | None
        self.register_module("lkb_reparam_horizontal", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.lkb_reparam_vertical is not None and self.lkb_reparam_horizontal is not None:
            return self.lkb_reparam_vertical(x) + self.lkb_reparam_horizontal(x)
        assert self.Decom1 is not None and self.Decom2 is not None and self.small_conv is not None  # narrowing for mypy
        return self.Decom1(x) + self.Decom2(x) + self.small_conv(x)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold the BNs and merge the small kernel into the vertical one; a second call does nothing."""
        if self.Decom1 is None or self.Decom2 is None or self.small_conv is None:
            return
        vertical, vertical_bias = fold_conv_bn(self.Decom1)
        horizontal, horizontal_bias = fold_conv_bn(self.Decom2)
        small, small_bias = fold_conv_bn(self.small_conv)
        rows = (self.kernel_size - self.small_kernel) // 2
        vertical = vertical + F.pad(small, [0, 0, rows, rows])  # pad order: (left, right, top, bottom)
        self.lkb_reparam_vertical = _depthwise_with(vertical, vertical_bias + small_bias)
        self.lkb_reparam_horizontal = _depthwise_with(horizontal, horizontal_bias)
        self.Decom1 = self.Decom2 = self.small_conv = None


class LayerNorm(nn.Module):
    """LayerNorm over channels of NHWC (``channels_last``) or NCHW (``channels_first``) input, as in ConvNeXt's code."""

    def __init__(self, normalized_shape: int, eps: float = 1e-6, data_format: str = "channels_last") -> None:
        super().__init__()
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(f"data_format {data_format!r}: use 'channels_last' or 'channels_first'")
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))
        self.eps = eps
        self.data_format = data_format
        self.normalized_shape = (normalized_shape,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.data_format == "channels_last":
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Block(nn.Module):
    """Decomposed large-kernel depthwise conv -> LayerNorm -> Linear 4x -> GELU -> Linear, times ``gamma``, + input."""

    def __init__(self, dim: int, kernel_size: int, small_kernel: int, drop_path: float = 0.0) -> None:
        super().__init__()
        self.large_kernel = DecomposedLargeKernelConv(dim, kernel_size, small_kernel)
        self.norm = LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))
        self.drop_path = StochasticDepth(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.large_kernel(x).permute(0, 2, 3, 1)
        out = self.gamma * self.pwconv2(self.act(self.pwconv1(self.norm(out))))
        return x + self.drop_path(out.permute(0, 3, 1, 2))


@dataclass(frozen=True)
class SLaKConfig:
    depths: tuple[int, int, int, int]
    dims: tuple[int, int, int, int]  # ConvNeXt widths before the width factor
    width_factor: float
    kernel_sizes: tuple[int, int, int, int]
    small_kernel: int
    params: float
    macs: float


# The paper's SLaK-T: ConvNeXt-T (3-3-9-3, C=96) at 1.3x width, kernels [51, 49, 47, 13] decomposed into Kx5 + 5xK plus
# a 5x5 branch; its ImageNet-1K table: 30M params, 5.0G FLOPs at 224^2 (counted on the 40%-sparse model).
SLAK_CONFIGS: dict[str, SLaKConfig] = {
    "tiny": SLaKConfig((3, 3, 9, 3), (96, 192, 384, 768), 1.3, (51, 49, 47, 13), 5, 30e6, 5.0e9),
}


class SLaK(nn.Module):
    """ConvNeXt macro design (4x4/4 stem, LayerNorm + 2x2/2 downsampling, 4 stages) with decomposed 51x51 kernels."""

    def __init__(
        self,
        config: SLaKConfig,
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        # int() truncation as in the official code: 124, 249, 499, 998 channels for SLaK-T.
        dims = [int(d * config.width_factor) for d in config.dims]
        self.kernel_sizes = config.kernel_sizes
        self.downsample_layers = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(in_channels, dims[0], kernel_size=4, stride=4),
                    LayerNorm(dims[0], eps=1e-6, data_format="channels_first"),
                )
            ]
        )
        for index in range(3):
            self.downsample_layers.append(
                nn.Sequential(
                    LayerNorm(dims[index], eps=1e-6, data_format="channels_first"),
                    nn.Conv2d(dims[index], dims[index + 1], kernel_size=2, stride=2),
                )
            )
        rates = linear_drop_path_rates(drop_path_rate, sum(config.depths))
        self.stages = nn.ModuleList()
        start = 0
        for index, depth in enumerate(config.depths):
            self.stages.append(
                nn.Sequential(
                    *[
                        Block(dims[index], config.kernel_sizes[index], config.small_kernel, rates[start + j])
                        for j in range(depth)
                    ]
                )
            )
            start += depth
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for downsample, stage in zip(self.downsample_layers, self.stages, strict=True):
            x = stage(downsample(x))
        return self.head(self.norm(x.mean([-2, -1])))

    def reparameterize(self) -> SLaK:
        """Fold every block's BNs and merge its 5x5 branch (in place); safe to call twice."""
        for module in self.modules():
            if isinstance(module, DecomposedLargeKernelConv):
                module.reparameterize()
        return self


def slak_tiny(*, num_classes: int = 1000, in_channels: int = 3, drop_path_rate: float = 0.0) -> SLaK:
    return SLaK(SLAK_CONFIGS["tiny"], num_classes=num_classes, in_channels=in_channels, drop_path_rate=drop_path_rate)


register_model(
    ModelSpec(
        name="slak_tiny",
        family="slak",
        paper=LIU_2023,
        builder=slak_tiny,
        figures=PaperFigures(
            params=SLAK_CONFIGS["tiny"].params,
            macs=SLAK_CONFIGS["tiny"].macs,
            source="Liu et al. 2023, ImageNet-1K results table (SLaK-T at 224^2; the official README gives the same)",
            note="50,703,838 params here (+69%) and 8.70 G mult-adds: this is the dense network. The paper counts the "
            "non-zero weights of its 40%-sparse model (trained with --sparse --sparsity 0.4, masks on the conv and "
            "linear weights): 0.6 x 50.7 M = 30.4 M, its 30 M. Sparsity is not spread uniformly over layers (ERK / "
            "SNIP), so 0.6 x 8.70 G = 5.2 G only approximates its 5.0 G FLOPs. reparameterize() leaves 50,454,322.",
        ),
        description="SLaK-T: ConvNeXt-T at 1.3x width with 51x51 / 49 / 47 / 13 kernels, each a Kx5 + 5xK + 5x5 "
        "depthwise sum; dense (the paper's 40% weight sparsity is a training device).",
    )
)
