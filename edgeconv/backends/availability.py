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
    INSTALL_HINTS,
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
        import_optional("torch")
        if device == "cuda" and not cuda_available():
            raise BackendUnavailableError(
                "--device cuda: torch sees no CUDA device here (torch.cuda.is_available() is False); use --device cpu, "
                f"or a machine with an NVIDIA GPU and a CUDA build of torch ({INSTALL_HINTS['torch']})"
            )
    elif backend == "onnxruntime":
        from edgeconv.backends.onnxruntime import PROVIDERS, available_providers

        short = check_choice("execution provider", provider or device, tuple(PROVIDERS))
        if short != "cpu" and short not in available_providers():
            ort = import_optional("onnxruntime")
            asked = f"--ort-provider {short}" if provider else f"--device {device}"
            raise BackendUnavailableError(
                f"{asked}: onnxruntime {ort.__version__} has no {PROVIDERS[short]} here (it has "
                f"{', '.join(ort.get_available_providers())}); use --device cpu, or install: "
                f"{INSTALL_HINTS['onnxruntime-gpu']}"
            )
    else:
        import_optional(backend)


def refusal(backend: str, precision: str, options: Any, *, exported: Sequence[str] | None = None) -> str | None:
    """Why ``backend`` cannot run ``precision`` with ``options`` (an ``edgeconv.bench.CaseOptions``), or None.

    ``exported``: the precisions the target's ONNX files will have when that is already known (a zoo model that is
    about to be exported on the fly gets FP32 only); None when the target's files decide later.
    """
    try:
        if backend == "torch":
            from edgeconv.bench import torch_runner

            torch_runner(None, (1, 1, 1, 1), precision, options)  # a static shape: a CUDA graph needs one
            return None
        if backend == "onnxruntime":
            from edgeconv.backends.onnxruntime import OnnxRuntimeRunner

            provider = options.ort_provider or options.device
            OnnxRuntimeRunner(
                PLACEHOLDER_ONNX,
                device=options.device,
                precision=precision,
                provider=provider,
                threads=options.threads,
                graph_optimization=options.graph_optimization,
            )
            lowered = provider == "tensorrt" and precision == "fp16"  # the TensorRT EP lowers an FP32 file itself
            if exported is not None and precision not in exported and not lowered:
                return f"the FP32 export made on the fly has no {precision} ONNX"
        return None
    except InvalidArgumentError as exc:
        return str(exc)


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
    if not named or len(named) != len(backends):
        return
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
