"""VGG (Simonyan & Zisserman 2015): stacks of 3x3 convs between 2x2 max pools, then three fully connected layers.

torchvision's layout and ``state_dict`` keys (``features.N``, ``classifier.N``); configurations A, B, D, E of the
paper's Table 1 are vgg11, vgg13, vgg16, vgg19. The ``_bn`` variants put BatchNorm after every conv, as torchvision
does (the paper predates BatchNorm).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from edgeconv.zoo.registry import ModelSpec, Paper, PaperFigures, register_model

SIMONYAN_2015 = Paper(
    "K. Simonyan, A. Zisserman", 2015, "Very Deep Convolutional Networks for Large-Scale Image Recognition"
)

POOL = 0  # a 2x2/2 max pool in the config lists

# name: (paper column, conv widths with POOL markers, paper's Table 2 parameter count)
VGG_CONFIGS: dict[str, tuple[str, tuple[int, ...], float]] = {
    "vgg11": ("A", (64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL), 133e6),
    "vgg13": ("B", (64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL), 133e6),
    "vgg16": (
        "D",
        (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL),
        138e6,
    ),
    "vgg19": (
        "E",
        (64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL, 512, 512, 512, 512, POOL, 512, 512, 512, 512, POOL),
        144e6,
    ),
}


def make_layers(config: tuple[int, ...], *, batch_norm: bool = False, in_channels: int = 3) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in config:
        if width == POOL:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(in_channels, width, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(width))
        layers.append(nn.ReLU(inplace=True))
        in_channels = width
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, features: nn.Sequential, *, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))  # identity at 224x224
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        for m in self.modules():  # torchvision's init
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def vgg(config: str, *, batch_norm: bool = False, num_classes: int = 1000, dropout: float = 0.5) -> VGG:
    return VGG(make_layers(VGG_CONFIGS[config][1], batch_norm=batch_norm), num_classes=num_classes, dropout=dropout)


def _builder(config: str, batch_norm: bool) -> Callable[..., VGG]:
    def build(*, num_classes: int = 1000, dropout: float = 0.5) -> VGG:
        return vgg(config, batch_norm=batch_norm, num_classes=num_classes, dropout=dropout)

    build.__name__ = config + ("_bn" if batch_norm else "")
    return build


# VGG16's mult-adds: MobileNet Table 8 (15,300M), in the seed 000 notes; SENet's re-implementation: 15.47 GFLOPs
VGG16_MACS = 15.3e9

for _config, (_column, _widths, _paper_params) in VGG_CONFIGS.items():
    for _bn in (False, True):
        _name = _config + ("_bn" if _bn else "")
        _note = (
            "torchvision counts (the paper rounds to millions)."
            if not _bn
            else "BatchNorm after each conv is torchvision's addition (the paper has none): +2 params per conv channel."
        )
        register_model(
            ModelSpec(
                name=_name,
                family="vgg",
                paper=SIMONYAN_2015,
                builder=_builder(_config, _bn),
                figures=PaperFigures(
                    params=_paper_params,
                    macs=VGG16_MACS if _config == "vgg16" else None,
                    source=f"Simonyan & Zisserman 2015, Table 2 (configuration {_column})"
                    + ("; mult-adds: Howard et al. 2017 (MobileNet) Table 8" if _config == "vgg16" else ""),
                    note=_note,
                ),
                torchvision_name=_name,
                description=f"VGG configuration {_column}{' with BatchNorm' if _bn else ''}: 3x3 convs, 5 max pools, "
                "3 fc layers.",
            )
        )
