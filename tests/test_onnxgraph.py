"""The ONNX graph helper (edgeconv.onnxgraph): piecewise evaluation equals one whole run, on branching graphs with
constants and a fixed batch; the node-name -> module rule; AdaRound's windowed steps see exactly the layer's output;
ONNX's checks and converter run without the weights give what they give on the whole model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgeconv.onnxgraph import (
    Graph,
    Segments,
    apply_to_structure,
    inferred_structure,
    module_name,
    run_named,
    run_onnx,
)


class _Branchy(nn.Module):
    """A residual add, a concat of two branches, a reshape whose shape is a Constant node, and a Gemm head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.left = nn.Conv2d(8, 8, 3, padding=1)
        self.right = nn.Conv2d(8, 4, 1)
        self.mix = nn.Conv2d(12, 8, 1)
        self.head = nn.Linear(8 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = torch.cat([self.left(x) + x, self.right(x)], 1)
        y = self.mix(y).relu()
        return self.head(y.reshape(y.shape[0], -1))


def _export(tmp_path: Path, batch: int | None) -> onnx.ModelProto:
    torch.manual_seed(0)
    path = tmp_path / "branchy.onnx"
    axes = None if batch else {"input": {0: "n"}, "output": {0: "n"}}
    torch.onnx.export(
        _Branchy().eval(),
        (torch.zeros(batch or 2, 3, 16, 16),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes=axes,
    )
    return onnx.load(str(path))


@pytest.mark.parametrize("batch", [None, 4])
def test_segments_equal_one_whole_run(tmp_path: Path, batch: int | None) -> None:
    model = _export(tmp_path, batch)
    x = np.random.default_rng(0).normal(size=(10, 3, 16, 16)).astype(np.float32)  # 10: not a multiple of 4
    graph = Graph(model)
    stops = [n for n in graph.nodes if n.op_type in ("Conv", "Gemm")]
    whole = run_named(model, [n.input[0] for n in stops], x)
    pieces = Segments(model, {graph.inputs[0]: x})
    for node in stops:
        got = pieces.advance(node.name)[node.input[0]]
        np.testing.assert_allclose(got, whole[node.input[0]], rtol=1e-5, atol=1e-5)
    out = pieces.advance(None)["output"]
    np.testing.assert_allclose(out, run_onnx(model, x), rtol=1e-5, atol=1e-5)
    assert out.shape == (10, 5)
    with pytest.raises(ValueError, match="already passed"):
        pieces.advance(stops[0].name)


def test_segments_change_the_weights_of_the_next_piece(tmp_path: Path) -> None:
    """A weight changed before its piece runs is the weight that piece computes with (AdaRound's order)."""
    model = _export(tmp_path, None)
    x = np.random.default_rng(1).normal(size=(3, 3, 16, 16)).astype(np.float32)
    graph = Graph(model)
    pieces = Segments(model, {graph.inputs[0]: x})
    mix = next(n for n in graph.nodes if module_name(n.name) == "mix")
    pieces.advance(mix.name)
    weight = graph.initializers[mix.input[1]]
    weight.CopyFrom(onnx.numpy_helper.from_array(np.zeros_like(graph.array(mix.input[1])), weight.name))
    out = pieces.advance(None)["output"]
    head_bias = graph.array(next(n for n in graph.nodes if n.op_type == "Gemm").input[2])
    np.testing.assert_allclose(out, np.broadcast_to(head_bias, out.shape) + out[:1] - head_bias, atol=1e-5)
    zeroed = run_onnx(model, x)  # the whole graph with the zeroed weight gives the same
    np.testing.assert_allclose(out, zeroed, atol=1e-5)


def test_produce_returns_a_tensor_once_its_node_ran(tmp_path: Path) -> None:
    model = _export(tmp_path, None)
    x = np.random.default_rng(2).normal(size=(4, 3, 16, 16)).astype(np.float32)
    graph = Graph(model)
    relu = next(n for n in graph.nodes if n.op_type == "Relu")
    expected = run_named(model, [relu.output[0]], x)[relu.output[0]]
    np.testing.assert_allclose(Segments(model, {graph.inputs[0]: x}).produce(relu.output[0]), expected, atol=1e-6)


def test_module_names() -> None:
    assert module_name("/features/features.0/features.0.0/Conv") == "features.0.0"
    assert module_name("/classifier/classifier.1/Gemm") == "classifier.1"
    assert module_name("/stem/stem.0/Conv_1") == "stem.0"
    assert module_name("Conv_12") == ""
    assert module_name("/Add") == ""
    assert module_name("/features/features.1/conv/conv.0/conv.0.0/Conv") == "features.1.conv.0.0"
    assert module_name("/layer1/layer1.0/conv1/Conv") == "layer1.0.conv1"
    assert module_name("/layer1/layer1.0/downsample/downsample.0/Conv") == "layer1.0.downsample.0"
    # onnxslim names some nodes after their output tensor
    assert module_name("/features/conv2_2/Concat_output_0") == "features.conv2_2"


@pytest.mark.parametrize(
    ("stride", "pads", "dilation", "kernel"),
    [
        (2, [1, 1, 1, 1], 1, 3),
        (1, [1, 1, 1, 1], 1, 3),
        (1, [2, 2, 2, 2], 2, 3),
        (2, [0, 0, 1, 1], 1, 3),
        (1, [0] * 4, 1, 1),
    ],
)
def test_adaround_windows_are_the_layer_output(stride: int, pads: list[int], dilation: int, kernel: int) -> None:
    """A windowed AdaRound step computes exactly the matching window of the layer's whole output."""
    from edgeconv.quantize.qdq.adaround import AdaRoundOptions, _forward, _Layer, _sampler

    rng = np.random.default_rng(0)
    weight = rng.normal(size=(8, 4, kernel, kernel)).astype(np.float32)
    node = onnx.helper.make_node("Conv", ["x", "w"], ["y"], name="c")
    attrs = {"strides": [stride] * 2, "pads": pads, "dilations": [dilation] * 2, "group": 1}
    layer = _Layer(node, weight, None, np.ones((8, 1, 1, 1), np.float32), lambda q: None, "y", "y", None, None, attrs)
    x = torch.from_numpy(rng.normal(size=(5, 4, 70, 66)).astype(np.float32))
    whole = _forward(layer, x, torch.from_numpy(weight), None)
    sample = _sampler(layer, x, whole, AdaRoundOptions(window=10), torch.Generator().manual_seed(0))
    for _ in range(10):
        inputs, wanted, padded = sample()
        assert padded and wanted.shape[2:] == (10, 10)
        got = _forward(layer, inputs, torch.from_numpy(weight), None, padded=padded)
        torch.testing.assert_close(got, wanted, atol=1e-4, rtol=1e-4)


def test_segments_on_a_qdq_graph_with_a_fixed_batch(tmp_path: Path) -> None:
    """QDQ weights are constants computed beside the batched tensors (DequantizeLinear of an initializer): fed in
    chunks of a fixed batch, every piece still sees them whole, once."""
    from edgeconv.quantize.options import Int8Options
    from edgeconv.quantize.qdq.ort_static import StaticQuantizer

    _export(tmp_path, 1)  # what an artifact exported at batch 1 is
    x = np.random.default_rng(3).normal(size=(7, 3, 16, 16)).astype(np.float32)
    options = Int8Options(calib_method="minmax", adaround=False)
    qdq = onnx.load(
        str(StaticQuantizer(tmp_path / "branchy.onnx", tmp_path, x, "input", options, None)(tmp_path / "q.onnx"))
    )
    graph = Graph(qdq)
    stops = [n for n in graph.nodes if n.op_type in ("Conv", "Gemm")]
    whole = run_named(qdq, [n.input[0] for n in stops], x)
    pieces = Segments(qdq, {graph.inputs[0]: x})
    for node in stops:
        np.testing.assert_allclose(pieces.advance(node.name)[node.input[0]], whole[node.input[0]], atol=1e-6)


def test_a_weight_changed_late_reaches_its_reader(tmp_path: Path) -> None:
    """In a QDQ graph a weight's DequantizeLinear can sit anywhere before its reader: an int8 weight changed just
    before the reader's piece runs must be the weight it computes with (AdaRound re-rounds layer by layer)."""
    from edgeconv.quantize.options import Int8Options
    from edgeconv.quantize.qdq.ort_static import StaticQuantizer

    _export(tmp_path, None)
    x = np.random.default_rng(4).normal(size=(6, 3, 16, 16)).astype(np.float32)
    options = Int8Options(calib_method="minmax", adaround=False)
    qdq = onnx.load(
        str(StaticQuantizer(tmp_path / "branchy.onnx", tmp_path, x, "input", options, None)(tmp_path / "q.onnx"))
    )
    graph = Graph(qdq)
    convs = [n for n in graph.nodes if n.op_type == "Conv"]
    pieces = Segments(qdq, {graph.inputs[0]: x})
    for node in convs:
        pieces.advance(node.name)
        weight = graph.initializers[graph.producer[node.input[1]].input[0]]  # the int8 initializer its DQ reads
        flipped = -onnx.numpy_helper.to_array(weight)
        weight.CopyFrom(onnx.numpy_helper.from_array(flipped, weight.name))
    np.testing.assert_allclose(pieces.advance(None)["output"], run_onnx(qdq, x, exact=True), atol=1e-5)


def _wide(tmp_path: Path, listed: bool = False) -> onnx.ModelProto:
    """_Branchy behind a 64 -> 64 conv whose weight (147 KB) is over the weight-size line; the rest are under.
    ``listed``: the initializers are graph inputs too, as older exporters wrote them."""
    torch.manual_seed(0)
    convs = (nn.Conv2d(3, 64, 1), nn.Conv2d(64, 64, 3, padding=1), nn.Conv2d(64, 3, 1))
    model = nn.Sequential(*convs, _Branchy()).eval()
    path = tmp_path / "wide.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(2, 3, 16, 16),),
        str(path),
        dynamo=False,
        opset_version=17,
        keep_initializers_as_inputs=listed,
    )
    return onnx.load(str(path))


@pytest.mark.parametrize("listed", [False, True])
def test_structure_passes_without_weights_equal_whole_model_passes(tmp_path: Path, listed: bool) -> None:
    from onnx import version_converter

    def transform(model: onnx.ModelProto) -> onnx.ModelProto:
        onnx.checker.check_model(model, full_check=True)
        return onnx.shape_inference.infer_shapes(version_converter.convert_version(model, 15), strict_mode=True)

    whole = transform(_wide(tmp_path, listed))
    seen: list[onnx.ModelProto] = []
    light = apply_to_structure(_wide(tmp_path, listed), lambda m: seen.append(m) or transform(m))
    assert "1.weight" not in {t.name for t in seen[0].graph.initializer}  # the large weight is not copied ...
    assert "1.weight" in {i.name for i in seen[0].graph.input}  # ... but typed as an input
    assert light.graph.node == whole.graph.node
    assert light.graph.value_info == whole.graph.value_info
    assert [i.name for i in light.graph.input] == [i.name for i in whole.graph.input]
    assert light.opset_import == whole.opset_import and light.ir_version == whole.ir_version
    weights = {t.name: t for t in whole.graph.initializer}
    assert {t.name: t for t in light.graph.initializer} == weights and "1.weight" in weights
    onnx.checker.check_model(light, full_check=True)
    x = np.random.default_rng(0).normal(size=(2, 3, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(run_onnx(light, x), run_onnx(whole, x))


def test_a_failing_structure_pass_leaves_the_model_unchanged(tmp_path: Path) -> None:
    from onnx import version_converter

    model = _wide(tmp_path)
    before = model.SerializeToString()
    with pytest.raises(Exception, match="Adapter"):  # opset 17 -> 1: the converter has no way down
        apply_to_structure(model, lambda m: version_converter.convert_version(m, 1))
    assert model.SerializeToString() == before


def test_inferred_structure_types_what_whole_model_inference_types_and_leaves_the_model(tmp_path: Path) -> None:
    model = _wide(tmp_path)
    before = model.SerializeToString()
    inferred = inferred_structure(model)
    assert model.SerializeToString() == before
    whole = onnx.shape_inference.infer_shapes(_wide(tmp_path))
    assert inferred.graph.value_info == whole.graph.value_info and inferred.graph.output == whole.graph.output
    weight = next(i for i in inferred.graph.input if i.name == "1.weight")  # typed, not copied
    assert list(weight.type.tensor_type.shape.dim) == list(
        onnx.helper.make_tensor_type_proto(onnx.TensorProto.FLOAT, [64, 64, 3, 3]).tensor_type.shape.dim
    )
