"""Deformable convolution (Dai et al. 2017, "Deformable Convolutional Networks"; v2: Zhu et al. 2019, "Deformable
ConvNets v2"; seed 002): a conv whose k x k sampling grid is shifted, per output position and per tap, by offsets that
a regular conv predicts from the same input; v2 also scales each tap by a learned mask in [0, 1].

``DeformConv2d`` holds the offset (and mask) predictor and the deformable conv's own weight; the arithmetic is
``torchvision.ops.deform_conv2d`` (bilinear sampling at the shifted taps, zero outside the image). The predictor starts
at zero, as in both papers: offsets 0 (the regular grid) and, for v2, masks ``sigmoid(0) = 0.5``, so an untrained v1
layer is exactly a regular conv with the same weight and a v2 layer half of it.

ONNX: ``DeformConv`` (opset 19), with the offsets and the mask as inputs computed by the graph's own Conv / Sigmoid
nodes. ``register_onnx_symbolic`` teaches the TorchScript exporter to write it; torchvision registers none. Runtimes,
found by running a one-node DeformConv graph on 2026-11-30: ONNX Runtime 1.32's CPU kernel matches torchvision to
5e-7 (``tests/test_zoo_deform.py`` checks a network end to end); OpenVINO 2026.4.1 refuses it ("No conversion rule
found for operations: DeformConv-19"); TensorRT's parser has it from 10.1 (FP32 / FP16, not INT8; not runnable here).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.utils import _pair

DEFORM_CONV_OPSET = 19  # the first opset with DeformConv


class DeformConv2d(nn.Module):
    """Deformable conv, v1 (``modulated=False``) or v2 (``modulated=True``). ``offset_groups`` input-channel groups
    share one set of offsets (and masks)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 1,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        *,
        offset_groups: int = 1,
        modulated: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups or in_channels % offset_groups:
            raise ValueError(
                f"in_channels {in_channels} and out_channels {out_channels} must divide by groups {groups}, and "
                f"in_channels by offset_groups {offset_groups}"
            )
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation = _pair(padding), _pair(dilation)
        self.groups, self.offset_groups, self.modulated = groups, offset_groups, modulated
        taps = self.kernel_size[0] * self.kernel_size[1]
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Conv2d's default
        # Offsets (dy, dx per tap and offset group), then masks for v2: one conv over the same input and grid.
        self.offset = nn.Conv2d(
            in_channels,
            offset_groups * taps * (3 if modulated else 2),
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
        )
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torchvision.ops import deform_conv2d

        predicted = self.offset(x)
        mask = None
        if self.modulated:
            taps = self.offset_groups * self.kernel_size[0] * self.kernel_size[1]
            predicted, mask = predicted[:, : 2 * taps], torch.sigmoid(predicted[:, 2 * taps :])
        return deform_conv2d(
            x,
            predicted,
            self.weight,
            self.bias,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            mask=mask,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.weight.shape[1] * self.groups}, {self.weight.shape[0]}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, groups={self.groups}, "
            f"offset_groups={self.offset_groups}, modulated={self.modulated}"
        )


def _deform_conv2d_symbolic(  # noqa: PLR0913 - torchvision's op signature
    g: torch.onnx.utils.GraphContext,  # type: ignore[name-defined]
    input: torch.Value,  # noqa: A002
    weight: torch.Value,
    offset: torch.Value,
    mask: torch.Value,
    bias: torch.Value,
    stride_h: torch.Value,
    stride_w: torch.Value,
    pad_h: torch.Value,
    pad_w: torch.Value,
    dil_h: torch.Value,
    dil_w: torch.Value,
    n_weight_grps: torch.Value,
    n_offset_grps: torch.Value,
    use_mask: torch.Value,
) -> torch.Value:
    """``torchvision::deform_conv2d`` as ONNX ``DeformConv``: the same inputs (the mask only when one was given),
    strides, pads (begin and end alike), dilations and groups."""
    from torch.onnx import symbolic_helper

    def const(value: torch.Value, name: str) -> int:
        return int(symbolic_helper._get_const(value, "i", name))

    inputs = [input, weight, offset, bias]
    if const(use_mask, "use_mask"):
        inputs.append(mask)
    pads = [const(pad_h, "pad_h"), const(pad_w, "pad_w")]
    return g.op(
        "DeformConv",
        *inputs,
        strides_i=[const(stride_h, "stride_h"), const(stride_w, "stride_w")],
        pads_i=pads + pads,
        dilations_i=[const(dil_h, "dil_h"), const(dil_w, "dil_w")],
        group_i=const(n_weight_grps, "n_weight_grps"),
        offset_group_i=const(n_offset_grps, "n_offset_grps"),
    )


def register_onnx_symbolic() -> None:
    """Let ``torch.onnx.export`` (TorchScript) write ``torchvision::deform_conv2d`` as ``DeformConv`` at opset 19 and
    above. Safe to call more than once."""
    for opset in range(DEFORM_CONV_OPSET, 22):
        torch.onnx.register_custom_op_symbolic("torchvision::deform_conv2d", _deform_conv2d_symbolic, opset)
