"""Multi-scale context aggregation by dilated convolutions (Yu & Koltun 2016; seed 002): the "Dilation8" network, a
VGG-16 front end that keeps 1/8 resolution plus the context module, for PASCAL VOC's 21 classes.

Front end (Sec. 4): VGG-16 with its last two pooling layers removed; the convs that followed them are dilated to keep
their receptive fields, conv5 by 2 and fc6 (a 7x7 conv, convolutionized) by 4; fc7 and the final classifier are 1x1
convs. The paper crops its input with reflection padding instead of padding each conv; here every conv is padded, so
the 1/8-resolution score map covers the whole input, and ``features`` keeps VGG-16's layer indices (the removed pools
are ``nn.Identity``): a VGG-16 ``features.N`` checkpoint loads into it.

Context module, basic (Sec. 3, Table 1): ``C`` channels in and out (the class scores), seven 3x3 convs with dilations
1, 1, 2, 4, 8, 16, 1 and a 1x1 conv, ReLU after all but the last; receptive field 67x67. Identity initialization, as
the paper's: each 3x3 filter passes its own channel through its centre tap, so the untrained module returns its input
(the front end's scores, which a ReLU keeps where they are positive). Finally the scores are upsampled 8x bilinearly.

>>> context_module(21)(torch.zeros(1, 21, 64, 64)).shape  # torch.Size([1, 21, 64, 64])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from edgeconv.zoo.registry import ModelSpec, Paper, register_model
from edgeconv.zoo.vgg import VGG_CONFIGS, make_layers

YU_2016 = Paper("F. Yu, V. Koltun", 2016, "Multi-Scale Context Aggregation by Dilated Convolutions")
CONTEXT_DILATIONS = (1, 1, 2, 4, 8, 16, 1)


def context_module(channels: int, dilations: tuple[int, ...] = CONTEXT_DILATIONS) -> nn.Sequential:
    """The basic context module: 3x3 convs with ``dilations`` (ReLU after each), then a 1x1 conv, all ``channels``
    wide and identity-initialized."""
    layers: list[nn.Module] = []
    for dilation in dilations:
        layers += [nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation), nn.ReLU(inplace=True)]
    layers.append(nn.Conv2d(channels, channels, 1))
    with torch.no_grad():
        for conv in (m for m in layers if isinstance(m, nn.Conv2d)):
            conv.weight.zero_()
            centre = conv.kernel_size[0] // 2
            conv.weight[range(channels), range(channels), centre, centre] = 1.0
            conv.bias.zero_()  # type: ignore[union-attr]
    return nn.Sequential(*layers)


def _front_end_features() -> nn.Sequential:
    """VGG-16's ``features`` with pool4 and pool5 as identities and conv5 dilated by 2 (same indices and weights)."""
    features = make_layers(VGG_CONFIGS["vgg16"][1])
    pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
    for index in pools[3:]:
        features[index] = nn.Identity()
    for module in features[pools[3] :]:
        if isinstance(module, nn.Conv2d):
            module.dilation, module.padding = (2, 2), (2, 2)
    return features


class Dilation8(nn.Module):
    """Front end (``features``, ``head``: fc6 / fc7 / final as convs) and context module, upsampled to the input."""

    def __init__(self, num_classes: int = 21, *, context: bool = True) -> None:
        super().__init__()
        self.features = _front_end_features()
        self.head = nn.Sequential(
            nn.Conv2d(512, 4096, 7, padding=12, dilation=4),  # fc6
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Conv2d(4096, 4096, 1),  # fc7
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Conv2d(4096, num_classes, 1),  # final
        )
        self.context = context_module(num_classes) if context else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.head(self.features(x))
        if self.context is not None:
            scores = self.context(scores)
        return F.interpolate(scores, size=x.shape[-2:], mode="bilinear", align_corners=False)


def dilation8(*, num_classes: int = 21, context: bool = True) -> Dilation8:
    return Dilation8(num_classes, context=context)


register_model(
    ModelSpec(
        name="dilation8",
        family="dilation",
        paper=YU_2016,
        builder=dilation8,
        input_size=(3, 512, 512),
        num_classes=21,
        crop_pct=1.0,
        dataset="voc",
        output="label_map",
        description="Yu & Koltun's Dilation8: VGG-16 front end at 1/8 (pool4/pool5 removed, conv5 dilated 2, fc6 "
        "dilated 4) and the basic context module (dilations 1,1,2,4,8,16,1; identity init), upsampled 8x.",
    )
)
