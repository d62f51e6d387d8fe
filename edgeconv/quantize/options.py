"""What ``quantize_int8`` can be told (``Int8Options``), the targets and calibration methods, and the constants the
stages share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from edgeconv.errors import InvalidArgumentError
from edgeconv.quantize.fidelity import DEFAULT_MIN_AGREEMENT

if TYPE_CHECKING:
    from edgeconv.quantize.calibration import ProgressCallback


Target = Literal["onnxruntime", "tensorrt"]


TARGETS: tuple[str, ...] = ("onnxruntime", "tensorrt")


# "mse": per activation tensor, the clipping threshold between the 99.999th percentile of |x| and the maximum with the
# least expected squared error on the form's grid (``qdq.ort_static.percentile_ranges``). mobilenet_v2, onnxruntime
# form, 1000 held-out crops, two AdaRound seeds: mean KL 0.0306 / 0.0331 and SQNR 18.7 / 18.7 dB against the
# percentile's 0.0340 / 0.0332 and 18.5 / 18.4 dB; efficientnet_lite0 (onnxruntime form) and mobilenet_v2's tensorrt
# form unchanged to the digit. Issue 17's note has the runs.
CALIBRATION_METHODS: tuple[str, ...] = ("minmax", "entropy", "percentile", "mse")


DEFAULT_CALIBRATION_METHOD = "mse"


QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


# Largest |w0| + |w1| of two same-sign int8 weights that ORT's AVX2 u8s8 kernel adds in one int16 (255 * 128 < 2^15).
PAIR_SUM_LIMIT = 128


# Automatic fallback stops GATE_MARGIN above the gate on the calibration crops: choosing layers on the crops it is
# scored on is optimistic (mobilenet_v2, tensorrt target: 82.0% on calibration crops, 76.7% held out).
GATE_MARGIN = 0.03
# --cpu-kernels: the CPU that will run the onnxruntime form. ORT's u8s8 kernel on x86 without VNNI adds neighbour
# products in a saturating int16 (vpmaddubsw); VNNI / AMX (x86) and the dot-product instructions (ARM) accumulate in
# int32 and do not saturate.
CPU_KERNELS: dict[str, str] = {
    "auto": "this machine's CPU",
    "avx2": "x86 without VNNI: saturation-safe weights",
    "vnni": "x86 with AVX512-VNNI, AVX-VNNI or AMX: full 8-bit weights",
    "arm": "ARM with the dot-product instructions: full 8-bit weights",
}


@dataclass(frozen=True)
class Int8Options:
    """Everything ``quantize_int8`` can be told. ``calib_dir=None`` means the repository's ``calibration/`` folder.

    ``fallback``: ``"auto"`` (keep the most sensitive layers in float until ``min_agreement`` and
    ``min_confident_agreement`` hold, at most ``max_fallback_layers`` and within ``latency_budget`` x FP32 on the
    onnxruntime target), ``"none"``, or PyTorch module names to keep in float (``("features.0.0", "classifier.1")``).
    """

    target: Target = "onnxruntime"
    calib_dir: Path | None = None
    calib_method: str = DEFAULT_CALIBRATION_METHOD
    calib_samples: int = 128
    eval_samples: int = 300
    # Label maps: every pixel of a held-out crop is a sample (a 520x520 crop has 270,400), and the FP32 and INT8 maps of
    # 300 crops would not fit in memory (21 classes: 6.8 GB each); 32 crops give 8.7 M pixels.
    label_map_eval_samples: int = 32
    seed: int = 0
    equalize: bool = True
    relu6: Literal["skip", "relu"] = "skip"
    # onnxruntime target: closer ranges for the channels of each depthwise conv's ReLU6 input, chosen per layer by
    # leaving one calibration photo out (equalize_depthwise_inputs). 1000 held-out crops: mobilenet_v2 mean KL 0.042 ->
    # 0.034, efficientnet_lite0 unchanged (bench/results/int8.md).
    equalize_depthwise: bool = True
    # Off by default: with 8-bit saturation-safe weights it did not help mobilenet_v2 (76.3% -> 75.0% top-1 agreement
    # on 300 held-out crops), and a bias corrected for 8-bit weights is wrong once fallback makes them 16-bit.
    bias_correction: bool = False
    bias_correction_samples: int = 64  # expected error per channel converges fast; each sample costs 2 forward passes
    # Adaptive rounding of the 8-bit weights (qdq/adaround.py). mobilenet_v2 onnxruntime, 1000 held-out crops, AVX-512
    # VNNI CPU: 86.9% / 100% confident all-INT8, against 81.0% / 99.7% for nearest rounding; the largest part of the
    # INT8 time (bench/results/int8_peers.md). Depthwise convs keep nearest rounding (AdaRoundOptions.depthwise).
    adaround: bool = True
    adaround_iterations: int = 200
    cpu_kernels: str = "auto"  # CPU_KERNELS
    # The prepared model's export is checked against the unprepared one at this relative tolerance (or the FP32
    # export's, if larger): equalization and centring are exact in float, up to rounding.
    prepared_tolerance: float = 1e-4
    # tensorrt target: shift ReLU/ReLU6 outputs between two convs to be centred on 0 (symmetric int8 grid).
    center_activations: bool = True
    # Re-parameterized (RepVGG) kernels: move the identity branch's centre taps into a depthwise 1x1 conv.
    split_identity: bool = True
    fallback: str | tuple[str, ...] = "auto"
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    min_confident_agreement: float = 0.0  # gate on the crops FP32 is sure about (p > 0.5); 0 = off
    max_fallback_layers: int = 8
    latency_budget: float | None = 0.7
    percentile: float = 99.999
    force: bool = False
    input_size: tuple[int, int] | None = None  # None: the FP32 ONNX input's (H, W), else the spec's
    # Called as calibration crops are prepared and fed; carried here so pipeline hooks need not know about it.
    progress: ProgressCallback | None = field(default=None, compare=False, repr=False)
    rounding_progress: ProgressCallback | None = field(default=None, compare=False, repr=False)  # (layers done, total)
    on_stage: Callable[[str], None] | None = field(default=None, compare=False, repr=False)  # each stage's label

    def validate(self) -> None:
        if self.cpu_kernels not in CPU_KERNELS:
            raise InvalidArgumentError(
                f"--cpu-kernels {self.cpu_kernels!r} is not known; choose one of {', '.join(CPU_KERNELS)}"
            )
        if self.target not in TARGETS:
            raise InvalidArgumentError(f"--target {self.target!r} is not known; choose one of {', '.join(TARGETS)}")
        if self.calib_method not in CALIBRATION_METHODS:
            raise InvalidArgumentError(
                f"--calib-method {self.calib_method!r} is not known; choose one of {', '.join(CALIBRATION_METHODS)}"
            )
        if self.adaround_iterations < 1:
            raise InvalidArgumentError(f"adaptive rounding iterations {self.adaround_iterations} must be at least 1")
        if self.calib_samples < 8:
            raise InvalidArgumentError(f"--calib-samples {self.calib_samples} is too few; use at least 8 (128 default)")
        if self.seed < 0:
            raise InvalidArgumentError(f"--seed {self.seed} is negative; use a seed of 0 or more (0 default)")
        if self.eval_samples < 1:
            raise InvalidArgumentError(f"--eval-samples {self.eval_samples} is too few; use at least 1 (300 default)")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise InvalidArgumentError(f"--min-agreement {self.min_agreement} must be a fraction in [0, 1], e.g. 0.85")
        if not 0.0 <= self.min_confident_agreement <= 1.0:
            raise InvalidArgumentError(
                f"--min-confident-agreement {self.min_confident_agreement} must be a fraction in [0, 1], e.g. 0.99"
            )
        if isinstance(self.fallback, str) and self.fallback not in ("auto", "none"):
            raise InvalidArgumentError(
                f"--fallback {self.fallback!r}: use auto, none, or module names separated by commas"
            )


def parse_fallback(text: str) -> str | tuple[str, ...]:
    """``--fallback`` value: ``auto``, ``none``, or PyTorch module names separated by commas."""
    value = text.strip()
    if value.lower() in ("auto", "none"):
        return value.lower()
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    if not names:
        raise InvalidArgumentError(
            f"--fallback {text!r}: use auto, none, or module names such as features.0.0,classifier.1"
        )
    return names


def cpu_kernels_saturate(cpu_kernels: str) -> bool:
    """Whether ONNX Runtime's u8s8 integer kernels on the CPU ``cpu_kernels`` names (``auto``: this one) add
    neighbour products in a saturating int16, so that the onnxruntime form needs saturation-safe weights."""
    if cpu_kernels != "auto":
        return cpu_kernels == "avx2"
    import platform

    from edgeconv.bench import cpu_info

    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False  # ARM: int32 accumulation (dot product, or widening multiplies without it)
    return not {"avx512_vnni", "avx_vnni", "amx_int8"} & set(cpu_info()["isa"])
