"""Latency harness: warm-up, timed iterations (or seconds), device sync, percentiles, and the environment record.

Several configurations measured together are *interleaved*: each round runs a block of iterations of every
configuration in turn (rotating which goes first), so slow drift of the machine (thermal throttling, a neighbour's
load, frequency scaling) hits all of them equally instead of whichever happened to run last.

Each sample is the wall time of one ``runner.run(x)`` (numpy in -> numpy out, host<->device copies included on a GPU)
followed by ``runner.synchronize()``. The first call after the runner is loaded is reported apart as ``cold_ms``
(lazy initialisation, kernel selection, caches) and never enters the statistics.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeconv.backends.base import BackendRunner
from edgeconv.errors import InvalidArgumentError

log = logging.getLogger(__name__)

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class LatencyStats:
    """Statistics of one configuration, in milliseconds per batch; ``throughput`` in images per second."""

    iterations: int
    batch: int
    cold_ms: float | None
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "iterations": self.iterations,
            "cold_ms": self.cold_ms,
            "mean_ms": self.mean_ms,
            "std_ms": self.std_ms,
            "min_ms": self.min_ms,
            "max_ms": self.max_ms,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "throughput": self.throughput,
        }


def percentile(samples: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default, "type 7"): p50 of [1, 2, 3, 4] is 2.5."""
    if not samples:
        raise InvalidArgumentError("no samples to take a percentile of")
    if not 0 <= q <= 100:
        raise InvalidArgumentError(f"percentile {q} must be in [0, 100]")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def compute_stats(samples_ms: Sequence[float], *, batch: int = 1, cold_ms: float | None = None) -> LatencyStats:
    """Statistics of timed samples (ms per batch). ``std`` is the sample standard deviation (n - 1)."""
    if not samples_ms:
        raise InvalidArgumentError("no timed iterations: use at least --iters 1")
    if batch < 1:
        raise InvalidArgumentError(f"batch {batch} must be >= 1")
    values = [float(s) for s in samples_ms]
    n = len(values)
    mean = sum(values) / n
    std = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0
    return LatencyStats(
        iterations=n,
        batch=batch,
        cold_ms=cold_ms,
        mean_ms=mean,
        std_ms=std,
        min_ms=min(values),
        max_ms=max(values),
        p50_ms=percentile(values, 50),
        p90_ms=percentile(values, 90),
        p99_ms=percentile(values, 99),
        throughput=1000.0 * batch / mean if mean > 0 else float("inf"),
    )


@dataclass
class BenchCase:
    """One configuration to time: a runner (not yet active) and the input it runs."""

    runner: BackendRunner
    inputs: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)  # model, backend, precision, batch, device ... for the row

    @property
    def batch(self) -> int:
        return int(self.inputs.shape[0])


@dataclass
class BenchResult:
    case: BenchCase
    stats: LatencyStats
    samples_ms: list[float]
    check: dict[str, Any] | None = None  # what ``measure(check=...)`` returned for this case (fidelity, ...)

    def row(self, env: dict[str, Any] | None = None) -> dict[str, Any]:
        """A flat JSON row: the case's info, ``batch``, the statistics, the check and (optionally) the environment."""
        row: dict[str, Any] = {**self.case.info, "batch": self.case.batch, **self.stats.to_dict()}
        if self.check is not None:
            row["check"] = self.check
        if env is not None:
            row["env"] = env
        return row


def engine_label(row: dict[str, Any]) -> str:
    """A result row's engine for tables: ``onnxruntime``, ``onnxruntime (tensorrt)``, ``torch (compile+cuda-graph)``,
    ``openvino (default=bf16)`` (the device column names cpu/cuda; eager torch is plain ``torch``)."""
    label = row["backend"]
    if row.get("provider") not in (None, "cpu", "cuda"):
        label += f" ({row['provider']})"
    if row.get("variant") not in (None, "eager"):
        label += f" ({row['variant']})"
    return label


def _first_line(exc: BaseException) -> str:
    """An edgeconv error's own line; any other exception (a bug or a library failure) with its type name."""
    from edgeconv.errors import EdgeconvError, first_line

    return first_line(exc) if isinstance(exc, EdgeconvError) else f"{type(exc).__name__}: {first_line(exc)}"


def wait_until_quiet(
    *,
    window_s: float = 0.005,
    busy_fraction: float = 0.1,
    timeout_s: float = 0.5,
    cpu_clock: Callable[[], float] = time.process_time,
) -> float:
    """Sleep in ``window_s`` steps until one window in which this process used less than ``busy_fraction`` of a core:
    spinning worker threads have parked. Gives up after ``timeout_s`` (a thread that never parks). Returns the seconds
    waited."""
    start = time.perf_counter()
    while True:
        cpu, wall = cpu_clock(), time.perf_counter()
        time.sleep(window_s)
        now = time.perf_counter()
        if cpu_clock() - cpu < busy_fraction * (now - wall) or now - start >= timeout_s:
            return now - start


def _time_one(runner: BackendRunner, inputs: np.ndarray, clock: Callable[[], int]) -> float:
    start = clock()
    runner.run(inputs)
    runner.synchronize()
    return (clock() - start) / 1e6


# Beyond these a run is a mistake, not a measurement (a NaN or infinite --seconds never ends; 10^12 iterations neither).
MAX_ITERATIONS = 10_000_000
MAX_WARMUP = 1_000_000
MAX_SECONDS = 86_400.0


def check_timing(*, warmup: int, iterations: int | None, seconds: float | None, block: int) -> None:
    """The timing options of :func:`measure`, checked before anything is loaded, exported or run."""
    if (iterations is None) == (seconds is None):
        raise InvalidArgumentError("give exactly one of iterations (--iters) or seconds (--seconds)")
    if iterations is not None and not 1 <= iterations <= MAX_ITERATIONS:
        raise InvalidArgumentError(f"--iters {iterations} is not valid; use 1..{MAX_ITERATIONS:,}, e.g. 100")
    if seconds is not None and not 0 < seconds <= MAX_SECONDS:  # also False for NaN
        raise InvalidArgumentError(f"--seconds {seconds} is not valid; use a time in (0, {MAX_SECONDS:g}], e.g. 10")
    if not 0 <= warmup <= MAX_WARMUP:
        raise InvalidArgumentError(f"--warmup {warmup} is not valid; use 0..{MAX_WARMUP:,}, e.g. 10")
    if not 1 <= block <= MAX_WARMUP:
        raise InvalidArgumentError(f"--block {block} is not valid; use 1..{MAX_WARMUP:,}, e.g. 10")


def measure(
    cases: Sequence[BenchCase],
    *,
    warmup: int = 10,
    iterations: int | None = 100,
    seconds: float | None = None,
    block: int = 10,
    min_iterations: int = 5,
    clock: Callable[[], int] = time.perf_counter_ns,
    progress: Callable[[str], None] | None = None,
    check: Callable[[BenchCase], dict[str, Any]] | None = None,
    failures: list[str] | None = None,
    settle: bool = True,
) -> list[BenchResult]:
    """Time every case, interleaved in round-robin blocks of ``block`` iterations.

    Either ``iterations`` per case, or ``seconds``: rounds go on until every case has spent that many seconds in
    timed iterations (and has at least ``min_iterations``). All runners are active at once for the whole
    measurement; each one's cold (first) run and ``warmup`` runs happen before any timed round.

    Before each block, with ``settle`` and several cases, the harness waits until this process is quiet
    (:func:`wait_until_quiet`): the thread pool of the engine that ran the previous block may still be spinning (ONNX
    Runtime's workers spin for tens of milliseconds after a run, OpenMP's for several), and on a small CPU that spin
    would be charged to the next engine's iterations instead of its own (on 2 cores it once made an ONNX Runtime INT8
    row read 7.2 ms instead of 3.0 ms).

    ``check(case)`` runs after the timed rounds, while the runner is still loaded (e.g. the fidelity of its outputs);
    its result is ``BenchResult.check``. With a ``failures`` list, a case whose loading, cold run or check raises is
    left out and ``"<runner>: <error>"`` appended there (a benchmark driver keeps going past one broken configuration,
    e.g. a ``torch.compile`` failure); without one, the error propagates.
    """
    if not cases:
        raise InvalidArgumentError("nothing to benchmark")
    check_timing(warmup=warmup, iterations=iterations, seconds=seconds, block=block)

    from contextlib import ExitStack

    loaded: list[BenchCase] = []
    colds: list[float] = []
    with ExitStack() as stack:
        for case in cases:
            if progress:
                progress(f"loading {case.runner.describe()}")
            try:
                stack.enter_context(case.runner)
                cold = _time_one(case.runner, case.inputs, clock)
                for _ in range(warmup):
                    case.runner.run(case.inputs)
                case.runner.synchronize()
            except Exception as exc:
                if failures is None:
                    raise
                failures.append(f"{case.runner.describe()}: {_first_line(exc)}")
                continue
            loaded.append(case)
            colds.append(cold)
        cases = loaded
        samples: list[list[float]] = [[] for _ in cases]

        def done(i: int) -> bool:
            if iterations is not None:
                return len(samples[i]) >= iterations
            assert seconds is not None  # narrowed above; keeps mypy happy
            return sum(samples[i]) >= seconds * 1000.0 and len(samples[i]) >= min_iterations

        round_index = 0
        while not all(done(i) for i in range(len(cases))):
            order = [(round_index + k) % len(cases) for k in range(len(cases))]
            for i in order:
                if done(i):
                    continue
                todo = block if iterations is None else min(block, iterations - len(samples[i]))
                runner, inputs = cases[i].runner, cases[i].inputs
                if settle and len(cases) > 1:
                    wait_until_quiet()
                for _ in range(todo):
                    samples[i].append(_time_one(runner, inputs, clock))
            round_index += 1
            if progress:
                progress(f"round {round_index}: " + ", ".join(str(len(s)) for s in samples) + " iterations")
        results = []
        for case, s, cold in zip(cases, samples, colds, strict=True):
            checked = None
            if check is not None:
                try:
                    checked = check(case)
                except Exception as exc:
                    if failures is None:
                        raise
                    failures.append(f"{case.runner.describe()}: {_first_line(exc)}")
                    continue
            results.append(BenchResult(case, compute_stats(s, batch=case.batch, cold_ms=cold), s, checked))
    return results


# ---------------------------------------------------------------------------------------------------------------
# Environment record (files and library calls only: no shell-outs)
# ---------------------------------------------------------------------------------------------------------------
def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def cpu_info() -> dict[str, Any]:
    text = _read("/proc/cpuinfo") or ""
    model = None
    for key in ("model name", "Model", "Hardware", "cpu model"):
        match = re.search(rf"^{key}\s*:\s*(.+)$", text, re.MULTILINE)
        if match:
            model = match.group(1).strip()
            break
    blocks = (
        dict(re.findall(r"^(physical id|core id)\s*:\s*(\S+)", part, re.MULTILINE)) for part in text.split("\n\n")
    )
    physical = {(block.get("physical id"), block.get("core id")) for block in blocks if block}
    info: dict[str, Any] = {
        "model": model or platform.processor() or platform.machine(),
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": len(physical) or None,
    }
    if hasattr(os, "sched_getaffinity"):
        info["usable_cores"] = len(os.sched_getaffinity(0))
    governor = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    if governor:
        info["governor"] = governor.strip()
    if hasattr(os, "getloadavg"):
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    flags = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", text, re.MULTILINE)
    info["isa"] = isa_features(flags.group(1).split() if flags else [])
    return info


# Instruction-set features that decide which integer and bf16 kernels the engines use (VNNI: int8 dot products;
# AVX512_BF16 / AMX: OpenVINO's default bf16): the same CPU model name covers machines with and without them.
ISA_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "asimddp", "sve")


def isa_features(flags: Sequence[str]) -> list[str]:
    """The :data:`ISA_FEATURES` among /proc/cpuinfo's flags, in that order."""
    present = set(flags)
    return [feature for feature in ISA_FEATURES if feature in present]


def isa_label(isa: Sequence[str]) -> str:
    """The widest vector/matrix extension, for a results file name: ``amx``, ``avx512-bf16``, ``avx512-vnni``,
    ``avx512``, ``avx2`` ... (empty when unknown)."""
    for feature, label in (("amx_bf16", "amx"), ("avx512_bf16", "avx512-bf16"), ("avx512_vnni", "avx512-vnni"),
                           ("avx512f", "avx512"), ("avx_vnni", "avx-vnni"), ("avx2", "avx2"), ("sve", "sve"),
                           ("asimddp", "neon-dot")):  # fmt: skip
        if feature in isa:
            return label
    return ""


def _version(module: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        return None


# Where an NVIDIA GPU can be: a desktop/server driver, a Jetson (L4T), WSL's GPU paravirtualization device.
_NVIDIA_MARKERS = ("/proc/driver/nvidia/version", "/etc/nv_tegra_release", "/dev/dxg")


def _torch_for_record() -> Any:
    """torch for the environment record (GPU name and memory, CUDA build, threads): the imported module where a torch
    row ran or an NVIDIA GPU may be, else None. Elsewhere importing it (seconds on a small CPU) would add nothing, and
    ``edgeconv bench ARTIFACT`` with ONNX Runtime rows runs without torch."""
    if "torch" not in sys.modules and not any(os.path.exists(path) for path in _NVIDIA_MARKERS):
        return None
    try:
        import torch
    except ImportError:
        return None
    return torch


def gpu_info() -> dict[str, Any] | None:
    """GPU name, capability, memory and driver (torch + /proc/driver/nvidia/version), or None without a GPU."""
    driver_text = _read("/proc/driver/nvidia/version")
    driver = None
    if driver_text:
        match = re.search(r"Kernel Module(?: for \S+)?\s+([\d.]+)", driver_text)
        driver = match.group(1) if match else driver_text.splitlines()[0].strip()
    torch = _torch_for_record()
    if torch is not None and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return {
            "name": props.name,
            "compute_capability": f"{props.major}.{props.minor}",
            "memory_gb": round(props.total_memory / 2**30, 1),
            "count": torch.cuda.device_count(),
            "driver": driver,
            "cudnn": torch.backends.cudnn.version(),
            **gpu_state(),
        }
    if driver:
        return {"name": None, "driver": driver}
    return None


def environment_line(env: dict[str, Any], source: str = "") -> str:
    """One line naming where figures were measured: CPU (cores, load), GPU and driver, library versions."""
    cpu, gpu, versions = env.get("cpu") or {}, env.get("gpu"), env.get("versions") or {}
    isa = f", {' '.join(cpu['isa'])}" if cpu.get("isa") else ""
    parts = [f"CPU {cpu.get('model')} ({cpu.get('usable_cores')} usable cores{isa}, load {cpu.get('load_avg_1m')})"]
    if gpu:
        parts.append(f"GPU {gpu.get('name')} (driver {gpu.get('driver')})")
    parts.append(", ".join(f"{k} {v}" for k, v in versions.items() if v))
    return (f"{source}: " if source else "") + "; ".join(parts)


def gpu_state(index: int = 0) -> dict[str, Any]:
    """Clocks (MHz), power limit, temperature and utilisation of GPU ``index`` from NVML (``nvidia-ml-py``, a
    library call, not nvidia-smi); empty where NVML is not installed or not answering."""
    try:
        import pynvml
    except ImportError:
        return {}
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        state = {
            "driver": str(pynvml.nvmlSystemGetDriverVersion()),
            "sm_clock_mhz": pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM),
            "mem_clock_mhz": pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM),
            "max_sm_clock_mhz": pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM),
            "max_mem_clock_mhz": pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM),
            "power_limit_w": pynvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000.0,
            "temperature_c": pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU),
            "utilization_pct": pynvml.nvmlDeviceGetUtilizationRates(handle).gpu,
        }
        pynvml.nvmlShutdown()
    except pynvml.NVMLError as exc:  # a container without NVML access, an old driver
        log.info("NVML: %s", exc)
        return {}
    return state


def jetson_info(root: str | os.PathLike[str] = "/") -> dict[str, Any] | None:
    """L4T release and nvpmodel power mode, read from files under ``root``.

    /etc/nv_tegra_release (L4T), /var/lib/nvpmodel/status (``pmode:0002``), /etc/nvpmodel.conf (mode names).
    """
    base = Path(root)

    def read(relative: str) -> str | None:
        return _read(str(base / relative))

    release = read("etc/nv_tegra_release")
    model = read("proc/device-tree/model")
    if release is None and not (model and ("jetson" in model.lower() or "nvidia" in model.lower())):
        return None
    info: dict[str, Any] = {"model": model.strip("\x00\n ") if model else None}
    if release:
        match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", release)
        info["l4t"] = f"{match.group(1)}.{match.group(2)}" if match else release.splitlines()[0].strip()
    status = read("var/lib/nvpmodel/status")  # e.g. "pmode:0002 fmode:quiet"
    mode_id = None
    if status:
        match = re.search(r"pmode:\s*(\d+)", status)
        mode_id = int(match.group(1)) if match else None
    info["power_mode_id"] = mode_id
    conf = read("etc/nvpmodel.conf") or ""
    names = {int(i): n for i, n in re.findall(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=([^\s>]+)", conf)}
    info["power_mode"] = names.get(mode_id) if mode_id is not None else None
    return info


def environment() -> dict[str, Any]:
    """Where a number was measured: CPU, GPU and driver, library versions, Jetson power mode."""
    env: dict[str, Any] = {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "cpu": cpu_info(),
        "gpu": gpu_info(),
        "versions": {
            "edgeconv": _version("edgeconv"),
            "numpy": np.__version__,
            "torch": _version("torch"),
            "onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu"),
            "onnx": _version("onnx"),
            "tensorrt": None,
            "cuda": None,
        },
    }
    try:
        from edgeconv.backends.tensorrt import tensorrt_version

        env["versions"]["tensorrt"] = tensorrt_version()
    except ImportError:
        pass
    torch = _torch_for_record()
    if torch is not None:
        env["versions"]["cuda"] = torch.version.cuda
        env["torch_threads"] = torch.get_num_threads()
    try:
        import onnxruntime

        env["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        pass
    jetson = jetson_info()
    if jetson:
        env["jetson"] = jetson
    return env


# ---------------------------------------------------------------------------------------------------------------
# Cases for a target: backends x precisions x batches
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CaseOptions:
    device: str = "cpu"
    threads: int | None = None
    ort_provider: str | None = None  # cpu / cuda / tensorrt; None: from device
    graph_optimization: str = "all"
    torch_compile: bool | str = False  # True: inductor's default mode; or a mode name (edgeconv.backends.torch)
    cuda_graph: bool = False  # torch and native TensorRT: replay a captured CUDA graph
    channels_last: bool = False  # torch
    tf32: bool = False  # torch fp32 on CUDA: allow TF32 convolutions / matmuls (PyTorch's conv default)
    # openvino: inference precision hints to run, None = OpenVINO's default for the device (bf16 on CPUs that have it)
    openvino_precisions: tuple[str | None, ...] = (None,)
    openvino_device: str = "CPU"
    seed: int = 0


def make_cases(
    target: Any,
    *,
    backends: Sequence[str],
    precisions: Sequence[str],
    batches: Sequence[int],
    options: CaseOptions = CaseOptions(),
    size: tuple[int, int] | None = None,
) -> tuple[list[BenchCase], list[str]]:
    """Runners (not yet active) for every backend x precision x batch; combinations a backend cannot run are skipped
    with the reason (second return value). ``target`` is an ``edgeconv.backends.artifacts.Target``; ``size`` (H, W)
    runs a dynamic-size artifact (``--dynamic-size``) at that input size."""
    from edgeconv.backends.base import BACKENDS, PRECISIONS, check_choice
    from edgeconv.errors import ArtifactError, CudaCallError

    cases: list[BenchCase] = []
    skipped: list[str] = []
    module = None
    for backend in backends:
        check_choice("backend", backend, BACKENDS)
        for precision in precisions:
            check_choice("precision", precision, PRECISIONS)
            for batch in batches:
                info: dict[str, Any] = {
                    "model": target.name,
                    "backend": backend,
                    "precision": precision,
                    "device": "cuda" if backend == "tensorrt" else options.device,
                    "threads": options.threads,
                }
                try:
                    shape = target.batch_shape(batch, size)
                    if size is not None:
                        info["input_size"] = f"{shape[2]}x{shape[3]}"
                    x = np.random.default_rng(options.seed).standard_normal(shape, dtype=np.float32)
                    runner: BackendRunner
                    if backend == "torch":
                        if target.module_factory is None:
                            raise ArtifactError(
                                f"{target.name}: the torch backend needs a zoo model (the artifact's manifest names "
                                "none); benchmark a zoo name instead"
                            )
                        if module is None:
                            module = target.module_factory()
                        runner = torch_runner(module, shape, precision, options)
                        info["variant"] = runner.variant()
                    elif backend == "onnxruntime":
                        if ort_lowers_fp16(precision, options) and "fp16" not in target.onnx:
                            path = target.onnx_for("fp32")
                        else:
                            path = target.onnx_for(precision)
                        runner = onnxruntime_runner(path, precision, options)
                        info["provider"] = runner.provider
                        info["onnx"] = Path(path).name
                    elif backend == "openvino":
                        for case in _openvino_cases(target, precision, shape, x, info, options):
                            case.runner.label = f"{target.name} b{batch}"
                            cases.append(case)
                        continue
                    else:
                        from edgeconv.backends.tensorrt import TensorRTRunner, engine_for

                        if target.dynamic_size:
                            raise ArtifactError(
                                "engines are built for the batch range only; export the model at this input size "
                                "without --dynamic-size for a TensorRT engine"
                            )
                        engine_path, record = engine_for(
                            target, precision=precision, batch=batch, max_batch=max(batches)
                        )
                        runner = TensorRTRunner(engine_path, record, cuda_graph=options.cuda_graph)
                        info["engine"] = engine_path.name
                except (InvalidArgumentError, ArtifactError, CudaCallError) as exc:
                    skipped.append(f"{backend}/{precision}/batch {batch}: {exc}")
                    continue
                runner.label = f"{target.name} b{batch}"
                cases.append(BenchCase(runner=runner, inputs=x, info=info))
    return cases, skipped


def torch_runner(module: Any, shape: tuple[int, ...], precision: str, options: CaseOptions) -> Any:
    """The torch backend's runner for ``options`` (its constructor checks the combination)."""
    from edgeconv.backends.torch import TorchRunner

    return TorchRunner(
        module,
        input_shape=shape,
        device=options.device,
        precision=precision,
        compile=options.torch_compile,
        cuda_graph=options.cuda_graph,
        channels_last=options.channels_last,
        tf32=options.tf32 and precision == "fp32",
        threads=options.threads,
    )


def ort_lowers_fp16(precision: str, options: CaseOptions) -> bool:
    """ONNX Runtime's TensorRT execution provider runs an FP32 file at fp16 itself (``trt_fp16_enable``)."""
    return (options.ort_provider or options.device) == "tensorrt" and precision == "fp16"


def onnxruntime_runner(path: str | Path, precision: str, options: CaseOptions) -> Any:
    """The onnxruntime backend's runner for ``options`` (its constructor checks the combination)."""
    from edgeconv.backends.onnxruntime import OnnxRuntimeRunner

    return OnnxRuntimeRunner(
        path,
        device=options.device,
        precision=precision,
        provider=options.ort_provider or options.device,
        threads=options.threads,
        graph_optimization=options.graph_optimization,
    )


def openvino_runner(
    path: str | Path,
    precision: str,
    options: CaseOptions,
    hint: str | None = None,
    shape: tuple[int, ...] | None = None,
) -> Any:
    """The openvino backend's runner for ``options`` (its constructor checks the combination)."""
    from edgeconv.backends.openvino import OpenVINORunner

    return OpenVINORunner(
        path, precision=precision, device=options.device, ov_device=options.openvino_device,
        inference_precision=hint, input_shape=shape, threads=options.threads,
    )  # fmt: skip


def _openvino_cases(
    target: Any, precision: str, shape: tuple[int, ...], x: np.ndarray, info: dict[str, Any], options: CaseOptions
) -> list[BenchCase]:
    """One OpenVINO case per inference precision: OpenVINO's default (hint None) is named by what it is on this
    device, and hints that come to the same precision are measured once, under the first one asked for (``f32`` and
    the default on a CPU without bf16: one case, ``f32``)."""
    from edgeconv.backends.openvino import default_inference_precision

    path = target.onnx_for(precision)
    default = default_inference_precision(options.openvino_device)
    hints: dict[str, str | None] = {}  # effective precision -> the first hint that asks for it
    for hint in options.openvino_precisions:
        hints.setdefault(hint or default, hint)
    cases = []
    for hint in hints.values():
        runner = openvino_runner(path, precision, options, hint, shape)
        variant = hint or f"default={default}"
        cases.append(BenchCase(runner, x, {**info, "variant": variant, "onnx": Path(path).name,
                                           "ov_device": options.openvino_device}))  # fmt: skip
    return cases


# ---------------------------------------------------------------------------------------------------------------
# Fidelity of a case's outputs: the reference is the PyTorch FP32 model on the CPU, on real photos
# ---------------------------------------------------------------------------------------------------------------
def fidelity_images(preprocessing: Any, crops: int, *, seed: int = 0) -> np.ndarray:
    """The export check's photos plus ``crops`` random crops of the held-out photos in ``calibration/eval`` (never
    used to calibrate), through ``preprocessing`` (a ``quantize.calibration.Preprocessing``: the one that calibrated
    and deploys the model): ``(N, C, H, W)`` float32; for a clip model's, clips panning across them,
    ``(N, C, T, H, W)``."""
    from edgeconv.data import validation_images
    from edgeconv.quantize.calibration import random_crops, split_calibration_folder

    photos = np.stack([preprocessing(image) for image in validation_images()])
    if crops <= 0:
        return photos
    held_out = [image for _, image in split_calibration_folder().evaluation.images]
    extra = random_crops(held_out, crops, preprocessing, seed=seed + 1_000_003)
    return np.concatenate([photos, extra]).astype(np.float32)


def target_preprocessing(target: Any, input_size: Sequence[int]) -> Any:
    """How a benchmark target's inputs are preprocessed, at ``input_size`` ((C, H, W), a clip's (C, T, H, W)): an
    artifact's manifest entry, read as the runtime reads it and without torch (on a board the zoo may not import);
    else the zoo spec's; else, for a bare ONNX file, ImageNet's statistics with its centre crop from 96 pixels up
    (whole images below: CIFAR-like inputs)."""
    from edgeconv.preprocess import IMAGENET_MEAN, IMAGENET_STD
    from edgeconv.quantize.calibration import Preprocessing

    entry = (target.manifest or {}).get("preprocessing")
    if entry:
        return Preprocessing.from_manifest(entry, input_size)
    if target.zoo_name is not None:
        from edgeconv.zoo import get_spec

        return Preprocessing.from_spec(get_spec(target.zoo_name), input_size=tuple(input_size[-2:]))
    channels, *frames, height, width = (int(v) for v in input_size)
    clip = {"frames": frames[0], "clip_format": "rgb"} if frames else {}
    ratio = 0.875 if height >= 96 else 1.0
    return Preprocessing((channels, height, width), IMAGENET_MEAN, IMAGENET_STD, ratio, "bilinear", **clip)


def target_reference(
    target: Any, crops: int, size: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    """Fidelity images for a benchmark target (at ``size``, (H, W), for a dynamic-size one) and the FP32 outputs
    every row is compared with: ONNX Runtime CPU on the artifact's FP32 ONNX (checked against PyTorch at export,
    1e-4), else the PyTorch model on the CPU."""
    from edgeconv.backends.onnxruntime import OnnxRuntimeRunner
    from edgeconv.errors import ArtifactError

    chw = (target.input_shape[1], *size) if size is not None else tuple(target.input_shape[1:])
    if any(d < 0 for d in chw):
        raise InvalidArgumentError(f"{target.name} has a dynamic input size {target.input_shape}: give the size to run")
    images = fidelity_images(target_preprocessing(target, chw), crops)
    if "fp32" in target.onnx:
        with OnnxRuntimeRunner(target.onnx["fp32"]) as runner:
            fixed = runner.input_shape is not None and runner.input_shape[0] > 0
            # 16 at a time: a batch of 200 label maps at 512x512 takes gigabytes
            logits = run_batched(runner, images, runner.input_shape[0] if fixed else min(16, len(images)))
        return images, logits, f"ONNX Runtime CPU, FP32 ({Path(target.onnx['fp32']).name})"
    if target.module_factory is not None:
        import torch

        module = target.module_factory().eval()
        with torch.inference_mode():  # in chunks: a few hundred 224x224 images at once take gigabytes
            logits = np.concatenate(
                [module(torch.from_numpy(images[i : i + 16])).float().numpy() for i in range(0, len(images), 16)]
            )
        return images, logits, "PyTorch FP32 on the CPU"
    raise ArtifactError(f"{target.name}: no FP32 model to compare with; bench with --no-fidelity")


@dataclass(frozen=True)
class Gate:
    """What a row's fidelity must reach to be recommended: the artifact's INT8 gate, or edgeconv's default."""

    min_agreement: float
    min_confident: float
    source: str

    @classmethod
    def of(cls, manifest: dict[str, Any] | None) -> Gate:
        from edgeconv.quantize.fidelity import DEFAULT_MIN_AGREEMENT

        gate = ((manifest or {}).get("int8") or {}).get("gate") or {}
        if gate:
            return cls(float(gate.get("min_agreement", DEFAULT_MIN_AGREEMENT)),
                       float(gate.get("min_confident_agreement") or 0.0), "the artifact's INT8 gate")  # fmt: skip
        return cls(DEFAULT_MIN_AGREEMENT, 0.0, "edgeconv's default INT8 gate")

    def passes(self, check: dict[str, Any] | None) -> bool | None:
        """The INT8 gate's own rule (:func:`edgeconv.quantize.fidelity.meets_gate`) on a row's fidelity check; None
        without one."""
        from dataclasses import fields

        from edgeconv.quantize.fidelity import FidelityReport

        if not check:
            return None
        measured = {f.name: check[f.name] for f in fields(FidelityReport) if f.name in check}  # figures, no gate
        return bool(FidelityReport(**measured).judged(self.min_agreement, self.min_confident))  # truthy: passed

    def describe(self) -> str:
        confident = f", >= {self.min_confident:.1%} where FP32 is confident" if self.min_confident else ""
        return f"top-1 agreement >= {self.min_agreement:.1%}{confident} ({self.source})"


def recommend(rows: Sequence[dict[str, Any]], gate: Gate) -> dict[int, dict[str, Any]]:
    """Per batch size, the fastest row (p50) whose fidelity passes ``gate``; batches where none passes are absent."""
    best: dict[int, dict[str, Any]] = {}
    for row in rows:
        if gate.passes(row.get("check")) and (row["batch"] not in best or row["p50_ms"] < best[row["batch"]]["p50_ms"]):
            best[row["batch"]] = row
    return best


def run_batched(runner: BackendRunner, images: np.ndarray, batch: int) -> np.ndarray:
    """Outputs of ``images`` through an active runner in batches of exactly ``batch`` (the last one padded by
    repeating its images: static-shape engines and CUDA graphs take no other size)."""
    outputs = []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        filled = np.concatenate([chunk, images[: batch - len(chunk)]]) if len(chunk) < batch else chunk
        outputs.append(runner.run(np.ascontiguousarray(filled))[: len(chunk)])
    return np.concatenate(outputs)


BF16_TOLERANCE = 8e-2  # FP16's 1e-2 scaled by bf16's 3 fewer mantissa bits (8-bit vs 11-bit significand)


def output_tolerance(precision: str, variant: str | None = None) -> float | None:
    """Max relative error a configuration must stay within: the export check's FP32 / FP16 tolerances, by the
    arithmetic the row actually runs (TF32 and OpenVINO's f16 have FP16's 10-bit mantissa; bf16 gets
    :data:`BF16_TOLERANCE`). INT8 has none (its gate is top-1 agreement)."""
    from edgeconv.compare import FP16_TOLERANCE, FP32_TOLERANCE

    variant = variant or ""
    if precision == "int8":
        return None
    if "bf16" in variant:
        return BF16_TOLERANCE
    if precision == "fp32" and "tf32" not in variant and "f16" not in variant:
        return FP32_TOLERANCE
    return FP16_TOLERANCE


def fidelity_check(case: BenchCase, images: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """A case's outputs on ``images`` against ``reference`` (CPU FP32 logits of the same images): the export check's
    tolerance verdict (max relative error, top-1 except near ties) and the INT8 gate's agreement figures."""
    from edgeconv.compare import compare_outputs
    from edgeconv.quantize.fidelity import compare_logits

    outputs = run_batched(case.runner, images, case.batch)
    if reference.ndim != 4:  # class scores; a label map (N, classes, H, W) is compared pixel by pixel
        outputs, reference = outputs.reshape(len(images), -1), reference.reshape(len(images), -1)
    tolerance = output_tolerance(case.info.get("precision", "fp32"), case.info.get("variant"))
    comparison = compare_outputs(reference, outputs, tolerance if tolerance is not None else float("inf"))
    report = compare_logits(reference, outputs).as_dict()
    report = {k: None if isinstance(v, float) and v != v else v for k, v in report.items()}  # NaN -> null in JSON
    return {
        "samples": len(images),
        "max_abs_diff": comparison.max_abs_diff,
        "max_rel_error": comparison.max_rel_error,
        "tolerance": tolerance,
        "passed": bool(comparison) if tolerance is not None else None,
        "top1_disagreements": comparison.disagreements,
        "near_ties": comparison.near_ties,
        **report,
    }
