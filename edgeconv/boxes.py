"""Detections as NumPy arrays: IoU, matching two sets of detections, F1, and drawing boxes on a photo.

NumPy and Pillow only (no torch): the runtime and an app that embeds an exported detector use it. A set of detections
is ``Detections(boxes (N, 4) x1, y1, x2, y2 in image pixels, scores (N,), labels (N,))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # (N, 4) float: x1, y1, x2, y2 in input pixels
    scores: np.ndarray  # (N,) float, descending
    labels: np.ndarray  # (N,) int: class index (0 is the background and never appears)

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def of(cls, boxes: Any, scores: Any, labels: Any) -> Detections:
        return cls(
            np.asarray(boxes, np.float32).reshape(-1, 4),
            np.asarray(scores, np.float32).reshape(-1),
            np.asarray(labels, np.int64).reshape(-1),
        )

    def above(self, threshold: float) -> Detections:
        keep = self.scores > threshold
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4): (N, M), as torchvision's ``box_iou``."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


# Boxes whose corners agree within this many pixels are the same box whatever their IoU: a box 0.2 px wide (a random
# detector makes them) has IoU 0.98 with itself shifted by 0.01 px.
PIXEL_TOLERANCE = 0.05


def _overlaps(reference: Detections, actual: Detections) -> np.ndarray:
    """IoU, raised to 1 where all four corners agree within ``PIXEL_TOLERANCE``."""
    overlaps = box_iou(reference.boxes, actual.boxes)
    corners = np.abs(reference.boxes[:, None, :] - actual.boxes[None, :, :]).max(axis=2, initial=0.0)
    return np.where(corners <= PIXEL_TOLERANCE, 1.0, overlaps)


def match(reference: Detections, actual: Detections, iou: float, score_tolerance: float = np.inf) -> list[int]:
    """Greedy one-to-one matching, highest reference score first: for each reference detection the index of the best
    unmatched ``actual`` detection of the same label with IoU >= ``iou`` (or corners within ``PIXEL_TOLERANCE``) and
    score within ``score_tolerance``, or -1."""
    overlaps = _overlaps(reference, actual)
    taken = np.zeros(len(actual), bool)
    matched = [-1] * len(reference)
    for i in np.argsort(-reference.scores, kind="stable"):
        ok = (
            (actual.labels == reference.labels[i])
            & (overlaps[i] >= iou)
            & (np.abs(actual.scores - reference.scores[i]) <= score_tolerance)
            & ~taken
        )
        if ok.any():
            j = int(np.argmax(np.where(ok, overlaps[i], -1.0)))
            taken[j] = True
            matched[i] = j
    return matched


@dataclass(frozen=True)
class DetectionComparison:
    """An exported detector against PyTorch on one image: every reference detection matched (same label, IoU >=
    ``iou``, score within ``score_tolerance``) and no extra detections.

    Two allowances, where the choice is arbitrary in exact arithmetic too, counted in ``tolerated``; any other
    unmatched detection fails:

    - at the cap: when both sides hold the detector's maximum number of detections (``cap``), the last kept score is
      a cut through a continuum, and a detection scoring within ``score_tolerance`` of the cut on one side may be the
      next one down on the other;
    - ties: NMS between boxes of one class with the same score (within ``TIE``) keeps whichever it meets first, and
      runtimes sort ties differently. Random weights make such ties in flat regions (a letterbox's padding).

    Both sides must still find the same number of detections."""

    reference: int  # detections PyTorch found
    actual: int  # detections the export found
    matched: int
    min_iou: float  # plain IoU over the matched pairs (1.0 when there are none); see PIXEL_TOLERANCE
    max_score_diff: float  # over the matched pairs
    iou: float
    score_tolerance: float
    tolerated: int = 0  # unmatched on each side, each at the cap or tied (see the class docstring)

    def __bool__(self) -> bool:
        return self.reference == self.actual == self.matched + self.tolerated

    @property
    def passed(self) -> bool:
        return bool(self)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "passed": self.passed}


TIE = 1e-6  # scores this close are a tie for NMS (float32 resolution near 1 is 6e-8)


def _explained(detections: Detections, i: int, at_cap: bool, cut: float) -> bool:
    """An unmatched detection that ``DetectionComparison``'s allowances cover: at the cut of a full output, or tied in
    score with another detection of its class."""
    if at_cap and detections.scores[i] <= cut:
        return True
    same = (detections.labels == detections.labels[i]) & (np.abs(detections.scores - detections.scores[i]) <= TIE)
    return int(same.sum()) > 1


def compare_detections(
    reference: Detections,
    actual: Detections,
    *,
    iou: float = 0.99,
    score_tolerance: float = 1e-3,
    cap: int | None = None,
) -> DetectionComparison:
    """``actual`` against ``reference`` (see ``DetectionComparison``); ``cap``: the detector's maximum number of
    detections per image (torchvision's ``box_detections_per_img``)."""
    pairs = [(i, j) for i, j in enumerate(match(reference, actual, iou, score_tolerance)) if j >= 0]
    tolerated = 0
    if len(reference) == len(actual) and len(pairs) < len(reference):
        at_cap = cap is not None and len(reference) == cap
        cut = min(float(reference.scores.min()), float(actual.scores.min())) + score_tolerance
        unmatched_ref = sorted(set(range(len(reference))) - {i for i, _ in pairs})
        unmatched_act = sorted(set(range(len(actual))) - {j for _, j in pairs})
        if all(_explained(reference, i, at_cap, cut) for i in unmatched_ref) and all(
            _explained(actual, j, at_cap, cut) for j in unmatched_act
        ):
            tolerated = len(unmatched_ref)
    overlaps = box_iou(reference.boxes, actual.boxes)
    ious = [overlaps[i, j] for i, j in pairs]  # the plain IoU, as reported
    diffs = [abs(float(reference.scores[i]) - float(actual.scores[j])) for i, j in pairs]
    return DetectionComparison(
        len(reference), len(actual), len(pairs), float(min(ious, default=1.0)), float(max(diffs, default=0.0)), iou,
        score_tolerance, tolerated,
    )  # fmt: skip


def f1_score(reference: Detections, actual: Detections, iou: float = 0.5) -> float:
    """F1 of ``actual`` against ``reference`` taken as ground truth (same label, IoU >= ``iou``, one-to-one): the
    INT8 gate of a detector (INT8 boxes against FP32 boxes). 1.0 when both are empty."""
    if not len(reference) and not len(actual):
        return 1.0
    hits = sum(j >= 0 for j in match(reference, actual, iou))
    return 2 * hits / (len(reference) + len(actual))


def letterbox(photo: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """``photo`` (H, W, 3) uint8 scaled to fit ``size`` (H, W) keeping its aspect, padded with black at the bottom and
    right: (the canvas, the scale). ``unletterbox`` maps boxes on the canvas back to the photo."""
    from PIL import Image

    height, width = photo.shape[:2]
    scale = min(size[0] / height, size[1] / width)
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = np.asarray(Image.fromarray(np.asarray(photo, np.uint8)).resize(new, Image.Resampling.BILINEAR))
    canvas = np.zeros((*size, 3), np.uint8)
    canvas[: new[1], : new[0]] = resized[..., :3] if resized.ndim == 3 else resized[..., None]
    return canvas, scale


def unletterbox(boxes: np.ndarray, scale: float, photo_size: tuple[int, int]) -> np.ndarray:
    """Boxes on a ``letterbox`` canvas -> boxes on the photo (H, W), clipped to it."""
    out = np.asarray(boxes, np.float32) / scale
    return np.clip(out, 0, [photo_size[1], photo_size[0], photo_size[1], photo_size[0]]).astype(np.float32)


def draw_detections(
    image: np.ndarray, detections: Detections, names: list[str] | None = None, *, threshold: float = 0.0
) -> np.ndarray:
    """A copy of ``image`` (H, W, 3 uint8 RGB) with each detection above ``threshold`` drawn: a box in its class's
    colour and a "name score" caption."""
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    shown = detections.above(threshold)
    for box, score, label in zip(shown.boxes, shown.scores, shown.labels, strict=True):
        hue = (int(label) * 0.618034) % 1.0  # golden-ratio hues: neighbouring class indices get distinct colours
        colour = tuple(int(255 * c) for c in _hsv_to_rgb(hue, 0.85, 0.95))
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=2)
        name = names[int(label)] if names and int(label) < len(names) else str(int(label))
        text = f"{name} {float(score):.2f}"
        left, top, right, bottom = draw.textbbox((x1, y1), text)
        draw.rectangle((left, top, right + 2, bottom), fill=colour)
        draw.text((x1 + 1, y1), text, fill=(0, 0, 0))
    return np.asarray(canvas)


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
