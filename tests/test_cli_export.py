"""``edgeconv export`` through typer's CliRunner: exit codes, messages, overwrite protection, atomicity."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from typer.testing import CliRunner

from edgeconv.artifact import sha256_file
from edgeconv.cli import app

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["export", *args])
    return result.exit_code, result.stdout, result.stderr


def one_error_line(err: str) -> bool:
    """stderr carries the finished-step lines and then exactly one error line, never a traceback."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    return (
        bool(lines)
        and lines[-1].startswith("edgeconv: error:")
        and "Traceback" not in err
        and sum(line.startswith("edgeconv: error:") for line in lines) == 1
    )


def test_export_writes_a_validated_artifact(tmp_path: Path) -> None:
    code, out, err = invoke("lenet5", "--out", str(tmp_path / "a"), "--fp16", "--json")
    assert code == 0, err
    manifest = json.loads(out)
    assert manifest["model"] == "lenet5" and manifest["precisions"] == ["fp32", "fp16"]
    for entry in manifest["files"].values():
        assert sha256_file(tmp_path / "a" / entry["path"]) == entry["sha256"]
    assert manifest["validation"]["fp32"]["passed"] and manifest["validation"]["fp16"]["passed"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "labels.txt",
        "manifest.json",
        "model.onnx",
        "model_fp16.onnx",
    ]
    mask = os.umask(0)
    os.umask(mask)
    folder = tmp_path / "a"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~mask  # not mkdtemp's 0700: a service account reads it
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o666 & ~mask}  # nor mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["a"]  # no staging folder left behind


def test_table_output_and_overwrite_protection(tmp_path: Path) -> None:
    folder = str(tmp_path / "a")
    code, out, _ = invoke("lenet5", "--out", folder)
    assert code == 0 and "fp32" in out and "pass" in out
    before = (tmp_path / "a" / "manifest.json").read_bytes()
    code, out, _ = invoke("lenet5", "--out", folder)  # same content: fine, nothing rewritten
    assert code == 0 and "nothing written" in out
    code, _, err = invoke("lenet5", "--out", folder, "--dynamic-batch")
    assert code == 1 and "--force" in err and one_error_line(err)
    assert (tmp_path / "a" / "manifest.json").read_bytes() == before
    code, _, err = invoke("lenet5", "--out", folder, "--dynamic-batch", "--force")
    assert code == 0, err
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["input"]["shape"][0] == "batch"


def test_failing_export_leaves_nothing_behind(tmp_path: Path) -> None:
    code, _, err = invoke("lenet5", "--out", str(tmp_path / "a"), "--input-size", "8")
    assert code == 1 and one_error_line(err)
    assert list(tmp_path.iterdir()) == []
    # a failing forced re-export keeps the old artifact intact
    assert invoke("lenet5", "--out", str(tmp_path / "a"))[0] == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    assert invoke("lenet5", "--out", str(tmp_path / "a"), "--input-size", "8", "--force")[0] == 1
    assert {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


def test_refuses_to_replace_a_folder_that_is_not_an_artifact(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    code, _, err = invoke("lenet5", "--out", str(tmp_path / "mine"), "--force")
    assert code == 1 and "not an edgeconv artifact" in err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    code, _, err = invoke("lenet6")
    assert code == 2 and "unknown model 'lenet6'" in err and "lenet5" in err
    garbage = tmp_path / "w.pth"
    garbage.write_bytes(b"\x00garbage, not a checkpoint")
    code, _, err = invoke("lenet5", "--weights", str(garbage), "--out", str(tmp_path / "o"))
    assert code == 1 and "cannot read weights" in err and one_error_line(err)
    code, _, err = invoke("lenet5", "--batch", "2", "--dynamic-batch")
    assert code == 2 and "exclude each other" in err
    code, _, err = invoke("lenet5", "--opset", "7", "--out", str(tmp_path / "o"))
    assert code == 2 and "opset 7" in err
    code, _, err = invoke("lenet5", "--width-mult", "0.5")
    assert code == 2 and "width_mult" in err
    assert not (tmp_path / "o").exists()
