"""Image preprocessing for classification models, with numpy and Pillow only.

No torch import on purpose: the torch-free runtime (ONNX Runtime / TensorRT deployment) reuses this to feed exported
models exactly as the PyTorch zoo models were fed. The recipe is the standard ImageNet evaluation one (torchvision's
``Resize(crop / 0.875)`` + ``CenterCrop(crop)`` + ``Normalize``), which also equals the TF EfficientNet eval crop
(``crop_padding=32``: 224 / (224 + 32) = 0.875).

The crop ratio and the resize interpolation belong to the model (timm's ``crop_pct`` / ``interpolation``): a zoo
``ModelSpec`` carries them (``crop_pct``, ``interpolation``; small-input models trained on whole images have
``crop_pct=1.0``), and the same values reach calibration crops, the held-out crops of the INT8 fidelity gate
(``edgeconv.quantize.calibration.Preprocessing.from_spec``) and deployment (``manifest_preprocessing`` writes them
into an artifact's manifest, ``preprocess_from_manifest`` applies them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from edgeconv.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CROP_PCT = 0.875  # ImageNet evaluation: centre crop 224 of the shorter side resized to 256
DEFAULT_INTERPOLATION = "bilinear"
INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def _to_pil(image: Image.Image | np.ndarray, channels: int) -> Image.Image:
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
            raise InputError(f"image array has shape {array.shape}; expected (H, W), (H, W, 3) or (H, W, 4)")
        if array.dtype != np.uint8:
            if np.issubdtype(array.dtype, np.floating):  # float images are taken as [0, 1], as scikit-image does
                array = np.clip(np.asarray(array, dtype=np.float64) * 255.0 + 0.5, 0, 255)
            array = np.asarray(array).astype(np.uint8)
        image = Image.fromarray(array)
    if not isinstance(image, Image.Image):
        raise InputError(f"expected a PIL image or a numpy array, got {type(image).__name__}")
    return image.convert("L" if channels == 1 else "RGB")


def preprocess_image(
    image: Image.Image | np.ndarray,
    spec: Any = None,
    *,
    input_size: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    resize_ratio: float | None = None,
    interpolation: str | None = None,
) -> np.ndarray:
    """Resize the shorter side to ``crop / resize_ratio`` with ``interpolation``, center-crop, scale to [0, 1],
    normalize.

    ``spec``: anything with ``input_size`` (C, H, W), ``mean``, ``std``, ``crop_pct`` and ``interpolation`` attributes
    (a zoo ``ModelSpec``); explicit keyword arguments override it; without either, ImageNet's 3x224x224, mean/std,
    crop ratio 0.875 and bilinear resizing are used. Returns a float32 array of shape (1, C, H, W).
    """
    size = tuple(int(v) for v in (input_size if input_size is not None else getattr(spec, "input_size", (3, 224, 224))))
    mean = tuple(float(v) for v in (mean if mean is not None else getattr(spec, "mean", IMAGENET_MEAN)))
    std = tuple(float(v) for v in (std if std is not None else getattr(spec, "std", IMAGENET_STD)))
    if resize_ratio is None:
        resize_ratio = float(getattr(spec, "crop_pct", DEFAULT_CROP_PCT))
    interpolation = interpolation or getattr(spec, "interpolation", DEFAULT_INTERPOLATION)
    if len(size) != 3:
        raise InputError(f"input_size {size} must be (channels, height, width)")
    channels, height, width = (int(v) for v in size)
    if len(mean) != channels or len(std) != channels:
        raise InputError(f"mean {mean} / std {std} need one value per channel ({channels})")
    if not 0.0 < resize_ratio <= 1.0:
        raise InputError(f"resize_ratio {resize_ratio} must be in (0, 1] (0.875 is the ImageNet convention)")
    if interpolation not in INTERPOLATIONS:
        raise InputError(f"interpolation {interpolation!r} is not known; use one of {', '.join(INTERPOLATIONS)}")

    pil = _to_pil(image, channels)
    # Scale so that the image covers (H, W) / resize_ratio, keeping its aspect; for a square crop this is torchvision's
    # Resize(256): the binding side gets floor(224 / 0.875) exactly, the other int(256 * long / short).
    target_h, target_w = math.floor(height / resize_ratio), math.floor(width / resize_ratio)
    if target_h / pil.height >= target_w / pil.width:
        new_h, new_w = target_h, int(target_h * pil.width / pil.height)
    else:
        new_h, new_w = int(target_w * pil.height / pil.width), target_w
    new_h, new_w = max(new_h, height), max(new_w, width)
    pil = pil.resize((new_w, new_h), INTERPOLATIONS[interpolation])  # Pillow antialiases when shrinking, as torchvision
    top, left = int(round((new_h - height) / 2.0)), int(round((new_w - width) / 2.0))
    pil = pil.crop((left, top, left + width, top + height))

    pixels = np.asarray(pil, dtype=np.float32) / np.float32(255.0)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    normalized = (pixels - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(normalized.transpose(2, 0, 1)[None], dtype=np.float32)


# A video clip's channels: "rgb" (each frame's colour, normalized) or "gray_flow" (Ji et al. 2013: gray, then the
# optical flow's x and y in pixels per frame, flow t being frame t -> t + 1 and the last frame's flow zero).
CLIP_FORMATS = ("rgb", "gray_flow")
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, Pillow's "L"


def pan_clip(
    image: Image.Image | np.ndarray,
    input_size: Sequence[int],
    *,
    mean: Sequence[float],
    std: Sequence[float],
    shift: tuple[int, int] = (1, 2),
    resize_ratio: float = DEFAULT_CROP_PCT,
    interpolation: str = DEFAULT_INTERPOLATION,
    clip_format: str = "rgb",
) -> np.ndarray:
    """A clip made from one photo: ``T`` frames of an ``H x W`` window panning across it by ``shift = (dy, dx)``
    pixels per frame (a camera pan over a still scene), ``(1, C, T, H, W)`` float32.

    The photo is resized as ``preprocess_image`` does (shorter side to ``H / resize_ratio``), larger where the pan
    needs room; the middle of the pan is the centre crop. The true optical flow of such a clip is known exactly: the
    scene moves by ``(-dx, -dy)`` per frame, which is what the ``gray_flow`` format's flow channels carry.
    """
    size = tuple(int(v) for v in input_size)
    if len(size) != 4:
        raise InputError(f"input_size {size} must be (channels, frames, height, width)")
    channels, frames, height, width = size
    if clip_format not in CLIP_FORMATS:
        raise InputError(f"clip format {clip_format!r} is not known; use one of {', '.join(CLIP_FORMATS)}")
    if channels != 3 or len(mean) != 3 or len(std) != 3:
        raise InputError(f"a clip has 3 channels (RGB, or gray + flow x, y), got {channels} and mean {tuple(mean)}")
    dy, dx = (int(v) for v in shift)
    span_y, span_x = abs(dy) * (frames - 1), abs(dx) * (frames - 1)
    pil = _to_pil(image, 3)
    target_h = max(math.floor(height / resize_ratio), height + span_y)
    target_w = max(math.floor(width / resize_ratio), width + span_x)
    scale = max(target_h / pil.height, target_w / pil.width)
    new_h, new_w = max(round(pil.height * scale), target_h), max(round(pil.width * scale), target_w)
    pixels = np.asarray(pil.resize((new_w, new_h), INTERPOLATIONS[interpolation]), dtype=np.float32) / np.float32(255)
    top0 = (new_h - height - span_y) // 2 + (span_y if dy < 0 else 0)
    left0 = (new_w - width - span_x) // 2 + (span_x if dx < 0 else 0)
    windows = np.stack(
        [pixels[top0 + t * dy : top0 + t * dy + height, left0 + t * dx : left0 + t * dx + width] for t in range(frames)]
    )  # (T, H, W, 3)
    if clip_format == "rgb":
        clip = windows.transpose(3, 0, 1, 2)
    else:
        clip = np.zeros((3, frames, height, width), dtype=np.float32)
        clip[0] = windows @ np.asarray(LUMA, dtype=np.float32)
        clip[1, :-1], clip[2, :-1] = -dx, -dy  # frame t -> t + 1: the scene moves against the window
    normalized = (clip - np.asarray(mean, np.float32).reshape(3, 1, 1, 1)) / np.asarray(std, np.float32).reshape(
        3, 1, 1, 1
    )
    return np.ascontiguousarray(normalized[None], dtype=np.float32)


def preprocess_clip(
    frames: Sequence[Image.Image | np.ndarray],
    input_size: Sequence[int],
    *,
    mean: Sequence[float],
    std: Sequence[float],
    resize_ratio: float = DEFAULT_CROP_PCT,
    interpolation: str = DEFAULT_INTERPOLATION,
) -> np.ndarray:
    """``T`` RGB video frames -> ``(1, 3, T, H, W)`` float32, each frame as ``preprocess_image`` treats an image."""
    channels, count, height, width = (int(v) for v in input_size)
    if len(frames) != count:
        raise InputError(f"the model takes clips of {count} frames; got {len(frames)}")
    per_frame = [
        preprocess_image(f, input_size=(channels, height, width), mean=mean, std=std, resize_ratio=resize_ratio,
                         interpolation=interpolation)[0]
        for f in frames
    ]  # fmt: skip
    return np.ascontiguousarray(np.stack(per_frame, axis=1)[None], dtype=np.float32)


def manifest_preprocessing(spec: Any, input_size: Sequence[int] | None = None) -> dict[str, Any]:
    """The ``preprocessing`` entry of an artifact's manifest for zoo spec ``spec`` (input ``(C, H, W)``, or a clip's
    ``(C, T, H, W)``: each of its ``frames`` preprocessed as an image; the spec's unless given): what
    :func:`preprocess_from_manifest` applies at deployment, equal to the preprocessing that calibrated and evaluated
    the model (``Preprocessing.from_spec``)."""
    size = tuple(input_size if input_size is not None else getattr(spec, "input_size", (3, 224, 224)))
    channels = int(size[0])
    clip = {"frames": int(size[1]), "clip_format": getattr(spec, "clip_format", "rgb")} if len(size) == 4 else {}
    return {
        **clip,
        "color": "L" if channels == 1 else "RGB",
        "scale": 1 / 255,
        "mean": [float(v) for v in getattr(spec, "mean", IMAGENET_MEAN)],
        "std": [float(v) for v in getattr(spec, "std", IMAGENET_STD)],
        "resize_ratio": float(getattr(spec, "crop_pct", DEFAULT_CROP_PCT)),
        "resize": str(getattr(spec, "interpolation", DEFAULT_INTERPOLATION)),
        "crop": "center",
    }


def preprocess_from_manifest(
    image: Image.Image | np.ndarray, preprocessing: Mapping[str, Any], input_size: Sequence[int]
) -> np.ndarray:
    """``image`` -> ``(1, C, H, W)`` float32 as a manifest's ``preprocessing`` entry says (manifests written before the
    entry carried ``resize`` were all bilinear; before ``resize_ratio``, 0.875)."""
    return preprocess_image(
        image,
        input_size=input_size,
        mean=preprocessing["mean"],
        std=preprocessing["std"],
        resize_ratio=float(preprocessing.get("resize_ratio", DEFAULT_CROP_PCT)),
        interpolation=str(preprocessing.get("resize") or DEFAULT_INTERPOLATION),
    )
