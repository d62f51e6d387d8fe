"""Outputs of a converted model against PyTorch's on the same inputs: the check behind every export, precision and
engine (no torch here: ``edgeconv bench`` runs it on a board that may have none).

Validation metric (``compare_outputs``): max abs difference, max relative error = max|onnx - torch| / max|torch| over
the whole output batch, and top-1 agreement per image. FP32 passes at relative error <= 1e-4; FP16 at <= 1e-2 (FP16
has an 11-bit mantissa, ~5e-4 per rounding, and errors add up over depth). In both, every image must keep its top-1
class, except a near tie: an image whose PyTorch top-1 logit leads the ONNX top-1 class by no more than the max abs
difference is not counted as a disagreement (random-weight models have near-flat logits).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

FP32_TOLERANCE = 1e-4
FP16_TOLERANCE = 1e-2


@dataclass
class Comparison:
    """ONNX Runtime output against PyTorch on the same inputs. Truthy when it passed (Polygraphy's comparator style).

    ``unit`` is what the top-1 agreement counts: ``"image"`` for class scores, ``"pixel"`` for a label map
    (``(N, classes, H, W)`` scores: the argmax over the class axis at every pixel). ``top1_disagreements`` lists the
    first 100 disagreeing units (flat indices), ``disagreements`` counts them all."""

    max_abs_diff: float
    max_rel_error: float
    top1_agreement: float
    images: int
    tolerance: float
    passed: bool
    top1_disagreements: list[int] = field(default_factory=list)
    near_ties: int = 0
    unit: str = "image"
    units: int = 0
    disagreements: int = 0

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        what = f"{self.images} images" if self.unit == "image" else f"{self.units:,} pixels of {self.images} images"
        agreement = "top-1" if self.unit == "image" else "per-pixel argmax"
        return (
            f"max abs diff {self.max_abs_diff:.3g}, max relative error {self.max_rel_error:.3g} "
            f"(tolerance {self.tolerance:g}), {agreement} agreement {self.top1_agreement:.2%} on {what}"
        )


# A label map passes with at most this fraction of its pixels changing class beyond a near tie (issue 18: >= 99.9%).
PIXEL_DISAGREEMENT = 1e-3


def compare_outputs(reference: np.ndarray, actual: np.ndarray, tolerance: float) -> Comparison:
    """See the module docstring for the metric. Non-finite values in either output fail the comparison. A 4-D output
    ``(N, classes, H, W)`` is a label map: agreement is counted per pixel, and up to ``PIXEL_DISAGREEMENT`` of the
    pixels may change class beyond a near tie."""
    reference, actual = np.asarray(reference, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    images = len(reference)
    if reference.shape != actual.shape:
        return Comparison(float("inf"), float("inf"), 0.0, images, tolerance, False)
    per_pixel = reference.ndim == 4
    if per_pixel:  # one row of class scores per pixel
        reference = np.moveaxis(reference, 1, -1).reshape(-1, reference.shape[1])
        actual = np.moveaxis(actual, 1, -1).reshape(-1, actual.shape[1])
    else:
        reference, actual = reference.reshape(images, -1), actual.reshape(images, -1)
    finite = bool(np.isfinite(reference).all() and np.isfinite(actual).all())
    diff = np.abs(actual - reference)
    max_abs = float(diff.max()) if finite else float("inf")
    scale = float(np.abs(reference).max()) if finite else 0.0
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    ref_top, act_top = reference.argmax(1), actual.argmax(1)
    changed = np.nonzero(ref_top != act_top)[0]
    rows = np.arange(len(reference))
    margins = reference[rows[changed], ref_top[changed]] - reference[rows[changed], act_top[changed]]
    disagreements = changed[margins > max_abs]
    ties = int(len(changed) - len(disagreements))
    agreement = float((ref_top == act_top).mean())
    allowed = int(PIXEL_DISAGREEMENT * len(reference)) if per_pixel else 0
    passed = finite and rel <= tolerance and len(disagreements) <= allowed
    return Comparison(
        max_abs,
        rel,
        agreement,
        images,
        tolerance,
        passed,
        [int(i) for i in disagreements[:100]],
        ties,
        "pixel" if per_pixel else "image",
        len(reference),
        len(disagreements),
    )
