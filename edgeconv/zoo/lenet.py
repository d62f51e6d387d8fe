"""LeNet-5 (LeCun et al. 1998), the earliest convnet in the lecture notes (seed 000)."""

from __future__ import annotations

import torch
from torch import nn

from edgeconv.zoo.registry import ModelSpec, Paper, PaperFigures, register_model

LECUN_1998 = Paper(
    "Y. LeCun, L. Bottou, Y. Bengio, P. Haffner", 1998, "Gradient-Based Learning Applied to Document Recognition"
)


class LeNet5(nn.Module):
    """C1 conv5 -> S2 pool -> C3 conv5 -> S4 pool -> C5 conv5 -> F6 fc84 -> output.

    Modern form: tanh, average pooling without the paper's trainable subsampling coefficients, and C3 fully connected to
    all six S2 maps (the paper's sparse connection table is a 1998 compute-saving device).
    """

    def __init__(self, *, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5),
            nn.Tanh(),
            nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.Tanh(),
            nn.AvgPool2d(2),
            nn.Conv2d(16, 120, 5),
            nn.Tanh(),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def lenet5(*, num_classes: int = 10, in_channels: int = 1) -> LeNet5:
    return LeNet5(num_classes=num_classes, in_channels=in_channels)


register_model(
    ModelSpec(
        name="lenet5",
        family="lenet",
        paper=LECUN_1998,
        builder=lenet5,
        input_size=(1, 32, 32),
        num_classes=10,
        mean=(0.5,),
        std=(0.5,),
        crop_pct=1.0,  # trained and evaluated on whole images: no centre crop
        dataset="mnist",
        figures=PaperFigures(
            params=60_000,
            macs=None,
            source="LeCun et al. 1998, Sec. II-B: 'about 60,000 trainable parameters'",
            note="61,706 here (+2.8%): C3 connects to all six S2 maps (paper: sparse table, 1,516 params) and S2/S4 "
            "are plain average pools (paper: 12 + 32 trainable coefficients); the paper's figure is itself rounded.",
        ),
        description="5-layer convnet for 32x32 digits; tanh and average pooling.",
    )
)
