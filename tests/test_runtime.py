"""edgeconv.runtime: loads exported artifacts and runs them with numpy + onnxruntime + Pillow only."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from edgeconv.artifact import export_artifact
from edgeconv.errors import ArtifactError, InputError, ValidationError
from edgeconv.runtime import Engine

TORCH_BLOCKER = """
import importlib.abc, sys
class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ImportError(f"torch is blocked in this test ({name})")
        return None
sys.meta_path.insert(0, _NoTorch())
for mod in [m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision")]:
    del sys.modules[mod]
"""


@pytest.fixture(scope="module")
def mobilenet_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("artifacts") / "mobilenet_v2"
    export_artifact("mobilenet_v2", folder, weights="imagenet")
    return folder


@pytest.fixture(scope="module")
def lenet_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("artifacts") / "lenet5"
    export_artifact("lenet5", folder, fp16=True)
    return folder


@pytest.fixture(scope="module")
def coffee_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import skimage.data

    path = tmp_path_factory.mktemp("images") / "coffee.jpg"
    Image.fromarray(skimage.data.coffee()).save(path, quality=95)
    return path


def test_runtime_classifies_coffee_as_espresso_without_torch(mobilenet_artifact: Path, coffee_jpeg: Path) -> None:
    script = TORCH_BLOCKER + textwrap.dedent(f"""
        import json
        import edgeconv
        from edgeconv.runtime import Engine
        engine = Engine({str(mobilenet_artifact)!r})
        top = engine.classify({str(coffee_jpeg)!r}, top_k=3)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))
        print(json.dumps({{"top": top, "torch_modules": loaded}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["torch_modules"] == []
    label, prob = result["top"][0]
    assert label == "espresso" and prob > 0.5


def test_cli_help_and_bench_of_an_artifact_run_without_torch(lenet_artifact: Path) -> None:
    """What runs on a board: ``edgeconv --help`` and ``edgeconv bench ARTIFACT`` (ONNX Runtime rows, fidelity against
    the artifact's FP32 graph on photos preprocessed as its manifest says) import no torch."""
    script = TORCH_BLOCKER + textwrap.dedent(f"""
        from edgeconv.cli import app
        for args in (["--help"], ["bench", {str(lenet_artifact)!r}, "-p", "fp32,fp16", "--iters", "2", "--warmup", "0",
                                  "--fidelity-crops", "4", "--json"]):
            try:
                app(args, prog_name="edgeconv")
            except SystemExit as exc:
                assert exc.code in (0, None), (args, exc.code)
        print("torch_modules", sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision")))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Usage: edgeconv" in done.stdout and done.stdout.rstrip().endswith("torch_modules []")
    lines = done.stdout.splitlines()
    start = lines.index("[")  # the --json document: a list of rows, after the help text
    rows = json.loads("\n".join(lines[start : lines.index("]", start) + 1]))
    assert {(r["backend"], r["precision"]) for r in rows} == {("onnxruntime", "fp32"), ("onnxruntime", "fp16")}
    assert all(r["check"]["passed"] and r["check"]["samples"] == 8 for r in rows)


def test_blocker_really_blocks_torch() -> None:
    done = subprocess.run([sys.executable, "-c", TORCH_BLOCKER + "import torch"], capture_output=True, text=True)
    assert done.returncode != 0 and "torch is blocked" in done.stderr


def test_manifest_records_what_an_app_needs(mobilenet_artifact: Path) -> None:
    from edgeconv.artifact import Manifest, sha256_file

    manifest = Manifest.load(mobilenet_artifact)
    data = manifest.data
    assert data["input"] == {
        "name": "input",
        "shape": [1, 3, 224, 224],
        "dtype": "float32",
        "layout": "NCHW",
        "dynamic_size": False,
    }
    assert data["preprocessing"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert data["labels"]["set"] == "imagenet" and data["labels"]["count"] == 1000
    assert data["files"]["fp32"]["sha256"] == sha256_file(manifest.file("fp32"))
    assert data["weights"]["sha256"].startswith("b0353104")
    assert set(data["versions"]) >= {"edgeconv", "torch", "onnx", "onnxruntime"}
    assert data["validation"]["fp32"]["passed"] and data["validation"]["fp32"]["max_rel_error"] <= 1e-4
    assert data["opset"] == 17 and data["fusion"]["folded"] == 52


def test_run_checks_shape_dtype_and_values(lenet_artifact: Path) -> None:
    engine = Engine(lenet_artifact)
    out = engine.run(np.zeros((1, 1, 32, 32), np.float32))
    assert out.shape == (1, 10)
    with pytest.raises(InputError, match=r"expected \(1, 1, 32, 32\)"):
        engine.run(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(InputError, match="float32 of shape"):
        engine.run(np.zeros((1, 1, 32, 32), np.float64))
    with pytest.raises(InputError, match="NaN"):
        engine.run(np.full((1, 1, 32, 32), np.nan, np.float32))
    with pytest.raises(InputError, match="numpy array"):
        engine.run([[0.0]])


def test_fp16_engine_and_grayscale_classify(lenet_artifact: Path, coffee_jpeg: Path) -> None:
    fp32, fp16 = Engine(lenet_artifact), Engine(lenet_artifact, precision="fp16")
    top32, top16 = fp32.classify(coffee_jpeg, top_k=3), fp16.classify(coffee_jpeg, top_k=3)
    assert [label for label, _ in top32][:1] == [label for label, _ in top16][:1]
    assert all(label in "0123456789" for label, _ in top32)
    assert sum(p for _, p in fp32.classify(coffee_jpeg, top_k=10)) == pytest.approx(1.0)


def _nan_model(path: Path) -> None:
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 4, 4])
    nodes = [
        helper.make_node("Abs", ["input"], ["a"]),
        helper.make_node("Neg", ["a"], ["n"]),
        helper.make_node("Constant", [], ["one"], value=helper.make_tensor("c", TensorProto.FLOAT, [], [1.0])),
        helper.make_node("Sub", ["n", "one"], ["m"]),
        helper.make_node("Sqrt", ["m"], ["logits"]),
    ]
    model = helper.make_model(helper.make_graph(nodes, "nan", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what opset 17 exporters write; the newest IR may be ahead of onnxruntime
    onnx.save(model, path)


def test_nan_output_is_a_clear_error(tmp_path: Path) -> None:
    _nan_model(tmp_path / "nan.onnx")
    engine = Engine(tmp_path / "nan.onnx")
    with pytest.raises(ValidationError, match="NaN/Inf outputs"):
        engine.run(np.ones((1, 3, 4, 4), np.float32))
    with pytest.raises(ArtifactError, match="no manifest.json"):
        engine.classify(np.zeros((8, 8, 3), np.uint8))


def test_bad_paths_are_artifact_errors(tmp_path: Path, lenet_artifact: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        Engine(tmp_path / "missing")
    with pytest.raises(ArtifactError, match="not an edgeconv artifact"):
        Engine(tmp_path)
    with pytest.raises(ArtifactError, match="no int8 model"):
        Engine(lenet_artifact, precision="int8")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ArtifactError, match="cannot load"):
        Engine(tmp_path / "junk.onnx")
    with pytest.raises(InputError, match="cannot read image"):
        Engine(lenet_artifact).classify(tmp_path / "junk.onnx")
