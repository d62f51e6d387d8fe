"""``edgeconv bench|build --on user@host`` against a real SSH server on 127.0.0.1 (tests/sshboard.py, in-process
asyncssh with SFTP; it stops by itself). The "board" is this machine: with this venv's edgeconv, real rows come back
through SSH; with a fake Jetson system root (``--board-root``, hidden) and stand-in JetPack tools, the Jetson record,
power, --lock-clocks and the trtexec path run for real against real-format outputs. Nothing leaves 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from edgeconv.cli import app
from edgeconv.zoo import create_model

pytest.importorskip("asyncssh")
import sshboard  # noqa: E402  (tests/ is on sys.path: pytest's rootdir-relative import)

EDGECONV = str(Path(sys.executable).parent / "edgeconv")
HOSTILE_NAME = "le net 5; $(touch PWNED) `id` 'q\" \n~*"
FAST = ["--iters", "3", "--warmup", "1", "--no-fidelity"]


def _export_lenet(folder: Path, seed: int = 0, model_name: str = "lenet5") -> Path:
    folder.mkdir(parents=True)
    torch.manual_seed(seed)
    model = create_model("lenet5")
    torch.onnx.export(
        model, (torch.zeros(1, 1, 32, 32),), str(folder / "model.onnx"), dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )  # fmt: skip
    digest = hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    manifest = {"model": model_name, "files": {"fp32": {"path": "model.onnx", "precision": "fp32", "sha256": digest}}}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in folder.iterdir()}


@pytest.fixture(scope="module")
def lenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export_lenet(tmp_path_factory.mktemp("local") / "lenet5")


@pytest.fixture(scope="module")
def hostile_lenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export_lenet(tmp_path_factory.mktemp("local") / HOSTILE_NAME, model_name="x; $(touch PWNED2) 'y\"")


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The workstation user: a HOME with an SSH key and no agent."""
    home = tmp_path / "user"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    client_key = sshboard.client_home(home)
    (home / "pubkey").write_text(client_key)
    return home


@pytest.fixture
def board_home(tmp_path: Path) -> Path:
    home = tmp_path / "board-home"
    home.mkdir()
    return home


def _board(user: Path, home: Path, *, trusted: bool = True, **kwargs: object) -> sshboard.SshBoard:
    board = sshboard.SshBoard(home, (user / "pubkey").read_text(), **kwargs).start()  # type: ignore[arg-type]
    if trusted:
        sshboard.trust(user, board)
    return board


@pytest.fixture
def board(user: Path, board_home: Path) -> Iterator[sshboard.SshBoard]:
    server = _board(user, board_home)
    yield server
    server.close()


@pytest.fixture
def jetpack(user: Path, board_home: Path, tmp_path: Path) -> Iterator[tuple[sshboard.SshBoard, list[str]]]:
    """A Jetson with JetPack (stand-in tools) and no edgeconv: the fast board, for tests about SSH, copies and
    faults rather than about what runs; yields the server and the options that point at its system root."""
    root = sshboard.make_jetson_root(tmp_path / "jetpack-root", "jp6")
    server = _board(user, board_home, venv_on_path=False)
    yield server, ["--backend", "tensorrt", "--board-root", str(root), "--iters", "5"]
    server.close()


def _on(board: sshboard.SshBoard) -> str:
    return f"edge@127.0.0.1:{board.port}"


def _invoke(*args: str):  # noqa: ANN202
    return CliRunner().invoke(app, list(args))


def _remote_folder(home: Path, name: str) -> Path:
    return home / ".cache" / "edgeconv" / "artifacts" / name


# ---------------------------------------------------------------------------------------------------------------
# Done when: mobilenet_v2 over SSH, rows in the local schema with the board record
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mobilenet_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/ of the checkout when `edgeconv export mobilenet_v2` already ran there (the README's first command,
    and CI's), else a temporary one the first bench exports into."""
    checkout = Path(__file__).resolve().parents[1] / "models"
    if (checkout / "mobilenet_v2" / "model.onnx").is_file():
        return checkout
    return tmp_path_factory.mktemp("models")


def test_bench_mobilenet_v2_on_board_returns_local_schema(
    board: sshboard.SshBoard, board_home: Path, mobilenet_models: Path, tmp_path: Path
) -> None:
    result = _invoke("bench", "mobilenet_v2", "--on", _on(board), "--backend", "onnxruntime", "--json",
                     "--models-dir", str(mobilenet_models), *FAST)  # fmt: skip
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    local = _invoke("bench", str(mobilenet_models / "mobilenet_v2"), "--backend", "onnxruntime", "--json", *FAST)
    assert local.exit_code == 0, local.output
    (local_row,) = json.loads(local.stdout)
    assert set(row) - {"board"} == set(local_row)  # exactly the local schema, plus the board record
    assert row["model"] == "mobilenet_v2" and row["backend"] == "onnxruntime" and row["iterations"] == 3
    assert row["min_ms"] <= row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert row["env"]["hostname"] == local_row["env"]["hostname"]  # measured over there (here, the same machine)
    record = row["board"]
    assert record["name"] == _on(board) and record["runner"] == "edgeconv" and record["jetson"] is False
    assert record["edgeconv"] == "edgeconv"  # found on the board's PATH
    assert {"hostname", "kernel", "arch"} <= set(record) and record["cpu"]["cores"] >= 1
    # Not a Jetson: the Jetson fields are absent, not guessed.
    assert not {"l4t", "jetpack", "power_mode", "jetson_clocks", "module", "tensorrt"} & set(record)
    assert "power" not in record["run"] and "energy_mj_per_inference" not in record["run"]
    folder = _remote_folder(board_home, "mobilenet_v2")
    assert record["artifact"]["folder"] == str(folder) and "model.onnx" in record["artifact"]["sent"]
    local_files = mobilenet_models / "mobilenet_v2"
    for name in ("model.onnx", "manifest.json"):
        assert (folder / name).read_bytes() == (local_files / name).read_bytes()
    # `edgeconv tables --bench` takes these rows: the MobileNetV2 CPU latency comes from the board.
    rows_file = tmp_path / "board.json"
    rows_file.write_text(result.stdout)
    tables = _invoke("tables", "mobilenet_v2_comparison", "--bench", str(rows_file), "--json")
    assert tables.exit_code == 0, tables.output
    (table,) = json.loads(tables.stdout)
    latency = next(r for r in table["rows"] if r["metric"] == "cpu_latency_ms" and r["model"] == "mobilenet_v2")
    assert latency["edgeconv"] == pytest.approx(row["p50_ms"])


# ---------------------------------------------------------------------------------------------------------------
# Jetson (stand-in tools): the record, power and energy, --lock-clocks, trtexec
# ---------------------------------------------------------------------------------------------------------------
def test_jetson_board_with_edgeconv_records_power_and_restores_clocks(
    user: Path, board_home: Path, tmp_path: Path, lenet: Path
) -> None:
    root = sshboard.make_jetson_root(tmp_path / "root", "jp6")
    with _board(user, board_home) as server:
        result = _invoke("bench", str(lenet), "--on", _on(server), "--backend", "onnxruntime", "--json",
                         "--board-root", str(root), "--remote-edgeconv", EDGECONV, "--lock-clocks",
                         "--seconds", "1.5", "--warmup", "1", "--no-fidelity")  # fmt: skip
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    record = row["board"]
    assert record["jetson"] is True and record["edgeconv"] == EDGECONV
    assert (record["l4t"], record["jetpack"], record["jetpack_source"]) == ("36.4.3", "6.2", "nvidia-jetpack package")
    assert (record["cuda"], record["cudnn"], record["tensorrt"]) == ("12.6.68", "9.3.0.75", "10.3.0.30")
    assert record["power_mode"] == {"name": "MAXN_SUPER", "id": 2} and record["module"] == "p3767-0005"
    assert record["model"] == "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"
    # --lock-clocks: locked for the run, the previous (dynamic) state restored after it.
    assert record["jetson_clocks"]["locked"] is True and record["jetson_clocks_before_lock"]["locked"] is False
    assert record["clocks_restored"] is True and not sshboard.clocks_locked(root)
    run = record["run"]
    assert run["lock_clocks"] is True and set(run["temperatures_c"]) == {"before", "after"}
    assert run["temperatures_c"]["after"]["tj-thermal"] == 48.1
    power = run["power"]
    assert power["total_rail"] == "VDD_IN" and power["samples"] >= 3 and 4.5 <= power["mean_w"] <= 10.3
    assert power["window"] == "from the model load to the last timed round"  # found in edgeconv's own log lines
    # the record rounds both figures (3 decimals), so compare at that resolution
    assert run["energy_mj_per_inference"] == pytest.approx(power["mean_w"] * row["mean_ms"] / row["batch"], abs=2e-3)
    assert not any("jetson_clocks off" in w for w in run.get("warnings", []))


@pytest.mark.parametrize("generation", ["jp5", "jp6"])
def test_trtexec_board_builds_once_and_times_in_the_local_schema(
    user: Path, board_home: Path, tmp_path: Path, lenet: Path, generation: str
) -> None:
    root = sshboard.make_jetson_root(tmp_path / "root", generation)
    with _board(user, board_home, venv_on_path=False) as server:  # JetPack only: no edgeconv there
        args = ["bench", str(lenet), "--on", _on(server), "--backend", "tensorrt", "--precision", "fp16", "--json",
                "--board-root", str(root), "--iters", "40"]  # fmt: skip
        first = _invoke(*args)
        assert first.exit_code == 0, first.output
        table = _invoke(*[a for a in args if a != "--json"])  # what a user reads: the boards' table and record
        assert table.exit_code == 0, table.output
        builds = [c for c in server.commands if "--saveEngine=" in c]
    assert "(trtexec)" in table.stdout and "mJ/img" in table.stdout and "jetson_clocks off" in table.stdout
    assert len(builds) == 1  # the second run found the engine in the board's manifest
    (row,) = json.loads(first.stdout)
    version, tag = ("8.5.2", "trt8.5") if generation == "jp5" else ("10.3.0", "trt10.3")
    assert row["runner"] == "trtexec" and row["backend"] == "tensorrt" and row["device"] == "cuda"
    assert row["engine"] == f"model.fp16.sm87.{tag}.engine" and row["iterations"] == 40  # warm-up dropped (8.5)
    summary = row["trtexec"]["summary_ms"]["Latency"]  # trtexec's own report of the same iterations
    assert row["mean_ms"] == pytest.approx(summary["mean"], rel=1e-4) and row["min_ms"] == pytest.approx(summary["min"])
    assert row["min_ms"] <= row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert {"--useCudaGraph", "--useSpinWait"} <= set(row["trtexec"]["flags"]) and row["trtexec"]["data_transfers"]
    assert row["env"]["gpu"] == {"name": "Orin", "compute_capability": "8.7"}
    assert row["env"]["versions"]["tensorrt"].startswith(version)
    record = row["board"]
    assert record["runner"] == "trtexec" and record["l4t"] == ("35.4.1" if generation == "jp5" else "36.4.3")
    assert record["run"]["power"]["total_rail"] == ("sum of rails" if generation == "jp5" else "VDD_IN")
    assert any(w.startswith("jetson_clocks off") for w in record["run"]["warnings"])
    folder = _remote_folder(board_home, "lenet5")
    manifest = json.loads((folder / "manifest.json").read_text())
    (engine,) = manifest["tensorrt"]["engines"]
    assert engine["file"] == row["engine"] and engine["built_with"] == "trtexec"
    assert engine["tensorrt_version"].startswith(version)
    assert (folder / engine["build_log"]).read_text().startswith("&&&& RUNNING TensorRT.trtexec")
    assert manifest["model"] == "lenet5" and not list(folder.glob(".edgeconv-times-*"))


def test_build_on_trtexec_board(user: Path, board_home: Path, tmp_path: Path, lenet: Path) -> None:
    root = sshboard.make_jetson_root(tmp_path / "root", "jp6")
    with _board(user, board_home, venv_on_path=False) as server:
        result = _invoke("build", str(lenet), "--on", _on(server), "--precision", "fp16", "--batch", "4",
                         "--board-root", str(root), "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    (built,) = json.loads(result.stdout)
    engine = built["engine"]
    assert (engine["precision"], engine["min_batch"], engine["opt_batch"], engine["max_batch"]) == ("fp16", 1, 4, 4)
    folder = Path(built["folder"])
    assert folder == _remote_folder(board_home, "lenet5") and (folder / engine["file"]).is_file()
    assert Path(built["build_log"]).is_file() and "--minShapes=input:1x1x32x32" in engine["trtexec_flags"]


# ---------------------------------------------------------------------------------------------------------------
# Several boards, hostile names
# ---------------------------------------------------------------------------------------------------------------
def test_two_boards_side_by_side(user: Path, tmp_path: Path, lenet: Path) -> None:
    from edgeconv.errors import ArtifactError
    from edgeconv.profile.tables import load_bench

    root = sshboard.make_jetson_root(tmp_path / "root", "jp6")
    homes = [tmp_path / "a", tmp_path / "b"]
    for home in homes:
        home.mkdir()
    with _board(user, homes[0], venv_on_path=False) as first, _board(user, homes[1], venv_on_path=False) as second:
        args = ["bench", str(lenet), "--on", _on(first), "--on", _on(second), "--backend", "tensorrt",
                "--board-root", str(root), "--iters", "5"]  # fmt: skip
        rows = _invoke(*args, "--json")
        table = _invoke(*args)
    assert rows.exit_code == 0, rows.output
    assert [r["board"]["name"] for r in json.loads(rows.stdout)] == [_on(first), _on(second)]
    assert table.exit_code == 0, table.output
    data = next(line for line in table.stdout.splitlines() if "fp32" in line and "cuda" in line)
    assert len([cell for cell in data.split("│") if cell.strip()]) == 4 + 2 * 2  # p50 and mJ/img for each board
    for board in (first, second):
        assert f"{_on(board)}: NVIDIA Jetson Orin Nano" in table.stdout  # each board's record line
    rows_file = tmp_path / "rows.json"
    rows_file.write_text(rows.stdout)
    with pytest.raises(ArtifactError, match="rows of 2 boards .* pick one with --board"):
        load_bench(rows_file)
    picked = load_bench(rows_file, board=_on(second))
    assert [r["board"]["name"] for r in picked.summary] == [_on(second)] and picked.env["gpu"]["name"] == "Orin"


def test_hostile_names_reach_the_board_as_plain_words(board: sshboard.SshBoard, board_home: Path,
                                                      hostile_lenet: Path) -> None:  # fmt: skip
    before = _snapshot(hostile_lenet)
    result = _invoke("bench", str(hostile_lenet), "--on", _on(board), "--json", *FAST)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["model"] == "x; $(touch PWNED2) 'y\"" and row["board"]["artifact"]["folder"].endswith(HOSTILE_NAME)
    folder = _remote_folder(board_home, HOSTILE_NAME)
    assert (folder / "model.onnx").read_bytes() == (hostile_lenet / "model.onnx").read_bytes()
    assert not list(board_home.rglob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))  # nothing ran
    assert _snapshot(hostile_lenet) == before
    assert any(str(folder) in shlex.split(command) for command in board.commands)  # one word, as it was
    bad = _invoke("bench", str(hostile_lenet), "--on", "edge@127.0.0.1;touch PWNED", "--json", *FAST)
    assert bad.exit_code == 2 and "'edge@127.0.0.1;touch PWNED' is not a board address" in bad.stderr


def test_hostile_names_on_the_trtexec_path(user: Path, board_home: Path, tmp_path: Path, hostile_lenet: Path) -> None:
    root = sshboard.make_jetson_root(tmp_path / "root $(touch PWNED3) ;x", "jp6")
    with _board(user, board_home, venv_on_path=False) as server:
        result = _invoke("bench", str(hostile_lenet), "--on", _on(server), "--backend", "tensorrt", "--json",
                         "--board-root", str(root), "--iters", "5")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["engine"] == "model.fp32.sm87.trt10.3.engine"
    assert not list(tmp_path.rglob("PWNED*")) and not list(board_home.rglob("PWNED*"))


# ---------------------------------------------------------------------------------------------------------------
# Faults: one line naming the board and the cause; the local artifact untouched; no half-copied folder in use
# ---------------------------------------------------------------------------------------------------------------
def _error_line(result: object) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("edgeconv: error:")]  # type: ignore[attr-defined]
    assert len(lines) == 1, result.stderr  # type: ignore[attr-defined]
    return lines[0]


@pytest.mark.parametrize("fault", ["drop_after_bytes", "full_after_bytes"])
def test_copy_faults_leave_both_sides_usable(jetpack: tuple[sshboard.SshBoard, list[str]], board_home: Path,
                                            tmp_path: Path, fault: str) -> None:  # fmt: skip
    board, options = jetpack
    first = _export_lenet(tmp_path / "v1" / "net", seed=1)
    second = _export_lenet(tmp_path / "v2" / "net", seed=2)
    ok = _invoke("bench", str(first), "--on", _on(board), "--json", *options)
    assert ok.exit_code == 0, ok.output
    live = _remote_folder(board_home, "net")
    good = _snapshot(live)
    assert {"model.onnx", "manifest.json", "model.fp32.sm87.trt10.3.engine"} <= set(good)
    before = _snapshot(second)
    setattr(board, fault, board.written + 20_000)  # fail inside the copy of the new model.onnx (about 250 kB)
    failed = _invoke("bench", str(second), "--on", _on(board), "--json", *options)
    assert failed.exit_code == 1
    line = _error_line(failed)
    cause = {"drop_after_bytes": "connection lost while copying model.onnx",
             "full_after_bytes": "remote disk full while copying model.onnx"}[fault]  # fmt: skip
    assert line.startswith(f"edgeconv: error: board {_on(board)}: ") and cause in line, line
    assert _snapshot(second) == before  # the local artifact is never touched
    assert _snapshot(live) == good  # the board still uses the complete previous copy, not a half-copied one
    setattr(board, fault, None)
    again = _invoke("bench", str(second), "--on", _on(board), "--json", *options)
    assert again.exit_code == 0, again.output
    assert (live / "model.onnx").read_bytes() == (second / "model.onnx").read_bytes()
    assert [p.name for p in live.parent.iterdir()] == ["net"]  # leftover staging folders cleaned up
    # The engine of the old model.onnx stays on the board, but its manifest entry no longer matches: rebuilt.
    (engine,) = json.loads((live / "manifest.json").read_text())["tensorrt"]["engines"]
    assert engine["onnx_sha256"] == hashlib.sha256((second / "model.onnx").read_bytes()).hexdigest()


def test_a_corrupt_board_manifest_is_rewritten(
    jetpack: tuple[sshboard.SshBoard, list[str]], board_home: Path, lenet: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The board's manifest.json is edgeconv's own copy: a malformed one is read (by ``Manifest``'s policy) as empty,
    with a warning, and the next sync writes a good one; its engine records are lost, so the engine is built again."""
    board, options = jetpack
    assert _invoke("bench", str(lenet), "--on", _on(board), "--json", *options).exit_code == 0
    live = _remote_folder(board_home, "lenet5")
    (live / "manifest.json").write_text('{"format": "edgeconv-artifact/1", "files": []}')  # files: not an object
    again = _invoke("bench", str(lenet), "--on", _on(board), "--json", *options)
    assert again.exit_code == 0, again.output
    assert any(r.getMessage().endswith("manifest.json: files is not a JSON object; the board's copy is rewritten from "
                                       "the local artifact") for r in caplog.records), caplog.text  # fmt: skip
    manifest = json.loads((live / "manifest.json").read_text())
    assert manifest["model"] == "lenet5" and len(manifest["tensorrt"]["engines"]) == 1
    assert len([c for c in board.commands if "--saveEngine=" in c]) == 2


def test_remote_command_failure_is_one_line(board: sshboard.SshBoard, lenet: Path) -> None:
    result = _invoke("bench", str(lenet), "--on", _on(board), "--precision", "int8", "--json", *FAST)
    assert result.exit_code == 1
    line = _error_line(result)
    assert f"board {_on(board)}: remote edgeconv bench failed (exit 2)" in line and "no int8 ONNX" in line


def test_unknown_changed_and_accepted_host_keys(user: Path, board_home: Path, tmp_path: Path, lenet: Path) -> None:
    root = sshboard.make_jetson_root(tmp_path / "root", "jp6")
    options = ["--backend", "tensorrt", "--board-root", str(root), "--iters", "5", "--json"]
    known_hosts = user / ".ssh" / "known_hosts"
    with _board(user, board_home, trusted=False, venv_on_path=False) as server:
        unknown = _invoke("bench", str(lenet), "--on", _on(server), *options)
        assert unknown.exit_code == 1
        fingerprint = server.host_key.get_fingerprint("sha256")
        line = _error_line(unknown)
        assert f"board {_on(server)}: its host key {fingerprint} is not in {known_hosts}" in line
        assert "--accept-new-host-key" in line and not known_hosts.exists()
        accepted = _invoke("bench", str(lenet), "--on", _on(server), "--accept-new-host-key", *options)
        assert accepted.exit_code == 0, accepted.output
        assert f"[127.0.0.1]:{server.port} ssh-ed25519 " in known_hosts.read_text()
        trusted = _invoke("bench", str(lenet), "--on", _on(server), *options)
        assert trusted.exit_code == 0, trusted.output
    with _board(user, board_home, trusted=False, venv_on_path=False) as impostor:  # a new key where one is known
        known_hosts.write_text(known_hosts.read_text().replace(f"]:{server.port} ", f"]:{impostor.port} "))
        changed = _invoke("bench", str(lenet), "--on", _on(impostor), "--accept-new-host-key", *options)
    assert changed.exit_code == 1 and "its host key changed" in _error_line(changed)
    assert len(known_hosts.read_text().splitlines()) == 1  # nothing added


def test_missing_tensorrt_and_missing_edgeconv(user: Path, board_home: Path, tmp_path: Path, lenet: Path) -> None:
    root = sshboard.make_jetson_root(tmp_path / "root", "jp6", trtexec=False)
    with _board(user, board_home, venv_on_path=False) as server:
        result = _invoke("bench", str(lenet), "--on", _on(server), "--backend", "tensorrt", "--board-root", str(root),
                         "--json", *FAST)  # fmt: skip
        onnx = _invoke("bench", str(lenet), "--on", _on(server), "--board-root", str(sshboard.make_jetson_root(
            tmp_path / "root2", "jp6")), "--json", *FAST)  # fmt: skip
    assert result.exit_code == 1
    assert "neither edgeconv nor TensorRT's trtexec is installed there" in _error_line(result)
    assert (
        onnx.exit_code == 1
        and "only TensorRT's trtexec, which runs --backend tensorrt, not onnxruntime" in _error_line(onnx)
    )


def test_timeout_and_refused_key(
    jetpack: tuple[sshboard.SshBoard, list[str]], user: Path, board_home: Path, lenet: Path, tmp_path: Path
) -> None:
    board, options = jetpack
    slow = _invoke("bench", str(lenet), "--on", _on(board), *options, "--seconds", "3", "--timeout", "1", "--json")
    assert slow.exit_code == 2 and "not both" in slow.stderr  # --iters 5 of the options
    options = [o for o in options if o not in ("--iters", "5")]
    slow = _invoke("bench", str(lenet), "--on", _on(board), *options, "--seconds", "3", "--timeout", "1", "--json")
    assert slow.exit_code == 1 and "timed out (--timeout)" in _error_line(slow) and _on(board) in _error_line(slow)
    stranger = tmp_path / "stranger"
    os.environ["HOME"] = str(stranger)  # monkeypatched by the user fixture: restored after the test
    sshboard.client_home(stranger)
    with _board(user, board_home, trusted=False) as server:
        sshboard.trust(stranger, server)
        refused = _invoke("bench", str(lenet), "--on", _on(server), "--json", *FAST)
    assert refused.exit_code == 1 and "refused every key" in _error_line(refused)


def test_remote_options_need_on(lenet: Path) -> None:
    result = _invoke("bench", str(lenet), "--lock-clocks")
    assert result.exit_code == 2 and "--lock-clocks only applies with --on" in result.stderr


def test_ssh_config_host_alias(jetpack: tuple[sshboard.SshBoard, list[str]], user: Path, lenet: Path) -> None:
    board, options = jetpack
    (user / ".ssh" / "config").write_text(
        f"Host orin-sim\n    HostName 127.0.0.1\n    Port {board.port}\n    User edge\n"
        f"    IdentityFile {user / '.ssh' / 'id_ed25519'}\n"
    )
    result = _invoke("bench", str(lenet), "--on", "orin-sim", "--json", *options)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["board"]["name"] == "orin-sim"


def test_missing_tensorrt_on_a_board_with_edgeconv(board: sshboard.SshBoard, board_home: Path, lenet: Path) -> None:
    from edgeconv.backends.tensorrt import tensorrt_version

    if tensorrt_version() is not None:
        pytest.skip("TensorRT is installed here, so the board (this machine) has it")
    result = _invoke("build", str(lenet), "--on", _on(board), "--precision", "fp16")
    assert result.exit_code == 1
    line = _error_line(result)
    assert f"board {_on(board)}: remote edgeconv build failed (exit 1): TensorRT is not installed" in line
    log = _remote_folder(board_home, "lenet5") / "edgeconv-build-fp16.build.log"
    assert "TensorRT is not installed" in log.read_text()  # the build log stays on the board
