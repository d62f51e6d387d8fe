"""ONNX export checked against PyTorch on ONNX Runtime CPU, for every zoo model (one per family by default, the rest
under ``-m slow``), plus the failure paths.

Metric (edgeconv.export.compare_outputs): max relative error = max|onnx - torch| / max|torch| over the batch, FP32
tolerance 1e-4; top-1 identical per image except near ties (documented in edgeconv/export.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pytest
import torch
from conftest import image_and_clip_models, registry_sweep
from torch import nn

from edgeconv.errors import ExportError, InvalidArgumentError, ValidationError
from edgeconv.export import (
    DEFAULT_OPSET,
    compare_outputs,
    convert_fp16,
    export_onnx,
    locate_divergence,
    share_torchlib_registry,
    validate_fp16,
    validate_onnx,
    validation_batch,
)
from edgeconv.fuse import fuse_model
from edgeconv.zoo import create_model, get_spec


def reduced_input(name: str, model: nn.Module) -> tuple[int, ...]:
    """(C, H, W) at the smallest of a few reduced resolutions the model accepts, else the model's default; a clip
    model's (C, T, H, W): 4 frames of 32 x 32 where it takes them (the video ResNets), else its default."""
    spec = get_spec(name)
    if spec.is_clip:
        try:
            with torch.inference_mode():
                model(torch.zeros(1, spec.input_size[0], 4, 32, 32))
            return (spec.input_size[0], 4, 32, 32)
        except Exception:  # C3D's fc6 and Ji et al.'s C6 take their paper's clip only
            return spec.input_size
    channels, height, width = spec.input_size
    side = max(height, width)
    candidates = [s for s in (32, 64, 96, 160) if s < side and s >= side // 8]
    candidates = ([spec.min_input] if spec.min_input else []) + candidates  # a size rule: its smallest size first
    for size in candidates:
        try:
            with torch.inference_mode():
                model(torch.zeros(1, channels, size, size))
            return channels, size, size
        except Exception:  # fixed-size heads / cells with a minimum map size
            continue
    return channels, height, width


@pytest.mark.parametrize("name", registry_sweep(image_and_clip_models()))
def test_every_zoo_model_exports_and_matches_pytorch(name: str, tmp_path, zoo_model: Callable[..., nn.Module]) -> None:
    spec = get_spec(name)
    model = zoo_model(name)
    fusion = fuse_model(model)
    fused = fusion.model
    chw = reduced_input(name, model)
    opset = max(DEFAULT_OPSET, spec.min_opset or 0)
    try:
        report = export_onnx(
            fused, tmp_path / "m.onnx", (1, *chw), reference=model, mean=spec.mean, std=spec.std, opset=opset,
            clip_format=spec.clip_format,
        )  # fmt: skip
    except ExportError as exc:
        # AdaptiveAvgPool2d((7, 7)) / ((6, 6)) heads (VGG, AlexNet, ZFNet) export only when the map is a multiple of the
        # output size and its size is known to the tracer, which holds at the model's own input size.
        if "adaptive_avg_pool2d" not in str(exc).lower() and "not factor of input size" not in str(exc):
            raise
        if chw == spec.input_size:
            raise
        chw = spec.input_size
        report = export_onnx(
            fused, tmp_path / "m.onnx", (1, *chw), reference=model, mean=spec.mean, std=spec.std, opset=opset
        )
    assert report.validation and report.validation.passed, report.validation
    assert report.validation.max_rel_error <= 1e-4
    assert report.validation.unit == ("pixel" if spec.output == "label_map" else "image")
    graph = onnx.load(tmp_path / "m.onnx").graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["logits"]
    assert not any(n.op_type == "BatchNormalization" for n in graph.node) or fusion.unfoldable


def _lenet() -> nn.Module:
    return create_model("lenet5")


def test_dynamic_batch_runs_at_any_batch(tmp_path) -> None:
    model = create_model("mobilenet_v2", width_mult=0.35)
    report = export_onnx(
        fuse_model(model).model, tmp_path / "d.onnx", (1, 3, 64, 64), dynamic_batch=True, reference=model
    )
    assert report.validation.images == 4  # all photos in one batch of 4, traced at batch 2
    proto = onnx.load(tmp_path / "d.onnx")
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert proto.opset_import[0].version == 17
    images = validation_batch((3, 64, 64))
    for batch in (1, 3):
        assert validate_onnx(tmp_path / "d.onnx", model, images[:batch], batch=None)


def test_static_batch_cycles_images(tmp_path) -> None:
    report = export_onnx(_lenet(), tmp_path / "b.onnx", (3, 1, 32, 32))
    assert report.validation.images == 6  # 4 photos cycled to two full batches of 3
    assert [d.dim_value for d in onnx.load(tmp_path / "b.onnx").graph.input[0].type.tensor_type.shape.dim] == [
        3,
        1,
        32,
        32,
    ]


def test_opset_is_selectable_and_range_checked(tmp_path) -> None:
    export_onnx(_lenet(), tmp_path / "o.onnx", (1, 1, 32, 32), opset=13)
    assert onnx.load(tmp_path / "o.onnx").opset_import[0].version == 13
    with pytest.raises(InvalidArgumentError, match="opset 9"):
        export_onnx(_lenet(), tmp_path / "o9.onnx", (1, 1, 32, 32), opset=9)


class FrozenScale(nn.Module):
    """Turns a tensor into a Python float: tracing records it as a constant, so ONNX diverges on new inputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / float(x.abs().max())


def test_divergence_fails_loudly_naming_the_first_diverging_layer(tmp_path) -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), FrozenScale(), nn.Flatten(), nn.Linear(4 * 30 * 30, 10)).eval()
    with pytest.raises(ExportError, match=r"first diverging layer: '2' \(FrozenScale"):
        export_onnx(model, tmp_path / "f.onnx", (1, 1, 32, 32), exporter="torchscript")
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    # torch.export keeps the data-dependent scale in the graph: the default exporter writes a faithful one
    report = export_onnx(model, tmp_path / "f.onnx", (1, 1, 32, 32))
    assert report.exporter == "dynamo" and report.validation and report.validation.passed


@pytest.mark.parametrize(
    ("name", "changed", "named"),
    [("resnet18", "layer2.0.conv1", "layer2.0.bn1"), ("mobilenet_v2", "features.6.conv.0.0", "features.6.conv.0.1")],
)
def test_divergence_locator_names_the_changed_layer(name: str, changed: str, named: str, tmp_path) -> None:
    """A module called twice (its second call is scoped ``relu_1``) and blocks of nested containers
    (``/features/features.6/conv/conv.0/conv.0.0/Conv``) are matched to their own tensors: no false alarm on a faithful
    graph, and a conv changed after the export is found (as the BatchNorm the exporter folded into it)."""
    model = create_model(name)
    export_onnx(model, tmp_path / "m.onnx", (1, 3, 64, 64), validate=False)
    proto = onnx.load(tmp_path / "m.onnx")
    batch = np.random.default_rng(0).standard_normal((1, 3, 64, 64), dtype=np.float32)
    assert locate_divergence(model, proto, batch, 1e-4) is None
    with torch.no_grad():
        model.get_submodule(changed).weight.mul_(1.5)
    found = locate_divergence(model, proto, batch, 1e-4)
    assert found is not None and found[0] == named, found


class Histogram(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.histc(x, 4).sum()


def test_unsupported_operator_names_the_module(tmp_path) -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sequential(nn.ReLU(), Histogram()), nn.Flatten()).eval()
    with pytest.raises(ExportError, match=r"module '1\.1' \(Histogram\).*histc"):
        export_onnx(model, tmp_path / "h.onnx", (1, 1, 32, 32))
    assert list(tmp_path.iterdir()) == []


def test_fp16_keeps_fp32_io_and_matches_pytorch(tmp_path) -> None:
    model = create_model("mobilenet_v2", weights="imagenet")
    export_onnx(fuse_model(model).model, tmp_path / "m.onnx", (1, 3, 224, 224), reference=model)
    convert_fp16(tmp_path / "m.onnx", tmp_path / "m16.onnx")
    proto = onnx.load(tmp_path / "m16.onnx")
    float_type = onnx.TensorProto.FLOAT
    assert proto.graph.input[0].type.tensor_type.elem_type == float_type
    assert proto.graph.output[0].type.tensor_type.elem_type == float_type
    conv_weights = {n.input[1] for n in proto.graph.node if n.op_type == "Conv"}
    assert all(i.data_type == onnx.TensorProto.FLOAT16 for i in proto.graph.initializer if i.name in conv_weights)
    comparison = validate_fp16(tmp_path / "m16.onnx", model, validation_batch((3, 224, 224)))
    assert comparison.top1_agreement == 1.0 and comparison.max_rel_error <= 1e-2
    assert comparison.max_rel_error > 1e-5  # it really computes in FP16


def test_fp16_gate_rejects_a_broken_model(tmp_path) -> None:
    model = _lenet()
    export_onnx(model, tmp_path / "l.onnx", (1, 1, 32, 32))
    convert_fp16(tmp_path / "l.onnx", tmp_path / "l16.onnx")
    other = create_model("lenet5")  # different random weights: a model that is not the one exported
    with pytest.raises(ValidationError, match="FP16 model disagrees"):
        validate_fp16(tmp_path / "l16.onnx", other, validation_batch((1, 32, 32)))


def test_compare_outputs_metric() -> None:
    ref = np.array([[1.0, 3.0, 2.0], [0.5, 0.0, 0.49]])
    same = compare_outputs(ref, ref + 1e-6, 1e-4)
    assert same and same.max_rel_error == pytest.approx(1e-6 / 3) and same.top1_agreement == 1.0
    tie = compare_outputs(ref, np.array([[1.0, 3.0, 2.0], [0.5, 0.0, 0.51]]), 1.0)
    assert tie and tie.near_ties == 1 and tie.top1_agreement == 0.5  # 0.5 vs 0.49 flips within the error
    # row 0 flips 0 -> 1 with max abs diff 1.2 below the PyTorch margin 3 - 1 = 2: a real disagreement
    ref = np.array([[3.0, 1.0, 0.0], [0.5, 0.0, 0.49]])
    flipped = compare_outputs(ref, np.array([[2.1, 2.2, 0.0], [0.5, 0.0, 0.49]]), 1.0)
    assert not flipped and flipped.top1_disagreements == [0] and flipped.near_ties == 0
    assert not compare_outputs(ref, ref * np.nan, 1.0)


def test_tf_same_padding_exports_exactly_with_real_weights(tmp_path) -> None:
    """Regression: TF-'SAME' pads computed from traced shapes were mis-folded by the simplifier (shifted stride-2
    sampling grids). Random-init EfficientNet-Lite logits are too flat to show it; the real checkpoint does."""
    spec = get_spec("efficientnet_lite0")
    model = create_model("efficientnet_lite0", weights="imagenet")
    report = export_onnx(
        fuse_model(model).model,
        tmp_path / "m.onnx",
        (1, *spec.input_size),
        reference=model,
        mean=spec.mean,
        std=spec.std,
    )
    assert report.validation and report.validation.passed
    assert report.validation.max_rel_error <= 1e-4


def test_dynamo_exporter_writes_opset_17_with_module_scoped_node_names(tmp_path) -> None:
    """``exporter="dynamo"``: exported at opset 18, brought down to the 17 asked (ReduceMean of the global pool
    included), validated, and every Conv named the TorchScript way after its own Conv2d (not after the BatchNorm the
    exporter folded into it), so that ``module_name`` serves the divergence locator, INT8 and the profiler alike."""
    from edgeconv.onnxgraph import module_name

    model = create_model("mobilenet_v2", width_mult=0.35)
    report = export_onnx(model, tmp_path / "m.onnx", (1, 3, 64, 64), exporter="dynamo")
    assert report.exporter == "dynamo" and report.opset == 17 and not report.warnings, report.warnings
    assert report.validation and report.validation.passed and report.validation.max_rel_error <= 1e-4
    proto = onnx.load(tmp_path / "m.onnx")
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    modules = dict(model.named_modules())
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert len(convs) == sum(isinstance(m, nn.Conv2d) for m in modules.values())
    assert all(isinstance(modules.get(module_name(n.name)), nn.Conv2d) for n in convs), [n.name for n in convs]
    assert len({n.name for n in proto.graph.node}) == len(proto.graph.node)


def _mish() -> nn.Module:
    """Mish is an opset-18 op (dynamo writes it as one): no version below 18 has it, so no conversion to 17 exists."""
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.Mish(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()


def test_dynamo_exporter_keeps_opset_18_with_a_warning_where_conversion_fails(tmp_path) -> None:
    """Where the ONNX version converter cannot go below 18, opset 18 is written, reported, and said in one warning
    line (TensorRT 8.6 parses at most 17); with ``exact_opset`` (what the auto exporter asks of its dynamo attempt) it
    is an error before any later check, and no file is written."""
    report = export_onnx(_mish(), tmp_path / "m.onnx", (1, 3, 32, 32), exporter="dynamo")
    assert report.opset == 18 and onnx.load(tmp_path / "m.onnx").opset_import[0].version == 18
    assert report.validation and report.validation.passed
    assert any(w.startswith("wrote opset 18, not 17") and "TensorRT 8.6" in w for w in report.warnings)
    with pytest.raises(ExportError, match="version converter cannot write opset 17.*Mish"):
        export_onnx(_mish(), tmp_path / "x.onnx", (1, 3, 32, 32), exporter="dynamo", exact_opset=True)
    assert not (tmp_path / "x.onnx").exists()


class _SplitAndPad(nn.Module):
    """Channel splits (equal, uneven, by sizes) and LocalResponseNorm, whose decomposition pads: the opset-18 Pad and
    Split that the ONNX version converter has no adapter for."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.lrn = nn.LocalResponseNorm(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        halves, thirds, sizes = x.chunk(2, 1), x.chunk(3, 1), x.split([3, 5], 1)
        x = torch.cat([p * (i + 1) for i, p in enumerate((*halves, *thirds, *sizes))], 1)
        return self.lrn(x).mean((2, 3))


def test_dynamo_graphs_with_pad_and_split_come_down_to_opset_17(tmp_path) -> None:
    """Pad without axes and Split with sizes or equal parts mean the same at 13-17: ``convert_version`` keeps them
    and the graph validates at 17, with no attribute or domain of opset 18 left."""
    report = export_onnx(
        _SplitAndPad().eval(), tmp_path / "s.onnx", (1, 3, 32, 32), exporter="dynamo", exact_opset=True
    )
    assert report.opset == 17 and report.validation and report.validation.passed
    model = onnx.load(tmp_path / "s.onnx")
    onnx.checker.check_model(model, full_check=True)
    ops = [n for n in model.graph.node if n.op_type in ("Pad", "Split")]
    assert {n.op_type for n in ops} == {"Pad", "Split"} and all(n.domain == "" for n in ops)
    assert not any(a.name == "num_outputs" for n in ops for a in n.attribute)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]


def test_dynamo_exports_share_one_torchlib_table_each_with_its_own_copy() -> None:
    """The table of ONNX functions is built once per opset; each export gets a copy whose lists it may change (a
    ``custom_translation_table`` does) without the next export seeing it."""
    from torch.onnx._internal.exporter import _registration

    assert share_torchlib_registry() and share_torchlib_registry.cache_info().currsize == 1
    first, second = (_registration.ONNXRegistry.from_torchlib(opset_version=18) for _ in range(2))
    assert first is not second and first.opset_version == second.opset_version == 18
    assert first.functions.keys() == second.functions.keys() and len(first.functions) > 300
    op = next(iter(first.functions))
    assert first.functions[op] is not second.functions[op] and first.functions[op] == second.functions[op]
    first.functions[op].append(first.functions[op][0])
    assert len(second.functions[op]) == len(first.functions[op]) - 1


def test_auto_exporter_uses_dynamo_where_it_validates_at_the_opset_asked(tmp_path) -> None:
    """The default: dynamo wrote the small convnet at 17; Mish's graph cannot go below 18 with dynamo, so the
    TorchScript exporter writes it at 17 and the report says why; no attempt file is left beside either."""
    plain = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    report = export_onnx(plain, tmp_path / "p.onnx", (1, 3, 32, 32))
    assert (report.exporter, report.opset, report.exporter_fallback) == ("dynamo", 17, None)
    report = export_onnx(_mish(), tmp_path / "l.onnx", (1, 3, 32, 32))
    assert (report.exporter, report.opset) == ("torchscript", 17)
    assert (report.exporter_fallback or "").startswith("it failed: the ONNX version converter cannot write opset 17")
    assert not any("opset" in w for w in report.warnings)  # dynamo's 18 warning is not the file's
    assert onnx.load(tmp_path / "l.onnx").opset_import[0].version == 17
    dynamic = export_onnx(plain, tmp_path / "d.onnx", (1, 3, 32, 32), dynamic_size=True, second_size=(40, 40))
    assert dynamic.exporter == "torchscript" and "dynamic height and width" in (dynamic.exporter_fallback or "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.onnx", "l.onnx", "p.onnx"]


def test_cli_export_exporter_option_lands_in_the_manifest(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from edgeconv.cli import app

    args = ["export", "lenet5", "--exporter", "dynamo", "--out", str(tmp_path / "a"), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["exporter"] == "dynamo" and manifest["opset"] == 17
    assert json.loads(result.stdout)["exporter"] == "dynamo"
    forced = CliRunner().invoke(app, ["export", "lenet5", "--exporter", "torchscript", "--out", str(tmp_path / "c")])
    assert forced.exit_code == 0, forced.stderr
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["exporter"] == "torchscript" and manifest["exporter_fallback"] is None
    bad = CliRunner().invoke(app, ["export", "lenet5", "--exporter", "jit", "--out", str(tmp_path / "b")])
    assert bad.exit_code != 0 and "auto, torchscript, dynamo" in bad.stderr and not (tmp_path / "b").exists()


def test_dynamo_exporter_graph_serves_the_divergence_locator(tmp_path) -> None:
    """ResNet's blocks call their ReLU twice: the second call is scoped ``relu_1`` as TorchScript does, so the locator
    raises no false alarm on a faithful dynamo graph and finds a changed conv (as its folded BatchNorm)."""
    model = create_model("resnet18")
    export_onnx(model, tmp_path / "m.onnx", (1, 3, 64, 64), validate=False, exporter="dynamo")
    proto = onnx.load(tmp_path / "m.onnx")
    assert any(n.name == "/layer1/layer1.0/layer1.0.relu_1/Relu" for n in proto.graph.node)
    batch = np.random.default_rng(0).standard_normal((1, 3, 64, 64), dtype=np.float32)
    assert locate_divergence(model, proto, batch, 1e-4) is None
    with torch.no_grad():
        model.get_submodule("layer2.0.conv1").weight.mul_(1.5)
    found = locate_divergence(model, proto, batch, 1e-4)
    assert found is not None and found[0] == "layer2.0.bn1", found
