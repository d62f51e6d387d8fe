"""ConvNeXt (Liu et al. 2022): a ResNet modernised step by step towards the Swin Transformer's macro design.

Module layout and state_dict keys are torchvision's (``features.N.M.block.K``, ``features.N.M.layer_scale``,
``classifier.0`` LayerNorm2d, ``classifier.2`` Linear), so torchvision checkpoints load strictly. ``StochasticDepth``
defined here is reused by the large-kernel descendants (replknet.py, slak.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from edgeconv.zoo.registry import ModelSpec, Paper, PaperFigures, register_model

LIU_2022 = Paper("Z. Liu, H. Mao, C.-Y. Wu, C. Feichtenhofer, T. Darrell, S. Xie", 2022, "A ConvNet for the 2020s")


class StochasticDepth(nn.Module):
    """Drop the whole residual branch per sample with probability ``p`` while training (Huang et al. 2016).

    In eval mode, or with ``p == 0``, it returns its input unchanged: no randomness can reach an inference path.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


def linear_drop_path_rates(rate: float, count: int) -> list[float]:
    """Stochastic-depth rates rising linearly from 0 (first block) to ``rate`` (last block).

    Plain Python rather than ``torch.linspace(...).tolist()``: that fails when the model is built on the meta device
    (``edgeconv.zoo.count_params``).
    """
    return [rate * index / max(count - 1, 1) for index in range(count)]


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel axis of an NCHW tensor (torchvision's ``LayerNorm2d``: same parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Permute(nn.Module):
    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.permute(x, self.dims)


class CNBlock(nn.Module):
    """7x7 depthwise conv -> LayerNorm -> Linear 4x -> GELU -> Linear, scaled by ``layer_scale``, plus the input."""

    def __init__(self, dim: int, layer_scale: float = 1e-6, stochastic_depth_prob: float = 0.0) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, dim),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.stochastic_depth(self.layer_scale * self.block(x))


@dataclass(frozen=True)
class ConvNeXtConfig:
    depths: tuple[int, int, int, int]
    dims: tuple[int, int, int, int]
    params: float  # paper Table 1 (ImageNet-1K, 224^2)
    macs: float  # paper's "FLOPs", which are multiply-adds (fvcore convention)


# Sec. 3 of the paper: T (3,3,9,3; C=96), S (3,3,27,3; C=96), B (3,3,27,3; C=128).
CONVNEXT_CONFIGS: dict[str, ConvNeXtConfig] = {
    "tiny": ConvNeXtConfig((3, 3, 9, 3), (96, 192, 384, 768), 28e6, 4.5e9),
    "small": ConvNeXtConfig((3, 3, 27, 3), (96, 192, 384, 768), 50e6, 8.7e9),
    "base": ConvNeXtConfig((3, 3, 27, 3), (128, 256, 512, 1024), 89e6, 15.4e9),
}


class ConvNeXt(nn.Module):
    """4x4/4 patchify stem -> 4 stages of CNBlocks with LayerNorm + 2x2/2 conv downsampling -> LN -> Linear."""

    def __init__(
        self,
        depths: tuple[int, ...],
        dims: tuple[int, ...],
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        stochastic_depth_prob: float = 0.0,
        layer_scale: float = 1e-6,
    ) -> None:
        super().__init__()
        stem = nn.Sequential(nn.Conv2d(in_channels, dims[0], kernel_size=4, stride=4), LayerNorm2d(dims[0], eps=1e-6))
        layers: list[nn.Module] = [stem]
        rates = iter(linear_drop_path_rates(stochastic_depth_prob, sum(depths)))
        for stage, (depth, dim) in enumerate(zip(depths, dims, strict=True)):
            blocks = [CNBlock(dim, layer_scale, next(rates)) for _ in range(depth)]
            layers.append(nn.Sequential(*blocks))
            if stage < len(dims) - 1:
                layers.append(
                    nn.Sequential(LayerNorm2d(dim, eps=1e-6), nn.Conv2d(dim, dims[stage + 1], kernel_size=2, stride=2))
                )
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            LayerNorm2d(dims[-1], eps=1e-6), nn.Flatten(1), nn.Linear(dims[-1], num_classes)
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)))


def _convnext(variant: str, num_classes: int, in_channels: int, stochastic_depth_prob: float) -> ConvNeXt:
    config = CONVNEXT_CONFIGS[variant]
    return ConvNeXt(
        config.depths,
        config.dims,
        num_classes=num_classes,
        in_channels=in_channels,
        stochastic_depth_prob=stochastic_depth_prob,
    )


def convnext_tiny(*, num_classes: int = 1000, in_channels: int = 3, stochastic_depth_prob: float = 0.0) -> ConvNeXt:
    return _convnext("tiny", num_classes, in_channels, stochastic_depth_prob)


def convnext_small(*, num_classes: int = 1000, in_channels: int = 3, stochastic_depth_prob: float = 0.0) -> ConvNeXt:
    return _convnext("small", num_classes, in_channels, stochastic_depth_prob)


def convnext_base(*, num_classes: int = 1000, in_channels: int = 3, stochastic_depth_prob: float = 0.0) -> ConvNeXt:
    return _convnext("base", num_classes, in_channels, stochastic_depth_prob)


# torchvision's num_params for the same architectures (its weights metadata): the paper rounds to the million.
_TORCHVISION_PARAMS = {"tiny": "28,589,128", "small": "50,223,688", "base": "88,591,464"}

for _variant, _builder in {"tiny": convnext_tiny, "small": convnext_small, "base": convnext_base}.items():
    _config = CONVNEXT_CONFIGS[_variant]
    register_model(
        ModelSpec(
            name=f"convnext_{_variant}",
            family="convnext",
            paper=LIU_2022,
            builder=_builder,
            figures=PaperFigures(
                params=_config.params,
                macs=_config.macs,
                source=f"Liu et al. 2022, Table 1 (ConvNeXt-{_variant[0].upper()}, ImageNet-1K at 224^2)",
                note=f"{_TORCHVISION_PARAMS[_variant]} params here, exactly torchvision's count; the paper rounds "
                "to the nearest million.",
            ),
            torchvision_name=f"convnext_{_variant}",
            description=f"ConvNeXt-{_variant[0].upper()}: depths {_config.depths}, widths {_config.dims}; 7x7 "
            "depthwise convs, inverted bottlenecks, LayerNorm, GELU, layer scale.",
        )
    )
