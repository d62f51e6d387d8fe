"""What a benchmark or build runs: a zoo name (exported on the fly into ``models/``), an artifact folder or an .onnx.

The precision of each ONNX file is read from the graph (QDQ nodes -> int8, FP16 initializers -> fp16), so the
lookup does not depend on file-naming conventions.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeconv.backends.base import import_optional
from edgeconv.errors import ArtifactError, InvalidArgumentError, UnknownModelError
from edgeconv.manifest import Manifest
from edgeconv.onnxgraph import load_onnx_graph

log = logging.getLogger(__name__)

DEFAULT_MODELS_DIR = Path("models")


def onnx_input_info(model_path: str | os.PathLike[str]) -> tuple[str, tuple[int, ...]]:
    """Name and shape (-1 for symbolic dims) of the first graph input, read with ``onnx`` (no runtime needed)."""
    model = load_onnx_graph(model_path)
    initializers = {init.name for init in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        return value.name, tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)
    raise ArtifactError(f"{model_path} has no graph input")


def onnx_precision(model_path: str | os.PathLike[str]) -> str:
    """fp32, fp16 or int8 (a QDQ or QLinear graph), from the graph itself."""
    onnx = import_optional("onnx")
    model = load_onnx_graph(model_path)
    ops = {node.op_type for node in model.graph.node}
    if {"QuantizeLinear", "DequantizeLinear"} & ops or any(op.startswith("QLinear") for op in ops):
        return "int8"
    if any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer):
        return "fp16"
    return "fp32"


def onnx_has_qdq(model_path: str | os.PathLike[str]) -> bool:
    model = load_onnx_graph(model_path)
    return any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in model.graph.node)


@dataclass
class Target:
    """A resolved benchmark/build target."""

    name: str
    onnx: dict[str, Path]  # precision -> ONNX file
    input_name: str
    input_shape: tuple[int, ...]  # as in the ONNX (-1 = dynamic)
    folder: Path | None = None
    manifest: dict[str, Any] = field(default_factory=dict)  # the folder's manifest.json document ({} without one)
    zoo_name: str | None = None  # set when a PyTorch module can be built for the torch backend
    module_factory: Callable[[], Any] | None = None

    def onnx_for(self, precision: str) -> Path:
        if precision in self.onnx:
            return self.onnx[precision]
        hints = {"fp16": "--fp16", "int8": "--int8"}
        where = self.folder or self.name
        raise ArtifactError(
            f"{where} has no {precision} ONNX (it has {', '.join(sorted(self.onnx)) or 'none'}); "
            f"export one with `edgeconv export {self.zoo_name or 'MODEL'} {hints.get(precision, '')}`".rstrip()
        )

    def batch_shape(self, batch: int, size: tuple[int, int] | None = None) -> tuple[int, ...]:
        """The input shape for ``batch`` (and ``size``, (H, W): required when the ONNX's height and width are dynamic,
        and then any size the model takes); checks that a static ONNX is asked for its own batch and size."""
        if batch < 1:
            raise InvalidArgumentError(f"batch {batch} must be >= 1")
        static = self.input_shape[0]
        if static > 0 and static != batch:
            raise InvalidArgumentError(
                f"{self.name} was exported with a static batch of {static}; batch {batch} needs an export with "
                "--dynamic-batch (or --batch N)"
            )
        channels, *spatial = self.input_shape[1:]
        if channels < 0 or (any(d < 0 for d in spatial) and len(spatial) != 2):
            raise ArtifactError(
                f"{self.name}: only the batch, height and width may be dynamic, input is {self.input_shape}"
            )
        if size is None:
            if any(d < 0 for d in spatial):
                raise InvalidArgumentError(
                    f"{self.name} has a dynamic height and width ({self.input_shape}): give the input size to run"
                )
            return (batch, *self.input_shape[1:])
        wanted = (int(size[0]), int(size[1]))
        if min(wanted) < 1:
            raise InvalidArgumentError(f"input size {wanted[0]}x{wanted[1]} must be positive")
        fixed = [d for d in spatial if d > 0]
        if fixed and tuple(spatial) != wanted:
            raise InvalidArgumentError(
                f"{self.name} was exported for {'x'.join(map(str, spatial))} inputs, not {wanted[0]}x{wanted[1]}; "
                "export it with --dynamic-size (or --input-size N)"
            )
        return (batch, channels, *wanted)

    @property
    def dynamic_size(self) -> bool:
        """Whether the ONNX's height and width are dynamic (``edgeconv export --dynamic-size``)."""
        return len(self.input_shape) == 4 and any(d < 0 for d in self.input_shape[2:])


def _manifest_files(manifest: Manifest) -> dict[str, Path]:
    """The precision -> ONNX file map an edgeconv manifest records (``files``), when every file it lists is there;
    else empty (a folder without a manifest, or one edited since: scan it)."""
    found = {precision: entry.path for precision, entry in manifest.files.items() if entry.name.endswith(".onnx")}
    return found if found and all(path.is_file() for path in found.values()) else {}


def _scan_folder(folder: Path) -> dict[str, Path]:
    """Every .onnx file of a folder by the precision its graph has (each file is loaded: use the manifest first)."""
    found: dict[str, Path] = {}
    for path in sorted(folder.glob("*.onnx")):
        precision = onnx_precision(path)
        # Prefer the shortest name per precision (model.onnx over model.sim.onnx and the like).
        if precision not in found or len(path.name) < len(found[precision].name):
            found[precision] = path
    return found


def _zoo_factory(name: str, manifest: Manifest | None = None) -> Callable[[], Any]:
    """The PyTorch model an artifact was exported from (its ``model_kwargs``): its catalog weights by name, else the
    export's seed-0 random initialisation (``edgeconv.artifact`` builds models under ``torch.manual_seed(0)``), so the
    torch backend runs the same function as the artifact's ONNX files."""
    weights = manifest.weights if manifest is not None else {}
    kwargs = manifest.model_kwargs if manifest is not None else {}

    def build() -> Any:
        import torch

        from edgeconv.zoo import create_model

        if weights.get("sha256") and not weights.get("name"):
            raise ArtifactError(
                f"{name} was exported with weights from a file ({weights.get('source')}) that the manifest cannot "
                "reload, so the torch backend would run other weights; bench the ONNX backends, or the torch backend "
                "on a model built with those weights"
            )

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return create_model(name, weights=weights.get("name"), **kwargs)

    return build


def will_export(target: str, *, models_dir: Path = DEFAULT_MODELS_DIR) -> bool:
    """Whether :func:`resolve_target` would first export zoo model ``target`` into ``models_dir`` (found out without
    reading or writing anything); ``UnknownModelError`` when ``target`` is neither a path nor a zoo model."""
    if Path(target).exists():
        return False
    from edgeconv.zoo import get_spec

    try:
        get_spec(target)
    except UnknownModelError as exc:
        raise UnknownModelError(f"{target!r} is neither a file/folder nor a zoo model: {exc}") from None
    folder = models_dir / target
    return not (folder.is_dir() and any(folder.glob("*.onnx")))


def resolve_target(target: str, *, models_dir: Path = DEFAULT_MODELS_DIR, dynamic_batch: bool = True) -> Target:
    """A path (artifact folder or .onnx) or a zoo name; a zoo name not yet exported is exported into models/<name>."""
    path = Path(target)
    if path.exists():
        if path.is_file():
            if path.suffix != ".onnx":
                raise InvalidArgumentError(
                    f"{path} is not an .onnx file or an artifact folder; give an artifact folder (models/<name>) or "
                    "its .onnx file (a TensorRT engine is found through its artifact folder)"
                )
            folder = path.parent
            manifest = Manifest.read(folder, required=False)
            onnx_files = {onnx_precision(path): path}
        else:
            folder = path
            manifest = Manifest.read(folder, required=False)
            onnx_files = _manifest_files(manifest) or _scan_folder(folder)
            if not onnx_files:
                raise ArtifactError(f"{folder} holds no .onnx file; export one with `edgeconv export MODEL`")
        zoo = manifest.model_name
        first = onnx_files.get("fp32") or next(iter(onnx_files.values()))
        input_name, shape = onnx_input_info(first)
        return Target(
            name=zoo or path.stem,
            onnx=onnx_files,
            input_name=input_name,
            input_shape=shape,
            folder=folder,
            manifest=manifest.data,
            zoo_name=zoo,
            module_factory=_zoo_factory(zoo, manifest) if zoo else None,
        )
    from edgeconv.zoo import get_spec  # raises UnknownModelError with close names

    try:
        get_spec(target)
    except UnknownModelError as exc:
        raise UnknownModelError(f"{target!r} is neither a file/folder nor a zoo model: {exc}") from None
    folder = models_dir / target
    if not (folder.is_dir() and any(folder.glob("*.onnx"))):  # the same test as will_export
        folder = export_zoo_model(target, folder, dynamic_batch=dynamic_batch)
    resolved = resolve_target(str(folder), models_dir=models_dir)
    resolved.name, resolved.zoo_name = target, target
    if resolved.module_factory is None:
        resolved.module_factory = _zoo_factory(target)
    return resolved


def export_zoo_model(name: str, folder: Path, *, dynamic_batch: bool = True) -> Path:
    """Export a zoo model through the export pipeline's ``export_artifact`` (cached in ``folder``)."""
    try:
        from edgeconv.artifact import export_artifact  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise ArtifactError(
            f"cannot export {name!r} on the fly: the export pipeline (edgeconv.artifact) is unavailable ({exc}); "
            f"pass an artifact folder or an .onnx file instead"
        ) from exc
    params = inspect.signature(export_artifact).parameters
    kwargs: dict[str, Any] = {}
    if "dynamic_batch" in params:
        kwargs["dynamic_batch"] = dynamic_batch
    log.info("exporting %s into %s", name, folder)
    result = export_artifact(name, folder, **kwargs)
    # Where the artifact landed: the returned path (or an object carrying one), else the folder or folder/<name>.
    candidates: list[Path] = []
    for value in (result, *(getattr(result, attr, None) for attr in ("folder", "path", "out_dir", "directory"))):
        if isinstance(value, (str, os.PathLike)):
            path = Path(value)
            candidates.append(path.parent if path.suffix else path)
    candidates += [folder, folder / name]
    for candidate in candidates:
        if candidate.is_dir() and any(candidate.glob("*.onnx")):
            return candidate
    raise ArtifactError(f"exporting {name!r} produced no .onnx in {folder}")
