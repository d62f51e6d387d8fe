"""OpenVINO backend: edgeconv's FP32, FP16 and INT8 (QDQ) ONNX artifacts on OpenVINO's CPU plugin (or its GPU / NPU
plugins, by OpenVINO's own device names).

OpenVINO picks the arithmetic itself unless told: on a CPU with bf16 instructions (AVX512_BF16, AMX) its default
inference precision is bf16, which changes answers that FP32 would give (on mobilenet_v2 it changed the top-1 class
on about 4% of held-out crops on a Xeon with AMX). ``inference_precision`` asks for one explicitly (``f32``, ``bf16``,
``f16``); the precision in effect is read back from the compiled model and recorded in every benchmark row. An INT8
QDQ graph runs in int8 where OpenVINO's low-precision transformations accept it; the hint applies to the rest.

A model with a dynamic batch is reshaped to the runner's static input shape before compiling (as TensorRT builds
for one profile): OpenVINO's CPU plugin runs static shapes faster.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgeconv.backends.base import BackendRunner, import_optional
from edgeconv.errors import ArtifactError, BackendUnavailableError, InvalidArgumentError, first_line

log = logging.getLogger(__name__)

INFERENCE_PRECISIONS = ("f32", "bf16", "f16")
_TYPE_NAMES = {"f32": "f32", "float32": "f32", "bf16": "bf16", "bfloat16": "bf16", "f16": "f16", "float16": "f16"}


def _precision_name(value: Any) -> str:
    """OpenVINO's ``Type`` (``<Type: 'bfloat16'>``) or string -> f32 / bf16 / f16 (or its own name if another)."""
    name = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
    return _TYPE_NAMES.get(name, name)


@functools.cache
def default_inference_precision(ov_device: str = "CPU") -> str:
    """The precision OpenVINO uses on ``ov_device`` when none is asked for (bf16 on CPUs that have it)."""
    ov = import_optional("openvino")
    return _precision_name(ov.Core().get_property(ov_device, "INFERENCE_PRECISION_HINT"))


class OpenVINORunner(BackendRunner):
    """Runs an ONNX file on OpenVINO. ``ov_device`` is OpenVINO's device name (``CPU``, ``GPU``, ``NPU``, ``AUTO``);
    ``threads`` sets ``INFERENCE_NUM_THREADS``; ``inference_precision`` None keeps OpenVINO's default."""

    backend = "openvino"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        precision: str = "fp32",
        device: str = "cpu",
        ov_device: str = "CPU",
        inference_precision: str | None = None,
        input_shape: tuple[int, ...] | None = None,
        threads: int | None = None,
        label: str = "",
    ) -> None:
        super().__init__(device=device, precision=precision, label=label)
        if device != "cpu":
            raise InvalidArgumentError(
                f"OpenVINO runs on Intel CPUs, GPUs and NPUs (--device cpu with --ov-device CPU|GPU|NPU), not on "
                f"--device {device}"
            )
        if inference_precision is not None and inference_precision not in INFERENCE_PRECISIONS:
            raise InvalidArgumentError(
                f"OpenVINO inference precision {inference_precision!r} is not valid; choose one of "
                f"{', '.join(INFERENCE_PRECISIONS)} (or leave it out for OpenVINO's default)"
            )
        if threads is not None and threads < 0:
            raise InvalidArgumentError(f"threads {threads} must be >= 0 (0: OpenVINO's default)")
        self.model_path = Path(model_path)
        self.ov_device = ov_device.upper()
        self.inference_precision = inference_precision
        self.threads = threads or None
        self._declared_shape = input_shape
        self.effective_precision: str | None = None  # read back from the compiled model
        self._request: Any = None

    def describe(self) -> str:
        hint = self.effective_precision or self.inference_precision or "default"
        return f"openvino/{self.ov_device}/{self.precision} ({hint})" + (f" {self.label}" if self.label else "")

    def _activate(self) -> None:
        ov = import_optional("openvino")
        core = ov.Core()
        known = core.available_devices
        base = self.ov_device.split(".")[0]
        if base not in known and base not in ("AUTO", "HETERO", "MULTI", "BATCH"):
            raise BackendUnavailableError(
                f"OpenVINO {ov.__version__} has no device {self.ov_device} here (it has {', '.join(known)})"
            )
        if not self.model_path.is_file():
            raise ArtifactError(f"ONNX file {self.model_path} does not exist; export one with `edgeconv export MODEL`")
        try:
            model = core.read_model(str(self.model_path))
            if self._declared_shape is not None and all(d > 0 for d in self._declared_shape):
                model.reshape({model.inputs[0].get_any_name(): list(self._declared_shape)})
            config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
            if self.threads is not None:
                config["INFERENCE_NUM_THREADS"] = self.threads
            if self.inference_precision is not None:
                config["INFERENCE_PRECISION_HINT"] = self.inference_precision
            compiled = core.compile_model(model, self.ov_device, config)
        except RuntimeError as exc:  # OpenVINO raises RuntimeError (GeneralFailure) for unreadable or unsupported files
            raise ArtifactError(f"OpenVINO could not load {self.model_path}: {first_line(exc, 200)}") from exc
        self.effective_precision = _precision_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
        self._request = compiled.create_infer_request()
        shape = model.inputs[0].get_partial_shape()
        self.input_shape = tuple(d.get_length() if d.is_static else -1 for d in shape)
        log.info("openvino %s: %s on %s (%s)", ov.__version__, self.model_path.name, self.ov_device,
                 self.effective_precision)  # fmt: skip

    def _deactivate(self) -> None:
        self._request = None

    def _infer(self, inputs: np.ndarray) -> np.ndarray:
        self._request.infer({0: inputs})
        return np.array(self._request.get_output_tensor(0).data, dtype=np.float32)
