"""Deformable convolution (Dai et al. 2017, "Deformable Convolutional Networks"; v2: Zhu et al. 2019, "Deformable
ConvNets v2"; seed 002): a conv whose k x k sampling grid is shifted, per output position and per tap, by offsets that
a regular conv predicts from the same input; v2 also scales each tap by a learned mask in [0, 1].

``DeformConv2d`` is the offset (and mask) predictor in front of ``torchvision.ops.DeformConv2d``, which holds the
deformable conv's weight and does the arithmetic (bilinear sampling at the shifted taps, zero outside the image).
The predictor starts at zero, as in both papers: offsets 0 (the regular grid) and, for v2, masks ``sigmoid(0) =
0.5``, so an untrained v1 layer is exactly a regular conv with the same weight and a v2 layer half of it.

ONNX: ``DeformConv`` (opset 19), with the offsets and the mask as inputs computed by the graph's own Conv / Sigmoid
nodes (``edgeconv.export`` teaches the TorchScript exporter to write it; torchvision registers none). Runtimes,
found by running a one-node DeformConv graph on 2026-11-30: ONNX Runtime 1.32's CPU kernel matches torchvision to
5e-7 (``tests/test_zoo_deform.py`` checks a network end to end); OpenVINO 2026.4.1 refuses it ("No conversion rule
found for operations: DeformConv-19"); TensorRT's parser supports it from 10.1, FP32 / FP16 only, by NVIDIA's
operator list (not checked: no TensorRT here).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from edgeconv.errors import BackendUnavailableError
from edgeconv.zoo.registry import ModelSpec, Paper, register_model
from edgeconv.zoo.resnet import RESNET_CONFIGS, Bottleneck, ResNet

DAI_2017 = Paper("J. Dai, H. Qi, Y. Xiong, Y. Li, G. Zhang, H. Hu, Y. Wei", 2017, "Deformable Convolutional Networks")


class DeformConv2d(nn.Module):
    """Deformable conv, v1 (``modulated=False``) or v2 (``modulated=True``): ``offset`` predicts the offsets (and
    masks) with a regular conv on the same grid, ``conv`` is torchvision's deformable conv (bias starting at zero).
    ``offset_groups`` input-channel groups share one set of offsets (and masks).

    A BatchNorm right after it folds into ``conv`` (``fold_target``): each output channel is linear in its own filter
    and bias, whatever the sampling positions."""

    bn_foldable = True

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
        try:
            from torchvision.ops import DeformConv2d as TorchvisionDeformConv2d
        except ImportError:
            raise BackendUnavailableError(
                "deformable convolution (deform_resnet50) computes with torchvision's deform_conv2d: "
                "pip install torchvision"
            ) from None

        if in_channels % offset_groups:
            raise ValueError(f"in_channels {in_channels} must divide by offset_groups {offset_groups}")
        self.conv = TorchvisionDeformConv2d(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=bias
        )
        if isinstance(self.conv.bias, torch.Tensor):
            nn.init.zeros_(self.conv.bias)
        self.modulated = modulated
        kernel = _pair(kernel_size)
        self.taps = offset_groups * kernel[0] * kernel[1]  # sampling points per position: dy, dx (and mask) each
        # Offsets (dy, dx per tap and offset group), then masks for v2: one conv over the same input and grid.
        outputs = self.taps * (3 if modulated else 2)
        self.offset = nn.Conv2d(in_channels, outputs, kernel_size, stride, padding, dilation)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    # ``True``: compute with ``deform_conv2d_grid_sample`` (ONNX GridSample + Conv, opset 16) instead of
    # torchvision's op (ONNX DeformConv, opset 19): for runtimes without DeformConv. Same function.
    grid_sample = False

    @property
    def fold_target(self) -> nn.Module:
        return self.conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        predicted = self.offset(x)
        offset, mask = predicted, None
        if self.modulated:
            offset, mask = predicted[:, : 2 * self.taps], torch.sigmoid(predicted[:, 2 * self.taps :])
        if self.grid_sample:
            conv = self.conv
            return deform_conv2d_grid_sample(
                x, offset, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, mask, conv.groups
            )
        return self.conv(x, offset) if mask is None else self.conv(x, offset, mask)


def deform_conv2d_grid_sample(
    x: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    mask: torch.Tensor | None = None,
    groups: int = 1,
) -> torch.Tensor:
    """``torchvision.ops.deform_conv2d`` from ops every runtime has: one bilinear ``grid_sample`` per offset group
    samples the input at every tap's shifted position (zero outside the image, as torchvision), the v2 mask scales
    the samples, and a grouped 1x1 conv over the ``in_channels x taps`` sampled maps applies the weight.

    Exact up to float rounding; the cost is the sampled maps, ``taps`` (9 for 3x3) times the input's channels at the
    output's size, written to memory and read back (ONNX: GridSample, opset 16, and Conv)."""
    n, channels, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    taps = kh * kw
    out_h, out_w = offset.shape[-2:]
    offset_groups = offset.shape[1] // (2 * taps)
    # Tap positions on the regular grid: output (y, x) and tap (i, j) sample at y * s - p + i * d (same for x).
    ys = torch.arange(out_h, dtype=x.dtype, device=x.device) * stride[0] - padding[0]
    xs = torch.arange(out_w, dtype=x.dtype, device=x.device) * stride[1] - padding[1]
    ti = (torch.arange(kh, dtype=x.dtype, device=x.device) * dilation[0]).repeat_interleave(kw)  # (taps,)
    tj = (torch.arange(kw, dtype=x.dtype, device=x.device) * dilation[1]).repeat(kh)
    base_y = ti[:, None, None] + ys[None, :, None]  # (taps, out_h, 1)
    base_x = tj[:, None, None] + xs[None, None, :]  # (taps, 1, out_w)
    offset = offset.reshape(n, offset_groups, taps, 2, out_h, out_w)
    py = base_y + offset[:, :, :, 0]  # (n, groups, taps, out_h, out_w), torchvision's (dy, dx) order
    px = base_x + offset[:, :, :, 1]
    # grid_sample's normalized coordinates (align_corners=False): pixel p is at (2 p + 1) / size - 1.
    grid = torch.stack(((2 * px + 1) / width - 1, (2 * py + 1) / height - 1), dim=-1)
    per_group = channels // offset_groups
    sampled = []
    for g in range(offset_groups):
        part = x[:, g * per_group : (g + 1) * per_group]
        where = grid[:, g].reshape(n, taps * out_h, out_w, 2)  # taps stacked along the height
        sampled.append(
            torch.nn.functional.grid_sample(part, where, mode="bilinear", padding_mode="zeros", align_corners=False)
        )
    columns = torch.cat(sampled, dim=1).reshape(n, offset_groups, per_group, taps, out_h, out_w)
    if mask is not None:
        columns = columns * mask.reshape(n, offset_groups, 1, taps, out_h, out_w)
    columns = columns.reshape(n, channels * taps, out_h, out_w)  # (channel, tap) order, as weight.reshape flattens
    return torch.nn.functional.conv2d(columns, weight.reshape(out_channels, -1, 1, 1), bias, groups=groups)


def deformable_resnet(
    resnet: ResNet, stages: tuple[bool, bool, bool, bool] = (False, True, True, True), *, modulated: bool = False
) -> ResNet:
    """Replace the 3x3 conv of every bottleneck in the chosen stages (conv2_x .. conv5_x) by a ``DeformConv2d`` with
    the same shape, in place; its regular weight is kept (the offsets start at zero: the same function)."""
    for layer, wanted in zip((resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4), stages, strict=True):
        if not wanted:
            continue
        for block in layer:
            if not isinstance(block, Bottleneck):
                raise ValueError(f"deformable_resnet takes bottleneck ResNets, not {type(block).__name__} blocks")
            conv: Any = block.conv2
            deform = DeformConv2d(
                conv.in_channels,
                conv.out_channels,
                conv.kernel_size,
                conv.stride,
                conv.padding,
                conv.dilation,
                conv.groups,
                modulated=modulated,
                bias=False,
            ).to(device=conv.weight.device, dtype=conv.weight.dtype)
            with torch.no_grad():
                deform.conv.weight.copy_(conv.weight)
            block.conv2 = deform  # type: ignore[assignment]
    return resnet


def deform_resnet50(*, num_classes: int = 1000, modulated: bool = False, zero_offsets: bool = False) -> ResNet:
    """ResNet-50 with deformable 3x3 convs in conv3_x .. conv5_x (13 layers; Zhu et al. 2019's setting, which Dai et
    al. 2017 Table 1 extends from conv5 to conv3-5). ``zero_offsets``: the papers' start for fine-tuning (the network
    is then exactly a ResNet-50); the zoo's default draws the offset predictors with PyTorch's conv init, so that an
    untrained network samples off the grid (offsets of about a pixel in conv3, tens of pixels in conv5, on a photo at
    224) and every check exercises the deformation."""
    model = deformable_resnet(
        ResNet.from_config(RESNET_CONFIGS["resnet50"], num_classes=num_classes), modulated=modulated
    )
    if not zero_offsets:
        for module in model.modules():
            if isinstance(module, DeformConv2d):
                module.offset.reset_parameters()
    return model


register_model(
    ModelSpec(
        name="deform_resnet50",
        family="deform_resnet",
        paper=DAI_2017,
        builder=deform_resnet50,
        min_opset=19,  # ONNX DeformConv
        description="ResNet-50 with deformable 3x3 convs in conv3-conv5 (v1 offsets; modulated=True: v2 offsets and "
        "masks). Exports as ONNX DeformConv (opset 19): ONNX Runtime runs it, OpenVINO does not.",
    )
)
