"""All-convolutional nets (Springenberg et al. 2014): no max pooling (3x3 stride-2 convs instead), no fully connected
layers (1x1 convs and global average pooling instead).

- ``allcnn_c``: All-CNN-C for CIFAR-10 (32x32), the paper's Table 2 model C with pooling replaced by strided convs.
  Padding is "same" for every 3x3 conv except the valid 3x3 conv after the second stride-2 conv, which gives the
  paper's 6x6 global average.
- ``allcnn_imagenet``: the ImageNet network of the paper's Table 6, as reproduced in the seed 000 lecture notes.
  The table gives no padding; edgeconv pads conv1 by 2 and the 5x5/3x3 stride-1 convs to "same", leaving the stride-2
  3x3 convs unpadded, so that a 224x224 input gives AlexNet's 55-27-13-6 maps and the table's 6x6 global pool.

The last 1x1 conv is followed by a ReLU in both tables ("1x1 conv. 10 ReLU"), so class scores are non-negative.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeconv.zoo.registry import CIFAR_MEAN, CIFAR_STD, ModelSpec, Paper, PaperFigures, register_model

SPRINGENBERG_2014 = Paper(
    "J. T. Springenberg, A. Dosovitskiy, T. Brox, M. Riedmiller",
    2014,
    "Striving for Simplicity: The All Convolutional Net",
)

DROPOUT = None  # marks a dropout layer in the tables below
CLASSES = -1  # the last conv's width: num_classes

# (out channels, kernel, stride, padding), DROPOUT after the layers that replace pooling
ALLCNN_C = (
    (96, 3, 1, 1), (96, 3, 1, 1), (96, 3, 2, 1), DROPOUT,
    (192, 3, 1, 1), (192, 3, 1, 1), (192, 3, 2, 1), DROPOUT,
    (192, 3, 1, 0), (192, 1, 1, 0), (CLASSES, 1, 1, 0),
)  # fmt: skip
ALLCNN_IMAGENET = (
    (96, 11, 4, 2), (96, 1, 1, 0), (96, 3, 2, 0),
    (256, 5, 1, 2), (256, 1, 1, 0), (256, 3, 2, 0),
    (384, 3, 1, 1), (384, 1, 1, 0), (384, 3, 2, 0), DROPOUT,
    (1024, 3, 1, 1), (1024, 1, 1, 0), (CLASSES, 1, 1, 0),
)  # fmt: skip

Row = tuple[int, int, int, int] | None


class AllConvNet(nn.Module):
    """Input dropout -> conv/ReLU stack (dropout where pooling used to be) -> global average pool."""

    def __init__(
        self,
        rows: tuple[Row, ...],
        *,
        num_classes: int,
        in_channels: int = 3,
        dropout: float = 0.5,
        input_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Dropout(input_dropout)] if input_dropout else []
        channels = in_channels
        for row in rows:
            if row is DROPOUT:
                layers.append(nn.Dropout(dropout))
                continue
            out, kernel, stride, padding = row
            out = num_classes if out == CLASSES else out
            layers += [nn.Conv2d(channels, out, kernel, stride, padding), nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


def allcnn_c(*, num_classes: int = 10, dropout: float = 0.5, input_dropout: float = 0.2) -> AllConvNet:
    return AllConvNet(ALLCNN_C, num_classes=num_classes, dropout=dropout, input_dropout=input_dropout)


def allcnn_imagenet(*, num_classes: int = 1000, dropout: float = 0.5) -> AllConvNet:
    return AllConvNet(ALLCNN_IMAGENET, num_classes=num_classes, dropout=dropout)


register_model(
    ModelSpec(
        name="allcnn_c",
        family="allcnn",
        paper=SPRINGENBERG_2014,
        builder=allcnn_c,
        input_size=(3, 32, 32),
        num_classes=10,
        mean=CIFAR_MEAN,
        std=CIFAR_STD,
        crop_pct=1.0,  # trained and evaluated on whole images: no centre crop
        dataset="cifar10",
        figures=PaperFigures(
            params=1.4e6,
            macs=None,
            source="Springenberg et al. 2014, Table 3 (CIFAR-10): ALL-CNN-C (and ConvPool-CNN-C), '~1.4 M' parameters",
            note="1,369,738 here (-2.2%): the layer widths are exactly Table 2's model C with strided convs; the "
            "paper prints its counts rounded to one decimal ('~1.4 M'), which covers the gap.",
        ),
        description="All-CNN-C: 3x3 convs 96-96-96/2-192-192-192/2, 3x3 valid, 1x1, 1x1 to classes, global average.",
    )
)

register_model(
    ModelSpec(
        name="allcnn_imagenet",
        family="allcnn",
        paper=SPRINGENBERG_2014,
        builder=allcnn_imagenet,
        figures=PaperFigures(
            params=None,
            macs=None,
            source="Springenberg et al. 2014, Table 6 (ImageNet model), reproduced in seed 000; no exact count given",
            note="9,372,840 parameters here; the paper reports no parameter count for its ImageNet model.",
        ),
        description="All-CNN ImageNet model: 12 convs (11x11/4 first, stride-2 3x3 instead of pooling), 6x6 "
        "global average.",
    )
)
