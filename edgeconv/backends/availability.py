"""What can run here, decided before any work: a backend, device or precision that cannot run is refused before a zoo
model is exported into ``models/``, an engine is built or a file is written.

The checks are cheap (an import probe; ``torch.cuda.is_available()`` and ONNX Runtime's provider list only when CUDA
is asked for) and raise the errors the runners would raise at first use, only earlier. Which backend x precision x
device combinations a runner accepts is not restated here: each runner is constructed with a placeholder model, and
its own constructor says yes or no (one source of truth for those rules).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from edgeconv.backends.base import (
    BACKENDS,
    DEVICES,
    PRECISIONS,
    check_choice,
    check_threads,
    import_optional,
)
from edgeconv.errors import BackendUnavailableError, InvalidArgumentError

log = logging.getLogger(__name__)

PLACEHOLDER_ONNX = "model.onnx"  # never opened: runner constructors only validate their arguments


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (False without torch)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def check_backend(backend: str, *, device: str = "cpu", provider: str | None = None) -> None:
    """Raise ``BackendUnavailableError`` (with the install command) when ``backend`` cannot run on ``device`` here,
    ``InvalidArgumentError`` for a name that is not a backend, device or execution provider."""
    check_choice("backend", backend, BACKENDS)
    check_choice("device", device, DEVICES)
    if backend == "tensorrt":
        from edgeconv.backends.tensorrt import require_tensorrt

        require_tensorrt()
    elif backend == "torch":
        from edgeconv.backends.torch import require_cuda

        import_optional("torch")
        if device == "cuda":
            require_cuda()
    elif backend == "onnxruntime":
        from edgeconv.backends.onnxruntime import PROVIDERS, require_provider

        short = check_choice("execution provider", provider or device, tuple(PROVIDERS))
        if short != "cpu":
            require_provider(short, f"--ort-provider {short}" if provider else f"--device {device}")
    else:
        import_optional(backend)


def available_backends(device: str) -> list[str]:
    """The engines that can run on ``device`` here, for ``--backend all``: installed, with the device they need
    (OpenVINO's devices are Intel's CPU, GPU and NPU, so it runs on ``cpu``; TensorRT always on ``cuda``)."""
    found = []
    for backend in BACKENDS:
        if (backend == "openvino" and device != "cpu") or (backend == "tensorrt" and device != "cuda"):
            continue
        try:
            check_backend(backend, device=device)
        except (BackendUnavailableError, InvalidArgumentError):
            continue
        found.append(backend)
    return found


def refusal(backend: str, precision: str, options: Any, *, exported: Sequence[str] | None = None) -> str | None:
    """Why ``backend`` cannot run ``precision`` with ``options`` (an ``edgeconv.bench.CaseOptions``), or None.

    ``exported``: the precisions the target's ONNX files will have when that is already known (a zoo model that is
    about to be exported on the fly gets FP32 only); None when the target's files decide later.
    """
    from edgeconv.bench import onnxruntime_runner, openvino_runner, ort_lowers_fp16, torch_runner

    try:
        if backend == "torch":
            torch_runner(None, (1, 1, 1, 1), precision, options)  # a static shape: a CUDA graph needs one
            return None
        if backend == "onnxruntime":
            onnxruntime_runner(PLACEHOLDER_ONNX, precision, options)
            if ort_lowers_fp16(precision, options):
                return None
        elif backend == "openvino":
            openvino_runner(PLACEHOLDER_ONNX, precision, options)
        else:
            return None
    except InvalidArgumentError as exc:
        return str(exc)
    if exported is not None and precision not in exported:  # ONNX engines run the file of their precision
        return f"the FP32 export made on the fly has no {precision} ONNX"
    return None


def check_plan(
    backends: Sequence[str],
    precisions: Sequence[str],
    options: Any,
    *,
    target: str = "MODEL",
    exported: Sequence[str] | None = None,
) -> None:
    """Before any export or write: a thread count this machine can run, every named backend installed with its
    device, every precision a precision, and at least one backend x precision combination that can run (the others
    are skipped later, with their reasons). ``all`` (every engine this machine has) expands to what is installed."""
    check_threads(options.threads, option="--threads")  # 100000 threads took minutes to start: it looked like a hang
    named = [b for b in backends if b != "all"]
    for backend in named:
        provider = options.ort_provider if backend == "onnxruntime" else None
        check_backend(backend, device=options.device, provider=provider)
    for precision in precisions:
        check_choice("precision", precision, PRECISIONS)
    if "all" in backends:
        named = list(dict.fromkeys([*available_backends(options.device), *named]))
    reasons = []
    for backend in named:
        for precision in precisions or ["fp32"]:
            why = refusal(backend, precision, options, exported=exported)
            if why is None:
                return
            reasons.append(f"{backend}/{precision}: {why}")
    hint = ""
    if exported is not None and any("on the fly" in reason for reason in reasons):
        flags = " ".join(sorted({f"--{p}" for p in precisions or [] if p != "fp32"}))
        hint = f"; export them first with `edgeconv export {target} {flags}`"
    raise InvalidArgumentError("no configuration can run: " + "; ".join(reasons) + hint)
