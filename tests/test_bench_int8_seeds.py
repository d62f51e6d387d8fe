"""bench/int8_seeds.py: which seeds it runs, what it averages, and its one-line argument errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import load_script

seeds = load_script("int8_seeds")


def test_parse_seeds_takes_lists_and_ranges_once_each() -> None:
    assert seeds.parse_seeds("0-3") == [0, 1, 2, 3]
    assert seeds.parse_seeds("5, 0,5,1-2") == [5, 0, 1, 2]
    for bad in ("a", "3", "-1,2", "2-", "1,,2"):
        with pytest.raises(ValueError, match="--seeds"):
            seeds.parse_seeds(bad)


def _row(top1: float, kl: float) -> dict[str, float]:
    return {"top1": top1, "confident": 1.0, "mean_kl": kl, "seconds": 60.0}


def test_summarize_pairs_only_seeds_both_tools_ran() -> None:
    per_seed = [
        {"seed": 0, "edgeconv": _row(0.87, 0.03), "nncf": _row(0.88, 0.04)},
        {"seed": 1, "edgeconv": _row(0.90, 0.02), "nncf": _row(0.88, 0.04)},
        {"seed": 2, "edgeconv": _row(0.95, 0.01), "nncf_error": "RuntimeError: no"},
    ]
    summary = seeds.summarize(per_seed)
    assert summary["edgeconv"]["top1"]["mean"] == pytest.approx(0.9067, abs=1e-4)
    assert summary["nncf"]["top1"] == {"mean": pytest.approx(0.88), "sd": pytest.approx(0.0)}
    assert summary["top1_difference"]["mean"] == pytest.approx(0.005)  # seeds 0 and 1 only
    assert summary["top1_difference"]["sd"] == pytest.approx(0.0212, abs=1e-4)  # -1 and +2 points
    assert (summary["seeds_at_least_as_high"], summary["seeds_compared"]) == (1, 2)
    nothing = seeds.summarize([{"seed": 0, "edgeconv_error": "x", "nncf_error": "y"}])
    assert nothing["edgeconv"] is None and nothing["top1_difference"] is None


def test_bad_seeds_is_one_line_before_any_work(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        seeds.main(["--seeds", "7"])
    assert stop.value.code == 2
    assert "--seeds '7': give at least two seeds" in capsys.readouterr().err


def test_corrupt_fp32_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not a protobuf \xff\xfe")
    with pytest.raises(SystemExit) as stop:
        seeds.main(["--fp32", str(broken)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"{broken}: not an ONNX model" in err and "Traceback" not in err
