"""The benchmark driver (bench/run_bench.py) and the one-command GPU check (bench/gpu_check.sh), dry-run on the CPU."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import load_script

from edgeconv.errors import InvalidArgumentError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run_bench() -> ModuleType:
    return load_script("run_bench")


def test_torch_variants_parse(run_bench: ModuleType) -> None:
    assert run_bench.parse_variant("eager") == {
        "torch_compile": False, "cuda_graph": False, "channels_last": False, "tf32": False,
    }  # fmt: skip
    assert run_bench.parse_variant("compile+cuda-graph") == {
        "torch_compile": True, "cuda_graph": True, "channels_last": False, "tf32": False,
    }  # fmt: skip
    assert run_bench.parse_variant("cuda-graph") == run_bench.parse_variant("eager+cuda-graph")
    script = (ROOT / "bench" / "gpu_check.sh").read_text()
    in_script = [v for group in re.findall(r"--torch-variants (\S+)", script) for v in group.split(",")]
    assert "compile+cuda-graph" in in_script  # the GPU run's variants, which only the GPU machine runs
    for name in [*run_bench.TORCH_VARIANTS, *in_script]:  # all parse
        run_bench.parse_variant(name)
    for bad in ("graph", "eager+graph", "compile+cuda-graph+cuda-graph", "eager+compile"):
        with pytest.raises(InvalidArgumentError, match=re.escape(f"torch variant '{bad}'")):
            run_bench.parse_variant(bad)


def test_select_names_what_the_machine_lacks(run_bench: ModuleType) -> None:
    available = {
        "cpu": [("torch", None, ["fp32"]), ("onnxruntime", "cpu", ["fp32", "int8"])],
        "cuda": [("torch", None, ["fp32", "fp16"])],
    }
    assert run_bench.select(available, ["cuda"], ["torch"]) == {"cuda": [("torch", None, ["fp32", "fp16"])]}
    assert run_bench.select(available, None, ["onnxruntime"]) == {"cpu": [("onnxruntime", "cpu", ["fp32", "int8"])]}
    with pytest.raises(InvalidArgumentError, match="--device tpu: not available here"):
        run_bench.select(available, ["tpu"], None)
    with pytest.raises(InvalidArgumentError, match="--backends tensorrt: not available here"):
        run_bench.select(available, None, ["tensorrt"])


@pytest.mark.slow  # 27 s: the GPU driver end to end; the pieces it runs have their own tests in the default run
def test_gpu_check_dry_run_on_cpu(tmp_path: Path) -> None:
    """`bench/gpu_check.sh --device cpu --quick`: the GPU run's driver end to end, on this machine's CPU."""
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--device", "cpu", "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    (json_path,) = (p for p in tmp_path.glob("*-quick.json") if not p.name.startswith("guidelines-"))
    document = json.loads(json_path.read_text())
    assert document["complete"] and document["env"]["cpu"]["model"]
    rows = document["summary"]
    assert {(r["model"], r["variant"], r["batch"]) for r in rows} == {
        ("shufflenet_v2_x0_5", "eager", 1), ("shufflenet_v2_x0_5", "eager", 8),
    }  # fmt: skip
    for row in rows:  # every row validated against PyTorch FP32 on the CPU: the export check's 4 photos + 4 crops
        assert row["check"]["samples"] == 8 and row["check"]["passed"] and row["check"]["max_rel_error"] < 1e-4
    assert any("compile budget" in s for s in document["skipped"])  # compiling is left to the GPU machine
    markdown = json_path.with_suffix(".md").read_text()
    assert "| shufflenet_v2_x0_5 |" in markdown and "Beside the ShuffleNet V2 paper" in markdown
    (guidelines,) = tmp_path.glob("guidelines-*-quick.json")  # then the guideline suite, on the same device
    assert json.loads(guidelines.read_text())
    json_path.with_suffix(".md").unlink()  # --render writes the same Markdown again from the JSON alone
    render = subprocess.run([sys.executable, str(ROOT / "bench" / "run_bench.py"), "--render", str(json_path)],
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert render.returncode == 0 and json_path.with_suffix(".md").read_text() == markdown


def test_driver_rejects_bad_variant_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_bench.py"), "--quick", "--torch-variants", "eager,turbo",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "torch variant 'turbo' is not valid" in proc.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_dense_models_run_at_each_input_size(run_bench: ModuleType, tmp_path: Path) -> None:
    """--input-sizes: one --dynamic-size artifact (exported by the driver) runs at every size, a label map's fidelity is
    per pixel with its mean IoU, the per-op-class breakdown is measured at each size, and a side the valid-conv
    U-Net's size rule refuses is moved to the next one it takes."""
    assert run_bench.fitted_size("unet", 256) == (268, 268)
    assert run_bench.fitted_size("lraspp_mobilenet_v3_large", 70) == (70, 70)
    out = tmp_path / "out"
    code = run_bench.main([
        "--models", "lraspp_mobilenet_v3_large", "--input-sizes", "64,80", "--backends", "onnxruntime",
        "--precisions", "fp32", "--iters", "2", "--warmup", "0", "--repeats", "1", "--fidelity", "0",
        "--profile-runs", "1", "--models-dir", str(tmp_path / "models"), "--out", str(out), "--machine", "t",
    ])  # fmt: skip
    assert code == 0
    document = json.loads((out / "t.json").read_text())
    manifest = json.loads((tmp_path / "models" / "lraspp_mobilenet_v3_large" / "manifest.json").read_text())
    assert manifest["input"]["dynamic_size"]
    rows = {r["input_size"]: r for r in document["summary"]}
    assert set(rows) == {"64x64", "80x80"} and rows["80x80"]["macs"] > rows["64x64"]["macs"]
    for row in rows.values():
        check = row["check"]
        assert check["unit"] == "pixel" and check["images"] == 4 and check["passed"] and check["mean_iou"] == 1.0
    assert {(p["input_size"], p["precision"]) for p in document["breakdowns"]} == {("64x64", "fp32"), ("80x80", "fp32")}
    markdown = (out / "t.md").read_text()
    assert "| lraspp_mobilenet_v3_large @80x80 |" in markdown and "of px, mIoU 1.000" in markdown
    assert "ShuffleNet V2 paper" not in markdown
