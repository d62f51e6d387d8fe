"""ONNX Runtime backend: CPU, CUDA and TensorRT execution providers, thread count, graph optimization level, profiling.

Per-node times come from ORT's own profiler (a Chrome-trace JSON list; one ``<node>_kernel_time`` event per node and
run, grouped into runs by the enclosing ``model_run`` event). A TensorRT EP partition shows up as one fused node.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeconv.backends.base import (
    INSTALL_HINTS,
    BackendRunner,
    LayerProfile,
    LayerTime,
    check_choice,
    check_threads,
    import_optional,
)
from edgeconv.errors import ArtifactError, BackendUnavailableError, InvalidArgumentError

log = logging.getLogger(__name__)

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
GRAPH_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


def available_providers() -> list[str]:
    """Short names (cpu, cuda, tensorrt) of the execution providers this onnxruntime build has."""
    ort = import_optional("onnxruntime")
    have = set(ort.get_available_providers())
    return [short for short, full in PROVIDERS.items() if full in have]


def require_provider(short: str, asked: str = "") -> None:
    """Raise ``BackendUnavailableError`` when this onnxruntime build lacks execution provider ``short`` (``asked``: the
    option that asked for it, named in the message)."""
    ort = import_optional("onnxruntime")
    full = PROVIDERS[short]
    if full not in ort.get_available_providers():
        raise BackendUnavailableError(
            f"{asked + ': ' if asked else ''}onnxruntime {ort.__version__} has no {full} here (it has "
            f"{', '.join(ort.get_available_providers())}); use --device cpu, or install: "
            f"{INSTALL_HINTS['onnxruntime-gpu']}"
        )


def _graph_level(ort: Any, level: str) -> Any:
    check_choice("graph optimization level", level, GRAPH_OPTIMIZATION_LEVELS)
    return {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]


class OnnxRuntimeRunner(BackendRunner):
    """Runs an ONNX file on ONNX Runtime.

    ``provider`` defaults to ``cpu`` on device cpu and ``cuda`` on device cuda; ``tensorrt`` selects the TensorRT
    EP (with CUDA and CPU behind it for unsupported nodes). ``precision`` must match the file: an FP16 or QDQ-INT8
    ONNX for fp16/int8 on the CPU and CUDA EPs; on the TensorRT EP an FP32 file can be run at fp16
    (``trt_fp16_enable``). ``threads`` sets intra-op threads (None = ORT default, one per physical core).
    """

    backend = "onnxruntime"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        device: str = "cpu",
        precision: str = "fp32",
        provider: str | None = None,
        threads: int | None = None,
        graph_optimization: str = "all",
        profile: bool = False,
        provider_options: dict[str, Any] | None = None,
        label: str = "",
    ) -> None:
        super().__init__(device=device, precision=precision, label=label)
        self.model_path = Path(model_path)
        self.provider = check_choice("execution provider", provider or device, tuple(PROVIDERS))
        if self.provider != "cpu" and device != "cuda":
            raise InvalidArgumentError(f"execution provider {self.provider!r} runs on --device cuda, not {device!r}")
        if self.provider == "cpu" and device == "cuda":
            raise InvalidArgumentError("the CPU execution provider cannot run on --device cuda; use provider cuda")
        self.threads = check_threads(threads, option="threads")
        self.graph_optimization = check_choice(
            "graph optimization level", graph_optimization, GRAPH_OPTIMIZATION_LEVELS
        )
        self.profile = profile
        self.provider_options = dict(provider_options or {})
        self._session: Any = None
        self._input_name = ""
        self._profile_dir: str | None = None
        self._profile_events: list[dict[str, Any]] | None = None

    def _activate(self) -> None:
        ort = import_optional("onnxruntime")
        if not self.model_path.is_file():
            raise ArtifactError(f"ONNX file {self.model_path} does not exist; export one with `edgeconv export MODEL`")
        full = PROVIDERS[self.provider]
        require_provider(self.provider)
        options = ort.SessionOptions()
        options.graph_optimization_level = _graph_level(ort, self.graph_optimization)
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if self.threads is not None:
            options.intra_op_num_threads = self.threads
        options.log_severity_level = 3
        if self.profile:
            self._profile_dir = tempfile.mkdtemp(prefix="edgeconv-ortprof-")
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(self._profile_dir) / "ort")
        providers: list[Any] = []
        if self.provider == "tensorrt":
            trt_options = {
                "device_id": 0,
                "trt_fp16_enable": self.precision == "fp16",
                "trt_int8_enable": self.precision == "int8",
                # Engines and tactic timings are cached next to the model: a new session (each benchmark repeat)
                # then loads the engine instead of rebuilding it for minutes.
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(self.model_path.parent / "ort_trt_cache"),
                "trt_timing_cache_enable": True,
                "trt_timing_cache_path": str(self.model_path.parent / "ort_trt_cache"),
            }
            trt_options.update(self.provider_options)
            providers += [("TensorrtExecutionProvider", trt_options), "CUDAExecutionProvider"]
        elif self.provider == "cuda":
            providers += [("CUDAExecutionProvider", {"device_id": 0, **self.provider_options})]
        providers.append("CPUExecutionProvider")
        try:
            self._session = ort.InferenceSession(str(self.model_path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ArtifactError(f"onnxruntime could not load {self.model_path}: {exc}") from exc
        got = self._session.get_providers()
        if got[0] != full:
            # ORT silently falls back to CPU when e.g. libnvinfer/libcudnn is missing: never report that as GPU numbers.
            self._session = None
            raise BackendUnavailableError(
                f"onnxruntime could not start {full} (session runs on {got[0]}); check the CUDA/cuDNN/TensorRT "
                f"libraries that onnxruntime-gpu {ort.__version__} needs"
            )
        first = self._session.get_inputs()[0]
        self._input_name = first.name
        self.input_shape = tuple(d if isinstance(d, int) else -1 for d in first.shape)
        log.info("onnxruntime %s: %s on %s", ort.__version__, self.model_path.name, got)

    def _deactivate(self) -> None:
        if self._session is not None and self.profile and self._profile_events is None:
            self._collect_profile()
        self._session = None
        if self._profile_dir:
            shutil.rmtree(self._profile_dir, ignore_errors=True)
            self._profile_dir = None

    def _infer(self, inputs: np.ndarray) -> np.ndarray:
        outputs = self._session.run(None, {self._input_name: inputs})
        return np.asarray(outputs[0], dtype=np.float32)

    def _collect_profile(self) -> None:
        trace = self._session.end_profiling()
        with open(trace, encoding="utf-8") as handle:
            self._profile_events = json.load(handle)

    def layer_profile(self, skip_runs: int = 0) -> LayerProfile | None:
        """Per-node times from ORT's profiler. Ends profiling for this session (ORT cannot restart it), so call it
        once, after the runs to measure; ``skip_runs`` drops the first runs (warm-up)."""
        if not self.profile:
            return None
        if self._profile_events is None:
            if self._session is None:
                raise InvalidArgumentError("the runner is not active; call layer_profile() inside the `with` block")
            self._collect_profile()
        return parse_ort_profile(self._profile_events or [], skip_runs=skip_runs)


def parse_ort_profile(events: Sequence[dict[str, Any]], *, skip_runs: int = 0) -> LayerProfile:
    """Chrome-trace events from ``InferenceSession.end_profiling()`` -> mean per-node time per run.

    Node events (``cat == "Node"``, name ``<node>_kernel_time``, ``dur`` in microseconds) are assigned to the
    ``model_run`` session event whose [ts, ts + dur] interval contains them; the first ``skip_runs`` runs are dropped.
    """
    runs = sorted(
        (e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"), key=lambda e: e["ts"]
    )
    if skip_runs < 0 or skip_runs >= len(runs):
        raise InvalidArgumentError(
            f"skip_runs {skip_runs} must be in [0, {len(runs)}): the profile has {len(runs)} model runs"
        )
    kept = runs[skip_runs:]
    starts = [float(r["ts"]) for r in kept]
    ends = [float(r["ts"]) + float(r["dur"]) for r in kept]
    suffix = "_kernel_time"
    totals: dict[str, float] = {}
    calls: dict[str, int] = {}
    info: dict[str, tuple[str, str]] = {}
    for event in events:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith(suffix):
            continue
        ts = float(event["ts"])
        if not any(start <= ts <= end for start, end in zip(starts, ends, strict=True)):
            continue
        name = event["name"][: -len(suffix)]
        args = event.get("args", {})
        totals[name] = totals.get(name, 0.0) + float(event["dur"])
        calls[name] = calls.get(name, 0) + 1
        info.setdefault(name, (str(args.get("op_name", "")), str(args.get("provider", ""))))
    count = len(kept)
    layers = tuple(
        LayerTime(
            name=name,
            op_type=info[name][0],
            mean_ms=totals[name] / 1000.0 / count,
            calls=calls[name] // count,
            provider=info[name][1],
        )
        for name in totals
    )
    end_to_end = sum(float(r["dur"]) for r in kept) / 1000.0 / count
    return LayerProfile(layers=layers, end_to_end_ms=end_to_end, runs=count, backend="onnxruntime")
