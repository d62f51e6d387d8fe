"""Run an exported artifact with numpy, onnxruntime and Pillow only: no torch import anywhere on this path.

>>> engine = Engine("models/mobilenet_v2")
>>> engine.classify("coffee.jpg", top_k=3)
[('espresso', 0.87...), ...]

``Engine`` reads ``manifest.json`` (written by ``edgeconv export``) for the input name and shape, the preprocessing
(resize, center crop, mean/std) and the labels, so an app feeds it exactly what the PyTorch model was fed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgeconv.errors import ArtifactError, BackendUnavailableError, InputError, ValidationError
from edgeconv.manifest import FORMAT, MANIFEST, Manifest  # noqa: F401  FORMAT, MANIFEST: importable from here too


def _dims(shape: list[Any]) -> tuple[int | str, ...]:
    return tuple(d if isinstance(d, int) and d > 0 else (d or "batch") for d in shape)


def _format_shape(shape: tuple[int | str, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


class Engine:
    """An ONNX Runtime session over an artifact folder (``models/<name>``) or a single ``.onnx`` file.

    ``precision`` picks the file from the manifest (fp32, fp16, int8). ``providers``: ONNX Runtime execution
    providers, CPU by default. ``threads``: intra-op threads (0 = ONNX Runtime's default).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        precision: str = "fp32",
        providers: list[str] | None = None,
        threads: int = 0,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailableError("edgeconv.runtime needs onnxruntime: pip install onnxruntime") from exc
        from edgeconv.backends.base import check_threads  # numpy only, like this module

        check_threads(threads, option="threads")
        path = Path(path)
        if path.is_dir():
            self.folder = path
            manifest = Manifest.read(path, required=True)
            self.model_path = manifest.file(precision)
        elif path.is_file():
            if path.suffix != ".onnx":
                raise ArtifactError(
                    f"{path} is not an .onnx file or an artifact folder; give an artifact folder (models/<name>) or "
                    "an .onnx file"
                )
            self.folder = path.parent
            self.model_path = path
            manifest = Manifest.read(path.parent, required=False)
        else:
            raise ArtifactError(f"{path} does not exist; give an artifact folder (models/<name>) or an .onnx file")
        self._manifest = manifest  # the parsed manifest.json (empty for an .onnx without one)
        self.manifest: dict[str, Any] = manifest.data  # its JSON document
        if not self.model_path.is_file():
            raise ArtifactError(f"{self.model_path} listed in the manifest is missing; re-export the artifact")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(self.model_path), options, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ArtifactError(
                f"ONNX Runtime cannot load {self.model_path}: {first}; the file is truncated or not an ONNX model: "
                "export it again with `edgeconv export MODEL` (or copy it again)"
            ) from None
        meta = self.session.get_inputs()[0]
        self.input_name: str = meta.name
        self.input_shape: tuple[int | str, ...] = _dims(list(meta.shape))
        self.output_name: str = self.session.get_outputs()[0].name
        self._labels: list[str] | None = None

    # --- raw inference ----------------------------------------------------------------------------------------------

    def _check(self, array: Any) -> np.ndarray:
        expected = _format_shape(self.input_shape)
        if not isinstance(array, np.ndarray):
            raise InputError(
                f"input must be a numpy array of shape {expected} and dtype float32, got {type(array).__name__}"
            )
        if array.dtype != np.float32:
            raise InputError(
                f"input dtype is {array.dtype}; expected float32 of shape {expected} (use array.astype(np.float32))"
            )
        if array.ndim != len(self.input_shape) or any(
            isinstance(want, int) and want != got for want, got in zip(self.input_shape, array.shape, strict=True)
        ):
            raise InputError(f"input shape is {tuple(array.shape)}; expected {expected}")
        if array.size and not np.isfinite(array).all():
            raise InputError("input contains NaN or Inf values; pass finite values (check the preprocessing)")
        return np.ascontiguousarray(array)

    def run(self, array: np.ndarray) -> np.ndarray:
        """Model output (logits) for a float32 array of the model's input shape."""
        output = self.session.run([self.output_name], {self.input_name: self._check(array)})[0]
        if not np.isfinite(output).all():
            raise ValidationError(
                f"{self.model_path.name} produced NaN/Inf outputs for a finite input: the model is numerically broken "
                "at this precision (overflow in FP16? untrained weights?); try the fp32 file or re-export"
            )
        return output

    # --- classification ---------------------------------------------------------------------------------------------

    @property
    def labels(self) -> list[str]:
        if self._labels is None:
            path = self._manifest.labels_file
            if path.is_file():
                self._labels = [line for line in path.read_text(encoding="utf-8").splitlines() if line]
            else:
                self._labels = []
        return self._labels

    def _preprocessing(self) -> dict[str, Any]:
        prep = self._manifest.preprocessing
        if not prep:
            raise ArtifactError(
                f"{self.model_path} has no manifest.json with preprocessing; classify() needs one (use run() with "
                "your own preprocessed array, or export with `edgeconv export`)"
            )
        return prep

    @property
    def is_clip(self) -> bool:
        """A video clip model: its input is (batch, C, T, H, W), and ``classify`` takes T frames."""
        return (self.manifest.get("input") or {}).get("layout") == "NCTHW" or len(self.input_shape) == 5

    def preprocess(self, image: Any) -> np.ndarray:
        """An image (path, PIL image or HxW[xC] array) -> the model's input array, per the manifest; for a clip
        model, a sequence of its T frames (each a path, PIL image or array)."""
        from edgeconv.preprocess import preprocess_from_manifest

        prep = self._preprocessing()
        if self.is_clip:
            return self._fill_batch(self._clip(image, prep))
        chw = tuple(int(d) for d in self.input_shape[1:] if isinstance(d, int))
        exported = (self.manifest.get("input") or {}).get("shape") or []
        if len(chw) != 3 and len(exported) == 4:  # dynamic height and width: the export size, as validated
            chw = tuple(int(d) for d in exported[1:])
        if len(chw) != 3:
            raise ArtifactError(f"{self.model_path} input {_format_shape(self.input_shape)} is not (batch, C, H, W)")
        return self._fill_batch(preprocess_from_manifest(_read_image(image), prep, chw))

    def _clip(self, frames: Any, prep: dict[str, Any]) -> np.ndarray:
        from edgeconv.preprocess import preprocess_clip

        size = tuple(int(d) for d in self.input_shape[1:] if isinstance(d, int))
        if len(size) != 4:
            raise ArtifactError(f"{self.model_path} input {_format_shape(self.input_shape)} is not (batch, C, T, H, W)")
        if prep.get("clip_format", "rgb") != "rgb":
            raise InputError(
                f"{self.model_path} takes {prep['clip_format']} clips (gray and optical flow, not frames alone): "
                "build the (1, C, T, H, W) array with your flow and call run()"
            )
        if isinstance(frames, (str, os.PathLike, np.ndarray)) or not hasattr(frames, "__len__"):
            raise InputError(f"{self.model_path} is a video clip model: give a list of its {size[1]} frames")
        return preprocess_clip(
            [_read_image(frame) for frame in frames],
            size,
            mean=prep["mean"],
            std=prep["std"],
            resize_ratio=float(prep.get("resize_ratio", 0.875)),
            interpolation=str(prep.get("resize") or "bilinear"),
        )

    def _fill_batch(self, array: np.ndarray) -> np.ndarray:
        batch = self.input_shape[0]
        if isinstance(batch, int) and batch > 1:  # a static batch-N model: fill the batch, read the first row
            array = np.repeat(array, batch, axis=0)
        return array

    def classify(self, image: Any, top_k: int = 5) -> list[tuple[str, float]]:
        """Top-``top_k`` (label, probability) for one image (path, PIL image or array), softmax over the logits; for
        a clip model, for one clip given as the list of its frames."""
        if top_k < 1:
            raise InputError(f"top_k {top_k} must be at least 1")
        logits = self.run(self.preprocess(image))[0].astype(np.float64)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        order = np.argsort(-probs)[:top_k]
        labels = self.labels
        return [(labels[i] if i < len(labels) else str(i), float(probs[i])) for i in order]

    # --- segmentation -----------------------------------------------------------------------------------------------

    @property
    def output_kind(self) -> str:
        """``logits`` (class scores per image), ``label_map`` (per pixel) or ``score_map`` (a convolutionized
        classifier's scores per window), from the manifest; ``logits`` without one."""
        return str((self.manifest.get("output") or {}).get("kind", "logits"))

    def segment(self, image: Any) -> tuple[np.ndarray, np.ndarray]:
        """(label map, class probabilities) for one image: the ``(H', W')`` argmax over the classes, and the
        ``(classes, H', W')`` softmax of the scores. The map covers the preprocessed (resized, centre-cropped) image;
        a valid-conv U-Net's covers the centre of its tile."""
        if self.output_kind == "logits":
            raise InputError(f"{self.model_path} outputs class scores per image; use classify(), not segment()")
        scores = self.run(self.preprocess(image))[0].astype(np.float64)
        probs = np.exp(scores - scores.max(axis=0, keepdims=True))
        probs /= probs.sum(axis=0, keepdims=True)
        return scores.argmax(axis=0), probs.astype(np.float32)

    # --- detection ------------------------------------------------------------------------------------------------

    def detect(self, image: Any, threshold: float = 0.0) -> Any:
        """Detections in one image (path, PIL image or HxW[x3] uint8 array) for a detector artifact: an
        ``edgeconv.boxes.Detections`` (boxes x1, y1, x2, y2 in the image's pixels, scores, labels; ``labels`` names
        the classes), those scoring above ``threshold``, highest first; possibly empty.

        The ONNX Runtime form takes the image at its own size; the TensorRT form's fixed input gets it letterboxed
        and its boxes mapped back."""
        from edgeconv.boxes import Detections, letterbox, unletterbox

        if self.output_kind != "detections":
            raise InputError(f"{self.model_path} is not a detector (its output is {self.output_kind}); use classify()")
        image = _read_image(image)
        photo = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
        if photo.ndim == 2:
            photo = np.repeat(photo[..., None], 3, axis=2)
        if photo.ndim != 3 or photo.shape[2] < 3 or photo.dtype != np.uint8:
            raise InputError(f"image must be an HxWx3 uint8 RGB array, a PIL image or a path; got {photo.shape}")
        photo = photo[..., :3]
        fixed = (self.manifest.get("detector") or {}).get("form") == "tensorrt"
        scale = 1.0
        canvas = photo
        if fixed:
            canvas, scale = letterbox(photo, (int(self.input_shape[2]), int(self.input_shape[3])))
        array = np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255)
        outputs = self.session.run(None, {self.input_name: array})
        if fixed:
            count = int(outputs[3][0])
            boxes = unletterbox(outputs[0][:count], scale, photo.shape[:2])
            found = Detections.of(boxes, outputs[1][:count], outputs[2][:count])
        else:
            found = Detections.of(*outputs[:3])
        return found.above(threshold)

    def __repr__(self) -> str:
        return f"Engine({str(self.model_path)!r}, input {self.input_name}{_format_shape(self.input_shape)})"


def _read_image(image: Any) -> Any:
    """A path is opened as RGB (one line naming it if it cannot be); a PIL image or array is passed through."""
    if not isinstance(image, (str, os.PathLike)):
        return image
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(image) as opened:
            return opened.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise InputError(
            f"cannot read image {image}: {reason}; give a readable JPEG or PNG file (or a PIL image or array)"
        ) from None


def palette(classes: int) -> np.ndarray:
    """``(classes, 3)`` uint8 colours, PASCAL VOC's (class 0, the background, black): the bits of the class index
    spread over the high bits of R, G and B."""
    colours = np.zeros((classes, 3), np.uint8)
    for index in range(classes):
        value = index
        for shift in range(7, -1, -1):
            for channel in range(3):
                colours[index, channel] |= ((value >> channel) & 1) << shift
            value >>= 3
    return colours


def overlay(image: Any, label_map: np.ndarray, alpha: float = 0.5) -> Any:
    """A quick look at a label map: ``image`` (PIL image or HxWx3 uint8 array) blended with the map's class colours
    (``palette``), the map resized to the image (nearest neighbour). Returns a PIL image."""
    from PIL import Image

    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha {alpha} must be in [0, 1]")
    base = (image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))).convert("RGB")
    labels = np.asarray(label_map)
    if labels.ndim != 2 or labels.size == 0:
        raise InputError(f"label_map must be a non-empty (H, W) array of class indices, got shape {labels.shape}")
    colours = Image.fromarray(palette(int(labels.max()) + 1)[labels]).resize(base.size, Image.Resampling.NEAREST)
    return Image.blend(base, colours, alpha)
