"""Exporting detectors (``edgeconv.zoo.detection``) to ONNX and validating them against PyTorch on real photos.

The ONNX Runtime form of a Faster R-CNN is the whole detector in one graph: input ``image`` (1, 3, H, W) RGB in
[0, 1] at any size, resize and normalization inside, outputs ``boxes`` (N, 4), ``scores`` (N,), ``labels`` (N,) with
N >= 0 (zero detections is an empty output, not an error). It is written by the TorchScript exporter: torchvision's
detectors have data-dependent shapes (how many boxes survive each threshold and NMS) that the torch.export-based
exporter does not trace.

Fast R-CNN's graph has two inputs, ``image`` (1, 3, H, W) normalized and ``rois`` (R, 4), and two outputs, ``scores``
(R, C) and ``boxes`` (R, C, 4); its RoI pooling is ONNX ``MaxRoiPool``.

Validation: on each photo at its own size, every PyTorch detection is matched by an ONNX detection of the same class
with IoU >= 0.99 and score within 1e-3, and there are no extra ONNX detections (``edgeconv.boxes``).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeconv.boxes import DetectionComparison, Detections, compare_detections
from edgeconv.errors import ExportError, InvalidArgumentError

logger = logging.getLogger(__name__)

DETECTION_OPSET = 17
# The export check's photos: the classifiers' four and a square micrograph, on which the seeded random detectors find
# nothing in either form (chelsea too, at its own size): both forms are checked on an empty output as well.
DETECTION_PHOTOS = ("coffee", "chelsea", "astronaut", "rocket", "immunohistochemistry")
FORMS = ("onnxruntime", "tensorrt")
OUTPUTS = ("boxes", "scores", "labels")
ROI_OUTPUTS = ("scores", "boxes")


def photo_tensor(photo: np.ndarray) -> torch.Tensor:
    """An RGB uint8 photo (H, W, 3) (or gray (H, W)) as the detector's input: (1, 3, H, W) float in [0, 1]."""
    array = np.asarray(photo)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(array[..., :3].transpose(2, 0, 1))).float().div(255)[None]


def grid_rois(height: int, width: int, *, scales: Sequence[float] = (0.15, 0.3, 0.5), per_side: int = 4) -> np.ndarray:
    """Fast R-CNN's test RoIs without an external proposer: a ``per_side`` x ``per_side`` grid of square boxes at each
    scale (fraction of the shorter side), clipped to the image: (R, 4) float32 x1, y1, x2, y2."""
    rois = []
    for scale in scales:
        side = scale * min(height, width)
        for cy in np.linspace(side / 2, height - side / 2, per_side):
            for cx in np.linspace(side / 2, width - side / 2, per_side):
                rois.append((cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))
    return np.clip(np.asarray(rois, np.float32), 0, [width, height, width, height]).astype(np.float32)


def resized_photo(photo: np.ndarray, image_size: tuple[int, int]) -> torch.Tensor:
    """``photo`` resized (bilinear, aspect not kept) to the fixed form's ``image_size`` (H, W), as ``photo_tensor``."""
    from PIL import Image

    rgb = Image.fromarray(np.asarray(photo, np.uint8)).convert("RGB")
    return photo_tensor(np.asarray(rgb.resize(image_size[::-1], Image.Resampling.BILINEAR)))


def run_torch_detector(model: nn.Module, image: torch.Tensor) -> Detections:
    with torch.inference_mode():
        boxes, scores, labels = model(image)
    return Detections.of(boxes.numpy(), scores.numpy(), labels.numpy())


def run_onnx_detector(session: Any, image: np.ndarray, fixed: bool = False) -> Detections:
    """One image through an exported detector's session; ``fixed``: the TensorRT form, whose padded outputs hold
    ``count`` detections."""
    if not fixed:
        boxes, scores, labels = session.run(list(OUTPUTS), {"image": image})
        return Detections.of(boxes, scores, labels)
    boxes, scores, labels, count = session.run([*OUTPUTS, "count"], {"image": image})
    found = int(count[0])
    return Detections.of(boxes[:found], scores[:found], labels[:found])


def _export(module: nn.Module, args: tuple[Any, ...], path: Path, what: str, **options: Any) -> Path:
    """``module`` written by the TorchScript exporter (``dynamo=False``) at ``path``; its tracer warnings (Python
    control flow over tensor sizes in torchvision's detection code, which the exporter handles) logged instead of
    printed, and a failure one ``ExportError`` line naming ``what``."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.onnx.export(module.eval(), args, str(path), dynamo=False, do_constant_folding=True, **options)
    except Exception as exc:  # the exporter's own first line is the useful part
        raise ExportError(f"exporting {what} to ONNX failed: {str(exc).splitlines()[0]}") from exc
    for warning in caught:
        logger.debug("export: %s", warning.message)
    return path


def _example(image_size: tuple[int, int]) -> torch.Tensor:
    """The image the exporter traces with: a real photo (coffee) at ``image_size``. Not noise: a trained detector finds
    no proposal above its RPN score threshold on noise, and a trace through empty tensors writes their shapes into
    the graph as constants (a trained MobileNetV2 Faster R-CNN's export then failed in the box head's Reshape)."""
    from edgeconv.export import validation_images

    return resized_photo(validation_images(["coffee"])[0], image_size)


def export_detector(
    model: nn.Module, path: str | os.PathLike[str], image_size: tuple[int, int], *, opset: int = DETECTION_OPSET
) -> Path:
    """Write ``model`` (a zoo ``FasterRCNN``) as the ONNX Runtime form: one graph, dynamic image size, traced at
    ``image_size`` (H, W)."""
    dynamic = {"image": {2: "height", 3: "width"}, **{name: {0: "detections"} for name in OUTPUTS}}
    return _export(
        model, (_example(image_size),), Path(path), type(model).__name__, opset_version=opset,
        input_names=["image"], output_names=list(OUTPUTS), dynamic_axes=dynamic,
    )  # fmt: skip


def export_fixed_detector(
    model: nn.Module, path: str | os.PathLike[str], image_size: tuple[int, int], *, opset: int = DETECTION_OPSET
) -> Path:
    """Write the TensorRT form of ``model`` (a zoo ``FasterRCNN``, ``edgeconv.fixed_detector``): input ``image``
    (1, 3, H, W) at ``image_size``, outputs ``boxes`` (D, 4), ``scores`` (D,), ``labels`` (D,), ``count`` (1,), every
    shape constant and no ``If`` node; checked before it is kept."""
    import onnx
    import onnxslim

    from edgeconv.fixed_detector import FIXED_OUTPUTS, FixedSizeDetector, fixed_sizes_are_static
    from edgeconv.onnxgraph import inferred_structure

    path = Path(path)
    fixed = FixedSizeDetector(model, image_size)  # type: ignore[arg-type]  # a zoo FasterRCNN
    what = f"the TensorRT form of {type(model).__name__}"
    _export(fixed, (_example(image_size),), path, what, opset_version=opset, input_names=["image"],
            output_names=list(FIXED_OUTPUTS))  # fmt: skip
    # onnxslim folds what the fixed size decides: shape arithmetic, and the If nodes the exporter writes for
    # squeezes of dims it could not see (LocalResponseNorm's decomposition in the ZF trunk).
    slim = onnxslim.slim(onnx.load(str(path)))
    if not fixed_sizes_are_static(inferred_structure(slim)):
        raise ExportError(f"{path}: the TensorRT form has a dynamic output shape or an If node (a bug in edgeconv)")
    onnx.save(slim, str(path))
    return path


def export_roi_detector(
    model: nn.Module, path: str | os.PathLike[str], image_size: tuple[int, int], *, opset: int = DETECTION_OPSET
) -> Path:
    """Write Fast R-CNN: inputs ``image`` (1, 3, H, W) and ``rois`` (R, 4), both sizes dynamic."""
    rois = torch.from_numpy(grid_rois(*image_size))
    dynamic = {"image": {2: "height", 3: "width"}, "rois": {0: "rois"}, "scores": {0: "rois"}, "boxes": {0: "rois"}}
    return _export(
        model, (_example(image_size), rois), Path(path), type(model).__name__, opset_version=opset,
        input_names=["image", "rois"], output_names=list(ROI_OUTPUTS), dynamic_axes=dynamic,
    )  # fmt: skip


def _cap(model: nn.Module) -> int:
    return int(model.roi_heads.detections_per_img)  # type: ignore[union-attr, arg-type]


def validate_detector(
    path: str | os.PathLike[str], model: nn.Module, photos: Sequence[np.ndarray], names: Sequence[str]
) -> dict[str, DetectionComparison]:
    """Each photo at its own size through PyTorch and the ONNX file: one ``DetectionComparison`` per photo name."""
    from edgeconv.onnxgraph import session

    runner = session(path)
    results = {}
    for name, photo in zip(names, photos, strict=True):
        image = photo_tensor(photo)
        expected, actual = run_torch_detector(model, image), run_onnx_detector(runner, image.numpy())
        results[name] = compare_detections(expected, actual, cap=_cap(model))
    return results


def validate_fixed_detector(
    path: str | os.PathLike[str],
    model: nn.Module,
    photos: Sequence[np.ndarray],
    names: Sequence[str],
    image_size: tuple[int, int],
) -> dict[str, DetectionComparison]:
    """The TensorRT form on each photo resized to its fixed ``image_size`` against the detector itself on the same
    input: the first ``count`` rows of its padded outputs are the detections.

    Resized, not letterboxed as ``Engine.detect`` feeds it: a letterbox's flat padding gives a random detector boxes
    with exactly tied scores, and NMS keeps whichever tied box it meets first, an order runtimes do not share, so the
    two sides would differ where exact arithmetic has no answer either."""
    from edgeconv.onnxgraph import session

    runner = session(path)
    results = {}
    for name, photo in zip(names, photos, strict=True):
        image = resized_photo(photo, image_size)
        actual = run_onnx_detector(runner, image.numpy(), fixed=True)
        results[name] = compare_detections(run_torch_detector(model, image), actual, cap=_cap(model))
    return results


def validate_roi_detector(
    path: str | os.PathLike[str], model: nn.Module, images: Sequence[np.ndarray], *, tolerance: float = 1e-4
) -> dict[str, float]:
    """Fast R-CNN on normalized images (1, 3, H, W) with grid RoIs: the largest absolute differences of the class
    probabilities and of the boxes (in pixels, relative to the image's longer side), and whether both are within
    ``tolerance``."""
    from edgeconv.onnxgraph import session

    runner = session(path)
    worst_scores = worst_boxes = 0.0
    for image in images:
        rois = grid_rois(*image.shape[-2:])
        with torch.inference_mode():
            scores, boxes = (t.numpy() for t in model(torch.from_numpy(image), torch.from_numpy(rois)))
        got_scores, got_boxes = runner.run(list(ROI_OUTPUTS), {"image": image, "rois": rois})
        worst_scores = max(worst_scores, float(np.abs(got_scores - scores).max()))
        worst_boxes = max(worst_boxes, float(np.abs(got_boxes - boxes).max()) / max(image.shape[-2:]))
    return {
        "max_abs_diff_scores": worst_scores,
        "max_rel_diff_boxes": worst_boxes,
        "tolerance": tolerance,
        "passed": worst_scores <= tolerance and worst_boxes <= tolerance,
    }


def check_form(form: str) -> str:
    """A detector's export form (``--target``), or one line naming the choices."""
    if form not in FORMS:
        raise InvalidArgumentError(f"--target {form!r} is not one of {', '.join(FORMS)} for a detector")
    return form
