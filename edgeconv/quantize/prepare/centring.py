"""Activation centring (``center_unsigned_activations``, tensorrt target). A symmetric int8 grid spends half its levels
on negative values a ReLU6 output never takes; shifting the tensor by half its range and moving the shift into the
biases around it (exact in float) gives it the whole grid.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from torch import nn

from edgeconv.quantize.prepare.cle import find_equalization_pairs
from edgeconv.quantize.prepare.common import conv_bias, observe

logger = logging.getLogger(__name__)


class ShiftedClip(nn.Module):
    """``clamp(x, low, high)``: a ReLU / ReLU6 whose output was shifted down by ``shift`` (exports as ONNX Clip)."""

    def __init__(self, low: float, high: float | None) -> None:
        super().__init__()
        self.low, self.high = low, high

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, min=self.low, max=self.high)


class PaddedConv2d(nn.Conv2d):
    """A conv whose zero padding became an explicit constant ``pad_value`` (exports as ONNX Pad + Conv): the reader of
    a centred activation, whose padding zeros are ``-shift`` in the shifted domain."""

    def __init__(self, conv: nn.Conv2d, pad_value: float) -> None:
        super().__init__(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            0,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
            dtype=conv.weight.dtype,
        )
        ph, pw = conv.padding  # type: ignore[misc]  # int pairs only: _explicit_padding checked
        self.pads, self.pad_value = (pw, pw, ph, ph), pad_value
        self.load_state_dict(conv.state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(nn.functional.pad(x, self.pads, value=self.pad_value))


def _explicit_padding(conv: nn.Conv2d) -> bool | None:
    """True when ``conv`` pads with zeros by an int amount, False when it does not pad, None when it pads otherwise."""
    if type(conv) is not nn.Conv2d:  # PaddedConv2d, or a subclass padding its own way (Conv2dSame)
        return False if conv.kernel_size == (1, 1) and conv.padding in ((0, 0), "valid") else None  # 1x1: no 'same' pad
    if isinstance(conv.padding, str):
        return False if conv.padding == "valid" else None
    if not any(conv.padding):
        return False
    return True if conv.padding_mode == "zeros" else None


@torch.no_grad()
def center_unsigned_activations(
    model: nn.Module, samples: Iterable[torch.Tensor], percentile: float = 99.999
) -> dict[str, float]:
    """Shift every ReLU / ReLU6 output between two convs down by half its range, in place, so that a symmetric int8
    grid uses all of its levels on it; returns ``{activation name: shift}``.

    TensorRT's INT8 is symmetric with zero point 0: a ReLU6 output in ``[0, a]`` gets scale ``a / 127`` and leaves
    the 128 negative levels unused. With ``c = a / 2``: ``conv1``'s bias ``-= c`` and the activation becomes
    ``clamp(x, -c, 6 - c)`` (still one fused Conv + Clip), the tensor spans ``[-c, c]`` (scale ``a / 254``), and
    ``conv2``'s bias ``+= c * sum(W)`` over each output channel's inputs restores the function exactly. A conv2 that
    pads with zeros becomes a ``PaddedConv2d`` padding with ``-c`` (the zeros of the unshifted domain), which keeps it
    exact too. ``a`` is the activation's ``percentile`` over ``samples``, the range the percentile calibrator gives the
    unshifted tensor; quantize it with the range ``[-c, c]`` exactly (``qdq.offsets.centred_ranges``), so that the
    ReLU's zeros, most of the tensor, land on the grid point ``-127`` and not half a step beside it.
    """
    triples = []
    for n1, na, n2 in find_equalization_pairs(model):
        conv1, act, conv2 = model.get_submodule(n1), model.get_submodule(na), model.get_submodule(n2)
        if not (isinstance(conv1, nn.Conv2d) and isinstance(conv2, nn.Conv2d) and isinstance(act, (nn.ReLU, nn.ReLU6))):
            continue
        if _explicit_padding(conv2) is None:
            continue
        triples.append((conv1, na, act, n2, conv2))
    if not triples:
        return {}
    tops: dict[str, list[torch.Tensor]] = {na: [] for _, na, _, _, _ in triples}
    counts = dict.fromkeys(tops, 0)
    keep = 1 - percentile / 100
    samples = list(samples)
    total = sum(len(batch) for batch in samples)

    def record(name: str, output: torch.Tensor) -> None:
        flat = output.detach().flatten()
        counts[name] += flat.numel()
        # as many of each batch's largest values as the whole set's percentile may need: they can all be in one batch
        needed = int(flat.numel() // len(output) * total * keep) + 1
        tops[name].append(flat.topk(min(flat.numel(), needed)).values)

    observe(model, samples, {na: act for _, na, act, _, _ in triples}, record)
    done, padded = {}, []
    for conv1, na, act, n2, conv2 in triples:
        if not counts[na]:
            continue
        values = torch.cat(tops[na]).sort(descending=True).values
        top = float(values[min(len(values) - 1, int(counts[na] * keep))])
        if top <= 0:
            continue
        shift = top / 2
        conv_bias(conv1).sub_(shift)
        conv_bias(conv2).add_(shift * conv2.weight.double().sum(dim=(1, 2, 3)).to(conv2.weight.dtype))
        high = None if isinstance(act, nn.ReLU) else 6.0 - shift
        model.set_submodule(na, ShiftedClip(-shift, high))
        if _explicit_padding(conv2):
            padded.append((n2, conv2, -shift))
        done[na] = shift
    for n2, conv2, value in padded:  # last: conv2 may be the next triple's conv1, whose bias moves too
        model.set_submodule(n2, PaddedConv2d(conv2, value))
    logger.info("centered %d unsigned activations for a symmetric int8 grid", len(done))
    return done
