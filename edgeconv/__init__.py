"""edgeconv: CNNs from PyTorch to fast, trustworthy edge inference.

The public API is loaded lazily so that ``import edgeconv`` (and ``edgeconv.runtime``) work with only numpy,
onnxruntime and pillow installed: torch is imported the first time a torch-side name is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "create_model": "edgeconv.zoo",
    "list_models": "edgeconv.zoo",
    "get_spec": "edgeconv.zoo",
    "fuse_model": "edgeconv.fuse",
    "export_onnx": "edgeconv.export",
    "export_artifact": "edgeconv.artifact",
    "profile_model": "edgeconv.profile",
    "profile_onnx": "edgeconv.profile",
    "Engine": "edgeconv.runtime",
    "EdgeconvError": "edgeconv.errors",
}

__all__ = [*_LAZY, "__version__"]


def lazy_attributes(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) that imports ``names[name]``, the module defining ``name``, on first use."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


__getattr__ = lazy_attributes(__name__, _LAZY)
