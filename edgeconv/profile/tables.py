"""The papers' resource tables as data, each row beside edgeconv's own count of the zoo model that reproduces it.

Every row names the paper's figure as printed (in the table's unit), the registry name, builder kwargs and input size
that reproduce it, and the explanation that applies when edgeconv's figure deviates by more than 2% (a different
counting convention, a paper typo, an ambiguity in the paper's architecture). Share rows (MobileNet's Table 2) are
percentages; they are compared in percentage points and flagged above 0.05 pp.

Rows whose model the zoo does not have are reported as ``not in zoo``; a zoo builder that rejects the row's kwargs or
input is reported as ``error`` with the message, never raised, so a partial zoo still yields every table.

Measured rows come from a results file of ``bench/run_bench.py`` (:class:`BenchResults`). ``cpu_latency_ms``: the
median-of-repeats p50 at batch 1, fp32, preferring ONNX Runtime on the CPU. ``gpu_batches_per_s``: ShuffleNet V2's GPU
speed (its Table 8: batches of 8 per second, from the mean time of a batch, as the paper averages its runs), fp32 on
CUDA, preferring TensorRT, then PyTorch with CUDA graphs. The papers timed other hardware (MobileNet V2: a Pixel 1
CPU; ShuffleNet V2: a GTX 1080Ti), so the absolute figures are shown side by side and never flagged; what is compared
is each model's figure relative to the table's reference model (``TableSpec.latency_reference``), flagged above 25%.
Without a results file the rows are ``pending``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgeconv.errors import ArtifactError, EdgeconvError, UnknownModelError
from edgeconv.profile.report import ProfileReport

logger = logging.getLogger(__name__)

FLAG_RELATIVE = 0.02  # counts: flag above 2% relative deviation
FLAG_SHARE_PP = 0.05  # shares: flag above 0.05 percentage points
FLAG_RATIO = 0.25  # latency relative to the table's reference model: flag above 25% relative deviation

LATENCY_METRIC = "cpu_latency_ms"
GPU_SPEED_METRIC = "gpu_batches_per_s"
PENDING_BENCH = "pending: run python bench/run_bench.py"
Config = tuple[str, str | None, str]  # (backend, provider or torch variant, device); eager torch has None


@dataclass(frozen=True)
class MeasuredMetric:
    """How a measured metric is read from benchmark summary rows: which batch, precision and device, which
    configurations are preferred (in order), and whether the figure is a speed (batches/s from the mean) or a latency
    (p50 ms)."""

    batch: int
    device: str
    preference: tuple[Config, ...]
    speed: bool = False
    precision: str = "fp32"
    pending: str = PENDING_BENCH

    def value(self, row: dict[str, Any]) -> float:
        return 1000.0 / float(row["mean_ms"]) if self.speed else float(row["p50_ms"])


MEASURED_METRICS = {
    # The papers' CPU column: ONNX Runtime first (what edgeconv deploys on a CPU), PyTorch eager otherwise.
    LATENCY_METRIC: MeasuredMetric(
        batch=1, device="cpu", preference=(("onnxruntime", "cpu", "cpu"), ("torch", None, "cpu"))
    ),
    # ShuffleNet V2's GPU column: cuDNN with its benchmark mode and "full optimization options (e.g. tensor fusion)";
    # the closest here are TensorRT, then PyTorch with its kernel launches replayed from a CUDA graph.
    GPU_SPEED_METRIC: MeasuredMetric(
        batch=8,
        device="cuda",
        preference=(
            ("tensorrt", None, "cuda"),
            ("torch", "compile+cuda-graph", "cuda"),
            ("torch", "cuda-graph", "cuda"),
            ("torch", None, "cuda"),
        ),
        speed=True,
        pending="pending: run bench/gpu_check.sh on a machine with an NVIDIA GPU",
    ),  # fmt: skip
}
LATENCY_PREFERENCE = MEASURED_METRICS[LATENCY_METRIC].preference

METRICS = ("params", "macs", "params_share", "macs_share", LATENCY_METRIC, GPU_SPEED_METRIC)


@dataclass(frozen=True)
class TableRow:
    """One paper figure and what reproduces it.

    ``paper`` is in the table's unit for its metric (``TableSpec.units``); shares are in percent. ``layers`` restricts
    the count to modules under these names (GoogLeNet's per-row figures); ``weights_only`` counts conv and fc
    parameters only (leaving BatchNorm out, for papers whose network had none). ``op_type`` picks the ``by_type`` key of
    a share row. ``pending`` marks a figure another tool fills (the benchmark's CPU latency).
    """

    label: str
    metric: str
    paper: float | None
    model: str | None
    kwargs: dict[str, Any] = field(default_factory=dict)
    input_size: int | None = None
    layers: tuple[str, ...] = ()
    weights_only: bool = False
    op_type: str = ""
    explanation: str = ""
    pending: str = ""


@dataclass(frozen=True)
class TableSpec:
    name: str
    title: str
    source: str
    rows: tuple[TableRow, ...]
    units: dict[str, tuple[float, str]] = field(default_factory=dict)  # metric -> (multiplier, label)
    note: str = ""
    latency_reference: str = ""  # model whose latency the latency rows are divided by (paper and ours alike)

    def unit(self, metric: str) -> tuple[float, str]:
        if metric in self.units:
            return self.units[metric]
        units = {"params_share": (1.0, "%"), "macs_share": (1.0, "%"), LATENCY_METRIC: (1.0, "ms"),
                 GPU_SPEED_METRIC: (1.0, "batch/s")}  # fmt: skip
        return units.get(metric, (1e6, "M"))


@dataclass(frozen=True)
class RowResult:
    label: str
    metric: str
    unit: str
    paper: float | None
    edgeconv: float | None
    deviation: float | None  # relative (0.031 = +3.1%) for counts, percentage points for shares
    deviation_unit: str
    flagged: bool
    status: str  # "ok", "flagged", "not in zoo", "error", "pending"
    explanation: str
    model: str | None
    kwargs: dict[str, Any]
    input_size: int | None
    # Latency rows: latency / the reference model's, in the paper and here; relative deviation of ours from the paper's
    ratio_paper: float | None = None
    ratio_edgeconv: float | None = None
    ratio_deviation: float | None = None
    measured_with: str = ""  # which benchmark configuration gave ``edgeconv``

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "metric": self.metric,
            "unit": self.unit,
            "paper": self.paper,
            "edgeconv": self.edgeconv,
            "deviation": self.deviation,
            "deviation_unit": self.deviation_unit,
            "flagged": self.flagged,
            "status": self.status,
            "explanation": self.explanation,
            "model": self.model,
            "kwargs": dict(self.kwargs),
            "input_size": self.input_size,
            "ratio_paper": self.ratio_paper,
            "ratio_edgeconv": self.ratio_edgeconv,
            "ratio_deviation": self.ratio_deviation,
            "measured_with": self.measured_with,
        }


@dataclass(frozen=True)
class TableResult:
    name: str
    title: str
    source: str
    note: str
    rows: list[RowResult]
    bench: dict[str, Any] | None = None  # the results file behind the latency rows and where it was measured
    latency_reference: str = ""  # model the latency ratios are relative to

    @property
    def flagged(self) -> list[RowResult]:
        return [r for r in self.rows if r.flagged]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "source": self.source,
            "note": self.note,
            "rows": [r.to_dict() for r in self.rows],
            "bench": self.bench,
            "latency_reference": self.latency_reference,
        }


def _r(label: str, metric: str, paper: float | None, model: str | None, **extra: Any) -> TableRow:
    return TableRow(label=label, metric=metric, paper=paper, model=model, **extra)


def _pair(
    label: str,
    params: float | None,
    macs: float | None,
    model: str | None,
    *,
    why_params: str = "",
    why_macs: str = "",
    **extra: Any,
) -> tuple[TableRow, TableRow]:
    return (
        _r(label, "params", params, model, explanation=why_params, **extra),
        _r(label, "macs", macs, model, explanation=why_macs, **extra),
    )


# ---------------------------------------------------------------------------------------------------------------------
# Explanations shared by several tables
_BN_PARAMS = "edgeconv counts BatchNorm scale/shift as parameters ({extra}); the paper counts conv and FC weights only"
_RESNET_V15 = (
    "torchvision layout (v1.5): each downsampling bottleneck strides in its 3x3 conv. Striding in the first 1x1 "
    "instead (the original v1) gives 3.858 / 7.570 / 11.282 G for ResNet-50 / 101 / 152 and 3.768 G for ResNeXt-50 "
    "32x4d (measured with this profiler), the papers' figures to 0.2%"
)
_CBAM_RESNEXT = _RESNET_V15 + "; the SE paper counts v1.5 for ResNeXt (4.24 / 7.99 G, edgeconv 4.23 / 7.97 G)"


MOBILENET_V1_TABLE2 = TableSpec(
    name="mobilenet_v1_table2",
    title="MobileNet V1 Table 2: resource per layer type",
    source="Howard et al. 2017, Table 2 (seed 003)",
    note="Shares of mult-adds and of parameters over conv and FC layers (BatchNorm is not a type in the paper's "
    "table). "
    "Compared in percentage points; flagged above 0.05 pp.",
    rows=tuple(
        TableRow(label=label, metric=metric, paper=paper, model="mobilenet_v1", op_type=op_type, explanation=why)
        for label, op_type, metric, paper, why in (
            ("Conv 1x1", "conv1x1", "macs_share", 94.86, ""),
            ("Conv DW 3x3", "conv_dw", "macs_share", 3.06, ""),
            (
                "Conv 3x3",
                "conv_kxk 3x3",
                "macs_share",
                1.19,
                "paper typo: its mult-adds column sums to 99.29%. The one 3x3 conv (112x112x32 outputs x 3x3x3) costs "
                "10.84 M of 568.7 M = 1.91%; with 1.91 (the digits of 1.19 swapped) the column sums to 100.01%",
            ),
            ("Fully Connected", "fc", "macs_share", 0.18, ""),
            ("Conv 1x1", "conv1x1", "params_share", 74.59, ""),
            ("Conv DW 3x3", "conv_dw", "params_share", 1.06, ""),
            ("Conv 3x3", "conv_kxk 3x3", "params_share", 0.02, ""),
            ("Fully Connected", "fc", "params_share", 24.33, ""),
        )
    ),
)

MOBILENET_V1_TABLE8 = TableSpec(
    name="mobilenet_v1_table8",
    title="MobileNet V1 Table 8: comparison to popular models",
    source="Howard et al. 2017, Table 8 (seed 000)",
    rows=(
        *_pair("1.0 MobileNet-224", 4.2, 569, "mobilenet_v1"),
        *_pair(
            "GoogleNet",
            6.8,
            1550,
            "googlenet",
            kwargs={"branch3_kernel_size": 5},
            why_params="the 6.8 M is the sum of GoogLeNet's own table in its K = 1024 units (6,797.7 K), two of whose "
            "rows are typos (4c, 5a: see googlenet_table); the tabled widths with 5x5 kernels give 7.01 M (with "
            "torchvision's BatchNorm, no auxiliary heads)",
            why_macs="the tabled widths give 1.58 G; GoogLeNet's own per-row ops sum to 1.50 G because its first-conv "
            "row is 84 M low (see googlenet_table); MobileNet quotes 1.55 G",
        ),
        *_pair("VGG 16", 138, 15300, "vgg16"),
    ),
)

MOBILENET_V1_TRADEOFF = TableSpec(
    name="mobilenet_v1_tradeoff",
    title="MobileNet V1 Tables 6 and 7: width multiplier and resolution",
    source="Howard et al. 2017, Tables 6 and 7",
    rows=(
        *_pair("1.0 MobileNet-224", 4.2, 569, "mobilenet_v1", kwargs={"width_mult": 1.0}),
        *_pair("0.75 MobileNet-224", 2.6, 325, "mobilenet_v1", kwargs={"width_mult": 0.75}),
        *_pair(
            "0.5 MobileNet-224",
            1.3,
            149,
            "mobilenet_v1",
            kwargs={"width_mult": 0.5},
            why_params="1.332 M includes 10,944 BatchNorm scale/shift parameters the paper does not count (its Table 2 "
            "shares are of conv and FC weights); the 1.321 M conv+FC parameters are +1.6%: the paper's rounding",
        ),
        *_pair(
            "0.25 MobileNet-224",
            0.5,
            41,
            "mobilenet_v1",
            kwargs={"width_mult": 0.25},
            why_params="the paper prints one digit: 0.470 M (0.465 M without BatchNorm) shows as 0.5 M",
        ),
        _r("1.0 MobileNet-192", "macs", 418, "mobilenet_v1", input_size=192),
        _r("1.0 MobileNet-160", "macs", 290, "mobilenet_v1", input_size=160),
        _r("1.0 MobileNet-128", "macs", 186, "mobilenet_v1", input_size=128),
    ),
)

MOBILENET_V2_COMPARISON = TableSpec(
    name="mobilenet_v2_comparison",
    title="MobileNet V2 comparison: params, MAdds, CPU latency",
    source="Sandler et al. 2018, Table 4 (seed 003); latency on a Google Pixel 1 CPU",
    note="The CPU column is filled by the benchmark (bench/results: p50, batch 1, fp32), not by the profiler. The "
    "paper timed a Pixel 1 CPU, so milliseconds are shown side by side, not compared; the latency relative to "
    "MobileNetV2 is compared, flagged above 25%.",
    latency_reference="mobilenet_v2",
    rows=(
        *_pair("MobileNetV1", 4.2, 575, "mobilenet_v1"),
        _r("MobileNetV1", "cpu_latency_ms", 113, "mobilenet_v1", pending="filled by bench"),
        *_pair(
            "ShuffleNet (1.5)",
            3.4,
            292,
            "shufflenet_v1",
            kwargs={"groups": 3, "width_mult": 1.5},
            why_macs="299.6 M: the zoo's ShuffleNet widens the 24-channel stem with the multiplier (36 channels at "
            "1.5x, which also feeds stage 2); the 2x row matches exactly (524.0 M); the ShuffleNet paper does not "
            "tabulate its 1.5x layout",
        ),
        *_pair("ShuffleNet (x2)", 5.4, 524, "shufflenet_v1", kwargs={"groups": 3, "width_mult": 2.0}),
        *_pair("NasNet-A", 5.3, 564, "nasnet_a_mobile"),
        _r("NasNet-A", "cpu_latency_ms", 183, "nasnet_a_mobile", pending="filled by bench"),
        *_pair(
            "MobileNetV2",
            3.4,
            300,
            "mobilenet_v2",
            why_params="3,504,872 = torchvision's count; the paper's 3.4 M leaves out the 34,112 BatchNorm scale/shift "
            "parameters (3,470,760 conv+FC weights, +2.1% from 3.4 M: rounding)",
        ),
        _r("MobileNetV2", "cpu_latency_ms", 75, "mobilenet_v2", pending="filled by bench"),
        *_pair(
            "MobileNetV2 (1.4)",
            6.9,
            585,
            "mobilenet_v2_140",
            why_params="6.11 M here, exactly torchvision's mobilenet_v2(width_mult=1.4) and the authors' released "
            "TF-slim model (6.06 M without BatchNorm); the paper's 6.9 M matches no published 1.4 model",
        ),
        _r("MobileNetV2 (1.4)", "cpu_latency_ms", 143, "mobilenet_v2_140", pending="filled by bench"),
    ),
)

SHUFFLENET_V2_TABLE = TableSpec(
    name="shufflenet_v2",
    title="ShuffleNet V2 architecture table: FLOPs and weights at four widths",
    source="Ma et al. 2018, Table 5 (seed 003); FLOPs = mult-adds",
    rows=(
        *_pair(
            "0.5x",
            1.4,
            41,
            "shufflenet_v2_x0_5",
            why_params="1,366,792 (torchvision's count), printed by the paper with one decimal as 1.4 M",
        ),
        *_pair("1x", 2.3, 146, "shufflenet_v2_x1_0"),
        *_pair("1.5x", 3.5, 299, "shufflenet_v2_x1_5"),
        *_pair("2x", 7.4, 591, "shufflenet_v2_x2_0"),
        # Table 8's ARM speed (Snapdragon 810, one thread, batch 1) as ms per image = 1000 / (images/s).
        *(
            _r(label, LATENCY_METRIC, round(1000.0 / arm, 1), f"shufflenet_v2_{suffix}", pending="filled by bench")
            for label, suffix, arm in (
                ("0.5x", "x0_5", 57.0),
                ("1x", "x1_0", 24.4),
                ("1.5x", "x1_5", 11.8),
                ("2x", "x2_0", 6.7),
            )
        ),  # fmt: skip
        # Table 8's GPU speed (GTX 1080Ti, cuDNN 7.0, batch 8, batches/s), ShuffleNet V2 and the zoo's other rows.
        *(
            _r(label, GPU_SPEED_METRIC, gpu, model, pending="filled by bench")
            for label, model, gpu in (
                ("0.5x", "shufflenet_v2_x0_5", 417),
                ("1x", "shufflenet_v2_x1_0", 341),
                ("1.5x", "shufflenet_v2_x1_5", 255),
                ("2x", "shufflenet_v2_x2_0", 217),
                ("1.0 MobileNet v1", "mobilenet_v1", 247),
                ("1.0 MobileNet v2", "mobilenet_v2", 180),
                ("1.4 MobileNet v2", "mobilenet_v2_140", 137),
                ("ShuffleNet v1 1x (g=3)", "shufflenet_v1", 213),
                ("NASNet-A", "nasnet_a_mobile", 130),
            )
        ),  # fmt: skip
    ),
    note="Latency and speed rows are edgeconv's benchmark (bench/results) beside the paper's Table 8 (ARM: Snapdragon "
    "810, one thread, batch 1, shown as ms per image = 1000 / images per second; GPU: GTX 1080Ti, cuDNN 7.0, batch 8, "
    "batches per second from the mean of 100 runs), and each figure's ratio to 1x, which is what is compared.",
    latency_reference="shufflenet_v2_x1_0",
)

_GOOGLENET = {"model": "googlenet", "kwargs": {"branch3_kernel_size": 5}, "weights_only": True}
_GOOGLENET_ROWS: tuple[tuple[str, tuple[str, ...], float, float, str, str], ...] = (
    # label, modules, params (K = 1024), ops (M), why params, why ops
    (
        "convolution 7x7/2",
        ("conv1",),
        2.7,
        34,
        "paper inconsistent with its own layer: a 7x7 conv from 3 to 64 channels has 7x7x3x64 = 9,408 weights (9.2 K); "
        "the paper's 2.7 K and 34 M agree with each other (34 M / 112² = 2.7 K) but with no 7x7x3x64 kernel",
        "7x7x3x64 weights at 112x112 outputs = 118 M; see the params row",
    ),
    ("convolution 3x3/1 (with 1x1 reduce)", ("conv2", "conv3"), 112, 360, "", ""),
    ("inception (3a)", ("inception3a",), 159, 128, "", ""),
    ("inception (3b)", ("inception3b",), 380, 304, "", ""),
    ("inception (4a)", ("inception4a",), 364, 73, "", ""),
    ("inception (4b)", ("inception4b",), 437, 88, "", ""),
    (
        "inception (4c)",
        ("inception4c",),
        463,
        100,
        "paper typo: the row's widths give 509,440 weights (497.5 K), and its own 100 M ops / 14² = 510 K agree with "
        "that, not with 463 K",
        "",
    ),
    ("inception (4d)", ("inception4d",), 580, 119, "", ""),
    ("inception (4e)", ("inception4e",), 840, 170, "", ""),
    (
        "inception (5a)",
        ("inception5a",),
        1072,
        54,
        "the paper's 1072 K and 54 M agree with each other (54 M / 7² = 1.1 M) but not with the row's widths: from 832 "
        "input channels, 256 + 160>320 + 32>128 + 128 give 1,042,432 weights (1018 K) and 51.1 M ops",
        "see the params row: the row's widths give 51.1 M",
    ),
    ("inception (5b)", ("inception5b",), 1388, 71, "", ""),
    ("linear", ("fc",), 1000, 1, "", "1024 x 1000 = 1.024 M, printed as 1 M"),
)
GOOGLENET_TABLE = TableSpec(
    name="googlenet_table",
    title="GoogLeNet incarnation of the Inception architecture: params and ops per row",
    source="Szegedy et al. 2015, Table 1 (seed 004)",
    units={"params": (1024.0, "K")},
    note="K = 1024 in this table: every row whose figures agree with its widths matches to <2% with K = 1024 and is "
    "2-3% off with K = 1000. Model: googlenet with the paper's 5x5 kernels (branch3_kernel_size=5), no auxiliary "
    "heads; params are conv and FC weights and biases (the 2014 network had no BatchNorm).",
    rows=tuple(
        row
        for label, layers, params, ops, why_params, why_ops in _GOOGLENET_ROWS
        for row in (
            TableRow(label, "params", params, layers=layers, explanation=why_params, **_GOOGLENET),  # type: ignore[arg-type]
            TableRow(label, "macs", ops, layers=layers, explanation=why_ops, **_GOOGLENET),  # type: ignore[arg-type]
        )
    ),
)

EFFICIENTNET_TABLE = TableSpec(
    name="efficientnet",
    title="EfficientNet B0-B7 and peers: params and FLOPs",
    source="Tan & Le 2019, Table 2 (seeds 002, 004); FLOPs = mult-adds",
    units={"params": (1e6, "M"), "macs": (1e9, "B")},
    note="Peers at their papers' native inputs (Inception / Xception 299, ResNeXt-101 64x4d 320). The table rounds "
    "to two digits (11B, 12M ...): rows within that rounding are fine even above 2%.",
    rows=(
        *_pair("EfficientNet-B0", 5.3, 0.39, "efficientnet_b0"),
        *_pair("ResNet-50", 26, 4.1, "resnet50"),
        *_pair(
            "DenseNet-169",
            14,
            3.5,
            "densenet169",
            why_macs="3.36 G here, the figure torchvision documents for the same network (params agree to 1%); the "
            "table's 3.5 B is not derived in either paper and no layout of the DenseNet table's widths gives it",
        ),
        *_pair("EfficientNet-B1", 7.8, 0.70, "efficientnet_b1"),
        *_pair("ResNet-152", 60, 11, "resnet152", why_macs=_RESNET_V15 + "; the SE paper gives 11.30 G for v1"),
        *_pair(
            "DenseNet-264",
            34,
            6.0,
            "densenet264",
            why_macs="5.75 G here for the DenseNet table's widths (k=32, blocks 6-12-64-48; params -1.9%); the "
            "DenseNet paper gives no FLOPs for it, and the EfficientNet table's 6.0 B is a 2-digit figure",
        ),
        *_pair("Inception-v3", 24, 5.7, "inception_v3", input_size=299),
        *_pair("Xception", 23, 8.4, "xception", input_size=299),
        *_pair("EfficientNet-B2", 9.2, 1.0, "efficientnet_b2"),
        *_pair(
            "Inception-v4",
            48,
            13,
            "inception_v4",
            input_size=299,
            why_params="42.7 M here, exactly TF-slim's / timm's Inception-v4 (the paper's Fig. 9 widths); the 48 M "
            "does not follow from the architecture",
            why_macs="12.25 G for the architecture whose params equal TF-slim's / timm's exactly; the table's 48 M "
            "and 13 B are both off by the same kind of margin, so the EfficientNet authors counted another variant",
        ),
        *_pair("Inception-resnet-v2", 56, 13, "inception_resnet_v2", input_size=299),
        *_pair("EfficientNet-B3", 12, 1.8, "efficientnet_b3"),
        *_pair("ResNeXt-101", 84, 32, "resnext101_32x8d", kwargs={"groups": 64, "width_per_group": 4}, input_size=320),
        *_pair("PolyNet", 92, 35, None),
        *_pair(
            "EfficientNet-B4",
            19,
            4.2,
            "efficientnet_b4",
            why_macs="4.39 G at 380x380, the figure torchvision documents for the same architecture (params +1.8%); "
            "the paper does not say how its 4.2 B was counted",
        ),
        *_pair("SENet", 146, 42, None),
        *_pair("NASNet-A", 89, 24, None),
        *_pair("AmoebaNet-A", 87, 23, None),
        *_pair("PNASNet", 86, 23, None),
        *_pair(
            "EfficientNet-B5",
            30,
            9.9,
            "efficientnet_b5",
            why_macs="10.27 G at 456x456, the figure torchvision documents for the same architecture (params +1.3%); "
            "the paper does not say how its 9.9 B was counted",
        ),
        *_pair("AmoebaNet-C", 155, 41, None),
        *_pair("EfficientNet-B6", 43, 19, "efficientnet_b6"),
        *_pair(
            "EfficientNet-B7",
            66,
            37,
            "efficientnet_b7",
            why_macs="37.75 G at 600x600 (torchvision documents the same), printed by the paper as 37 B",
        ),
        _r("GPipe", "params", 557, None),
    ),
)

SENET_TABLE = TableSpec(
    name="senet",
    title="SENet Table 2: GFLOPs of the re-implemented baselines and their SE counterparts",
    source="Hu et al. 2018, Table 2 (seed 002); GFLOPs = mult-adds at 224x224",
    units={"macs": (1e9, "G")},
    rows=(
        _r("ResNet-50", "macs", 3.86, "resnet50", explanation=_RESNET_V15),
        _r("SE-ResNet-50", "macs", 3.87, "se_resnet50", explanation=_RESNET_V15),
        _r("ResNet-101", "macs", 7.58, "resnet101", explanation=_RESNET_V15),
        _r("SE-ResNet-101", "macs", 7.60, None),
        _r("ResNet-152", "macs", 11.30, "resnet152", explanation=_RESNET_V15),
        _r("SE-ResNet-152", "macs", 11.32, None),
        _r("ResNeXt-50", "macs", 4.24, "resnext50_32x4d"),
        _r("SE-ResNeXt-50", "macs", 4.25, "se_resnext50_32x4d"),
        _r("ResNeXt-101", "macs", 7.99, "resnext101_32x8d", kwargs={"width_per_group": 4}),
        _r("SE-ResNeXt-101", "macs", 8.00, None),
        _r("VGG-16", "macs", 15.47, "vgg16"),
        _r("SE-VGG-16", "macs", 15.48, None),
        _r("BN-Inception", "macs", 2.03, "bn_inception"),
        _r("SE-BN-Inception", "macs", 2.04, None),
        _r(
            "Inception-ResNet-v2",
            "macs",
            11.75,
            "inception_resnet_v2",
            input_size=299,
            explanation="13.16 G here at 299x299, matching the NASNet table's 13.2 B for the same network; the SE "
            "paper's 11.75 G is for its own re-implementation, whose layout it does not give",
        ),
        _r("SE-Inception-ResNet-v2", "macs", 11.76, None),
    ),
)

CBAM_TABLE = TableSpec(
    name="cbam",
    title="CBAM Table: params and GFLOPs of ResNet / ResNeXt with SE and CBAM",
    source="Woo et al. 2018, Table 4 (seed 002); GFLOPs = mult-adds at 224x224",
    units={"params": (1e6, "M"), "macs": (1e9, "G")},
    rows=(
        *_pair("ResNet18", 11.69, 1.814, "resnet18"),
        *_pair("ResNet18 + SE", 11.78, 1.814, None),
        *_pair("ResNet18 + CBAM", 11.78, 1.815, None),
        *_pair("ResNet34", 21.80, 3.664, "resnet34"),
        *_pair("ResNet34 + SE", 21.96, 3.664, None),
        *_pair("ResNet34 + CBAM", 21.96, 3.665, None),
        *_pair("ResNet50", 25.56, 3.858, "resnet50", why_macs=_RESNET_V15),
        *_pair("ResNet50 + SE", 28.09, 3.860, "se_resnet50", why_macs=_RESNET_V15),
        *_pair("ResNet50 + CBAM", 28.09, 3.864, "cbam_resnet50", why_macs=_RESNET_V15),
        *_pair("ResNet101", 44.55, 7.570, "resnet101", why_macs=_RESNET_V15),
        *_pair("ResNet101 + SE", 49.33, 7.575, None),
        *_pair("ResNet101 + CBAM", 49.33, 7.581, None),
        *_pair("ResNeXt50 (32x4d)", 25.03, 3.768, "resnext50_32x4d", why_macs=_CBAM_RESNEXT),
        *_pair("ResNeXt50 (32x4d) + SE", 27.56, 3.771, "se_resnext50_32x4d", why_macs=_CBAM_RESNEXT),
        *_pair("ResNeXt50 (32x4d) + CBAM", 27.56, 3.774, None),
        *_pair(
            "ResNeXt101 (32x4d)",
            44.18,
            7.508,
            "resnext101_32x8d",
            kwargs={"width_per_group": 4},
            why_macs=_CBAM_RESNEXT,
        ),
    ),
)

DENSENET_TABLE = TableSpec(
    name="densenet",
    title="DenseNet CIFAR table: parameters",
    source="Huang et al. 2017, Table 2 (seeds 002, 004); CIFAR input 32x32",
    rows=(
        _r("DenseNet (k=12), depth 40", "params", 1.0, None),
        _r("DenseNet (k=12), depth 100", "params", 7.0, None),
        _r("DenseNet (k=24), depth 100", "params", 27.2, None),
        _r(
            "DenseNet-BC (k=12), depth 100",
            "params",
            0.8,
            "densenet_bc_100_12",
            explanation="0.769 M here: the paper rounds to one digit (0.8 M; -3.9%)",
        ),
        _r("DenseNet-BC (k=24), depth 250", "params", 15.3, "densenet_bc_250_24"),
        _r("DenseNet-BC (k=40), depth 190", "params", 25.6, "densenet_bc_190_40"),
    ),
)

NASNET_TABLE = TableSpec(
    name="nasnet_imagenet",
    title="NASNet ImageNet table: params and mult-adds",
    source="Zoph et al. 2018, Table 2 (seed 002)",
    units={"params": (1e6, "M"), "macs": (1e9, "B")},
    rows=(
        *_pair(
            "Inception V2 (224)",
            11.2,
            1.94,
            "bn_inception",
            why_macs="2.03 G here, the SE paper's figure for the same BN-Inception (2.03 GFLOPs); the NASNet "
            "paper's 1.94 B comes from a different count of the same network",
        ),
        *_pair("NASNet-A (5 @ 1538) (299)", 10.9, 2.35, None),
        *_pair("Inception V3 (299)", 23.8, 5.72, "inception_v3", input_size=299),
        *_pair("Xception (299)", 22.8, 8.38, "xception", input_size=299),
        *_pair("Inception ResNet V2 (299)", 55.8, 13.2, "inception_resnet_v2", input_size=299),
        *_pair("NASNet-A (7 @ 1920) (299)", 22.6, 4.93, None),
        *_pair(
            "ResNeXt-101 (64 x 4d) (320)",
            83.6,
            31.5,
            "resnext101_32x8d",
            kwargs={"groups": 64, "width_per_group": 4},
            input_size=320,
        ),
        *_pair("PolyNet (331)", 92, 34.7, None),
        *_pair("DPN-131 (320)", 79.5, 32.0, None),
        *_pair("SENet (320)", 145.8, 42.3, None),
        *_pair("NASNet-A (6 @ 4032) (331)", 88.9, 23.8, None),
        *_pair("NASNet-A (4 @ 1056) (224, mobile)", 5.3, 0.564, "nasnet_a_mobile"),
    ),
)

TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in (
        MOBILENET_V1_TABLE2,
        MOBILENET_V1_TABLE8,
        MOBILENET_V1_TRADEOFF,
        MOBILENET_V2_COMPARISON,
        SHUFFLENET_V2_TABLE,
        GOOGLENET_TABLE,
        EFFICIENTNET_TABLE,
        SENET_TABLE,
        CBAM_TABLE,
        DENSENET_TABLE,
        NASNET_TABLE,
    )
}


def table_names() -> list[str]:
    return list(TABLES)


def get_table(name: str) -> TableSpec:
    from edgeconv.errors import InvalidArgumentError

    try:
        return TABLES[name]
    except KeyError:
        raise InvalidArgumentError(f"unknown table {name!r}; tables: {', '.join(TABLES)}") from None


@dataclass(frozen=True)
class BenchResults:
    """A results file of ``bench/run_bench.py``: its ``summary`` rows (one per model, backend, provider, precision,
    device and batch, with the median-of-repeats ``p50_ms``) and the environment it recorded."""

    path: Path
    summary: list[dict[str, Any]]
    env: dict[str, Any]

    def environment_summary(self) -> dict[str, Any]:
        """Where the figures were measured, for the tables' JSON: file, machine, CPU, GPU, load, versions."""
        cpu = self.env.get("cpu") or {}
        gpu = self.env.get("gpu") or {}
        return {
            "file": str(self.path),
            "machine": self.path.stem,  # run_bench names the file after the machine
            "hostname": self.env.get("hostname"),
            "cpu": cpu.get("model"),
            "usable_cores": cpu.get("usable_cores"),
            "load_avg_1m": cpu.get("load_avg_1m"),
            "gpu": gpu.get("name"),
            "versions": self.env.get("versions"),
        }

    def measurements(self, model: str, metric: str = LATENCY_METRIC) -> dict[Config, dict[str, Any]]:
        """``model``'s summary rows that ``metric`` reads (its batch, precision and device), by (backend, provider or
        variant, device), the metric's preferred configurations first."""
        spec = MEASURED_METRICS[metric]
        found: dict[Config, dict[str, Any]] = {}
        for row in self.summary:
            if (
                row.get("model") == model
                and row.get("batch") == spec.batch
                and row.get("precision") == spec.precision
                and row.get("device") == spec.device
                and isinstance(row.get("mean_ms" if spec.speed else "p50_ms"), int | float)
            ):
                found.setdefault(_config(row), row)
        preferred = [c for c in spec.preference if c in found]
        order = preferred + sorted(set(found) - set(preferred), key=str)
        return {config: found[config] for config in order}


def _config(row: dict[str, Any]) -> Config:
    """(backend, provider or torch variant, device). Eager PyTorch rows (no variant, or ``eager``) have None."""
    label = row.get("provider") or row.get("variant")
    return (str(row.get("backend")), None if label in (None, "eager") else str(label), str(row.get("device")))


def load_bench(path: str | Path, *, board: str | None = None) -> BenchResults:
    """Read a ``bench/run_bench.py`` JSON file, or the rows ``edgeconv bench --json`` prints (each with its ``env``;
    from boards reached with ``--on``, each with its ``board``: ``board`` picks one when they are several); a missing
    or malformed one raises ArtifactError naming it."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"benchmark results {path} not found; run python bench/run_bench.py") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"benchmark results {path} unreadable ({exc}); re-run python bench/run_bench.py") from None
    if isinstance(document, list):
        return _bench_rows(path, document, board)
    summary = document.get("summary") if isinstance(document, dict) else None
    if not isinstance(summary, list) or not all(isinstance(row, dict) for row in summary):
        raise ArtifactError(
            f"benchmark results {path} have no 'summary' list of rows; give a JSON file written by "
            "`python bench/run_bench.py`"
        )
    env = document.get("env")
    return BenchResults(path=path, summary=summary, env=env if isinstance(env, dict) else {})


def _bench_rows(path: Path, rows: list[Any], board: str | None) -> BenchResults:
    """``edgeconv bench --json`` rows as results: the rows are the summary, the first row's ``env`` the machine."""
    if not rows or not all(isinstance(row, dict) and "p50_ms" in row and "model" in row for row in rows):
        raise ArtifactError(f"benchmark results {path} are not rows of `edgeconv bench --json` (model, p50_ms, ...)")
    boards = list(dict.fromkeys(str(row["board"].get("name")) for row in rows if isinstance(row.get("board"), dict)))
    if board is not None:
        rows = [row for row in rows if isinstance(row.get("board"), dict) and row["board"].get("name") == board]
        if not rows:
            raise ArtifactError(f"{path} has no rows of board {board!r}; its boards: {', '.join(boards) or 'none'}")
    elif len(boards) > 1:
        raise ArtifactError(f"{path} holds rows of {len(boards)} boards ({', '.join(boards)}); pick one with --board")
    env = rows[0].get("env")
    return BenchResults(path=path, summary=rows, env=env if isinstance(env, dict) else {})


def _is_bench_results(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("summary"), list)


def find_bench_results(directories: Iterable[str | Path] | None = None) -> Path | None:
    """The newest full-run results file of bench/run_bench.py (``*.json`` with a ``summary`` list, not
    ``*-quick.json``) in ``directories``; by default ``bench/results`` under the working directory and under the
    edgeconv checkout. Other JSON files there (profile_speed.json ...) are not latency results. None if there is none.
    """
    if directories is None:
        checkout = Path(__file__).resolve().parents[2]
        directories = [Path.cwd() / "bench" / "results", checkout / "bench" / "results"]
    files = {
        candidate.resolve()
        for directory in directories
        for candidate in Path(directory).glob("*.json")
        if not candidate.name.endswith("-quick.json") and candidate.is_file() and _is_bench_results(candidate)
    }
    return max(files, key=lambda f: f.stat().st_mtime, default=None)


class _ProfileCache:
    """Profiles each (model, kwargs, input) once across all rows and tables."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, tuple[tuple[str, Any], ...], int | None], ProfileReport | EdgeconvError] = {}

    def get(self, model: str, kwargs: dict[str, Any], input_size: int | None) -> ProfileReport | EdgeconvError:
        from edgeconv.profile.count import profile_model

        key = (model, tuple(sorted(kwargs.items())), input_size)
        if key not in self._cache:
            try:
                self._cache[key] = profile_model(model, input_size, **kwargs)
            except EdgeconvError as exc:
                self._cache[key] = exc
        return self._cache[key]


def _value(report: ProfileReport, row: TableRow) -> float:
    layers = report.select(row.layers) if row.layers else report.layers
    if row.weights_only:
        layers = [layer for layer in layers if layer.op_type != "other"]
    if row.metric == "params":
        return (
            float(sum(layer.params for layer in layers)) if (row.layers or row.weights_only) else float(report.params)
        )
    if row.metric == "macs":
        return float(sum(layer.macs for layer in layers))
    shares = report.by_type(mac_layers_only=True)
    totals = shares.get(row.op_type)
    if totals is None:
        return 0.0
    return totals.macs_pct if row.metric == "macs_share" else totals.params_pct


def _in_zoo(name: str) -> bool:
    from edgeconv.zoo import get_spec

    try:
        get_spec(name)
    except UnknownModelError:
        return False
    return True


def _describe(config: Config, measured: dict[str, Any], metric: MeasuredMetric) -> str:
    backend, label, device = config
    threads = measured.get("threads") if device == "cpu" else None
    how = "mean" if metric.speed else "p50"
    return f"{backend}{f' ({label})' if label else ''} on {device}, {metric.precision}, batch {metric.batch}, {how}" + (
        f", {threads} threads" if threads else ""
    )


def _latency_row(row: TableRow, spec: TableSpec, bench: BenchResults | None, base: RowResult) -> RowResult:
    """Measured figure beside the paper's; the ratio to the reference model is what gets compared."""
    metric = MEASURED_METRICS[row.metric]
    if bench is None:
        return replace(base, status="pending", explanation=metric.pending)
    model, reference = row.model or "", spec.latency_reference
    measured = bench.measurements(model, row.metric)
    if not any(r.get("device") == metric.device for r in bench.summary):
        return replace(
            base, status="pending", explanation=f"{metric.pending} ({bench.path.name} has no {metric.device} rows)"
        )
    if not measured:
        models = ",".join(dict.fromkeys(m for m in (model, reference) if m))
        why = (
            f"{model} not measured on {metric.device} at batch {metric.batch} in {bench.path}: run python "
            f"bench/run_bench.py --models {models} --device {metric.device} --batch {metric.batch}"
        )
        return replace(base, status="pending", explanation=why)
    reference_measured = bench.measurements(reference, row.metric) if reference else {}
    # The ratio needs both models timed the same way: prefer a configuration the reference was measured with too.
    config = next((c for c in measured if c in reference_measured), next(iter(measured)))
    value = metric.value(measured[config])
    described = _describe(config, measured[config], metric)
    result = replace(base, edgeconv=value, status="ok", explanation="", measured_with=described)
    if config not in reference_measured:
        why = f"no ratio: {reference} not measured with {described}" if reference else ""
        return replace(result, explanation=why)
    ours = value / metric.value(reference_measured[config])
    paper_reference = next(
        (r.paper for r in spec.rows if r.metric == row.metric and r.model == reference and r.paper), None
    )
    paper = row.paper / paper_reference if row.paper is not None and paper_reference else None
    result = replace(result, ratio_edgeconv=ours, ratio_paper=paper)
    if paper is None:
        return result
    deviation = (ours - paper) / paper
    if abs(deviation) <= FLAG_RATIO:
        return replace(result, ratio_deviation=deviation)
    summary = bench.environment_summary()
    where = (summary["gpu"] if metric.device == "cuda" else summary["cpu"]) or bench.path.stem
    what = "speed" if metric.speed else "latency"
    why = (
        f"{what} relative to {reference}: {ours:.2f} here, {paper:.2f} in the paper ({100 * deviation:+.0f}%); "
        f"measured with {described} on {where}, the paper on other hardware and runtime"
    )
    if row.explanation:
        why = f"{why}. {row.explanation}"
    return replace(result, ratio_deviation=deviation, status="flagged", flagged=True, explanation=why)


def compute_row(
    row: TableRow, spec: TableSpec, cache: _ProfileCache | None = None, bench: BenchResults | None = None
) -> RowResult:
    scale, unit = spec.unit(row.metric)
    share = row.metric.endswith("_share")

    def result(edgeconv: float | None, status: str, explanation: str, deviation: float | None = None) -> RowResult:
        flagged = status == "flagged"
        return RowResult(
            label=row.label,
            metric=row.metric,
            unit=unit,
            paper=row.paper,
            edgeconv=edgeconv,
            deviation=deviation,
            deviation_unit="pp" if share else "relative",
            flagged=flagged,
            status=status,
            explanation=explanation,
            model=row.model,
            kwargs=dict(row.kwargs),
            input_size=row.input_size,
        )

    if row.metric in MEASURED_METRICS:
        # figures from different hardware are never flagged: deviation stays None, the ratio is compared
        return _latency_row(row, spec, bench, result(None, "pending", row.pending))
    if row.pending:
        return result(None, "pending", row.pending)
    if row.model is None or not _in_zoo(row.model):
        return result(None, "not in zoo", row.explanation if row.model is None else f"{row.model} is not registered")
    report = (cache or _ProfileCache()).get(row.model, row.kwargs, row.input_size)
    if isinstance(report, EdgeconvError):
        return result(None, "error", f"{type(report).__name__}: {report}")
    value = _value(report, row)
    edgeconv = value if share else value / scale
    if row.paper is None:
        return result(edgeconv, "ok", "")
    if share:
        deviation = edgeconv - row.paper
        flagged = abs(deviation) > FLAG_SHARE_PP
    else:
        deviation = (edgeconv - row.paper) / row.paper
        flagged = abs(deviation) > FLAG_RELATIVE
    if not flagged:
        return result(edgeconv, "ok", "", deviation)
    return result(edgeconv, "flagged", row.explanation or "unexplained", deviation)


def compute_table(
    name_or_spec: str | TableSpec, cache: _ProfileCache | None = None, bench: BenchResults | None = None
) -> TableResult:
    """Reproduce one table: every row with paper figure, edgeconv figure, deviation, flag and explanation.

    Latency rows take their figures from ``bench`` (see :func:`load_bench`, :func:`find_bench_results`) and are
    ``pending`` without it.
    """
    spec = get_table(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    cache = cache or _ProfileCache()
    rows = [compute_row(row, spec, cache, bench) for row in spec.rows]
    has_latency = any(row.metric in MEASURED_METRICS for row in spec.rows)
    return TableResult(
        name=spec.name,
        title=spec.title,
        source=spec.source,
        note=spec.note,
        rows=rows,
        bench=bench.environment_summary() if bench is not None and has_latency else None,
        latency_reference=spec.latency_reference,
    )


def compute_tables(names: Iterable[str] | None = None, bench: BenchResults | None = None) -> list[TableResult]:
    """Every table (or the named ones), sharing one profile cache."""
    cache = _ProfileCache()
    return [compute_table(name, cache, bench) for name in (list(names) if names is not None else list(TABLES))]


def explanation_for(model: str, metric: str) -> str:
    """The tables' explanation for ``model``'s ``metric`` ("params" / "macs") at its default kwargs and input, if any
    table row reproduces the model that way and explains a deviation; else ``""``."""
    for spec in TABLES.values():
        for row in spec.rows:
            if row.model == model and row.metric == metric and not row.kwargs and not row.layers and row.explanation:
                if row.input_size is None or _default_size(model) == row.input_size:
                    return row.explanation
    return ""


def _default_size(model: str) -> int | None:
    from edgeconv.zoo import get_spec

    try:
        return get_spec(model).input_size[1]
    except UnknownModelError:
        return None
