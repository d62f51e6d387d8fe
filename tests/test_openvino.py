"""The OpenVINO backend and `edgeconv bench --backend all`: every engine, fidelity on every row, a recommendation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edgeconv.backends.artifacts import resolve_target
from edgeconv.backends.onnxruntime import OnnxRuntimeRunner
from edgeconv.bench import CaseOptions, Gate, make_cases, recommend
from edgeconv.cli import app
from edgeconv.errors import ArtifactError, BackendUnavailableError, InvalidArgumentError
from edgeconv.zoo import create_model

openvino = pytest.importorskip("openvino", reason="OpenVINO is a dev dependency: pip install -e '.[dev]'")

from edgeconv.backends.openvino import OpenVINORunner, default_inference_precision  # noqa: E402


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small zoo model laid out as an artifact (dynamic batch, manifest naming it, the export's seed)."""
    folder = tmp_path_factory.mktemp("models") / "lenet5"
    folder.mkdir()
    torch.manual_seed(0)
    model = create_model("lenet5")
    torch.onnx.export(
        model, torch.zeros(1, 1, 32, 32), str(folder / "model.onnx"), dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps({"model": "lenet5", "weights": {"name": None, "sha256": None}}))
    return folder


def test_openvino_f32_matches_onnxruntime_and_reports_its_precision(artifact: Path) -> None:
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32), dtype=np.float32)
    with OnnxRuntimeRunner(artifact / "model.onnx") as ort:
        expected = ort.run(x)
    with OpenVINORunner(artifact / "model.onnx", inference_precision="f32", input_shape=(2, 1, 32, 32)) as ov:
        got = ov.run(x)
        assert ov.effective_precision == "f32" and ov.input_shape == (2, 1, 32, 32)  # reshaped to a static batch
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    with OpenVINORunner(artifact / "model.onnx") as default:
        default.run(x)
        assert default.effective_precision == default_inference_precision()  # named, never assumed
        assert default.input_shape == (-1, 1, 32, 32)


def test_openvino_errors_are_one_line(artifact: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="'int4'.*f32, bf16, f16"):
        OpenVINORunner(artifact / "model.onnx", inference_precision="int4")
    with pytest.raises(BackendUnavailableError, match="no device NPU9 here"):
        OpenVINORunner(artifact / "model.onnx", ov_device="NPU9").__enter__()
    truncated = tmp_path / "model.onnx"
    truncated.write_bytes((artifact / "model.onnx").read_bytes()[:300])
    with pytest.raises(ArtifactError, match="OpenVINO could not load") as caught:
        OpenVINORunner(truncated).__enter__()
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("default", ["f32", "bf16"])
def test_make_cases_names_openvino_default_and_dedupes(
    artifact: Path, default: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both branches on any CPU: OpenVINO's default is f32 on a CPU without bf16, bf16 on one with it.
    monkeypatch.setattr("edgeconv.backends.openvino.default_inference_precision", lambda ov_device="CPU": default)
    target = resolve_target(str(artifact))
    options = CaseOptions(openvino_precisions=("f32", None, default))
    cases, skipped = make_cases(target, backends=["openvino"], precisions=["fp32"], batches=[1], options=options)
    variants = [case.info["variant"] for case in cases]
    assert variants == (["f32"] if default == "f32" else ["f32", "default=bf16"]) and not skipped
    _, skipped = make_cases(target, backends=["openvino"], precisions=["fp32"], batches=[1],
                            options=CaseOptions(device="cuda"))  # fmt: skip
    assert skipped and "not on --device cuda" in skipped[0]


def test_gate_and_recommendation() -> None:
    gate = Gate.of({"int8": {"gate": {"min_agreement": 0.8, "min_confident_agreement": 0.99}}})
    assert gate.source == "the artifact's INT8 gate" and Gate.of({}).min_agreement == 0.65

    def row(backend: str, p50: float, agreement: float, confident: float | None, batch: int = 1) -> dict:
        check = {
            "samples": 200,
            "top1_agreement": agreement,
            "confident_samples": 0 if confident is None else 70,
            "confident_agreement": confident,
            "top5_overlap": 1.0,
            "mean_kl": 0.0,
            "output_sqnr_db": 30.0,
        }
        return {"backend": backend, "p50_ms": p50, "batch": batch, "check": check}

    rows = [row("fast-but-wrong", 1.0, 0.70, 1.0), row("fast-unsure", 1.5, 0.9, 0.98), row("ok", 2.0, 0.85, 0.995),
            row("slow", 3.0, 1.0, 1.0), row("batch8", 9.0, 1.0, None, batch=8)]  # fmt: skip
    best = recommend(rows, gate)
    assert best[1]["backend"] == "ok" and best[8]["backend"] == "batch8"  # no confident samples: not held against it
    assert gate.passes(None) is None and recommend([rows[0]], gate) == {}


def test_bench_all_runs_every_engine_with_fidelity_and_recommends(artifact: Path) -> None:
    result = CliRunner().invoke(app, ["bench", str(artifact), "--backend", "all", "--iters", "3", "--warmup", "1",
                                      "--threads", "1", "--fidelity-crops", "12", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    engines = {(r["backend"], r.get("variant")) for r in rows}
    assert {("torch", "eager"), ("onnxruntime", None), ("openvino", "f32")} <= engines
    for r in rows:  # 4 export photos + 12 held-out crops, against the artifact's FP32 ONNX on ONNX Runtime
        assert r["check"]["samples"] == 16 and r["check"]["reference"].startswith("ONNX Runtime CPU")
        assert r["check"]["passed"], r  # each float engine reproduces FP32 within its arithmetic's tolerance
        assert r["check"]["tolerance"] == (8e-2 if "bf16" in (r.get("variant") or "") else 1e-4)
    (recommended,) = [r for r in rows if r.get("recommended")]
    assert recommended["p50_ms"] == min(r["p50_ms"] for r in rows)  # all pass, so the fastest
    text = CliRunner().invoke(app, ["bench", str(artifact), "-b", "all", "--iters", "2", "--warmup", "0",
                                    "--fidelity-crops", "0"])  # fmt: skip
    assert text.exit_code == 0 and "Recommended at batch 1:" in text.stdout and "top-1 agree" in text.stdout
    bad = CliRunner().invoke(app, ["bench", str(artifact), "-b", "openvino", "--ov-precision", "fp8"])
    assert bad.exit_code != 0 and "--ov-precision 'fp8' is not valid" in bad.output
