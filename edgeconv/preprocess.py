"""Image preprocessing for classification models, with numpy and Pillow only.

No torch import on purpose: the torch-free runtime (ONNX Runtime / TensorRT deployment) reuses this to feed exported
models exactly as the PyTorch zoo models were fed. The recipe is the standard ImageNet evaluation one (torchvision's
``Resize(crop / 0.875)`` + ``CenterCrop(crop)`` + ``Normalize``), which also equals the TF EfficientNet eval crop
(``crop_padding=32``: 224 / (224 + 32) = 0.875).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from edgeconv.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
    resize_ratio: float = 0.875,
) -> np.ndarray:
    """Resize the shorter side to ``crop / resize_ratio``, center-crop, scale to [0, 1], normalize.

    ``spec``: anything with ``input_size`` (C, H, W), ``mean`` and ``std`` attributes (a zoo ``ModelSpec``); explicit
    keyword arguments override it; without either, ImageNet's 3x224x224 and mean/std are used.
    Returns a float32 array of shape (1, C, H, W).
    """
    size = tuple(int(v) for v in (input_size if input_size is not None else getattr(spec, "input_size", (3, 224, 224))))
    mean = tuple(float(v) for v in (mean if mean is not None else getattr(spec, "mean", IMAGENET_MEAN)))
    std = tuple(float(v) for v in (std if std is not None else getattr(spec, "std", IMAGENET_STD)))
    if len(size) != 3:
        raise InputError(f"input_size {size} must be (channels, height, width)")
    channels, height, width = (int(v) for v in size)
    if len(mean) != channels or len(std) != channels:
        raise InputError(f"mean {mean} / std {std} need one value per channel ({channels})")
    if not 0.0 < resize_ratio <= 1.0:
        raise InputError(f"resize_ratio {resize_ratio} must be in (0, 1] (0.875 is the ImageNet convention)")

    pil = _to_pil(image, channels)
    # Scale so that the image covers (H, W) / resize_ratio, keeping its aspect; for a square crop this is torchvision's
    # Resize(256): the binding side gets floor(224 / 0.875) exactly, the other int(256 * long / short).
    target_h, target_w = math.floor(height / resize_ratio), math.floor(width / resize_ratio)
    if target_h / pil.height >= target_w / pil.width:
        new_h, new_w = target_h, int(target_h * pil.width / pil.height)
    else:
        new_h, new_w = int(target_w * pil.height / pil.width), target_w
    new_h, new_w = max(new_h, height), max(new_w, width)
    pil = pil.resize((new_w, new_h), Image.Resampling.BILINEAR)  # Pillow antialiases when shrinking, as torchvision
    top, left = int(round((new_h - height) / 2.0)), int(round((new_w - width) / 2.0))
    pil = pil.crop((left, top, left + width, top + height))

    pixels = np.asarray(pil, dtype=np.float32) / np.float32(255.0)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    normalized = (pixels - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(normalized.transpose(2, 0, 1)[None], dtype=np.float32)
