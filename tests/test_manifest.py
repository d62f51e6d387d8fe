"""``edgeconv.manifest.Manifest``: the one reader and writer of manifest.json (round trip, the engine record, and one
``ArtifactError`` line naming the file and the fix for each bad manifest)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgeconv.errors import ArtifactError
from edgeconv.manifest import FORMAT, MANIFEST, Manifest, ManifestError, _fix


def _document() -> dict[str, Any]:
    """A manifest as ``edgeconv export`` writes it (the keys callers read)."""
    return {
        "format": FORMAT,
        "model": "lenet5",
        "family": "lenet",
        "model_kwargs": {"num_classes": 10},
        "input": {"name": "input", "shape": ["batch", 1, 32, 32], "dtype": "float32", "layout": "NCHW"},
        "output": {"name": "logits", "shape": ["batch", 10], "dtype": "float32", "kind": "logits"},
        "preprocessing": {"color": "L", "scale": 1 / 255, "mean": [0.5], "std": [0.5], "resize_ratio": 0.875},
        "labels": {"set": "mnist", "file": "labels.txt", "count": 10, "sha256": "ab" * 32},
        "precisions": ["fp32", "fp16"],
        "files": {
            "fp32": {"path": "model.onnx", "precision": "fp32", "sha256": "cd" * 32, "bytes": 1234},
            "fp16": {"path": "model_fp16.onnx", "precision": "fp16", "sha256": "ef" * 32, "bytes": 617},
        },
        "opset": 17,
        "fused": True,
        "weights": {"source": "random init, torch.manual_seed(0)", "name": None, "sha256": None},
        "int8": None,
        "unknown_future_key": {"kept": [1, 2]},
    }


def test_round_trip_keeps_the_document_and_its_bytes(tmp_path: Path) -> None:
    data = _document()
    path = Manifest(tmp_path, data).write()
    assert path == tmp_path / MANIFEST
    assert path.read_text(encoding="utf-8") == json.dumps(data, indent=2) + "\n"  # the schema and layout of export
    manifest = Manifest.read(tmp_path)
    assert manifest.data == data and manifest.is_artifact
    manifest.write()
    assert path.read_text(encoding="utf-8") == json.dumps(data, indent=2) + "\n"
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temp file


def test_accessors(tmp_path: Path) -> None:
    Manifest(tmp_path, _document()).write()
    manifest = Manifest.load(tmp_path)
    assert manifest.model == manifest.model_name == "lenet5"
    assert manifest.model_kwargs == {"num_classes": 10} and manifest.fused
    assert manifest.input_name == "input" and manifest.input_shape == ["batch", 1, 32, 32]
    assert manifest.precisions == ["fp32", "fp16"]
    fp16 = manifest.files["fp16"]
    assert (fp16.name, fp16.path, fp16.sha256, fp16.bytes) == ("model_fp16.onnx", tmp_path / "model_fp16.onnx",
                                                                "ef" * 32, 617)  # fmt: skip
    assert manifest.file("fp32") == tmp_path / "model.onnx"
    with pytest.raises(ArtifactError, match=r"has no int8 model \(it holds: fp32, fp16\); export it with --int8"):
        manifest.file("int8")
    assert manifest.preprocessing is not None and manifest.preprocessing["mean"] == [0.5]
    assert manifest.labels_file == tmp_path / "labels.txt" and manifest.labels["count"] == 10
    assert manifest.recorded_hashes() == {
        "model.onnx": "cd" * 32,
        "model_fp16.onnx": "ef" * 32,
        "labels.txt": "ab" * 32,
    }
    assert manifest.int8 is None and manifest.weights["name"] is None and manifest.engines == []


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError) as info:
        Manifest.read(tmp_path)
    line = str(info.value)
    assert "\n" not in line and str(tmp_path / MANIFEST) in line and "`edgeconv export MODEL`" in line
    empty = Manifest.read(tmp_path, required=False)  # a folder of bare .onnx files
    assert empty.data == {} and not empty.is_artifact and empty.model_name is None and empty.files == {}
    assert empty.precisions == [] and empty.preprocessing is None and empty.engines == []
    assert empty.labels_file == tmp_path / "labels.txt"


def test_hand_written_manifest_without_format_is_read_when_not_required(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text(json.dumps({"model": {"name": "lenet5"}, "precision": "fp32"}))
    manifest = Manifest.read(tmp_path, required=False)
    assert manifest.model_name == "lenet5" and not manifest.is_artifact
    with pytest.raises(ArtifactError, match="lacks format, files"):
        Manifest.read(tmp_path, required=True)


BAD: dict[str, tuple[bytes | str, str]] = {
    "empty": ("", "is not JSON"),
    "truncated": (json.dumps(_document())[:100], "is not JSON"),
    "text": ("not json at all\n", "is not JSON"),
    "binary": (b"\xff\xfe\x00\x81junk", "is not JSON (binary data"),
    "list": ("[1, 2, 3]\n", "is not a JSON object (it holds a JSON list)"),
    "string": ('"manifest"', "is not a JSON object (it holds a JSON string)"),
    "other format": (json.dumps({"format": "other/9", "model": "x"}), "is a 'other/9' manifest"),
    "model_kwargs": (json.dumps({**_document(), "model_kwargs": 7}), "model_kwargs is not a JSON object"),
    "files a list": (json.dumps({**_document(), "files": []}), "files is not a JSON object"),
    "file without path": (json.dumps({**_document(), "files": {"fp32": {"precision": "fp32"}}}), "files.fp32 names"),
    "input a string": (json.dumps({**_document(), "input": "x"}), "input is not a JSON object"),
    "precisions": (json.dumps({**_document(), "precisions": "fp32"}), "precisions is not a JSON list"),
    "engines": (json.dumps({**_document(), "tensorrt": {"engines": [1]}}), "tensorrt.engines is not a list"),
}


@pytest.mark.parametrize("required", [True, False], ids=["required", "optional"])
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_manifest_is_one_line_naming_the_file_and_the_fix(tmp_path: Path, case: str, required: bool) -> None:
    raw, what = BAD[case]
    (tmp_path / MANIFEST).write_bytes(raw.encode("utf-8") if isinstance(raw, str) else raw)
    with pytest.raises(ArtifactError) as info:
        Manifest.read(tmp_path, required=required)
    line = str(info.value)
    assert "\n" not in line, line
    assert str(tmp_path / MANIFEST) in line and what in line, line
    assert "re-export the artifact with `edgeconv export MODEL`" in line, line
    assert ("delete it" in line) is not required, line  # a folder that may go without: it may be deleted too
    assert isinstance(info.value, ManifestError) and line == f"{info.value.problem}; {_fix(required)}"


def test_missing_keys_are_named_by_the_accessor(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text(json.dumps({"format": FORMAT, "files": {}}))
    manifest = Manifest.read(tmp_path)
    for read, key in ((lambda: manifest.input_name, "input.name"), (lambda: manifest.input_shape, "input.shape"),
                      (lambda: manifest.model, "model")):  # fmt: skip
        with pytest.raises(ArtifactError) as info:
            read()
        line = str(info.value)
        assert "\n" not in line and str(tmp_path / MANIFEST) in line and key in line and "re-export" in line


def test_record_engine_appends_and_replaces_and_keeps_the_rest(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text(json.dumps({"model": "mobilenet_v2", "opset": 17}))
    for entry in ({"file": "a.engine", "n": 1}, {"file": "b.engine", "n": 2}, {"file": "a.engine", "n": 3}):
        manifest = Manifest.read(tmp_path, required=False)
        manifest.record_engine(entry)
        manifest.write()
    data = json.loads((tmp_path / MANIFEST).read_text())
    assert data == {
        "model": "mobilenet_v2",
        "opset": 17,
        "tensorrt": {"engines": [{"file": "b.engine", "n": 2}, {"file": "a.engine", "n": 3}]},
    }
    assert Manifest.read(tmp_path, required=False).engines == data["tensorrt"]["engines"]
    bare = tmp_path / "bare"  # an .onnx without a manifest: the record starts one
    manifest = Manifest.read(bare, required=False)
    manifest.record_engine({"file": "c.engine"})
    manifest.write()
    assert json.loads((bare / MANIFEST).read_text()) == {"tensorrt": {"engines": [{"file": "c.engine"}]}}


def test_parse_is_the_same_policy_for_bytes_from_elsewhere(tmp_path: Path) -> None:
    assert Manifest.parse(json.dumps(_document()).encode(), folder=tmp_path).model == "lenet5"
    with pytest.raises(ArtifactError, match="is not a JSON object"):
        Manifest.parse("[]", folder=tmp_path)
    # the problem apart from the fix (edgeconv remote warns with it about the board's copy), whatever the path holds
    with pytest.raises(ManifestError) as info:
        Manifest.parse("{", folder="/home/x/le net 5; $(id)", required=False)
    assert info.value.problem.startswith("/home/x/le net 5; $(id)/manifest.json is not JSON (")
    assert str(info.value) == f"{info.value.problem}; {_fix(False)}"


def test_module_imports_no_torch_onnx_or_numpy() -> None:
    code = "import edgeconv.manifest, sys; print(sorted({'torch', 'onnx', 'numpy'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_no_other_module_names_the_file() -> None:
    """The one-reader rule, checked on the source: outside ``edgeconv/manifest.py`` no code of the package has the
    file name ``"manifest.json"`` as a literal (a path built by hand); readers go through :class:`Manifest`, and the
    few that only test for the file name it by ``MANIFEST``. (The profiler's ONNX-vs-PyTorch reconciliation built the
    path and read it with ``json.loads`` until this test was added.)"""
    import ast

    package = Path(__file__).resolve().parents[1] / "edgeconv"
    found = [
        f"{path.relative_to(package.parent)}:{node.lineno}"
        for path in sorted(package.rglob("*.py"))
        if path != package / "manifest.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and node.value == MANIFEST
    ]
    assert not found, f"manifest.json named outside edgeconv/manifest.py: {found}"
