"""Package data: label lists, and the photos exports are validated on."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources

import numpy as np

from edgeconv.errors import ExportError

VALIDATION_PHOTOS = ("coffee", "chelsea", "astronaut", "rocket")


@cache
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in index order (torchvision's naming)."""
    text = resources.files(__package__).joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)


@cache
def coco_labels() -> tuple[str, ...]:
    """torchvision's 91 COCO category indices in order: ``__background__`` at 0, ``N/A`` where COCO skips an id."""
    text = resources.files(__package__).joinpath("coco_classes.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)


def validation_images(names: Sequence[str] = VALIDATION_PHOTOS) -> list[np.ndarray]:
    """Real photographs shipped with scikit-image (no download): RGB uint8 arrays."""
    try:
        import skimage.data
    except ImportError as exc:
        raise ExportError(
            "validating an export needs scikit-image's sample photos: pip install scikit-image "
            "(or pass validate=False and check the model yourself)"
        ) from exc
    return [getattr(skimage.data, name)() for name in names]
