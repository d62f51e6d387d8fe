"""Calibration and evaluation data: a folder of real images -> preprocessed random crops -> ORT reader batches.

Calibration and evaluation crops are always drawn from *disjoint sets of images*: a folder with ``calib/`` and
``eval/`` sub-folders (the layout of the repository's ``calibration/`` folder) uses them as given; a flat folder is
split by image, deterministically from the seed. Crops are random resized crops with flips (scale 8-100% of the area,
aspect 3/4-4/3), each then run through the model's own preprocessing (resize, centre crop, mean/std), so one photo
yields many different network inputs. That preprocessing is the one deployment applies: the spec's crop ratio and
interpolation, recorded in an artifact's manifest (``edgeconv.preprocess.manifest_preprocessing``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeconv.errors import CalibrationError

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from edgeconv.quantize.options import Int8Options
    from edgeconv.zoo.registry import ModelSpec

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
# The repository's shipped folder (a source checkout or an editable install); wheels do not carry it.
DEFAULT_CALIBRATION_DIR = Path(__file__).resolve().parents[2] / "calibration"

# Fewest distinct source images each calibration method is allowed to work from. MinMax only needs ranges; the
# tail methods (entropy, percentile, mse) fit distribution tails, which one or two photos cannot represent.
MIN_IMAGES = {"minmax": 2, "entropy": 4, "percentile": 4, "mse": 4}
MIN_EVAL_IMAGES = 2

ProgressCallback = Callable[[int, int], None]
"""``progress(done, total)``: called as crops are prepared and as calibration batches are handed out."""


@dataclass(frozen=True)
class Preprocessing:
    """The model's own input pipeline: shorter side to ``H / resize_ratio`` (``interpolation``), centre crop
    ``H x W``, mean/std -- ``edgeconv.preprocess.preprocess_image``, as deployment runs it."""

    input_size: tuple[int, int, int] = (3, 224, 224)  # one image or one frame: (C, H, W)
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    resize_ratio: float = 0.875
    interpolation: str = "bilinear"
    frames: int = 0  # a video clip model's T (samples are clips panning across a photo); 0 for an image model
    clip_format: str = "rgb"  # a clip's channels (edgeconv.preprocess.CLIP_FORMATS)

    @classmethod
    def from_spec(cls, spec: ModelSpec, input_size: tuple[int, int] | None = None) -> Preprocessing:
        """The spec's evaluation preprocessing: its ``crop_pct`` (1.0 for whole-image CIFAR / MNIST models) and
        ``interpolation``, what an artifact's manifest records for deployment."""
        channels, *frames, height, width = spec.input_size
        if input_size is not None:
            height, width = input_size
        ratio = float(getattr(spec, "crop_pct", 0.875))
        interpolation = str(getattr(spec, "interpolation", "bilinear"))
        clip = {"frames": int(frames[0]), "clip_format": spec.clip_format} if frames else {}
        return cls((channels, height, width), tuple(spec.mean), tuple(spec.std), ratio, interpolation, **clip)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One sample's shape: ``(C, H, W)``, or ``(C, T, H, W)`` for a clip."""
        channels, height, width = self.input_size
        return (channels, self.frames, height, width) if self.frames else self.input_size

    def clip(self, image: PILImage.Image | np.ndarray, shift: tuple[int, int] = (1, 2)) -> np.ndarray:
        """A ``(C, T, H, W)`` clip panning across ``image`` by ``shift`` (dy, dx) pixels per frame."""
        from edgeconv.preprocess import pan_clip

        return pan_clip(
            image,
            self.sample_shape,
            mean=self.mean,
            std=self.std,
            shift=shift,
            resize_ratio=self.resize_ratio,
            interpolation=self.interpolation,
            clip_format=self.clip_format,
        )[0]

    @classmethod
    def from_manifest(cls, preprocessing: Mapping[str, Any], input_size: Sequence[int]) -> Preprocessing:
        """What an artifact's manifest ``preprocessing`` entry says, for its ``(C, H, W)`` input (a clip model's
        ``(C, T, H, W)``: ``T`` frames in the entry's ``clip_format``)."""
        channels, *frames, height, width = (int(v) for v in input_size)
        clip = {"frames": frames[0], "clip_format": str(preprocessing.get("clip_format", "rgb"))} if frames else {}
        return cls(
            (channels, height, width),
            tuple(float(v) for v in preprocessing["mean"]),
            tuple(float(v) for v in preprocessing["std"]),
            float(preprocessing.get("resize_ratio", 0.875)),
            str(preprocessing.get("resize") or "bilinear"),
            **clip,
        )

    def __call__(self, image: PILImage.Image | np.ndarray) -> np.ndarray:
        """One PIL image (or ``preprocess_image``'s uint8 / [0, 1] float array) -> ``(C, H, W)`` float32 (a clip
        model's: the ``(C, T, H, W)`` clip panning across it)."""
        from edgeconv.preprocess import preprocess_image

        if self.frames:
            return self.clip(image)

        out = preprocess_image(
            image,
            input_size=self.input_size,
            mean=self.mean,
            std=self.std,
            resize_ratio=self.resize_ratio,
            interpolation=self.interpolation,
        )
        return np.asarray(out, dtype=np.float32).reshape(self.input_size)


@dataclass
class ImageSet:
    """Images read from a folder, with the files that could not be used and why."""

    folder: Path
    images: list[tuple[Path, Any]] = field(default_factory=list)  # (path, PIL image in RGB)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        return [p for p, _ in self.images]


def _how_to_make() -> str:
    return "put JPEG/PNG photos in it (see calibration/README.md), or pass --calib DIR"


def read_image_folder(folder: str | Path) -> ImageSet:
    """Every readable image directly in ``folder`` (sorted by name). Unreadable and non-image files are skipped and
    counted, each with a warning naming it; a missing folder or one with no usable image raises ``CalibrationError``
    (one line, no warnings before it)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(folder).expanduser()
    if not path.exists():
        raise CalibrationError(f"calibration folder {path} does not exist; {_how_to_make()}")
    if not path.is_dir():
        raise CalibrationError(f"calibration folder {path} is a file, not a folder; {_how_to_make()}")
    result = ImageSet(folder=path)
    for file in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
        if file.suffix.lower() not in IMAGE_SUFFIXES:
            if file.suffix.lower() not in {".md", ".txt", ".json"}:  # the folder's own README and notes are expected
                result.skipped.append((file, "not an image file"))
            continue
        try:
            with Image.open(file) as im:
                im.load()
                result.images.append((file, im.convert("RGB")))
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            result.skipped.append((file, f"unreadable ({type(exc).__name__})"))
    if not result.images:  # one line says it all: no warning per file before it
        extra = f" ({len(result.skipped)} file(s) skipped as unreadable or not images)" if result.skipped else ""
        raise CalibrationError(f"calibration folder {path} holds no readable image{extra}; {_how_to_make()}")
    for file, why in result.skipped:
        logger.warning("skipped %s: %s", file, why)
    return result


@dataclass
class CalibrationSplit:
    """Disjoint calibration and evaluation image sets drawn from one folder."""

    calibration: ImageSet
    evaluation: ImageSet

    @property
    def skipped(self) -> list[tuple[Path, str]]:
        return self.calibration.skipped + self.evaluation.skipped


def split_calibration_folder(
    folder: str | Path | None = None,
    *,
    seed: int = 0,
    eval_fraction: float = 0.5,
    method: str = "minmax",
) -> CalibrationSplit:
    """Calibration vs held-out evaluation images, disjoint by image.

    ``folder`` with ``calib/`` and ``eval/`` sub-folders: those. A flat folder: its images shuffled by ``seed`` and cut
    at ``eval_fraction``. ``None``: the repository's ``calibration/`` folder. Raises ``CalibrationError`` when a side
    has fewer images than ``method`` needs (``MIN_IMAGES``).
    """
    if method not in MIN_IMAGES:
        raise CalibrationError(f"calibration method {method!r} is not known; choose one of {', '.join(MIN_IMAGES)}")
    if folder is None:
        folder = DEFAULT_CALIBRATION_DIR
        if not folder.is_dir():
            raise CalibrationError(
                f"the shipped calibration folder {folder} is not there (installed from a wheel?); "
                "pass --calib DIR with a folder of photos"
            )
    root = Path(folder).expanduser()
    if (root / "calib").is_dir() and (root / "eval").is_dir():
        split = CalibrationSplit(read_image_folder(root / "calib"), read_image_folder(root / "eval"))
    else:
        everything = read_image_folder(root)
        need = MIN_IMAGES[method] + MIN_EVAL_IMAGES
        if len(everything.images) < need:
            raise CalibrationError(
                f"calibration folder {root} has {len(everything.images)} usable image(s); {method} calibration plus "
                f"held-out evaluation need at least {need} distinct images (more photos give better INT8)"
            )
        order = np.random.default_rng(seed).permutation(len(everything.images))
        n_eval = min(len(order) - MIN_IMAGES[method], max(MIN_EVAL_IMAGES, round(len(order) * eval_fraction)))
        chosen = [everything.images[i] for i in order]
        split = CalibrationSplit(
            ImageSet(root, chosen[n_eval:], list(everything.skipped)), ImageSet(root, chosen[:n_eval], [])
        )
    n_cal = len(split.calibration.images)
    if n_cal < MIN_IMAGES[method]:
        raise CalibrationError(
            f"{split.calibration.folder} has {n_cal} usable image(s); {method} calibration needs at "
            f"least {MIN_IMAGES[method]} distinct images; add photos or use --calib-method minmax"
        )
    if len(split.evaluation.images) < MIN_EVAL_IMAGES:
        raise CalibrationError(
            f"{split.evaluation.folder} has {len(split.evaluation.images)} usable image(s); "
            f"the held-out fidelity check needs at least {MIN_EVAL_IMAGES}"
        )
    logger.info(
        "calibration images: %s; evaluation images: %s",
        ", ".join(p.name for p in split.calibration.paths),
        ", ".join(p.name for p in split.evaluation.paths),
    )
    return split


def random_crops(
    images: Sequence[Any],
    count: int,
    preprocessing: Preprocessing,
    *,
    seed: int = 0,
    min_area: float = 0.08,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """``count`` random resized crops (with horizontal flips) of ``images`` (PIL), each preprocessed -> ``(N,C,H,W)``;
    for a clip model, each crop panned at a random speed -> ``(N, C, T, H, W)``.

    Images are visited round-robin, so every image contributes equally; boxes and flips come from ``seed``.
    """
    from PIL import Image

    if count < 1:
        raise CalibrationError(f"sample count {count} is not valid; use at least 1")
    if not images:
        raise CalibrationError("no images to crop from")
    rng = np.random.default_rng(seed)
    out = np.empty((count, *preprocessing.sample_shape), dtype=np.float32)
    for i in range(count):
        image = images[i % len(images)]
        width, height = image.size
        for _ in range(10):  # torchvision's RandomResizedCrop recipe; falls back to the whole image
            area = width * height * rng.uniform(min_area, 1.0)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            w, h = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < w <= width and 0 < h <= height:
                left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
                break
        else:
            left, top, w, h = 0, 0, width, height
        crop = image.crop((left, top, left + w, top + h))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if preprocessing.frames:  # a clip: the crop panned at a random speed and direction, up to 2 px a frame
            dy, dx = (int(v) for v in rng.integers(-2, 3, size=2))
            out[i] = preprocessing.clip(crop, (dy, dx))
        else:
            out[i] = preprocessing(crop)
        if progress is not None:
            progress(i + 1, count)
    return out


class CalibrationReader:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over inputs: ``get_next()`` -> ``{name: batch}`` or
    ``None``; ``rewind()`` starts again (ORT reads the data once per calibration pass). ``samples``: an (N, ...) array
    handed out ``batch_size`` at a time, or a sequence of whole inputs of different sizes (a detector's photos, each
    (1, 3, H, W)) handed out one by one."""

    def __init__(
        self,
        samples: np.ndarray | Sequence[np.ndarray],
        input_name: str,
        *,
        batch_size: int = 1,
        progress: ProgressCallback | None = None,
    ) -> None:
        if isinstance(samples, np.ndarray):
            if samples.ndim < 2 or len(samples) == 0:
                raise CalibrationError(
                    f"calibration samples must be a non-empty (N, ...) array, got shape {samples.shape}"
                )
            array = np.ascontiguousarray(samples, dtype=np.float32)
            step = max(1, batch_size)
            self.batches = [array[start : start + step] for start in range(0, len(array), step)]
        else:
            self.batches = [np.ascontiguousarray(sample, dtype=np.float32) for sample in samples]
            if not self.batches:
                raise CalibrationError("calibration samples must not be empty")
        self.total = sum(len(batch) for batch in self.batches)
        self.input_name = input_name
        self.progress = progress
        self._next = 0  # the next batch
        self._done = 0  # samples handed out

    def __len__(self) -> int:
        return len(self.batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.batches):
            return None
        batch = self.batches[self._next]
        self._next += 1
        self._done += len(batch)
        if self.progress is not None:
            self.progress(self._done, self.total)
        return {self.input_name: batch}

    def rewind(self) -> None:
        self._next = self._done = 0

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        self.rewind()
        while (item := self.get_next()) is not None:
            yield item

    def set_range(self, start_index: int, end_index: int) -> None:  # ORT's strided calibration: batch indices
        self._next = start_index
        self._done = sum(len(batch) for batch in self.batches[:start_index])


@dataclass
class CalibrationData:
    """Preprocessed calibration and held-out evaluation crops for one model input."""

    calibration: np.ndarray
    evaluation: np.ndarray
    split: CalibrationSplit | None = None  # None: arrays supplied directly (e.g. a labelled data set's train/test)

    @property
    def skipped(self) -> list[tuple[Path, str]]:
        return self.split.skipped if self.split else []

    def calibration_photos(self) -> np.ndarray:
        """The photo each calibration crop comes from (``crop_photos``)."""
        return crop_photos(len(self.calibration), len(self.split.calibration.images) if self.split else 0)


def crop_photos(count: int, photos: int) -> np.ndarray:
    """The photo each of ``count`` crops of ``photos`` photos comes from (``random_crops`` visits them round-robin:
    crop i is from photo i % photos), for choices checked by leaving one photo out; crops without their photos (0 or 1)
    are put in 8 folds instead."""
    return np.arange(count) % (photos if photos > 1 else 8)


def load_calibration_data(
    folder: str | Path | None,
    preprocessing: Preprocessing,
    *,
    samples: int = 128,
    eval_samples: int = 300,
    seed: int = 0,
    method: str = "minmax",
    progress: ProgressCallback | None = None,
    split: CalibrationSplit | None = None,
) -> CalibrationData:
    """Read ``folder``, split it by image, and draw ``samples`` calibration and ``eval_samples`` evaluation crops.
    ``split``: the folder already read (an export checks it before its FP32 work; photos are decoded once)."""
    if split is None:
        split = split_calibration_folder(folder, seed=seed, method=method)
    total = samples + eval_samples

    def cal_progress(done: int, _: int) -> None:
        if progress is not None:
            progress(done, total)

    def eval_progress(done: int, _: int) -> None:
        if progress is not None:
            progress(samples + done, total)

    calib = random_crops(
        [im for _, im in split.calibration.images], samples, preprocessing, seed=seed, progress=cal_progress
    )
    # A different stream for evaluation crops, still a pure function of the seed.
    evaluation = (
        random_crops(
            [im for _, im in split.evaluation.images],
            eval_samples,
            preprocessing,
            seed=seed + 1_000_003,
            progress=eval_progress,
        )
        if eval_samples
        else calib[:0]
    )
    return CalibrationData(calib, evaluation, split)


def prepare_calibration(
    spec: ModelSpec | Preprocessing,
    options: Int8Options,
    progress: ProgressCallback | None = None,
    *,
    split: CalibrationSplit | None = None,
) -> CalibrationData:
    """Calibration + held-out crops for ``spec``'s preprocessing, per ``options`` (``split``: the folder as read
    already)."""
    prep = spec if isinstance(spec, Preprocessing) else Preprocessing.from_spec(spec, options.input_size)
    label_map = getattr(spec, "output", "scores") == "label_map"
    return load_calibration_data(
        options.calib_dir,
        prep,
        samples=options.calib_samples,
        eval_samples=min(options.eval_samples, options.label_map_eval_samples) if label_map else options.eval_samples,
        seed=options.seed,
        method=options.calib_method,
        progress=progress,
        split=split,
    )
