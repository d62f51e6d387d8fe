"""edgeconv.remote without a network: the board record parsers on real-format outputs of JetPack 5.x and 6.x
(tests/data/jetson, sources in its SOURCES.md), trtexec's log and --exportTimes, the trtexec flags, the power and
throttling figures, the board address and the quoting of every remote command."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from edgeconv.backends.tensorrt import BuildRequest, OnnxSummary, parse_trt_version, plan_build, trt_features
from edgeconv.errors import InvalidArgumentError
from edgeconv.remote.board import (
    Board,
    parse_device_tree,
    parse_dpkg,
    parse_grep_files,
    parse_jetson_clocks,
    parse_nv_tegra_release,
    parse_nvidia_smi,
    parse_nvpmodel_query,
    parse_tegrastats,
    power_summary,
    run_record,
    with_energy,
)
from edgeconv.remote.commands import Program, remote_command, wrapped
from edgeconv.remote.ssh import parse_board
from edgeconv.remote.sync import merged_manifest
from edgeconv.remote.trtexec import banner_version, build_flags, parse_export_times, parse_log, timing_flags

DATA = Path(__file__).parent / "data" / "jetson"
HOSTILE = ["a b", "x; rm -rf ~", "$(touch pwned)", "`id`", "it's", 'say "hi"', "two\nlines", "*", "-n", "", "~/x"]


def _read(generation: str, name: str) -> str:
    return (DATA / generation / name).read_text()


@pytest.mark.parametrize(
    ("generation", "l4t", "extra"),
    [("jp5", "35.4.1", {"l4t_board": "t186ref"}), ("jp6", "36.4.3", {"kernel_variant": "oot"})],
)
def test_nv_tegra_release(generation: str, l4t: str, extra: dict[str, str]) -> None:
    info = parse_nv_tegra_release(_read(generation, "nv_tegra_release"))
    assert info["l4t"] == l4t and extra.items() <= info.items()
    assert parse_nv_tegra_release("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref")["l4t"] == "32.7.1"
    assert parse_nv_tegra_release("not a release file") == {}


@pytest.mark.parametrize(
    ("generation", "module", "carrier"), [("jp5", "p3701-0005", "p3737-0000"), ("jp6", "p3767-0005", "p3768-0000")]
)
def test_device_tree(generation: str, module: str, carrier: str) -> None:
    compatible = "\x00".join(_read(generation, "device_tree_compatible").split()) + "\x00"
    info = parse_device_tree(_read(generation, "device_tree_model") + "\x00", compatible)
    assert info["model"].startswith("NVIDIA Jetson") and "\x00" not in info["model"]
    assert (info["module"], info["carrier"], info["soc"]) == (module, carrier, "tegra234")
    assert parse_device_tree(None, None) == {}


@pytest.mark.parametrize(
    ("generation", "mode"), [("jp5", {"name": "MAXN", "id": 0}), ("jp6", {"name": "MAXN_SUPER", "id": 2})]
)
def test_nvpmodel(generation: str, mode: dict[str, object]) -> None:
    assert parse_nvpmodel_query(_read(generation, "nvpmodel_q.txt")) == mode
    # Without root, nvpmodel prints warnings around the same two lines.
    noisy = "NVPM WARN: patching tpc_pg_mask: (0x0:0x0)\nNV Power Mode: 15W\n1\n"
    assert parse_nvpmodel_query(noisy) == {"name": "15W", "id": 1}


@pytest.mark.parametrize(
    ("generation", "gpu_max", "emc_max", "cpu_max", "cpus"),
    [("jp5", 1300.5, 3199.0, 2201.6, 12), ("jp6", 1020.0, 3199.0, 1728.0, 6)],
)
def test_jetson_clocks(generation: str, gpu_max: float, emc_max: float, cpu_max: float, cpus: int) -> None:
    free = parse_jetson_clocks(_read(generation, "jetson_clocks_show.txt"))
    locked = parse_jetson_clocks(_read(generation, "jetson_clocks_show_locked.txt"))
    assert free["locked"] is False and locked["locked"] is True
    assert free["gpu_mhz"] == {"min": 306.0, "max": gpu_max, "current": 306.0}
    assert locked["gpu_mhz"]["min"] == locked["gpu_mhz"]["current"] == gpu_max
    assert free["emc_mhz"]["max"] == emc_max and free["emc_freq_override"] == 0 and locked["emc_freq_override"] == 1
    assert free["cpu_mhz"]["max"] == cpu_max and len(free["cpu_mhz"]["current"]) == cpus
    assert locked["cpu_mhz"]["min"] == cpu_max and free["soc_family"] == "tegra234" and "fan" in free
    assert free["power_mode"] == ("MAXN" if generation == "jp5" else "MAXN_SUPER")
    # L4T R36 on AGX Orin pins EMC by min = max and prints no FreqOverride.
    emc_pinned = (
        "GPU MinFreq=1300500000 MaxFreq=1300500000 CurrentFreq=1300500000\n"
        "EMC MinFreq=3199000000 MaxFreq=3199000000 CurrentFreq=3199000000\n"
    )
    assert parse_jetson_clocks(emc_pinned)["locked"] is True


def test_tegrastats_jp5_agx_orin() -> None:
    lines = _read("jp5", "tegrastats.txt").splitlines()
    sample = parse_tegrastats(lines[1])
    assert sample["time"] == "08-21-2023 10:31:10" and sample["gpu_load_pct"] == 97 and sample["gpu_mhz"] == 1300
    assert sample["emc_mhz"] == 3199 and sample["cpu_mhz"] == 2201 and len(sample["cpu_load_pct"]) == 12
    assert sample["rails_w"] == {
        "VDD_GPU_SOC": 9.218,
        "VDD_CPU_CV": 0.975,
        "VIN_SYS_5V0": 4.461,
        "VDDQ_VDD2_1V8AO": 0.705,
    }
    assert "cv0" not in sample["temperatures_c"] and sample["temperatures_c"]["tj"] == 48.2  # -256C: sensor off
    power = power_summary([parse_tegrastats(line) for line in lines], 100)
    assert power["total_rail"] == "sum of rails" and power["samples"] == 6
    assert power["mean_w"] == pytest.approx(sum(power["rails_w"].values()), abs=1e-3)


def test_tegrastats_jp6_orin_nano_and_older_forms() -> None:
    samples = [parse_tegrastats(line) for line in _read("jp6", "tegrastats.txt").splitlines()]
    assert samples[0]["gpu_mhz"] == 306 and samples[2]["gpu_mhz"] == 1020 and samples[2]["ram_mb"] == [3503, 7620]
    power = power_summary(samples, 100)
    assert power["total_rail"] == "VDD_IN"
    assert power["mean_w"] == pytest.approx(sum(s["rails_w"]["VDD_IN"] for s in samples) / len(samples), abs=1e-3)
    # JetPack 6 without root: no MHz after GR3D_FREQ (tegrastats shows clocks to root only).
    no_root = (
        "10-06-2026 12:00:01 RAM 2493/7620MB (lfb 1x4MB) SWAP 0/3810MB (cached 0MB) CPU [5%@729,3%@729] "
        "GR3D_FREQ 37% cpu@45.5C gpu@44.2C tj@45.5C VDD_IN 4542mW/4000mW VDD_CPU_GPU_CV 495mW/400mW"
    )
    sample = parse_tegrastats(no_root)
    assert sample["gpu_load_pct"] == 37 and "gpu_mhz" not in sample and sample["rails_w"]["VDD_IN"] == 4.542
    # L4T R32 (Jetson Nano): no timestamp, rails without the mW unit.
    r32 = (
        "RAM 1689/3825MB (lfb 339x4MB) SWAP 0/1913MB (cached 0MB) CPU [3%@345,off,off,0%@345] EMC_FREQ 0% "
        "GR3D_FREQ 0% PLL@50.5C GPU@50C POM_5V_IN 2959/2959 POM_5V_GPU 0/0 POM_5V_CPU 322/322"
    )
    sample = parse_tegrastats(r32)
    assert sample["rails_w"]["POM_5V_IN"] == 2.959 and sample["temperatures_c"]["gpu"] == 50.0
    assert power_summary([sample], 1000)["total_rail"] == "POM_5V_IN"


@pytest.mark.parametrize(
    ("generation", "versions"),
    [
        ("jp5", {"jetpack": "5.1.2", "cuda": "11.4.298", "cudnn": "8.6.0.166", "tensorrt": "8.5.2"}),
        ("jp6", {"jetpack": "6.2", "cuda": "12.6.68", "cudnn": "9.3.0.75", "tensorrt": "10.3.0.30"}),
    ],
)
def test_dpkg_versions(generation: str, versions: dict[str, str]) -> None:
    assert versions.items() <= parse_dpkg(_read(generation, "dpkg.txt")).items()
    assert parse_dpkg("libnvinfer8\t8.5.2-1+cuda11.4\trc \n") == {}  # removed, config files only


def test_nvidia_smi_and_grep_files() -> None:
    gpu = parse_nvidia_smi("NVIDIA H200, 570.86.15, 143771, 345, 2619, 1980, 31, 700.00\n")
    assert gpu == {
        "name": "NVIDIA H200",
        "driver": "570.86.15",
        "memory_mib": 143771.0,
        "sm_clock_mhz": 345.0,
        "mem_clock_mhz": 2619.0,
        "max_sm_clock_mhz": 1980.0,
        "temperature_c": 31.0,
        "power_limit_w": 700.0,
    }
    assert "power_limit_w" not in parse_nvidia_smi("T4, 535.1, 15360, 300, 5000, 1590, 40, [N/A]")
    paths = ["/a:b/type", "/a:b/temp", "/c/type"]
    text = "/a:b/type:tj-thermal\n/a:b/temp:48100\n/c/type:line one\n/c/type:line two\n"
    assert parse_grep_files(text, paths) == {
        "/a:b/type": "tj-thermal",
        "/a:b/temp": "48100",
        "/c/type": "line one\nline two",
    }


# ---------------------------------------------------------------------------------------------------------------
# trtexec
# ---------------------------------------------------------------------------------------------------------------
# Lines of a real trtexec run on AGX Orin, JetPack 6.0 DP (OE4T/meta-tegra-community PR #113).
ORIN_SUMMARY = """\
&&&& RUNNING TensorRT.trtexec [TensorRT v8602] # trtexec --loadEngine=mnist16.trt --batch=16
[02/27/2024-18:35:51] [I] === Performance summary ===
[02/27/2024-18:35:51] [I] Throughput: 208.729 qps
[02/27/2024-18:35:51] [I] Latency: min = 4.81763 ms, max = 4.86572 ms, mean = 4.83767 ms, median = 4.83752 ms, \
percentile(90%) = 4.84772 ms, percentile(95%) = 4.85034 ms, percentile(99%) = 4.85547 ms
[02/27/2024-18:35:51] [I] Enqueue Time: min = 0.345459 ms, max = 0.39978 ms, mean = 0.357979 ms, median = 0.356689 ms, \
percentile(90%) = 0.365295 ms, percentile(95%) = 0.372803 ms, percentile(99%) = 0.384033 ms
&&&& PASSED TensorRT.trtexec [TensorRT v8602] # trtexec --loadEngine=mnist16.trt --batch=16
"""


def test_trtexec_log_and_banner() -> None:
    info = parse_log(ORIN_SUMMARY)
    assert info["tensorrt"] == "8.6.2" and info["status"] == "PASSED" and info["throughput_qps"] == 208.729
    assert info["summary_ms"]["Latency"] == {
        "min": 4.81763,
        "max": 4.86572,
        "mean": 4.83767,
        "median": 4.83752,
        "p90": 4.84772,
        "p95": 4.85034,
        "p99": 4.85547,
    }
    assert [banner_version(c) for c in ("8502", "8602", "100300", "100700")] == ["8.5.2", "8.6.2", "10.3.0", "10.7.0"]
    for generation, device in (("jp5", "Orin"), ("jp6", "Orin")):
        header = "\n".join(
            f"[01/24/2025-09:17:09] {line}" for line in _read(generation, "trtexec_header.log").splitlines()
        )
        parsed = parse_log(header)
        assert parsed["device"] == device and parsed["compute_capability"] == "8.7"
    failed = parse_log(
        "&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # x\n[01/01/2025-00:00:00] [E] Failed to "
        "parse onnx file\n&&&& FAILED TensorRT.trtexec [TensorRT v100300] # x\n"
    )
    assert failed["status"] == "FAILED" and failed["errors"] == ["Failed to parse onnx file"]


def test_export_times_drops_warmup_and_picks_the_metric() -> None:
    # The format of exportJSONTrace (samples/common/sampleReporting.cpp): "[", then "  { ... }" and ", { ... }".
    entry = (
        '{{ "startEnqMs" : {s}, "endEnqMs" : {s}, "startH2dMs" : {s}, "endH2dMs" : {s}, "startComputeMs" : {s}, '
        '"endComputeMs" : {e}, "startD2hMs" : {e}, "endD2hMs" : {e}, "h2dMs" : 0.03, "computeMs" : {c}, '
        '"d2hMs" : 0.01, "latencyMs" : {l} }}'
    )
    lines = [entry.format(s=s, e=s + 2, c=2.0 + i / 10, l=2.04 + i / 10) for i, s in enumerate([10, 120, 250, 260])]
    text = "[\n  " + "\n, ".join(lines) + "\n]\n"
    assert parse_export_times(text) == pytest.approx([2.04, 2.14, 2.24, 2.34])
    assert parse_export_times(text, warmup_ms=200) == pytest.approx([2.24, 2.34])  # TensorRT 8.5 exports warm-up
    assert parse_export_times(text, metric="computeMs", warmup_ms=200) == pytest.approx([2.2, 2.3])
    for bad in ("{}", "[]", "not json", '[{"computeMs": 1}]'):
        with pytest.raises(InvalidArgumentError):
            parse_export_times(bad)


@pytest.mark.parametrize(("version", "skip"), [("8.5.2", "--buildOnly"), ("10.3.0", "--skipInference")])
def test_trtexec_flags_follow_the_build_plan(version: str, skip: str) -> None:
    features = trt_features(parse_trt_version(version))
    onnx = OnnxSummary(inputs=(("input", (-1, 3, 224, 224)),), precision="fp32", has_qdq=False)
    plan = plan_build(features, BuildRequest(precision="fp16", min_batch=1, opt_batch=4, max_batch=8), onnx)
    flags = build_flags(plan, onnx_path="/b/m.onnx", engine_path="/b/m.engine", version=features.version)
    assert flags[:3] == ["--onnx=/b/m.onnx", "--saveEngine=/b/m.engine", "--fp16"] and flags[-1] == skip
    assert "--minShapes=input:1x3x224x224" in flags and "--maxShapes=input:8x3x224x224" in flags
    assert "--memPoolSize=workspace:1024" in flags
    assert ("--builderOptimizationLevel=3" in flags) == features.version.at_least(8, 6)  # 8.6 added the levels
    qdq = OnnxSummary(inputs=(("input", (1, 3, 224, 224)),), precision="int8", has_qdq=True)
    int8 = build_flags(
        plan_build(features, BuildRequest(precision="int8"), qdq),
        onnx_path="q",
        engine_path="e",
        version=features.version,
    )
    assert "--int8" in int8 and not any(f.startswith("--minShapes") for f in int8)
    timing = timing_flags(
        engine_path="/b/e",
        times_path="/b/t.json",
        input_name="input",
        shape=(4, 3, 224, 224),
        iterations=50,
        seconds=None,
    )
    assert {"--useCudaGraph", "--useSpinWait", "--shapes=input:4x3x224x224", "--iterations=50"} <= set(timing.flags)
    assert timing.metric == "latencyMs" and "--noDataTransfers" not in timing.flags
    compute = timing_flags(
        engine_path="e",
        times_path="t",
        input_name="x",
        shape=None,
        iterations=None,
        seconds=5,
        data_transfers=False,
        dla=True,
    )
    assert compute.metric == "computeMs" and "--noDataTransfers" in compute.flags and "--duration=5" in compute.flags
    assert "--useCudaGraph" not in compute.flags  # trtexec runs no CUDA graph with DLA


# ---------------------------------------------------------------------------------------------------------------
# The run record: power, energy, throttling
# ---------------------------------------------------------------------------------------------------------------
def _board(generation: str, locked: bool) -> Board:
    clocks = parse_jetson_clocks(
        _read(generation, "jetson_clocks_show_locked.txt" if locked else "jetson_clocks_show.txt")
    )
    return Board(record={"name": "orin", "jetson": True, "jetson_clocks": clocks}, trips_c={"tj-thermal": 99.0})


def test_run_record_energy_and_warnings() -> None:
    samples = [parse_tegrastats(line) for line in _read("jp6", "tegrastats.txt").splitlines()[1:]]
    board = _board("jp6", locked=True)
    run = run_record(
        board,
        samples,
        before_c={"tj-thermal": 46.0},
        after_c={"tj-thermal": 48.0},
        interval_ms=100,
        window="w",
        locked_by_edgeconv=False,
    )
    assert run["power"]["total_rail"] == "VDD_IN" and "warnings" not in run
    assert run["clocks_mhz"]["gpu"]["min"] == run["clocks_mhz"]["gpu"]["max"] == 1020
    row = {"mean_ms": 2.0, "batch": 4}
    record = with_energy(board.record, run, row)
    assert record["run"]["energy_mj_per_inference"] == pytest.approx(run["power"]["mean_w"] * 2.0 / 4, abs=1e-3)
    assert record["name"] == "orin" and "energy_mj_per_inference" not in run  # the run itself is shared, unchanged
    # one power window over several interleaved configurations: no row gets energy it did not draw alone
    shared = with_energy(board.record, run, row, shared_by=3)["run"]
    assert "energy_mj_per_inference" not in shared and "3 interleaved configurations" in shared["warnings"][0]

    throttled = [dict(s) for s in samples] + [dict(samples[-1], gpu_mhz=612), dict(samples[-1], gpu_mhz=612)]
    run = run_record(
        board,
        throttled,
        before_c={},
        after_c={"tj-thermal": 99.5},
        interval_ms=100,
        window="w",
        locked_by_edgeconv=False,
    )
    assert any("GPU clock fell from 1020 to 612 MHz" in w for w in run["warnings"])
    assert any("tj-thermal reached 99.5 C" in w for w in run["warnings"])
    free = run_record(
        _board("jp6", locked=False),
        samples[:2],
        before_c={},
        after_c={},
        interval_ms=100,
        window="w",
        locked_by_edgeconv=False,
    )
    assert any(w.startswith("jetson_clocks off") for w in free["warnings"])
    assert any("only 2 power sample(s)" in w for w in free["warnings"])


def test_merged_manifest_keeps_the_boards_engines_only() -> None:
    local = {"model": "m", "files": {}, "tensorrt": {"engines": [{"file": "workstation.engine"}]}}
    remote = {"model": "old", "tensorrt": {"engines": [{"file": "board.engine"}, {"file": "gone.engine"}]}}
    assert merged_manifest(local, remote, {"board.engine"}) == {
        "model": "m",
        "files": {},
        "tensorrt": {"engines": [{"file": "board.engine"}]},
    }
    assert merged_manifest(local, None, set()) == {"model": "m", "files": {}}
    assert merged_manifest(None, None, set()) is None


# ---------------------------------------------------------------------------------------------------------------
# Addresses and quoting
# ---------------------------------------------------------------------------------------------------------------
def test_parse_board() -> None:
    assert parse_board("nvidia@orin.local:2222").port == 2222
    assert parse_board("jetson").host == "jetson" and parse_board("jetson").user is None
    assert parse_board("me@[fe80::1]:22").host == "fe80::1"
    for bad in (
        "",
        "a b",
        "me@host;reboot",
        "me@$(reboot)",
        "me@host:0",
        "me@host:99999",
        "me@ho\nst",
        "-oProxyCommand=x",
    ):
        with pytest.raises(InvalidArgumentError, match="is not a board address"):
            parse_board(bad)


def test_remote_commands_quote_every_word() -> None:
    program = Program("sha256sum", "sha256sum")
    command = remote_command(program, "--", *HOSTILE)
    assert shlex.split(command) == ["sha256sum", "--", *HOSTILE]
    # What the board's /bin/sh makes of it: exactly these words, nothing run, nothing expanded.
    echo = remote_command(Program("grep", "printf"), "[%s]\n", *HOSTILE)  # printf stands in for the program
    out = subprocess.run(["/bin/sh", "-c", echo], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout == "".join(f"[{word}]\n" for word in HOSTILE)
    sudo = wrapped(["sudo", "-n"], Program("jetson_clocks", "/usr/bin/jetson_clocks"), "--store", "a b;c")
    assert shlex.split(sudo) == ["sudo", "-n", "/usr/bin/jetson_clocks", "--store", "a b;c"]
    with pytest.raises(InvalidArgumentError):
        remote_command(program, "nul\x00byte")
    with pytest.raises(InvalidArgumentError):
        Program("bash", "bash")  # not in the fixed program list
    with pytest.raises(InvalidArgumentError):
        wrapped(["sh", "-c"], program, "x")
