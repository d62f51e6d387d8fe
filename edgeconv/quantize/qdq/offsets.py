"""Centred activations in a QDQ graph (the tensorrt target): their exact ``[-c, c]`` ranges and the readers' biases
re-derived from the weights the graph really computes with (``prepare.center_unsigned_activations`` does the float
part in PyTorch)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from edgeconv.onnxgraph import module_name
from edgeconv.quantize.qdq.weights import dequantized_weight

if TYPE_CHECKING:
    import onnx


def compensate_offsets(
    model: onnx.ModelProto,
    float_model: onnx.ModelProto,
    offsets: Mapping[str, float],
    corrections: Mapping[str, np.ndarray] | None = None,
) -> int:
    """Re-derive the bias of every quantized Conv/Gemm that reads a centred activation from the weights the QDQ graph
    really computes with; returns how many were set.

    Centring (``prepare.center_unsigned_activations``) feeds ``x - c`` and adds ``c * sum(W)`` to the reader's bias,
    exact in float. Quantized, the reader computes ``W_q (x - c)``: the bias must add ``c * sum(W_q)``, or each output
    channel is off by ``c * sum(W_q - W)``, a rounding error summed over all its inputs. ``offsets``: activation
    (PyTorch module name) -> ``c``. ``corrections``: node -> amount added to its bias on top (the empirical bias
    correction of ``adaround``). Idempotent: computed from ``float_model``'s bias every time.
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
        shift = offsets.get(module_name(act.name) or "")
        if shift is None:
            continue
        for node in followers(act.output[0]):
            source = float_nodes.get(node.name)
            weight = dequantized_weight(node, producer, inits)
            if weight is None or source is None or len(node.input) < 3 or node.input[2] not in inits:
                continue
            w_float = numpy_helper.to_array(float_inits[source.input[1]]).astype(np.float64)
            b_float = numpy_helper.to_array(float_inits[source.input[2]]).astype(np.float64)
            error = (weight - w_float).reshape(w_float.shape[0], -1).sum(axis=1)
            bias = inits[node.input[2]]
            value = b_float + shift * error + (corrections or {}).get(node.name, 0.0)
            bias.CopyFrom(numpy_helper.from_array(value.astype(np.float32), bias.name))
            count += 1
    return count


def centred_ranges(model: onnx.ModelProto, offsets: Mapping[str, float]) -> dict[str, float]:
    """``{tensor: c}`` for every tensor of ``model`` that holds a centred activation (``offsets``: PyTorch module name
    -> shift ``c``): the activation's output, and the output of a Pad that reads it (``prepare.PaddedConv2d``).

    Each is quantized with the range ``[-c, c]`` exactly (scale ``c / 127``), not its calibrated one: the ReLU's zeros,
    most of the tensor, are ``-c`` after the shift, and only this range puts them on a grid point (``-127``). A
    calibrated range a little off ``c`` rounds every one of them by up to half a step, all in the same direction: on
    mobilenet_v2 (its 17 projection inputs centred; 1000 held-out crops, nearest rounding) that bias cost more than
    the finer grid gained: 72.8% top-1 agreement calibrated, 74.8% pinned, 70.7% not centred.
    """
    found = {}
    for node in model.graph.node:
        shift = offsets.get(module_name(node.name) or "")
        if shift is not None and node.op_type in ("Clip", "Relu"):
            found[node.output[0]] = shift
    for node in model.graph.node:
        if node.op_type == "Pad" and node.input[0] in found:
            found[node.output[0]] = found[node.input[0]]
    return found
