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
    CudaRuntime,
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
    cuda_driver_advice,
    cuda_graph_policy,
    dla_gpu_layers,
    engine_batch_range,
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
from edgeconv.errors import BackendUnavailableError, EdgeconvError, ExportError, InvalidArgumentError, QuantizationError

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
    assert no_fallback.builder_flags == ("INT8", "FP16") and no_fallback.notes
    with pytest.raises(InvalidArgumentError, match="FP16 or INT8"):
        plan_build(features("10.3.0"), BuildRequest(precision="fp32", dla_core=0), FP32)
    with pytest.raises(InvalidArgumentError, match="no dynamic"):
        plan_build(features("10.3.0"), BuildRequest(precision="fp16", dla_core=0, max_batch=8), FP32)
    with pytest.raises(BackendUnavailableError, match="11.4.1"):
        plan_build(features("11.1.0"), BuildRequest(precision="fp16", dla_core=0), FP16)
    assert plan_build(features("11.4.1"), BuildRequest(precision="fp16", dla_core=0), FP16).builder_flags == (
        "GPU_FALLBACK",
    )


def test_plan_dla_int8_allows_fp16_on_weakly_typed_versions() -> None:
    """Issue 24, defect 7: DLA runs no FP32 layer, so a weakly typed INT8 build for DLA also sets FP16 (trtexec's
    `--int8 --fp16`); on the GPU INT8 stays alone, and strongly typed 11.x has no flags but says what happens."""
    for version in ("8.6.1", "10.3.0"):
        dla = plan_build(features(version), BuildRequest(precision="int8", dla_core=0), QDQ)
        assert {"INT8", "FP16"} <= set(dla.builder_flags)
        assert plan_build(features(version), BuildRequest(precision="int8"), QDQ).builder_flags == ("INT8",)
    strong = plan_build(features("11.4.1"), BuildRequest(precision="int8", dla_core=0), QDQ)
    assert strong.builder_flags == ("GPU_FALLBACK",) and any("FP32" in note for note in strong.notes)


def test_dla_layer_placement_obeys_gpu_fallback() -> None:
    """Issue 24, defect 5: layers DLA cannot run go to the GPU only with fallback on; without it the build fails
    naming them (before, --no-gpu-fallback moved them to the GPU anyway)."""
    layers = [("conv1", True), ("/head/Softmax", False), ("relu", True), ("/head/TopK", False)]
    assert dla_gpu_layers(layers, gpu_fallback=True, dla_core=0) == ["/head/Softmax", "/head/TopK"]
    with pytest.raises(
        ExportError, match=r"DLA core 1 cannot run 2 of 4 layers \(/head/Softmax, /head/TopK\).*--no-gpu"
    ):
        dla_gpu_layers(layers, gpu_fallback=False, dla_core=1)
    assert dla_gpu_layers([("conv1", True)], gpu_fallback=False, dla_core=0) == []
    many = [(f"layer{i}", False) for i in range(13)]
    with pytest.raises(ExportError, match="layer9 and 3 more"):
        dla_gpu_layers(many, gpu_fallback=False, dla_core=0)


def test_cuda_graph_policy() -> None:
    """Issue 24, defect 2: never CUDA graphs with DLA (trtexec: not supported together) or with profiling."""
    assert cuda_graph_policy(True, dla_core=None, profile=False) == (True, "")
    assert cuda_graph_policy(False, dla_core=0, profile=True) == (False, "")
    on_dla, why = cuda_graph_policy(True, dla_core=0, profile=False)
    assert not on_dla and "DLA" in why
    profiled, why = cuda_graph_policy(True, dla_core=None, profile=True)
    assert not profiled and "profiling" in why


def test_engine_batch_range() -> None:
    """Issue 24, defect 8: a static-batch ONNX asked for another batch is a clear error, not plan_build's
    `1 <= min <= opt <= max`."""
    assert engine_batch_range(-1, 8, max_batch=32) == (1, 8, 32)
    assert engine_batch_range(-1, 8) == (1, 8, 8)
    assert engine_batch_range(-1, 4, max_batch=32, dla=True) == (4, 4, 4)
    assert engine_batch_range(1, 1) == (1, 1, 1)
    assert engine_batch_range(4, 4, max_batch=8) == (4, 4, 4)
    with pytest.raises(InvalidArgumentError, match="static batch of 1.*not 8.*--dynamic-batch"):
        engine_batch_range(1, 8, max_batch=8)
    with pytest.raises(InvalidArgumentError, match="batch 0"):
        engine_batch_range(-1, 0)
    for onnx_batch, batch in ((-1, 8), (1, 1), (4, 4)):
        low, opt, high = engine_batch_range(onnx_batch, batch, max_batch=16)
        request = BuildRequest(precision="fp16", min_batch=low, opt_batch=opt, max_batch=high)
        onnx_summary = OnnxSummary(inputs=(("input", (onnx_batch, 3, 8, 8)),), precision="fp32", has_qdq=False)
        plan_build(features("10.13.0"), request, onnx_summary)  # every range it gives, plan_build accepts


def test_cuda_driver_advice_names_the_driver() -> None:
    """Issue 24, defect 6: the error says which driver is there and which bindings to install."""
    assert "no NVIDIA driver" in cuda_driver_advice(0, 13050)
    assert "no NVIDIA driver" in cuda_driver_advice(None, None)
    advice = cuda_driver_advice(12020, 13050)  # JetPack 6 driver, cuda-bindings 13
    assert "CUDA 12.2" in advice and "CUDA 13.5" in advice and "580+" in advice
    assert "pip install 'cuda-bindings==12.*'" in advice
    assert "'cuda-bindings==11.8.*'" in cuda_driver_advice(11040, 12090)  # JetPack 5 driver
    assert cuda_driver_advice(13000, 12090) == ""  # a newer driver runs older bindings: not the cause
    assert cuda_driver_advice(12080, None) == ""


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
    here = {"version": parse_trt_version("10.13.0.35"), "compute_capability": "8.6", "onnx_sha256": "ab" * 32}
    assert find_engine(manifest, precision="fp16", batch=8, **here) == _record(build_seconds=3.0)  # type: ignore[arg-type]
    assert find_engine(manifest, precision="fp16", batch=16, **here) is None  # type: ignore[arg-type]
    assert find_engine(manifest, precision="fp16", batch=1, dla_core=0, **here) is None  # type: ignore[arg-type]
    other = {"version": parse_trt_version("11.1.0"), "compute_capability": "8.6", "onnx_sha256": "ab" * 32}
    assert find_engine(manifest, precision="fp16", batch=1, **other) is None  # type: ignore[arg-type]


def test_find_engine_refuses_an_engine_of_another_onnx(tmp_path: Path) -> None:
    """Issue 24, defect 8: an ONNX re-exported under the same name (other sha256) makes the recorded engine stale."""
    add_engine_to_manifest(tmp_path, _record())
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    here = {"precision": "fp16", "version": parse_trt_version("10.13.0.35"), "compute_capability": "8.6", "batch": 1}
    assert find_engine(manifest, onnx_sha256="ab" * 32, **here) == _record()  # type: ignore[arg-type]
    assert find_engine(manifest, onnx_sha256="ef" * 32, **here) is None  # type: ignore[arg-type]


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
    with pytest.raises(CudaCallError, match="cudaMalloc failed: cudaErrorInsufficientDriver"):
        cuda_check((cudart.cudaError_t.cudaErrorInsufficientDriver, None), "cudaMalloc")
    # An EdgeconvError (one line on the CLI, skipped by bench.make_cases), still a RuntimeError for older callers.
    assert issubclass(CudaCallError, EdgeconvError) and issubclass(CudaCallError, RuntimeError)


def test_cuda_runtime_turns_binding_runtime_errors_into_cuda_call_errors() -> None:
    """cuda-python 11.8 / 12.6 raise RuntimeError (no error code) when libcuda.so.1 is missing; TypeError (wrong
    arguments: a bug) must not be disguised as a CUDA failure."""

    def cudaMalloc(size: int) -> tuple[int, int]:  # cuda-python names
        raise RuntimeError("Failed to dlopen libcuda.so.1")

    def cudaFree(pointer: int) -> tuple[int]:
        raise TypeError("cudaFree() takes exactly 1 positional argument (2 given)")

    runtime = CudaRuntime(
        type("Module", (), {"cudaMalloc": staticmethod(cudaMalloc), "cudaFree": staticmethod(cudaFree)})
    )
    with pytest.raises(CudaCallError, match="cudaMalloc failed: Failed to dlopen libcuda.so.1"):
        runtime.malloc(16)
    with pytest.raises(TypeError):
        runtime.free(0)


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
