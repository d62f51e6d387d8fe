"""Identity-tap split (``split_identity_taps``, RepVGG). Re-parameterization adds a block's identity branch to its 3x3
kernel as one large centre tap per channel (``gamma / sigma`` of the identity BN), so each output channel's int8 range
is set by that single weight: repvgg_a0's fused kernels keep 25 dB weight SQNR against 40 dB without the identity
term. ``K = K' + D`` with ``D`` the part of the diagonal centre taps beyond the rest of each channel's range, computed
as ``conv(x, K') + d * x`` (a depthwise 1x1 conv, one weight per channel, exact in int8): the function is unchanged
and ``K'`` gets the range of the 3x3 and 1x1 branches alone.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from edgeconv.quantize.prepare.centring import PaddedConv2d

logger = logging.getLogger(__name__)


class IdentitySplitConv(nn.Module):
    """``conv(x) + identity(x)``: a square stride-1 conv with the outlying part of its diagonal centre taps moved into
    a depthwise 1x1 conv ``identity`` (``split_identity_taps``)."""

    def __init__(self, conv: nn.Conv2d, taps: torch.Tensor) -> None:
        super().__init__()
        self.conv = conv
        self.identity = nn.Conv2d(conv.in_channels, conv.in_channels, 1, groups=conv.in_channels, bias=False)
        self.identity.weight = nn.Parameter(taps.reshape(-1, 1, 1, 1).to(conv.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.identity(x)


@torch.no_grad()
def split_identity_taps(model: nn.Module, min_fraction: float = 0.5) -> list[str]:
    """Split re-parameterized identity branches out of 3x3 kernels, in place; returns the names of the split convs.

    A conv qualifies when it maps C channels to C with stride 1, no groups or dilation, an odd square kernel padded
    to keep the size, and in at least ``min_fraction`` of its channels the diagonal centre tap ``K[c, c, k, k]`` is
    larger than every other weight of channel ``c`` (true of every RepVGG block that had an identity branch, rare by
    chance elsewhere). Each such tap is clipped to the largest other weight of its channel, the excess ``d_c`` moves
    to ``IdentitySplitConv.identity``.
    """
    split = []
    for name, conv in list(model.named_modules()):
        if type(conv) not in (nn.Conv2d, PaddedConv2d):  # other subclasses (timm's Conv2dSame, ...) pad their own way
            continue
        size = conv.kernel_size[0]
        centre = size // 2
        if isinstance(conv, PaddedConv2d):  # a centred input: the padding value does not touch the centre tap
            same = conv.pads == (centre,) * 4
        else:
            same = conv.padding == (centre, centre) and conv.padding_mode == "zeros"
        if (
            conv.in_channels != conv.out_channels
            or conv.groups != 1
            or conv.stride != (1, 1)
            or conv.dilation != (1, 1)
            or conv.kernel_size != (size, size)
            or size % 2 == 0
            or not same
        ):
            continue
        weight = conv.weight
        channels = torch.arange(conv.out_channels)
        taps = weight[channels, channels, centre, centre].clone()
        others = weight.clone()
        others[channels, channels, centre, centre] = 0
        limit = others.abs().amax(dim=(1, 2, 3))
        if (taps.abs() > limit).float().mean() < min_fraction:
            continue
        kept = torch.maximum(torch.minimum(taps, limit), -limit)
        weight[channels, channels, centre, centre] = kept
        model.set_submodule(name, IdentitySplitConv(conv, taps - kept))
        split.append(name)
    if split:
        logger.info("split the identity taps out of %d re-parameterized convs", len(split))
    return split
