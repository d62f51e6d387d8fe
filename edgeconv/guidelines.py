"""ShuffleNet V2's four guidelines, measured: the micro-benchmarks of Ma, Zhang, Zheng and Sun, "ShuffleNet V2:
Practical Guidelines for Efficient CNN Architecture Design", ECCV 2018 (arXiv 1807.11164), Tables 1-4.

- **G1** (Table 1): equal channel widths minimise memory access cost. 10 blocks of two 1x1 convs, ``c1 -> c2`` then
  ``c2 -> c1``, at ``c1:c2`` = 1:1, 1:2, 1:6, 1:12 and equal mult-adds.
- **G2** (Table 2): excessive group convolution increases memory access cost. 10 stacked 1x1 group convs at
  ``g`` = 1, 2, 4, 8 and equal mult-adds.
- **G3** (Table 3): fragmentation reduces the degree of parallelism. 10 blocks of 1, 2 or 4 1x1 convs in series or in
  parallel, at the 1-fragment block's mult-adds.
- **G4** (Table 4): element-wise operations are not free. 10 ResNet bottleneck units with and without their ReLUs
  and their shortcut.

The paper's figures are data here (:data:`GUIDELINES`), exactly as printed: GPU in batches per second (GTX 1080Ti,
cuDNN 7.0), ARM in images per second (Snapdragon 810, one thread; Tables 2-4 label the column "CPU", the text says
ARM), each at three sizes (Tables 1-2: "x1, x2, x4"; Tables 3-4: three channel counts). Every network is built from a
typed config per row, for the paper's GPU channel counts and for its ARM ones (:class:`PaperRow`); edgeconv measures
the ARM channel counts on a CPU and the GPU ones on CUDA (``columns`` overrides). The paper compares rows within a
table, so each speed is also shown normalised to the table's first row, beside the paper's own ratio, and each
guideline gets a verdict by a stated rule (:class:`Guideline`), applied alike to the paper's figures and to edgeconv's.

What the paper leaves open, and how it is read here (:data:`READINGS`, also written into every results file):

- **Batch size.** Tables 1-4 state none (Fig. 1 and Table 8 use 8 on the GPU and 1 on ARM). At batch 8 the GPU
  figures would exceed the GTX 1080Ti's fp32 peak (11.3 TFLOPS): Table 3's 1-fragment network at c=512 has
  10 x 56^2 x 512^2 = 8.2 G mult-adds per image, and 434 batches/s of 8 would be 57 TFLOPS; at batch 1 it is 7.1.
  So edgeconv runs batch 1 on both devices (``batch`` runs the other reading).
- **"x1, x2, x4"** (Tables 1-2): the channel counts multiplied by 1, 2 and 4. Table 2's g=1 row (10 dense 1x1 convs
  at c=128 on the GPU, 64 on ARM) at x1/x2/x4 (2451/1289/437 batches/s; 40.0/10.2/2.3 images/s) is Table 3's
  1-fragment row at c=128/256/512 (2446/1274/434) and c=64/128/256 (40.2/10.1/2.3): the same network at 2c and 4c.
- **Layers.** Tables 1-3 name only convolutions: edgeconv's have no bias, BatchNorm or activation (with the paper's
  "tensor fusion", a folded BatchNorm would be a bias at most). Weights are N(0, 1/fan-in) from a fixed seed, so
  activations keep their scale through the stack.
- **G2 on ARM at g=8**: the paper prints c=180, which 8 groups cannot divide (180/8 = 22.5); edgeconv uses 184, the
  multiple of 8 nearest the equal-mult-add width sqrt(8 x 64^2) = 181 (+3.3% mult-adds).
- **G3's blocks** are drawn in the paper's appendix (Fig. 1); its text does not say how parallel fragments are
  joined. edgeconv joins them by concatenation, Inception-style: each of the k branches is a 1x1 conv from all c
  input channels to c/k outputs, so the block has the 1-fragment block's mult-adds at the same c and adds no
  element-wise operation (which G4 measures on its own). Series blocks chain k convs of round(c / sqrt(k)) channels.
- **G4's unit** is ResNet's bottleneck: c input and output channels, c/4 inside (1x1 c -> c/4, 3x3, 1x1 c/4 -> c),
  a ReLU after each conv (the last one after the shortcut's addition), at 56x56 like Tables 1-3 (Table 4 states no
  input size). Three convs of c channels each at 56x56 would need 20-28 G mult-adds/s from one Snapdragon 810
  thread, above a Cortex-A57 core's fp32 peak; the bottleneck needs 1.9-2.7 G/s.

A speed is ``1000 x batch / ms per batch`` images/s on a CPU, ``1000 / ms per batch`` batches/s on CUDA (the
paper's units for its ARM core and its GPU), the ms per batch being the fastest of the timed iterations by default
(``statistic="min"``, timeit's reasoning: slower runs are other processes' doing). The paper, on dedicated devices,
averaged 100 runs (``statistic="mean"``); on a shared machine another process can halve the median of a whole repeat
while the minimum stays within a few percent.
Each figure is the median over ``repeats`` measurements, with their spread (:func:`repeat_spread`). What is timed is the
harness's ``runner.run``: numpy in, numpy out, so on CUDA the host<->device copies are included (the paper's are
not). All rows and sizes of one table are measured interleaved in one :func:`edgeconv.bench.measure` call, on every
backend asked for, each from the same ONNX export (a temporary folder) or the same PyTorch module; each backend's
output is checked against PyTorch on the CPU.
"""

from __future__ import annotations

import json
import logging
import math
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import nn

from edgeconv.errors import ArtifactError, BackendUnavailableError, InvalidArgumentError

log = logging.getLogger(__name__)

PAPER = (
    "Ma, Zhang, Zheng, Sun: ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design, "
    "ECCV 2018 (arXiv 1807.11164)"
)
INPUT_SIZE = 56  # "Input image size is 56 x 56" (Tables 1-3; Table 4 by the same reading)
STACK = 10  # "stacking 10 building blocks repeatedly"
SCALES = (1, 2, 4)  # the paper's three sizes per table
PLATFORMS = ("gpu", "arm")
PLATFORM_NAMES = {
    "gpu": "GPU (GTX 1080Ti, cuDNN 7.0), batches/s",
    "arm": "ARM (Snapdragon 810, 1 thread), images/s",
}
DEVICE_PLATFORM = {"cpu": "arm", "cuda": "gpu"}  # which of the paper's columns a device runs by default
DEVICE_BACKENDS = {"cpu": ("torch", "onnxruntime", "openvino"), "cuda": ("torch", "onnxruntime")}
# The paper's own rows of one table differ in mult-adds by up to 5.5% (Table 1, ARM: (22,44) has 968 mult-adds per
# pixel, (32,32) 1024); edgeconv's rows must stay within that of the table's first row.
FLOPS_TOLERANCE = 0.06
STATISTICS = ("min", "p50", "mean")  # which time per batch a speed is made of
DEFAULT_MARGIN = 0.05  # speed differences within +-5% are "within noise" (see Guideline.verdict)
RESULTS_KIND = "edgeconv-guidelines"
PENDING = "pending: run python bench/guidelines.py (or edgeconv guidelines --out FILE.json)"

HOLDS, FAILS, NOISE = "holds", "does not hold", "within noise"

READINGS = (
    "Batch size: Tables 1-4 state none. edgeconv runs batch 1 on CPU and CUDA: at batch 8 the GPU figures would "
    "exceed the GTX 1080Ti's 11.3 TFLOPS fp32 peak (Table 3, 1-fragment c=512: 8.2 G mult-adds per image x 434 "
    "batches/s = 57 TFLOPS at batch 8, 7.1 at batch 1).",
    "x1/x2/x4 (Tables 1-2): channel counts multiplied by 1, 2, 4 (mult-adds x1, x4, x16). Table 2's g=1 row at "
    "x1/x2/x4 (2451/1289/437; 40.0/10.2/2.3) is Table 3's 1-fragment row at c=128/256/512 and 64/128/256 "
    "(2446/1274/434; 40.2/10.1/2.3).",
    "Layers: Tables 1-3 are bare 1x1 convolutions (no bias, BatchNorm or activation); weights N(0, 1/fan-in), "
    "fixed seed; input 56x56, standard normal.",
    "Speed: images/s (1000 x batch / ms per batch) on a CPU, batches/s (1000 / ms per batch) on CUDA, as the paper "
    "reports its ARM and GPU figures; the ms per batch by default from the fastest timed run (statistic 'min': "
    "slower runs are other processes' doing, and on a shared machine they can halve a whole repeat's median); the "
    "paper averaged 100 runs on dedicated devices (statistic 'mean'). The harness times numpy in -> numpy out, so on "
    "CUDA host<->device copies are included.",
)


# ---------------------------------------------------------------------------------------------------------------------
# Networks: one typed config per row, a builder per kind
# ---------------------------------------------------------------------------------------------------------------------
class NetworkConfig(Protocol):
    """What every micro-benchmark config offers: its input channels, analytic mult-adds, a scaled copy, a builder."""

    @property
    def in_channels(self) -> int: ...

    def macs(self, size: int = INPUT_SIZE) -> int: ...

    def scaled(self, factor: int) -> NetworkConfig: ...

    def build(self) -> nn.Module: ...

    def describe(self) -> str: ...


def _conv1x1(in_channels: int, out_channels: int, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, groups=groups, bias=False)


@dataclass(frozen=True)
class ConvPairConfig:
    """G1: ``blocks`` blocks of two 1x1 convs, ``c1 -> c2`` and ``c2 -> c1``."""

    c1: int
    c2: int
    blocks: int = STACK

    @property
    def in_channels(self) -> int:
        return self.c1

    def macs(self, size: int = INPUT_SIZE) -> int:
        return self.blocks * size * size * 2 * self.c1 * self.c2

    def scaled(self, factor: int) -> ConvPairConfig:
        return replace(self, c1=self.c1 * factor, c2=self.c2 * factor)

    def build(self) -> nn.Module:
        return nn.Sequential(
            *(nn.Sequential(_conv1x1(self.c1, self.c2), _conv1x1(self.c2, self.c1)) for _ in range(self.blocks))
        )

    def describe(self) -> str:
        return f"(c1,c2)=({self.c1},{self.c2})"


@dataclass(frozen=True)
class GroupConvConfig:
    """G2: ``layers`` stacked 1x1 group convs of ``channels`` in and out."""

    channels: int
    groups: int
    layers: int = STACK

    @property
    def in_channels(self) -> int:
        return self.channels

    def macs(self, size: int = INPUT_SIZE) -> int:
        return self.layers * size * size * self.channels * self.channels // self.groups

    def scaled(self, factor: int) -> GroupConvConfig:
        return replace(self, channels=self.channels * factor)

    def build(self) -> nn.Module:
        if self.channels % self.groups:
            raise InvalidArgumentError(f"{self.groups} groups cannot divide {self.channels} channels")
        return nn.Sequential(*(_conv1x1(self.channels, self.channels, self.groups) for _ in range(self.layers)))

    def describe(self) -> str:
        return f"c={self.channels}, g={self.groups}"


class FragmentBlock(nn.Module):
    """G3's block: 1x1 convs in series, or parallel branches joined by concatenation (or, as an alternative reading,
    by addition)."""

    def __init__(self, channels: int, branch_out: int, fragments: int, arrangement: str, join: str) -> None:
        super().__init__()
        self.arrangement, self.join = arrangement, join
        if arrangement == "series":
            self.convs = nn.ModuleList(_conv1x1(channels, channels) for _ in range(fragments))
        else:
            self.convs = nn.ModuleList(_conv1x1(channels, branch_out) for _ in range(fragments))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.arrangement == "series" or len(self.convs) == 1:
            for conv in self.convs:
                x = conv(x)
            return x
        outputs = [conv(x) for conv in self.convs]
        if self.join == "concat":
            return torch.cat(outputs, dim=1)
        total = outputs[0]
        for out in outputs[1:]:
            total = total + out
        return total


@dataclass(frozen=True)
class FragmentConfig:
    """G3: ``blocks`` blocks of ``fragments`` 1x1 convs at the mult-adds of a 1-fragment block of ``base_channels``.

    Series: k convs of ``round(c / sqrt(k))`` channels. Parallel, joined by concatenation (edgeconv's reading of the
    appendix figure): k convs from all c channels to c/k each, concatenated back to c. Parallel joined by addition
    (the other reading): k convs of ``round(c / sqrt(k))`` channels, summed.
    """

    base_channels: int
    fragments: int = 1
    arrangement: Literal["series", "parallel"] = "series"
    join: Literal["concat", "add"] = "concat"
    blocks: int = STACK

    @property
    def in_channels(self) -> int:
        if self.arrangement == "parallel" and self.join == "concat":
            return self.base_channels
        return round(self.base_channels / math.sqrt(self.fragments))

    @property
    def branch_channels(self) -> int:
        """Output channels of each conv."""
        if self.arrangement == "parallel" and self.join == "concat":
            return self.base_channels // self.fragments
        return self.in_channels

    def macs(self, size: int = INPUT_SIZE) -> int:
        return self.blocks * self.fragments * size * size * self.in_channels * self.branch_channels

    def scaled(self, factor: int) -> FragmentConfig:
        return replace(self, base_channels=self.base_channels * factor)

    def build(self) -> nn.Module:
        if self.arrangement == "parallel" and self.join == "concat" and self.base_channels % self.fragments:
            raise InvalidArgumentError(f"{self.fragments} concatenated branches cannot split {self.base_channels}")
        return nn.Sequential(
            *(
                FragmentBlock(self.in_channels, self.branch_channels, self.fragments, self.arrangement, self.join)
                for _ in range(self.blocks)
            )
        )

    def describe(self) -> str:
        if self.fragments == 1:
            return f"c={self.in_channels}"
        if self.arrangement == "series":
            return f"c={self.in_channels}, {self.fragments} in series"
        if self.join == "concat":
            return f"c={self.in_channels}, {self.fragments}x{self.branch_channels} concat"
        return f"c={self.in_channels}, {self.fragments} summed"


class BottleneckUnit(nn.Module):
    """ResNet's bottleneck (He et al. 2016): 1x1 c -> c/4, 3x3 c/4 -> c/4, 1x1 c/4 -> c; ReLU after each conv (the
    last after the shortcut's addition). ``relu`` and ``shortcut`` switch those element-wise ops off."""

    def __init__(self, channels: int, width: int, *, relu: bool, shortcut: bool) -> None:
        super().__init__()
        self.conv1 = _conv1x1(channels, width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.conv3 = _conv1x1(width, channels)
        self.relu = nn.ReLU() if relu else nn.Identity()
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.conv1(x))
        out = self.relu(self.conv2(out))
        out = self.conv3(out)
        if self.shortcut:
            out = out + x
        return self.relu(out)


@dataclass(frozen=True)
class BottleneckConfig:
    """G4: ``units`` bottleneck units of ``channels`` in and out, ``channels // reduction`` inside."""

    channels: int
    relu: bool = True
    shortcut: bool = True
    reduction: int = 4
    units: int = STACK

    @property
    def in_channels(self) -> int:
        return self.channels

    @property
    def width(self) -> int:
        return self.channels // self.reduction

    def macs(self, size: int = INPUT_SIZE) -> int:
        c, m = self.channels, self.width
        return self.units * size * size * (c * m + 9 * m * m + m * c)

    def scaled(self, factor: int) -> BottleneckConfig:
        return replace(self, channels=self.channels * factor)

    def build(self) -> nn.Module:
        return nn.Sequential(
            *(
                BottleneckUnit(self.channels, self.width, relu=self.relu, shortcut=self.shortcut)
                for _ in range(self.units)
            )
        )

    def describe(self) -> str:
        return (
            f"c={self.channels} ({self.width} inside)"
            + ("" if self.relu else ", no ReLU")
            + ("" if self.shortcut else ", no shortcut")
        )


def initialise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Conv weights N(0, 1/fan-in) from ``seed``: activations keep their scale through 10-40 stacked convs (PyTorch's
    default init shrinks their variance ~3x per conv). G4's ReLU-only stack still halves it per ReLU (output std
    ~1e-5 after 30), far above fp32's denormals (1e-38), which would slow a CPU and distort the timing."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in module.modules():
            if isinstance(conv, nn.Conv2d):
                fan_in = conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) / math.sqrt(fan_in))
    return module.eval()


def build_network(config: NetworkConfig, seed: int = 0) -> nn.Module:
    """The config's network on the CPU, initialised from ``seed`` (the same weights for every backend)."""
    return initialise(config.build(), seed)


def count_macs(config: NetworkConfig, size: int = INPUT_SIZE) -> int:
    """Mult-adds of the config's network by edgeconv's profiler (shapes only, on the meta device)."""
    from edgeconv.profile import profile_module

    with torch.device("meta"):
        module = config.build()
    example = torch.empty(1, config.in_channels, size, size, device="meta")
    return profile_module(module, example, name=config.describe()).macs


# ---------------------------------------------------------------------------------------------------------------------
# The paper's tables as data
# ---------------------------------------------------------------------------------------------------------------------
Speeds = tuple[float, float, float]


@dataclass(frozen=True)
class PaperRow:
    """One row of a guideline table: the networks of the paper's GPU and ARM columns (at x1) and its figures at the
    three sizes: ``gpu`` in batches/s, ``arm`` in images/s, exactly as printed."""

    label: str
    gpu_network: NetworkConfig
    arm_network: NetworkConfig
    gpu: Speeds
    arm: Speeds
    note: str = ""

    def network(self, platform: str) -> NetworkConfig:
        return self.gpu_network if platform == "gpu" else self.arm_network

    def paper(self, platform: str) -> Speeds:
        return self.gpu if platform == "gpu" else self.arm


Rule = Literal["first_fastest", "falls", "last_faster"]


@dataclass(frozen=True)
class Guideline:
    """One of the paper's tables: rows, column labels, the claim and the rule that decides whether it holds."""

    key: str
    table: int
    name: str  # the `edgeconv tables` name
    title: str
    claim: str  # the paper's words
    rule: Rule
    rows: tuple[PaperRow, ...]
    columns: dict[str, tuple[str, str, str]]  # platform -> the paper's labels of the three sizes
    readings: tuple[str, ...] = ()  # how edgeconv reads what this table leaves open

    @property
    def rule_text(self) -> str:
        first, last = self.rows[0].label, self.rows[-1].label
        return {
            "first_fastest": f"holds when {first} is the fastest row",
            "falls": f"holds when speed falls from {first} to {last} and never rises along the way",
            "last_faster": f"holds when {last} is faster than {first}",
        }[self.rule]

    def verdict(
        self,
        speeds: Sequence[float | None],
        margin: float = DEFAULT_MARGIN,
        spreads: Sequence[float | None] | None = None,
    ) -> str | None:
        """``holds``, ``does not hold`` or ``within noise`` for one column's speeds (table order); None when a row
        was not measured. Two speeds differ only by more than ``margin`` (relative) and, given ``spreads`` (each
        figure's repeat-to-repeat spread), by more than the larger spread of the two:

        - first_fastest (G1, G3): holds when every other row is slower than the first; does not hold when any is
          faster;
        - falls (G2): does not hold when any later row is faster than an earlier one; else holds when the last row
          is slower than the first;
        - last_faster (G4): holds when the last row is faster than the first; does not hold when it is slower.
        """
        if not speeds or any(s is None or s <= 0 for s in speeds):
            return None
        values = [float(s) for s in speeds if s is not None]
        noise = [max(margin, spread or 0.0) for spread in spreads] if spreads else [margin] * len(values)

        def faster(i: int, j: int) -> bool:  # row j is faster than row i beyond the noise of both
            return values[j] > values[i] * (1 + max(noise[i], noise[j]))

        def slower(i: int, j: int) -> bool:
            return values[j] < values[i] * (1 - max(noise[i], noise[j]))

        last = len(values) - 1
        if self.rule == "first_fastest":
            if any(faster(0, j) for j in range(1, len(values))):
                return FAILS
            return HOLDS if all(slower(0, j) for j in range(1, len(values))) else NOISE
        if self.rule == "falls":
            if any(faster(i, j) for i in range(len(values)) for j in range(i + 1, len(values))):
                return FAILS
            return HOLDS if slower(0, last) else NOISE
        return HOLDS if faster(0, last) else FAILS if slower(0, last) else NOISE


def summarise_verdicts(verdicts: Sequence[str | None], labels: Sequence[str]) -> str:
    """One verdict for all sizes when they agree; else each size's."""
    known = [(label, v) for label, v in zip(labels, verdicts, strict=True) if v is not None]
    if not known:
        return "not measured"
    if len({v for _, v in known}) == 1 and len(known) == len(verdicts):
        return known[0][1]
    return "; ".join(f"{label}: {v}" for label, v in known)


_X = ("x1", "x2", "x4")
G1 = Guideline(
    key="g1",
    table=1,
    name="shufflenet_v2_g1",
    title="G1: equal channel width minimizes memory access cost (MAC)",
    claim="when c1:c2 is approaching 1:1, the MAC becomes smaller and the network evaluation speed is faster",
    rule="first_fastest",
    columns={"gpu": _X, "arm": _X},
    rows=(
        PaperRow("1:1", ConvPairConfig(128, 128), ConvPairConfig(32, 32), (1480, 723, 232), (76.2, 21.7, 5.3)),
        PaperRow("1:2", ConvPairConfig(90, 180), ConvPairConfig(22, 44), (1296, 586, 206), (72.9, 20.5, 5.1)),
        PaperRow("1:6", ConvPairConfig(52, 312), ConvPairConfig(13, 78), (876, 489, 189), (69.1, 17.9, 4.6)),
        PaperRow("1:12", ConvPairConfig(36, 432), ConvPairConfig(9, 108), (748, 392, 163), (57.6, 15.1, 4.4)),
    ),
)
G2 = Guideline(
    key="g2",
    table=2,
    name="shufflenet_v2_g2",
    title="G2: excessive group convolution increases MAC",
    claim="using 8 groups is more than two times slower than using 1 group on GPU and up to 30% slower on ARM",
    rule="falls",
    columns={"gpu": _X, "arm": _X},
    rows=(
        PaperRow("g=1", GroupConvConfig(128, 1), GroupConvConfig(64, 1), (2451, 1289, 437), (40.0, 10.2, 2.3)),
        PaperRow("g=2", GroupConvConfig(180, 2), GroupConvConfig(90, 2), (1725, 873, 341), (35.0, 9.5, 2.2)),
        PaperRow("g=4", GroupConvConfig(256, 4), GroupConvConfig(128, 4), (1026, 644, 338), (32.9, 8.7, 2.1)),
        PaperRow(
            "g=8",
            GroupConvConfig(360, 8),
            GroupConvConfig(184, 8),
            (634, 445, 230),
            (27.8, 7.5, 1.8),
            note="ARM: the paper prints c=180, which 8 groups cannot divide; edgeconv uses 184 (+3.3% mult-adds)",
        ),
    ),
    readings=(
        "ARM g=8: the paper prints c=180 (180/8 = 22.5 channels per group); edgeconv uses 184, the multiple of 8 "
        "nearest the equal-mult-add width sqrt(8 x 64^2) = 181 (+3.3% mult-adds).",
    ),
)


def _fragments(fragments: int, arrangement: Literal["series", "parallel"]) -> tuple[FragmentConfig, FragmentConfig]:
    return FragmentConfig(128, fragments, arrangement), FragmentConfig(64, fragments, arrangement)


G3 = Guideline(
    key="g3",
    table=3,
    name="shufflenet_v2_g3",
    title="G3: network fragmentation reduces degree of parallelism",
    claim="fragmentation reduces the speed significantly on GPU; on ARM, the speed reduction is relatively small",
    rule="first_fastest",
    columns={"gpu": ("c=128", "c=256", "c=512"), "arm": ("c=64", "c=128", "c=256")},
    rows=(
        PaperRow("1-fragment", *_fragments(1, "series"), (2446, 1274, 434), (40.2, 10.1, 2.3)),
        PaperRow("2-fragment-series", *_fragments(2, "series"), (1790, 909, 336), (38.6, 10.1, 2.2)),
        PaperRow("4-fragment-series", *_fragments(4, "series"), (752, 745, 349), (38.4, 10.1, 2.3)),
        PaperRow("2-fragment-parallel", *_fragments(2, "parallel"), (1537, 803, 320), (33.4, 9.1, 2.2)),
        PaperRow("4-fragment-parallel", *_fragments(4, "parallel"), (691, 572, 292), (35.0, 8.4, 2.1)),
    ),
    readings=(
        "Parallel fragments: the paper's appendix Fig. 1 draws the blocks, its text does not say how branches are "
        "joined. edgeconv concatenates them (Inception-style): k convs from all c channels to c/k each, the "
        "1-fragment block's mult-adds at the same c, no element-wise op. Series: k convs of round(c/sqrt(k)) channels.",
    ),
)
G4 = Guideline(
    key="g4",
    table=4,
    name="shufflenet_v2_g4",
    title="G4: element-wise operations are non-negligible",
    claim="around 20% speedup is obtained on both GPU and ARM, after ReLU and shortcut are removed",
    rule="last_faster",
    columns={"gpu": ("c=32", "c=64", "c=128"), "arm": ("c=32", "c=64", "c=128")},
    rows=(
        PaperRow("ReLU, shortcut", *(BottleneckConfig(32),) * 2, (2427, 2066, 1436), (56.7, 16.9, 5.0)),
        PaperRow("ReLU only", *(BottleneckConfig(32, shortcut=False),) * 2, (2647, 2256, 1735), (61.9, 18.8, 5.2)),
        PaperRow("shortcut only", *(BottleneckConfig(32, relu=False),) * 2, (2672, 2121, 1458), (57.3, 18.2, 5.1)),
        PaperRow(
            "neither",
            *(BottleneckConfig(32, relu=False, shortcut=False),) * 2,
            (2842, 2376, 1782),
            (66.3, 20.2, 5.4),
        ),
    ),
    readings=(
        "G4 unit: ResNet's bottleneck, c in and out, c/4 inside (1x1, 3x3, 1x1), ReLU after each conv (the last "
        "after the addition), input 56x56 as in Tables 1-3 (Table 4 states none). Three convs of c channels at "
        "56x56 would need 20-28 G mult-adds/s from one Snapdragon 810 thread, above a Cortex-A57's fp32 peak; "
        "the bottleneck needs 1.9-2.7 G/s.",
    ),
)

GUIDELINES: dict[str, Guideline] = {g.key: g for g in (G1, G2, G3, G4)}
TABLE_NAMES: dict[str, str] = {g.name: g.key for g in GUIDELINES.values()}


def get_guideline(key: str) -> Guideline:
    """A guideline by key (``g1``) or table name (``shufflenet_v2_g1``)."""
    key = TABLE_NAMES.get(key, key)
    if key not in GUIDELINES:
        raise InvalidArgumentError(f"guideline {key!r} is not valid; choose one of {', '.join(GUIDELINES)}")
    return GUIDELINES[key]


def paper_ratios(row: PaperRow, first: PaperRow, platform: str) -> tuple[float, float, float]:
    """The paper's speed of ``row`` relative to the table's first row, per size."""
    ours, reference = row.paper(platform), first.paper(platform)
    return (ours[0] / reference[0], ours[1] / reference[1], ours[2] / reference[2])


def flops_spread(guideline: Guideline, platform: str, scale: int = 1) -> float:
    """Largest relative deviation of a row's mult-adds from the first row's, at one size."""
    macs = [row.network(platform).scaled(scale).macs() for row in guideline.rows]
    return max(abs(m - macs[0]) / macs[0] for m in macs)


def check_equal_flops(guideline: Guideline, platform: str, scales: Iterable[int] = SCALES) -> None:
    """Raise when the rows of one table differ in mult-adds by more than the paper's own rows do."""
    for scale in scales:
        spread = flops_spread(guideline, platform, scale)
        if spread > FLOPS_TOLERANCE:
            raise InvalidArgumentError(
                f"{guideline.key} ({platform}, x{scale}): rows differ in mult-adds by {spread:.1%}, more than the "
                f"paper's own {FLOPS_TOLERANCE:.0%}"
            )


# ---------------------------------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GuidelineOptions:
    """How a suite is run. ``columns`` picks the paper's channel counts (``arm`` or ``gpu``; None: from the device).
    ``threads`` 1 mirrors the paper's single ARM thread. ``repeats`` > 1 measures each table again and keeps the median
    speed, reporting the spread."""

    device: str = "cpu"
    backends: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
    threads: int | None = 1
    batch: int = 1
    iterations: int = 30
    warmup: int = 5
    repeats: int = 1
    scales: tuple[int, ...] = SCALES
    columns: str | None = None
    margin: float = DEFAULT_MARGIN
    statistic: Literal["min", "p50", "mean"] = "min"
    cuda_graph: bool = False
    seed: int = 0

    @property
    def platform(self) -> str:
        return self.columns or DEVICE_PLATFORM[self.device]

    def validate(self) -> None:
        from edgeconv.backends.base import BACKENDS, DEVICES, check_choice, check_threads

        check_choice("device", self.device, DEVICES)
        for backend in self.backends:
            check_choice("backend", backend, BACKENDS)
        if not self.backends:
            raise InvalidArgumentError(f"no backend given; choose from {', '.join(BACKENDS)}")
        if self.columns is not None:
            check_choice("columns", self.columns, PLATFORMS)
        if self.threads is not None and self.threads < 1:
            raise InvalidArgumentError(f"--threads {self.threads} must be >= 1")
        check_threads(self.threads, allow_zero=False)  # the upper bound: 100000 threads looked like a hang
        if self.batch < 1:
            raise InvalidArgumentError(f"--batch {self.batch} must be >= 1")
        if self.iterations < 1 or self.warmup < 0 or self.repeats < 1:
            raise InvalidArgumentError(
                f"--iters {self.iterations} and --repeats {self.repeats} must be >= 1, --warmup {self.warmup} >= 0"
            )
        if not self.scales or any(s not in SCALES for s in self.scales):
            raise InvalidArgumentError(
                f"--scales {','.join(map(str, self.scales))} is not valid; choose from {','.join(map(str, SCALES))}"
            )
        check_choice("statistic", self.statistic, STATISTICS)
        if not 0 <= self.margin < 0.5:
            raise InvalidArgumentError(f"--margin {self.margin} must be in [0, 0.5), e.g. 0.05 for +-5%")

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "backends": list(self.backends),
            "threads": self.threads,
            "batch": self.batch,
            "iterations": self.iterations,
            "warmup": self.warmup,
            "repeats": self.repeats,
            "scales": list(self.scales),
            "columns": self.platform,
            "margin": self.margin,
            "statistic": self.statistic,
            "cuda_graph": self.cuda_graph,
            "seed": self.seed,
            "input_size": INPUT_SIZE,
        }


def measured_with(settings: dict[str, Any], backend: str) -> str:
    """A short label of one backend in one run: ``onnxruntime, cpu, 1 thread``."""
    threads = settings.get("threads")
    parts = [backend, str(settings.get("device"))]
    if settings.get("device") == "cpu":
        parts.append("default threads" if threads is None else f"{threads} thread{'s' if threads != 1 else ''}")
    if settings.get("batch", 1) != 1:
        parts.append(f"batch {settings['batch']}")
    return ", ".join(parts)


def _export(config: NetworkConfig, path: Path, batch: int, seed: int) -> Path:
    from edgeconv.export import export_onnx

    if not path.is_file():
        # The network's input is a feature map, not a photo: export_onnx's photo check cannot run; every backend's
        # output is compared with PyTorch on the CPU after the timed rounds instead (measure's check).
        export_onnx(
            build_network(config, seed),
            path,
            (batch, config.in_channels, INPUT_SIZE, INPUT_SIZE),
            validate=False,
            output_name="output",
        )
    return path


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _target(name: str, config: NetworkConfig, path: Path, batch: int, seed: int) -> Any:
    from edgeconv.backends.artifacts import Target

    return Target(
        name=name,
        onnx={"fp32": path},
        input_name="input",
        input_shape=(batch, config.in_channels, INPUT_SIZE, INPUT_SIZE),
        folder=path.parent,
        module_factory=lambda: build_network(config, seed),
    )


def format_speed(value: float | None) -> str:
    """A speed with the paper's precision: 2451, 40.0, 2.30 (``-`` when not measured)."""
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def repeat_spread(values: Sequence[float]) -> float | None:
    """How far repeats of one figure disagree: the range of the closest majority of them (for 3 repeats, the two
    closest), relative to their median; None for fewer than 2. On a shared machine another process can slow a whole
    repeat; that repeat moves neither the median nor this spread."""
    if len(values) < 2:
        return None
    ordered = sorted(values)
    majority = len(ordered) // 2 + 1
    width = min(ordered[i + majority - 1] - ordered[i] for i in range(len(ordered) - majority + 1))
    return width / statistics.median(ordered)


def _run_table(
    guideline: Guideline,
    options: GuidelineOptions,
    workdir: Path,
    progress: Callable[[str], None] | None,
) -> dict[str, Any]:
    """Every row x size x backend of one table, interleaved in one measure() per repeat."""
    from edgeconv.bench import BenchCase, CaseOptions, make_cases, measure
    from edgeconv.compare import FP32_TOLERANCE, compare_outputs

    platform = options.platform
    check_equal_flops(guideline, platform, options.scales)
    # fp32 means fp32 on every engine: OpenVINO would otherwise pick bf16 on CPUs that have it.
    case_options = CaseOptions(
        device=options.device,
        threads=options.threads,
        cuda_graph=options.cuda_graph,
        openvino_precisions=("f32",),
        seed=options.seed,
    )
    cases: list[BenchCase] = []
    skipped: list[str] = []
    where: dict[str, tuple[int, int]] = {}  # target name -> (row, size index)
    configs: dict[str, NetworkConfig] = {}
    for r, row in enumerate(guideline.rows):
        for scale in options.scales:
            config = row.network(platform).scaled(scale)
            name = f"{guideline.key}-{_slug(row.label)}-x{scale}"
            onnx_name = f"{name}-{platform}-b{options.batch}-s{options.seed}.onnx"  # reused only with the same weights
            path = _export(config, workdir / onnx_name, options.batch, options.seed)
            target = _target(name, config, path, options.batch, options.seed)
            for backend in options.backends:  # one by one: a backend not installed here is left out, not fatal
                try:
                    made, why = make_cases(
                        target, backends=[backend], precisions=["fp32"], batches=[options.batch], options=case_options
                    )
                except BackendUnavailableError as exc:
                    made, why = [], [f"{backend}: {exc}"]
                cases += made
                skipped += [reason for reason in why if reason not in skipped]
            where[name] = (r, SCALES.index(scale))
            configs[name] = config
    references: dict[str, Any] = {}

    def check(case: BenchCase) -> dict[str, Any]:
        name = case.info["model"]
        if name not in references:
            with torch.inference_mode():
                module = build_network(configs[name], options.seed)
                references[name] = module(torch.from_numpy(case.inputs)).numpy()
        comparison = compare_outputs(references[name], case.runner.run(case.inputs), FP32_TOLERANCE)
        return {"max_rel_error": comparison.max_rel_error, "passed": bool(comparison)}

    failures: list[str] = []
    speeds: dict[tuple[str, str], list[dict[str, float]]] = {}  # (target, backend) -> speeds per repeat
    last: dict[tuple[str, str], Any] = {}
    # The paper's units: batches/s on a GPU, images/s on its ARM core.
    per_second = 1 if options.device == "cuda" else options.batch
    for repeat in range(options.repeats if cases else 0):  # no case at all: the skip reasons say why
        prefix = f"{guideline.key}, repeat {repeat + 1}/{options.repeats}"

        def report(text: str, prefix: str = prefix) -> None:
            log.info("%s: %s", prefix, text)
            if progress:
                progress(f"{prefix}: {text}")

        report(f"{len(cases)} configurations")
        results = measure(
            cases,
            warmup=options.warmup,
            iterations=options.iterations,
            block=5,
            progress=report,
            check=check,
            failures=failures,
        )
        for result in results:
            key = (result.case.info["model"], result.case.info["backend"])
            stats = result.stats
            speeds.setdefault(key, []).append(
                {
                    name: 1000.0 * per_second / ms
                    for name, ms in (("p50", stats.p50_ms), ("mean", stats.mean_ms), ("min", stats.min_ms))
                }
            )
            last[key] = result

    rows: list[dict[str, Any]] = []
    for r, row in enumerate(guideline.rows):
        networks: list[str | None] = [None] * len(SCALES)
        macs: list[int | None] = [None] * len(SCALES)
        measured: dict[str, list[dict[str, Any] | None]] = {b: [None] * len(SCALES) for b in options.backends}
        for name, (row_index, s) in where.items():
            if row_index != r:
                continue
            networks[s], macs[s] = configs[name].describe(), count_macs(configs[name])
            for backend in options.backends:
                if (name, backend) not in last:
                    continue
                result, repeats = last[(name, backend)], speeds[(name, backend)]
                values = sorted(repeat[options.statistic] for repeat in repeats)
                measured[backend][s] = {
                    "speed": statistics.median(values),
                    "spread": repeat_spread(values),
                    "range": (values[-1] - values[0]) / values[0] if len(values) > 1 else None,
                    "repeats": [{k: round(v, 3) for k, v in repeat.items()} for repeat in repeats],
                    "mean_ms": result.stats.mean_ms,
                    "p50_ms": result.stats.p50_ms,
                    "std_ms": result.stats.std_ms,
                    "cold_ms": result.stats.cold_ms,
                    "iterations": result.stats.iterations,
                    "variant": result.case.info.get("variant") or result.case.info.get("provider"),
                    **(result.check or {}),
                }
        rows.append({"label": row.label, "networks": networks, "macs": macs, "measured": measured})
    for backend in options.backends:  # ratios to the table's first row, per size
        for s in range(len(SCALES)):
            first = rows[0]["measured"][backend][s]
            for row_data in rows:
                cell = row_data["measured"][backend][s]
                if cell is not None:
                    cell["ratio"] = cell["speed"] / first["speed"] if first else None
    verdicts: dict[str, list[str | None]] = {}
    spreads: dict[str, list[float | None]] = {}  # the largest repeat-to-repeat spread per size, for the record
    for backend in options.backends:
        verdicts[backend], spreads[backend] = [], []
        for s in range(len(SCALES)):
            cells = [row_data["measured"][backend][s] or {} for row_data in rows]
            column_spreads = [cell.get("spread") for cell in cells]
            known = [spread for spread in column_spreads if spread is not None]
            spreads[backend].append(max(known) if known else None)
            speeds_of = [cell.get("speed") for cell in cells]
            # A difference smaller than the repeat-to-repeat spread of the figures it compares is noise too.
            verdicts[backend].append(guideline.verdict(speeds_of, options.margin, column_spreads))
    return {
        "key": guideline.key,
        "platform": platform,
        "rows": rows,
        "spreads": spreads,
        "verdicts": verdicts,
        "skipped": skipped,
        "failures": list(dict.fromkeys(failures)),  # a case that fails fails in every repeat
    }


def run_guidelines(
    keys: Sequence[str] = tuple(GUIDELINES),
    options: GuidelineOptions = GuidelineOptions(),
    *,
    workdir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure the guideline tables ``keys`` on ``options.backends``: the run's JSON-ready record (settings,
    environment, per table its rows with each backend's speed and ratio per size, and verdicts).

    Each network is exported to ONNX once into ``workdir`` (reused there when a file exists, e.g. by a second run at
    another thread count; default: a temporary folder removed afterwards).
    """
    from edgeconv.bench import environment

    options.validate()
    guidelines = [get_guideline(key) for key in keys]
    if not guidelines:
        raise InvalidArgumentError(f"no guideline given; choose from {', '.join(GUIDELINES)}")
    unavailable = _unavailable_backends(options)
    if len(unavailable) == len(options.backends):  # before any network is built or exported
        raise _nothing_ran(options, unavailable)
    started = time.time()
    env = environment()
    with tempfile.TemporaryDirectory(prefix="edgeconv-guidelines-") as scratch:
        folder = Path(workdir) if workdir is not None else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        tables = {g.key: _run_table(g, options, folder, progress) for g in guidelines}
    measured = any(
        cell is not None for table in tables.values() for row in table["rows"] for cells in row["measured"].values()
        for cell in cells
    )  # fmt: skip
    if not measured:
        raise _nothing_ran(
            options, [line for table in tables.values() for line in [*table["failures"], *table["skipped"]]]
        )
    return {
        "settings": options.to_dict(),
        "env": env,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "tables": tables,
    }


def _unavailable_backends(options: GuidelineOptions) -> list[str]:
    """Why each of ``options.backends`` that cannot run on ``options.device`` here cannot (installed? a GPU?)."""
    from edgeconv.backends.availability import check_backend

    reasons = []
    for backend in options.backends:
        try:
            check_backend(backend, device=options.device)
        except BackendUnavailableError as exc:
            reasons.append(f"{backend}: {exc}")
    return reasons


def _nothing_ran(options: GuidelineOptions, reasons: Sequence[str]) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"no network could run on {', '.join(options.backends)} ({options.device}): "
        + (reasons[0] if reasons else "nothing to run")
        + (f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else "")
    )


def results_document(runs: Sequence[dict[str, Any]], machine: str | None = None) -> dict[str, Any]:
    """A results file: the runs, with the paper, the readings and where it was measured."""
    env = runs[0]["env"] if runs else {}
    return {
        "kind": RESULTS_KIND,
        "version": 1,
        "paper": PAPER,
        "machine": machine,
        "cpu": (env.get("cpu") or {}).get("model"),
        "gpu": (env.get("gpu") or {}).get("name"),
        "readings": [*READINGS, *(reading for g in GUIDELINES.values() for reading in g.readings)],
        "runs": list(runs),
    }


def write_results(path: str | Path, document: dict[str, Any]) -> Path:
    """Write a results file atomically."""
    from edgeconv.files import write_atomic

    path = Path(path)
    write_atomic(path, json.dumps(document, indent=1, default=str).encode("utf-8"))
    return path


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a results file; a missing or foreign one raises ArtifactError naming it."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"guideline results {path} not found; {PENDING.removeprefix('pending: ')}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"guideline results {path} unreadable ({exc})") from None
    if (
        not isinstance(document, dict)
        or document.get("kind") != RESULTS_KIND
        or not isinstance(document.get("runs"), list)
    ):
        raise ArtifactError(f"{path} is not a guideline results file (no kind={RESULTS_KIND!r} with a runs list)")
    document["file"] = str(path)
    return document


def find_results(directories: Iterable[str | Path] | None = None) -> Path | None:
    """The newest ``guidelines-*.json`` results file (not ``-quick``) in ``directories``; by default
    ``bench/results`` under the working directory and under the edgeconv checkout. None if there is none."""
    if directories is None:
        checkout = Path(__file__).resolve().parents[1]
        directories = [Path.cwd() / "bench" / "results", checkout / "bench" / "results"]
    found = set()
    for directory in directories:
        for candidate in Path(directory).glob("guidelines-*.json"):
            if candidate.name.endswith("-quick.json") or not candidate.is_file():
                continue
            try:
                load_results(candidate)
            except ArtifactError:
                continue
            found.add(candidate.resolve())
    return max(found, key=lambda f: f.stat().st_mtime, default=None)


# ---------------------------------------------------------------------------------------------------------------------
# Reports: the paper's figures beside each run's
# ---------------------------------------------------------------------------------------------------------------------
def paper_verdicts(guideline: Guideline, platform: str, margin: float = DEFAULT_MARGIN) -> list[str | None]:
    """The rule applied to the paper's own figures, per size."""
    return [guideline.verdict([row.paper(platform)[s] for row in guideline.rows], margin) for s in range(len(SCALES))]


def guideline_report(key: str, runs: Sequence[dict[str, Any]] = (), margin: float | None = None) -> dict[str, Any]:
    """One guideline table for display and JSON: per row and size, the paper's networks and figures (GPU and ARM,
    absolute and relative to the first row) and every run's measured speed and ratio per backend; then the verdicts
    of the paper's figures and of each run. Without runs the measured columns are pending."""
    guideline = get_guideline(key)
    first = guideline.rows[0]
    measured_columns: list[dict[str, Any]] = []
    for run_index, run in enumerate(runs):
        table = (run.get("tables") or {}).get(guideline.key)
        if not table:
            continue
        settings = run.get("settings") or {}
        for backend, per_size in (table.get("verdicts") or {}).items():
            measured_columns.append(
                {
                    "run": run_index,
                    "backend": backend,
                    "platform": table.get("platform"),
                    "label": measured_with(settings, backend),
                    "unit": "batches/s" if settings.get("device") == "cuda" else "images/s",
                    "verdicts": per_size,
                    "verdict": summarise_verdicts(per_size, guideline.columns[table.get("platform", "arm")]),
                    "spreads": (table.get("spreads") or {}).get(backend) or [None] * len(SCALES),
                }
            )
    rows = []
    for s in range(len(SCALES)):  # size-major: the rows compared with each other sit together
        for r, row in enumerate(guideline.rows):
            cells = []
            for column in measured_columns:
                table = runs[column["run"]]["tables"][guideline.key]
                cell = table["rows"][r]["measured"].get(column["backend"], [None] * len(SCALES))[s]
                cells.append(
                    None
                    if cell is None
                    else {
                        "speed": cell.get("speed"),
                        "ratio": cell.get("ratio"),
                        "passed": cell.get("passed"),
                        "network": table["rows"][r]["networks"][s],
                        "macs": table["rows"][r]["macs"][s],
                    }
                )
            rows.append(
                {
                    "label": row.label,
                    "size": s,
                    "column": {p: guideline.columns[p][s] for p in PLATFORMS},
                    "network": {p: row.network(p).scaled(SCALES[s]).describe() for p in PLATFORMS},
                    "macs": {p: row.network(p).scaled(SCALES[s]).macs() for p in PLATFORMS},
                    "paper": {p: row.paper(p)[s] for p in PLATFORMS},
                    "paper_ratio": {p: paper_ratios(row, first, p)[s] for p in PLATFORMS},
                    "measured": cells,
                    "note": row.note,
                }
            )
    use_margin = margin if margin is not None else _run_margin(runs)
    return {
        "name": guideline.name,
        "key": guideline.key,
        "title": f"ShuffleNet V2 Table {guideline.table}, {guideline.title}",
        "source": f"Ma et al. 2018, Table {guideline.table}; input {INPUT_SIZE}x{INPUT_SIZE}, {STACK} stacked blocks",
        "claim": guideline.claim,
        "rule": guideline.rule_text,
        "margin": use_margin,
        "paper_verdicts": {
            p: summarise_verdicts(paper_verdicts(guideline, p, use_margin), guideline.columns[p]) for p in PLATFORMS
        },
        "paper_verdicts_per_size": {p: paper_verdicts(guideline, p, use_margin) for p in PLATFORMS},
        "columns": {p: list(guideline.columns[p]) for p in PLATFORMS},
        "measured_columns": measured_columns,
        "rows": rows,
        "readings": list(guideline.readings),
        "pending": None if measured_columns else PENDING,
    }


def _run_margin(runs: Sequence[dict[str, Any]]) -> float:
    margins = {float(m) for run in runs if (m := (run.get("settings") or {}).get("margin")) is not None}
    return margins.pop() if len(margins) == 1 else DEFAULT_MARGIN


__all__ = [
    "FLOPS_TOLERANCE",
    "GUIDELINES",
    "INPUT_SIZE",
    "PAPER",
    "READINGS",
    "SCALES",
    "STACK",
    "BottleneckConfig",
    "ConvPairConfig",
    "FragmentConfig",
    "GroupConvConfig",
    "Guideline",
    "GuidelineOptions",
    "PaperRow",
    "build_network",
    "check_equal_flops",
    "count_macs",
    "find_results",
    "get_guideline",
    "guideline_report",
    "load_results",
    "results_document",
    "run_guidelines",
    "write_results",
]
