"""Calibration data: folder -> preprocessed crops -> ORT reader batches, and one clear error per bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeconv.errors import CalibrationError
from edgeconv.quantize.calibration import (
    DEFAULT_CALIBRATION_DIR,
    CalibrationReader,
    Preprocessing,
    load_calibration_data,
    random_crops,
    read_image_folder,
    split_calibration_folder,
)

SMALL = Preprocessing(input_size=(3, 32, 32))


def _photo_folder(path: Path, count: int) -> Path:
    """Real photo content: crops of the shipped calibration images, saved as separate files."""
    path.mkdir(parents=True, exist_ok=True)
    source = sorted((DEFAULT_CALIBRATION_DIR / "calib").glob("*.jpg"))
    for i in range(count):
        with Image.open(source[i % len(source)]) as im:
            im.convert("RGB").crop((i * 7, i * 5, i * 7 + 120, i * 5 + 100)).save(path / f"img{i:02d}.png")
    return path


def test_shipped_folder_is_split_into_disjoint_calib_and_eval_images() -> None:
    split = split_calibration_folder(None, method="percentile")
    calib = {p.name for p in split.calibration.paths}
    held_out = {p.name for p in split.evaluation.paths}
    assert len(calib) >= 4 and len(held_out) >= 4
    assert not calib & held_out
    assert split.skipped == []  # README.md is expected, not counted as a bad file


def test_folder_to_batches(tmp_path: Path) -> None:
    folder = _photo_folder(tmp_path / "photos", 8)
    data = load_calibration_data(folder, SMALL, samples=10, eval_samples=6, seed=3)
    assert data.calibration.shape == (10, 3, 32, 32) and data.calibration.dtype == np.float32
    assert data.evaluation.shape == (6, 3, 32, 32)
    # A flat folder is split by image, deterministically from the seed.
    assert not set(data.split.calibration.paths) & set(data.split.evaluation.paths)
    again = load_calibration_data(folder, SMALL, samples=10, eval_samples=6, seed=3)
    np.testing.assert_array_equal(data.calibration, again.calibration)
    other = load_calibration_data(folder, SMALL, samples=10, eval_samples=6, seed=4)
    assert not np.array_equal(data.calibration, other.calibration)
    # Normalized with ImageNet mean/std: roughly centred, not [0, 1] pixels.
    assert -3.0 < data.calibration.min() < 0.0 < data.calibration.max() < 3.0

    seen: list[tuple[int, int]] = []
    reader = CalibrationReader(data.calibration, "input", batch_size=4, progress=lambda d, t: seen.append((d, t)))
    shapes = []
    while (item := reader.get_next()) is not None:
        shapes.append(item["input"].shape[0])
    assert shapes == [4, 4, 2] and seen[-1] == (10, 10)
    reader.rewind()
    assert reader.get_next() is not None


def test_progress_callback_counts_every_crop(tmp_path: Path) -> None:
    folder = _photo_folder(tmp_path / "p", 6)
    calls: list[tuple[int, int]] = []
    load_calibration_data(folder, SMALL, samples=5, eval_samples=3, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (8, 8) and len(calls) == 8


def test_random_crops_differ_and_are_deterministic() -> None:
    images = [im for _, im in read_image_folder(DEFAULT_CALIBRATION_DIR / "eval").images][:2]
    a = random_crops(images, 4, SMALL, seed=0)
    b = random_crops(images, 4, SMALL, seed=0)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[0], a[2])  # same source image, different crop


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="does not exist.*--calib DIR"):
        split_calibration_folder(tmp_path / "nope")


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="holds no readable image"):
        read_image_folder(tmp_path / "empty")


def test_unreadable_and_non_image_files_are_skipped_and_counted(tmp_path: Path) -> None:
    folder = _photo_folder(tmp_path / "mixed", 3)
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    (folder / "notes.csv").write_text("a,b\n")
    found = read_image_folder(folder)
    assert len(found.images) == 3
    assert sorted((p.name, why.split(" ")[0]) for p, why in found.skipped) == [
        ("broken.jpg", "unreadable"),
        ("notes.csv", "not"),
    ]
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(CalibrationError, match=r"no readable image \(1 file\(s\) skipped"):
        read_image_folder(only_bad)


def test_too_few_images_for_the_method(tmp_path: Path) -> None:
    folder = _photo_folder(tmp_path / "few", 4)
    split_calibration_folder(folder, method="minmax")  # 2 calibration + 2 evaluation images: enough
    with pytest.raises(CalibrationError, match="percentile calibration plus held-out evaluation need at least 6"):
        split_calibration_folder(folder, method="percentile")


def test_unknown_method() -> None:
    with pytest.raises(CalibrationError, match="choose one of minmax, entropy, percentile"):
        split_calibration_folder(None, method="kl")
