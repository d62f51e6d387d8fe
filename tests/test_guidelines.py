"""ShuffleNet V2's guideline micro-benchmarks (edgeconv.guidelines): the paper's channel counts at equal mult-adds,
the networks, the verdict rules, the readings' figures against the code's own counts, a real run, CLI and tables."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from conftest import load_script
from typer.testing import CliRunner

from edgeconv.cli import app
from edgeconv.errors import ArtifactError, BackendUnavailableError, InvalidArgumentError
from edgeconv.guidelines import (
    FAILS,
    FLOPS_TOLERANCE,
    GUIDELINES,
    HOLDS,
    INPUT_SIZE,
    NOISE,
    PLATFORMS,
    READINGS,
    SCALES,
    STACK,
    BottleneckConfig,
    ConvPairConfig,
    FragmentConfig,
    GuidelineOptions,
    build_network,
    check_equal_flops,
    count_macs,
    find_results,
    flops_spread,
    get_guideline,
    guideline_report,
    load_results,
    paper_verdicts,
    repeat_spread,
    results_document,
    run_guidelines,
    summarise_verdicts,
    write_results,
)

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
ROWS = [(key, index) for key, g in GUIDELINES.items() for index in range(len(g.rows))]


def _networks(key: str) -> list[tuple[Any, Any]]:
    """(GPU, ARM) configs of a table's rows, as their concrete classes."""
    return [(row.gpu_network, row.arm_network) for row in GUIDELINES[key].rows]


def _built(config: Any) -> Any:
    return build_network(config)  # an nn.Sequential of blocks


# --- the paper's tables -------------------------------------------------------------------------------------------
def test_paper_channel_counts() -> None:
    """The configs carry the channel counts the paper prints (Tables 1-4), except ARM g=8 (see the next test)."""
    assert [(gpu.c1, gpu.c2, arm.c1, arm.c2) for gpu, arm in _networks("g1")] == [
        (128, 128, 32, 32), (90, 180, 22, 44), (52, 312, 13, 78), (36, 432, 9, 108),
    ]  # fmt: skip
    g2 = [(gpu.channels, arm.channels, gpu.groups) for gpu, arm in _networks("g2")]
    assert g2 == [(128, 64, 1), (180, 90, 2), (256, 128, 4), (360, 184, 8)]
    assert {(gpu.base_channels, arm.base_channels) for gpu, arm in _networks("g3")} == {(128, 64)}
    assert {gpu.scaled(4).base_channels for gpu, _ in _networks("g3")} == {512}  # Table 3: c=128/256/512
    assert [arm.scaled(s).channels for s in SCALES for _, arm in _networks("g4")][::4] == [32, 64, 128]
    assert all(config.blocks == STACK for pair in _networks("g1") for config in pair)


def test_paper_tolerance_and_g2_width() -> None:
    # The paper's own Table 1 rows differ by up to 5.5% (ARM (22,44): 968 vs 1024 mult-adds per pixel)
    assert (1024 - 22 * 44) / 1024 == pytest.approx(0.0547, abs=1e-4)
    assert (32 * 32 - 22 * 44) / (32 * 32) < FLOPS_TOLERANCE
    # ARM g=8: the printed c=180 cannot be split into 8 groups; 184 is the multiple of 8 nearest sqrt(8 x 64^2) = 181
    assert 180 % 8 and (8 * 64**2) ** 0.5 == pytest.approx(181.02, abs=0.01)
    g8 = _networks("g2")[3][1]
    assert g8.channels % g8.groups == 0
    assert g8.macs() / GUIDELINES["g2"].rows[0].arm_network.macs() == pytest.approx(1.033, abs=1e-3)


@pytest.mark.parametrize("key", list(GUIDELINES))
@pytest.mark.parametrize("platform", PLATFORMS)
def test_rows_of_a_table_have_equal_mult_adds(key: str, platform: str) -> None:
    guideline = GUIDELINES[key]
    check_equal_flops(guideline, platform)  # raises above the paper's own tolerance
    for scale in SCALES:
        assert flops_spread(guideline, platform, scale) <= FLOPS_TOLERANCE
    if key in ("g3", "g4"):  # derived widths (G3) and identical convs (G4) are within rounding
        assert flops_spread(guideline, platform) < 0.012


def test_equal_flops_check_rejects_unequal_rows() -> None:
    import dataclasses

    g1 = GUIDELINES["g1"]
    bad = dataclasses.replace(g1, rows=(g1.rows[0], dataclasses.replace(g1.rows[1], arm_network=ConvPairConfig(8, 8))))
    with pytest.raises(InvalidArgumentError, match="differ in mult-adds"):
        check_equal_flops(bad, "arm")


@pytest.mark.parametrize(("key", "index"), ROWS)
def test_networks_mult_adds_and_shapes(key: str, index: int) -> None:
    """The analytic count equals edgeconv's profiler on the built network, and the stack keeps its input shape."""
    row = GUIDELINES[key].rows[index]
    for platform in PLATFORMS:
        config = row.network(platform)
        assert count_macs(config) == config.macs()
        with torch.device("meta"):
            out = config.build()(torch.empty(2, config.in_channels, INPUT_SIZE, INPUT_SIZE))
        assert tuple(out.shape) == (2, config.in_channels, INPUT_SIZE, INPUT_SIZE)


def test_fragment_blocks() -> None:
    series = FragmentConfig(128, 4, "series")
    assert (series.in_channels, series.branch_channels) == (64, 64)
    parallel = FragmentConfig(128, 4, "parallel")
    assert (parallel.in_channels, parallel.branch_channels) == (128, 32)
    added = FragmentConfig(128, 2, "parallel", join="add")
    assert (added.in_channels, added.branch_channels) == (91, 91)
    for config in (series, parallel, added):
        assert abs(config.macs() - FragmentConfig(128).macs()) / FragmentConfig(128).macs() < 0.012
    # k concatenated branches compute what one conv with their weights stacked computes
    block = _built(FragmentConfig(16, 4, "parallel", blocks=1))[0]
    whole = torch.nn.Conv2d(16, 16, 1, bias=False)
    whole.weight.data = torch.cat([conv.weight.data for conv in block.convs])
    x = torch.randn(1, 16, 8, 8)
    torch.testing.assert_close(block(x), whole(x), rtol=1e-5, atol=1e-6)


def test_bottleneck_switches() -> None:
    x = torch.randn(1, 32, 8, 8)
    full = _built(BottleneckConfig(32, units=1))
    bare = _built(BottleneckConfig(32, relu=False, shortcut=False, units=1))  # same seed: same weights
    unit = bare[0]
    expected = unit.conv3(unit.conv2(unit.conv1(x)))
    torch.testing.assert_close(bare(x), expected)
    full_unit = full[0]
    torch.testing.assert_close(full_unit.conv1.weight, unit.conv1.weight)
    expected = torch.relu(full_unit.conv3(torch.relu(full_unit.conv2(torch.relu(full_unit.conv1(x))))) + x)
    torch.testing.assert_close(full(x), expected)
    assert BottleneckConfig(128).width == 32


def test_readings_quote_the_codes_counts() -> None:
    """The figures the readings give, recomputed from the configs and the paper's speeds."""
    g3, g4, g2 = GUIDELINES["g3"], GUIDELINES["g4"], GUIDELINES["g2"]
    # Batch: Table 3's 1-fragment at c=512: 8.2 G mult-adds per image; 434 batches/s -> 7.1 TFLOPS at 1, 57 at 8
    macs = g3.rows[0].gpu_network.scaled(4).macs()
    assert macs / 1e9 == pytest.approx(8.2, abs=0.05)
    assert 2 * macs * 434 / 1e12 == pytest.approx(7.1, abs=0.05)
    assert 2 * macs * 434 * 8 / 1e12 == pytest.approx(57, abs=0.5)
    # x1/x2/x4: Table 2's g=1 row is Table 3's 1-fragment row at the doubled widths (within 2%)
    for platform in PLATFORMS:
        for a, b in zip(g2.rows[0].paper(platform), g3.rows[0].paper(platform), strict=True):
            assert abs(a - b) / b < 0.02
        assert g2.rows[0].network(platform).scaled(4).macs() == g3.rows[0].network(platform).scaled(4).macs()
    # G4 on ARM: three convs of c channels at 56x56 would need 20-28 G mult-adds/s; the bottleneck 1.9-2.7
    wide = [STACK * INPUT_SIZE**2 * 11 * (32 * s) ** 2 * g4.rows[0].arm[i] / 1e9 for i, s in enumerate(SCALES)]
    assert round(min(wide)) == 20 and round(max(wide)) == 28
    ours = [g4.rows[0].arm_network.scaled(s).macs() * g4.rows[0].arm[i] / 1e9 for i, s in enumerate(SCALES)]
    assert round(min(ours), 1) == 1.9 and round(max(ours), 1) == 2.7
    # ... and the readings printed with every result say exactly these figures
    assert f"{macs / 1e9:.1f} G mult-adds per image" in READINGS[0]
    assert f"= {2 * macs * 434 * 8 / 1e12:.0f} TFLOPS at batch 8, {2 * macs * 434 / 1e12:.1f} at batch 1" in READINGS[0]
    assert f"{round(min(wide))}-{round(max(wide))} G mult-adds/s" in g4.readings[0]
    assert f"{min(ours):.1f}-{max(ours):.1f} G/s" in g4.readings[0]


# --- verdicts -----------------------------------------------------------------------------------------------------
def test_verdict_rules() -> None:
    g1, g2, g4 = GUIDELINES["g1"], GUIDELINES["g2"], GUIDELINES["g4"]
    assert g1.verdict([100, 90, 80, 70]) == HOLDS
    assert g1.verdict([100, 103, 80, 70]) == NOISE  # 1:2 within 5% of 1:1
    assert g1.verdict([100, 90, 120, 70]) == FAILS
    assert g1.verdict([100, 103, 80, 70], margin=0.02) == FAILS
    assert g2.verdict([100, 90, 80, 70]) == HOLDS
    assert g2.verdict([100, 90, 95, 70]) == FAILS  # rises from g=2 to g=4 by more than 5%
    assert g2.verdict([100, 90, 93, 70]) == HOLDS  # a rise within the margin is noise
    assert g2.verdict([100, 99, 98, 97]) == NOISE
    assert g4.verdict([100, 110, 105, 120]) == HOLDS
    assert g4.verdict([100, 110, 105, 97]) == NOISE
    assert g4.verdict([100, 110, 105, 90]) == FAILS
    assert g4.verdict([100, None, 105, 90]) is None
    # a difference within the repeat-to-repeat spread of either figure compared is noise
    assert g1.verdict([100, 90, 80, 70], spreads=[0.2, 0.01, 0.01, 0.01]) == NOISE
    assert g1.verdict([100, 90, 80, 70], spreads=[0.01, 0.01, 0.15, None]) == HOLDS  # 80 is below 100 by > 15%
    assert g4.verdict([100, 110, 105, 120], spreads=[None, None, None, 0.25]) == NOISE
    assert summarise_verdicts([HOLDS, HOLDS, HOLDS], ("x1", "x2", "x4")) == HOLDS
    assert summarise_verdicts([HOLDS, None, FAILS], ("x1", "x2", "x4")) == "x1: holds; x4: does not hold"
    assert summarise_verdicts([None, None, None], ("x1", "x2", "x4")) == "not measured"


def test_repeat_spread_ignores_one_disturbed_repeat() -> None:
    assert repeat_spread([100.0]) is None
    assert repeat_spread([100.0, 110.0]) == pytest.approx(0.1 / 1.05)
    assert repeat_spread([300.0, 180.0, 306.0]) == pytest.approx(6 / 300)  # the slowed repeat moves nothing
    assert repeat_spread([100.0, 101.0, 102.0, 150.0, 50.0]) == pytest.approx(2 / 101)


def test_rules_on_the_papers_own_figures() -> None:
    """The paper's conclusions come out of its own figures: G2 and G4 hold everywhere, G3 holds on the GPU and is
    within noise on ARM ("on ARM, the speed reduction is relatively small")."""
    for key in ("g2", "g4"):
        for platform in PLATFORMS:
            assert paper_verdicts(GUIDELINES[key], platform) == [HOLDS] * 3, (key, platform)
    assert paper_verdicts(GUIDELINES["g3"], "gpu") == [HOLDS] * 3
    assert paper_verdicts(GUIDELINES["g3"], "arm") == [NOISE] * 3
    assert paper_verdicts(GUIDELINES["g1"], "gpu") == [HOLDS] * 3


# --- a real run ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick_run() -> dict[str, Any]:
    """G4 at x1 on torch and ONNX Runtime, 2 iterations: correctness of the plumbing, not a measurement."""
    options = GuidelineOptions(backends=("torch", "onnxruntime"), scales=(1,), iterations=2, warmup=1, repeats=2)
    return run_guidelines(["g4"], options)


def test_quick_run_measures_every_row_on_both_backends(quick_run: dict[str, Any]) -> None:
    assert quick_run["settings"]["threads"] == 1 and quick_run["settings"]["columns"] == "arm"
    assert quick_run["env"]["cpu"]["model"]
    table = quick_run["tables"]["g4"]
    assert table["platform"] == "arm" and not table["failures"]
    for index, row in enumerate(table["rows"]):
        assert row["networks"][1:] == [None, None]  # only x1 was asked for
        assert row["macs"][0] == GUIDELINES["g4"].rows[index].arm_network.macs()
        for backend in ("torch", "onnxruntime"):
            cell = row["measured"][backend][0]
            assert cell["speed"] > 0 and len(cell["repeats"]) == 2 and cell["iterations"] == 2
            assert cell["passed"] and cell["max_rel_error"] <= 1e-4  # same outputs as PyTorch on the CPU
            if index == 0:
                assert cell["ratio"] == pytest.approx(1.0)
    for backend in ("torch", "onnxruntime"):
        verdicts = table["verdicts"][backend]
        assert verdicts[0] in (HOLDS, FAILS, NOISE) and verdicts[1:] == [None, None]


def test_results_file_round_trip_and_report(quick_run: dict[str, Any], tmp_path: Path) -> None:
    path = write_results(tmp_path / "guidelines-test-1c.json", results_document([quick_run], machine="test-1c"))
    document = load_results(path)
    assert document["machine"] == "test-1c" and document["readings"] and "arXiv 1807.11164" in document["paper"]
    report = guideline_report("shufflenet_v2_g4", document["runs"])
    assert [c["label"] for c in report["measured_columns"]] == ["torch, cpu, 1 thread", "onnxruntime, cpu, 1 thread"]
    first = [row for row in report["rows"] if row["size"] == 0]
    assert [row["label"] for row in first] == [row.label for row in GUIDELINES["g4"].rows]
    assert all(cell is not None for row in first for cell in row["measured"])
    assert report["rows"][4]["measured"] == [None, None]  # c=64 not measured


# --- results files ------------------------------------------------------------------------------------------------
def _cell(speed: float, ratio: float) -> dict[str, Any]:
    return {"speed": speed, "ratio": ratio, "passed": True}


def _document(path: Path, speeds: list[float], machine: str = "test-cpu-4c") -> Path:
    """A results file as run_guidelines writes it, G2 on onnxruntime at x1 (test input, not a measurement)."""
    g2 = GUIDELINES["g2"]
    rows = [
        {
            "label": row.label,
            "networks": [row.arm_network.describe(), None, None],
            "macs": [row.arm_network.macs(), None, None],
            "measured": {"onnxruntime": [_cell(speed, speed / speeds[0]), None, None]},
        }
        for row, speed in zip(g2.rows, speeds, strict=True)
    ]
    run = {
        "settings": {**GuidelineOptions(backends=("onnxruntime",)).to_dict(), "scales": [1]},
        "env": {"cpu": {"model": "Test CPU 9000", "usable_cores": 4, "load_avg_1m": 0.1}, "gpu": None, "versions": {}},
        "seconds": 1.0,
        "tables": {
            "g2": {
                "key": "g2",
                "platform": "arm",
                "rows": rows,
                "verdicts": {"onnxruntime": [g2.verdict(speeds), None, None]},
                "skipped": [],
                "failures": [],
            }
        },
    }
    return write_results(path, results_document([run], machine=machine))


def test_find_and_load_results(tmp_path: Path) -> None:
    assert find_results([tmp_path]) is None
    old = _document(tmp_path / "guidelines-old.json", [100, 90, 80, 70])
    new = _document(tmp_path / "guidelines-new.json", [100, 90, 80, 70])
    quick = _document(tmp_path / "guidelines-new-quick.json", [100, 90, 80, 70])
    foreign = tmp_path / "guidelines-foreign.json"
    foreign.write_text(json.dumps({"summary": []}))
    for age, path in enumerate((old, new, quick, foreign)):
        os.utime(path, (1_000_000 + age, 1_000_000 + age))
    assert find_results([tmp_path]) == new.resolve()
    with pytest.raises(ArtifactError, match="not found"):
        load_results(tmp_path / "none.json")
    with pytest.raises(ArtifactError, match="not a guideline results file"):
        load_results(foreign)
    from edgeconv.profile.tables import find_bench_results

    assert find_bench_results([tmp_path]) == foreign.resolve()  # a guideline file is never taken for bench results


# --- CLI ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-g", "g5"], "guideline 'g5' is not valid; choose one of g1, g2, g3, g4"),
        (["-b", "tflite"], "backend 'tflite' is not valid; choose one of torch, onnxruntime"),
        (["--scales", "3"], "--scales '3' is not valid; use the paper's sizes 1,2,4"),
        (["--device", "tpu"], "device 'tpu' is not valid; choose one of cpu, cuda"),
        (["--threads", "0"], "--threads 0 must be >= 1"),
        (["--columns", "npu"], "columns 'npu' is not valid; choose one of gpu, arm"),
        (["--statistic", "max"], "statistic 'max' is not valid; choose one of min, p50, mean"),
        (["--margin", "0.7"], "--margin 0.7 must be in [0, 0.5)"),
        (["--iters", "0"], "--iters 0 and --repeats 1 must be >= 1"),
    ],
)
def test_cli_errors(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["guidelines", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the run would measure")
def test_cli_cuda_without_gpu_is_one_line_error() -> None:
    args = ["guidelines", "--device", "cuda", "-g", "g4", "-b", "torch", "--scales", "1", "--iters", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "no network could run on torch (cuda)" in result.stderr and "CUDA" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_no_backend_for_the_device_is_refused_before_any_export(tmp_path: Path) -> None:
    options = GuidelineOptions(device="cuda", backends=("torch",), scales=(1,), iterations=1, warmup=0)
    with pytest.raises(BackendUnavailableError, match=r"no network could run on torch \(cuda\): torch: "):
        run_guidelines(["g4"], options, workdir=tmp_path)
    assert not list(tmp_path.iterdir())  # nothing was built or exported first


def test_cli_help_teaches() -> None:
    result = runner.invoke(app, ["guidelines", "--help"])
    assert result.exit_code == 0
    assert "Examples" in result.stdout and "edgeconv guidelines -g g2,g4" in result.stdout


def test_cli_quick_run_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "g1.json"
    args = ["guidelines", "-g", "g1", "-b", "onnxruntime", "--scales", "1", "--iters", "2", "--warmup", "0"]
    result = runner.invoke(app, [*args, "--json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert load_results(out)["runs"][0]["tables"]["g1"] == printed["runs"][0]["tables"]["g1"]
    ratios = [row["measured"]["onnxruntime"][0]["ratio"] for row in printed["runs"][0]["tables"]["g1"]["rows"]]
    assert ratios[0] == pytest.approx(1.0) and all(r > 0 for r in ratios)


# --- tables -------------------------------------------------------------------------------------------------------
def test_tables_lists_and_shows_guideline_tables(tmp_path: Path) -> None:
    path = _document(tmp_path / "guidelines-test.json", [100.0, 90.0, 80.0, 50.0])
    result = runner.invoke(app, ["tables", "shufflenet_v2_g2", "--guidelines", str(path), "--json"])
    assert result.exit_code == 0, result.output
    (table,) = json.loads(result.stdout)
    assert table["name"] == "shufflenet_v2_g2" and table["guidelines_file"] == str(path)
    first = [row for row in table["rows"] if row["size"] == 0]
    assert [row["paper"]["arm"] for row in first] == [40.0, 35.0, 32.9, 27.8]  # Table 2 as printed
    assert [row["paper"]["gpu"] for row in first] == [2451, 1725, 1026, 634]
    assert first[3]["paper_ratio"]["arm"] == pytest.approx(27.8 / 40.0)
    assert [row["measured"][0]["ratio"] for row in first] == pytest.approx([1.0, 0.9, 0.8, 0.5])
    assert table["measured_columns"][0]["verdict"] == "x1: holds"
    assert table["paper_verdicts"] == {"gpu": HOLDS, "arm": HOLDS}

    text = runner.invoke(app, ["tables", "shufflenet_v2_g2", "--guidelines", str(path)])
    assert text.exit_code == 0, text.output
    assert "Table 2" in text.stdout and "onnxruntime, cpu, 1 thread: x1: holds" in text.stdout
    assert "Test CPU 9000" in text.stdout and "arXiv 1807.11164" in text.stdout

    pending = runner.invoke(app, ["tables", "shufflenet_v2_g3", "--guidelines", str(path)])
    assert pending.exit_code == 0 and "pending" in pending.stdout  # the file has no G3


def test_tables_unknown_name_lists_guideline_tables() -> None:
    result = runner.invoke(app, ["tables", "shufflenet_v2_g9"])
    assert result.exit_code == 2
    assert "unknown table 'shufflenet_v2_g9'" in result.stderr and "shufflenet_v2_g4" in result.stderr
    assert get_guideline("shufflenet_v2_g4") is GUIDELINES["g4"]


def test_cli_spells_out_the_guideline_table_names() -> None:
    """``edgeconv tables`` names the guideline tables without importing edgeconv.guidelines (torch): the same names."""
    from edgeconv.cli.tables import GUIDELINE_TABLES
    from edgeconv.guidelines import TABLE_NAMES

    assert GUIDELINE_TABLES == TABLE_NAMES


def test_tables_missing_guidelines_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["tables", "shufflenet_v2_g1", "--guidelines", str(tmp_path / "none.json")])
    assert result.exit_code != 0 and "none.json not found" in result.stderr


# --- the driver ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def driver() -> ModuleType:
    return load_script("guidelines")


def test_driver_markdown(driver: ModuleType, tmp_path: Path) -> None:
    path = _document(tmp_path / "guidelines-test.json", [100.0, 90.0, 95.0, 50.0])
    text = driver.markdown(load_results(path), path)
    assert "# ShuffleNet V2's guidelines, measured on test-cpu-4c" in text and "Test CPU 9000" in text
    assert "| g=2 | x1: c=90, g=2 | 35.0 (0.88) | 1725 (0.70) | 90.0 (**0.90**) |" in text
    assert "| onnxruntime, cpu, 1 thread | does not hold | - | - | x1: does not hold |" in text
    assert "Table 1," not in text  # only what was measured
    assert "184" in text  # the G2 reading
