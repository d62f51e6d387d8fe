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


def test_each_calibration_crop_knows_its_photo(tmp_path: Path) -> None:
    """``calibration_photos``: crop i is from photo i % photos (``random_crops``' round-robin), for the choices checked
    by leaving one photo out; arrays handed over without photos fall into 8 folds."""
    from edgeconv.quantize.calibration import CalibrationData

    data = load_calibration_data(_photo_folder(tmp_path / "photos", 8), SMALL, samples=10, eval_samples=6, seed=3)
    photos = len(data.split.calibration.images)
    assert 1 < photos < 10
    np.testing.assert_array_equal(data.calibration_photos(), np.arange(10) % photos)
    one = random_crops([data.split.calibration.images[0][1]], 1, SMALL, seed=3)  # the first draw: photo 0's crop
    np.testing.assert_array_equal(data.calibration[0], one[0])
    bare = CalibrationData(np.zeros((20, 3, 32, 32), np.float32), np.zeros((2, 3, 32, 32), np.float32))
    np.testing.assert_array_equal(bare.calibration_photos(), np.arange(20) % 8)


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


def _conv_relu_graph(tmp_path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["conv"], name="/conv/Conv", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["conv"], ["y"], name="/relu/Relu"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 8, 8])],
        [weight],
    )
    path = tmp_path / "conv_relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_percentile_ranges_are_the_exact_percentile_and_match_onnxruntime(tmp_path: Path) -> None:
    """edgeconv's percentile calibration (the ranges quantize_static reads from its cache) is the exact percentile of
    |x| clipped to the observed extremes, and within ORT's own histogram calibrator's bin width of its ranges."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    from edgeconv.quantize.calibration import CalibrationReader
    from edgeconv.quantize.qdq.ort_static import percentile_ranges

    path = _conv_relu_graph(tmp_path)
    samples = np.random.default_rng(1).standard_t(3, size=(48, 3, 8, 8)).astype(np.float32)  # heavy tails
    percentile = 99.9
    ours = percentile_ranges(onnx.load(str(path)), samples, "x", percentile, batch_size=16)

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    values = {"x": samples, "y": sess.run(None, {"x": samples})[0]}
    for name, x in values.items():
        magnitudes = np.sort(np.abs(x).reshape(-1))
        t = magnitudes[int(np.ceil(magnitudes.size * percentile / 100)) - 1]
        expected = (max(-t, x.min()), min(t, x.max()))
        assert ours[name].range_value == pytest.approx(expected, rel=1e-6), name
    assert ours["y"].range_value[0] == 0.0  # a ReLU output: the range starts at its minimum, not at -t

    calibrator = create_calibrator(
        path,
        [],
        augmented_model_path=str(tmp_path / "augmented.onnx"),
        calibrate_method=CalibrationMethod.Percentile,
        extra_options={"percentile": percentile},
    )
    calibrator.collect_data(CalibrationReader(samples, "x", batch_size=16))
    theirs = calibrator.compute_data()
    assert set(theirs.data) <= set(ours.data)
    for name in theirs.data:
        low, high = (float(v) for v in theirs[name].range_value)
        bin_width = max(abs(low), abs(high)) / 2048 * 2 + 1e-6  # ORT's threshold is a bin edge of 2048 bins
        assert ours[name].range_value == pytest.approx((low, high), abs=bin_width), name


@pytest.mark.parametrize("grid", ["uint8", "int8"])
def test_mse_threshold_is_the_least_expected_error_among_the_kept_magnitudes(grid: str) -> None:
    """``mse`` calibration: the threshold minimizes rounding (step^2 / 12 per value inside) plus clipping ((|x| - t)^2
    per value beyond), checked against the sum written out for every candidate."""
    from edgeconv.quantize.qdq.ort_static import mse_threshold

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0.5, 1.0, 3000), [7.0, 8.5, -9.0, 10.0]])
    magnitudes = np.abs(x)
    chosen = mse_threshold(magnitudes, x.size, float(x.min()), float(x.max()), grid)

    def error(t: float) -> float:
        lo, hi = max(-t, x.min()), min(t, x.max())
        step = max(abs(lo), abs(hi)) / 127 if grid == "int8" else (hi - min(lo, 0.0)) / 255
        inside = np.abs(x) <= t
        return float(np.sum((np.abs(x[~inside]) - t) ** 2) + inside.sum() * step**2 / 12)

    errors = [error(t) for t in magnitudes]
    assert error(chosen) == pytest.approx(min(errors), rel=1e-9)


def test_mse_threshold_clips_a_few_outliers_only_among_many_values() -> None:
    """The trade the ``mse`` calibration makes: four far values cost more clipped than a coarser grid costs the rest
    of a small tensor, and less than it costs a large one; the threshold stays among the kept magnitudes, from the
    percentile's ``t`` to the maximum."""
    from edgeconv.quantize.qdq.ort_static import mse_threshold

    kept = np.array([3.0, 9.0, 9.5, 10.0, 10.5])  # a tensor's largest magnitudes: the percentile's t is 3.0
    assert mse_threshold(kept, 10_000, 0.0, 10.5, "uint8") == 10.5  # the whole range
    assert mse_threshold(kept, 100_000_000, 0.0, 10.5, "uint8") == 3.0  # the percentile's: the far values clipped
    assert mse_threshold(kept, 1_000, -10.5, 10.5, "int8") == 10.5  # a symmetric grid: each step twice as coarse


def test_mse_ranges_lie_between_the_percentile_and_the_extremes(tmp_path: Path) -> None:
    import onnx

    from edgeconv.quantize.qdq.ort_static import percentile_ranges

    model = onnx.load(str(_conv_relu_graph(tmp_path)))
    samples = np.random.default_rng(1).standard_t(3, size=(48, 3, 8, 8)).astype(np.float32)
    percentile = percentile_ranges(model, samples, "x", 99.9, batch_size=16)
    for grid in ("uint8", "int8"):
        mse = percentile_ranges(model, samples, "x", 99.9, batch_size=16, grid=grid)
        moved = 0
        for name in percentile.data:
            (p_low, p_high), (m_low, m_high) = percentile[name].range_value, mse[name].range_value
            assert m_low <= p_low and m_high >= p_high, name
            moved += (m_low, m_high) != (p_low, p_high)
        assert moved, grid  # 48 crops of heavy-tailed values: their few largest cost less kept than clipped


def test_the_cli_calibrates_with_the_default_method() -> None:
    import inspect

    from edgeconv.cli.export import export_command
    from edgeconv.quantize.options import DEFAULT_CALIBRATION_METHOD

    option = inspect.signature(export_command).parameters["calib_method"].default
    assert option.default == DEFAULT_CALIBRATION_METHOD == "mse"


def test_calibration_reader_hands_out_inputs_of_different_sizes_one_by_one() -> None:
    """A detector's calibration photos keep their own sizes: each is one batch, counted as one sample."""
    from edgeconv.quantize.calibration import CalibrationReader

    photos = [np.zeros((1, 3, 40, 60), np.float32), np.ones((1, 3, 50, 30), np.float64)]
    seen: list[tuple[int, int]] = []
    reader = CalibrationReader(photos, "image", progress=lambda done, total: seen.append((done, total)))
    first = [item["image"] for item in reader]
    assert len(reader) == 2 and [x.shape for x in first] == [(1, 3, 40, 60), (1, 3, 50, 30)]
    assert first[1].dtype == np.float32 and seen == [(1, 2), (2, 2)]
    assert [item["image"].shape for item in reader] == [x.shape for x in first]  # rewound: ORT reads it per pass
    with pytest.raises(CalibrationError, match="must not be empty"):
        CalibrationReader([], "image")
