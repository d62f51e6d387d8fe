"""Fully convolutional networks for semantic segmentation (Long, Shelhamer & Darrell 2015; seeds 000 and 001):
FCN-32s, FCN-16s and FCN-8s on a convolutionized VGG-16.

The classifier's fc6 / fc7 become convs (``convolutionize``: fc6 a 7x7 conv over the 512-channel map, fc7 a 1x1
conv); fc8 is replaced by a 1x1 "score" conv to ``num_classes``. The class scores, at 1/32 of the input, are upsampled
by transposed convolutions initialized to bilinear interpolation (learnable, as in the paper):

- FCN-32s: one 32x upsampling;
- FCN-16s: 2x, plus a 1x1 score conv on pool4 (1/16), then 16x;
- FCN-8s: as FCN-16s, then 2x again, plus a score conv on pool3 (1/8), then 8x.

Each upsampling has one kernel per class (``groups=num_classes``, see ``bilinear_upsampling``).

The score convs start at zero, as in the paper, so the skips add nothing until trained. Unlike the paper's Caffe
model (conv1 padded by 100, outputs cropped with per-layer offsets), fc6 is padded by 3 and every upsampling is
``ConvTranspose2d(kernel 2f, stride f, padding f/2)``, which maps an n-pixel map to exactly n * f pixels: an input
whose height and width are multiples of 32 gives a label map of its own size, no cropping, and the 7x7 fc6 still
sees exactly the classifier's 7x7 window at the centre of a 224x224 input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from edgeconv.zoo.convolutionize import convolutionize
from edgeconv.zoo.registry import ModelSpec, Paper, PaperFigures, register_model
from edgeconv.zoo.vgg import vgg

LONG_2015 = Paper("J. Long, E. Shelhamer, T. Darrell", 2015, "Fully Convolutional Networks for Semantic Segmentation")

STRIDES = (32, 16, 8)


def bilinear_upsampling(channels: int, factor: int) -> nn.ConvTranspose2d:
    """A transposed conv that upsamples each of ``channels`` maps ``factor`` times, initialized to bilinear
    interpolation (the paper's initialization): kernel ``2 * factor``, stride ``factor``, padding ``factor // 2``.

    One kernel per channel (``groups=channels``): the paper's bilinear initialization has no cross-class weights, and a
    full ``channels x channels`` deconvolution would cost ``channels`` times the weights and mult-adds (1000 classes
    at 32x: 4.1e9 weights instead of 4.1e6)."""
    if factor < 2 or factor % 2:
        raise ValueError(f"upsampling factor {factor} must be even")
    layer = nn.ConvTranspose2d(
        channels, channels, 2 * factor, stride=factor, padding=factor // 2, groups=channels, bias=False
    )
    taps = 1 - torch.abs(torch.arange(2 * factor, dtype=torch.float32) - (factor - 0.5)) / factor
    with torch.no_grad():
        layer.weight.copy_((taps[:, None] * taps[None, :]).expand_as(layer.weight))
    return layer


def _last_conv(layers: nn.Sequential) -> nn.Conv2d:
    """The last conv of ``layers``: its output channels are what a score conv placed after ``layers`` reads."""
    return next(m for m in reversed(layers) if isinstance(m, nn.Conv2d))


def _score(in_channels: int, num_classes: int, zero_init: bool) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, num_classes, 1)
    if zero_init:
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)  # type: ignore[arg-type]  # bias=True
    return conv


class FCN(nn.Module):
    """``features`` (a VGG-style Sequential with at least five max pools), ``head`` (convolutional fc6 / fc7) and
    the score and upsampling layers of FCN-``stride``s. ``(N, 3, H, W) -> (N, num_classes, H, W)``."""

    def __init__(
        self,
        features: nn.Sequential,
        head: nn.Sequential,
        num_classes: int,
        *,
        stride: int = 8,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        if stride not in STRIDES:
            raise ValueError(f"stride {stride} must be one of {', '.join(map(str, STRIDES))} (FCN-32s/16s/8s)")
        pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
        if len(pools) < 5:
            raise ValueError(f"features has {len(pools)} max pools; FCN needs the five of VGG (pool3, pool4, pool5)")
        self.features, self.head, self.stride = features, head, stride
        self.pool3, self.pool4 = pools[2], pools[3]
        self.score = _score(_last_conv(head).out_channels, num_classes, zero_init)
        if stride == 32:
            self.upsample = bilinear_upsampling(num_classes, 32)
            return
        self.score_pool4 = _score(_last_conv(features[: self.pool4]).out_channels, num_classes, zero_init)
        self.up_pool4 = bilinear_upsampling(num_classes, 2)
        if stride == 16:
            self.upsample = bilinear_upsampling(num_classes, 16)
            return
        self.score_pool3 = _score(_last_conv(features[: self.pool3]).out_channels, num_classes, zero_init)
        self.up_pool3 = bilinear_upsampling(num_classes, 2)
        self.upsample = bilinear_upsampling(num_classes, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool3 = pool4 = x
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index == self.pool3:
                pool3 = x
            elif index == self.pool4:
                pool4 = x
        scores = self.score(self.head(x))
        if self.stride <= 16:
            scores = self.up_pool4(scores) + self.score_pool4(pool4)
        if self.stride == 8:
            scores = self.up_pool3(scores) + self.score_pool3(pool3)
        return self.upsample(scores)


def fcn_from_vgg(vgg: nn.Module, num_classes: int = 21, *, stride: int = 8, zero_init: bool = True) -> FCN:
    """FCN-``stride``s on a (trained) zoo VGG: its features, and its fc6 / fc7 convolutionized (fc6 padded by 3).
    ``vgg`` is left unchanged. 21 classes: PASCAL VOC's 20 and background, as in the paper. ``zero_init``: the score
    convs start at zero (the paper, fine-tuning a trained VGG); otherwise PyTorch's default random init."""
    dense = convolutionize(vgg, (3, 224, 224))
    convs = [i for i, m in enumerate(dense.classifier) if isinstance(m, nn.Conv2d)]
    head = nn.Sequential(*dense.classifier[: convs[-1]])  # fc6, fc7 and what follows them; not fc8
    fc6: Any = head[convs[0]]
    fc6.padding = (3, 3)
    features: Any = dense.features
    return FCN(features, head, num_classes, stride=stride, zero_init=zero_init)


def _builder(stride: int) -> Callable[..., FCN]:
    def build(*, num_classes: int = 21, zero_init: bool = False) -> FCN:
        return fcn_from_vgg(vgg("vgg16"), num_classes, stride=stride, zero_init=zero_init)

    build.__name__ = f"fcn{stride}s"
    build.__doc__ = (
        f"FCN-{stride}s on a convolutionized VGG-16. The zoo draws the score convs at random (``zero_init=False``) so "
        "that an untrained network's output depends on every layer; the paper zero-initializes them (``True``)."
    )
    return build


for _stride in STRIDES:
    register_model(
        ModelSpec(
            name=f"fcn{_stride}s",
            family="fcn",
            paper=LONG_2015,
            builder=_builder(_stride),
            input_size=(3, 512, 512),  # PASCAL VOC images are at most 500 a side; a multiple of 32 maps 1:1
            num_classes=21,
            crop_pct=1.0,
            dataset="voc",
            output="label_map",
            figures=PaperFigures(
                params=134e6,
                source="Long et al. 2015, Table 1 (FCN-VGG16: 134M parameters, VGG-16 without fc8)",
            ),
            description=f"FCN-{_stride}s (Long et al. 2015): VGG-16 convolutionized, "
            + {
                32: "class scores at 1/32 upsampled 32x",
                16: "1/32 scores + pool4 scores, upsampled 16x",
                8: "1/32 + pool4 + pool3 scores, upsampled 8x",
            }[_stride]
            + " by bilinear-initialized transposed convs; a label map of the input's size.",
        )
    )
