"""A note that explains a deviation from a paper figure quotes edgeconv's own counts: each such count is parsed from the
note and compared with what the code computes now, so a note cannot go stale. Notes are the registry's
``PaperFigures.note`` and the explanations of the paper tables' rows (``edgeconv.profile.tables``).

Every figure a note quotes (an integer written with thousands separators, or a number with a G / M / K / B unit) must
be either checked here (``NOTE_CLAIMS``: a regular expression whose first group is the quoted figure, and the count it
stands for) or listed as a figure from elsewhere (``FROM_ELSEWHERE``: the paper's own, another tool's, a rounded
estimate). A note that gains a figure fails until it is one or the other.

Comparison: the computed count, in the quoted figure's unit, must round to the quoted digits (half a unit of the last
quoted digit); an integer without a unit must be exact. Counts are taken on the meta device (no weights, no arithmetic):
parameters with ``count_params``, mult-adds (conv + FC multiply-accumulates) with ``edgeconv.profile.profile_model``.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
import torch
from conftest import meta_model
from torch import nn

import edgeconv.zoo.pyramidnet
from edgeconv.profile import profile_model
from edgeconv.profile.count import profile_module
from edgeconv.profile.tables import TABLES
from edgeconv.zoo import get_spec, list_specs
from edgeconv.zoo.registry import count_params

G, M = 1e9, 1e6
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
# A quoted figure: 61,100,840 / 2.033G / 563.6 M / 159K / 1.94B (bare numbers are widths, depths, years ...).
FIGURE = re.compile(r"\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)? ?[GMKB]\b")


# ---- the counts ------------------------------------------------------------------------------------------------------
@functools.cache
def params(name: str, **kwargs: Any) -> int:
    return count_params(name, **kwargs)


@functools.cache
def bn_params(name: str, **kwargs: Any) -> int:
    model = meta_model(name, **kwargs)
    return sum(p.numel() for m in model.modules() if isinstance(m, BATCHNORMS) for p in m.parameters())


def non_bn_params(name: str, **kwargs: Any) -> int:
    """Conv and FC weights and biases: everything but BatchNorm's scale / shift."""
    return params(name, **kwargs) - bn_params(name, **kwargs)


@functools.cache
def conv_fc_weights(name: str, block: str = "", **kwargs: Any) -> int:
    """The ``weight`` tensors of conv and FC layers (no biases), in the whole model or under module ``block``."""
    model = meta_model(name, **kwargs)
    root = model.get_submodule(block) if block else model
    return sum(m.weight.numel() for m in root.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


@functools.cache
def macs(name: str, **kwargs: Any) -> int:
    return profile_model(name, **kwargs).macs


@functools.cache
def layer_macs(name: str, prefix: str, **kwargs: Any) -> int:
    """Mult-adds of the layers named ``prefix`` or under it (``conv1.conv``, ``inception5a``, ``fc``)."""
    rows = profile_model(name, **kwargs).layers
    return sum(r.macs for r in rows if r.name == prefix or r.name.startswith(f"{prefix}."))


def _profile(model: nn.Module, name: str) -> int:
    return profile_module(model, torch.empty(1, *get_spec(name).input_size, device="meta")).macs


@functools.cache
def v1_macs(name: str) -> int:
    """Mult-adds with each downsampling bottleneck striding its first 1x1 conv instead of its 3x3 (Caffe's ResNet v1,
    what the papers' tables counted; edgeconv and torchvision stride the 3x3)."""
    model = meta_model(name)
    moved = 0
    for block in model.modules():
        conv1, conv2 = getattr(block, "conv1", None), getattr(block, "conv2", None)
        if isinstance(conv1, nn.Conv2d) and isinstance(conv2, nn.Conv2d) and conv1.kernel_size == (1, 1):
            if conv2.stride != (1, 1):
                conv1.stride, conv2.stride = conv2.stride, (1, 1)
                moved += 1
    assert moved == 3, f"{name}: moved the stride of {moved} bottlenecks, expected one per downsampling stage"
    return _profile(model, name)


@functools.cache
def reparameterized(name: str) -> tuple[int, int]:
    """(params, mult-adds) after ``reparameterize()`` (the deploy form)."""
    model = meta_model(name).reparameterize()
    return sum(p.numel() for p in model.parameters()), _profile(model, name)


@functools.cache
def pyramidnet_rounded_widths() -> int:
    """PyramidNet's parameters with each unit's width rounded instead of floored."""
    rounding = SimpleNamespace(**{k: getattr(math, k) for k in dir(math) if not k.startswith("_")})
    rounding.floor = round
    with mock.patch.object(edgeconv.zoo.pyramidnet, "math", rounding), torch.device("meta"):
        model = get_spec("pyramidnet").builder()
    return sum(p.numel() for p in model.parameters())


# ---- what each note quotes -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    pattern: str  # group 1: the figure as the note quotes it
    count: Callable[[], float]  # what the code computes for it
    unit: float = 1.0


def C(pattern: str, count: Callable[[], float], unit: float = 1.0) -> Claim:  # noqa: N802
    return Claim(pattern, count, unit)


N = r"([\d,]+)"  # an exact count: 61,100,840
D = r"([\d.]+)"  # a decimal in the claim's unit: 4.096
RESNET_V1 = r"Mult-adds: ([\d.]+) G here.*counts ([\d.]+) G, matching"  # edgeconv.zoo.resnet.stride_note


def stride_note(name: str) -> list[Claim]:
    return [
        C(RESNET_V1, lambda: macs(name), G),
        C(RESNET_V1.replace("Mult-adds: ([\\d.]+)", "Mult-adds: [\\d.]+"), lambda: v1_macs(name), G),
    ]


def efficientnet(variant: str) -> Claim:
    return C(rf"{variant.upper()} {D}\b", lambda: macs(f"efficientnet_{variant}"), G)


NOTE_CLAIMS: dict[str, list[Claim]] = {
    "alexnet": [C(rf"^{N} here", lambda: params("alexnet")), C(rf"alexnet_lrn \({N}\)", lambda: params("alexnet_lrn"))],
    "alexnet_lrn": [
        C(rf"^{N} here", lambda: params("alexnet_lrn")),
        C(rf"groups=1 merges the towers: {N}", lambda: params("alexnet_lrn", groups=1)),
    ],
    "allcnn_c": [C(rf"^{N} here", lambda: params("allcnn_c"))],
    "allcnn_imagenet": [C(rf"^{N} parameters here", lambda: params("allcnn_imagenet"))],
    "bn_inception": [
        C(rf"^{N} params here", lambda: params("bn_inception")),
        C(rf"and {D}G mult-adds", lambda: macs("bn_inception"), G),
        C(rf"SENet's {D}G", lambda: macs("bn_inception"), G),  # the SE paper's figure is this network's count
    ],
    "cbam_resnet50": stride_note("cbam_resnet50"),
    "convnext_base": [C(rf"^{N} params here", lambda: params("convnext_base"))],
    "convnext_small": [C(rf"^{N} params here", lambda: params("convnext_small"))],
    "convnext_tiny": [C(rf"^{N} params here", lambda: params("convnext_tiny"))],
    "densenet169": [
        C(rf"^{N} params", lambda: params("densenet169")),
        C(rf"Mult-adds {D} G here", lambda: macs("densenet169"), G),
    ],
    "densenet264": [
        C(rf"^{N} params here", lambda: params("densenet264")),
        C(rf"Mult-adds {D} G here", lambda: macs("densenet264"), G),
    ],
    "densenet_bc_100_12": [
        C(rf"^{N} here", lambda: params("densenet_bc_100_12")),
        C(rf"and {D}M rounds", lambda: params("densenet_bc_100_12"), M),
        C(rf"Of ours, {N} are BN", lambda: bn_params("densenet_bc_100_12")),
    ],
    "dpn68": [
        C(rf"^{N} params", lambda: params("dpn68")),
        C(rf"and {D} G conv \+ FC mult-adds", lambda: macs("dpn68"), G),
    ],
    "efficientnet_b0": [efficientnet(v) for v in ("b4", "b5", "b6", "b7")],  # the same note for B0-B7
    "efficientnet_lite0": [  # the same note for Lite0-4
        C(rf"lite0 {D} M", lambda: macs("efficientnet_lite0"), M),
        C(rf"lite4 {N} M", lambda: macs("efficientnet_lite4"), M),
    ],
    "googlenet": [
        C(rf"^{N} here", lambda: params("googlenet")),
        C(rf"vision#906; -{N} weights", lambda: params("googlenet", branch3_kernel_size=5) - params("googlenet")),
        C(rf"conv\+BN instead of conv\+bias \(\+{N}\)", lambda: bn_params("googlenet") // 2),  # a bias per BN channel
        C(rf"\(branch3_kernel_size=5\): {N}", lambda: params("googlenet", branch3_kernel_size=5)),
        C(rf"i\.e\. {N} conv/fc weights", lambda: conv_fc_weights("googlenet", branch3_kernel_size=5)),
        C(rf"its 3a row: {N} weights", lambda: conv_fc_weights("googlenet", "inception3a", branch3_kernel_size=5)),
        C(rf"Mult-adds: {D}G here", lambda: macs("googlenet"), G),
        C(rf"{D}G with the 5x5 kernels", lambda: macs("googlenet", branch3_kernel_size=5), G),
        C(rf"add {N} params", lambda: params("googlenet", aux_logits=True) - params("googlenet")),
    ],
    "inception_resnet_v2": [C(rf"^{N} here", lambda: params("inception_resnet_v2"))],
    "inception_v3": [
        C(rf"^{N} here", lambda: params("inception_v3")),
        C(rf"aux_logits=True adds {N}", lambda: params("inception_v3", aux_logits=True) - params("inception_v3")),
        C(rf"torchvision's {N}\)", lambda: params("inception_v3", aux_logits=True)),
    ],
    "inception_v4": [
        C(rf"^{N} here", lambda: params("inception_v4")),
        C(rf"Mult-adds here: {D}G", lambda: macs("inception_v4"), G),
    ],
    "ji2013_3dcnn": [
        C(rf"^{N} here", lambda: params("ji2013_3dcnn")),
        C(
            rf"bias per output map, {N} parameters",
            lambda: sum(p.numel() for p in meta_model("ji2013_3dcnn").c6.parameters()),
        ),
    ],
    "lenet5": [C(rf"^{N} here", lambda: params("lenet5"))],
    "mobilenet_v1": [
        C(rf"^{N} here", lambda: params("mobilenet_v1")),
        C(rf"of which {N} are BN", lambda: bn_params("mobilenet_v1")),
    ],
    "mobilenet_v2": [
        C(rf"^{N} here", lambda: params("mobilenet_v2")),
        C(rf"leaves out the {N} BN", lambda: bn_params("mobilenet_v2")),
        C(rf"\({N} conv\+FC weights\)", lambda: non_bn_params("mobilenet_v2")),
    ],
    "mobilenet_v2_140": [
        C(rf"^{N} here", lambda: params("mobilenet_v2_140")),
        C(rf"Without BN that is {N}", lambda: non_bn_params("mobilenet_v2_140")),
        C(rf"the {D} M \(and", lambda: non_bn_params("mobilenet_v2_140"), M),  # TF-slim's figure is this count
        C(rf"and {D} M MACs", lambda: macs("mobilenet_v2_140"), M),  # TF-slim's 582 M: also this count
        C(rf"MACs, {D} M here", lambda: macs("mobilenet_v2_140"), M),
    ],
    "mobilenet_v3_large": [C(rf"^{N} here", lambda: params("mobilenet_v3_large"))],
    "mobilenet_v3_small": [
        C(rf"^{N} here", lambda: params("mobilenet_v3_small")),
        C(rf"reports {D} M params", lambda: params("mobilenet_v3_small"), M),  # the final paper's: this network
        C(rf"\({D} M MACs here\)", lambda: macs("mobilenet_v3_small"), M),
    ],
    "nasnet_a_mobile": [
        C(rf"^{N} params", lambda: params("nasnet_a_mobile")),
        C(rf"and {D} M conv / FC mult-adds", lambda: macs("nasnet_a_mobile"), M),
    ],
    "nin": [C(rf"^{N} here", lambda: params("nin"))],
    "preact_resnet50": [
        C(rf"Mult-adds: {D} G here", lambda: macs("preact_resnet50"), G),
        C(rf"strides the first 1x1 \({D} G\)", lambda: v1_macs("preact_resnet50"), G),
    ],
    "pyramidnet": [
        C(rf"^{N} here", lambda: params("pyramidnet")),
        C(rf"alpha 84: {N} here", lambda: params("pyramidnet", alpha=84)),
        C(rf"{N} of ours are BN", lambda: bn_params("pyramidnet")),
        C(rf"instead of flooring gives {N}", pyramidnet_rounded_widths),
    ],
    "replknet_31b": [
        C(rf"^{N} params", lambda: params("replknet_31b")),
        C(rf"and {D} G mult-adds in this", lambda: macs("replknet_31b"), G),
        C(rf"merged\) {N} params", lambda: reparameterized("replknet_31b")[0]),
        C(rf"params and {D} G mult-adds, the paper", lambda: reparameterized("replknet_31b")[1], G),
    ],
    **{
        name: [C(rf"training-time multi-branch form, {N} params", lambda name=name: params(name))]
        for name in ("repvgg_a0", "repvgg_a1", "repvgg_a2", "repvgg_b0", "repvgg_b1", "repvgg_b2", "repvgg_b3")
    },
    "resnet50": stride_note("resnet50"),
    "resnet101": stride_note("resnet101"),
    "resnet152": [C(rf"^{N} params here", lambda: params("resnet152")), *stride_note("resnet152")],
    "resnext50_32x4d": stride_note("resnext50_32x4d"),
    "resnext101_32x8d": [
        C(rf"resnext101_32x8d, {N} params", lambda: params("resnext101_32x8d")),
        C(rf"width_per_group=4 gives {N}", lambda: params("resnext101_32x8d", groups=64, width_per_group=4)),
    ],
    "se_resnet50": stride_note("se_resnet50"),
    "se_resnext50_32x4d": stride_note("se_resnext50_32x4d"),
    "shufflenet_v1": [
        C(rf"^1x g=3: {N} params", lambda: params("shufflenet_v1")),
        C(rf"params / {D} M MACs here", lambda: macs("shufflenet_v1"), M),
        *[  # g=1/2/4/8: 143.1/140.8/134.3/138.4 M
            C(r"g=1/2/4/8: " + r"[\d.]+/" * i + D, lambda g=g: macs("shufflenet_v1", groups=g), M)
            for i, g in enumerate((1, 2, 4, 8))
        ],
        C(rf"g=3 1\.5x: {N}", lambda: params("shufflenet_v1", width_mult=1.5)),
        C(rf"\(\+1\.3%\) / {D} M", lambda: macs("shufflenet_v1", width_mult=1.5), M),
        C(rf"2x: {N}", lambda: params("shufflenet_v1", width_mult=2.0)),
        C(rf"\(\+0\.9%\) / {D} M", lambda: macs("shufflenet_v1", width_mult=2.0), M),
    ],
    "shufflenet_v2_x0_5": [
        C(rf"^{N} here", lambda: params("shufflenet_v2_x0_5")),
        C(rf"\({D} M ->", lambda: params("shufflenet_v2_x0_5"), M),
    ],
    "slak_tiny": [
        C(rf"^{N} params here", lambda: params("slak_tiny")),
        C(rf"and {D} G mult-adds", lambda: macs("slak_tiny"), G),
        C(rf"0\.6 x {D} M", lambda: params("slak_tiny"), M),
        C(rf"0\.6 x [\d.]+ M = {D} M", lambda: 0.6 * params("slak_tiny"), M),
        C(rf"so 0\.6 x {D} G", lambda: macs("slak_tiny"), G),
        C(rf"0\.6 x [\d.]+ G = {D} G", lambda: 0.6 * macs("slak_tiny"), G),
        C(rf"reparameterize\(\) leaves {N}", lambda: reparameterized("slak_tiny")[0]),
    ],
    "zfnet": [
        C(rf"^{N} parameters here", lambda: params("zfnet")),
        C(rf"Table 2\) gives {N}", lambda: params("zfnet", wide=True)),
    ],
}

# Figures a note quotes from elsewhere: the paper's (often rounded), another paper's or tool's, an estimate. Not counts
# of this code, so nothing to compare them with here (test_zoo / test_profile compare the paper figures themselves).
FROM_ELSEWHERE: dict[str, set[str]] = {
    "alexnet_lrn": {"60M"},
    "allcnn_c": {"1.4 M"},
    "bn_inception": {"1.94B", "84M"},  # NASNet's count with TF-slim's separable stem, and the difference
    "densenet_bc_100_12": {"0.8M"},
    "dpn68": {"37.8M", "6.5 G"},  # DPN-92's figures in the paper
    "efficientnet_b0": {"4.2 B", "9.9 B"},
    "efficientnet_lite0": {"407 M", "2,640"},
    "googlenet": {"159K", "6.8M", "1.5G"},
    "inception_v4": {"48M", "3.4M", "46M", "13B"},
    "ji2013_3dcnn": {"289,536"},  # the paper's C6: 128 x 78 x (7 x 4 + 1)
    "lenet5": {"1,516"},
    "mobilenet_v2": {"3.4M"},
    "mobilenet_v2_140": {"6.9M"},
    "mobilenet_v3_small": {"56 M", "2.9M", "66M"},
    "nin": {"1M"},
    "pyramidnet": {"3.8M"},
    "replknet_31b": {"79 M", "15.3 G"},
    "resnext101_32x8d": {"83.6M", "31.5B"},
    "shufflenet_v1": {"137 M"},
    "shufflenet_v2_x0_5": {"1.4 M"},
    "slak_tiny": {"30 M", "5.0 G"},
}


# The tables' row explanations, by the first row (table, label, metric) of each distinct text. K = 1024 in GoogLeNet's
# table (its note); V1 = the Caffe ResNet layout (stride in the first 1x1), which the tables' "v1.5" explanation quotes.
K = 1024.0
GOOGLENET_5X5 = {"branch3_kernel_size": 5}
V1_LIST = r"instead \(the original v1\) gives "
RESNET_V1_CLAIMS = [
    C(V1_LIST + D, lambda: v1_macs("resnet50"), G),
    C(V1_LIST + r"[\d.]+ / " + D, lambda: v1_macs("resnet101"), G),
    C(V1_LIST + r"[\d.]+ / [\d.]+ / " + D, lambda: v1_macs("resnet152"), G),
    C(rf"and {D} G for ResNeXt-50", lambda: v1_macs("resnext50_32x4d"), G),
]
TABLE_CLAIMS: dict[tuple[str, str, str], list[Claim]] = {
    ("mobilenet_v1_table2", "Conv 3x3", "macs_share"): [
        C(rf"costs {D} M of", lambda: layer_macs("mobilenet_v1", "features.0.0"), M),
        C(rf"of {D} M =", lambda: macs("mobilenet_v1"), M),
        C(rf"= {D}%", lambda: 100 * layer_macs("mobilenet_v1", "features.0.0") / macs("mobilenet_v1")),
    ],
    ("mobilenet_v1_table8", "GoogleNet", "params"): [
        C(rf"kernels give {D} M", lambda: params("googlenet", **GOOGLENET_5X5), M),
    ],
    ("mobilenet_v1_table8", "GoogleNet", "macs"): [
        C(rf"widths give {D} G", lambda: macs("googlenet", **GOOGLENET_5X5), G)
    ],
    ("mobilenet_v1_tradeoff", "0.5 MobileNet-224", "params"): [
        C(rf"^{D} M includes", lambda: params("mobilenet_v1", width_mult=0.5), M),
        C(rf"includes {N} BatchNorm", lambda: bn_params("mobilenet_v1", width_mult=0.5)),
        C(rf"the {D} M conv\+FC", lambda: non_bn_params("mobilenet_v1", width_mult=0.5), M),
    ],
    ("mobilenet_v1_tradeoff", "0.25 MobileNet-224", "params"): [
        C(rf"one digit: {D} M", lambda: params("mobilenet_v1", width_mult=0.25), M),
        C(rf"\({D} M without BatchNorm", lambda: non_bn_params("mobilenet_v1", width_mult=0.25), M),
    ],
    ("mobilenet_v2_comparison", "ShuffleNet (1.5)", "macs"): [
        C(rf"^{D} M:", lambda: macs("shufflenet_v1", groups=3, width_mult=1.5), M),
        C(rf"matches exactly \({D} M\)", lambda: macs("shufflenet_v1", groups=3, width_mult=2.0), M),
    ],
    ("mobilenet_v2_comparison", "MobileNetV2", "params"): [
        C(rf"^{N} =", lambda: params("mobilenet_v2")),
        C(rf"the {N} BatchNorm", lambda: bn_params("mobilenet_v2")),
        C(rf"\({N} conv\+FC weights", lambda: non_bn_params("mobilenet_v2")),
    ],
    ("mobilenet_v2_comparison", "MobileNetV2 (1.4)", "params"): [
        C(rf"^{D} M here", lambda: params("mobilenet_v2_140"), M),
        C(rf"\({D} M without BatchNorm\)", lambda: non_bn_params("mobilenet_v2_140"), M),
    ],
    ("shufflenet_v2", "0.5x", "params"): [C(rf"^{N} ", lambda: params("shufflenet_v2_x0_5"))],
    ("googlenet_table", "convolution 7x7/2", "params"): [
        C(rf"= {N} weights", lambda: conv_fc_weights("googlenet", "conv1", **GOOGLENET_5X5)),
        C(rf"weights \({D} K\)", lambda: conv_fc_weights("googlenet", "conv1", **GOOGLENET_5X5), K),
    ],
    ("googlenet_table", "convolution 7x7/2", "macs"): [
        C(rf"outputs = {D} M", lambda: layer_macs("googlenet", "conv1", **GOOGLENET_5X5), M),
    ],
    ("googlenet_table", "inception (4c)", "params"): [
        C(rf"widths give {N} weights", lambda: conv_fc_weights("googlenet", "inception4c", **GOOGLENET_5X5)),
        C(rf"weights \({D} K\)", lambda: conv_fc_weights("googlenet", "inception4c", **GOOGLENET_5X5), K),
    ],
    ("googlenet_table", "inception (5a)", "params"): [
        C(rf"give {N} weights", lambda: conv_fc_weights("googlenet", "inception5a", **GOOGLENET_5X5)),
        C(rf"weights \({D} K\)", lambda: conv_fc_weights("googlenet", "inception5a", **GOOGLENET_5X5), K),
        C(rf"and {D} M ops", lambda: layer_macs("googlenet", "inception5a", **GOOGLENET_5X5), M),
    ],
    ("googlenet_table", "inception (5a)", "macs"): [
        C(rf"widths give {D} M", lambda: layer_macs("googlenet", "inception5a", **GOOGLENET_5X5), M),
    ],
    ("googlenet_table", "linear", "macs"): [
        C(rf"= {D} M", lambda: layer_macs("googlenet", "fc", **GOOGLENET_5X5), M),
    ],
    ("efficientnet", "DenseNet-169", "macs"): [C(rf"^{D} G here", lambda: macs("densenet169"), G)],
    ("efficientnet", "ResNet-152", "macs"): RESNET_V1_CLAIMS,
    ("efficientnet", "DenseNet-264", "macs"): [C(rf"^{D} G here", lambda: macs("densenet264"), G)],
    ("efficientnet", "Inception-v4", "params"): [C(rf"^{D} M here", lambda: params("inception_v4"), M)],
    ("efficientnet", "Inception-v4", "macs"): [C(rf"^{D} G for", lambda: macs("inception_v4", input_size=299), G)],
    ("efficientnet", "EfficientNet-B4", "macs"): [C(rf"^{D} G at 380x380", lambda: macs("efficientnet_b4"), G)],
    ("efficientnet", "EfficientNet-B5", "macs"): [C(rf"^{D} G at 456x456", lambda: macs("efficientnet_b5"), G)],
    ("efficientnet", "EfficientNet-B7", "macs"): [C(rf"^{D} G at 600x600", lambda: macs("efficientnet_b7"), G)],
    ("senet", "ResNet-50", "macs"): RESNET_V1_CLAIMS,
    ("senet", "Inception-ResNet-v2", "macs"): [
        C(rf"^{D} G here at 299x299", lambda: macs("inception_resnet_v2", input_size=299), G),
    ],
    ("cbam", "ResNeXt50 (32x4d)", "macs"): [
        *RESNET_V1_CLAIMS,
        C(rf"edgeconv {D} /", lambda: macs("resnext50_32x4d"), G),
        C(rf"edgeconv [\d.]+ / {D} G", lambda: macs("resnext101_32x8d", width_per_group=4), G),  # 32x4d
    ],
    ("densenet", "DenseNet-BC (k=12), depth 100", "params"): [
        C(rf"^{D} M here", lambda: params("densenet_bc_100_12"), M),
    ],
    ("nasnet_imagenet", "Inception V2 (224)", "macs"): [C(rf"^{D} G here", lambda: macs("bn_inception"), G)],
}
TABLE_FROM_ELSEWHERE: dict[tuple[str, str, str], set[str]] = {
    ("mobilenet_v1_table8", "GoogleNet", "params"): {"6.8 M", "6,797", "7 K"},  # GoogLeNet's table sum, 6,797.7 K
    ("mobilenet_v1_table8", "GoogleNet", "macs"): {"1.50 G", "84 M", "1.55 G"},
    ("mobilenet_v1_tradeoff", "0.25 MobileNet-224", "params"): {"0.5 M"},
    ("mobilenet_v2_comparison", "MobileNetV2", "params"): {"3.4 M"},
    ("mobilenet_v2_comparison", "MobileNetV2 (1.4)", "params"): {"6.9 M"},
    ("shufflenet_v2", "0.5x", "params"): {"1.4 M"},
    ("googlenet_table", "convolution 7x7/2", "params"): {"2.7 K", "34 M"},
    ("googlenet_table", "inception (4c)", "params"): {"100 M", "510 K", "463 K"},
    ("googlenet_table", "inception (5a)", "params"): {"1072 K", "54 M", "1.1 M"},
    ("googlenet_table", "linear", "macs"): {"1 M"},
    ("efficientnet", "DenseNet-169", "macs"): {"3.5 B"},
    ("efficientnet", "ResNet-152", "macs"): {"11.30 G"},
    ("efficientnet", "DenseNet-264", "macs"): {"6.0 B"},
    ("efficientnet", "Inception-v4", "params"): {"48 M"},
    ("efficientnet", "Inception-v4", "macs"): {"48 M", "13 B"},
    ("efficientnet", "EfficientNet-B4", "macs"): {"4.2 B"},
    ("efficientnet", "EfficientNet-B5", "macs"): {"9.9 B"},
    ("efficientnet", "EfficientNet-B7", "macs"): {"37 B"},
    ("senet", "Inception-ResNet-v2", "macs"): {"13.2 B", "11.75 G"},
    ("cbam", "ResNeXt50 (32x4d)", "macs"): {"7.99 G"},
    ("densenet", "DenseNet-BC (k=12), depth 100", "params"): {"0.8 M"},
    ("nasnet_imagenet", "Inception V2 (224)", "macs"): {"1.94 B"},
}


def _distinct_notes() -> list[str]:
    """The first model of each distinct note (EfficientNet-B0..B7 share one, as do Lite0..4)."""
    seen: dict[str, str] = {}
    for spec in list_specs():
        if spec.figures.note and spec.figures.note not in seen:
            seen[spec.figures.note] = spec.name
    return list(seen.values())


def _distinct_explanations() -> dict[tuple[str, str, str], str]:
    seen: dict[str, tuple[str, str, str]] = {}
    for table in TABLES.values():
        for row in table.rows:
            if row.explanation and row.explanation not in seen:
                seen[row.explanation] = (table.name, row.label, row.metric)
    return {key: text for text, key in seen.items()}


NOTED = _distinct_notes()
EXPLAINED = _distinct_explanations()


def check_note(what: str, note: str, claims: list[Claim], elsewhere: set[str]) -> None:
    checked: list[tuple[int, int]] = []
    wrong = []
    for claim in claims:
        match = re.search(claim.pattern, note)
        assert match, f"{what}: the note no longer quotes /{claim.pattern}/; update the claim with the note"
        quoted = match.group(1)
        decimals = len(quoted.partition(".")[2])
        ours = claim.count() / claim.unit
        if abs(ours - float(quoted.replace(",", ""))) > 0.5 * 10.0**-decimals + 1e-9:
            wrong.append(f"note quotes {quoted!r} (/{claim.pattern}/), the code counts {ours:,.{decimals + 2}f}")
        checked.append(match.span(1))
    assert not wrong, f"{what}: " + "; ".join(wrong)
    unchecked = [
        figure.group(0)
        for figure in FIGURE.finditer(note)
        if not any(start < figure.end() and figure.start() < end for start, end in checked)
        and figure.group(0) not in elsewhere
    ]
    assert not unchecked, (
        f"{what}: the note quotes {unchecked}: add a claim that checks each against the code's count "
        "or list it as a figure from elsewhere"
    )


def test_claims_name_existing_notes() -> None:
    assert not set(NOTE_CLAIMS) - set(NOTED), "claims for a model without a (distinct) note"
    assert not set(FROM_ELSEWHERE) - set(NOTED)
    assert not set(TABLE_CLAIMS) - set(EXPLAINED), "claims for a table row without a (distinct) explanation"
    assert not set(TABLE_FROM_ELSEWHERE) - set(EXPLAINED)


@pytest.mark.parametrize("name", NOTED)
def test_counts_quoted_in_registry_notes_are_the_codes(name: str) -> None:
    check_note(name, get_spec(name).figures.note, NOTE_CLAIMS.get(name, []), FROM_ELSEWHERE.get(name, set()))


@pytest.mark.parametrize("row", list(EXPLAINED), ids="/".join)
def test_counts_quoted_in_table_explanations_are_the_codes(row: tuple[str, str, str]) -> None:
    check_note("/".join(row), EXPLAINED[row], TABLE_CLAIMS.get(row, []), TABLE_FROM_ELSEWHERE.get(row, set()))
