"""Region-based detectors of seed 004: Fast R-CNN (Girshick 2015) and Faster R-CNN (Ren et al. 2015).

- ``fast_rcnn_vgg16``: VGG-16's conv trunk (stride 16), RoI max pooling to 7x7, fc6/fc7, class scores and per-class
  box regression. Inputs: an image and a list of RoIs (x1, y1, x2, y2 in input pixels); outputs per RoI: class
  probabilities (R, C) and one decoded box per class (R, C, 4). RoI pooling is torchvision's ``roi_pool``, which exports
  as ONNX ``MaxRoiPool`` (ONNX Runtime has a CPU kernel for it).
- ``fasterrcnn_resnet50_fpn``, ``fasterrcnn_mobilenet_v3_large_fpn``, ``fasterrcnn_mobilenet_v3_large_320_fpn``:
  torchvision's detectors, built from torchvision's parts with the normalization layer of its COCO checkpoints
  (``FrozenBatchNorm2d``), so their ``state_dict`` keys and parameter counts are torchvision's and its checkpoints load
  key for key.
- ``fasterrcnn_vgg16``, ``fasterrcnn_zf``: the paper's single-scale detectors (shorter side 600, at most 1000): one
  stride-16 feature map, an RPN with 9 anchors (3 scales x 3 ratios), 300 proposals at test time, RoI max pooling
  (7x7 on VGG-16, 6x6 on ZF) and the two 4096-d fc layers.

Every Faster R-CNN here is an ``edgeconv`` ``FasterRCNN``: torchvision's transform, backbone, RPN and RoI heads as
its children (torchvision's module names), with a tensor interface: ``model(images)``, images (1, 3, H, W) RGB in
[0, 1] at any size, returns ``(boxes (N, 4), scores (N,), labels (N,))`` in input pixels. The detector resizes and
normalizes inside (the whole pipeline, pre-processing to final boxes, is one graph when exported).

torchvision is needed to build these models (``pip install torchvision``; in the dev extras).
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar, cast

import torch
from torch import nn

from edgeconv.errors import InvalidArgumentError
from edgeconv.zoo.alexnet import _zfnet_rows, make_features
from edgeconv.zoo.registry import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, Paper, PaperFigures, register_model
from edgeconv.zoo.vgg import VGG_CONFIGS, make_layers

GIRSHICK_2015 = Paper("R. Girshick", 2015, "Fast R-CNN")
REN_2015 = Paper(
    "S. Ren, K. He, R. Girshick, J. Sun", 2015, "Faster R-CNN: Towards Real-Time Object Detection with Region Proposal "
    "Networks"
)  # fmt: skip
LIN_2017 = Paper(
    "T.-Y. Lin, P. Dollar, R. Girshick, K. He, B. Hariharan, S. Belongie", 2017,
    "Feature Pyramid Networks for Object Detection",
)  # fmt: skip

COCO_CLASSES = 91  # torchvision's COCO category indices (0 = background, 80 used)
VOC_CLASSES = 21  # PASCAL VOC: background + 20
NO_NORMALIZATION = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # the detector normalizes inside: its input is RGB in [0, 1]
# py-faster-rcnn's BBOX_NORMALIZE_STDS: box deltas are regressed in units of (0.1, 0.1, 0.2, 0.2)
BOX_DELTA_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def torchvision_module(name: str) -> Any:
    """``torchvision.<name>``, or one line saying how to install torchvision."""
    try:
        return importlib.import_module(f"torchvision.{name}")
    except ImportError as exc:
        raise InvalidArgumentError(
            f"the detectors are built from torchvision's parts and torchvision is not installed ({exc}); "
            "install it with `pip install torchvision` (the version that matches your torch)"
        ) from None


# ---------------------------------------------------------------------------------------------------------------------
# Trunks: VGG-16 and ZF conv layers up to conv5 (stride 16, the last pool dropped), as in both papers
# ---------------------------------------------------------------------------------------------------------------------
def vgg16_trunk() -> nn.Sequential:
    features = make_layers(VGG_CONFIGS["vgg16"][1])
    return nn.Sequential(*list(features)[:-1])  # conv5_3 + ReLU: stride 16, 512 channels


def zf_trunk() -> nn.Sequential:
    # The Faster R-CNN ZF model pads conv1 by 3 and conv2 by 2 (Caffe prototxt): stride 16 with even-sized maps.
    rows = _zfnet_rows(wide=False)
    features = make_features(rows, ceil_pool=True)
    layers = list(features)[:-1]  # conv5 + ReLU: 256 channels
    cast(nn.Conv2d, layers[0]).padding, cast(nn.Conv2d, layers[4]).padding = (3, 3), (2, 2)
    return nn.Sequential(*layers)


TRUNKS = {"vgg16": (vgg16_trunk, 512, 7), "zf": (zf_trunk, 256, 6)}  # builder, channels, RoI pool size


def _trunk(name: str) -> tuple[nn.Sequential, int, int]:
    if name not in TRUNKS:
        raise InvalidArgumentError(f"trunk {name!r} is not one of {', '.join(TRUNKS)}")
    build, channels, pool = TRUNKS[name]
    return build(), channels, pool


def fc_head(in_features: int, hidden: int = 4096, dropout: float = 0.5) -> nn.Sequential:
    """fc6 / fc7: flatten, two 4096-d fully connected layers with ReLU and dropout (VGG's classifier)."""
    return nn.Sequential(
        nn.Flatten(1),
        nn.Linear(in_features, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
    )


# ---------------------------------------------------------------------------------------------------------------------
# Fast R-CNN
# ---------------------------------------------------------------------------------------------------------------------
class FastRCNN(nn.Module):
    """Fast R-CNN at test time: trunk -> RoI max pool -> fc6/fc7 -> (softmax class scores, per-class boxes).

    ``forward(image (1, 3, H, W) normalized, rois (R, 4) in input pixels)`` returns ``scores (R, C)`` and ``boxes
    (R, C, 4)``: each RoI's box refined for every class and clipped to the image. Per-class NMS stays with the caller,
    as in the paper (the RoIs come from an external proposer: selective search, edge boxes, a grid).
    """

    def __init__(self, *, trunk: str = "vgg16", num_classes: int = VOC_CLASSES, dropout: float = 0.5) -> None:
        super().__init__()
        # torchvision imported now, not first inside a traced forward (its import runs ops)
        self.box_coder = torchvision_module("models.detection._utils").BoxCoder(BOX_DELTA_WEIGHTS)
        self.features, channels, self.pool_size = _trunk(trunk)
        self.spatial_scale = 1.0 / 16
        self.head = fc_head(channels * self.pool_size**2, dropout=dropout)
        self.cls_score = nn.Linear(4096, num_classes)
        self.bbox_pred = nn.Linear(4096, 4 * num_classes)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, image: torch.Tensor, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ops = torchvision_module("ops")
        features = self.features(image)
        batch_index = torch.zeros_like(rois[:, :1])
        pooled = ops.roi_pool(features, torch.cat((batch_index, rois), 1), self.pool_size, self.spatial_scale)
        hidden = self.head(pooled)
        scores = torch.softmax(self.cls_score(hidden), dim=1)
        boxes = self.box_coder.decode_single(self.bbox_pred(hidden), rois).reshape(rois.shape[0], -1, 4)
        clipped = ops.clip_boxes_to_image(boxes.reshape(-1, 4), image.shape[-2:])
        return scores, clipped.reshape(boxes.shape)


def fast_rcnn_vgg16(*, num_classes: int = VOC_CLASSES, dropout: float = 0.5) -> FastRCNN:
    return FastRCNN(trunk="vgg16", num_classes=num_classes, dropout=dropout)


# ---------------------------------------------------------------------------------------------------------------------
# Faster R-CNN
# ---------------------------------------------------------------------------------------------------------------------
class FasterRCNN(nn.Module):
    """torchvision's Faster R-CNN at test time with a tensor interface.

    Children, named as torchvision's ``GeneralizedRCNN`` names them (its checkpoints load strictly): ``transform``
    (resize + normalize), ``backbone``, ``rpn``, ``roi_heads``. ``forward(images)``: images (1, 3, H, W) RGB in [0, 1];
    returns ``boxes (N, 4)`` (x1, y1, x2, y2 in input pixels), ``scores (N,)`` and ``labels (N,)`` (int64), N >= 0.
    """

    # torchvision's modules, typed loosely: their methods (postprocess, pre_nms_top_n ...) are what is used
    transform: Any
    backbone: Any
    rpn: Any
    roi_heads: Any

    def __init__(self, detector: Any) -> None:
        super().__init__()
        self.transform = detector.transform
        self.backbone = detector.backbone
        self.rpn = detector.rpn
        self.roi_heads = detector.roi_heads

    @property
    def min_size(self) -> int:
        return int(self.transform.min_size[-1])

    @property
    def max_size(self) -> int:
        return int(self.transform.max_size)

    def resized_size(self, images: torch.Tensor) -> tuple[Any, Any]:
        """The (H, W) the detector resizes to: the shorter side to ``min_size`` unless the longer one would pass
        ``max_size``; floor(side x scale), as torchvision's eager ``interpolate(scale_factor=...)`` rounds it.

        Traced (ONNX export), the size is computed in the graph, in float32 with a 1e-3 margin before the floor: the
        exported division can land just under a whole number (320 / 400 x 400 = 319.99998), and the graph would then
        make 319 rows where PyTorch makes 320 (torchvision's own export does)."""
        if torch.jit.is_tracing():
            shape = torch._shape_as_tensor(images)[-2:].to(torch.float32)
            scale = torch.minimum(self.min_size / shape.min(), self.max_size / shape.max())
            size = torch.floor(shape * scale + 1e-3).to(torch.int64)
            return size[0], size[1]
        height, width = images.shape[-2:]
        factor = min(self.min_size / min(height, width), self.max_size / max(height, width))
        return int(height * factor), int(width * factor)

    def preprocess(self, images: torch.Tensor) -> Any:
        """Normalize, resize (``resized_size``, ``resize_bilinear``), pad to a multiple of 32: torchvision's
        ``GeneralizedRCNNTransform`` at test time. Returns torchvision's ``ImageList``."""
        image_list_module = importlib.import_module("torchvision.models.detection.image_list")
        image = self.transform.normalize(images[0])
        size = self.resized_size(images)
        image = resize_bilinear(image, size)
        batched = self.transform.batch_images([image], size_divisible=self.transform.size_divisible)
        return image_list_module.ImageList(batched, [size])

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if images.dim() != 4 or images.shape[0] != 1:
            raise InvalidArgumentError(f"a detector takes one image (1, 3, H, W), got {tuple(images.shape)}")
        original_size = [(int(images.shape[-2]), int(images.shape[-1]))]
        if torch.jit.is_tracing():
            original_size = [images.shape[-2:]]  # type: ignore[list-item]  # traced: the size stays symbolic
        image_list = self.preprocess(images)
        features = self.backbone(image_list.tensors)
        if isinstance(features, torch.Tensor):
            features = OrderedDict([("0", features)])
        proposals, _ = self.rpn(image_list, features)
        detections, _ = self.roi_heads(features, proposals, image_list.image_sizes)
        detections = self.transform.postprocess(detections, image_list.image_sizes, original_size)
        return detections[0]["boxes"], detections[0]["scores"], detections[0]["labels"]


def dead_leaves(size: tuple[int, int], generator: torch.Generator, leaves: int = 400) -> torch.Tensor:
    """A random RGB image in [0, 1] of the "dead leaves" model of natural images (Lee, Mumford & Huang 2001):
    flat-coloured discs with power-law radii laid over each other. Sharp edges at every scale, as photos have, and no
    photo needed."""
    height, width = size
    rows = torch.arange(height, dtype=torch.float32)[:, None]
    cols = torch.arange(width, dtype=torch.float32)[None, :]
    image = torch.rand(3, 1, 1, generator=generator).expand(3, height, width).clone()
    smallest, largest = 2.0, max(size) / 4
    for _ in range(leaves):
        u = float(torch.rand((), generator=generator))
        radius = smallest * (largest / smallest) ** u  # density 1/r: as many small leaves per octave as large ones
        y, x = float(torch.rand((), generator=generator)) * height, float(torch.rand((), generator=generator)) * width
        inside = (rows - y) ** 2 + (cols - x) ** 2 <= radius**2
        image[:, inside] = torch.rand(3, 1, generator=generator)
    return image[None]


# Output spread of the layers that rank boxes, for a random init that detects something (see ``wake``).
_WAKE_STD = {"rpn.head.cls_logits": 2.0, "rpn.head.bbox_pred": 0.3, "cls_score": 0.5, "bbox_pred": 0.3}


Detector = TypeVar("Detector", bound=nn.Module)


@torch.no_grad()
def wake(model: Detector, size: tuple[int, int] = (320, 320), seed: int = 0) -> Detector:
    """Make a randomly initialized detector rank its boxes as a trained one does: distinct scores, not ties.

    torchvision's random init with the frozen BatchNorm of its checkpoints (identity statistics) lets activations fade
    to constants, so every image gets the same near-uniform scores (0.0114 for all 91 classes): nothing to validate an
    export against. ``wake`` sets each frozen BatchNorm's statistics from its input on one random ``dead_leaves`` image
    (a data-dependent init, as LSUV does), then scales the layers that score and place boxes (RPN objectness and deltas,
    class scores and box deltas): each output centred over the boxes and anchors, then scaled to a fixed spread. Loaded
    weights replace all of it.
    """
    misc = torchvision_module("ops.misc")
    if any(p.is_meta for p in model.parameters()):
        return model
    generator = torch.Generator().manual_seed(seed)
    hooks = []
    scaled: set[nn.Module] = set()  # the RPN head runs once per pyramid level: scale it on the first

    def set_statistics(module: Any, args: tuple[torch.Tensor, ...]) -> None:
        module.running_mean.copy_(args[0].mean(dim=(0, 2, 3)))
        module.running_var.copy_(args[0].var(dim=(0, 2, 3)) + 1e-5)

    def set_spread(module: Any, args: tuple[torch.Tensor, ...], output: Any, target: float) -> Any:
        if module in scaled:
            return output
        scaled.add(module)
        channels = output.transpose(0, 1).reshape(output.shape[1], -1)  # (out channels, samples)
        centre = channels.mean(dim=1)
        scale = target / (float((channels - centre[:, None]).std()) + 1e-12)
        module.weight.mul_(scale)
        module.bias.sub_(centre).mul_(scale)
        shape = (1, -1) + (1,) * (output.dim() - 2)
        return (output - centre.reshape(shape)) * scale

    for name, module in model.named_modules():
        if isinstance(module, misc.FrozenBatchNorm2d):
            hooks.append(module.register_forward_pre_hook(set_statistics))
        target = next((std for key, std in _WAKE_STD.items() if name.endswith(key)), None)
        if target is not None and isinstance(module, (nn.Conv2d, nn.Linear)):
            hooks.append(module.register_forward_hook(lambda m, a, o, t=target: set_spread(m, a, o, t)))
    try:
        model.eval()(dead_leaves(size, generator))
    finally:
        for hook in hooks:
            hook.remove()
    return model


def _source_index(in_size: Any, out_size: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each output row (column): the two input rows it blends and the weight of the second, by PyTorch's
    ``align_corners=False`` rule (source = (i + 0.5) x in / out - 0.5, clamped at 0)."""
    in_f = torch.as_tensor(in_size, dtype=torch.float32)
    scale = in_f / torch.as_tensor(out_size, dtype=torch.float32)
    source = ((torch.arange(out_size, dtype=torch.float32) + 0.5) * scale - 0.5).clamp(min=0)
    last = torch.as_tensor(in_size, dtype=torch.int64) - 1
    first = torch.minimum(source.floor().to(torch.int64), last)
    return first, torch.minimum(first + 1, last), source - first.to(torch.float32)


def resize_bilinear(image: torch.Tensor, size: tuple[Any, Any]) -> torch.Tensor:
    """Bilinear resize of ``image`` (C, H, W) to ``size``, as ``interpolate(mode="bilinear", align_corners=False)``
    computes it, written with gathers so that PyTorch and the exported graph do the same float32 arithmetic.

    ONNX Runtime's ``Resize`` places its samples with other rounding than PyTorch (1e-4 apart on a normalized photo);
    a detector turns that into other proposals, so the export would not match PyTorch box for box."""
    rows0, rows1, row_weight = _source_index(image.shape[-2], size[0])
    cols0, cols1, col_weight = _source_index(image.shape[-1], size[1])
    rows = image.index_select(1, rows0) * (1 - row_weight[:, None]) + image.index_select(1, rows1) * row_weight[:, None]
    return rows.index_select(2, cols0) * (1 - col_weight) + rows.index_select(2, cols1) * col_weight


class RoIMaxPool(nn.Module):
    """The papers' RoI max pooling (torchvision ``roi_pool``, ONNX ``MaxRoiPool``) on the single feature map ``"0"``,
    with the call signature of torchvision's ``MultiScaleRoIAlign`` so that its RoI heads can use it."""

    def __init__(self, output_size: int, spatial_scale: float) -> None:
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale

    def forward(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor], image_shapes: Any) -> Any:
        return torchvision_module("ops").roi_pool(features["0"], proposals, self.output_size, self.spatial_scale)


DETECTOR_OPTIONS = ("min_size", "max_size", "box_score_thresh", "box_nms_thresh", "box_detections_per_img")


def _options(arguments: dict[str, Any]) -> dict[str, Any]:
    """The builder's detector options (``DETECTOR_OPTIONS``) that were given, for torchvision's ``FasterRCNN``:
    ``min_size``: the shorter side the detector resizes to; ``max_size``: the cap on the longer side;
    ``box_score_thresh``: the lowest score kept; ``box_nms_thresh``: per-class NMS IoU; ``box_detections_per_img``."""
    return {k: arguments[k] for k in DETECTOR_OPTIONS if arguments.get(k) is not None}


class _Trunk(nn.Sequential):
    out_channels: int


def _faster_rcnn_paper(trunk: str, num_classes: int, **kwargs: Any) -> FasterRCNN:
    detection = torchvision_module("models.detection")
    anchors = importlib.import_module("torchvision.models.detection.anchor_utils")
    features, channels, pool = _trunk(trunk)
    backbone = _Trunk(*features)
    backbone.out_channels = channels
    head = fc_head(channels * pool**2)
    options: dict[str, Any] = {
        "min_size": 600,
        "max_size": 1000,
        "image_mean": IMAGENET_MEAN,
        "image_std": IMAGENET_STD,
        "rpn_pre_nms_top_n_test": 6000,
        "rpn_post_nms_top_n_test": 300,
        "box_detections_per_img": 100,
        **kwargs,
    }
    detector = detection.FasterRCNN(
        backbone,
        rpn_anchor_generator=anchors.AnchorGenerator(((128, 256, 512),), ((0.5, 1.0, 2.0),)),
        box_head=head,
        box_predictor=detection.faster_rcnn.FastRCNNPredictor(4096, num_classes),
        **options,
    )
    detector.roi_heads.box_roi_pool = RoIMaxPool(pool, 1.0 / 16)  # its constructor accepts only MultiScaleRoIAlign
    return wake(FasterRCNN(detector))


def _resnet50_fpn(num_classes: int, options: dict[str, Any]) -> FasterRCNN:
    """torchvision's ``fasterrcnn_resnet50_fpn`` (v1) with ``FrozenBatchNorm2d``, as its COCO checkpoint has it."""
    models, misc = torchvision_module("models"), torchvision_module("ops.misc")
    backbone_utils = importlib.import_module("torchvision.models.detection.backbone_utils")
    body = models.resnet50(weights=None, norm_layer=misc.FrozenBatchNorm2d)
    backbone = backbone_utils._resnet_fpn_extractor(body, 3)
    return wake(FasterRCNN(models.detection.FasterRCNN(backbone, num_classes=num_classes, **options)))


def _mobilenet_fpn(num_classes: int, options: dict[str, Any], *, low_resolution: bool) -> FasterRCNN:
    """torchvision's MobileNetV3-Large FPN detectors; ``low_resolution``: the 320 one (shorter side 320, 150
    proposals)."""
    models, misc = torchvision_module("models"), torchvision_module("ops.misc")
    backbone_utils = importlib.import_module("torchvision.models.detection.backbone_utils")
    anchors = importlib.import_module("torchvision.models.detection.anchor_utils")
    body = models.mobilenet_v3_large(weights=None, norm_layer=misc.FrozenBatchNorm2d)
    backbone = backbone_utils._mobilenet_extractor(body, True, 3)
    sizes = ((32, 64, 128, 256, 512),) * 3
    generator = anchors.AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * 3)
    defaults: dict[str, Any] = {"rpn_score_thresh": 0.05}
    if low_resolution:
        defaults.update(min_size=320, max_size=640, rpn_pre_nms_top_n_test=150, rpn_post_nms_top_n_test=150)
    detector = models.detection.FasterRCNN(
        backbone, num_classes, rpn_anchor_generator=generator, **{**defaults, **options}
    )
    return wake(FasterRCNN(detector))


def _detector_builder(
    name: str, build: Callable[[int, dict[str, Any]], FasterRCNN], classes: int
) -> Callable[..., FasterRCNN]:
    """A registered builder with the detector options as keywords (``_options``); ``build(num_classes, options)``."""

    def builder(
        *,
        num_classes: int = classes,
        min_size: int | None = None,
        max_size: int | None = None,
        box_score_thresh: float = 0.05,
        box_nms_thresh: float = 0.5,
        box_detections_per_img: int = 100,
    ) -> FasterRCNN:
        return build(num_classes, _options(locals()))

    builder.__name__ = builder.__qualname__ = name
    return builder


fasterrcnn_vgg16 = _detector_builder("fasterrcnn_vgg16", lambda c, o: _faster_rcnn_paper("vgg16", c, **o), VOC_CLASSES)
fasterrcnn_zf = _detector_builder("fasterrcnn_zf", lambda c, o: _faster_rcnn_paper("zf", c, **o), VOC_CLASSES)
fasterrcnn_resnet50_fpn = _detector_builder("fasterrcnn_resnet50_fpn", _resnet50_fpn, COCO_CLASSES)
fasterrcnn_mobilenet_v3_large_fpn = _detector_builder(
    "fasterrcnn_mobilenet_v3_large_fpn", lambda c, o: _mobilenet_fpn(c, o, low_resolution=False), COCO_CLASSES
)
fasterrcnn_mobilenet_v3_large_320_fpn = _detector_builder(
    "fasterrcnn_mobilenet_v3_large_320_fpn", lambda c, o: _mobilenet_fpn(c, o, low_resolution=True), COCO_CLASSES
)


_TORCHVISION_NOTE = (
    "torchvision's count for its COCO checkpoint ({}, FrozenBatchNorm2d: BN statistics and affine terms are buffers); "
    "the paper gives no parameter count."
)

for _name, _builder, _paper, _size, _params, _description in (
    (
        "fasterrcnn_resnet50_fpn", fasterrcnn_resnet50_fpn, LIN_2017, (3, 800, 1333), 41_755_286,
        "Faster R-CNN with a ResNet-50 FPN backbone (torchvision v1): 5 pyramid levels, multi-scale RoIAlign 7x7, "
        "two 1024-d fc layers; shorter side resized to 800 (at most 1333).",
    ),
    (
        "fasterrcnn_mobilenet_v3_large_fpn", fasterrcnn_mobilenet_v3_large_fpn, REN_2015, (3, 800, 1333), 19_386_354,
        "Faster R-CNN with a MobileNetV3-Large FPN backbone (torchvision): 2 feature maps + pool, shorter side 800.",
    ),
    (
        "fasterrcnn_mobilenet_v3_large_320_fpn", fasterrcnn_mobilenet_v3_large_320_fpn, REN_2015, (3, 320, 320),
        19_386_354,
        "The low-resolution MobileNetV3-Large FPN Faster R-CNN (torchvision): shorter side 320, 150 proposals.",
    ),
):  # fmt: skip
    register_model(
        ModelSpec(
            name=_name,
            family="faster_rcnn",
            paper=_paper,
            builder=_builder,
            input_size=_size,
            num_classes=COCO_CLASSES,
            mean=NO_NORMALIZATION[0],
            std=NO_NORMALIZATION[1],
            crop_pct=1.0,
            dataset="coco",
            figures=PaperFigures(params=_params, source="torchvision model docs", note=_TORCHVISION_NOTE.format(_name)),
            torchvision_name=_name,
            description=_description,
            output="detections",
        )
    )

for _name, _builder, _description in (
    (
        "fasterrcnn_vgg16", fasterrcnn_vgg16,
        "The paper's single-scale Faster R-CNN on VGG-16: RPN (9 anchors) on conv5_3, 300 proposals, RoI max pool "
        "7x7, fc6/fc7; shorter side 600 (at most 1000), PASCAL VOC classes.",
    ),
    (
        "fasterrcnn_zf", fasterrcnn_zf,
        "The paper's single-scale Faster R-CNN on ZF: RPN (9 anchors) on conv5, 300 proposals, RoI max pool 6x6, "
        "fc6/fc7; shorter side 600 (at most 1000), PASCAL VOC classes.",
    ),
):  # fmt: skip
    register_model(
        ModelSpec(
            name=_name,
            family="faster_rcnn_paper",
            paper=REN_2015,
            builder=_builder,
            input_size=(3, 600, 800),
            num_classes=VOC_CLASSES,
            mean=NO_NORMALIZATION[0],
            std=NO_NORMALIZATION[1],
            crop_pct=1.0,
            dataset="voc",
            description=_description,
            output="detections",
        )
    )

register_model(
    ModelSpec(
        name="fast_rcnn_vgg16",
        family="fast_rcnn",
        paper=GIRSHICK_2015,
        builder=fast_rcnn_vgg16,
        input_size=(3, 600, 800),
        num_classes=VOC_CLASSES,
        crop_pct=1.0,
        dataset="voc",
        description="Fast R-CNN on VGG-16: conv5_3 (stride 16), RoI max pool 7x7 (ONNX MaxRoiPool), fc6/fc7, class "
        "scores and per-class box regression; inputs: an image and RoIs.",
        output="roi_detections",
        inputs="image_rois",
    )
)
