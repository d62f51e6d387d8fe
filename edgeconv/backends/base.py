"""The backend protocol: every runner builds or loads an artifact, runs numpy in -> numpy out, and may report per-layer
times.

Borrowed shape: Polygraphy's runners (``polygraphy/backend/base/runner.py``): a runner is a context manager, heavy
imports happen when it is activated (first use), never when its module is imported, and a missing optional dependency
raises :class:`~edgeconv.errors.BackendUnavailableError` carrying the install command.
"""

from __future__ import annotations

import importlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any

import numpy as np

from edgeconv.errors import BackendUnavailableError, InputError, InvalidArgumentError

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt")
DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "int8")

INSTALL_HINTS = {
    "torch": "pip install torch  (CUDA builds: see https://pytorch.org/get-started/locally/)",
    "onnxruntime": (
        "pip install onnxruntime  (CPU) or pip install 'edgeconv[gpu]'  (onnxruntime-gpu: CUDA/TensorRT EPs)"
    ),
    "onnxruntime-gpu": "pip install 'edgeconv[gpu]'  (pip uninstall onnxruntime first: the two wheels conflict)",
    "tensorrt": (
        "pip install 'edgeconv[tensorrt]'  (TensorRT + cuda-bindings for a CUDA 12 driver, x86-64/SBSA; "
        "'edgeconv[tensorrt-cu13]' for a CUDA 13 driver (580+), 'edgeconv[tensorrt-cu11]' for CUDA 11: "
        "nvidia-smi shows the driver's CUDA version); on Jetson TensorRT ships with JetPack: "
        "sudo apt install nvidia-jetpack, then pip install 'cuda-bindings==12.*' (JetPack 6) or "
        "'cuda-bindings==11.8.*' (JetPack 5)"
    ),
    "cuda-python": (
        "pip install 'cuda-bindings==12.*'  (the CUDA major version of your NVIDIA driver, as nvidia-smi shows it: "
        "13.* needs driver 580+, 12.* 525+, 11.8.* for CUDA 11 drivers)"
    ),
    "matplotlib": "pip install 'edgeconv[plot]'",
    "openvino": "pip install openvino  (Intel's runtime: CPU on any x86-64/ARM64, Intel GPU and NPU)",
}


def import_optional(module: str, package: str | None = None) -> ModuleType:
    """Import an optional dependency or raise BackendUnavailableError naming the install command."""
    package = package or module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = INSTALL_HINTS.get(package, f"pip install {package}")
        raise BackendUnavailableError(f"{package} is not installed ({exc}); install it with: {hint}") from exc


def check_choice(kind: str, value: str, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise InvalidArgumentError(f"{kind} {value!r} is not valid; choose one of {', '.join(choices)}")
    return value


def max_threads() -> int:
    """The most CPU threads a runner may be given: 4x the cores this process may use. More only contend for the same
    cores, and a thread pool of 100000 takes minutes to start (it looked like a hang)."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 4 * max(1, cores)


def check_threads(threads: int | None, *, option: str = "--threads", allow_zero: bool = True) -> int | None:
    """``threads`` if it is a thread count this machine can run (``0``: the backend's default, where allowed)."""
    if threads is None:
        return None
    low = 0 if allow_zero else 1
    limit = max_threads()
    if not low <= threads <= limit:
        default = " (0: the backend's default)" if allow_zero else ""
        raise InvalidArgumentError(
            f"{option} {threads} is not valid; use {low}..{limit}{default}: this process may use {limit // 4} CPU "
            "cores, and more threads than 4x that only contend for them"
        )
    return threads


@dataclass(frozen=True)
class LayerTime:
    """Mean time of one layer (ONNX node, TensorRT fused layer) per inference.

    ``name`` is the backend's own name for it (ONNX node name, TensorRT layer name), ``op_type`` the operator
    (``Conv``, ``FusedConv``, ``Reorder`` ...; empty when the backend does not say), ``calls`` how many times it ran.
    """

    name: str
    op_type: str
    mean_ms: float
    calls: int
    provider: str = ""


@dataclass(frozen=True)
class LayerProfile:
    """Per-layer times of a profiled run, with the measured end-to-end time of the same runs."""

    layers: tuple[LayerTime, ...]
    end_to_end_ms: float  # mean over the profiled runs, as the backend measured it
    runs: int
    backend: str

    @property
    def layers_ms(self) -> float:
        return float(sum(layer.mean_ms for layer in self.layers))

    @property
    def gap_ms(self) -> float:
        """End-to-end time not covered by any layer (framework overhead, copies, scheduling)."""
        return self.end_to_end_ms - self.layers_ms


class BackendRunner(ABC):
    """A loaded model on one backend. Use as a context manager: ``with runner: y = runner.run(x)``.

    Subclasses implement :meth:`_activate` (load/build, import heavy modules), :meth:`_deactivate` (free resources)
    and :meth:`_infer`. :meth:`run` checks the input against :attr:`input_shape` and the dtype first.
    """

    backend: str = ""

    def __init__(self, *, device: str = "cpu", precision: str = "fp32", label: str = "") -> None:
        self.device = check_choice("device", device, DEVICES)
        self.precision = check_choice("precision", precision, PRECISIONS)
        self.label = label
        self.input_shape: tuple[int, ...] | None = None  # set by _activate when known
        self._active = False

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def __enter__(self) -> BackendRunner:
        if not self._active:
            self._activate()
            self._active = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._active:
            self._active = False
            self._deactivate()

    @property
    def is_active(self) -> bool:
        return self._active

    # -- inference ---------------------------------------------------------------------------------------------
    def run(self, inputs: np.ndarray) -> np.ndarray:
        """Run one batch; returns the (first) output as float32 numpy. The result is complete when this returns."""
        if not self._active:
            raise InvalidArgumentError(f"{self.describe()} is not active; use it as `with runner: runner.run(x)`")
        if not isinstance(inputs, np.ndarray):
            raise InputError(f"expected a numpy array, got {type(inputs).__name__}")
        if inputs.dtype != np.float32:
            raise InputError(f"expected float32 input, got {inputs.dtype}; convert with x.astype(np.float32)")
        if self.input_shape is not None and not _shape_matches(self.input_shape, inputs.shape):
            raise InputError(
                f"input shape {tuple(inputs.shape)} does not match the model's {self.input_shape} (-1 = any size)"
            )
        return self._infer(np.ascontiguousarray(inputs))

    def synchronize(self) -> None:
        """Wait for queued device work. ``run`` already returns host data; timing code calls this as well."""
        return None

    def layer_profile(self) -> LayerProfile | None:
        """Per-layer times of the runs since profiling was enabled, or None where the backend has none."""
        return None

    def describe(self) -> str:
        return f"{self.backend}/{self.device}/{self.precision}" + (f" ({self.label})" if self.label else "")

    @abstractmethod
    def _activate(self) -> None: ...

    @abstractmethod
    def _deactivate(self) -> None: ...

    @abstractmethod
    def _infer(self, inputs: np.ndarray) -> np.ndarray: ...


def _shape_matches(expected: tuple[int, ...], actual: tuple[int, ...]) -> bool:
    return len(expected) == len(actual) and all(e < 0 or e == a for e, a in zip(expected, actual, strict=True))


def describe_options(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items() if v is not None)
