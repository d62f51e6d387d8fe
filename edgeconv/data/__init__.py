"""Package data: label lists."""

from __future__ import annotations

from functools import cache
from importlib import resources


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
