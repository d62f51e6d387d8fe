"""bench/int8_budget.py: taking an activation's rounding out keeps its clipping, per tensor and per channel."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import load_script
from onnx import TensorProto, helper, numpy_helper

from edgeconv.onnxgraph import run_onnx

budget = load_script("int8_budget")


def _graph(scale: np.ndarray, zero: np.ndarray) -> onnx.ModelProto:
    """input -> Q/DQ (scale, zero) -> Conv with a Q/DQ'd weight -> logits; the weight's Q reads an initializer."""
    weight = np.arange(2 * 2 * 1 * 1, dtype=np.float32).reshape(2, 2, 1, 1) / 3 - 0.4
    inits = [
        numpy_helper.from_array(scale.astype(np.float32), "s"),
        numpy_helper.from_array(zero, "z"),
        numpy_helper.from_array(weight, "w"),
        numpy_helper.from_array(np.array(0.01, np.float32), "ws"),
        numpy_helper.from_array(np.array(0, np.int8), "wz"),
    ]
    axis = [helper.make_attribute("axis", 1)] if scale.size > 1 else []
    q = helper.make_node("QuantizeLinear", ["input", "s", "z"], ["xq"])
    dq = helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"])
    q.attribute.extend(axis)
    dq.attribute.extend(axis)
    nodes = [
        q,
        dq,
        helper.make_node("QuantizeLinear", ["w", "ws", "wz"], ["wq"]),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"]),
        helper.make_node("Conv", ["xd", "wd"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 2, 3, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 2, 3, 3])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    ("scale", "zero", "low", "high"),
    [
        (np.array(0.1), np.array(128, np.uint8), [-12.8, -12.8], [12.7, 12.7]),  # per tensor, uint8
        (np.array([0.1, 0.05]), np.array([0, 0], np.int8), [-12.8, -6.4], [12.7, 6.35]),  # per channel, int8
    ],
)
def test_rounding_is_taken_out_and_the_range_kept(scale, zero, low, high) -> None:
    model = _graph(scale, zero)
    assert budget.activations(model) == ["input"]  # the weight's Q reads an initializer: not an activation
    x = np.random.default_rng(0).uniform(-20, 20, (4, 2, 3, 3)).astype(np.float32)
    same = budget.without_rounding(model, set())  # nothing taken out: the same graph
    np.testing.assert_array_equal(run_onnx(same, x), run_onnx(model, x))
    onnx.checker.check_model(variant := budget.without_rounding(model, {"input"}))
    w = numpy_helper.to_array(model.graph.initializer[2])
    wq = np.clip(np.rint(w / 0.01), -128, 127) * 0.01  # the weight stays quantized
    clipped = np.clip(x, np.reshape(low, (1, 2, 1, 1)), np.reshape(high, (1, 2, 1, 1)))
    expected = np.einsum("oc,nchw->nohw", wq[:, :, 0, 0], clipped)
    np.testing.assert_allclose(run_onnx(variant, x), expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(run_onnx(model, x), expected, atol=1e-3)  # the graph itself rounds
    assert [n.op_type for n in model.graph.node].count("QuantizeLinear") == 2  # the input graph is left as it was


def test_bad_graph_argument_is_one_line(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        budget.main(["edgeconv"])
    assert exc.value.code == 2
    assert "'edgeconv': give NAME=PATH of an existing ONNX file" in capsys.readouterr().err
    corrupt = tmp_path / "q.onnx"
    corrupt.write_bytes(b"\x0b\xff not protobuf")
    with pytest.raises(SystemExit) as exc:
        budget.main([f"edgeconv={corrupt}"])
    assert exc.value.code == 2
    assert f"{corrupt}: not an ONNX model" in capsys.readouterr().err
