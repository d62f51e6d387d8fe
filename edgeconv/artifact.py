"""Exported artifacts: ``models/<name>/`` with model.onnx (+ model_fp16.onnx, model_int8.onnx), labels.txt and
manifest.json, everything an app needs to run the model without PyTorch (see ``edgeconv.runtime``).

Writes are atomic at the folder level: the artifact is assembled in a temporary folder next to the destination and
renamed into place, so a failed export leaves nothing behind and a reader never sees a half-written folder. An existing
artifact with different content is replaced only with ``force=True``; re-exporting identical content is a no-op.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from edgeconv.errors import ArtifactError, InvalidArgumentError
from edgeconv.files import sha256_file, shareable

logger = logging.getLogger(__name__)

FORMAT = "edgeconv-artifact/1"
MANIFEST = "manifest.json"
LABELS = "labels.txt"
FILES = {"fp32": "model.onnx", "fp16": "model_fp16.onnx", "int8": "model_int8.onnx"}
# Fields that identify an artifact's content; an existing artifact equal in these is "the same" (no --force needed).
_IDENTITY = ("model", "model_kwargs", "input", "output", "preprocessing", "opset", "files", "weights", "fused")

StepCallback = Callable[[str], None]


@dataclass
class Manifest:
    """The parsed ``manifest.json`` of an artifact folder (``data`` is the JSON document itself)."""

    folder: Path
    data: dict[str, Any] = field(default_factory=dict)
    unchanged: bool = False  # export found an identical artifact already in place

    @property
    def model(self) -> str:
        return str(self.data.get("model", ""))

    def file(self, precision: str = "fp32") -> Path:
        entry = self.data.get("files", {}).get(precision)
        if not entry:
            raise ArtifactError(
                f"{self.folder} has no {precision} model; it holds: {', '.join(self.data.get('files', {}))}"
            )
        return self.folder / entry["path"]

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Manifest:
        path = Path(folder) / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ArtifactError(
                f"{path} not found: {folder} is not an edgeconv artifact (export one with `edgeconv export MODEL`)"
            ) from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"cannot read {path}: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ArtifactError(f"{path} is not an {FORMAT} manifest")
        return cls(Path(folder), data)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment_versions() -> dict[str, str | None]:
    import edgeconv

    return {
        "edgeconv": getattr(edgeconv, "__version__", None) or _version("edgeconv"),
        "torch": _version("torch"),
        "onnx": _version("onnx"),
        "onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu"),
        "onnxslim": _version("onnxslim"),
        "python": platform.python_version(),
    }


def label_names(dataset: str, num_classes: int) -> tuple[str, list[str]]:
    """(label set name, one name per class index)."""
    if dataset == "imagenet" and num_classes == 1000:
        from edgeconv.data import imagenet_labels

        return "imagenet", list(imagenet_labels())
    if dataset == "mnist" and num_classes == 10:
        return "mnist", [str(i) for i in range(10)]
    if dataset == "cifar10" and num_classes == 10:
        names = "airplane automobile bird cat deer dog frog horse ship truck".split()
        return "cifar10", names
    return f"{dataset}-indices", [f"class_{i}" for i in range(num_classes)]


def _same_artifact(existing: dict[str, Any], new: dict[str, Any]) -> bool:
    return all(existing.get(key) == new.get(key) for key in _IDENTITY)


def _install(staging: Path, folder: Path, manifest: dict[str, Any], force: bool) -> bool:
    """Move ``staging`` to ``folder``; False (``folder`` left alone) when an identical artifact is already there."""
    if folder.exists():
        if not (folder / MANIFEST).is_file():
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
            else:
                raise ArtifactError(f"{folder} exists and is not an edgeconv artifact; choose another --out")
        else:
            try:
                existing = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                existing = {}
            if _same_artifact(existing, manifest):
                logger.info("%s already holds this artifact; left unchanged", folder)
                return False
            if not force:
                raise ArtifactError(
                    f"{folder} holds a different artifact ({existing.get('model', '?')}, "
                    f"{', '.join(existing.get('files', {})) or 'no files'}); pass --force to replace it or --out DIR"
                )
            # Swap by two renames; the old artifact is deleted only once the new one is in place.
            backup = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            os.replace(folder, backup / folder.name)
            try:
                os.replace(staging, folder)
            except BaseException:
                os.replace(backup / folder.name, folder)
                raise
            finally:
                shutil.rmtree(backup, ignore_errors=True)
            return True
    os.replace(staging, folder)
    return True


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")  # inside the staging folder: atomicity comes from the folder rename


def export_artifact(
    name: str,
    out_dir: str | os.PathLike | None = None,
    *,
    weights: str | None = None,
    fp16: bool = False,
    int8: bool = False,
    int8_options: Any = None,
    opset: int | None = None,
    batch: int = 1,
    dynamic_batch: bool = False,
    input_size: Sequence[int] | None = None,
    fuse: bool = True,
    force: bool = False,
    model_kwargs: dict[str, Any] | None = None,
    on_step: StepCallback | None = None,
) -> Manifest:
    """Build zoo model ``name``, fuse it, export and validate FP32 (and FP16 / INT8) ONNX into ``out_dir``
    (default ``models/<name>``), and write the manifest. Returns the manifest.

    ``weights``: a catalog name (``imagenet``) or a state_dict path; without weights the model is initialized from a
    fixed seed, so the same command produces the same artifact. ``input_size``: (H, W) overriding the spec's.
    ``int8`` hands the fused PyTorch model and the FP32 ONNX to ``edgeconv.quantize.quantize_int8`` with
    ``int8_options`` (an ``Int8Options``). ``on_step`` is called with a short label before each step (CLI progress).
    """
    import torch

    from edgeconv.export import DEFAULT_OPSET, convert_fp16, export_onnx, validate_fp16, validation_batch
    from edgeconv.fuse import count_parameters, fuse_model
    from edgeconv.zoo import create_model, get_spec

    step = on_step or (lambda label: logger.info("%s", label))
    opset = DEFAULT_OPSET if opset is None else opset
    spec = get_spec(name)
    if batch < 1 or batch > 4096:
        raise InvalidArgumentError(f"batch {batch} must be in 1..4096")
    channels = spec.input_size[0]
    if input_size is not None:
        size = tuple(int(v) for v in input_size)
        if len(size) != 2 or min(size) < 8:
            raise InvalidArgumentError(f"input_size {input_size} must be (H, W) with H, W >= 8")
        chw: tuple[int, ...] = (channels, *size)
    else:
        chw = tuple(spec.input_size)
    folder = Path(out_dir) if out_dir is not None else Path("models") / name
    kwargs = dict(model_kwargs or {})

    step(f"build {name}" + (f" with {weights} weights" if weights else " (seeded random init)"))
    weights_info: dict[str, Any] = {"source": None, "sha256": None}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_model(name, weights=weights, **kwargs)
    if weights is not None:
        from edgeconv.zoo.weights import resolve_weights

        path, entry = resolve_weights(spec, weights)
        weights_info = {
            "source": entry.source if entry else path.name,
            "name": weights if entry else None,
            "sha256": sha256_file(path),
        }
    else:
        weights_info = {"source": "random init, torch.manual_seed(0)", "name": None, "sha256": None}

    fusion: dict[str, Any] = {"params": count_parameters(model)}
    export_model = model
    if fuse:
        step("fuse (re-parameterize, fold BatchNorm)")
        report = fuse_model(model)
        export_model = report.model
        fusion = report.summary()

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp.", dir=folder.parent))
    shareable(staging)  # it becomes the artifact folder: not mkdtemp's 0700
    try:
        input_shape = ("batch" if dynamic_batch else batch, *chw)
        step(f"export ONNX opset {opset} and validate on ONNX Runtime")
        fp32 = export_onnx(
            export_model,
            staging / FILES["fp32"],
            (batch if not dynamic_batch else 1, *chw),
            opset=opset,
            dynamic_batch=dynamic_batch,
            reference=model,
            mean=spec.mean,
            std=spec.std,
        )
        validation: dict[str, Any] = {"fp32": fp32.validation.to_dict() if fp32.validation else None}
        files: dict[str, dict[str, Any]] = {"fp32": {"path": FILES["fp32"], "precision": "fp32"}}
        if fp16:
            step("convert to FP16 and validate")
            convert_fp16(staging / FILES["fp32"], staging / FILES["fp16"])
            images = validation_batch(chw, spec.mean, spec.std)
            comparison = validate_fp16(staging / FILES["fp16"], model, images, batch=None if dynamic_batch else batch)
            validation["fp16"] = comparison.to_dict()
            files["fp16"] = {"path": FILES["fp16"], "precision": "fp16"}
        int8_manifest = None
        if int8:
            step("quantize to INT8 and validate")
            int8_manifest = _quantize(
                spec, export_model, staging / FILES["fp32"], staging / FILES["int8"], int8_options
            )
            files["int8"] = {"path": FILES["int8"], "precision": "int8"}
        for file_entry in files.values():
            file_entry["sha256"] = sha256_file(staging / str(file_entry["path"]))
            file_entry["bytes"] = (staging / str(file_entry["path"])).stat().st_size
        label_set, labels = label_names(spec.dataset, int(kwargs.get("num_classes", spec.num_classes)))
        _write_text(staging / LABELS, "\n".join(labels) + "\n")
        manifest = {
            "format": FORMAT,
            "model": name,
            "family": spec.family,
            "model_kwargs": kwargs,
            "input": {"name": fp32.input_name, "shape": list(input_shape), "dtype": "float32", "layout": "NCHW"},
            "output": {
                "name": fp32.output_name,
                "shape": ["batch" if dynamic_batch else batch, len(labels)],
                "dtype": "float32",
                "kind": "logits",
            },
            "preprocessing": {
                "color": "L" if chw[0] == 1 else "RGB",
                "scale": 1 / 255,
                "mean": list(spec.mean),
                "std": list(spec.std),
                "resize_ratio": 0.875,
                "resize": "bilinear",
                "crop": "center",
            },
            "labels": {"set": label_set, "file": LABELS, "count": len(labels), "sha256": sha256_file(staging / LABELS)},
            "precisions": list(files),
            "files": files,
            "opset": opset,
            "exporter": fp32.exporter,
            "simplified": fp32.simplified,
            "fused": fuse,
            "fusion": fusion,
            "weights": weights_info,
            "versions": environment_versions(),
            "validation": {
                "images": "scikit-image photos: coffee, chelsea, astronaut, rocket",
                "runtime": "onnxruntime CPUExecutionProvider",
                "reference": "PyTorch FP32, unfused",
                **validation,
            },
            "int8": int8_manifest,
            "export_warnings": fp32.warnings,
        }
        _write_text(staging / MANIFEST, json.dumps(manifest, indent=2, default=str) + "\n")
        installed = _install(staging, folder, manifest, force)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    if installed:
        logger.info("wrote %s", folder)
        return Manifest(folder, manifest)
    return Manifest(folder, json.loads((folder / MANIFEST).read_text(encoding="utf-8")), unchanged=True)


def _quantize(spec: Any, torch_model: Any, fp32_path: Path, out_path: Path, options: Any) -> dict[str, Any]:
    """The INT8 hook: ``edgeconv.quantize.quantize_int8(fp32 onnx, out, spec, fused torch model, options)``."""
    try:
        from edgeconv.quantize import int8 as int8_module
    except ImportError as exc:
        raise ArtifactError(f"--int8 needs edgeconv.quantize, which cannot be imported: {exc}") from exc
    report = int8_module.quantize_int8(fp32_path, out_path, spec, torch_model, options)
    return report.manifest() if hasattr(report, "manifest") else {}


def remove_stale_staging(parent: str | os.PathLike) -> list[Path]:
    """Delete leftover ``.<name>.tmp.*`` folders of exports killed mid-way (a crash cannot run ``finally``)."""
    removed = []
    for path in Path(parent).glob(".*.tmp.*"):
        if path.is_dir():
            with contextlib.suppress(OSError):
                shutil.rmtree(path)
                removed.append(path)
    return removed
