"""U-Net (Ronneberger, Fischer & Brox 2015, "U-Net: Convolutional Networks for Biomedical Image Segmentation"; seed
000): a contracting path of 3x3 convs and 2x2 max pools, an expanding path of 2x2 up-convolutions, each followed by
the concatenation of the contracting path's map at the same scale and two 3x3 convs, and a 1x1 conv to class scores
per pixel.

Two forms share one class:

- ``padding=0``, the paper's network: every 3x3 conv is "valid" (unpadded), so each loses a 1-pixel border; the skip
  map is centre-cropped to the up-sampled map before concatenation. A 572x572 tile gives a 388x388 label map (the
  paper's Fig. 1), the centre of the tile: the border is context only (the overlap-tile strategy).
- ``padding=1``, the common variant: same-size convs, no cropping, output the size of the input (which must be a
  multiple of ``2 ** depth``); optional BatchNorm after each conv.

``width`` is the first level's channel count (64 in the paper, doubling per level to 1024), ``depth`` the number of
pooling steps (4 in the paper).

>>> UNet()(torch.zeros(1, 1, 572, 572)).shape  # torch.Size([1, 2, 388, 388])
"""

from __future__ import annotations

import torch
from torch import nn

from edgeconv.errors import InvalidArgumentError
from edgeconv.zoo.registry import ModelSpec, Paper, register_model

RONNEBERGER_2015 = Paper(
    "O. Ronneberger, P. Fischer, T. Brox", 2015, "U-Net: Convolutional Networks for Biomedical Image Segmentation"
)


def _double_conv(in_channels: int, out_channels: int, padding: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for channels in (in_channels, out_channels):
        layers.append(nn.Conv2d(channels, out_channels, 3, padding=padding, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def centre_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The centre ``height x width`` of an (N, C, H, W) map (the paper's "cropping" of the skip connection)."""
    top, left = (x.shape[-2] - height) // 2, (x.shape[-1] - width) // 2
    return x[..., top : top + height, left : left + width]


class UNet(nn.Module):
    """``(N, in_channels, H, W) -> (N, num_classes, H', W')``: H' = H for ``padding=1``; the paper's valid convs give
    H' = H - 184 at depth 4 (572 -> 388)."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        *,
        width: int = 64,
        depth: int = 4,
        padding: int = 0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if padding not in (0, 1):
            raise ValueError(f"padding {padding} must be 0 (the paper's valid convs) or 1 (same-size convs)")
        if depth < 1 or width < 1:
            raise ValueError(f"depth {depth} and width {width} must be at least 1")
        self.depth, self.padding = depth, padding
        channels = [width * 2**level for level in range(depth + 1)]
        self.down = nn.ModuleList(
            _double_conv(c_in, c_out, padding, batch_norm)
            for c_in, c_out in zip([in_channels, *channels[:-1]], channels, strict=True)
        )
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(nn.ConvTranspose2d(c, c // 2, 2, stride=2) for c in reversed(channels[1:]))
        self.decode = nn.ModuleList(_double_conv(c, c // 2, padding, batch_norm) for c in reversed(channels[1:]))
        self.head = nn.Conv2d(channels[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing():  # a traced size is symbolic: the export's own forward has checked it
            for side in {int(x.shape[-2]), int(x.shape[-1])}:
                if not takes_size(side, self.depth, self.padding):
                    raise InvalidArgumentError(size_error(side, self.depth, self.padding))
        skips = []
        for level, block in enumerate(self.down):
            x = block(x)
            if level < self.depth:
                skips.append(x)
                x = self.pool(x)
        for up, block, skip in zip(self.up, self.decode, reversed(skips), strict=True):
            x = up(x)
            if self.padding == 0:
                skip = centre_crop(skip, x.shape[-2], x.shape[-1])
            x = block(torch.cat([skip, x], dim=1))
        return self.head(x)


def _valid_output(size: int, depth: int) -> int | None:
    """The paper's valid-conv U-Net on a side of ``size`` pixels: the label map's side, or None where the side does
    not go through (a pooled map of odd side, whose up-convolved map would sit half a pixel off the cropped skip, or
    nothing left). Each valid 3x3 conv loses a pixel on each side: two per double conv, 4 pixels."""
    for _ in range(depth):
        size -= 4
        if size < 2 or size % 2:
            return None
        size //= 2
    size -= 4
    for _ in range(depth):
        size = size * 2 - 4
    return size if size >= 1 else None


def takes_size(size: int, depth: int = 4, padding: int = 0) -> bool:
    """Whether a side of ``size`` pixels goes through: every map that is pooled must have an even side (the 2x2 up-
    convolutions must meet the skip maps), and the paper's valid convs must leave at least one output pixel."""
    if padding:
        return size > 0 and size % 2**depth == 0
    return _valid_output(size, depth) is not None


def smallest_size(depth: int = 4, padding: int = 0) -> int:
    """The smallest side the network takes; the others are this plus multiples of ``2 ** depth`` (188 at depth 4)."""
    return next(s for s in range(1, 2 ** (depth + 4)) if takes_size(s, depth, padding))


def nearest_sizes(size: int, depth: int = 4, padding: int = 0) -> list[int]:
    """The sides closest to ``size`` that the network takes: one below (where there is one) and one above."""
    step, first = 2**depth, smallest_size(depth, padding)
    near = [first + k * step for k in range(max(0, (size - first) // step - 1), max(0, (size - first) // step) + 3)]
    below = [s for s in near if s < size]
    return [*below[-1:], next(s for s in near if s > size)]


def size_error(size: int, depth: int = 4, padding: int = 0) -> str:
    first, step = smallest_size(depth, padding), 2**depth
    rule = f"{first} + {step} k pixels" + ("" if padding else " (each valid 3x3 conv loses a pixel on each side)")
    nearest = " or ".join(map(str, nearest_sizes(size, depth, padding)))
    return f"U-Net (depth {depth}) cannot take a side of {size} pixels: it needs {rule}; use {nearest}"


def output_size(input_size: int, depth: int = 4, padding: int = 0) -> int:
    """The label map's side for a square input tile the network takes (``takes_size``)."""
    side = input_size if padding else _valid_output(input_size, depth)
    if side is None or not takes_size(input_size, depth, padding):
        raise InvalidArgumentError(size_error(input_size, depth, padding))
    return side


def unet(
    *, in_channels: int = 1, num_classes: int = 2, width: int = 64, depth: int = 4, batch_norm: bool = False
) -> UNet:
    """The paper's network: valid convs, a 572x572 tile to a 388x388 label map (Fig. 1)."""
    return UNet(in_channels, num_classes, width=width, depth=depth, padding=0, batch_norm=batch_norm)


def unet_padded(
    *, in_channels: int = 1, num_classes: int = 2, width: int = 64, depth: int = 4, batch_norm: bool = True
) -> UNet:
    """The common variant: same-size convs with BatchNorm, a label map of the input's size."""
    return UNet(in_channels, num_classes, width=width, depth=depth, padding=1, batch_norm=batch_norm)


for _builder, _size, _min, _what in (
    (
        unet,
        572,
        smallest_size(4, 0),
        "The paper's valid-conv network: a 572x572 tile gives the 388x388 label map of "
        "its centre (Fig. 1); sides 188 + 16 k.",
    ),
    (
        unet_padded,
        512,
        smallest_size(4, 1),
        "Same-size 3x3 convs with BatchNorm: a label map of the input's size; sides a multiple of 16.",
    ),
):
    register_model(
        ModelSpec(
            name=_builder.__name__,
            family="unet",
            paper=RONNEBERGER_2015,
            builder=_builder,
            input_size=(1, _size, _size),
            num_classes=2,
            mean=(0.5,),
            std=(0.5,),
            crop_pct=1.0,
            dataset="binary",  # foreground / background per pixel (the paper's EM cell segmentation)
            output="label_map",
            min_input=_min,
            description=_what + " Width and depth configurable.",
        )
    )
