"""The TensorRT backend's TensorRT-free logic: versions, feature matrix, builder plans, batch profiles, engine
manifest, layer-time aggregation, CUDA error tuples, and the error when TensorRT is absent (the real situation on
CI). Flag names in plans are checked against the enums of the tensorrt-stubs wheel (TensorRT 10.13's Python API)."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgeconv.backends.tensorrt import (
    BuildRequest,
    CudaCallError,
    EngineRecord,
    GpuInfo,
    LayerTimeCollector,
    OnnxSummary,
    ShapeProfile,
    TensorRTRunner,
    TrtVersion,
    add_engine_to_manifest,
    batch_profile,
    build_engine,
    cuda_check,
    engine_file_name,
    engine_mismatch,
    engine_record,
    find_engine,
    format_parser_errors,
    parse_trt_version,
    plan_build,
    require_tensorrt,
    summarize_onnx,
    tensorrt_version,
    trt_features,
    trt_layer_op,
)
from edgeconv.errors import BackendUnavailableError, InvalidArgumentError, QuantizationError

FP32 = OnnxSummary(inputs=(("input", (-1, 3, 224, 224)),), precision="fp32", has_qdq=False)
FP16 = OnnxSummary(inputs=(("input", (-1, 3, 224, 224)),), precision="fp16", has_qdq=False)
QDQ = OnnxSummary(inputs=(("input", (-1, 3, 224, 224)),), precision="int8", has_qdq=True)
STATIC = OnnxSummary(inputs=(("input", (1, 3, 224, 224)),), precision="fp32", has_qdq=False)


def features(text: str):  # noqa: ANN201
    return trt_features(parse_trt_version(text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.13.0.35", TrtVersion(10, 13, 0, 35)),
        ("8.6.1", TrtVersion(8, 6, 1)),
        ("11.1.0.106", TrtVersion(11, 1, 0, 106)),
        ("10.3.0.30+cuda12", TrtVersion(10, 3, 0, 30)),
        ("9.2", TrtVersion(9, 2)),
    ],
)
def test_parse_version(text: str, expected: TrtVersion) -> None:
    assert parse_trt_version(text) == expected


def test_parse_version_rejects_garbage() -> None:
    with pytest.raises(InvalidArgumentError, match="MAJOR.MINOR"):
        parse_trt_version("ten")


def test_version_ordering() -> None:
    assert parse_trt_version("10.13.0.35") > parse_trt_version("10.3.0.30") > parse_trt_version("8.6.1")
    assert parse_trt_version("11.4.1").at_least(11, 4, 1) and not parse_trt_version("11.4.0").at_least(11, 4, 1)


def test_feature_matrix() -> None:
    v86, v103, v1013, v111, v1141 = (features(v) for v in ("8.6.1", "10.3.0", "10.13.0.35", "11.1.0.106", "11.4.1"))
    assert [f.explicit_batch_flag for f in (v86, v103, v111)] == [True, False, False]
    assert [f.strongly_typed_available for f in (v86, v103, v111)] == [False, True, True]
    assert [f.always_strongly_typed for f in (v86, v1013, v111)] == [False, False, True]
    assert [f.precision_flags for f in (v86, v1013, v111)] == [True, True, False]
    assert [f.parser_error_node_name for f in (v86, v103)] == [False, True]
    assert [f.dla for f in (v86, v103, v111, v1141)] == [True, True, False, True]
    assert [f.engine_info_io_key for f in (v1013, v111)] == ["Bindings", "I/O Tensors"]
    assert features("8.6.1").builder_optimization_level and not features("8.5.2").builder_optimization_level


def test_too_old_version_is_refused() -> None:
    with pytest.raises(BackendUnavailableError, match="JetPack 5.1"):
        features("8.4.1")


def test_plan_fp16_per_version() -> None:
    p86 = plan_build(features("8.6.1"), BuildRequest(precision="fp16"), FP32)
    assert p86.network_flags == ("EXPLICIT_BATCH",) and p86.builder_flags == ("FP16",) and not p86.strongly_typed
    assert p86.memory_pools == (("WORKSPACE", 1 << 30),)
    p10 = plan_build(features("10.13.0.35"), BuildRequest(precision="fp16", workspace_mb=256), FP32)
    assert p10.network_flags == () and p10.builder_flags == ("FP16",)
    assert p10.memory_pools == (("WORKSPACE", 256 << 20),)
    with pytest.raises(InvalidArgumentError, match="FP16 ONNX"):
        plan_build(features("11.1.0"), BuildRequest(precision="fp16"), FP32)
    p11 = plan_build(features("11.1.0"), BuildRequest(precision="fp16"), FP16)
    assert p11.network_flags == () and p11.builder_flags == () and p11.strongly_typed  # no flags exist in 11


def test_plan_fp32_and_typing_modes() -> None:
    assert plan_build(features("10.13.0"), BuildRequest(), FP32).builder_flags == ()
    strong = plan_build(features("10.13.0"), BuildRequest(precision="fp16", typing="strong"), FP16)
    assert strong.network_flags == ("STRONGLY_TYPED",) and strong.builder_flags == ()
    with pytest.raises(InvalidArgumentError, match="9.0"):
        plan_build(features("8.6.1"), BuildRequest(typing="strong"), FP32)
    with pytest.raises(InvalidArgumentError, match="only strongly typed"):
        plan_build(features("11.1.0"), BuildRequest(typing="weak"), FP32)
    with pytest.raises(InvalidArgumentError, match="precision fp16"):
        plan_build(features("10.13.0"), BuildRequest(precision="fp32"), FP16)


def test_plan_int8_needs_qdq() -> None:
    for version in ("8.6.1", "10.13.0", "11.1.0"):
        with pytest.raises(QuantizationError, match="QDQ"):
            plan_build(features(version), BuildRequest(precision="int8"), FP32)
    assert plan_build(features("8.6.1"), BuildRequest(precision="int8"), QDQ).builder_flags == ("INT8",)
    assert plan_build(features("10.13.0"), BuildRequest(precision="int8"), QDQ).builder_flags == ("INT8",)
    assert plan_build(features("11.1.0"), BuildRequest(precision="int8"), QDQ).builder_flags == ()
    with pytest.raises(InvalidArgumentError, match="QDQ"):
        plan_build(features("10.13.0"), BuildRequest(precision="fp16"), QDQ)


def test_plan_dla() -> None:
    request = BuildRequest(precision="fp16", dla_core=0, min_batch=4, opt_batch=4, max_batch=4)
    plan = plan_build(features("10.3.0"), request, FP32)
    assert plan.default_device == "DLA" and plan.dla_core == 0
    assert plan.builder_flags == ("FP16", "GPU_FALLBACK")
    assert plan.profiles == (ShapeProfile("input", (4, 3, 224, 224), (4, 3, 224, 224), (4, 3, 224, 224)),)
    no_fallback = plan_build(features("10.3.0"), BuildRequest(precision="int8", dla_core=1, gpu_fallback=False), QDQ)
    assert no_fallback.builder_flags == ("INT8",) and no_fallback.notes
    with pytest.raises(InvalidArgumentError, match="FP16 or INT8"):
        plan_build(features("10.3.0"), BuildRequest(precision="fp32", dla_core=0), FP32)
    with pytest.raises(InvalidArgumentError, match="no dynamic"):
        plan_build(features("10.3.0"), BuildRequest(precision="fp16", dla_core=0, max_batch=8), FP32)
    with pytest.raises(BackendUnavailableError, match="11.4.1"):
        plan_build(features("11.1.0"), BuildRequest(precision="fp16", dla_core=0), FP16)
    assert plan_build(features("11.4.1"), BuildRequest(precision="fp16", dla_core=0), FP16).builder_flags == (
        "GPU_FALLBACK",
    )


def test_plan_optimization_level_and_bad_values() -> None:
    assert plan_build(features("8.5.2"), BuildRequest(), FP32).optimization_level is None
    assert plan_build(features("10.13.0"), BuildRequest(optimization_level=5), FP32).optimization_level == 5
    for bad in (BuildRequest(optimization_level=6), BuildRequest(workspace_mb=0), BuildRequest(precision="int4")):
        with pytest.raises(InvalidArgumentError):
            plan_build(features("10.13.0"), bad, FP32)


def _stub_members(enum: str) -> set[str]:
    """Member names of a TensorRT enum as the tensorrt-stubs wheel (10.13) declares them."""
    dist = importlib.metadata.distribution("tensorrt-stubs")
    (stub,) = [f for f in dist.files or [] if str(f).endswith("tensorrt_bindings/tensorrt.pyi")]
    text = Path(str(stub.locate())).read_text(encoding="utf-8")
    match = re.search(rf"^class {enum}:.*?__members__: typing.ClassVar\[dict\[str, {enum}\]\]  # value = (\{{.*?\}})$",
                      text, re.MULTILINE | re.DOTALL)  # fmt: skip
    assert match, enum
    return set(re.findall(r"'(\w+)':", match.group(1)))


def test_plan_names_exist_in_tensorrt_10_enums() -> None:
    builder_flags = _stub_members("BuilderFlag")
    network_flags = _stub_members("NetworkDefinitionCreationFlag")
    pools = _stub_members("MemoryPoolType")
    verbosity = _stub_members("ProfilingVerbosity")
    requests = [
        (BuildRequest(precision="fp16"), FP32),
        (BuildRequest(precision="int8"), QDQ),
        (BuildRequest(precision="fp16", typing="strong"), FP16),
        (BuildRequest(precision="fp16", dla_core=0), FP32),
    ]
    for request, onnx_summary in requests:
        plan = plan_build(features("10.13.0.35"), request, onnx_summary)
        assert set(plan.builder_flags) <= builder_flags
        assert set(plan.network_flags) <= network_flags
        assert {name for name, _ in plan.memory_pools} <= pools
        assert plan.profiling_verbosity in verbosity


def test_batch_profile() -> None:
    profile = batch_profile("input", (-1, 3, 224, 224), min_batch=1, opt_batch=8, max_batch=32)
    assert profile == ShapeProfile("input", (1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))
    assert profile.ort_options() == {
        "trt_profile_min_shapes": "input:1x3x224x224",
        "trt_profile_opt_shapes": "input:8x3x224x224",
        "trt_profile_max_shapes": "input:32x3x224x224",
    }
    assert batch_profile("input", (1, 3, 224, 224)) is None
    assert batch_profile("input", (4, 3, 224, 224), min_batch=4, opt_batch=4, max_batch=4) is None
    with pytest.raises(InvalidArgumentError, match="static batch of 1"):
        batch_profile("input", (1, 3, 224, 224), max_batch=8)
    with pytest.raises(InvalidArgumentError, match="non-batch"):
        batch_profile("input", (-1, 3, -1, -1))
    with pytest.raises(InvalidArgumentError, match="min <= opt <= max"):
        batch_profile("input", (-1, 3, 8, 8), min_batch=4, opt_batch=2, max_batch=8)
    assert plan_build(features("10.13.0"), BuildRequest(), STATIC).profiles == ()


def _record(**overrides: object) -> EngineRecord:
    plan = plan_build(features("10.13.0.35"), BuildRequest(precision="fp16", max_batch=8), FP32)
    values = {
        "file": "model.fp16.sm86.trt10.13.engine", "precision": "fp16", "tensorrt_version": "10.13.0.35",
        "gpu_name": "NVIDIA GeForce RTX 3060", "compute_capability": "8.6", "onnx_file": "model.onnx",
        "onnx_sha256": "ab" * 32, "engine_sha256": "cd" * 32, "min_batch": 1, "opt_batch": 1, "max_batch": 8,
        "dla_core": None, "network_flags": plan.network_flags, "builder_flags": plan.builder_flags,
        "build_seconds": 12.5, "created": "2026-11-22T04:00:00+00:00",
    }  # fmt: skip
    values.update(overrides)
    return EngineRecord(**values)  # type: ignore[arg-type]


def test_engine_names_and_mismatch() -> None:
    v = parse_trt_version("10.3.0.30")
    assert engine_file_name("model", "int8", "8.7", v, dla_core=0) == "model.int8.sm87.trt10.3.dla0.engine"
    record = _record()
    assert engine_mismatch(record, parse_trt_version("10.13.0.35"), "8.6") is None
    assert "10.13.0.35" in (engine_mismatch(record, parse_trt_version("10.13.1"), "8.6") or "")
    assert "compute capability" in (engine_mismatch(record, parse_trt_version("10.13.0.35"), "8.9") or "")


def test_engine_manifest_roundtrip(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"model": "mobilenet_v2", "opset": 17}))
    add_engine_to_manifest(tmp_path, _record())
    add_engine_to_manifest(tmp_path, _record(file="model.int8.sm86.trt10.13.engine", precision="int8"))
    add_engine_to_manifest(tmp_path, _record(build_seconds=3.0))  # same file: replaced, not duplicated
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["model"] == "mobilenet_v2" and manifest["opset"] == 17
    engines = manifest["tensorrt"]["engines"]
    assert [e["file"] for e in engines] == ["model.int8.sm86.trt10.13.engine", "model.fp16.sm86.trt10.13.engine"]
    assert EngineRecord.from_json(engines[1]) == _record(build_seconds=3.0)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temp files
    here = {"version": parse_trt_version("10.13.0.35"), "compute_capability": "8.6"}
    assert find_engine(manifest, precision="fp16", batch=8, **here) == _record(build_seconds=3.0)  # type: ignore[arg-type]
    assert find_engine(manifest, precision="fp16", batch=16, **here) is None  # type: ignore[arg-type]
    assert find_engine(manifest, precision="fp16", batch=1, dla_core=0, **here) is None  # type: ignore[arg-type]
    other = {"version": parse_trt_version("11.1.0"), "compute_capability": "8.6"}
    assert find_engine(manifest, precision="fp16", batch=1, **other) is None  # type: ignore[arg-type]


def test_engine_record_from_plan(tmp_path: Path) -> None:
    engine = tmp_path / "x.engine"
    engine.write_bytes(b"plan")
    plan = plan_build(features("8.6.1"), BuildRequest(precision="fp16", max_batch=4), FP32)
    gpu = GpuInfo("Orin", "8.7", "12.2", "12.2")
    record = engine_record(plan, BuildRequest(precision="fp16", max_batch=4), gpu, "x.engine", tmp_path / "m.onnx",
                           "00", engine, 1.23456)  # fmt: skip
    assert record.tensorrt_version == "8.6.1" and record.compute_capability == "8.7" and record.max_batch == 4
    assert record.network_flags == ("EXPLICIT_BATCH",) and record.builder_flags == ("FP16",)
    assert record.engine_sha256 == hashlib.sha256(b"plan").hexdigest()
    assert record.build_seconds == 1.235


def test_layer_time_collector() -> None:
    collector = LayerTimeCollector()
    with pytest.raises(InvalidArgumentError):
        collector.summary()
    for scale in (1.0, 3.0):
        collector.add("/features/features.0/features.0.0/Conv + /features/features.0/features.0.2/Relu", 0.5 * scale)
        collector.add("Reformatting CopyNode for Input Tensor 0 to /fc/Gemm", 0.1 * scale)
        collector.add("PWN(/features/features.1/Add, /features/features.1/Relu)", 0.2 * scale)
        collector.end_run(1.0 * scale)
    profile = collector.summary()
    assert profile.runs == 2 and profile.end_to_end_ms == pytest.approx(2.0)
    assert [layer.mean_ms for layer in profile.layers] == pytest.approx([1.0, 0.2, 0.4])
    assert [layer.op_type for layer in profile.layers] == ["Conv", "Reformat", "PointWise"]
    assert profile.gap_ms == pytest.approx(0.4)
    collector.reset()
    assert collector.runs == 0


def test_trt_layer_op_names() -> None:
    assert trt_layer_op("Conv_0 + Relu_1") == "Conv"
    assert trt_layer_op("/features/features.3/Transpose") == "Transpose"
    assert trt_layer_op("{ForeignNode[/features/Conv.../fc/Gemm]}") != ""


def test_parser_error_text() -> None:
    text = format_parser_errors(
        [{"code": "UNSUPPORTED_NODE", "desc": "no importer", "node": 3, "node_name": "/x/Foo", "node_operator": "Foo"},
         {"code": "INVALID_GRAPH", "desc": "bad", "node": -1}]
    )  # fmt: skip
    assert text == "node 3 '/x/Foo' (Foo): no importer [UNSUPPORTED_NODE]; node -1: bad [INVALID_GRAPH]"


def test_cuda_check_error_tuples() -> None:
    from cuda.bindings import runtime as cudart

    assert cuda_check((cudart.cudaError_t.cudaSuccess, 5)) == 5
    assert cuda_check((cudart.cudaError_t.cudaSuccess, 1, 2)) == (1, 2)
    assert cuda_check((cudart.cudaError_t.cudaSuccess,)) is None
    with pytest.raises(CudaCallError, match="cudaErrorInsufficientDriver"):
        cuda_check((cudart.cudaError_t.cudaErrorInsufficientDriver, None))


def _qdq_onnx(path: Path) -> None:
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4])
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [], [0.1])
    zero = helper.make_tensor("zero", TensorProto.INT8, [], [0])
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "scale", "zero"], ["q"], name="/q/QuantizeLinear"),
        helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["dq"], name="/q/DequantizeLinear"),
        helper.make_node("Relu", ["dq"], ["output"], name="/act/Relu"),
    ]
    graph = helper.make_graph(nodes, "qdq", [x], [y], [scale, zero])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_summarize_onnx(tmp_path: Path) -> None:
    _qdq_onnx(tmp_path / "qdq.onnx")
    summary = summarize_onnx(tmp_path / "qdq.onnx")
    assert summary == OnnxSummary(inputs=(("input", (-1, 4)),), precision="int8", has_qdq=True)
    with pytest.raises(InvalidArgumentError, match="non-batch"):
        plan_build(
            features("10.13.0"), BuildRequest(precision="int8"), dataclasses.replace(summary, inputs=(("x", (-1, -1)),))
        )


@pytest.mark.skipif(tensorrt_version() is not None, reason="TensorRT is installed: the absence path cannot run")
def test_missing_tensorrt_is_backend_unavailable(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match=r"pip install 'edgeconv\[tensorrt\]'.*JetPack"):
        require_tensorrt()
    _qdq_onnx(tmp_path / "m.onnx")
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed"):
        build_engine(tmp_path / "m.onnx", BuildRequest(precision="int8"))
    runner = TensorRTRunner(tmp_path / "m.engine", _record())
    with pytest.raises(BackendUnavailableError, match="install"), runner:
        runner.run(np.zeros((1, 4), np.float32))


def test_stub_only_tensorrt_is_not_tensorrt() -> None:
    """tensorrt-stubs installs a ``tensorrt`` folder of .pyi files that imports as an empty namespace package."""
    try:
        import tensorrt
    except ImportError:
        pytest.skip("no tensorrt module at all (stubs not installed)")
    if getattr(tensorrt, "__file__", None) is None:  # namespace package: stubs only
        assert tensorrt_version() is None
    else:
        assert tensorrt_version() == tensorrt.__version__
