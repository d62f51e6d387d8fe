"""AlexNet (Krizhevsky et al. 2012) and ZFNet (Zeiler & Fergus 2013): five convs, three pools, three fully connected.

Three variants share one ``AlexNet`` class; only the feature table differs:

- ``alexnet``: torchvision's layout (64-192-384-256-256, no LRN, one tower; the "one weird trick" variant of
  Krizhevsky 2014). Its ``state_dict`` is torchvision's.
- ``alexnet_lrn``: the 2012 paper's network: 96-256-384-384-256 kernels, local response normalization after conv1 and
  conv2 (before their pools), overlapping 3x3/2 pooling, and the original two-tower (two-GPU) grouping: conv2, conv4
  and conv5 see only the half of their input on their own GPU, which is ``groups=2``; conv3 and the fc layers cross
  the towers. ``groups=1`` gives the single-tower form (62.4M parameters instead of 61.0M).
- ``zfnet``: Zeiler & Fergus's Fig. 3 model: 7x7/2 first conv, 5x5/2 second conv, normalization after the pools.
  ``wide=True`` gives their larger model with 512-1024-512 conv3-5 (their Table 2; seed 002's "filters doubled").

Feature maps for a 224x224 input are 55-27-13-6 (AlexNet) and 110-55-26-13-6 (ZFNet); the 6x6x256 map feeds fc6.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgeconv.errors import InvalidArgumentError
from edgeconv.zoo.registry import ModelSpec, Paper, PaperFigures, register_model

KRIZHEVSKY_2012 = Paper(
    "A. Krizhevsky, I. Sutskever, G. E. Hinton", 2012, "ImageNet Classification with Deep Convolutional Neural Networks"
)
ZEILER_2013 = Paper("M. D. Zeiler, R. Fergus", 2013, "Visualizing and Understanding Convolutional Networks")


@dataclass(frozen=True)
class ConvRow:
    """One conv layer of the feature table; ``after`` lists what follows its ReLU, in order ("lrn", "pool")."""

    out_channels: int
    kernel: int
    stride: int
    padding: int
    grouped: bool = False  # split across the two GPU towers in the 2012 paper
    after: tuple[str, ...] = ()


# out, kernel, stride, padding, grouped, after-ReLU
TORCHVISION_ALEXNET = (
    ConvRow(64, 11, 4, 2, after=("pool",)),
    ConvRow(192, 5, 1, 2, after=("pool",)),
    ConvRow(384, 3, 1, 1),
    ConvRow(256, 3, 1, 1),
    ConvRow(256, 3, 1, 1, after=("pool",)),
)
PAPER_ALEXNET = (
    ConvRow(96, 11, 4, 2, after=("lrn", "pool")),
    ConvRow(256, 5, 1, 2, grouped=True, after=("lrn", "pool")),
    ConvRow(384, 3, 1, 1),
    ConvRow(384, 3, 1, 1, grouped=True),
    ConvRow(256, 3, 1, 1, grouped=True, after=("pool",)),
)


def _zfnet_rows(wide: bool) -> tuple[ConvRow, ...]:
    c3, c4, c5 = (512, 1024, 512) if wide else (384, 384, 256)
    return (
        ConvRow(96, 7, 2, 1, after=("pool", "lrn")),
        ConvRow(256, 5, 2, 0, after=("pool", "lrn")),
        ConvRow(c3, 3, 1, 1),
        ConvRow(c4, 3, 1, 1),
        ConvRow(c5, 3, 1, 1, after=("pool",)),
    )


def local_response_norm() -> nn.LocalResponseNorm:
    """The paper's LRN: k=2, n=5, alpha=1e-4, beta=0.75.

    The paper sums ``alpha * a_j^2``; PyTorch (like Caffe and ONNX) divides alpha by the window size, so the paper's
    alpha is passed as ``n * alpha``.
    """
    size = 5
    return nn.LocalResponseNorm(size, alpha=size * 1e-4, beta=0.75, k=2.0)


def make_features(
    rows: tuple[ConvRow, ...], *, in_channels: int = 3, groups: int = 1, ceil_pool: bool = False
) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = in_channels
    for row in rows:
        layer_groups = groups if row.grouped else 1
        if channels % layer_groups or row.out_channels % layer_groups:
            raise InvalidArgumentError(
                f"groups={groups} does not divide {channels}->{row.out_channels} channels; use 1 or 2"
            )
        layers += [
            nn.Conv2d(channels, row.out_channels, row.kernel, row.stride, row.padding, groups=layer_groups),
            nn.ReLU(inplace=True),
        ]
        for op in row.after:
            # Caffe (where ZFNet's sizes come from) rounds pooled sizes up: 110 -> 55, 26 -> 13.
            layers.append(local_response_norm() if op == "lrn" else nn.MaxPool2d(3, 2, ceil_mode=ceil_pool))
        channels = row.out_channels
    return nn.Sequential(*layers)


class AlexNet(nn.Module):
    """features -> 6x6 adaptive average pool -> dropout/fc4096/ReLU x2 -> fc (torchvision's attribute names)."""

    def __init__(
        self, features: nn.Sequential, out_channels: int, *, num_classes: int = 1000, dropout: float = 0.5
    ) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))  # identity at 224x224; lets other resolutions reach fc6
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(out_channels * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        # The pool is the identity on a 6x6 map; skipping it there also keeps TorchScript-based ONNX export working
        # after LRN, whose export drops the static shape that adaptive pooling needs.
        if tuple(x.shape[-2:]) != (6, 6):
            x = self.avgpool(x)
        return self.classifier(torch.flatten(x, 1))


def alexnet(*, num_classes: int = 1000, dropout: float = 0.5) -> AlexNet:
    return AlexNet(make_features(TORCHVISION_ALEXNET), 256, num_classes=num_classes, dropout=dropout)


def alexnet_lrn(*, num_classes: int = 1000, dropout: float = 0.5, groups: int = 2) -> AlexNet:
    if groups not in (1, 2):
        raise InvalidArgumentError(
            f"groups {groups!r} is not supported; use 2 (the paper's two towers) or 1 (one tower)"
        )
    return AlexNet(make_features(PAPER_ALEXNET, groups=groups), 256, num_classes=num_classes, dropout=dropout)


def zfnet(*, num_classes: int = 1000, dropout: float = 0.5, wide: bool = False) -> AlexNet:
    rows = _zfnet_rows(wide)
    return AlexNet(make_features(rows, ceil_pool=True), rows[-1].out_channels, num_classes=num_classes, dropout=dropout)


register_model(
    ModelSpec(
        name="alexnet",
        family="alexnet",
        paper=KRIZHEVSKY_2012,
        builder=alexnet,
        figures=PaperFigures(
            params=60e6,
            macs=None,
            source="Krizhevsky et al. 2012, abstract: 'The neural network, which has 60 million parameters'",
            note="61,100,840 here (+1.8%): torchvision's single-tower 64-192-384-256-256 variant (Krizhevsky 2014, "
            "'One weird trick'), no LRN; the paper's own network is alexnet_lrn (60,965,224).",
        ),
        torchvision_name="alexnet",
        description="torchvision AlexNet: 5 convs (11x11/4 first), 3 max pools, 3 fc layers, dropout.",
    )
)

register_model(
    ModelSpec(
        name="alexnet_lrn",
        family="alexnet",
        paper=KRIZHEVSKY_2012,
        builder=alexnet_lrn,
        kwargs={"groups": 2},
        figures=PaperFigures(
            params=60e6,
            macs=None,
            source="Krizhevsky et al. 2012, abstract: 'The neural network, which has 60 million parameters'; seed 000",
            note="60,965,224 here (+1.6%) with the paper's two-tower grouping (groups=2), the same count as Caffe's "
            "bvlc_alexnet; the paper rounds to 60M. groups=1 merges the towers: 62,378,344.",
        ),
        description="The 2012 paper's AlexNet: 96-256-384-384-256, LRN after conv1/conv2, two-tower grouped convs.",
    )
)

register_model(
    ModelSpec(
        name="zfnet",
        family="alexnet",
        paper=ZEILER_2013,
        builder=zfnet,
        kwargs={"wide": False},
        figures=PaperFigures(
            params=None,
            macs=None,
            source="Zeiler & Fergus 2013, Fig. 3 (architecture); the paper gives no parameter count",
            note="62,357,608 parameters here (Fig. 3 model, one tower); wide=True (conv3-5 = 512-1024-512, Table 2) "
            "gives 107,627,624.",
        ),
        description="ZFNet: AlexNet with a 7x7/2 first conv and 5x5/2 second conv; LRN after the first two pools.",
    )
)
