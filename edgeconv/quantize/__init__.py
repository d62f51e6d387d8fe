"""Reduced precision: calibration data (image folders -> batches), INT8 QDQ per runtime, fidelity metrics and gate.

Heavy imports (torch, onnxruntime.quantization) happen inside the functions that need them.
"""

from __future__ import annotations

from edgeconv.quantize.calibration import (
    DEFAULT_CALIBRATION_DIR,
    CalibrationData,
    CalibrationReader,
    Preprocessing,
    load_calibration_data,
    random_crops,
    read_image_folder,
    split_calibration_folder,
)
from edgeconv.quantize.fidelity import (
    DEFAULT_MIN_AGREEMENT,
    FidelityReport,
    check_gate,
    compare_logits,
    meets_gate,
    sqnr_db,
)
from edgeconv.quantize.int8 import quantize_int8
from edgeconv.quantize.options import CALIBRATION_METHODS, DEFAULT_CALIBRATION_METHOD, TARGETS, Int8Options
from edgeconv.quantize.report import Int8Report

__all__ = [
    "CALIBRATION_METHODS",
    "DEFAULT_CALIBRATION_DIR",
    "DEFAULT_CALIBRATION_METHOD",
    "DEFAULT_MIN_AGREEMENT",
    "TARGETS",
    "CalibrationData",
    "CalibrationReader",
    "FidelityReport",
    "Int8Options",
    "Int8Report",
    "Preprocessing",
    "check_gate",
    "meets_gate",
    "compare_logits",
    "load_calibration_data",
    "quantize_int8",
    "random_crops",
    "read_image_folder",
    "split_calibration_folder",
    "sqnr_db",
]
