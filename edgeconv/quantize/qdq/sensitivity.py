"""Where the quantization error is: per layer (output, input and weight SQNR against the float graph) and per
activation tensor (what 8 bits cannot carry). The automatic fallback picks its candidates from these."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeconv.onnxgraph import module_name, run_named
from edgeconv.quantize.fidelity import sqnr_db
from edgeconv.quantize.options import QUANTIZED_OPS
from edgeconv.quantize.qdq.weights import dequantized_weight

if TYPE_CHECKING:
    import onnx


@dataclass
class LayerSensitivity:
    module: str
    node: str
    op_type: str
    sqnr_db: float  # of this layer's output in the fully quantized graph vs FP32 (accumulated error)
    own_sqnr_db: float  # of its dequantized input vs the FP32 graph's same tensor (error accumulated up to its input)
    weight_sqnr_db: float = float("inf")  # of its dequantized weight against the float weight
    fallback_gain: float | None = None  # mean KL removed (calibration crops) by keeping only its weights high-precision


def layer_sqnr(float_model: Path, qdq_model: Path, samples: np.ndarray) -> list[LayerSensitivity]:
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
    fo = run_named(fmodel, want_f, samples)
    qo = run_named(qmodel, want_q, samples)
    result = []
    for n in compute:
        f_out, q_out = pairs[n.name]
        if f_out not in fo or q_out not in qo:
            continue
        total = sqnr_db(fo[f_out], qo[q_out])
        f_in, q_in = inputs.get(n.name, ("", ""))
        own = sqnr_db(fo[f_in], qo[q_in]) if f_in in fo and q_in in qo else float("inf")
        weights = _weight_sqnr(n, float_weights, qinits, producer)
        result.append(LayerSensitivity(module_name(n.name), n.name, n.op_type, total, own, weights))
    return result


def _weight_sqnr(
    node: onnx.NodeProto,
    float_weights: dict[str, np.ndarray],
    qinits: dict[str, onnx.TensorProto],
    producer: dict[str, onnx.NodeProto],
) -> float:
    """SQNR of ``node``'s dequantized weight (QDQ graph) against its float weight (``float_weights``, by node name)."""
    weight = float_weights.get(node.name)
    quantized = dequantized_weight(node, producer, qinits)
    if weight is None or quantized is None:
        return float("inf")
    return sqnr_db(weight, quantized)


def tensor_sqnr(float_model: Path, ranges: dict[str, tuple[float, float]], samples: np.ndarray) -> dict[str, float]:
    """SQNR of each activation tensor quantized alone to uint8 over its calibrated range (ORT's asymmetric rule: the
    range always includes 0), on ``samples`` through the float model: which tensors 8 bits cannot carry."""
    import onnx

    model = onnx.load(str(float_model))
    present = {o for n in model.graph.node for o in n.output}
    names = sorted(n for n in ranges if n in present)
    if not names:
        return {}
    values = run_named(model, names, samples)
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
