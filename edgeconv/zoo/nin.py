"""Network in Network (Lin et al. 2013), the CIFAR-10 model.

The seeds cite NIN through its CIFAR-10/100 and SVHN error rates (seed 004's DenseNet table: 10.41% / 8.81% on C10)
and describe the mlpconv idea (seed 001), so this is the CIFAR-10 network of the paper's released Caffe model: three
mlpconv layers (a kxk conv followed by two 1x1 convs, each with ReLU), max / average pooling 3x3/2 with dropout 0.5
between them, and global average pooling over the last mlpconv's 10 maps instead of fully connected layers. The pools
round up (Caffe), giving 32 -> 16 -> 8.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeconv.zoo.registry import CIFAR_MEAN, CIFAR_STD, ModelSpec, Paper, PaperFigures, register_model

LIN_2013 = Paper("M. Lin, Q. Chen, S. Yan", 2013, "Network In Network")

# mlpconv layers: (kernel, padding, widths of the kxk conv and its two 1x1 convs); 0 means num_classes
NIN_CIFAR = (
    (5, 2, (192, 160, 96)),
    (5, 2, (192, 192, 192)),
    (3, 1, (192, 192, 0)),
)


def mlpconv(in_channels: int, widths: tuple[int, int, int], kernel: int, padding: int) -> nn.Sequential:
    """A "micro network": kxk conv then two 1x1 convs (the paper's shared MLP over each patch), ReLU after each."""
    first, second, third = widths
    return nn.Sequential(
        nn.Conv2d(in_channels, first, kernel, padding=padding),
        nn.ReLU(inplace=True),
        nn.Conv2d(first, second, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(second, third, 1),
        nn.ReLU(inplace=True),
    )


class NIN(nn.Module):
    def __init__(self, *, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for index, (kernel, padding, widths) in enumerate(NIN_CIFAR):
            widths = tuple(w or num_classes for w in widths)  # type: ignore[assignment]
            layers.append(mlpconv(channels, widths, kernel, padding))
            channels = widths[-1]
            if index == 0:
                layers += [nn.MaxPool2d(3, 2, ceil_mode=True), nn.Dropout(dropout)]
            elif index == 1:
                layers += [nn.AvgPool2d(3, 2, ceil_mode=True), nn.Dropout(dropout)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


def nin(*, num_classes: int = 10, dropout: float = 0.5) -> NIN:
    return NIN(num_classes=num_classes, dropout=dropout)


register_model(
    ModelSpec(
        name="nin",
        family="nin",
        paper=LIN_2013,
        builder=nin,
        input_size=(3, 32, 32),
        num_classes=10,
        mean=CIFAR_MEAN,
        std=CIFAR_STD,
        crop_pct=1.0,  # trained and evaluated on whole images: no centre crop
        dataset="cifar10",
        figures=PaperFigures(
            params=1.0e6,
            macs=None,
            source="Lin et al. 2013 give no count; Springenberg et al. 2014, Table 3 lists NIN (CIFAR-10) at '~1 M'",
            note="966,986 here (-3.3%): the ~1M figure is a rounded third-party estimate; widths are those of the "
            "paper's released CIFAR-10 model (192-160-96, 192-192-192, 192-192-10).",
        ),
        description="Network in Network for CIFAR-10: 3 mlpconv layers (conv + two 1x1), global average pooling.",
    )
)
