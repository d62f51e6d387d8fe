"""The TensorRT form of a Faster R-CNN: fixed input size, constant K everywhere, no ``If``, padded outputs.

torchvision's detector, exported as it is, keeps whatever survives each threshold and NMS (data-dependent shapes),
picks RoIAlign's pyramid level per box with one branch per level (``If`` nodes TensorRT rejects) and sorts with TopK
whose K comes from a shape. ``FixedSizeDetector`` runs the same modules (same weights, same arithmetic) with every
count fixed by the export size:

- RPN: per pyramid level, the top ``min(pre_nms_top_n, anchors of the level)`` anchors (a constant at a fixed size);
  boxes that torchvision drops (too small, below the objectness threshold) get the score -1 instead; NMS per level is
  one ONNX ``NonMaxSuppression`` with the levels as its classes; the kept boxes' scores are scattered back into the
  constant-length vector and the top ``post_nms_top_n`` of it are the proposals (padding: score -1, marked invalid);
- RoI pooling: ONNX ``RoiAlign`` on every pyramid level for every proposal, each proposal keeping the level
  torchvision's ``LevelMapper`` gives it (a mask, not a branch); RoI max pooling for the paper's single-map detectors;
- detections: per-class boxes and scores, NMS per class as one ``NonMaxSuppression`` whose batch axis is the class,
  then the top ``box_detections_per_img`` scores. Outputs: ``boxes`` (D, 4), ``scores`` (D,), ``labels`` (D,) and
  ``count`` (1,): the first ``count`` rows are the detections, the rest zeros.

TensorRT's ONNX parser imports ``NonMaxSuppression`` as its NMS layer (8.5+) and ``RoiAlign`` as the ROIAlign_TRT plugin
(version 2 since TensorRT 10.1); ``ScatterElements`` and ``TopK`` with a constant K are native layers. The paper's
VGG-16 and ZF detectors pool with ONNX ``MaxRoiPool``, which ONNX Runtime runs but TensorRT's parser does not list:
their fixed form needs a TensorRT plugin for it (not written here). An input of another size is letterboxed to the
export size (``edgeconv.boxes.letterbox``): scaled to fit, padded at the bottom and right; ``unletterbox`` maps the
boxes back.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edgeconv.zoo.detection import FasterRCNN, RoIMaxPool, torchvision_module

FIXED_OUTPUTS = ("boxes", "scores", "labels", "count")
_INVALID = -1.0  # the score of a box torchvision would have dropped; below every probability


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` (boxes (B, N, 4) x1 y1 x2 y2, scores (B, C, N)): eager, torchvision's ``nms`` per
    (batch, class) over the boxes scoring above ``score_threshold``; exported, the ONNX op. Returns the selected
    (batch, class, box) triples, (S, 3) int64."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, boxes: torch.Tensor, scores: torch.Tensor, max_per_class: int, iou: float, score_threshold: float
    ) -> torch.Tensor:
        ops = torchvision_module("ops")
        selected = []
        for b in range(scores.shape[0]):
            for c in range(scores.shape[1]):
                candidates = torch.where(scores[b, c] > score_threshold)[0]
                keep = candidates[ops.nms(boxes[b, candidates], scores[b, c, candidates], iou)][:max_per_class]
                selected.append(torch.stack((torch.full_like(keep, b), torch.full_like(keep, c), keep), dim=1))
        return torch.cat(selected) if selected else torch.zeros(0, 3, dtype=torch.int64)

    @staticmethod
    def symbolic(g: Any, boxes: Any, scores: Any, max_per_class: int, iou: float, score_threshold: float) -> Any:
        def const(value: Any, dtype: torch.dtype) -> Any:
            return g.op("Constant", value_t=torch.tensor([value], dtype=dtype))

        return g.op(
            "NonMaxSuppression", boxes, scores, const(max_per_class, torch.int64), const(iou, torch.float32),
            const(score_threshold, torch.float32),
        )  # fmt: skip


def non_max_suppression(
    boxes: torch.Tensor, scores: torch.Tensor, max_per_class: int, iou: float, score_threshold: float
) -> torch.Tensor:
    return _NonMaxSuppression.apply(boxes, scores, max_per_class, iou, score_threshold)


def _box_decode(box_coder: Any, deltas: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """torchvision's ``BoxCoder.decode_single``: ``deltas`` (N, 4k) against ``boxes`` (N, 4) -> (N, k, 4)."""
    return box_coder.decode_single(deltas, boxes).reshape(deltas.shape[0], -1, 4)


def _clip(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return torch.stack(
        (boxes[..., 0].clamp(0, width), boxes[..., 1].clamp(0, height), boxes[..., 2].clamp(0, width),
         boxes[..., 3].clamp(0, height)),
        dim=-1,
    )  # fmt: skip


def _big_enough(boxes: torch.Tensor, min_size: float) -> torch.Tensor:
    return ((boxes[..., 2] - boxes[..., 0]) >= min_size) & ((boxes[..., 3] - boxes[..., 1]) >= min_size)


def _keep_mask(index: torch.Tensor, length: int) -> torch.Tensor:
    """A boolean (length,) vector, True at ``index`` (the boxes NMS kept): a scatter, so the length stays constant."""
    return torch.zeros(length).scatter(0, index, torch.ones_like(index, dtype=torch.float32)) > 0


class FixedSizeDetector(nn.Module):
    """A zoo ``FasterRCNN`` at one input size (H, W) with constant shapes throughout (see the module docstring).

    ``forward(image (1, 3, H, W) RGB in [0, 1])`` -> ``boxes (D, 4), scores (D,), labels (D,), count (1,)``, D =
    the detector's ``box_detections_per_img``; rows past ``count`` are zeros. The first ``count`` rows equal what the
    detector itself returns for the same image.
    """

    detector: FasterRCNN

    def __init__(self, detector: FasterRCNN, image_size: tuple[int, int]) -> None:
        super().__init__()
        self.detector = detector.eval()
        self.image_size = (int(image_size[0]), int(image_size[1]))
        probe = torch.zeros(1, 3, *self.image_size)
        with torch.no_grad():
            images = detector.preprocess(probe)
            features = detector.backbone(images.tensors)
        if isinstance(features, torch.Tensor):
            features = {"0": features}
        self.resized = tuple(int(v) for v in images.image_sizes[0])
        self.level_anchors = [
            int(f.shape[-2] * f.shape[-1]) * detector.rpn.anchor_generator.num_anchors_per_location()[0]
            for f in features.values()
        ]
        pool = detector.roi_heads.box_roi_pool
        if isinstance(pool, RoIMaxPool):
            self.pool_names, self.pool_scales, self.levels = ["0"], [pool.spatial_scale], None
        else:
            poolers = torchvision_module("ops.poolers")
            names = [k for k in features if k in pool.featmap_names]
            canonical = (getattr(pool, "canonical_scale", 224), getattr(pool, "canonical_level", 4))
            scales, mapper = poolers._setup_scales([features[k] for k in names], [self.resized], *canonical)
            self.pool_names, self.pool_scales = names, scales
            self.levels = (mapper.k_min, mapper.k_max, mapper.s0, mapper.lvl0, mapper.eps)

    @property
    def detections(self) -> int:
        return int(self.detector.roi_heads.detections_per_img)

    def proposals(self, images: Any, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The RPN's top ``post_nms_top_n`` proposals (K, 4) and which of them are real (K,) (the rest: padding)."""
        rpn = self.detector.rpn
        rpn_module = torchvision_module("models.detection.rpn")
        feature_list = list(features.values())
        objectness, deltas = rpn.head(feature_list)
        anchors = rpn.anchor_generator(images, feature_list)[0]
        objectness, deltas = rpn_module.concat_box_prediction_layers(objectness, deltas)
        boxes = rpn.box_coder.decode(deltas.detach(), [anchors]).reshape(-1, 4)
        objectness = objectness.reshape(-1)
        top, level_of = [], []
        offset = 0
        for level, count in enumerate(self.level_anchors):
            k = min(rpn.pre_nms_top_n(), count)
            top.append(objectness[offset : offset + count].topk(k).indices + offset)
            level_of.append(torch.full((k,), level, dtype=torch.int64))
            offset += count
        index = torch.cat(top)
        levels = torch.cat(level_of)
        boxes = _clip(boxes[index], *self.resized)
        scores = torch.sigmoid(objectness[index])
        valid = _big_enough(boxes, rpn.min_size) & (scores >= rpn.score_thresh)
        per_level = torch.stack([torch.where(valid & (levels == lv), scores, _INVALID) for lv in range(len(top))])
        selected = non_max_suppression(boxes[None], per_level[None], rpn.post_nms_top_n(), rpn.nms_thresh, -0.5)
        kept = torch.where(_keep_mask(selected[:, 2], len(index)), scores, _INVALID)
        k = min(rpn.post_nms_top_n(), len(index))
        best = kept.topk(k)
        return boxes[best.indices], best.values > _INVALID / 2

    def pool(self, features: dict[str, torch.Tensor], proposals: torch.Tensor) -> torch.Tensor:
        """RoI features (K, C, s, s): the proposals pooled from the level each belongs to, as torchvision pools them."""
        ops = torchvision_module("ops")
        heads = self.detector.roi_heads
        rois = torch.cat((torch.zeros_like(proposals[:, :1]), proposals), dim=1)
        if self.levels is None:
            pool = heads.box_roi_pool
            return ops.roi_pool(features["0"], rois, pool.output_size, pool.spatial_scale)
        k_min, k_max, s0, lvl0, eps = self.levels
        area = (proposals[:, 2] - proposals[:, 0]) * (proposals[:, 3] - proposals[:, 1])
        level = torch.floor(lvl0 + torch.log2(torch.sqrt(area) / s0) + eps).clamp(k_min, k_max) - k_min
        pooled = torch.zeros(())
        size = heads.box_roi_pool.output_size
        ratio = heads.box_roi_pool.sampling_ratio
        for lv, (name, scale) in enumerate(zip(self.pool_names, self.pool_scales, strict=True)):
            level_pooled = ops.roi_align(features[name], rois, size, spatial_scale=scale, sampling_ratio=ratio)
            pooled = pooled + level_pooled * (level == lv).to(level_pooled.dtype)[:, None, None, None]
        return pooled

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        detector, heads = self.detector, self.detector.roi_heads
        images = detector.preprocess(image)
        features = detector.backbone(images.tensors)
        if isinstance(features, torch.Tensor):
            features = {"0": features}
        proposals, real = self.proposals(images, features)
        hidden = heads.box_head(self.pool(features, proposals))
        logits, deltas = heads.box_predictor(hidden)
        boxes = _clip(_box_decode(heads.box_coder, deltas, proposals), *self.resized)[:, 1:]  # (K, C - 1, 4)
        scores = torch.softmax(logits, -1)[:, 1:]
        valid = _big_enough(boxes, 1e-2) & real[:, None]
        scores = torch.where(valid, scores, _INVALID)
        classes = scores.shape[1]
        selected = non_max_suppression(
            boxes.transpose(0, 1), scores.t()[:, None, :], self.detections, heads.nms_thresh, heads.score_thresh
        )  # batch = class: each class's boxes against each other
        flat = selected[:, 0] * proposals.shape[0] + selected[:, 2]  # (class, proposal) -> index into (C - 1) x K
        kept = torch.where(_keep_mask(flat, classes * proposals.shape[0]), scores.t().reshape(-1), _INVALID)
        best = kept.topk(min(self.detections, kept.shape[0]))
        found = best.values > heads.score_thresh
        boxes = boxes.transpose(0, 1).reshape(-1, 4)[best.indices]
        scale = torch.tensor(
            [self.image_size[1] / self.resized[1], self.image_size[0] / self.resized[0]] * 2, dtype=boxes.dtype
        )
        labels = torch.div(best.indices, proposals.shape[0], rounding_mode="floor") + 1
        zero = torch.zeros((), dtype=boxes.dtype)
        return (
            torch.where(found[:, None], boxes * scale, zero),
            torch.where(found, best.values, zero),
            torch.where(found, labels, torch.zeros_like(labels)),
            found.sum().reshape(1),
        )


def fixed_sizes_are_static(proto: Any) -> bool:
    """Every graph output has only fixed dimensions, and there is no ``If`` node (the TensorRT form's contract)."""
    outputs_fixed = all(d.HasField("dim_value") for o in proto.graph.output for d in o.type.tensor_type.shape.dim)
    return outputs_fixed and not any(n.op_type in ("If", "Loop") for n in proto.graph.node)
