"""``edgeconv bench`` / ``edgeconv build`` through typer's CliRunner: the --json schema, CSV/plot files, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from edgeconv.backends.tensorrt import tensorrt_version
from edgeconv.cli import app
from edgeconv.zoo import create_model

REQUIRED = {"model", "backend", "precision", "batch", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput", "env"}


@pytest.fixture(scope="module")
def lenet_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifact folder as the export pipeline lays it out: model.onnx (dynamic batch) + manifest naming the model."""
    folder = tmp_path_factory.mktemp("models") / "lenet5"
    folder.mkdir()
    torch.manual_seed(0)  # the export pipeline's seed: the torch backend rebuilds the same weights from the manifest
    model = create_model("lenet5")
    torch.onnx.export(
        model, torch.zeros(1, 1, 32, 32), str(folder / "model.onnx"), dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps({"model": "lenet5", "precision": "fp32"}))
    return folder


def _invoke(*args: str):  # noqa: ANN202
    return CliRunner().invoke(app, list(args))


def test_bench_json_schema(lenet_artifact: Path) -> None:
    result = _invoke("bench", str(lenet_artifact), "--backend", "torch,onnxruntime", "--batch", "1,4", "--iters", "4",
                     "--warmup", "1", "--threads", "1", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["backend"], r["batch"]) for r in rows] == [("torch", 1), ("torch", 4), ("onnxruntime", 1),
                                                          ("onnxruntime", 4)]  # fmt: skip
    for row in rows:
        assert REQUIRED <= set(row)
        assert row["model"] == "lenet5" and row["precision"] == "fp32" and row["iterations"] == 4
        assert row["min_ms"] <= row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert row["throughput"] == pytest.approx(1000 * row["batch"] / row["mean_ms"])
        assert row["cold_ms"] > 0 and {"cpu", "gpu", "versions"} <= set(row["env"])


def test_bench_csv_and_plot(lenet_artifact: Path, tmp_path: Path) -> None:
    csv_file, plot_file = tmp_path / "out.csv", tmp_path / "out.png"
    result = _invoke("bench", str(lenet_artifact / "model.onnx"), "--iters", "3", "--warmup", "0",
                     "--csv", str(csv_file), "--plot", str(plot_file))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "p50" in result.stdout and "onnxruntime" in result.stdout
    (row,) = list(csv.DictReader(csv_file.open()))
    assert row["backend"] == "onnxruntime" and float(row["p50_ms"]) > 0 and json.loads(row["env"])["cpu"]
    assert plot_file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_skips_impossible_combinations(lenet_artifact: Path) -> None:
    result = _invoke("bench", str(lenet_artifact), "--backend", "torch", "--precision", "fp32,int8", "--iters", "2",
                     "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [r["precision"] for r in json.loads(result.stdout)] == ["fp32"]
    assert "skipped torch/int8" in result.stderr
    result = _invoke("bench", str(lenet_artifact), "--precision", "int8", "--iters", "2")
    assert result.exit_code != 0 and "no int8 ONNX" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--iters", "3", "--seconds", "1"], "not both"),
        (["--batch", "0"], "--batch"),
        (["--backend", "tflite"], "backend 'tflite'"),
    ],
)
def test_bench_bad_arguments(lenet_artifact: Path, args: list[str], message: str) -> None:
    result = _invoke("bench", str(lenet_artifact), *args)
    assert result.exit_code == 2 and message in result.stderr


def test_bench_unknown_target() -> None:
    result = _invoke("bench", "mobilenet_v9")
    assert result.exit_code == 2 and "mobilenet_v9" in result.stderr


@pytest.mark.skipif(tensorrt_version() is not None, reason="TensorRT is installed: the absence path cannot run")
def test_tensorrt_absent_fails_with_install_hint(lenet_artifact: Path) -> None:
    for args in (["bench", str(lenet_artifact), "--backend", "tensorrt", "--iters", "1"],
                 ["build", str(lenet_artifact), "--backend", "tensorrt", "--precision", "fp16"]):  # fmt: skip
        result = _invoke(*args)
        assert result.exit_code == 1
        assert "TensorRT is not installed" in result.stderr and "pip install" in result.stderr


def test_profile_latency_option(lenet_artifact: Path) -> None:
    result = _invoke("profile", str(lenet_artifact / "model.onnx"), "--latency", "--runs", "3", "--warmup", "1",
                     "--threads", "1", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    latency = json.loads(result.stdout)["latency"]
    assert latency["backend"] == "onnxruntime" and latency["runs"] == 3
    assert set(latency["classes"]) == {"Conv", "Elementwise", "Data movement", "Other", "Not in any layer"}
    assert sum(c["pct"] for c in latency["classes"].values()) == pytest.approx(100.0)
    # Every conv/fc layer of LeNet-5 is timed under its module name and carries its mult-adds.
    conv_rows = [r for r in latency["rows"] if r["op_class"] == "Conv"]
    assert len(conv_rows) == 5 and all(r["module"] and r["macs"] > 0 for r in conv_rows)
    text = _invoke("profile", str(lenet_artifact / "model.onnx"), "--latency", "--runs", "2")
    assert text.exit_code == 0 and "Runtime by op class" in text.stdout and "not in any layer" in text.stdout
