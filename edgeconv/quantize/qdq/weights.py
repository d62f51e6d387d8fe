"""Quantized weights in a QDQ graph: their grid (scale, zero point), the weight a node really computes with, and the
ONNX Runtime form's saturation-safe 8-bit weights.

ORT's u8s8 GEMM kernel on AVX2 without VNNI multiplies with ``vpmaddubsw``, which adds the products of two neighbouring
input channels (same kernel position) into a saturating int16: ``255 * 127 + 255 * 127`` overflows. Saturation-safe
per-channel scales keep every same-sign neighbour pair within ``PAIR_SUM_LIMIT`` (``255 * 128 < 2^15``): no
saturation is possible on any x86 CPU. CPUs whose integer kernels do not saturate get full 8-bit weights instead
(``Int8Options.cpu_kernels``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edgeconv.quantize.options import PAIR_SUM_LIMIT, QUANTIZED_OPS

if TYPE_CHECKING:
    import onnx


def quantizable_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type in QUANTIZED_OPS]


# ONNX Runtime's CPU QLinearConv runs a 3D conv that reads at most this many input channels per group slower than the
# FP32 Conv (ORT 1.32, AVX-512 VNNI, one conv per graph: r3d_18's stem 3 -> 64 at 3x7x7 1.75x, C3D's conv1 2.39x,
# Ji et al.'s per-stream convs 14-21x), while dense 3D convs of 64+ channels run at 0.16-0.35x and depthwise ones at
# 0.62x (bench/results/int8_conv3d.md). The onnxruntime form keeps the thin ones in float.
THIN_3D_CONV_CHANNELS = 3


def thin_3d_convs(model: onnx.ModelProto) -> list[str]:
    """Names of the 3D Conv nodes whose INT8 form ORT CPU runs slower than float: at most
    ``THIN_3D_CONV_CHANNELS`` input channels per group, depthwise convs (one channel in and out per group) aside."""
    weights = {i.name: tuple(i.dims) for i in model.graph.initializer}
    thin = []
    for node in model.graph.node:
        dims = weights.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if dims is None or len(dims) != 5:
            continue
        groups = next((a.i for a in node.attribute if a.name == "group"), 1)
        depthwise = dims[1] == 1 and dims[0] == groups
        if dims[1] <= THIN_3D_CONV_CHANNELS and not depthwise:
            thin.append(node.name)
    return thin


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


def dequantized_weight(
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
