"""Backends behind one protocol: torch and ONNX Runtime agree, ORT profiling maps to modules, bench statistics."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import registry_sweep
from torch import nn

from edgeconv.backends.base import BackendRunner
from edgeconv.backends.onnxruntime import OnnxRuntimeRunner, parse_ort_profile
from edgeconv.backends.torch import TorchRunner, variant_name
from edgeconv.bench import (
    BenchCase,
    compute_stats,
    environment,
    fidelity_check,
    isa_features,
    isa_label,
    jetson_info,
    measure,
    output_tolerance,
    percentile,
    run_batched,
    wait_until_quiet,
)
from edgeconv.errors import BackendUnavailableError, InputError, InvalidArgumentError
from edgeconv.profile.latency import GraphIndex, breakdown, macs_by_module, op_class, profile_latency


class ShuffleBlock(nn.Module):
    """Conv-BN-ReLU, a pointwise conv, ShuffleNet's channel shuffle, a residual add, pooling and an FC layer."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()),
            nn.Conv2d(8, 8, 1),
        )
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.features[0](x)
        z = self.features[1](y) + y
        b, c, h, w = z.shape
        z = z.view(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)
        return self.fc(z.mean((2, 3)))


@pytest.fixture(scope="module")
def small_model() -> nn.Module:
    torch.manual_seed(0)
    model = ShuffleBlock().eval()
    with torch.no_grad():  # non-trivial BN statistics so folding is exercised
        bn = model.features[0][1]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def small_onnx(small_model: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "small.onnx"
    torch.onnx.export(
        small_model, torch.zeros(1, 3, 16, 16), str(path), dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )  # fmt: skip
    return path


def test_torch_and_onnxruntime_agree(small_model: nn.Module, small_onnx: Path) -> None:
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16), dtype=np.float32)
    with TorchRunner(small_model, threads=1) as t, OnnxRuntimeRunner(small_onnx, threads=1) as o:
        expected = t.run(x)
        got = o.run(x)
    assert got.shape == (3, 10)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # The runner copies the module: the caller's model is untouched (device, dtype, mode).
    assert next(small_model.parameters()).dtype == torch.float32 and not small_model.training


def test_runner_rejects_bad_input(small_onnx: Path) -> None:
    runner = OnnxRuntimeRunner(small_onnx)
    with pytest.raises(InvalidArgumentError, match="not active"):
        runner.run(np.zeros((1, 3, 16, 16), np.float32))
    with runner:
        assert runner.input_shape == (-1, 3, 16, 16)
        with pytest.raises(InputError, match=r"\(-1, 3, 16, 16\)"):
            runner.run(np.zeros((1, 3, 8, 8), np.float32))
        with pytest.raises(InputError, match="float32"):
            runner.run(np.zeros((1, 3, 16, 16), np.float64))


def test_invalid_backend_options(small_model: nn.Module, small_onnx: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="int8"):
        TorchRunner(small_model, precision="int8")
    with pytest.raises(InvalidArgumentError, match="cuda"):
        TorchRunner(small_model, precision="fp16", device="cpu")
    with pytest.raises(InvalidArgumentError, match="graph optimization level"):
        OnnxRuntimeRunner(small_onnx, graph_optimization="max")
    with pytest.raises(InvalidArgumentError, match="device"):
        OnnxRuntimeRunner(small_onnx, device="tpu")


def test_torch_variant_options_are_checked(small_model: nn.Module) -> None:
    assert variant_name() == "eager"
    assert variant_name(compile="default", cuda_graph=True) == "compile+cuda-graph"
    assert variant_name(compile="max-autotune", channels_last=True) == "compile(max-autotune)+channels-last"
    assert TorchRunner(small_model, compile=True).variant() == "compile"
    with pytest.raises(InvalidArgumentError, match="--device cuda"):
        TorchRunner(small_model, input_shape=(1, 3, 16, 16), cuda_graph=True)
    with pytest.raises(InvalidArgumentError, match="fixed input shape"):
        TorchRunner(small_model, input_shape=(-1, 3, 16, 16), device="cuda", cuda_graph=True)
    with pytest.raises(InvalidArgumentError, match="tf32 applies to fp32 on --device cuda"):
        TorchRunner(small_model, tf32=True)
    with pytest.raises(InvalidArgumentError, match="'fastest'.*max-autotune"):
        TorchRunner(small_model, compile="fastest")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_torch_cuda_without_gpu_names_the_fix(small_model: nn.Module) -> None:
    runner = TorchRunner(small_model, input_shape=(1, 3, 16, 16), device="cuda", cuda_graph=True)
    with pytest.raises(BackendUnavailableError, match="sees no CUDA device"):
        runner.__enter__()


def test_torch_channels_last_and_compile_match_eager(small_model: nn.Module) -> None:
    x = np.random.default_rng(2).standard_normal((2, 3, 16, 16), dtype=np.float32)
    with TorchRunner(small_model, threads=1) as eager:
        expected = eager.run(x)
    with TorchRunner(small_model, threads=1, channels_last=True) as nhwc:
        np.testing.assert_allclose(nhwc.run(x), expected, rtol=1e-5, atol=1e-6)
    with TorchRunner(small_model, threads=1, compile=True) as compiled:  # inductor's C++ backend on the CPU
        np.testing.assert_allclose(compiled.run(x), expected, rtol=1e-4, atol=1e-5)


class _Broken(BackendRunner):
    backend = "broken"

    def _activate(self) -> None:
        raise BackendUnavailableError("no such engine here; install it")

    def _deactivate(self) -> None: ...

    def _infer(self, inputs: np.ndarray) -> np.ndarray:
        return inputs


def test_measure_leaves_out_failing_cases_and_runs_checks() -> None:
    log: list[str] = []
    x = np.zeros((1, 1), np.float32)
    cases = [BenchCase(_Broken(), x), BenchCase(_Recorder("A", log), x, {"backend": "a"})]
    with pytest.raises(BackendUnavailableError):  # without a failures list the error propagates
        measure(cases, warmup=0, iterations=2)
    failures: list[str] = []
    results = measure(cases, warmup=0, iterations=2, failures=failures, check=lambda case: {"seen": case.info})
    assert failures == ["broken/cpu/fp32: no such engine here; install it"]
    (result,) = results
    assert result.stats.iterations == 2 and result.row()["check"] == {"seen": {"backend": "a"}}


class _Spinner(BackendRunner):
    """After each run a background thread burns a core for 30 ms, as a spinning thread pool does; records when."""

    backend = "spinner"

    def __init__(self) -> None:
        super().__init__()
        self.spins: list[tuple[float, float]] = []
        self._threads: list[threading.Thread] = []

    def _activate(self) -> None: ...

    def _deactivate(self) -> None:
        for thread in self._threads:
            thread.join()

    def _spin(self) -> None:
        start = time.perf_counter()
        while time.perf_counter() - start < 0.03:
            pass
        self.spins.append((start, time.perf_counter()))

    def _infer(self, inputs: np.ndarray) -> np.ndarray:
        thread = threading.Thread(target=self._spin)
        thread.start()
        self._threads.append(thread)
        return inputs


class _Stamper(BackendRunner):
    backend = "stamper"

    def __init__(self) -> None:
        super().__init__()
        self.starts: list[float] = []

    def _activate(self) -> None: ...

    def _deactivate(self) -> None: ...

    def _infer(self, inputs: np.ndarray) -> np.ndarray:
        self.starts.append(time.perf_counter())
        return inputs


def test_measure_lets_a_spinning_pool_park_before_the_next_engine() -> None:
    spinner, stamper = _Spinner(), _Stamper()
    x = np.zeros((1, 1), np.float32)
    measure([BenchCase(spinner, x), BenchCase(stamper, x)], warmup=0, iterations=4, block=2)
    # the stamper's timed runs (its first run is the cold one, before any spinning) never overlap a spin of the other
    timed = stamper.starts[1:]
    assert len(timed) == 4 and len(spinner.spins) == 5
    for start in timed:
        assert not any(begin <= start < end for begin, end in spinner.spins), (start, spinner.spins)


def test_wait_until_quiet_waits_for_a_busy_thread() -> None:
    stop = time.perf_counter() + 0.05
    thread = threading.Thread(target=lambda: [None for _ in iter(lambda: time.perf_counter() < stop, False)])
    thread.start()
    waited = wait_until_quiet()
    assert time.perf_counter() >= stop and waited >= 0.005
    thread.join()
    assert wait_until_quiet() < 0.05  # a quiet process: one window


class _Doubler(BackendRunner):
    """Outputs 2x its input, one row per image; records the batch sizes it was given."""

    backend = "doubler"

    def __init__(self, scale: float = 2.0) -> None:
        super().__init__()
        self.scale, self.batches = scale, []

    def _activate(self) -> None: ...

    def _deactivate(self) -> None: ...

    def _infer(self, inputs: np.ndarray) -> np.ndarray:
        self.batches.append(len(inputs))
        return self.scale * inputs.reshape(len(inputs), -1)


def test_run_batched_pads_the_last_batch_and_keeps_order() -> None:
    images = np.arange(7 * 3, dtype=np.float32).reshape(7, 3)
    with _Doubler() as runner:
        out = run_batched(runner, images, 3)
    assert runner.batches == [3, 3, 3]  # a static-shape engine only ever sees its own batch
    np.testing.assert_array_equal(out, 2 * images)


def test_fidelity_check_verdicts() -> None:
    assert output_tolerance("fp32") == 1e-4 and output_tolerance("fp32", "eager+tf32") == 1e-2
    assert output_tolerance("fp16") == 1e-2 and output_tolerance("int8") is None
    assert output_tolerance("fp32", "default=bf16") == 8e-2 and output_tolerance("fp32", "f16") == 1e-2
    images = np.random.default_rng(3).standard_normal((6, 10), dtype=np.float32)
    with _Doubler() as exact:
        good = fidelity_check(BenchCase(exact, images[:2], {"precision": "fp32"}), images, 2 * images)
    assert good["passed"] and good["max_rel_error"] == 0.0 and good["top1_agreement"] == 1.0
    with _Doubler(scale=2.001) as off:  # 5e-4 relative: fails FP32's 1e-4, passes FP16's 1e-2
        bad = fidelity_check(BenchCase(off, images[:2], {"precision": "fp32"}), images, 2 * images)
        fp16 = fidelity_check(BenchCase(off, images[:2], {"precision": "fp16"}), images, 2 * images)
    assert not bad["passed"] and bad["max_rel_error"] == pytest.approx(5e-4, rel=1e-3)
    assert fp16["passed"] and fp16["tolerance"] == 1e-2
    assert json.dumps(bad)  # confident agreement of flat logits is None, not NaN: valid JSON


class _OnePixelOff(BackendRunner):
    """Returns its input as class scores per pixel, with the first pixel of the first image ranked in reverse."""

    backend = "one-pixel-off"

    def _activate(self) -> None: ...

    def _deactivate(self) -> None: ...

    def _infer(self, inputs: np.ndarray) -> np.ndarray:
        out = inputs.copy()
        out[0, :, 0, 0] = -out[0, :, 0, 0]
        return out


def test_fidelity_check_of_a_label_map_is_per_pixel() -> None:
    """A label map (N, classes, H, W) is compared pixel by pixel, with the mean IoU of the two maps (not flattened
    into one row of class scores per image)."""
    scores = np.random.default_rng(5).standard_normal((2, 3, 4, 4)).astype(np.float32)
    with _OnePixelOff() as runner:
        check = fidelity_check(BenchCase(runner, scores[:2], {"precision": "int8"}), scores, scores)
    assert check["unit"] == "pixel" and check["images"] == 2 and check["samples"] == 2 * 4 * 4
    assert check["top1_agreement"] == pytest.approx(31 / 32)
    assert 0.8 < check["mean_iou"] < 1.0 and check["passed"] is None  # INT8: judged by the gate, not a tolerance


def test_ort_profile_maps_nodes_to_modules(small_onnx: Path) -> None:
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16), dtype=np.float32)
    with OnnxRuntimeRunner(small_onnx, threads=1, profile=True) as runner:
        for _ in range(6):
            runner.run(x)
        profile = runner.layer_profile(skip_runs=2)
    assert profile is not None and profile.runs == 4
    assert all(layer.mean_ms >= 0 and layer.calls == 1 for layer in profile.layers)
    assert profile.end_to_end_ms > 0
    result = breakdown(profile, GraphIndex.from_onnx(small_onnx), macs_by_module=macs_by_module(small_onnx, batch=2))
    conv_modules = {row.module for row in result.rows if row.op_class == "Conv"}
    # Conv+BN+ReLU (renamed by ORT's layout pass after the fused ReLU's output) maps back to the convolution.
    assert {"features.0.0", "features.1", "fc"} <= conv_modules
    macs = {row.module: row.macs for row in result.rows if row.macs}
    assert macs["features.0.0"] == 2 * 8 * 27 * 16 * 16
    assert macs["fc"] == 2 * 8 * 10
    assert any(row.op_class == "Data movement" and row.op_type == "Transpose" for row in result.rows)
    shares = result.classes()
    assert math.isclose(sum(ms for ms, _ in shares.values()), result.end_to_end_ms, rel_tol=1e-9)
    assert math.isclose(sum(pct for _, pct in shares.values()), 100.0, rel_tol=1e-9)


def test_profile_latency_on_file(small_onnx: Path) -> None:
    result = profile_latency(str(small_onnx), batch=1, warmup=1, runs=3, threads=1)
    assert result.runs == 3 and result.backend == "onnxruntime"
    assert result.by_module()[0]["mean_ms"] >= result.by_module()[-1]["mean_ms"]
    json.dumps(result.to_dict())


def test_parse_ort_profile_known_events() -> None:
    def run(ts: int, dur: int) -> dict:
        return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}

    def node(name: str, ts: int, dur: int, op: str) -> dict:
        return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}

    events = [
        run(0, 100), node("/a/Conv", 10, 50, "Conv"), node("/Transpose", 70, 20, "Transpose"),
        run(200, 60), node("/a/Conv", 210, 30, "Conv"), node("/Transpose", 245, 10, "Transpose"),
        run(300, 40), node("/a/Conv", 305, 20, "Conv"), node("/Transpose", 330, 6, "Transpose"),
        {"cat": "Session", "name": "session_initialization", "ts": 0, "dur": 5},
    ]  # fmt: skip
    profile = parse_ort_profile(events, skip_runs=1)
    times = {layer.name: layer.mean_ms for layer in profile.layers}
    assert times == pytest.approx({"/a/Conv": 0.025, "/Transpose": 0.008})
    assert profile.runs == 2 and profile.end_to_end_ms == pytest.approx(0.05)
    assert profile.gap_ms == pytest.approx(0.05 - 0.033)
    with pytest.raises(InvalidArgumentError, match="skip_runs"):
        parse_ort_profile(events, skip_runs=3)


def test_op_classes() -> None:
    assert [op_class(op) for op in ("Conv", "FusedConv", "Gemm")] == ["Conv"] * 3
    assert [op_class(op) for op in ("Relu", "Add", "HardSwish")] == ["Elementwise"] * 3
    assert [op_class(op) for op in ("Transpose", "Concat", "Split", "Slice", "Reshape", "ReorderOutput")] == [
        "Data movement"
    ] * 6
    assert op_class("GlobalAveragePool") == "Other" and op_class("MaxPool") == "Other"


def test_percentiles_and_stats_on_known_samples() -> None:
    samples = [float(v) for v in range(100, 0, -1)]  # 1..100, unsorted
    assert percentile(samples, 50) == pytest.approx(50.5)
    assert percentile(samples, 90) == pytest.approx(90.1)
    assert percentile(samples, 99) == pytest.approx(99.01)
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    rng = np.random.default_rng(3)
    random = rng.exponential(2.0, 37).tolist()
    for q in (0, 13, 50, 90, 99, 100):
        assert percentile(random, q) == pytest.approx(float(np.percentile(random, q)))
    stats = compute_stats(samples, batch=8, cold_ms=250.0)
    assert (stats.min_ms, stats.max_ms, stats.mean_ms, stats.iterations) == (1.0, 100.0, 50.5, 100)
    assert stats.std_ms == pytest.approx(float(np.std(samples, ddof=1)))
    assert stats.throughput == pytest.approx(8 * 1000 / 50.5)
    assert stats.cold_ms == 250.0
    with pytest.raises(InvalidArgumentError):
        compute_stats([])


class _Recorder(BackendRunner):
    """A real runner whose 'inference' is appending its name to a shared log (for the interleaving order)."""

    backend = "recorder"

    def __init__(self, name: str, log: list[str]) -> None:
        super().__init__()
        self.name, self.log = name, log

    def _activate(self) -> None:
        self.log.append(f"{self.name}:load")

    def _deactivate(self) -> None:
        self.log.append(f"{self.name}:unload")

    def _infer(self, inputs: np.ndarray) -> np.ndarray:
        self.log.append(self.name)
        return inputs


def test_measure_interleaves_round_robin_blocks() -> None:
    log: list[str] = []
    x = np.zeros((2, 1), np.float32)
    cases = [BenchCase(_Recorder("A", log), x, {"backend": "a"}), BenchCase(_Recorder("B", log), x, {"backend": "b"})]
    ticks = iter(range(0, 10**9, 1_000_000))  # every clock read advances 1 ms: each sample is exactly 1 ms
    results = measure(cases, warmup=1, iterations=5, block=2, clock=lambda: next(ticks))
    # load, cold run, warm-up for each; then rounds of 2 rotating the first; the last round finishes the remainder.
    assert log == ["A:load", "A", "A", "B:load", "B", "B", "A", "A", "B", "B", "B", "B", "A", "A", "A", "B",
                   "B:unload", "A:unload"]  # fmt: skip
    for result in results:
        assert result.stats.iterations == 5
        assert result.stats.p50_ms == pytest.approx(1.0) and result.stats.cold_ms == pytest.approx(1.0)
        assert result.row()["batch"] == 2 and result.stats.throughput == pytest.approx(2000.0)
    with pytest.raises(InvalidArgumentError):
        measure(cases, iterations=None, seconds=None)


def test_measure_by_seconds() -> None:
    log: list[str] = []
    ticks = iter(range(0, 10**9, 2_000_000))  # 2 ms per sample
    case = BenchCase(_Recorder("A", log), np.zeros((1, 1), np.float32))
    (result,) = measure([case], warmup=0, iterations=None, seconds=0.02, block=3, clock=lambda: next(ticks))
    assert result.stats.iterations == 12  # 4 blocks of 3 reach 24 ms >= 20 ms
    assert result.stats.mean_ms == pytest.approx(2.0)


def test_environment_record() -> None:
    env = environment()
    assert env["cpu"]["model"] and env["cpu"]["logical_cores"] >= 1
    assert {"torch", "onnxruntime", "onnx", "numpy", "tensorrt", "cuda"} <= set(env["versions"])
    assert env["versions"]["torch"] == torch.__version__.split("+")[0] or env["versions"]["torch"] == torch.__version__
    assert "gpu" in env and "CPUExecutionProvider" in env["onnxruntime_providers"]
    assert isinstance(env["cpu"]["isa"], list)
    json.dumps(env)


def test_isa_features_name_the_kernels_a_cpu_gets() -> None:
    epyc_zen2 = "fpu sse2 avx avx2 fma bmi2".split()
    xeon_spr = "avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8 amx_tile".split()
    assert isa_features(epyc_zen2) == ["avx2"] and isa_label(isa_features(epyc_zen2)) == "avx2"
    assert isa_label(isa_features(xeon_spr)) == "amx"
    assert isa_label(isa_features("avx2 avx512f avx512_vnni".split())) == "avx512-vnni"
    assert isa_label(isa_features("fp asimd asimddp".split())) == "neon-dot" and isa_label([]) == ""


def test_jetson_power_mode_from_files(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "var/lib/nvpmodel").mkdir(parents=True)
    (tmp_path / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic\n")
    (tmp_path / "var/lib/nvpmodel/status").write_text("pmode:0001 fmode:quiet\n")
    (tmp_path / "etc/nvpmodel.conf").write_text(
        "< POWER_MODEL ID=0 NAME=MAXN >\nCPU_ONLINE CORE_0 1\n"
        "< POWER_MODEL ID=1 NAME=15W >\n< POWER_MODEL ID=2 NAME=30W >\n"
    )
    info = jetson_info(tmp_path)
    assert info == {"model": None, "l4t": "36.3.0", "power_mode_id": 1, "power_mode": "15W"}
    assert jetson_info(tmp_path / "nothing") is None


COMPARISON_SET = (
    "mobilenet_v1", "mobilenet_v2", "mobilenet_v2_140", "shufflenet_v1", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5", "shufflenet_v2_x2_0", "mobilenet_v3_large", "mobilenet_v3_small", "efficientnet_b0",
    "resnet18", "resnet50", "repvgg_a0",
)  # fmt: skip


@pytest.mark.parametrize("name", registry_sweep(list(COMPARISON_SET)))  # one per family; the rest under -m slow
def test_ort_breakdown_over_comparison_set(name: str, tmp_path: Path) -> None:
    """Every conv/fc layer ONNX Runtime runs is timed under its PyTorch module and carries its mult-adds, and the
    mult-adds of the timed rows add up to the whole model's (64x64 input to keep CI short)."""
    from edgeconv.profile import profile_onnx
    from edgeconv.zoo import create_model

    model = create_model(name).eval()
    if hasattr(model, "reparameterize"):
        model.reparameterize()  # the deployed (fused) form, as bench/run_bench.py measures it
    folder = tmp_path / name
    folder.mkdir()
    torch.onnx.export(
        model, torch.zeros(1, 3, 64, 64), str(folder / "model.onnx"), dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits"],
    )  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps({"model": name}))
    result = profile_latency(str(folder), runs=1, warmup=0, threads=1)
    conv_rows = [r for r in result.rows if r.op_class == "Conv"]
    assert conv_rows and all(r.module and r.macs > 0 for r in conv_rows), [r.node for r in conv_rows if not r.macs]
    assert sum(r.macs for r in result.rows) == profile_onnx(folder / "model.onnx").macs
    assert not result.notes
    assert sum(pct for _, pct in result.classes().values()) == pytest.approx(100.0)


def test_resolve_artifact_folder_by_graph_precision(small_onnx: Path, tmp_path: Path) -> None:
    """Files are told apart by their graphs (QDQ nodes -> int8), not by their names."""
    import shutil

    import onnx
    from onnx import TensorProto, helper

    from edgeconv.backends.artifacts import resolve_target
    from edgeconv.errors import ArtifactError

    folder = tmp_path / "art"
    folder.mkdir()
    shutil.copy(small_onnx, folder / "model.onnx")
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 16, 16])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3, 16, 16])
    inits = [helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]), helper.make_tensor("z", TensorProto.INT8, [], [0])]
    nodes = [helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["out"])]  # fmt: skip
    graph = helper.make_graph(nodes, "qdq", [x], [y], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(folder / "whatever.onnx"))
    target = resolve_target(str(folder))
    assert target.onnx == {"fp32": folder / "model.onnx", "int8": folder / "whatever.onnx"}
    assert target.input_shape == (-1, 3, 16, 16) and target.batch_shape(4) == (4, 3, 16, 16)
    assert target.module_factory is None  # no manifest naming a zoo model: no torch backend
    with pytest.raises(ArtifactError, match="no fp16 ONNX"):
        target.onnx_for("fp16")


def test_dynamic_size_target_runs_at_a_given_size(tmp_path: Path) -> None:
    """A --dynamic-size artifact is run at the size asked; a fixed one refuses another size in one line."""
    import onnx
    from onnx import TensorProto, helper

    from edgeconv.backends.artifacts import resolve_target

    def write(folder: Path, dims: list[int | str]) -> Path:
        folder.mkdir()
        x = helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)
        y = helper.make_tensor_value_info("out", TensorProto.FLOAT, dims)
        graph = helper.make_graph([helper.make_node("Relu", ["input"], ["out"])], "g", [x], [y])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(folder / "model.onnx"))
        return folder

    dynamic = resolve_target(str(write(tmp_path / "dyn", ["batch", 3, "height", "width"])))
    assert dynamic.dynamic_size
    assert dynamic.batch_shape(2, (96, 128)) == (2, 3, 96, 128)
    with pytest.raises(InvalidArgumentError, match="dynamic height and width"):
        dynamic.batch_shape(1)
    fixed = resolve_target(str(write(tmp_path / "fixed", ["batch", 3, 64, 64])))
    assert not fixed.dynamic_size
    assert fixed.batch_shape(1, (64, 64)) == fixed.batch_shape(1) == (1, 3, 64, 64)
    with pytest.raises(InvalidArgumentError, match="for 64x64 inputs, not 96x96; export it with --dynamic-size"):
        fixed.batch_shape(1, (96, 96))
