"""NASNet-A Mobile, "NASNet-A (4 @ 1056)" (Zoph et al. 2018), the 224x224 ImageNet model.

Module and parameter names follow the widely used Cadene ``pretrainedmodels`` definition (``conv0``, ``cell_stem_0``,
``cell_N.comb_iter_K_left.separable_1.depthwise_conv2d`` ..., ``last_linear``), so its ported ImageNet checkpoint maps
key for key. The cells are written once, as tables of (operation, input) pairs, instead of one class per cell.

Strided convs / pools use TensorFlow 'SAME' padding computed from the input size: the reference model was trained in
TF, and Cadene's pad-then-crop layers are exactly this padding at 224x224 (the stem's VALID 3x3 conv gives 111x111, odd,
where SAME is symmetric; the 56 / 28 / 14 maps are even, where SAME puts the extra row/column bottom/right). Checked
against Cadene's module with its state_dict loaded strictly: max |difference| 2e-7 at 224x224, and this version also
runs at sizes where Cadene's crops mismatch (331x331).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from edgeconv.zoo.efficientnet import Conv2dSame, same_pads, static_hw
from edgeconv.zoo.registry import ModelSpec, Paper, PaperFigures, register_model

ZOPH_2018 = Paper(
    "B. Zoph, V. Vasudevan, J. Shlens, Q. V. Le",
    2018,
    "Learning Transferable Architectures for Scalable Image Recognition",
)
BN_EPS = 1e-3  # TF's batch-norm epsilon


def _same_pads(x: torch.Tensor, kernel: int, stride: int) -> list[int]:
    return same_pads(static_hw(x), (kernel, kernel), (stride, stride), (1, 1))


class MaxPoolSame(nn.Module):
    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(
            F.pad(x, _same_pads(x, self.kernel, self.stride), value=float("-inf")), self.kernel, self.stride
        )


class AvgPoolSame(nn.Module):
    """TF 'SAME' average pool: padded positions are not counted (``count_include_pad=False`` with asymmetric pads)."""

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = _same_pads(x, self.kernel, self.stride)
        total = F.avg_pool2d(F.pad(x, pads), self.kernel, self.stride)
        count = F.avg_pool2d(F.pad(torch.ones_like(x[:1, :1]), pads), self.kernel, self.stride)
        return total / count


def _pool(kind: str, stride: int) -> nn.Module:
    if stride == 1:
        if kind == "max":
            return nn.MaxPool2d(3, stride=1, padding=1)
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    return MaxPoolSame(3, stride) if kind == "max" else AvgPoolSame(3, stride)


class SeparableConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int) -> None:
        super().__init__()
        conv = Conv2dSame if stride > 1 else nn.Conv2d
        padding = 0 if stride > 1 else kernel // 2
        self.depthwise_conv2d = conv(in_channels, in_channels, kernel, stride, padding, groups=in_channels, bias=False)
        self.pointwise_conv2d = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise_conv2d(self.depthwise_conv2d(x))


class BranchSeparables(nn.Module):
    """ReLU -> separable conv (stride) -> BN -> ReLU -> separable conv -> BN: NASNet's "sep kxk" operation.

    ``stem``: the first stem cell's branches read the 32-channel stem conv directly, so they change the channel count in
    the first separable conv instead of the second.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, stem: bool = False) -> None:
        super().__init__()
        mid = out_channels if stem else in_channels
        self.relu = nn.ReLU()  # not in place: the cell's inputs feed several branches
        self.separable_1 = SeparableConv2d(in_channels, mid, kernel, stride)
        self.bn_sep_1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self.relu1 = nn.ReLU()
        self.separable_2 = SeparableConv2d(mid, out_channels, kernel, 1)
        self.bn_sep_2 = nn.BatchNorm2d(out_channels, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn_sep_1(self.separable_1(self.relu(x)))
        return self.bn_sep_2(self.separable_2(self.relu1(x)))


def _relu_conv_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            relu=nn.ReLU(),
            conv=nn.Conv2d(in_channels, out_channels, 1, bias=False),
            bn=nn.BatchNorm2d(out_channels, eps=BN_EPS),
        )
    )


class _PathTwo(nn.Module):
    """Second path of the factorized reduction: shift by one pixel, take every other pixel, 1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:][:, :, ::2, ::2])


# A cell combines its two (pre-processed) inputs, h (this layer's) and p (the previous layer's), in five pairwise sums
# (Fig. 4 of Zoph et al.): (left op, left input), (right op, right input); an input may also be an earlier sum's index.
# Operations: "sepK" (BranchSeparables KxK), "avg" / "max" (3x3 pool), "id" (no module). Stride-2 ops are marked "/2".
Op = tuple[str, str | int]
NORMAL_CELL: tuple[tuple[Op, Op], ...] = (
    (("sep5", "h"), ("sep3", "p")),
    (("sep5", "p"), ("sep3", "p")),
    (("avg", "h"), ("id", "p")),
    (("avg", "p"), ("avg", "p")),
    (("sep3", "h"), ("id", "h")),
)
NORMAL_CONCAT: tuple[str | int, ...] = ("p", 0, 1, 2, 3, 4)
REDUCTION_CELL: tuple[tuple[Op, Op], ...] = (
    (("sep5/2", "h"), ("sep7/2", "p")),
    (("max/2", "h"), ("sep7/2", "p")),
    (("avg/2", "h"), ("sep5/2", "p")),
    (("id", 1), ("avg", 0)),
    (("sep3", 0), ("max/2", "h")),
)
REDUCTION_CONCAT: tuple[str | int, ...] = (1, 2, 3, 4)


class Cell(nn.Module):
    """One NASNet cell. ``kind``: "stem0", "stem1" (reduction cells at the stem), "first" (a normal cell right after a
    reduction: p is twice the size, so it is halved by the factorized reduction), "normal", or "reduction".
    """

    def __init__(self, kind: str, in_prev: int, out_prev: int, in_this: int, channels: int) -> None:
        super().__init__()
        self.kind = kind
        reduction = kind in ("stem0", "stem1", "reduction")
        table, self.concat = (REDUCTION_CELL, REDUCTION_CONCAT) if reduction else (NORMAL_CELL, NORMAL_CONCAT)
        self.conv_1x1 = _relu_conv_bn(in_this, channels)
        if kind in ("stem1", "first"):
            self.relu = nn.ReLU()
            self.path_1 = nn.Sequential(
                OrderedDict(avgpool=nn.AvgPool2d(1, stride=2), conv=nn.Conv2d(in_prev, out_prev, 1, bias=False))
            )
            self.path_2 = _PathTwo(in_prev, out_prev)
            self.final_path_bn = nn.BatchNorm2d(2 * out_prev, eps=BN_EPS)
        elif kind in ("normal", "reduction"):
            self.conv_prev_1x1 = _relu_conv_bn(in_prev, out_prev)
        self.table = table
        for index, pair in enumerate(table):
            for side, (op, source) in zip(("left", "right"), pair, strict=True):
                if op == "id":
                    continue
                stride = 2 if op.endswith("/2") else 1
                name = op.removesuffix("/2")
                if name.startswith("sep"):
                    stem_branch = kind == "stem0" and source == "p"  # reads the raw 32-channel stem conv
                    module: nn.Module = BranchSeparables(
                        in_prev if stem_branch else channels, channels, int(name[3:]), stride, stem_branch
                    )
                else:
                    module = _pool(name, stride)
                setattr(self, f"comb_iter_{index}_{side}", module)

    def forward(self, x: torch.Tensor, x_prev: torch.Tensor) -> torch.Tensor:
        h = self.conv_1x1(x)
        if self.kind == "stem0":
            p = x_prev
        elif self.kind in ("stem1", "first"):
            prev = self.relu(x_prev)
            p = self.final_path_bn(torch.cat((self.path_1(prev), self.path_2(prev)), 1))
        else:
            p = self.conv_prev_1x1(x_prev)
        inputs: dict[str | int, torch.Tensor] = {"h": h, "p": p}
        for index, pair in enumerate(self.table):
            terms = []
            for side, (op, source) in zip(("left", "right"), pair, strict=True):
                value = inputs[source]
                terms.append(value if op == "id" else getattr(self, f"comb_iter_{index}_{side}")(value))
            inputs[index] = terms[0] + terms[1]
        return torch.cat([inputs[k] for k in self.concat], 1)


# Cell sequence of NASNet-A (N=4 normal cells per block): (name, kind, multiple of `filters` for its width).
NASNET_A_MOBILE_CELLS: tuple[tuple[str, str, int], ...] = (
    ("cell_0", "first", 1), ("cell_1", "normal", 1), ("cell_2", "normal", 1), ("cell_3", "normal", 1),
    ("reduction_cell_0", "reduction", 2),
    ("cell_6", "first", 2), ("cell_7", "normal", 2), ("cell_8", "normal", 2), ("cell_9", "normal", 2),
    ("reduction_cell_1", "reduction", 4),
    ("cell_12", "first", 4), ("cell_13", "normal", 4), ("cell_14", "normal", 4), ("cell_15", "normal", 4),
)  # fmt: skip


class NASNetAMobile(nn.Module):
    def __init__(
        self, *, num_classes: int = 1000, stem_filters: int = 32, penultimate_filters: int = 1056, dropout: float = 0.5
    ) -> None:
        super().__init__()
        filters = penultimate_filters // 24  # the last cell concatenates 6 branches of 4 * filters
        self.conv0 = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(3, stem_filters, 3, stride=2, padding=0, bias=False),  # TF 'VALID'
                bn=nn.BatchNorm2d(stem_filters, eps=BN_EPS),
            )
        )
        c0, c1 = filters // 4, filters // 2
        self.cell_stem_0 = Cell("stem0", stem_filters, stem_filters, stem_filters, c0)
        self.cell_stem_1 = Cell("stem1", stem_filters, c1 // 2, 4 * c0, c1)
        # Track (channels, spatial role) of the two most recent outputs to size each cell's 1x1 convs.
        prev, this = 4 * c0, 4 * c1
        self.cell_names: list[str] = []
        for name, kind, mult in NASNET_A_MOBILE_CELLS:
            channels = mult * filters
            out_prev = channels // 2 if kind == "first" else channels
            setattr(self, name, Cell(kind, prev, out_prev, this, channels))
            self.cell_names.append(name)
            prev, this = this, (4 if kind == "reduction" else 6) * channels
        self.relu = nn.ReLU()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.last_linear = nn.Linear(this, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.conv0(x)
        prev, this = stem, self.cell_stem_0(stem, stem)
        prev, this = this, self.cell_stem_1(this, prev)
        for name in self.cell_names:
            prev, this = this, getattr(self, name)(this, prev)
        x = torch.flatten(self.avg_pool(self.relu(this)), 1)
        return self.last_linear(self.dropout(x))


def nasnet_a_mobile(*, num_classes: int = 1000, dropout: float = 0.5) -> NASNetAMobile:
    return NASNetAMobile(num_classes=num_classes, dropout=dropout)


register_model(
    ModelSpec(
        name="nasnet_a_mobile",
        family="nasnet",
        paper=ZOPH_2018,
        builder=nasnet_a_mobile,
        mean=(0.5, 0.5, 0.5),  # the TF / Cadene checkpoints take inputs scaled to [-1, 1]
        std=(0.5, 0.5, 0.5),
        figures=PaperFigures(
            params=5.3e6,
            macs=564e6,
            source="Zoph et al. 2018, Table 3: 'NASNet-A (4 @ 1056) 224x224 5.3 M 564 M' "
            "(seed 003: 'NasNet-A 5.3M 564M')",
            note="5,289,978 params (Cadene's exact count) and 563.6 M conv / FC mult-adds here.",
        ),
        description="NAS-found normal / reduction cells, 4 normal cells per block, 1056 penultimate filters; "
        "Cadene pretrainedmodels key names.",
    )
)
