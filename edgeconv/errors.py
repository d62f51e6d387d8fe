"""One exception family. Every message names the bad value and what to do instead.

The CLI turns an ``EdgeconvError`` into one line on stderr and a non-zero exit; anything else is a bug.
"""

from __future__ import annotations


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


class InputError(EdgeconvError, ValueError):
    """An array or image of the wrong shape, dtype or content handed to a runtime."""
