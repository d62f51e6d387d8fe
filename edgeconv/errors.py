"""One exception family. Every message names the bad value and what to do instead.

The CLI turns an ``EdgeconvError`` into one line on stderr and a non-zero exit; anything else is a bug.
"""

from __future__ import annotations

import signal


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (libraries raise pages: protobuf, torch, OpenVINO), or its type name
    when it has none; for one-line errors that quote a cause."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]


class EdgeconvError(Exception):
    """Base class of every error a user can cause or fix."""

    exit_code: int = 1


class UnknownModelError(EdgeconvError, KeyError):
    """A model name that is not in the zoo."""

    exit_code = 2

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class InvalidArgumentError(EdgeconvError, ValueError):
    """A parameter outside its valid range (width multiplier, input size, batch ...)."""

    exit_code = 2


class WeightsError(EdgeconvError):
    """Weights that cannot be found, read, verified or loaded into the architecture."""


class ExportError(EdgeconvError):
    """Export to ONNX failed or produced outputs that disagree with PyTorch."""


class ValidationError(EdgeconvError):
    """A numerical check (fusion, export, precision) failed its tolerance."""


class CalibrationError(EdgeconvError):
    """Calibration data missing, empty or unusable."""


class QuantizationError(EdgeconvError):
    """INT8 conversion failed or fell below the fidelity gate."""


class ArtifactError(EdgeconvError):
    """An exported artifact that is missing, incomplete, or would be overwritten."""


class BackendUnavailableError(EdgeconvError):
    """An optional backend (TensorRT, CUDA, onnxruntime-gpu) is not installed or has no device."""


class CudaCallError(EdgeconvError, RuntimeError):
    """A CUDA runtime call (through cuda-python) or a TensorRT call on the device failed: no usable driver, out of
    device memory, an enqueue TensorRT refused. Raised by ``edgeconv.backends.tensorrt``."""


class InputError(EdgeconvError, ValueError):
    """An array or image of the wrong shape, dtype or content handed to a runtime."""


# The signals the console script's handler has raised as interrupts (``edgeconv/__main__.py``). A library can swallow
# the ``KeyboardInterrupt`` (one that lands inside torch's imports was seen to) and fail later with an error of its own;
# the CLI then reports the interrupt, not that error.
received_signals: list[int] = []


def interruption(signum: int) -> tuple[str, int]:
    """The line an interrupted command prints on stderr and its exit status: ``edgeconv: interrupted (SIGINT)``, 130."""
    return f"edgeconv: interrupted ({signal.Signals(signum).name})", 128 + signum


class Interrupted(KeyboardInterrupt):
    """SIGTERM raised in the main thread as SIGINT raises ``KeyboardInterrupt``, so that cleanup (``finally`` blocks,
    staging folders, temp files) runs before the process ends; the CLI exits with 128 + ``signum``. Not an
    ``EdgeconvError``: there is nothing to fix."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class OutputError(EdgeconvError, OSError):
    """An output that cannot be written: a full disk, a read-only folder, a folder where a file goes, or a path that
    would overwrite the input being read. An ``OSError`` too, so callers that catch those still do."""

    write_errno: int | None = None  # the failed write's errno (OSError's own would change str())
    reason: str | None = None


class RemoteError(EdgeconvError):
    """A board reached over SSH (``--on user@host``) refused, failed or went away: the message names the board and
    the cause (host key, login, copy, disk, remote command, timeout). The local artifact is never touched."""
