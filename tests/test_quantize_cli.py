"""`edgeconv export MODEL --int8 ...` through the CLI: options reach quantize_int8, bad input gives one clear line."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from edgeconv.cli import app


def test_export_int8_writes_fidelity_into_the_manifest(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "export",
            "lenet5",
            "--int8",
            "--calib-samples",
            "16",
            "--calib-method",
            "minmax",
            "--target",
            "tensorrt",
            "--out",
            str(tmp_path / "lenet5"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "lenet5" / "manifest.json").read_text())
    int8 = manifest["int8"]
    assert int8["target"] == "tensorrt" and int8["calibration"]["method"] == "minmax"
    assert int8["calibration"]["samples"] == 16 and int8["fidelity"]["samples"] == 300
    assert int8["calibration"]["seed"] == 0
    assert int8["gate"]["passed"] and int8["fidelity"]["top1_agreement"] >= 0.8
    assert int8["adaround"]["layers"] == 5  # two convs, three linear layers: every weight re-rounded
    assert all(0 < ratio <= 1 for ratio in int8["adaround"]["output_mse_vs_nearest"].values())
    assert (tmp_path / "lenet5" / "model_int8.onnx").is_file()


def test_export_int8_bad_calibration_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["export", "lenet5", "--int8", "--no-adaround", "--calib", str(tmp_path / "missing"), "--out", str(out)],
    )
    assert result.exit_code == 1
    assert "calibration folder" in result.output and "does not exist" in result.output
    assert not (out / "model_int8.onnx").exists()


def test_int8_options_need_int8(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["export", "lenet5", "--target", "tensorrt", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "add --int8" in result.output


def test_seed_draws_other_crops_and_is_recorded(tmp_path: Path) -> None:
    base = ["export", "lenet5", "--int8", "--no-adaround", "--calib-samples", "16", "--eval-samples", "32"]
    graphs = {}
    for seed in ("0", "3"):
        out = tmp_path / f"seed{seed}"
        result = CliRunner().invoke(app, [*base, "--seed", seed, "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert json.loads((out / "manifest.json").read_text())["int8"]["calibration"]["seed"] == int(seed)
        graphs[seed] = (out / "model_int8.onnx").read_bytes()
    assert graphs["0"] != graphs["3"]  # other calibration crops, other ranges
    result = CliRunner().invoke(app, [*base, "--seed", "-1", "--out", str(tmp_path / "bad")])
    assert result.exit_code == 2 and "--seed -1" in result.output
    assert not (tmp_path / "bad" / "model_int8.onnx").exists()
    result = CliRunner().invoke(app, ["export", "lenet5", "--seed", "1", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "add --int8" in result.output


def test_equalize_depthwise_reaches_the_quantizer_and_needs_int8(tmp_path: Path) -> None:
    """mobilenet_v2 at width 0.35 and 64 pixels: its 17 expansion (and stem) conv -> ReLU6 -> depthwise pairs, on by
    default; how many are equalized depends on what leaving one photo out prefers, not none."""
    args = ["export", "mobilenet_v2", "--width-mult", "0.35", "--input-size", "64", "--int8", "--no-adaround"]
    args += ["--calib-samples", "16", "--eval-samples", "32", "--force", "--out", str(tmp_path / "m")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    int8 = json.loads((tmp_path / "m" / "manifest.json").read_text())["int8"]
    assert 0 < int8["equalized_depthwise_inputs"] <= 17 and int8["fidelity"]["samples"] == 32
    result = CliRunner().invoke(app, [*args, "--no-equalize-depthwise"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["int8"]["equalized_depthwise_inputs"] == 0
    result = CliRunner().invoke(app, ["export", "lenet5", "--equalize-depthwise", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "add --int8" in result.output
