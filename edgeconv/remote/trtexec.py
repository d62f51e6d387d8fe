"""Boards with JetPack but without edgeconv: build and time engines with NVIDIA's ``trtexec``.

The build flags come from :func:`edgeconv.backends.tensorrt.plan_build`, the same plan the Python-API build uses, so a
trtexec engine and an edgeconv engine of one request differ in nothing but the tool. The timing flags are the ones
NVIDIA's TensorRT developer guide ("trtexec", "Benchmarking Network") and trtexec's own warnings
(``samples/common/sampleReporting.cpp``) recommend for stable figures: ``--useCudaGraph`` (enqueue time out of the
way), ``--useSpinWait`` (no sleep-wake jitter in the host sync), and ``--noDataTransfers`` only when the row says so:
by default the row times host-to-device, compute and device-to-host, as edgeconv's own runner does.

``--exportTimes`` writes one JSON object per timed iteration (``sampleReporting.cpp``: ``startEnqMs`` ... ``h2dMs``,
``computeMs``, ``d2hMs``, ``latencyMs``); TensorRT 8.5 writes its warm-up iterations too, which
:func:`parse_export_times` drops the way trtexec's own report does (``startComputeMs`` before the warm-up time).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgeconv.backends.tensorrt import BuilderPlan, TrtVersion
from edgeconv.errors import InvalidArgumentError

WARMUP_MS = 500
# Compute capability of the Jetson GPUs by SoC (device tree ``nvidia,tegraNNN``): engines are named after it.
SOC_COMPUTE_CAPABILITY = {"tegra234": "8.7", "tegra194": "7.2", "tegra186": "6.2", "tegra210": "5.3"}


def shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(int(d)) for d in shape)


def build_flags(
    plan: BuilderPlan, *, onnx_path: str, engine_path: str, version: TrtVersion, skip_inference: bool = True
) -> list[str]:
    """trtexec arguments that build ``plan`` from ``onnx_path`` into ``engine_path``."""
    flags = [f"--onnx={onnx_path}", f"--saveEngine={engine_path}"]
    if "FP16" in plan.builder_flags:
        flags.append("--fp16")
    if "INT8" in plan.builder_flags:
        flags.append("--int8")
    if "STRONGLY_TYPED" in plan.network_flags:
        flags.append("--stronglyTyped")
    for pool, size in plan.memory_pools:
        flags.append(f"--memPoolSize={pool.lower()}:{size >> 20}")  # MiB: the unit of 8.5 and the default of 10.x
    for profile in plan.profiles:
        flags += [
            f"--minShapes={profile.input_name}:{shape_text(profile.min)}",
            f"--optShapes={profile.input_name}:{shape_text(profile.opt)}",
            f"--maxShapes={profile.input_name}:{shape_text(profile.max)}",
        ]
    if plan.optimization_level is not None:
        flags.append(f"--builderOptimizationLevel={plan.optimization_level}")
    if plan.dla_core is not None:
        flags.append(f"--useDLACore={plan.dla_core}")
        if "GPU_FALLBACK" in plan.builder_flags:
            flags.append("--allowGPUFallback")
    flags.append("--profilingVerbosity=detailed")
    if skip_inference:
        # 8.6 renamed --buildOnly to --skipInference; 8.5 (JetPack 5.1) knows only the old name.
        flags.append("--skipInference" if version.at_least(8, 6) else "--buildOnly")
    return flags


@dataclass(frozen=True)
class TimingFlags:
    flags: list[str]
    data_transfers: bool
    cuda_graph: bool
    warmup_ms: int
    metric: str  # the per-iteration field of --exportTimes that becomes the row's samples


def timing_flags(
    *,
    engine_path: str,
    times_path: str,
    input_name: str,
    shape: Sequence[int] | None,
    iterations: int | None,
    seconds: float | None,
    data_transfers: bool = True,
    cuda_graph: bool = True,
    dla: bool = False,
) -> TimingFlags:
    """trtexec arguments that time ``engine_path`` at ``shape`` (None: a static engine) and export every iteration."""
    if (iterations is None) == (seconds is None):
        raise InvalidArgumentError("give trtexec exactly one of iterations or seconds")
    graph = cuda_graph and not dla  # trtexec: "CUDA graphs and DLA offloading are not simultaneously supported"
    flags = [f"--loadEngine={engine_path}", f"--exportTimes={times_path}", f"--warmUp={WARMUP_MS}", "--useSpinWait"]
    if shape is not None:
        flags.append(f"--shapes={input_name}:{shape_text(shape)}")
    if graph:
        flags.append("--useCudaGraph")
    if not data_transfers:
        flags.append("--noDataTransfers")
    if iterations is not None:
        flags += [f"--iterations={iterations}", "--duration=0"]
    else:
        flags += ["--iterations=1", f"--duration={max(1, round(seconds or 0))}"]
    metric = "latencyMs" if data_transfers else "computeMs"
    return TimingFlags(flags, data_transfers, graph, WARMUP_MS, metric)


def parse_export_times(text: str, *, metric: str = "latencyMs", warmup_ms: float | None = None) -> list[float]:
    """Per-iteration milliseconds from an ``--exportTimes`` file; iterations that started computing before
    ``warmup_ms`` are warm-up (TensorRT 8.5 exports them, later versions do not)."""
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(f"trtexec --exportTimes output is not JSON ({exc})") from None
    if not isinstance(entries, list):
        raise InvalidArgumentError("trtexec --exportTimes output is not a list of iterations")
    samples = []
    for entry in entries:
        if not isinstance(entry, dict) or metric not in entry:
            raise InvalidArgumentError(f"trtexec --exportTimes entry lacks {metric!r}: {str(entry)[:120]}")
        if warmup_ms is not None and float(entry.get("startComputeMs", warmup_ms)) < warmup_ms:
            continue
        samples.append(float(entry[metric]))
    if not samples:
        raise InvalidArgumentError("trtexec --exportTimes holds no timed iteration")
    return samples


_BANNER = re.compile(r"&&&& (RUNNING|PASSED|FAILED) TensorRT\.trtexec \[TensorRT v(\d+)\]")
_SUMMARY = re.compile(r"\] \[I\] (Latency|GPU Compute Time|Enqueue Time|H2D Latency|D2H Latency): (.+)$", re.MULTILINE)


def banner_version(code: str) -> str:
    """trtexec's banner code -> version: ``8502`` -> 8.5.2, ``8602`` -> 8.6.2, ``100300`` -> 10.3.0
    (major * 1000 + minor * 100 + patch before 10; major * 10000 + minor * 100 + patch since)."""
    value = int(code)
    if value >= 10000:
        return f"{value // 10000}.{value // 100 % 100}.{value % 100}"
    return f"{value // 1000}.{value // 100 % 10}.{value % 100}"


def parse_log(text: str) -> dict[str, Any]:
    """What a trtexec log says: version and status (banner), device, and the performance summary in ms."""
    info: dict[str, Any] = {}
    banners = _BANNER.findall(text)
    if banners:
        info["tensorrt"] = banner_version(banners[0][1])
        info["status"] = banners[-1][0]
    for key, pattern in (
        ("device", r"\[I\] Selected Device: (.+)$"),
        ("compute_capability", r"\[I\] Compute Capability: ([\d.]+)"),
        ("tensorrt_log", r"\[I\] TensorRT version: ([\d.]+)"),
    ):
        match = re.search(pattern, text, re.MULTILINE)
        if match:
            info[key] = match.group(1).strip()
    throughput = re.search(r"\[I\] Throughput: ([\d.e+-]+) qps", text)
    if throughput:
        info["throughput_qps"] = float(throughput.group(1))
    built = re.search(r"Engine built in ([\d.]+) sec", text)
    if built:
        info["build_seconds"] = float(built.group(1))
    summary: dict[str, dict[str, float]] = {}
    for name, body in _SUMMARY.findall(text):
        figures = {
            key.replace("percentile(", "p").replace("%)", ""): float(value)
            for key, value in re.findall(r"([a-z]+(?:\([\d.]+%\))?) = ([\d.e+-]+) ms", body)
        }
        if figures:
            summary[name] = figures
    if summary:
        info["summary_ms"] = summary
    errors = [line.split("[E]", 1)[1].strip() for line in text.splitlines() if "[E]" in line]
    if errors:
        info["errors"] = errors[-3:]
    return info
