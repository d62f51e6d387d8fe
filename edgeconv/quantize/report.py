"""``Int8Report``: what ``quantize_int8`` did and measured, and the ``int8`` section of ``manifest.json``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeconv.quantize.fidelity import FidelityReport
from edgeconv.quantize.qdq.adaround import RoundedLayer
from edgeconv.quantize.qdq.sensitivity import LayerSensitivity


@dataclass
class Int8Report:
    """What ``quantize_int8`` did and measured; ``manifest()`` is the dict written into ``manifest.json``."""

    target: str
    calib_method: str
    fidelity: FidelityReport
    baseline: FidelityReport | None  # plain PTQ (no CLE, no bias correction, no fallback), when measured
    fallback_modules: list[str]
    gate_passed: bool
    min_agreement: float
    min_confident_agreement: float = 0.0
    equalized_pairs: int = 0
    equalized_streams: int = 0  # residual streams rescaled per channel (equalize_residual_streams)
    equalization_skipped: int = 0
    bias_corrected_layers: int = 0
    centred_activations: dict[str, float] = field(default_factory=dict)  # tensorrt target: module name -> shift
    identity_split: list[str] = field(default_factory=list)  # convs whose identity taps went to a depthwise 1x1
    rounded: list[RoundedLayer] = field(default_factory=list)  # adaptive rounding, per layer
    layers: list[LayerSensitivity] = field(default_factory=list)
    latency_ratio: float | None = None  # INT8 / FP32 median latency, batch 1, ORT CPU (onnxruntime target)
    calibration_images: list[str] = field(default_factory=list)
    evaluation_images: list[str] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)
    calib_samples: int = 0
    seed: int = 0  # of the calibration and held-out crops and of adaptive rounding's batch order
    notes: list[str] = field(default_factory=list)
    before_fallback: FidelityReport | None = None  # CLE + bias correction, all layers INT8 (when fallback ran)
    split_activations: list[str] = field(default_factory=list)  # activations given one module per call site
    weights_form: str | None = None  # onnxruntime target: "saturation-safe" or "full 8-bit"
    cpu_kernels: str = "auto"  # the --cpu-kernels the form was chosen for
    exporter: str | None = None  # the exporter that wrote the prepared graph
    stage_seconds: dict[str, float] = field(default_factory=dict)  # wall-clock seconds per stage
    float_for_speed: list[str] = field(default_factory=list)  # convs ORT CPU runs slower in INT8 (thin_3d_convs)
    depthwise_equalized: int = 0  # depthwise convs whose ReLU6 input channels were given one range

    def manifest(self) -> dict[str, Any]:
        learned = [r for r in self.rounded if r.bias is None]
        corrected = [r for r in self.rounded if r.bias is not None]
        return {
            "target": self.target,
            "weights": {"form": self.weights_form, "cpu_kernels": self.cpu_kernels} if self.weights_form else None,
            "prepared_exporter": self.exporter,
            "stage_seconds": self.stage_seconds,
            "calibration": {
                "method": self.calib_method,
                "samples": self.calib_samples,
                "seed": self.seed,
                "images": self.calibration_images,
                "skipped_files": self.skipped_files,
            },
            "evaluation_images": self.evaluation_images,
            "fidelity": self.fidelity.as_dict(),
            "plain_ptq_fidelity": self.baseline.as_dict() if self.baseline is not None else None,
            "fidelity_before_fallback": self.before_fallback.as_dict() if self.before_fallback is not None else None,
            "gate": {
                "min_agreement": self.min_agreement,
                "min_confident_agreement": self.min_confident_agreement,
                "passed": self.gate_passed,
            },
            "equalized_pairs": self.equalized_pairs,
            "equalized_residual_streams": self.equalized_streams,
            "equalized_depthwise_inputs": self.depthwise_equalized,
            "float_for_speed": self.float_for_speed,
            "bias_corrected_layers": self.bias_corrected_layers,
            "centred_activations": {name: round(shift, 4) for name, shift in self.centred_activations.items()},
            "identity_split_convs": self.identity_split,
            "split_activations": self.split_activations,
            "adaround": {
                "layers": len(learned),
                "weights_flipped": round(float(np.mean([r.flipped for r in learned])), 4) if learned else 0.0,
                "output_mse_vs_nearest": {
                    r.module: round(r.error / r.error_nearest, 4) for r in learned if r.error_nearest > 0
                },
                # depthwise convs: nearest rounding and an empirical bias correction (AdaRoundOptions.depthwise_bias)
                "bias_corrected_output_mse_vs_nearest": {
                    r.module: round(r.error / r.error_nearest, 4) for r in corrected if r.error_nearest > 0
                },
            },
            "float_fallback": self.fallback_modules,
            "latency_ratio_vs_fp32": self.latency_ratio,
            "layer_sqnr_db": {layer.module or layer.node: round(layer.sqnr_db, 2) for layer in self.layers},
            "fallback_kl_gain": {
                layer.module or layer.node: round(layer.fallback_gain, 4)
                for layer in self.layers
                if layer.fallback_gain is not None
            },
            "notes": self.notes,
        }
