"""The TensorRT backend's build and run paths with stand-ins for TensorRT and the GPU (no TensorRT wheel installs
here; the real cuda-python calls are tested in test_tensorrt_cuda_bindings.py). The stand-ins keep the contracts
TensorRT documents and that the fixes of issue 24 rely on:

- ``create_timing_cache`` returns None (or raises) for a blob it cannot read; ``set_timing_cache(cache, False)``
  returns False for a cache of another TensorRT version or GPU; ``get_timing_cache`` returns None when none is set;
- ``create_execution_context`` may return None; ``set_input_shape`` / ``set_tensor_address`` return bool;
- a CUDA graph bakes in its execution context's state at capture: after ``set_input_shape`` changes that context,
  replaying an older graph of it is invalid (NVIDIA/TensorRT#3798), which :class:`FakeContext` turns into an error;
- an enqueue may fail under capture (an engine with operations that cannot be captured).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import MagicMock

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import edgeconv.backends.tensorrt as trt_backend
from edgeconv.backends.tensorrt import (
    BuildRequest,
    CudaCallError,
    CudaRuntime,
    EngineRecord,
    GpuInfo,
    GraphReplay,
    TensorRTRunner,
    attach_timing_cache,
    build_engine,
    engine_for,
    timing_cache_bytes,
    trt_logger,
)
from edgeconv.errors import ExportError, InputError, InvalidArgumentError

WEIGHTS = np.arange(12, dtype=np.float32).reshape(4, 3) / 10  # the fake network: (N, 4) @ WEIGHTS -> (N, 3)
GPU = GpuInfo("Fake GPU", "8.6", "12.2", "12.9")


# ---------------------------------------------------------------------------------------------------------------
# Stand-ins: a device with one stream, execution contexts, an engine, a tensorrt module
# ---------------------------------------------------------------------------------------------------------------
class FakeCuda(CudaRuntime):
    """Device memory as numpy byte arrays; stream work runs at once, or is recorded while a capture is open."""

    def __init__(self) -> None:  # no cuda-python module behind it
        self.memory: dict[int, np.ndarray] = {}
        self.capturing: list[Any] | None = None
        self.events: list[str] = []
        self.fail_end_capture = False

    def submit(self, work: Any) -> None:
        if self.capturing is not None:
            self.capturing.append(work)
        else:
            work()

    def stream_create(self) -> Any:
        return 7

    def stream_synchronize(self, stream: Any) -> None:
        self.events.append("sync")

    def stream_destroy(self, stream: Any) -> None:
        self.events.append("stream_destroy")

    def malloc(self, nbytes: int) -> int:
        pointer = 0x1000 * (len(self.memory) + 1)
        self.memory[pointer] = np.zeros(max(nbytes, 1), np.uint8)
        return pointer

    def free(self, pointer: int) -> None:
        del self.memory[pointer]

    def copy_to_device_async(self, device_pointer: int, host: np.ndarray, stream: Any) -> None:
        raw = host.view(np.uint8).ravel().copy()
        self.submit(lambda: self.memory[device_pointer].__setitem__(slice(0, raw.size), raw))

    def copy_to_host_async(self, host: np.ndarray, device_pointer: int, stream: Any) -> None:
        self.submit(
            lambda: host.view(np.uint8).ravel().__setitem__(slice(None), self.memory[device_pointer][: host.nbytes])
        )

    def begin_capture(self, stream: Any) -> None:
        assert self.capturing is None, "capture begun twice"
        self.capturing = []
        self.events.append("begin_capture")

    def end_capture(self, stream: Any) -> Any:
        graph, self.capturing = self.capturing, None
        self.events.append("end_capture")
        if self.fail_end_capture:
            raise CudaCallError("cudaStreamEndCapture failed: cudaErrorStreamCaptureInvalidated (901)")
        return ("graph", graph)

    def abandon_capture(self, stream: Any) -> None:
        self.capturing = None
        self.events.append("abandon_capture")

    def clear_error(self) -> None:
        self.events.append("clear_error")

    def graph_instantiate(self, graph: Any) -> Any:
        self.events.append("instantiate")
        return list(graph[1])

    def graph_launch(self, graph_exec: Any, stream: Any) -> None:
        self.events.append("launch")
        for work in graph_exec:
            work()

    def graph_destroy(self, graph: Any) -> None:
        self.events.append("graph_destroy")

    def graph_exec_destroy(self, graph_exec: Any) -> None:
        self.events.append("graph_exec_destroy")


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine, self.cuda = engine, engine.cuda
        self.shape: tuple[int, ...] | None = None
        self.shapes_set: list[tuple[int, ...]] = []
        self.addresses: dict[str, int] = {}
        self.generation = 0  # bumped by every shape change: graphs captured before it are stale
        self.profiler = None

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.shapes_set.append(tuple(shape))
        if name != "input" or not 1 <= shape[0] <= self.engine.max_batch:
            return False
        self.shape = tuple(shape)
        self.generation += 1
        return True

    def infer_shapes(self) -> list[str]:
        return []

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        assert self.shape is not None
        return (self.shape[0], 4) if name == "input" else (self.shape[0], 3)

    def set_tensor_address(self, name: str, pointer: int) -> bool:
        if name not in ("input", "output") or name in self.engine.refused_addresses:
            return False
        self.addresses[name] = pointer
        return True

    def execute_async_v3(self, stream: int) -> bool:
        assert isinstance(stream, int)
        assert self.shape is not None
        batch, generation, memory = self.shape[0], self.generation, self.cuda.memory
        source, destination = self.addresses["input"], self.addresses["output"]
        self.cuda.events.append("execute" if self.cuda.capturing is None else "execute (captured)")

        def work() -> None:
            if self.generation != generation:
                raise AssertionError("a graph was replayed after set_input_shape changed its context (TensorRT#3798)")
            x = memory[source][: batch * 16].view(np.float32).reshape(batch, 4)
            memory[destination][: batch * 12] = (x @ WEIGHTS).astype(np.float32).view(np.uint8).ravel()

        self.cuda.submit(work)
        return True


class UncapturableContext(FakeContext):
    """An engine with a layer that cannot run under stream capture: the enqueue fails while capturing."""

    def execute_async_v3(self, stream: int) -> bool:
        if self.cuda.capturing is not None:
            self.cuda.events.append("execute (refused)")
            return False
        return super().execute_async_v3(stream)


class FakeEngine:
    num_io_tensors = 2

    def __init__(self, cuda: FakeCuda, *, max_batch: int = 8, context_class: type = FakeContext) -> None:
        self.cuda, self.max_batch, self.context_class = cuda, max_batch, context_class
        self.contexts: list[FakeContext] = []
        self.refused_addresses: set[str] = set()
        self.no_context = False

    def get_tensor_name(self, index: int) -> str:
        return ("input", "output")[index]

    def get_tensor_mode(self, name: str) -> str:
        return "INPUT" if name == "input" else "OUTPUT"

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (-1, 4) if name == "input" else (-1, 3)

    def get_tensor_profile_shape(self, name: str, profile: int) -> list[tuple[int, ...]]:
        return [(1, 4), (1, 4), (self.max_batch, 4)]

    def get_tensor_dtype(self, name: str) -> str:
        return "float32"

    def create_execution_context(self) -> FakeContext | None:
        if self.no_context:
            return None
        context = self.context_class(self)
        self.contexts.append(context)
        return context


def runtime_trt(engine: FakeEngine) -> SimpleNamespace:
    """The part of the ``tensorrt`` module TensorRTRunner uses."""

    class Runtime:
        def __init__(self, logger: Any) -> None:
            self.logger, self.DLA_core = logger, None

        def deserialize_cuda_engine(self, blob: bytes) -> FakeEngine:
            return engine

    return SimpleNamespace(
        __version__="10.13.0.35",
        Builder=object,
        Logger=MagicMock(name="Logger"),
        Runtime=Runtime,
        TensorIOMode=SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT"),
        nptype=lambda dtype: np.float32,
    )


def _record(dla_core: int | None = None) -> EngineRecord:
    return EngineRecord(
        file="m.fp16.sm86.trt10.13.engine", precision="fp16", tensorrt_version="10.13.0.35", gpu_name=GPU.name,
        compute_capability="8.6", onnx_file="m.onnx", onnx_sha256="ab" * 32, engine_sha256="cd" * 32, min_batch=1,
        opt_batch=1, max_batch=8, dla_core=dla_core, network_flags=(), builder_flags=("FP16",), build_seconds=1.0,
        created="2026-11-22T04:00:00+00:00",
    )  # fmt: skip


@pytest.fixture
def device(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> SimpleNamespace:
    """A fake GPU (FakeCuda) and a fake TensorRT whose engine file is ``path``."""
    cuda = FakeCuda()
    engine = FakeEngine(cuda)
    trt = runtime_trt(engine)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    # The runner's CudaRuntime() gives this device; CudaRuntime.handle stays the real one.
    monkeypatch.setattr(trt_backend, "CudaRuntime", type("OneDevice", (FakeCuda,), {"__new__": lambda cls: cuda}))
    monkeypatch.setattr(trt_backend, "cuda_gpu_info", lambda device=0, cuda=None: GPU)
    monkeypatch.setattr(trt_backend, "_TRT_LOGGER", None)
    path = tmp_path / "m.engine"
    path.write_bytes(b"plan")
    return SimpleNamespace(cuda=cuda, engine=engine, trt=trt, path=path)


def _inputs(batch: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 4)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Defects 2 and 3: CUDA graphs
# ---------------------------------------------------------------------------------------------------------------
def test_graph_replay_captures_like_trtexec() -> None:
    """Plain enqueue, synchronize, capture; a checked capture result; the graph freed after instantiation."""
    cuda = FakeCuda()
    engine = FakeEngine(cuda)
    made: list[int] = []

    def new_context(batch: int) -> FakeContext:
        made.append(batch)
        context = engine.create_execution_context()
        assert context is not None
        context.addresses = {"input": cuda.malloc(64), "output": cuda.malloc(48)}
        context.set_input_shape("input", (batch, 4))
        return context

    replay = GraphReplay(cuda, 7, new_context)
    replay.run(2)
    assert cuda.events == ["execute", "sync", "begin_capture", "execute (captured)", "end_capture", "instantiate",
                           "graph_destroy", "launch"]  # fmt: skip
    replay.run(2)
    replay.run(4)
    replay.run(2)
    assert made == [2, 4]  # one context per batch size, each captured once
    assert cuda.events.count("begin_capture") == 2 and cuda.events.count("launch") == 4
    replay.close()
    assert cuda.events.count("graph_exec_destroy") == 2 and not replay.batches


def test_graph_replay_falls_back_to_plain_enqueue_when_capture_fails(caplog: pytest.LogCaptureFixture) -> None:
    cuda = FakeCuda()
    engine = FakeEngine(cuda, context_class=UncapturableContext)

    def new_context(batch: int) -> FakeContext:
        context = engine.create_execution_context()
        assert context is not None
        context.addresses = {"input": cuda.malloc(64), "output": cuda.malloc(48)}
        context.set_input_shape("input", (batch, 4))
        return context

    replay = GraphReplay(cuda, 7, new_context)
    with caplog.at_level(logging.WARNING):
        replay.run(1)
        replay.run(1)
    assert cuda.events == ["execute", "sync", "begin_capture", "execute (refused)", "abandon_capture", "execute",
                           "execute"]  # fmt: skip
    assert replay.batches[1].graph_exec is None
    assert "cannot be captured" in caplog.text

    cuda = FakeCuda()
    cuda.fail_end_capture = True  # CUDA invalidated the capture although TensorRT's enqueue returned True
    engine = FakeEngine(cuda)
    replay = GraphReplay(cuda, 7, new_context)
    replay.run(3)
    assert "clear_error" in cuda.events and "launch" not in cuda.events and replay.batches[3].graph_exec is None


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_runner_results_at_several_batch_sizes(device: SimpleNamespace, cuda_graph: bool) -> None:
    """With graphs, each batch size has its own context (set_input_shape once): replaying a graph after its context
    changed shape raises in FakeContext, as it is invalid in TensorRT. Without, one context follows the batch."""
    runner = TensorRTRunner(device.path, _record(), cuda_graph=cuda_graph)
    with runner:
        for seed, batch in enumerate((1, 8, 1, 3, 8, 1)):
            x = _inputs(batch, seed)
            np.testing.assert_allclose(runner.run(x), x @ WEIGHTS, rtol=1e-6)
    contexts = device.engine.contexts
    if cuda_graph:
        assert [c.shapes_set for c in contexts] == [[(8, 4), (1, 4)], [(8, 4)], [(3, 4)]]  # first: max shape, then 1
        assert device.cuda.events.count("begin_capture") == 3
    else:
        assert len(contexts) == 1 and contexts[0].shapes_set == [(8, 4), (1, 4), (8, 4), (1, 4), (3, 4), (8, 4), (1, 4)]
        assert "begin_capture" not in device.cuda.events
    assert not device.cuda.memory  # every buffer freed on exit


def test_runner_without_graphs_on_dla_or_when_profiling(
    device: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        on_dla = TensorRTRunner(device.path, _record(dla_core=0), cuda_graph=True)
    assert not on_dla.cuda_graph and "DLA" in caplog.text
    assert not TensorRTRunner(device.path, _record(), cuda_graph=True, profile=True).cuda_graph
    with on_dla:
        x = _inputs(2, 0)
        np.testing.assert_allclose(on_dla.run(x), x @ WEIGHTS, rtol=1e-6)
    assert "begin_capture" not in device.cuda.events


def test_runner_with_an_uncapturable_engine_still_runs(device: SimpleNamespace) -> None:
    device.engine.context_class = UncapturableContext
    with TensorRTRunner(device.path, _record(), cuda_graph=True) as runner:
        for seed, batch in enumerate((2, 2, 5)):
            x = _inputs(batch, seed)
            np.testing.assert_allclose(runner.run(x), x @ WEIGHTS, rtol=1e-6)
    assert "launch" not in device.cuda.events and device.cuda.events.count("abandon_capture") == 2


# ---------------------------------------------------------------------------------------------------------------
# Defect 9: unchecked returns, one logger
# ---------------------------------------------------------------------------------------------------------------
def test_runner_checks_tensorrt_results(device: SimpleNamespace) -> None:
    device.engine.no_context = True
    with pytest.raises(CudaCallError, match="could not create an execution context for m.engine"):
        TensorRTRunner(device.path, _record()).__enter__()
    device.engine.no_context = False
    device.engine.refused_addresses = {"output"}
    with pytest.raises(CudaCallError, match="refused device address 0x2000 for tensor 'output'"):
        TensorRTRunner(device.path, _record()).__enter__()
    assert not device.cuda.memory  # buffers freed when activation fails
    device.engine.refused_addresses = set()
    with TensorRTRunner(device.path, _record()) as runner:
        runner._state["max_shape"] = (16, 4)  # pretend the runner thinks 16 fits: TensorRT says no
        with pytest.raises(InputError, match=r"input shape \(12, 4\) of 'input' is outside"):
            runner.run(_inputs(12, 0))


def test_one_tensorrt_logger_per_process(device: SimpleNamespace) -> None:
    first = trt_logger(device.trt)
    assert trt_logger(device.trt) is first
    for _ in range(2):
        with TensorRTRunner(device.path, _record()):
            pass
    assert device.trt.Logger.call_count == 1


def test_bench_skips_a_case_whose_cuda_call_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeconv.bench import make_cases

    def engine_for_without_memory(*args: Any, **kwargs: Any) -> Any:
        raise CudaCallError("cudaMalloc failed: cudaErrorMemoryAllocation (2)")

    monkeypatch.setattr(trt_backend, "engine_for", engine_for_without_memory)
    target = SimpleNamespace(
        name="m", batch_shape=lambda batch, size=None: (batch, 4), input_shape=(-1, 4), dynamic_size=False
    )
    cases, skipped = make_cases(target, backends=["tensorrt"], precisions=["fp16"], batches=[1])
    assert cases == [] and skipped == ["tensorrt/fp16/batch 1: cudaMalloc failed: cudaErrorMemoryAllocation (2)"]


# ---------------------------------------------------------------------------------------------------------------
# Defects 1, 5, 8: building, with a MagicMock standing in for the tensorrt module
# ---------------------------------------------------------------------------------------------------------------
class FakeTimingCache:
    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def serialize(self) -> memoryview:
        return memoryview(self.blob or b"fresh cache, filled by the build")


class FakeConfig:
    """IBuilderConfig's timing-cache contract."""

    def __init__(self) -> None:
        self.cache: FakeTimingCache | None = None
        self.lose_cache = False  # get_timing_cache() returns None after the build

    def create_timing_cache(self, blob: bytes) -> FakeTimingCache | None:
        if blob == b"garbage":
            return None
        if blob == b"truncated":
            raise RuntimeError("timing cache is corrupted")
        return FakeTimingCache(bytes(blob))

    def set_timing_cache(self, cache: FakeTimingCache, ignore_mismatch: bool) -> bool:
        assert ignore_mismatch is False
        if cache.blob.startswith(b"other GPU"):
            return False
        self.cache = cache
        return True

    def get_timing_cache(self) -> FakeTimingCache | None:
        return None if self.lose_cache else self.cache


@pytest.mark.parametrize("blob", [b"other GPU's cache", b"garbage", b"truncated", b""])
def test_attach_timing_cache_falls_back_to_a_fresh_cache(blob: bytes, caplog: pytest.LogCaptureFixture) -> None:
    config = FakeConfig()
    with caplog.at_level(logging.WARNING):
        assert attach_timing_cache(config, blob, "tc.bin")
    assert config.cache is not None and config.cache.blob == b""
    assert ("tc.bin is unreadable or was made by another" in caplog.text) == bool(blob)
    assert timing_cache_bytes(config) == b"fresh cache, filled by the build"


def test_attach_timing_cache_keeps_a_good_cache_and_reports_none() -> None:
    config = FakeConfig()
    assert (
        attach_timing_cache(config, b"this GPU's cache", "tc.bin") and timing_cache_bytes(config) == b"this GPU's cache"
    )
    config.lose_cache = True
    assert timing_cache_bytes(config) is None
    refusing = FakeConfig()
    refusing.set_timing_cache = lambda cache, ignore_mismatch: False  # type: ignore[method-assign]
    assert not attach_timing_cache(refusing, b"", "tc.bin")


def _onnx(path: Path, op: str = "Relu", batch: int | str = "batch") -> Path:
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 4])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 4])
    graph = helper.make_graph([helper.make_node(op, ["input"], ["output"], name=f"/act/{op}")], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture
def builder(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    trt = MagicMock(name="tensorrt")
    trt.__version__ = "10.13.0.35"
    fake = FakeConfig()
    config = MagicMock(name="IBuilderConfig")
    config.create_timing_cache.side_effect = fake.create_timing_cache
    config.set_timing_cache.side_effect = fake.set_timing_cache
    config.get_timing_cache.side_effect = fake.get_timing_cache
    config.can_run_on_DLA.side_effect = lambda layer: layer.name != "/head/TopK"
    trt.Builder.return_value.create_builder_config.return_value = config
    trt.Builder.return_value.num_DLA_cores = 2
    trt.Builder.return_value.build_serialized_network.return_value = b"serialized plan"
    trt.OnnxParser.return_value.parse.return_value = True
    layers = [SimpleNamespace(name="/conv/Conv"), SimpleNamespace(name="/head/TopK")]
    network = trt.Builder.return_value.create_network.return_value
    network.num_layers = len(layers)
    network.get_layer.side_effect = layers.__getitem__
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(trt_backend, "cuda_gpu_info", lambda device=0, cuda=None: GPU)
    monkeypatch.setattr(trt_backend, "_TRT_LOGGER", None)
    return SimpleNamespace(trt=trt, config=config, fake=fake, layers=layers)


def test_build_with_a_foreign_timing_cache_records_the_engine_and_replaces_the_cache(
    builder: SimpleNamespace, tmp_path: Path
) -> None:
    """Defect 1: a cache from another GPU used to leave the config without a cache, and saving it raised
    AttributeError after the engine file was written but before the manifest was."""
    cache = tmp_path / "tc.bin"
    cache.write_bytes(b"other GPU's cache")
    record = build_engine(_onnx(tmp_path / "m.onnx"), BuildRequest(precision="fp16", timing_cache=str(cache)))
    assert (tmp_path / record.file).read_bytes() == b"serialized plan"
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [e["file"] for e in manifest["tensorrt"]["engines"]] == [record.file]
    assert cache.read_bytes() == b"fresh cache, filled by the build"


def test_build_without_a_timing_cache_after_the_build_still_records_the_engine(
    builder: SimpleNamespace, tmp_path: Path
) -> None:
    builder.fake.lose_cache = True
    cache = tmp_path / "tc.bin"
    record = build_engine(_onnx(tmp_path / "m.onnx"), BuildRequest(precision="fp16", timing_cache=str(cache)))
    assert (tmp_path / "manifest.json").is_file() and (tmp_path / record.file).is_file()
    assert not cache.exists()


def test_dla_build_places_layers_only_with_gpu_fallback(builder: SimpleNamespace, tmp_path: Path) -> None:
    """Defect 5: --no-gpu-fallback fails naming the layers; with fallback only those layers go to the GPU."""
    onnx_path = _onnx(tmp_path / "m.onnx", batch=1)
    request = BuildRequest(precision="fp16", dla_core=0, gpu_fallback=False)
    with pytest.raises(ExportError, match=r"DLA core 0 cannot run 1 of 2 layers \(/head/TopK\)"):
        build_engine(onnx_path, request)
    builder.config.set_device_type.assert_not_called()
    build_engine(onnx_path, BuildRequest(precision="fp16", dla_core=0))
    builder.config.set_device_type.assert_called_once_with(builder.layers[1], builder.trt.DeviceType.GPU)


def test_engine_for_rebuilds_for_a_reexported_onnx(builder: SimpleNamespace, tmp_path: Path) -> None:
    """Defect 8: the recorded engine is reused only for the ONNX it was built from; a static-batch ONNX asked for
    another batch is a clear InvalidArgumentError (bench.make_cases skips such a case with that reason)."""
    onnx_path = _onnx(tmp_path / "m.onnx")
    target = SimpleNamespace(name="m", onnx={"fp32": onnx_path}, onnx_for=lambda precision: onnx_path,
                             input_shape=(-1, 4))  # fmt: skip
    build = builder.trt.Builder.return_value.build_serialized_network
    first = engine_for(target, precision="fp16", batch=2, max_batch=4)
    assert engine_for(target, precision="fp16", batch=4) == first and build.call_count == 1
    _onnx(onnx_path, op="Sigmoid")  # re-exported under the same name
    path, record = engine_for(target, precision="fp16", batch=2)
    assert build.call_count == 2 and record.onnx_sha256 != first[1].onnx_sha256 and path == first[0]
    static = SimpleNamespace(name="s", onnx={}, onnx_for=lambda precision: _onnx(tmp_path / "s.onnx", batch=1),
                             input_shape=(1, 4))  # fmt: skip
    with pytest.raises(InvalidArgumentError, match="static batch of 1.*--dynamic-batch"):
        engine_for(static, precision="fp16", batch=8)
