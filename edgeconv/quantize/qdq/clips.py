"""Per-channel clips back to one per-tensor Clip before quantization (``prepare.equalize_depthwise_inputs`` does the
float part in PyTorch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edgeconv.onnxgraph import Graph

if TYPE_CHECKING:
    import onnx


def merge_channel_clips(model: onnx.ModelProto) -> int:
    """Replace every ``Min(Relu(x), upper)`` with a constant per-channel ``upper`` by ``Clip(x, 0, min(upper))``, in
    place; returns how many were replaced.

    ``equalize_depthwise_inputs`` multiplies channel ``c`` by ``k_c >= 1`` and clips it at ``6 k_c`` (exact in float).
    ORT fuses Conv + Relu/Clip into its integer conv, not Conv + Relu + Min, and a per-tensor quantizer of range ``R``
    saturates at ``R`` anyway: clipping every channel at ``min(upper) = 6`` changes only values above their channel's
    calibration maximum, where a per-channel quantizer would saturate them too.
    """
    from onnx import helper, numpy_helper

    graph = Graph(model)
    constants = dict(graph.initializers)
    for node in graph.nodes:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = node.attribute[0].t
    clips: dict[str, onnx.NodeProto] = {}  # Relu's name -> the Clip replacing it
    dropped: set[str] = set()  # the Mins folded into a Clip
    for node in graph.nodes:
        if node.op_type != "Min" or len(node.input) != 2 or not node.name:
            continue
        upper_name = next((name for name in node.input if name in constants), None)
        relu = next((graph.producer.get(name) for name in node.input if name != upper_name), None)
        if upper_name is None or relu is None or relu.op_type != "Relu" or not relu.name:
            continue
        if len(graph.consumers.get(relu.output[0], [])) != 1 or relu.output[0] in graph.outputs:
            continue
        upper = numpy_helper.to_array(constants[upper_name])
        if upper.dtype != np.float32 or upper.size < 1 or float(upper.min()) <= 0:
            continue
        low = numpy_helper.from_array(np.array(0.0, np.float32), f"{node.name}/clip_low")
        high = numpy_helper.from_array(np.array(upper.min(), np.float32), f"{node.name}/clip_high")
        model.graph.initializer.extend([low, high])
        clips[relu.name] = helper.make_node("Clip", [relu.input[0], low.name, high.name], list(node.output), relu.name)
        dropped.add(node.name)
    if not clips:
        return 0
    nodes = [clips.get(n.name, n) for n in graph.nodes if n.name not in dropped]
    used = {name for n in nodes for name in n.input}
    nodes = [n for n in nodes if n.op_type != "Constant" or n.output[0] in used]
    initializers = [i for i in model.graph.initializer if i.name in used]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    del model.graph.initializer[:]
    model.graph.initializer.extend(initializers)
    return len(clips)
