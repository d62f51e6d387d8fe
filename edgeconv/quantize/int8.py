"""INT8 post-training quantization to QDQ ONNX, one form per runtime, with a fidelity gate.

Pipeline (``quantize_int8``): calibration and held-out crops from disjoint photos -> (PyTorch, on the BN-folded model)
cross-layer equalization of conv pairs and residual streams, activation centring (tensorrt target), optionally
empirical bias correction -> ONNX -> ORT ``quantize_static`` (QDQ) with the target's scheme -> adaptive rounding of
the 8-bit weights (``adaround.py``) ->
per-layer sensitivity and automatic high-precision fallback of layers and activation tensors until the gate holds ->
fidelity against the FP32 artifact on the held-out crops.

Targets (measured on this project's AVX2, non-VNNI CPU; bench/results/int8.md):

- ``onnxruntime``: uint8 activations (asymmetric, per tensor), int8 symmetric per-channel weights. ORT's u8s8 GEMM
  kernel on AVX2 without VNNI multiplies with ``vpmaddubsw``, which adds the products of two neighbouring input
  channels (same kernel position) into a saturating int16: ``255 * 127 + 255 * 127`` overflows. Plain 8-bit weights
  lost ~19 points of top-1 agreement on mobilenet_v2 against the same graph evaluated exactly; 7-bit weights everywhere
  avoid it but cost ~14 points themselves (weights alone). So weights stay on an 8-bit grid whose per-channel scale
  keeps every same-sign neighbour pair within 128 (``saturation_safe_scales``: 255 * 128 < 2^15, no saturation
  possible on any x86 CPU; it costs 0.7 points against unconstrained 8-bit, weights alone). Depthwise convs run a
  direct int32 kernel and are left alone. u8u8 also avoids saturation but ran
  at 0.87x FP32 latency instead of ~0.6x.
- ``tensorrt``: int8 symmetric activations and weights, every zero point 0, per-channel weights on the output-channel
  axis (Conv axis 0), Q/DQ only on the inputs of compute ops (TensorRT fuses them; reference section 2b). Its fidelity
  is measured on ONNX Runtime CPU with graph optimizations off, i.e. the QDQ graph's exact arithmetic (TensorRT
  accumulates in int32); ORT's own fused s8s8 AVX2 kernels saturate, and that graph is not meant for them.
  ReLU / ReLU6 outputs between two convs are centred on 0 first (``center_unsigned_activations``; a padded reader
  pads with ``-c``), so that they get the whole symmetric grid instead of its positive half, and quantized on exactly
  ``[-c, c]`` (``centred_ranges``); the reader's bias is then re-derived from its quantized weights
  (``compensate_offsets``), since ``c * sum(W_q - W)`` summed over a layer's inputs is not small.

Both targets: a re-parameterized RepVGG kernel's identity centre taps are computed as a separate depthwise 1x1 conv
(``equalize.split_identity_taps``), so that they no longer set the 3x3 weights' per-channel range.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import logging
import re
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from edgeconv.errors import CalibrationError, InvalidArgumentError, QuantizationError
from edgeconv.files import write_atomic
from edgeconv.quantize.adaround import AdaRoundOptions, RoundedLayer, adaround, apply_rounding
from edgeconv.quantize.calibration import (
    MIN_IMAGES,
    CalibrationData,
    CalibrationReader,
    CalibrationSplit,
    Preprocessing,
    ProgressCallback,
    load_calibration_data,
)
from edgeconv.quantize.fidelity import (
    DEFAULT_MIN_AGREEMENT,
    FidelityReport,
    check_gate,
    compare_logits,
    meets_gate,
    sqnr_db,
)

if TYPE_CHECKING:
    import onnx
    from torch import nn

    from edgeconv.zoo.registry import ModelSpec

logger = logging.getLogger(__name__)

Target = Literal["onnxruntime", "tensorrt"]
TARGETS: tuple[str, ...] = ("onnxruntime", "tensorrt")
CALIBRATION_METHODS: tuple[str, ...] = ("minmax", "entropy", "percentile")
DEFAULT_CALIBRATION_METHOD = "percentile"
QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# Largest |w0| + |w1| of two same-sign int8 weights that ORT's AVX2 u8s8 kernel adds in one int16 (255 * 128 < 2^15).
PAIR_SUM_LIMIT = 128
# Automatic fallback stops GATE_MARGIN above the gate on the calibration crops: choosing layers on the crops it is
# scored on is optimistic (mobilenet_v2, tensorrt target: 82.0% on calibration crops, 76.7% held out).
GATE_MARGIN = 0.03


@dataclass(frozen=True)
class Int8Options:
    """Everything ``quantize_int8`` can be told. ``calib_dir=None`` means the repository's ``calibration/`` folder.

    ``fallback``: ``"auto"`` (keep the most sensitive layers in float until ``min_agreement`` and
    ``min_confident_agreement`` hold, at most ``max_fallback_layers`` and within ``latency_budget`` x FP32 on the
    onnxruntime target), ``"none"``, or PyTorch module names to keep in float (``("features.0.0", "classifier.1")``).
    """

    target: Target = "onnxruntime"
    calib_dir: Path | None = None
    calib_method: str = DEFAULT_CALIBRATION_METHOD
    calib_samples: int = 128
    eval_samples: int = 300
    seed: int = 0
    equalize: bool = True
    relu6: Literal["skip", "relu"] = "skip"
    # Off by default: with 8-bit saturation-safe weights it did not help mobilenet_v2 (76.3% -> 75.0% top-1 agreement
    # on 300 held-out crops), and a bias corrected for 8-bit weights is wrong once fallback makes them 16-bit.
    bias_correction: bool = False
    bias_correction_samples: int = 64  # expected error per channel converges fast; each sample costs 2 forward passes
    # Adaptive rounding of the 8-bit weights (adaround.py). mobilenet_v2 onnxruntime, 1000 held-out crops: 86.4% /
    # 99.7% confident all-INT8, against 81.9% / 99.1% for nearest rounding even with fallback; ~3 min on 2 cores.
    adaround: bool = True
    adaround_iterations: int = 200
    # tensorrt target: shift ReLU/ReLU6 outputs between two convs to be centred on 0 (symmetric int8 grid).
    center_activations: bool = True
    # Re-parameterized (RepVGG) kernels: move the identity branch's centre taps into a depthwise 1x1 conv.
    split_identity: bool = True
    fallback: str | tuple[str, ...] = "auto"
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    min_confident_agreement: float = 0.0  # gate on the crops FP32 is sure about (p > 0.5); 0 = off
    max_fallback_layers: int = 8
    latency_budget: float | None = 0.7
    percentile: float = 99.999
    force: bool = False
    input_size: tuple[int, int] | None = None  # None: the FP32 ONNX input's (H, W), else the spec's
    # Called as calibration crops are prepared and fed; carried here so pipeline hooks need not know about it.
    progress: ProgressCallback | None = field(default=None, compare=False, repr=False)
    rounding_progress: ProgressCallback | None = field(default=None, compare=False, repr=False)  # (layers done, total)

    def validate(self) -> None:
        if self.target not in TARGETS:
            raise InvalidArgumentError(f"--target {self.target!r} is not known; choose one of {', '.join(TARGETS)}")
        if self.calib_method not in CALIBRATION_METHODS:
            raise InvalidArgumentError(
                f"--calib-method {self.calib_method!r} is not known; choose one of {', '.join(CALIBRATION_METHODS)}"
            )
        if self.adaround_iterations < 1:
            raise InvalidArgumentError(f"adaptive rounding iterations {self.adaround_iterations} must be at least 1")
        if self.calib_samples < 8:
            raise InvalidArgumentError(f"--calib-samples {self.calib_samples} is too few; use at least 8 (128 default)")
        if self.eval_samples < 1:
            raise InvalidArgumentError(f"evaluation samples {self.eval_samples} must be at least 1")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise InvalidArgumentError(f"--min-agreement {self.min_agreement} must be a fraction in [0, 1], e.g. 0.85")
        if not 0.0 <= self.min_confident_agreement <= 1.0:
            raise InvalidArgumentError(
                f"--min-confident-agreement {self.min_confident_agreement} must be a fraction in [0, 1], e.g. 0.99"
            )
        if isinstance(self.fallback, str) and self.fallback not in ("auto", "none"):
            raise InvalidArgumentError(
                f"--fallback {self.fallback!r}: use auto, none, or module names separated by commas"
            )


@dataclass
class LayerSensitivity:
    module: str
    node: str
    op_type: str
    sqnr_db: float  # of this layer's output in the fully quantized graph vs FP32 (accumulated error)
    own_sqnr_db: float  # of its dequantized input vs the FP32 graph's same tensor (error accumulated up to its input)
    weight_sqnr_db: float = float("inf")  # of its dequantized weight against the float weight
    fallback_gain: float | None = None  # mean KL removed (calibration crops) by keeping only its weights high-precision


@dataclass
class Int8Report:
    """What ``quantize_int8`` did and measured; ``manifest()`` is the dict written into ``manifest.json``."""

    target: str
    calib_method: str
    fidelity: FidelityReport
    baseline: FidelityReport | None  # plain PTQ (no CLE, no bias correction, no fallback), when measured
    fallback_modules: list[str]
    gate_passed: bool
    min_agreement: float
    min_confident_agreement: float = 0.0
    equalized_pairs: int = 0
    equalized_streams: int = 0  # residual streams rescaled per channel (equalize_residual_streams)
    equalization_skipped: int = 0
    bias_corrected_layers: int = 0
    centred_activations: dict[str, float] = field(default_factory=dict)  # tensorrt target: module name -> shift
    identity_split: list[str] = field(default_factory=list)  # convs whose identity taps went to a depthwise 1x1
    rounded: list[RoundedLayer] = field(default_factory=list)  # adaptive rounding, per layer
    layers: list[LayerSensitivity] = field(default_factory=list)
    latency_ratio: float | None = None  # INT8 / FP32 median latency, batch 1, ORT CPU (onnxruntime target)
    calibration_images: list[str] = field(default_factory=list)
    evaluation_images: list[str] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)
    calib_samples: int = 0
    notes: list[str] = field(default_factory=list)
    before_fallback: FidelityReport | None = None  # CLE + bias correction, all layers INT8 (when fallback ran)

    def manifest(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "calibration": {
                "method": self.calib_method,
                "samples": self.calib_samples,
                "images": self.calibration_images,
                "skipped_files": self.skipped_files,
            },
            "evaluation_images": self.evaluation_images,
            "fidelity": self.fidelity.as_dict(),
            "plain_ptq_fidelity": self.baseline.as_dict() if self.baseline else None,
            "fidelity_before_fallback": self.before_fallback.as_dict() if self.before_fallback else None,
            "gate": {
                "min_agreement": self.min_agreement,
                "min_confident_agreement": self.min_confident_agreement,
                "passed": self.gate_passed,
            },
            "equalized_pairs": self.equalized_pairs,
            "equalized_residual_streams": self.equalized_streams,
            "bias_corrected_layers": self.bias_corrected_layers,
            "centred_activations": {name: round(shift, 4) for name, shift in self.centred_activations.items()},
            "identity_split_convs": self.identity_split,
            "adaround": {
                "layers": len(self.rounded),
                "weights_flipped": round(float(np.mean([r.flipped for r in self.rounded])), 4) if self.rounded else 0.0,
                "output_mse_vs_nearest": {
                    r.module: round(r.error / r.error_nearest, 4) for r in self.rounded if r.error_nearest > 0
                },
            },
            "float_fallback": self.fallback_modules,
            "latency_ratio_vs_fp32": self.latency_ratio,
            "layer_sqnr_db": {layer.module or layer.node: round(layer.sqnr_db, 2) for layer in self.layers},
            "fallback_kl_gain": {
                layer.module or layer.node: round(layer.fallback_gain, 4)
                for layer in self.layers
                if layer.fallback_gain is not None
            },
            "notes": self.notes,
        }


# --- names ---------------------------------------------------------------------------------------------------------

_SCOPE_SUFFIX = re.compile(r"^[A-Za-z]+(_\d+)?$")


def node_module_name(node_name: str) -> str:
    """PyTorch module name of an ONNX node from the TorchScript exporter, or ``""`` when the node has no scope.

    The exporter's scope path names each module relative to the nearest enclosing module that is not a container:
    ``/features/features.1/conv/conv.0/conv.0.0/Conv`` is ``features.1.conv.0.0`` (``conv`` restarts under the
    ``features.1`` block); ``/layer1/layer1.0/conv1/Conv`` is ``layer1.0.conv1``; ``/classifier/classifier.1/Gemm`` is
    ``classifier.1``.
    """
    parts = [p for p in node_name.split("/") if p]
    if len(parts) < 2 or not _SCOPE_SUFFIX.match(parts[-1]):
        return ""
    qualified, base, previous = "", "", None
    for part in parts[:-1]:
        if previous is None or not part.startswith(previous + "."):
            base = qualified  # a new relative naming starts inside the current module
        qualified = f"{base}.{part}" if base else part
        previous = part
    return qualified


def quantizable_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type in QUANTIZED_OPS]


def resolve_fallback(model: onnx.ModelProto, modules: Sequence[str]) -> list[str]:
    """PyTorch module names (or ONNX node names) -> ONNX node names of the compute ops they cover."""
    nodes = quantizable_nodes(model)
    chosen: list[str] = []
    for name in modules:
        hits = [
            n.name
            for n in nodes
            if name in (n.name, node_module_name(n.name)) or node_module_name(n.name).startswith(name + ".")
        ]
        if not hits:
            known = ", ".join(sorted({node_module_name(n.name) or n.name for n in nodes})[:8])
            raise InvalidArgumentError(
                f"--fallback layer {name!r} is not a quantized layer of this model; "
                f"layers are PyTorch module names such as: {known} ..."
            )
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


# --- ORT quantization ----------------------------------------------------------------------------------------------


def _ort_method(name: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    return {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[name]


def _reduction_rows(weight: np.ndarray, layout: str) -> np.ndarray:
    """``weight`` as (output channels, reduction) in the order ORT's GEMM kernels reduce over: ``"conv"`` (OIHW ->
    O x (kh, kw, input channel), input channel fastest), ``"gemm_t"`` (Gemm with transB, [N, K]), ``"matmul"``
    ([K, N])."""
    if layout == "conv":
        return weight.transpose(0, 2, 3, 1).reshape(weight.shape[0], -1)
    if layout == "gemm_t":
        return weight.reshape(weight.shape[0], -1)
    return weight.reshape(weight.shape[0], -1).T


def _from_rows(rows: np.ndarray, shape: tuple[int, ...], layout: str) -> np.ndarray:
    if layout == "conv":
        o, i, kh, kw = shape
        return np.ascontiguousarray(rows.reshape(o, kh, kw, i).transpose(0, 3, 1, 2))
    if layout == "gemm_t":
        return rows.reshape(shape)
    return np.ascontiguousarray(rows.T.reshape(shape))


def _pairs(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reduction neighbours (2j, 2j+1) of each row, as ORT's AVX2 u8s8 kernels pack them (checked against ORT in
    tests/test_quantize_int8.py); an odd reduction length gets a zero partner."""
    if rows.shape[1] % 2:
        rows = np.concatenate([rows, np.zeros((rows.shape[0], 1), rows.dtype)], axis=1)
    return rows[:, 0::2], rows[:, 1::2]


def limit_pair_sums(weight: np.ndarray, layout: str, limit: int = PAIR_SUM_LIMIT) -> tuple[np.ndarray, int]:
    """Shrink same-sign neighbour pairs of int8 ``weight`` so that ``|w0| + |w1| <= limit``; returns (weight, pairs
    changed)."""
    rows = _reduction_rows(weight, layout).astype(np.int32)
    depth = rows.shape[1]
    a, b = _pairs(rows)
    total = np.abs(a) + np.abs(b)
    bad = (np.sign(a) == np.sign(b)) & (total > limit)
    new_a = np.where(bad, np.sign(a) * np.rint(np.abs(a) * limit / np.maximum(total, 1)), a)
    new_b = np.where(bad, np.sign(b) * (limit - np.abs(new_a)), b)
    fixed = np.empty((rows.shape[0], a.shape[1] * 2), np.int32)
    fixed[:, 0::2], fixed[:, 1::2] = new_a, new_b
    return _from_rows(fixed[:, :depth].astype(np.int8), weight.shape, layout), int(bad.sum())


def saturation_safe_scales(weight: np.ndarray, layout: str, qmax: int = 127) -> np.ndarray:
    """Per-output-channel symmetric scales under which no same-sign neighbour pair of the quantized weight sums past
    ``PAIR_SUM_LIMIT``: ``max(max|w| / 127, max same-sign pair sum / 128)``. Measured on mobilenet_v2 (weights only,
    300 held-out crops): 86.0% top-1 agreement vs 86.7% for unconstrained 8-bit and 84.0% for 7-bit dense weights,
    while clipping the offending pairs of plain 8-bit weights instead collapses it to 15%."""
    a, b = _pairs(_reduction_rows(weight, layout).astype(np.float64))
    pair = np.where(a * b > 0, np.abs(a) + np.abs(b), np.maximum(np.abs(a), np.abs(b)))
    scale = np.maximum(pair.max(axis=1) / PAIR_SUM_LIMIT, np.abs(a).max(axis=1).clip(np.abs(b).max(axis=1)) / qmax)
    return np.maximum(scale, np.finfo(np.float32).tiny).astype(np.float32)


def gemm_layout(node: onnx.NodeProto, weight_ndim: int) -> str | None:
    """The ``_reduction_rows`` layout of a compute node's weight, or None for ops that do not run ORT's u8s8 GEMM:
    grouped and depthwise convs (a direct int32 kernel), ConvTranspose (1-D/3-D convs are not in the zoo)."""
    if node.op_type == "Conv" and weight_ndim == 4:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        return "conv" if group == 1 else None
    if node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute):
        return "gemm_t"
    if node.op_type in ("Gemm", "MatMul") and weight_ndim == 2:
        return "matmul"
    return None


def make_saturation_safe(model: onnx.ModelProto, float_model: onnx.ModelProto) -> int:
    """Re-quantize in place every int8 weight of a GEMM-backed op (``gemm_layout``: dense Conv, Gemm, MatMul) of the
    QDQ ``model`` with ``saturation_safe_scales`` (float weights and biases from ``float_model``, matched by node name),
    re-quantizing its int32 bias to the new ``input scale * weight scale``; grouped and depthwise convs are left alone.
    Returns the number of layers changed."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    float_inits = {i.name: i for i in float_model.graph.initializer}
    float_nodes = {n.name: n for n in float_model.graph.node}
    producer = {o: n for n in model.graph.node for o in n.output}

    def dq_of(name: str, constant: bool = True) -> onnx.NodeProto | None:
        node = producer.get(name)
        if node is None or node.op_type != "DequantizeLinear" or node.input[1] not in inits:
            return None
        return node if node.input[0] in inits or not constant else None

    def array(name: str) -> np.ndarray:
        return numpy_helper.to_array(inits[name])

    def store(name: str, value: np.ndarray) -> None:
        inits[name].CopyFrom(numpy_helper.from_array(value, name))

    changed = 0
    for node in quantizable_nodes(model):
        source = float_nodes.get(node.name)
        wdq = dq_of(node.input[1]) if len(node.input) > 1 else None
        xdq = dq_of(node.input[0], constant=False)
        if source is None or wdq is None or xdq is None:
            continue
        if array(wdq.input[0]).dtype != np.int8 or source.input[1] not in float_inits:
            continue
        weight = numpy_helper.to_array(float_inits[source.input[1]]).astype(np.float32)
        layout = gemm_layout(node, weight.ndim)
        if layout is None:
            continue
        if array(wdq.input[1]).size != weight.shape[1 if layout == "matmul" else 0]:
            continue  # not per-channel
        scale = saturation_safe_scales(weight, layout)
        shape = (1, -1) if layout == "matmul" else (-1,) + (1,) * (weight.ndim - 1)
        q = np.clip(np.rint(weight / scale.reshape(shape)), -127, 127).astype(np.int8)
        q, _ = limit_pair_sums(q, layout)  # rounding can still push a pair to 129 or 130
        store(wdq.input[0], q)
        store(wdq.input[1], scale)
        bdq = dq_of(node.input[2]) if len(node.input) > 2 else None
        if bdq is not None and len(source.input) > 2 and source.input[2] in float_inits:
            bias_scale = (array(xdq.input[1]).astype(np.float32) * scale).astype(np.float32)
            bias = numpy_helper.to_array(float_inits[source.input[2]]).astype(np.float64)
            store(bdq.input[0], np.rint(bias / bias_scale).astype(np.int32))
            store(bdq.input[1], bias_scale)
        changed += 1
    return changed


def compensate_offsets(model: onnx.ModelProto, float_model: onnx.ModelProto, offsets: Mapping[str, float]) -> int:
    """Re-derive the bias of every quantized Conv/Gemm that reads a centred activation from the weights the QDQ graph
    really computes with; returns how many were set.

    Centring (``equalize.center_unsigned_activations``) feeds ``x - c`` and adds ``c * sum(W)`` to the reader's bias,
    exact in float. Quantized, the reader computes ``W_q (x - c)``: the bias must add ``c * sum(W_q)``, or each output
    channel is off by ``c * sum(W_q - W)``, a rounding error summed over all its inputs. ``offsets``: activation
    (PyTorch module name) -> ``c``. Idempotent: computed from ``float_model``'s bias every time.
    """
    from onnx import numpy_helper

    if not offsets:
        return 0
    inits = {i.name: i for i in model.graph.initializer}
    float_inits = {i.name: i for i in float_model.graph.initializer}
    float_nodes = {n.name: n for n in float_model.graph.node}
    producer = {o: n for n in model.graph.node for o in n.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)

    def followers(tensor: str) -> list[onnx.NodeProto]:  # through Q -> DQ pairs and the Pad of a PaddedConv2d
        found = []
        for node in readers.get(tensor, []):
            if node.op_type in ("QuantizeLinear", "DequantizeLinear", "Pad"):
                found.extend(followers(node.output[0]))
            else:
                found.append(node)
        return found

    count = 0
    for act in model.graph.node:
        shift = offsets.get(node_module_name(act.name) or "")
        if shift is None:
            continue
        for node in followers(act.output[0]):
            source = float_nodes.get(node.name)
            weight = _dequantized_weight(node, producer, inits)
            if weight is None or source is None or len(node.input) < 3 or node.input[2] not in inits:
                continue
            w_float = numpy_helper.to_array(float_inits[source.input[1]]).astype(np.float64)
            b_float = numpy_helper.to_array(float_inits[source.input[2]]).astype(np.float64)
            error = (weight - w_float).reshape(w_float.shape[0], -1).sum(axis=1)
            bias = inits[node.input[2]]
            bias.CopyFrom(numpy_helper.from_array((b_float + shift * error).astype(np.float32), bias.name))
            count += 1
    return count


def centred_ranges(model: onnx.ModelProto, offsets: Mapping[str, float]) -> dict[str, float]:
    """``{tensor: c}`` for every tensor of ``model`` that holds a centred activation (``offsets``: PyTorch module name
    -> shift ``c``): the activation's output, and the output of a Pad that reads it (``equalize.PaddedConv2d``).

    Each is quantized with the range ``[-c, c]`` exactly (scale ``c / 127``), not its calibrated one: the ReLU's zeros,
    most of the tensor, are ``-c`` after the shift, and only this range puts them on a grid point (``-127``). A
    calibrated range a little off ``c`` rounds every one of them by up to half a step, all in the same direction: on
    mobilenet_v2 (its 17 projection inputs centred; 1000 held-out crops, nearest rounding) that bias cost more than
    the finer grid gained: 72.8% top-1 agreement calibrated, 74.8% pinned, 70.7% not centred.
    """
    found = {}
    for node in model.graph.node:
        shift = offsets.get(node_module_name(node.name) or "")
        if shift is not None and node.op_type in ("Clip", "Relu"):
            found[node.output[0]] = shift
    for node in model.graph.node:
        if node.op_type == "Pad" and node.input[0] in found:
            found[node.output[0]] = found[node.input[0]]
    return found


def _dequantized_weight(
    node: onnx.NodeProto, producer: dict[str, onnx.NodeProto], inits: dict[str, onnx.TensorProto]
) -> np.ndarray | None:
    """The weight a Conv/Gemm computes with in a QDQ graph: DQ(integer initializer) (onnxruntime form) or
    DQ(Q(float initializer)) (tensorrt form)."""
    from onnx import numpy_helper

    dq = producer.get(node.input[1]) if len(node.input) > 1 else None
    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[1] not in inits:
        return None
    if dq.input[0] in inits:
        quantized = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float64)
    else:
        q = producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or q.input[0] not in inits:
            return None
        weight = numpy_helper.to_array(inits[q.input[0]]).astype(np.float64)
        scale, zero = weight_grid(dq, inits, weight.ndim)
        info = np.iinfo(np.int8)
        quantized = np.clip(np.rint(weight / scale) + zero, info.min, info.max)
    scale, zero = weight_grid(dq, inits, quantized.ndim)
    return (quantized - zero) * scale


def high_precision(
    model: onnx.ModelProto, nodes: Sequence[str], tensors: Sequence[str], extra: dict[str, Any]
) -> dict[str, Any]:
    """``extra_options`` giving the weights of ``nodes`` and the activation ``tensors`` 16-bit quantization: how the
    onnxruntime target keeps part of a model "in float".

    Leaving a layer out of ``quantize_static`` does not work on ORT: its ``WeightBiasQuantization`` optimizer (default
    sessions, ORT >= 1.20) quantizes the float weight of any Conv/Gemm whose input comes from a DequantizeLinear to
    *symmetric per-tensor* int8 at load time -- mobilenet_v2's first depthwise conv "in float" lost 17 points of
    agreement that way. A 16-bit weight (per channel, SQNR ~90 dB) has a DequantizeLinear of its own, which that
    optimizer leaves alone, and no CPU integer kernel takes 16-bit operands, so the layer runs as a float Conv under any
    session options. A 16-bit activation tensor likewise makes its producer and consumers run in float on a 256x finer
    grid than uint8, keeping the range (and any ReLU6 folded into it) unchanged.
    """
    from onnxruntime.quantization import QuantType

    inits = {i.name for i in model.graph.initializer}
    wanted = set(nodes)
    overrides = dict(extra.get("TensorQuantOverrides", {}))
    for node in model.graph.node:
        if node.name in wanted and len(node.input) > 1 and node.input[1] in inits:
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            axis = 1 if node.op_type == "MatMul" or (node.op_type == "Gemm" and not trans_b) else 0  # output channels
            overrides[node.input[1]] = [{"quant_type": QuantType.QInt16, "axis": axis}]
    for tensor in tensors:
        overrides[tensor] = [{"quant_type": QuantType.QUInt16}]
    return {**extra, "TensorQuantOverrides": overrides, "UseQDQContribOps": True}


def _quantize_kwargs(target: str, options: Int8Options) -> dict[str, Any]:
    """``quantize_static`` arguments for ``target``."""
    from onnxruntime.quantization import QuantFormat, QuantType

    extra: dict[str, Any] = {"CalibPercentile": options.percentile, "WeightSymmetric": True}
    if target == "tensorrt":
        extra.update(
            {
                "ActivationSymmetric": True,
                "AddQDQPairToWeight": True,
                "DedicatedQDQPair": True,
                "QuantizeBias": False,
                "ForceQuantizeNoInputCheck": True,
                "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS),
                "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1, "MatMul": 1},
            }
        )
        types = {"activation_type": QuantType.QInt8, "weight_type": QuantType.QInt8}
        ops = list(QUANTIZED_OPS)
    else:
        types = {"activation_type": QuantType.QUInt8, "weight_type": QuantType.QInt8}
        ops = None  # ORT's default set: also Add, Pool, Concat ..., which keeps whole chains in int8 (speed)
    return {
        "quant_format": QuantFormat.QDQ,
        "per_channel": True,
        "reduce_range": False,
        "op_types_to_quantize": ops,
        "extra_options": extra,
        **types,
    }


class _Quantizer:
    """Runs ``quantize_static`` repeatedly on one pre-processed model, calibrating only once (ORT >= 1.31 caches the
    ranges in a file; older releases recalibrate)."""

    def __init__(
        self,
        source: Path,
        workdir: Path,
        samples: np.ndarray,
        input_name: str,
        target: str,
        options: Int8Options,
        progress: ProgressCallback | None,
        offsets: dict[str, float] | None = None,
        *,
        plain: bool = False,
    ) -> None:
        import onnx
        from onnxruntime.quantization import quant_pre_process

        self.pre = workdir / "pre.onnx"
        try:
            quant_pre_process(str(source), str(self.pre))
        except Exception as exc:  # shape inference failures surface as many exception types
            logger.info("quant_pre_process failed (%s); quantizing the model as exported", exc)
            self.pre = source
        self.model = onnx.load(str(self.pre))
        self.samples, self.input_name, self.target, self.options = samples, input_name, target, options
        self.progress = progress
        self.kwargs = _quantize_kwargs(target, options)
        # plain: what a user of ORT's quantizer gets with the target's types and nothing else (the bench baseline)
        self.saturation_safe = target == "onnxruntime" and not plain
        self.safe_layers = 0
        self.adaround = options.adaround and not plain
        self.rounded: list[RoundedLayer] | None = None  # learned once, on the first (all-INT8) graph
        self.offsets = offsets or {}  # centred activations (module name -> shift) whose readers' biases follow W_q
        if self.offsets:  # quantized on exactly [-c, c]
            extra = self.kwargs["extra_options"]
            pinned = {
                tensor: [{"rmin": np.float32(-shift), "rmax": np.float32(shift)}]
                for tensor, shift in centred_ranges(self.model, self.offsets).items()
            }
            overrides = {**extra.get("TensorQuantOverrides", {}), **pinned}
            self.kwargs["extra_options"] = {**extra, "TensorQuantOverrides": overrides}
        self.workdir = workdir
        self.cache = workdir / f"ranges.{options.calib_method}.json"
        self.cacheable = (
            "calibration_cache_path"
            in inspect.signature(
                __import__("onnxruntime.quantization", fromlist=["quantize_static"]).quantize_static
            ).parameters
        )
        self.count = 0
        graph_input = next(i for i in self.model.graph.input if i.name == input_name)
        batch_dim = graph_input.type.tensor_type.shape.dim[0]
        self.batch_size = batch_dim.dim_value if batch_dim.HasField("dim_value") else 16  # a fixed batch must be fed

    def __call__(self, out: Path, exclude: Sequence[str] = (), tensors: Sequence[str] = ()) -> Path:
        """Quantize to ``out``, keeping the compute nodes ``exclude`` and the activation ``tensors`` in high precision
        (onnxruntime target: 16-bit weights / 16-bit activations, see ``high_precision``; tensorrt target: the nodes
        left unquantized, which TensorRT then runs in FP16/FP32)."""
        from onnxruntime.quantization import quantize_static

        reader = CalibrationReader(
            self.samples,
            self.input_name,
            batch_size=self.batch_size,
            progress=self.progress if self.count == 0 else None,
        )
        extra = {} if not self.cacheable else {"calibration_cache_path": str(self.cache)}
        kwargs = dict(self.kwargs)
        if self.target == "onnxruntime" and (exclude or tensors):
            kwargs["extra_options"] = high_precision(self.model, exclude, tensors, kwargs["extra_options"])
            exclude = ()
        printed = io.StringIO()  # ORT's calibrators print progress to stdout, which `--json` keeps for the JSON
        with contextlib.redirect_stdout(printed):
            quantize_static(
                str(self.pre),
                str(out),
                reader,
                nodes_to_exclude=list(exclude) or None,
                calibrate_method=_ort_method(self.options.calib_method),
                **kwargs,
                **extra,
            )
        if printed.getvalue().strip():
            logger.debug("onnxruntime quantization: %s", " / ".join(printed.getvalue().split("\n")).strip(" /"))
        if self.saturation_safe or self.adaround or self.offsets:
            import onnx

            model = onnx.load(str(out))
            if self.saturation_safe:
                self.safe_layers = make_saturation_safe(model, self.model)
            if self.adaround:
                self._round(model)
            if self.offsets:
                count = compensate_offsets(model, self.model, self.offsets)
                logger.debug("biases re-derived for %d readers of centred activations", count)
            onnx.save(model, str(out))
        self.count += 1
        return out

    def _round(self, model: onnx.ModelProto) -> None:
        """Adaptive rounding: learned on the first graph, re-applied to the later ones (layers the fallback moved to
        16 bits keep theirs)."""
        if self.rounded is not None:
            apply_rounding(model, self.model, self.rounded)
            return

        def constrain(node: onnx.NodeProto, weight: np.ndarray) -> np.ndarray:
            """Rounding up can push a neighbour pair past what ORT's AVX2 u8s8 kernel adds without saturating."""
            layout = gemm_layout(node, weight.ndim)
            return weight if layout is None else limit_pair_sums(weight, layout)[0]

        options = AdaRoundOptions(iterations=self.options.adaround_iterations, seed=self.options.seed)
        self.rounded = adaround(
            model,
            self.model,
            self.samples,
            self.workdir,
            options,
            constrain=constrain if self.saturation_safe else None,
            progress=self.options.rounding_progress,
            offsets=self.offsets,
        )

    def ranges(self) -> dict[str, tuple[float, float]]:
        """Calibrated (low, high) of every activation tensor, from ORT's range cache (after the first call)."""
        import json

        if not self.cache.is_file():
            return {}

        def value(v: Any) -> float:  # a number, or a serialized numpy array of one
            return float(np.asarray(v["data"] if isinstance(v, dict) else v, dtype=np.float64).reshape(-1)[0])

        data = json.loads(self.cache.read_text()).get("data", {})
        return {name: (value(r["lowest"]), value(r["highest"])) for name, r in data.items()}


# --- running ---------------------------------------------------------------------------------------------------------


def _session(path: Path, exact: bool = False, threads: int | None = None) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    if exact:  # QDQ arithmetic as written (what TensorRT computes), not ORT's fused integer kernels
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_onnx(
    path: Path, samples: np.ndarray, *, exact: bool = False, batch_size: int = 32, output: int = 0
) -> np.ndarray:
    """Logits of ``samples`` through ``path`` on ORT CPU (batch 1 when the model's batch dimension is fixed)."""
    session = _session(path, exact)
    inp = session.get_inputs()[0]
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
    step = fixed or batch_size
    outs = []
    for start in range(0, len(samples), step):
        batch = samples[start : start + step]
        if fixed and len(batch) != fixed:
            batch = np.concatenate([batch, np.repeat(batch[-1:], fixed - len(batch), 0)])
            outs.append(session.run(None, {inp.name: batch})[output][: len(samples) - start])
        else:
            outs.append(session.run(None, {inp.name: batch})[output])
    result = np.concatenate(outs)
    return result.reshape(result.shape[0], -1)


def measure_latency_ratio(
    fp32: Path, int8: Path, sample: np.ndarray, *, runs: int = 30, warmup: int = 5, exact: bool = False
) -> tuple[float, float, float]:
    """(fp32 ms, int8 ms, ratio): medians of interleaved batch-1 runs on ORT CPU, same process, same input."""
    sessions = [_session(fp32), _session(int8, exact)]
    feeds = [{s.get_inputs()[0].name: sample[:1]} for s in sessions]
    for s, f in zip(sessions, feeds, strict=True):
        for _ in range(warmup):
            s.run(None, f)
    times: list[list[float]] = [[], []]
    for _ in range(runs):
        for i, (s, f) in enumerate(zip(sessions, feeds, strict=True)):
            start = time.perf_counter()
            s.run(None, f)
            times[i].append(time.perf_counter() - start)
    a, b = float(np.median(times[0])) * 1e3, float(np.median(times[1])) * 1e3
    return a, b, b / a


def layer_sqnr(float_model: Path, qdq_model: Path, samples: np.ndarray, workdir: Path) -> list[LayerSensitivity]:
    """Per compute layer: SQNR of its output as the rest of the QDQ graph sees it (after its output Q/DQ, if any; QDQ
    graph run exactly) against the FP32 graph's same tensor -- the error accumulated up to that layer -- SQNR of its
    dequantized input against the FP32 graph's value of that tensor (the error accumulated up to its input), and SQNR
    of its dequantized weight."""
    import onnx
    from onnx import numpy_helper

    fmodel = onnx.load(str(float_model))
    qmodel = onnx.load(str(qdq_model))
    compute = [n for n in qmodel.graph.node if n.op_type in QUANTIZED_OPS]
    finits = {i.name: i for i in fmodel.graph.initializer}
    qinits = {i.name: i for i in qmodel.graph.initializer}
    float_weights = {
        f.name: numpy_helper.to_array(finits[f.input[1]]).astype(np.float64)
        for f in fmodel.graph.node
        if f.op_type in QUANTIZED_OPS and len(f.input) > 1 and f.input[1] in finits
    }
    float_names = {o for n in fmodel.graph.node for o in n.output} | {i.name for i in fmodel.graph.input}
    producer = {o: n for n in qmodel.graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in qmodel.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    pairs: dict[str, tuple[str, str]] = {}  # node -> (float tensor, quantized-graph tensor) of its output
    inputs: dict[str, tuple[str, str]] = {}  # node -> (float tensor, dequantized input) of its activation input
    for n in compute:
        out = n.output[0]
        q = next((c for c in consumers.get(out, []) if c.op_type == "QuantizeLinear"), None)
        dq = next((c for c in consumers.get(q.output[0], []) if c.op_type == "DequantizeLinear"), None) if q else None
        pairs[n.name] = (out, dq.output[0] if dq is not None else out)
        src = producer.get(n.input[0])
        if src is not None and src.op_type == "DequantizeLinear":
            qin = producer.get(src.input[0])
            if qin is not None and qin.op_type == "QuantizeLinear":
                inputs[n.name] = (qin.input[0], n.input[0])
    want_f = sorted({f for f, _ in [*pairs.values(), *inputs.values()] if f in float_names})
    want_q = sorted({q for _, q in [*pairs.values(), *inputs.values()]})
    fpath, qpath = workdir / "f_aug.onnx", workdir / "q_aug.onnx"
    _with_outputs(fmodel, want_f, fpath)
    _with_outputs(qmodel, want_q, qpath)
    fo = _run_named(fpath, samples)
    qo = _run_named(qpath, samples)
    result = []
    for n in compute:
        f_out, q_out = pairs[n.name]
        if f_out not in fo or q_out not in qo:
            continue
        total = sqnr_db(fo[f_out], qo[q_out])
        f_in, q_in = inputs.get(n.name, ("", ""))
        own = sqnr_db(fo[f_in], qo[q_in]) if f_in in fo and q_in in qo else float("inf")
        weights = _weight_sqnr(n, float_weights, qinits, producer)
        result.append(LayerSensitivity(node_module_name(n.name), n.name, n.op_type, total, own, weights))
    return result


def _weight_sqnr(
    node: onnx.NodeProto,
    float_weights: dict[str, np.ndarray],
    qinits: dict[str, onnx.TensorProto],
    producer: dict[str, onnx.NodeProto],
) -> float:
    """SQNR of ``node``'s dequantized weight (QDQ graph) against its float weight (``float_weights``, by node name)."""
    weight = float_weights.get(node.name)
    quantized = _dequantized_weight(node, producer, qinits)
    if weight is None or quantized is None:
        return float("inf")
    return sqnr_db(weight, quantized)


def weight_grid(dq: onnx.NodeProto, inits: dict[str, onnx.TensorProto], ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """(scale, zero point) of a weight's DequantizeLinear ``dq``, as float64 arrays broadcastable to the ``ndim``-D
    weight (per-tensor, or per channel along the node's ``axis``)."""
    import onnx
    from onnx import numpy_helper

    scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float64)
    has_zero = len(dq.input) > 2 and dq.input[2] in inits
    zero = numpy_helper.to_array(inits[dq.input[2]]).astype(np.float64) if has_zero else np.zeros(1)
    axis = next((onnx.helper.get_attribute_value(a) for a in dq.attribute if a.name == "axis"), 1)
    shape = [1] * ndim
    shape[axis if scale.size > 1 else 0] = -1
    return scale.reshape(shape), zero.reshape(shape if zero.size > 1 else [1] * ndim)


def _with_outputs(model: onnx.ModelProto, names: Sequence[str], path: Path) -> None:
    import onnx

    model = copy.deepcopy(model)
    present = {o.name for o in model.graph.output}
    for name in names:
        if name not in present:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    onnx.save(model, str(path))


def _run_named(path: Path, samples: np.ndarray) -> dict[str, np.ndarray]:
    session = _session(path, exact=True)
    name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    fixed = session.get_inputs()[0].shape[0]
    step = fixed if isinstance(fixed, int) else len(samples)
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for start in range(0, len(samples) - step + 1, step):
        for n, v in zip(names, session.run(None, {name: samples[start : start + step]}), strict=True):
            chunks[n].append(np.asarray(v))
    return {n: np.concatenate(v) for n, v in chunks.items() if v and v[0].dtype.kind == "f"}


# --- the pipeline ----------------------------------------------------------------------------------------------------


def _onnx_input(path: Path) -> tuple[str, list[int | str]]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    graph_input = next(i for i in model.graph.input if i.name not in inits)
    dims = [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "batch")
        for d in graph_input.type.tensor_type.shape.dim
    ]
    return graph_input.name, dims


def _fold_for_quantization(torch_model: nn.Module) -> nn.Module:
    try:
        from edgeconv.fuse import fuse_model
    except ImportError:  # pragma: no cover - the fuse package ships with edgeconv
        return copy.deepcopy(torch_model).eval()
    return fuse_model(torch_model).model.eval()


def _export(
    model: nn.Module, path: Path, input_name: str, dims: list[int | str], opset: int, output_name: str = "output"
) -> None:
    """Re-export with the FP32 artifact's input/output names, shape and opset, so the INT8 file is a drop-in."""
    import torch

    shape = [d if isinstance(d, int) else 1 for d in dims]
    dynamic = {i: str(d) for i, d in enumerate(dims) if not isinstance(d, int)}
    kwargs: dict[str, Any] = {}
    if dynamic:
        kwargs["dynamic_axes"] = {input_name: dynamic, output_name: {0: dynamic[0]} if 0 in dynamic else {}}
    with torch.no_grad(), warnings.catch_warnings():
        # PaddedConv2d's constant pads go through a reversing Slice the exporter cannot fold; quant_pre_process
        # folds it, so the quantized graph's Pad reads constant pads.
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
        torch.onnx.export(
            model,
            (torch.zeros(shape),),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[input_name],
            output_names=[output_name],
            **kwargs,
        )


def _opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return max(13, next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17))  # QDQ axis: 13+


def _output_name(path: Path) -> str:
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.output[0].name


def prepare_calibration(
    spec: ModelSpec | Preprocessing,
    options: Int8Options,
    progress: ProgressCallback | None = None,
    *,
    split: CalibrationSplit | None = None,
) -> CalibrationData:
    """Calibration + held-out crops for ``spec``'s preprocessing, per ``options`` (``split``: the folder as read
    already)."""
    prep = spec if isinstance(spec, Preprocessing) else Preprocessing.from_spec(spec, options.input_size)
    return load_calibration_data(
        options.calib_dir,
        prep,
        samples=options.calib_samples,
        eval_samples=options.eval_samples,
        seed=options.seed,
        method=options.calib_method,
        progress=progress,
        split=split,
    )


def quantize_int8(
    model_fp32_onnx: str | Path,
    out_path: str | Path,
    spec: ModelSpec | Preprocessing,
    torch_model: nn.Module | None = None,
    options: Int8Options | None = None,
    *,
    progress: ProgressCallback | None = None,
    data: CalibrationData | None = None,
    measure_baseline: bool = False,
) -> Int8Report:
    """Quantize ``model_fp32_onnx`` to a QDQ INT8 model at ``out_path`` (written atomically) and measure it.

    ``torch_model``: the FP32 PyTorch model the ONNX file came from; needed for cross-layer equalization and bias
    correction (done in PyTorch, then re-exported); without it those steps are skipped and noted. ``data``:
    pre-computed calibration crops (benchmarks reuse one set across variants). Raises ``QuantizationError`` when the
    held-out agreement is below ``options.min_agreement`` and ``options.force`` is not set; the file is then not
    written.
    """
    options = options or Int8Options()
    options.validate()
    source_fp32 = Path(model_fp32_onnx)
    out = Path(out_path)
    if not source_fp32.is_file():
        raise QuantizationError(f"FP32 model {source_fp32} does not exist; export it first")
    if options.calib_samples < MIN_IMAGES[options.calib_method]:
        raise CalibrationError(f"--calib-samples {options.calib_samples} is below what {options.calib_method} needs")
    progress = progress or options.progress
    input_name, dims = _onnx_input(source_fp32)
    if options.input_size is None and len(dims) == 4 and all(isinstance(d, int) for d in dims[2:]):
        options = replace(options, input_size=(int(dims[2]), int(dims[3])))
    data = data or prepare_calibration(spec, options, progress)
    notes: list[str] = []
    reference = run_onnx(source_fp32, data.evaluation)
    reference_cal = run_onnx(source_fp32, data.calibration)
    exact = options.target == "tensorrt"

    with tempfile.TemporaryDirectory(prefix="edgeconv-int8-") as tmp:
        work = Path(tmp)
        improved = _Improved(source_fp32)
        if torch_model is not None and _improves(options):
            improved = _improve(torch_model, source_fp32, work, data, options, input_name, dims)
        elif torch_model is None and _improves(options):
            notes.append(
                "no PyTorch model given: equalization, activation centring, identity split and bias correction skipped"
            )

        baseline = None
        if measure_baseline:
            (work / "plain").mkdir()
            plain = _Quantizer(
                source_fp32,
                work / "plain",
                data.calibration,
                input_name,
                options.target,
                Int8Options(target=options.target, calib_method="minmax"),
                None,
                plain=True,
            )
            path = plain(work / "plain" / "plain.onnx")
            baseline = compare_logits(reference, run_onnx(path, data.evaluation, exact=exact))

        quantizer = _Quantizer(
            improved.path, work, data.calibration, input_name, options.target, options, progress, improved.offsets
        )
        candidate = quantizer(work / "q0.onnx")
        fallback_nodes: list[str] = []
        if isinstance(options.fallback, tuple) or (
            isinstance(options.fallback, str) and options.fallback not in ("auto", "none")
        ):
            names = options.fallback if isinstance(options.fallback, tuple) else tuple(options.fallback.split(","))
            fallback_nodes = resolve_fallback(quantizer.model, [n.strip() for n in names if n.strip()])
            candidate = quantizer(work / "q_manual.onnx", fallback_nodes)
        fidelity = compare_logits(reference, run_onnx(candidate, data.evaluation, exact=exact))
        layers = layer_sqnr(improved.path, candidate, data.evaluation[: min(32, len(data.evaluation))], work)

        latency = None
        before_fallback = None
        fallback_tensors: list[str] = []
        if options.fallback == "auto" and not meets_gate(
            fidelity, options.min_agreement, options.min_confident_agreement
        ):
            before_fallback = fidelity
            candidate, chosen, latency = _auto_fallback(
                quantizer, candidate, layers, work, data, reference_cal, source_fp32, options, exact
            )
            fallback_nodes = [i.name for i in chosen if i.kind == "node"]
            fallback_tensors = [i.label for i in chosen if i.kind == "tensor"]
            fidelity = compare_logits(reference, run_onnx(candidate, data.evaluation, exact=exact))
        gate = check_gate(
            fidelity, options.min_agreement, min_confident=options.min_confident_agreement, force=options.force
        )
        if not gate:
            notes.append(
                f"written below the gate with --force ({fidelity.summary()}; gate {options.min_agreement:.1%} overall, "
                f"{options.min_confident_agreement:.1%} confident)"
            )
        write_atomic(out, candidate.read_bytes())

    return Int8Report(
        target=options.target,
        calib_method=options.calib_method,
        fidelity=fidelity,
        baseline=baseline,
        fallback_modules=[node_module_name(n) or n for n in fallback_nodes] + fallback_tensors,
        gate_passed=gate,
        min_agreement=options.min_agreement,
        min_confident_agreement=options.min_confident_agreement,
        equalized_pairs=improved.eq_pairs,
        equalized_streams=improved.streams,
        equalization_skipped=improved.eq_skipped,
        bias_corrected_layers=improved.bc_layers,
        centred_activations=improved.offsets,
        identity_split=improved.split,
        rounded=quantizer.rounded or [],
        layers=layers,
        latency_ratio=latency,
        calibration_images=[p.name for p in data.split.calibration.paths] if data.split else [],
        evaluation_images=[p.name for p in data.split.evaluation.paths] if data.split else [],
        skipped_files=[f"{p.name}: {why}" for p, why in data.skipped],
        calib_samples=len(data.calibration),
        notes=notes,
        before_fallback=before_fallback,
    )


def _improves(options: Int8Options) -> bool:
    return options.equalize or options.bias_correction or _centers(options) or options.split_identity


def _centers(options: Int8Options) -> bool:
    return options.center_activations and options.target == "tensorrt"


@dataclass
class _Improved:
    """The float model to quantize, and what ``_improve`` did to it."""

    path: Path
    eq_pairs: int = 0
    eq_skipped: int = 0
    streams: int = 0
    bc_layers: int = 0
    offsets: dict[str, float] = field(default_factory=dict)  # centred activation (module name) -> shift
    split: list[str] = field(default_factory=list)  # convs whose identity taps were split out


def _improve(
    torch_model: nn.Module,
    source_fp32: Path,
    work: Path,
    data: CalibrationData,
    options: Int8Options,
    input_name: str,
    dims: list[int | str],
) -> _Improved:
    """CLE (conv pairs and residual streams), activation centring (tensorrt target), the identity-tap split of
    re-parameterized kernels and bias correction, in PyTorch on the BN-folded model, re-exported to ONNX."""
    from edgeconv.quantize.equalize import (
        batches,
        center_unsigned_activations,
        correct_bias,
        equalize_model,
        equalize_residual_streams,
        split_identity_taps,
    )

    model = _fold_for_quantization(torch_model)
    improved = _Improved(work / "improved.onnx")
    if options.equalize:
        eq = equalize_model(model, relu6=options.relu6)
        improved.eq_pairs, improved.eq_skipped = len(eq.equalized), len(eq.skipped)
        improved.streams = len(equalize_residual_streams(model, batches(data.calibration[:64], 16)))
    if _centers(options):
        improved.offsets = center_unsigned_activations(model, batches(data.calibration[:64], 16), options.percentile)
    if options.split_identity:  # last: exact for any kernel, and it must not hide convs from the passes above
        improved.split = split_identity_taps(model)
    output_name = _output_name(source_fp32)
    _export(model, improved.path, input_name, dims, _opset(source_fp32), output_name)
    if options.bias_correction:
        # Both targets quantize weights symmetric per channel to [-127, 127]: correct_bias's default scheme.
        subset = data.calibration[: options.bias_correction_samples]
        improved.bc_layers = len(correct_bias(model, batches(subset, 16)))
        _export(model, improved.path, input_name, dims, _opset(source_fp32), output_name)
    return improved


def tensor_sqnr(
    float_model: Path, ranges: dict[str, tuple[float, float]], samples: np.ndarray, work: Path
) -> dict[str, float]:
    """SQNR of each activation tensor quantized alone to uint8 over its calibrated range (ORT's asymmetric rule: the
    range always includes 0), on ``samples`` through the float model: which tensors 8 bits cannot carry."""
    import onnx

    model = onnx.load(str(float_model))
    present = {o for n in model.graph.node for o in n.output}
    names = sorted(n for n in ranges if n in present)
    if not names:
        return {}
    path = work / "tensors.onnx"
    _with_outputs(model, names, path)
    values = _run_named(path, samples)
    result = {}
    for name in names:
        if name not in values:
            continue
        low, high = min(ranges[name][0], 0.0), max(ranges[name][1], 0.0)
        scale = (high - low) / 255.0 or 1.0
        zero = np.rint(-low / scale)
        x = values[name].astype(np.float64)
        result[name] = sqnr_db(x, (np.clip(np.rint(x / scale) + zero, 0, 255) - zero) * scale)
    return result


def _better(trial: FidelityReport, best: FidelityReport) -> bool:
    """Whether ``trial`` is worth its extra float work: no worse on the gated figures (top-1 agreement, overall and on
    confident crops) and better on agreement or, failing that, on mean KL. (KL alone kept layers that lowered it while
    agreement fell: mobilenet_v2, 80.5% -> 78.1% on the calibration crops.)"""
    if trial.top1_agreement < best.top1_agreement:
        return False
    if best.confident_samples and trial.confident_agreement < best.confident_agreement:
        return False
    return trial.top1_agreement > best.top1_agreement or trial.mean_kl < best.mean_kl


@dataclass(frozen=True)
class _Fallback:
    """One thing the automatic fallback can keep in high precision: a compute node, or an activation tensor."""

    kind: Literal["node", "tensor"]
    name: str
    label: str  # PyTorch module name (``features.1.conv.0.0``) or ``<module> output``


def _auto_fallback(
    quantizer: _Quantizer,
    candidate: Path,
    layers: list[LayerSensitivity],
    work: Path,
    data: CalibrationData,
    reference_cal: np.ndarray,
    fp32: Path,
    options: Int8Options,
    exact: bool,
) -> tuple[Path, list[_Fallback], float | None]:
    """Keep parts of the model in high precision, most useful first, until the gate holds on the *calibration* crops
    (the held-out crops stay untouched for the final figure), within ``max_fallback_layers`` and the latency budget.

    Candidates: the weights of the first three and the last compute layers, of the layers with the lowest weight SQNR
    (mobilenet_v2's first depthwise conv) and with the most accumulated input error; on the onnxruntime target also the
    activation tensors 8 bits carry worst (mobilenet_v2's late residual sums: range +-30, values mostly within +-2).
    Each is first tried alone and ranked by how much it lowers the mean KL divergence on the calibration crops
    (smoother than top-1 agreement on 128 crops); in that order, each is then kept if ``_better`` says so, until
    calibration-crop agreement is ``GATE_MARGIN`` above the gate and confident agreement at its gate."""

    def score(path: Path) -> FidelityReport:
        return compare_logits(reference_cal, run_onnx(path, data.calibration, exact=exact))

    def build(items: Sequence[_Fallback], name: str) -> Path:
        nodes = [i.name for i in items if i.kind == "node"]
        tensors = [i.name for i in items if i.kind == "tensor"]
        return quantizer(work / name, nodes, tensors)

    base = score(candidate)
    by_input = sorted(layers, key=lambda layer: layer.own_sqnr_db)
    by_weight = sorted(layers, key=lambda layer: layer.weight_sqnr_db)
    # The first layers' errors travel through the whole network (mobilenet_v2's first depthwise conv, 9 weights per
    # channel, costs 3 points of agreement with 8-bit weights alone), the last one's go straight into the logits.
    nodes = dict.fromkeys(x.node for x in [*layers[:3], *layers[-1:], *by_weight[:3], *by_input[:3]])
    by_node = {layer.node: layer for layer in layers}
    pool = [_Fallback("node", n, by_node[n].module or n) for n in nodes]
    if options.target == "onnxruntime":
        producer = {o: n.name for n in quantizer.model.graph.node for o in n.output}
        sqnr = tensor_sqnr(quantizer.pre, quantizer.ranges(), data.calibration[:16], work)
        for name in sorted(sqnr, key=sqnr.__getitem__)[:6]:
            module = node_module_name(producer.get(name, "")) or name
            pool.append(_Fallback("tensor", name, f"{module} output"))
            logger.info("8-bit SQNR of %s: %.1f dB", pool[-1].label, sqnr[name])
    gains: dict[_Fallback, float] = {}
    for i, item in enumerate(pool):
        trial = score(build([item], f"single{i}.onnx"))
        gains[item] = base.mean_kl - trial.mean_kl
        logger.info(
            "%s in high precision alone: mean KL %.4f -> %.4f, agreement %+.1f points",
            item.label,
            base.mean_kl,
            trial.mean_kl,
            100 * (trial.top1_agreement - base.top1_agreement),
        )
    chosen: list[_Fallback] = []
    best, best_path, latency = base, candidate, None
    for item in sorted(pool, key=lambda x: -gains[x]):
        if gains[item] <= 0.0 or len(chosen) >= options.max_fallback_layers:
            break
        if meets_gate(best, options.min_agreement + GATE_MARGIN, options.min_confident_agreement):
            break
        trial_items = chosen + [item]
        path = build(trial_items, f"fallback{len(trial_items)}.onnx")
        result = score(path)
        ratio = None
        if options.latency_budget is not None and options.target == "onnxruntime":
            _, _, ratio = measure_latency_ratio(fp32, path, data.calibration[:1], runs=100)
            if ratio > options.latency_budget:
                logger.info("%s costs %.2fx FP32 latency (> %.2fx); skipped", item.label, ratio, options.latency_budget)
                continue
        if _better(result, best):
            chosen, best, best_path, latency = trial_items, result, path, ratio
    logger.info(
        "high precision: %s (calibration-crop agreement %.1f%% -> %.1f%%)",
        ", ".join(i.label for i in chosen) or "none",
        100 * base.top1_agreement,
        100 * best.top1_agreement,
    )
    node_gains = {i.name: gains[i] for i in pool if i.kind == "node"}
    for layer in layers:
        layer.fallback_gain = node_gains.get(layer.node)
    return best_path, chosen, latency


def parse_fallback(text: str) -> str | tuple[str, ...]:
    """``--fallback`` value: ``auto``, ``none``, or PyTorch module names separated by commas."""
    value = text.strip()
    if value.lower() in ("auto", "none"):
        return value.lower()
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    if not names:
        raise InvalidArgumentError(
            f"--fallback {text!r}: use auto, none, or module names such as features.0.0,classifier.1"
        )
    return names
