"""Exported artifacts: ``models/<name>/`` with model.onnx (+ model_fp16.onnx, model_int8.onnx), labels.txt and
manifest.json, everything an app needs to run the model without PyTorch (see ``edgeconv.runtime``).

Writes are atomic at the folder level: the artifact is assembled in a temporary folder next to the destination and
renamed into place, so a failed export leaves nothing behind and a reader never sees a half-written folder. An existing
artifact with different content is replaced only with ``force=True``; re-exporting identical content is a no-op.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import dataclasses
import errno
import logging
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from edgeconv.errors import ArtifactError, InvalidArgumentError
from edgeconv.files import check_writable, is_write_failure, sha256_file, shareable, signals_held, write_error
from edgeconv.manifest import FORMAT, LABELS, MANIFEST, Manifest
from edgeconv.preprocess import manifest_preprocessing

logger = logging.getLogger(__name__)

FILES = {"fp32": "model.onnx", "fp16": "model_fp16.onnx", "int8": "model_int8.onnx"}
# Fields that identify an artifact's content; an existing artifact equal in these is "the same" (no --force needed).
_IDENTITY = ("model", "model_kwargs", "input", "output", "preprocessing", "opset", "files", "weights", "fused")

StepCallback = Callable[[str], None]


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


VOC_CLASSES = (
    "aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse motorbike person pottedplant sheep "
    "sofa train tvmonitor"
).split()  # PASCAL VOC's 20 classes; index 0 of a VOC label map is the background


def label_names(dataset: str, num_classes: int) -> tuple[str, list[str]]:
    """(label set name, one name per class index)."""
    if dataset == "imagenet" and num_classes == 1000:
        from edgeconv.data import imagenet_labels

        return "imagenet", list(imagenet_labels())
    if dataset == "coco" and num_classes == 91:
        from edgeconv.data import coco_labels

        return "coco", list(coco_labels())
    if dataset == "mnist" and num_classes == 10:
        return "mnist", [str(i) for i in range(10)]
    if dataset == "cifar10" and num_classes == 10:
        names = "airplane automobile bird cat deer dog frog horse ship truck".split()
        return "cifar10", names
    if dataset == "voc" and num_classes == 21:
        return "voc", ["background", *VOC_CLASSES]
    return f"{dataset}-indices", [f"class_{i}" for i in range(num_classes)]


def _same_artifact(existing: dict[str, Any], new: dict[str, Any]) -> bool:
    return all(existing.get(key) == new.get(key) for key in _IDENTITY)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``, 3.15+): at every instant each
    name holds a complete folder, even if the process is killed. False where the system or file system has no such
    call; the caller then swaps by two renames."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # glibc < 2.28, musl
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def _install(staging: Path, folder: Path, manifest: dict[str, Any], force: bool) -> bool:
    """Move ``staging`` to ``folder``; False (``folder`` left alone) when an identical artifact is already there.

    Another export may install into ``folder`` between a look and a rename (two exports at once): the rename then
    fails and the folder is looked at again. A replaced artifact ends up in ``staging``, removed by the caller."""
    with signals_held():
        for _ in range(5):
            if not folder.exists():
                try:
                    os.replace(staging, folder)
                    return True
                except OSError as exc:
                    if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                        raise
                    continue  # installed by another export meanwhile: compare with that one
            if not (folder / MANIFEST).is_file():
                if folder.is_dir() and not any(folder.iterdir()):
                    with contextlib.suppress(OSError):  # another export may be installing into it right now
                        folder.rmdir()
                    continue
                raise ArtifactError(f"{folder} exists and is not an edgeconv artifact; choose another --out")
            try:
                existing = Manifest.read(folder, required=False).data
            except ArtifactError:  # unreadable: a different artifact, replaced only with --force
                existing = {}
            if _same_artifact(existing, manifest):
                logger.info("%s already holds this artifact; left unchanged", folder)
                return False
            if not force:
                raise ArtifactError(
                    f"{folder} holds a different artifact ({existing.get('model', '?')}, "
                    f"{', '.join(existing.get('files', {})) or 'no files'}); pass --force to replace it or --out DIR"
                )
            if _exchange(staging, folder):
                return True
            # Swap by two renames; the old artifact is deleted only once the new one is in place.
            backup = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            try:
                os.replace(folder, backup / folder.name)
                try:
                    os.replace(staging, folder)
                except BaseException:
                    os.replace(backup / folder.name, folder)
                    raise
            finally:
                shutil.rmtree(backup, ignore_errors=True)
            return True
    raise ArtifactError(f"{folder} kept changing while this export installed into it; run the export again")


def _artifact_manifest(folder: Path) -> dict[str, Any] | None:
    """``folder``'s manifest when ``folder`` is an edgeconv artifact, else None (no manifest, an unreadable one, or
    one ``edgeconv export`` did not write)."""
    try:
        manifest = Manifest.read(folder, required=False)
    except ArtifactError:
        return None
    return manifest.data if manifest.is_artifact else None


def check_destination(folder: Path, planned: dict[str, Any], *, force: bool = False) -> None:
    """Refuse, before any work, an output folder the export could not be installed in: a file, a folder inside
    another artifact, a non-empty folder that is not an artifact, an artifact that differs from the ``planned`` one
    (model, model_kwargs, opset, fused, precisions, input shape, dynamic size, output kind) without ``force``, or a
    place where nothing can be created. The same checks run again at install time (another process may have written
    there meanwhile), where an artifact that differs only in content (other weights, another exporter version) is
    found out too."""
    if folder.exists() and not folder.is_dir():
        raise ArtifactError(f"--out {folder} is a file; give a folder path (an artifact is a folder)")
    for parent in folder.absolute().parents:
        if _artifact_manifest(parent) is not None:
            raise ArtifactError(f"--out {folder} is inside the artifact {parent}; choose a folder outside it")
    if folder.is_dir():
        existing = _artifact_manifest(folder)
        if existing is None and (folder / MANIFEST).exists():
            raise ArtifactError(
                f"--out {folder} holds a manifest.json that is not an edgeconv artifact's; choose another --out"
            )
        if existing is None and any(folder.iterdir()):
            raise ArtifactError(f"{folder} exists and is not an edgeconv artifact; choose another --out")
        if existing is not None and not force:
            have = {
                **{key: existing.get(key) for key in planned},
                "input_shape": (existing.get("input") or {}).get("shape"),
                "dynamic_size": bool((existing.get("input") or {}).get("dynamic_size", False)),
                "output_kind": (existing.get("output") or {}).get("kind", "logits"),
            }
            differs = [key for key, value in planned.items() if have.get(key) != value]
            if differs:
                raise ArtifactError(
                    f"{folder} holds a different artifact ({existing.get('model', '?')}, "
                    f"{', '.join(existing.get('files') or {}) or 'no files'}; other {', '.join(differs)}); pass "
                    "--force to replace it or --out DIR"
                )
    check_writable(folder.parent, what="--out", path=folder)


def _check_int8(name: str, kwargs: dict[str, Any], options: Any) -> Any:
    """INT8 options that can be refused before the export: every ``--fallback`` name is a module of the model (checked
    first, on the meta device: no weights, no arithmetic), and the calibration folder holds enough readable photos.
    Returns that folder's split, which calibration then uses as read (each photo is decoded once)."""
    import torch

    from edgeconv.quantize.calibration import split_calibration_folder
    from edgeconv.zoo import create_model

    if options is None:
        return None
    options.validate()
    if isinstance(options.fallback, tuple):
        try:
            with torch.device("meta"):
                modules = [module for module, _ in create_model(name, **kwargs).named_modules() if module]
        except (RuntimeError, NotImplementedError, TypeError, ValueError) as exc:  # a builder that needs real tensors
            logger.debug("cannot build %s on the meta device (%s); --fallback is checked after the export", name, exc)
            modules = None
        for layer in options.fallback if modules is not None else ():
            if layer not in modules:
                raise InvalidArgumentError(
                    f"--fallback layer {layer!r} is not a module of {name}; give PyTorch module names such as: "
                    f"{', '.join(modules[:6])} ..."
                )
    return split_calibration_folder(options.calib_dir, seed=options.seed, method=options.calib_method)


def _check_input_size(name: str, chw: tuple[int, ...], kwargs: dict[str, Any]) -> None:
    """A model that cannot take this input size (too small for its pooling, say) is refused before the export, by a
    shapes-only pass on the meta device (``profile_model`` raises ``InputError`` naming the size and the default)."""
    from edgeconv.profile import profile_model

    profile_model(name, tuple(chw[-2:]), **kwargs)  # (H, W): channels and a clip's frames are the model's


def output_kind(spec_output: str, fully_convolutional: bool) -> str:
    """The manifest's ``output.kind``: ``logits`` (N, classes), ``label_map`` (N, classes, H', W': a segmentation
    network's class scores per pixel) or ``score_map`` (a convolutionized classifier's scores per window)."""
    if fully_convolutional:
        return "score_map"
    return "label_map" if spec_output == "label_map" else "logits"


def second_size(name: str, chw: tuple[int, ...], kwargs: dict[str, Any]) -> tuple[int, int]:
    """A second input size (H, W) for validating a dynamic-size export: larger than the export size, not square, and
    one the model takes (checked on the meta device), e.g. a valid-conv U-Net's 188 + 16 k."""
    from edgeconv.errors import InputError
    from edgeconv.profile import profile_model

    height, width = chw[1], chw[2]
    for step_h, step_w in ((32, 64), (16, 32), (64, 64), (32, 32), (16, 16)):
        try:
            profile_model(name, (height + step_h, width + step_w), **kwargs)
        except (InputError, InvalidArgumentError, RuntimeError, ValueError):
            continue
        return height + step_h, width + step_w
    raise InvalidArgumentError(f"{name} takes no second input size near {height}x{width}; export it at a fixed size")


def _check_convolutionizable(name: str, kwargs: dict[str, Any]) -> None:
    """``--fully-convolutional`` on a model without a Linear head over a fixed map fails here, before any work."""
    import torch

    from edgeconv.zoo import create_model, get_spec
    from edgeconv.zoo.convolutionize import convolutionize

    with torch.device("meta"):
        model = create_model(name, **kwargs)
    try:
        convolutionize(model, get_spec(name).input_size)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(
            f"--fully-convolutional: {name} cannot be convolutionized: {exc} (alexnet, vgg* and zfnet can)"
        ) from None


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")  # inside the staging folder: atomicity comes from the folder rename


def _build(spec: Any, weights: str | None, kwargs: dict[str, Any], random_source: str = "") -> tuple[Any, dict]:
    """Zoo model ``spec`` built under seed 0 (the same command makes the same artifact), and the manifest's
    ``weights`` entry: the checkpoint's source and hash, or ``random_source``."""
    import torch

    from edgeconv.zoo import create_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_model(spec.name, weights=weights, **kwargs)
    if weights is None:
        return model, {"source": random_source or "random init, torch.manual_seed(0)", "name": None, "sha256": None}
    from edgeconv.zoo.weights import resolve_weights

    path, entry = resolve_weights(spec, weights)
    source = entry.source if entry else path.name
    return model, {"source": source, "name": weights if entry else None, "sha256": sha256_file(path)}


@contextlib.contextmanager
def _staging(folder: Path) -> Iterator[Path]:
    """A staging folder next to ``folder`` that becomes the artifact (``_install``): a write failure inside (a full
    disk, a folder made read-only meanwhile) is one line, and the staging folder goes in every case."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp.", dir=folder.parent))
    except OSError as exc:
        raise write_error(folder, exc, "the artifact") from None
    shareable(staging)  # it becomes the artifact folder: not mkdtemp's 0700
    try:
        yield staging
    except OSError as exc:
        if not is_write_failure(exc, staging):
            raise
        raise write_error(folder, exc, "the artifact") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _installed(folder: Path, manifest: dict[str, Any], installed: bool) -> Manifest:
    """The manifest ``_install`` put in place, or the identical artifact it found there (``unchanged``)."""
    if installed:
        logger.info("wrote %s", folder)
        return Manifest(folder, manifest)
    kept = Manifest.read(folder, required=True)
    kept.unchanged = True
    return kept


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
    exporter: str = "auto",
    dynamic_size: bool = False,
    fully_convolutional: bool = False,
    deform_conv: str = "native",
    detector_form: str | None = None,
) -> Manifest:
    """Build zoo model ``name``, fuse it, export and validate FP32 (and FP16 / INT8) ONNX into ``out_dir``
    (default ``models/<name>``), and write the manifest. Returns the manifest.

    ``weights``: a catalog name (``imagenet``) or a state_dict path; without weights the model is initialized from a
    fixed seed, so the same command produces the same artifact. ``input_size``: (H, W) overriding the spec's.
    ``int8`` hands the fused PyTorch model and the FP32 ONNX to ``edgeconv.quantize.quantize_int8`` with
    ``int8_options`` (an ``Int8Options``). ``on_step`` is called with a short label before each step (CLI progress).
    ``exporter``: ``auto``, ``dynamo`` or ``torchscript`` (``edgeconv.export.export_onnx``); the manifest records the
    one that wrote the graph, why ``auto`` fell back to TorchScript, and the opset written. ``dynamic_size``: the
    height and width become dynamic, and the graph is validated at a second size too (``second_size``). A video clip
    model (``spec.is_clip``) exports at one size, validated on clips panning across the photos.
    ``fully_convolutional``: export the classifier convolutionized
    (``edgeconv.zoo.convolutionize``: a dense map of class scores at any input size the features take); implies
    ``dynamic_size``. ``deform_conv``: ``native`` writes deformable convs as ONNX DeformConv (opset 19),
    ``grid-sample`` as their exact decomposition (GridSample + Conv, opset 16) for runtimes without DeformConv.
    ``detector_form``: a detector's export form, ``onnxruntime`` (default) or ``tensorrt`` (``edgeconv.detection``).
    """

    from edgeconv.export import (
        DEFAULT_OPSET,
        DEFORM_CONV_FORMS,
        DEFORM_CONV_OPSET,
        EXPORTERS,
        GRID_SAMPLE_OPSET,
        MAX_OPSET,
        MIN_OPSET,
        convert_fp16,
        export_onnx,
        validate_fp16,
        validation_batch,
    )
    from edgeconv.fuse import count_parameters, fuse_model
    from edgeconv.zoo import get_spec

    step = on_step or (lambda label: logger.info("%s", label))
    spec = get_spec(name)
    if spec.is_detector:
        return _export_detector(spec, out_dir, weights, model_kwargs, opset, force, step, fp16=fp16, int8=int8,
                                input_size=input_size, batch=batch, dynamic_batch=dynamic_batch,
                                dynamic_size=dynamic_size, fully_convolutional=fully_convolutional,
                                form=detector_form or "onnxruntime", int8_options=int8_options)  # fmt: skip
    if spec.is_clip and (dynamic_size or fully_convolutional):
        raise InvalidArgumentError(
            f"{name} is a video clip model (C x T x H x W): --dynamic-size and --fully-convolutional are for image "
            "models; export it at one size (--input-size H,W changes the frame size)"
        )
    if deform_conv not in DEFORM_CONV_FORMS:
        raise InvalidArgumentError(f"--deform-conv {deform_conv!r} is not one of {', '.join(DEFORM_CONV_FORMS)}")
    deformable = spec.min_opset == DEFORM_CONV_OPSET  # the zoo's models with deformable convs need DeformConv's opset
    if deform_conv != "native" and not deformable:
        raise InvalidArgumentError(
            f"--deform-conv applies to models with deformable convs (deform_resnet50), not {name}"
        )
    needed = (spec.min_opset if deform_conv == "native" else GRID_SAMPLE_OPSET) or MIN_OPSET
    if opset is not None and spec.min_opset and MIN_OPSET <= opset < needed:
        raise InvalidArgumentError(
            f"{name} needs ONNX opset {needed} or higher (an op it uses first appears there); --opset {opset} cannot "
            f"carry it: drop --opset (its default is {needed}) or give {needed}+"
        )
    opset = max(DEFAULT_OPSET, needed) if opset is None else opset
    if batch < 1 or batch > 4096:
        raise InvalidArgumentError(f"batch {batch} must be in 1..4096")
    if input_size is not None:
        size = tuple(int(v) for v in input_size)
        if len(size) != 2 or min(size) < 8:
            raise InvalidArgumentError(f"input_size {input_size} must be (H, W) with H, W >= 8")
        chw: tuple[int, ...] = (*spec.input_size[:-2], *size)  # a clip keeps its frames: (C, T, H, W)
    else:
        chw = tuple(spec.input_size)
    folder = Path(out_dir) if out_dir is not None else Path("models") / name
    kwargs = dict(model_kwargs or {})
    # Everything that can be refused is refused here, before any work: a wrong option must not cost an export first.
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise InvalidArgumentError(
            f"opset {opset} is not supported; use {MIN_OPSET}..{MAX_OPSET} ({DEFAULT_OPSET} runs on TensorRT 8.6+ and "
            "ONNX Runtime)"
        )
    if exporter not in EXPORTERS:
        raise InvalidArgumentError(f"exporter {exporter!r} is not one of {', '.join(EXPORTERS)}")
    dynamic_size = dynamic_size or fully_convolutional
    if int8 and fully_convolutional:
        raise InvalidArgumentError(
            "--int8 with --fully-convolutional is not built: quantize the classifier (drop --fully-convolutional) or "
            "export the dense score map in FP32 / FP16"
        )
    planned = {
        "model": name,
        "model_kwargs": kwargs,
        "opset": opset,
        "fused": fuse,
        "precisions": ["fp32", *(["fp16"] if fp16 else []), *(["int8"] if int8 else [])],
        "input_shape": ["batch" if dynamic_batch else batch, *chw],
        "dynamic_size": dynamic_size,
        "output_kind": output_kind(spec.output, fully_convolutional),
    }
    check_destination(folder, planned, force=force)
    calibration_split = _check_int8(name, kwargs, int8_options) if int8 else None
    if input_size is not None:
        _check_input_size(name, chw, kwargs)
    if fully_convolutional:
        _check_convolutionizable(name, kwargs)
    second = second_size(name, chw, kwargs) if dynamic_size and not fully_convolutional else None

    step(f"build {name}" + (f" with {weights} weights" if weights else " (seeded random init)"))
    model, weights_info = _build(spec, weights, kwargs)

    if fully_convolutional:
        from edgeconv.zoo.convolutionize import convolutionize

        model = convolutionize(model, spec.input_size)
        second = (chw[1] + 64, chw[2] + 160)  # a 3x6 score map (AlexNet at 224: 1x1, one cell per 32 pixels)
    fusion: dict[str, Any] = {"params": count_parameters(model)}
    export_model = model
    if fuse:
        step("fuse (re-parameterize, fold BatchNorm)")
        report = fuse_model(model)
        export_model = report.model
        fusion = report.summary()
    if deform_conv == "grid-sample":  # the exported copy decomposed, checked against the native op (``model``)
        from edgeconv.zoo.deform import DeformConv2d

        export_model = copy.deepcopy(export_model) if export_model is model else export_model
        for module in export_model.modules():
            if isinstance(module, DeformConv2d):
                module.grid_sample = True

    with _staging(folder) as staging:
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
            exporter=exporter,  # type: ignore[arg-type]  # checked above
            dynamic_size=dynamic_size,
            second_size=second,
            clip_format=spec.clip_format,
        )
        validation: dict[str, Any] = {"fp32": fp32.validation.to_dict() if fp32.validation else None}
        if fp32.validation_resized is not None and second is not None:
            validation["fp32_resized"] = {"input_size": list(second), **fp32.validation_resized.to_dict()}
        files: dict[str, dict[str, Any]] = {"fp32": {"path": FILES["fp32"], "precision": "fp32"}}
        if fp16:
            step("convert to FP16 and validate")
            convert_fp16(staging / FILES["fp32"], staging / FILES["fp16"])
            images = validation_batch(chw, spec.mean, spec.std, spec.clip_format)
            comparison = validate_fp16(staging / FILES["fp16"], model, images, batch=None if dynamic_batch else batch)
            validation["fp16"] = comparison.to_dict()
            files["fp16"] = {"path": FILES["fp16"], "precision": "fp16"}
        int8_manifest = None
        if int8:
            step("quantize to INT8 and validate")
            if int8_options is not None and int8_options.input_size is None:  # calibrate at the export's size
                int8_options = dataclasses.replace(int8_options, input_size=(int(chw[-2]), int(chw[-1])))
            int8_manifest = _quantize(
                spec, export_model, staging / FILES["fp32"], staging / FILES["int8"], int8_options, calibration_split
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
            "input": {
                "name": fp32.input_name,
                "shape": list(input_shape),  # the export size; with dynamic_size any size the model takes
                "dtype": "float32",
                "layout": spec.input_layout,  # NCHW, or NCTHW for a clip (T frames)
                "dynamic_size": dynamic_size,
            },
            "output": {
                "name": fp32.output_name,
                "shape": ["batch" if dynamic_batch else batch, *fp32.output_shape[1:]],
                "dtype": "float32",
                "kind": output_kind(spec.output, fully_convolutional),
            },
            "preprocessing": manifest_preprocessing(spec, chw),
            "labels": {"set": label_set, "file": LABELS, "count": len(labels), "sha256": sha256_file(staging / LABELS)},
            "precisions": list(files),
            "files": files,
            "opset": fp32.opset,  # the opset written: the dynamo exporter keeps 18 where conversion fails
            "exporter": fp32.exporter,  # the one that wrote model.onnx
            "exporter_fallback": fp32.exporter_fallback,  # --exporter auto: why not dynamo (None: dynamo wrote it)
            "simplified": fp32.simplified,
            "fused": fuse,
            "fusion": fusion,
            "weights": weights_info,
            "versions": environment_versions(),
            "validation": {
                "images": "scikit-image photos: coffee, chelsea, astronaut, rocket"
                + (" (a clip panning across each)" if spec.is_clip else ""),
                "runtime": "onnxruntime CPUExecutionProvider",
                "reference": "PyTorch FP32, unfused",
                **validation,
            },
            "int8": int8_manifest,
            "export_warnings": fp32.warnings,
            "runtime_notes": fp32.runtime_notes,
            **({"deform_conv": deform_conv} if deformable else {}),
        }
        Manifest(staging, manifest).write()
        installed = _install(staging, folder, manifest, force)
    return _installed(folder, manifest, installed)


def _export_detector(
    spec: Any,
    out_dir: str | os.PathLike | None,
    weights: str | None,
    model_kwargs: dict[str, Any] | None,
    opset: int | None,
    force: bool,
    step: StepCallback,
    **options: Any,
) -> Manifest:
    """A detector's export (``edgeconv.detection``): the options it does not take are refused first, one line each."""
    refused = {
        "dynamic_batch": "--dynamic-batch",
        "dynamic_size": "--dynamic-size",
        "fully_convolutional": "--fully-convolutional",
    }
    for key, flag in refused.items():
        if options[key]:
            why = "the ONNX Runtime form takes any size" if "size" in key else "not built for detectors"
            raise InvalidArgumentError(f"{flag} does not apply to {spec.name} ({why}); drop {flag}")
    if options["batch"] != 1:
        raise InvalidArgumentError(f"a detector takes one image at a time; drop --batch {options['batch']}")
    folder = Path(out_dir) if out_dir is not None else Path("models") / spec.name
    size = tuple(int(v) for v in options["input_size"]) if options["input_size"] is not None else None
    return _write_detector_artifact(
        spec,
        folder,
        weights=weights,
        kwargs=dict(model_kwargs or {}),
        opset=opset,
        force=force,
        step=step,
        form=options["form"],
        input_size=size,  # type: ignore[arg-type]
        fp16=options["fp16"],
        int8_options=_detector_int8_options(spec, options) if options["int8"] else None,
    )


def _detector_int8_options(spec: Any, options: dict[str, Any]) -> Any:
    """The ``Int8Options`` a detector's ``--int8`` runs with: the form's QDQ scheme (``--target``)."""
    from edgeconv.detector_precision import detector_int8_options

    chosen = options["int8_options"] or detector_int8_options()
    if spec.output != "detections":
        raise InvalidArgumentError(f"--int8 does not apply to {spec.name} (it takes RoIs; not built); drop --int8")
    return dataclasses.replace(chosen, target=options["form"])


def _write_detector_artifact(
    spec: Any,
    folder: Path,
    *,
    weights: str | None,
    kwargs: dict[str, Any],
    opset: int | None,
    force: bool,
    step: Any,
    form: str = "onnxruntime",
    input_size: tuple[int, int] | None = None,
    fp16: bool = False,
    int8_options: Any = None,
) -> Manifest:
    """``edgeconv export`` for a detector: build, export the ONNX Runtime form, validate on the photos at their own
    sizes, write ``model.onnx``, ``labels.txt`` and ``manifest.json`` atomically into ``folder``. Returns the
    ``Manifest``. ``form``: ``onnxruntime`` (any input size) or ``tensorrt`` (``edgeconv.fixed_detector``, at
    ``input_size`` (H, W), default the spec's). ``fp16`` / ``int8_options`` (an ``Int8Options``): also the FP16 /
    INT8 form, made from the BatchNorm-folded detector (``edgeconv.detector_precision``) and gated by box F1. (Callers
    have refused the options detectors do not take.)"""
    from edgeconv.detection import (
        DETECTION_OPSET,
        DETECTION_PHOTOS,
        check_form,
        export_detector,
        export_fixed_detector,
        export_roi_detector,
        validate_detector,
        validate_fixed_detector,
        validate_roi_detector,
    )
    from edgeconv.errors import ExportError
    from edgeconv.export import validation_batch, validation_images

    opset = DETECTION_OPSET if opset is None else opset
    if opset < DETECTION_OPSET:
        raise InvalidArgumentError(
            f"--opset {opset} is too low for a detector; drop --opset or give {DETECTION_OPSET}+ (RoiAlign's "
            "coordinate mode, NonMaxSuppression)"
        )
    check_form(form)
    fixed = form == "tensorrt"
    if fixed and spec.output != "detections":
        raise InvalidArgumentError(f"--target tensorrt: {spec.name} has no fixed-shape form (it takes RoIs); drop it")
    if input_size is not None and not fixed:
        raise InvalidArgumentError(
            f"--input-size does not apply to the ONNX Runtime form of {spec.name} (it takes any size); drop it, or "
            "add --target tensorrt for a fixed-size graph"
        )
    size = tuple(input_size) if input_size is not None else (int(spec.input_size[1]), int(spec.input_size[2]))
    if len(size) != 2 or min(size) < 32:
        raise InvalidArgumentError(f"--input-size {input_size} must be H,W with both at least 32")
    precisions = ["fp32", *(["fp16"] if fp16 else []), *(["int8"] if int8_options is not None else [])]
    planned = {"model": spec.name, "model_kwargs": kwargs, "opset": opset, "precisions": precisions}
    check_destination(folder, planned, force=force)
    step(f"build {spec.name}" + (f" with {weights} weights" if weights else " (seeded random init)"))
    model: Any
    model, weights_info = _build(spec, weights, kwargs, "random init, torch.manual_seed(0), woken (zoo.detection.wake)")
    check: dict[str, Any]
    validation: dict[str, Any]
    with _staging(folder) as staging:
        onnx_path = staging / FILES["fp32"]
        if not fixed:
            step(f"export ONNX opset {opset} (the whole detector, any input size) and validate on ONNX Runtime")
        if spec.output == "roi_detections":
            export_roi_detector(model, onnx_path, size, opset=opset)
            images = list(validation_batch(spec.input_size, spec.mean, spec.std)[:, None])
            check = validate_roi_detector(onnx_path, model, images)
            validation = {"images": len(images), **check}
            inputs: dict[str, list[Any]] = {"image": [1, 3, "height", "width"], "rois": ["rois", 4]}
            outputs: dict[str, list[Any]] = {"scores": ["rois", "classes"], "boxes": ["rois", "classes", 4]}
        elif fixed:
            step(f"TensorRT form: fixed {size[0]}x{size[1]} input, constant shapes, validated on resized photos")
            export_fixed_detector(model, onnx_path, size, opset=opset)
            results = validate_fixed_detector(
                onnx_path, model, validation_images(DETECTION_PHOTOS), DETECTION_PHOTOS, size
            )
            check = {"passed": all(results.values())}
            validation = {"photos": {name: result.to_dict() for name, result in results.items()}, **check}
            detections = int(model.roi_heads.detections_per_img)
            inputs = {"image": [1, 3, *size]}
            outputs = {"boxes": [detections, 4], "scores": [detections], "labels": [detections], "count": [1]}
        else:
            export_detector(model, onnx_path, size, opset=opset)
            results = validate_detector(onnx_path, model, validation_images(DETECTION_PHOTOS), DETECTION_PHOTOS)
            check = {"passed": all(results.values())}
            validation = {"photos": {name: result.to_dict() for name, result in results.items()}, **check}
            inputs = {"image": [1, 3, "height", "width"]}
            outputs = {"boxes": ["detections", 4], "scores": ["detections"], "labels": ["detections"]}
        if not check["passed"]:
            raise ExportError(f"{spec.name}: the ONNX graph does not match PyTorch on the photos: {validation}")
        files = {"fp32": _file_entry(staging, "fp32")}
        low: dict[str, Any] = {"files": {}, "validation": {}, "int8": None}
        if fp16 or int8_options is not None:
            low = _detector_low_precision(
                spec, model, staging, size if fixed else None, opset, step, fp16, int8_options
            )
            files.update(low["files"])
        label_set, labels = label_names(spec.dataset, int(kwargs.get("num_classes", spec.num_classes)))
        _write_text(staging / LABELS, "\n".join(labels) + "\n")
        manifest = {
            "format": FORMAT,
            "model": spec.name,
            "family": spec.family,
            "model_kwargs": kwargs,
            "input": {
                "name": "image",
                "shape": [1, 3, *size],
                "dtype": "float32",
                "layout": "NCHW",
                "dynamic_size": not fixed,
                "inputs": inputs,
            },  # fmt: skip
            "output": {"name": list(outputs)[0], "kind": spec.output, "outputs": outputs, "dtype": "float32"},
            "detector": {"form": form, "export_size": list(size)},
            "preprocessing": {
                "color": "RGB",
                "scale": 1 / 255,
                "mean": list(spec.mean),
                "std": list(spec.std),
                "resize": "letterbox" if fixed else "inside the graph" if spec.output == "detections" else "none",
            },  # fmt: skip
            "labels": {"set": label_set, "file": LABELS, "count": len(labels), "sha256": sha256_file(staging / LABELS)},
            "precisions": list(files),
            "files": files,
            "opset": opset,
            "exporter": "torchscript",
            "exporter_fallback": "detectors have data-dependent shapes: the TorchScript exporter writes them",
            "fused": False,
            "weights": weights_info,
            "versions": environment_versions(),
            "validation": {
                "images": f"scikit-image photos: {', '.join(DETECTION_PHOTOS)}, "
                + (f"each resized to {size[0]}x{size[1]}" if fixed else "each at its own size"),
                "runtime": "onnxruntime CPUExecutionProvider",
                "reference": "PyTorch FP32",
                "fp32": validation,
                **low["validation"],
            },
            "int8": low["int8"],
        }
        Manifest(staging, manifest).write()
        installed = _install(staging, folder, manifest, force)
    return _installed(folder, manifest, installed)


def _detector_low_precision(
    spec: Any,
    model: Any,
    staging: Path,
    fixed_size: tuple[int, int] | None,
    opset: int,
    step: Any,
    fp16: bool,
    int8_options: Any,
) -> dict[str, Any]:
    """A detector's FP16 and INT8 files in ``staging``, made from its BatchNorm-folded copy exported in the same form
    (``fixed_size``: the TensorRT form's): ``{"files", "validation", "int8"}`` entries for the manifest."""
    from edgeconv.detection import (
        DETECTION_PHOTOS,
        export_detector,
        export_fixed_detector,
        export_roi_detector,
        validate_roi_detector,
    )
    from edgeconv.detector_precision import half_network, quantize_detector, validate_detector_fp16
    from edgeconv.errors import ValidationError
    from edgeconv.export import FP16_TOLERANCE, convert_fp16, validation_batch, validation_images
    from edgeconv.fuse.fold import fold_batchnorm

    out: dict[str, Any] = {"files": {}, "validation": {}, "int8": None}
    size = tuple(int(v) for v in spec.input_size[1:])
    with tempfile.TemporaryDirectory(prefix="edgeconv-detector-") as tmp:
        fused = Path(tmp) / "fused.onnx"
        step("fold BatchNorm into the convs and export the fused graph for the low-precision forms")
        if spec.output == "roi_detections":
            export_roi_detector(fold_batchnorm(model), fused, size, opset=opset)
        elif fixed_size is not None:
            export_fixed_detector(fold_batchnorm(model), fused, fixed_size, opset=opset)
        else:
            export_detector(fold_batchnorm(model), fused, size, opset=opset)
        if fp16:
            step("FP16: the network in float16, box work in float32; checked against PyTorch on the photos")
            convert_fp16(fused, staging / FILES["fp16"], half=half_network)
            if spec.output == "roi_detections":  # per-RoI scores and boxes, as the FP32 check, at FP16's tolerance
                images = list(validation_batch(spec.input_size, spec.mean, spec.std)[:, None])
                check = validate_roi_detector(staging / FILES["fp16"], model, images, tolerance=FP16_TOLERANCE)
                why = f"max score diff {check['max_abs_diff_scores']:.2e}, box diff {check['max_rel_diff_boxes']:.2e}"
            else:
                photos = validation_images(DETECTION_PHOTOS)
                check = validate_detector_fp16(staging / FILES["fp16"], model, photos, DETECTION_PHOTOS, fixed_size)
                why = f"mean box F1 {check['mean_f1']:.3f} below {check['min_f1']}"
            if not check["passed"]:
                raise ValidationError(
                    f"FP16 disagrees with PyTorch FP32 ({why}); drop --fp16 (the FP32 form validated)"
                )
            out["validation"]["fp16"] = check
            out["files"]["fp16"] = _file_entry(staging, "fp16")
        if int8_options is not None:
            step(f"INT8 ({int8_options.target} form): calibrate the network, gate on held-out photos by box F1")
            out["int8"] = quantize_detector(
                fused, staging / FILES["fp32"], staging / FILES["int8"], int8_options, fixed=fixed_size is not None,
                size=fixed_size,
            )  # fmt: skip
            out["files"]["int8"] = _file_entry(staging, "int8")
    return out


def _file_entry(staging: Path, precision: str) -> dict[str, Any]:
    path = staging / FILES[precision]
    return {"path": FILES[precision], "precision": precision, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def _quantize(
    spec: Any, torch_model: Any, fp32_path: Path, out_path: Path, options: Any, split: Any = None
) -> dict[str, Any]:
    """The INT8 hook: ``edgeconv.quantize.quantize_int8(fp32 onnx, out, spec, fused torch model, options)``, on the
    calibration folder as :func:`_check_int8` read it (``split``)."""
    try:
        from edgeconv.quantize import int8 as int8_module
    except ImportError as exc:
        raise ArtifactError(f"--int8 needs edgeconv.quantize, which cannot be imported: {exc}") from exc
    data = int8_module.prepare_calibration(spec, options, split=split) if split is not None else None
    report = int8_module.quantize_int8(fp32_path, out_path, spec, torch_model, options, data=data)
    return report.manifest() if hasattr(report, "manifest") else {}
