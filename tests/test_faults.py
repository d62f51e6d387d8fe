"""Faults during work (issue 23): SIGINT and SIGTERM at random points of export, INT8 quantization and bench; a full
disk; two exports into one folder at once. Afterwards the output folder holds the complete previous artifact or the
complete new one (every file the manifest lists, with its sha256, and nothing else), never a mix; no staging folder or
temp file is left beside it or in the temp folder; and stderr ends in one line, never a traceback.

These need real processes (a signal, a file-size limit, a mount, two exporters), so they run the CLI as the console
script does. The random points come from ``EDGECONV_FAULT_SEED`` (a fresh one each run, printed in every failure so
that it can be replayed). A sample of the campaign's bad inputs (test_campaign.py) also runs here as processes, where
stderr is exactly what a user sees.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from edgeconv import artifact
from edgeconv.artifact import export_artifact
from edgeconv.backends.tensorrt import tensorrt_version
from edgeconv.errors import ArtifactError

ROOT = Path(__file__).resolve().parents[1]
EDGECONV = [sys.executable, "-m", "edgeconv"]  # what the console script runs (edgeconv.__main__:main)
SEED = int(os.environ.get("EDGECONV_FAULT_SEED") or random.SystemRandom().randrange(1_000_000))
# Faults tried per command (the README's Reliability table states these; test_readme_states_the_fault_figures).
FAULTS = {"export": 11, "bench": 2}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def complete(folder: Path) -> dict[str, Any]:
    """The manifest of ``folder`` when it is a complete artifact: every listed file present with its sha256 and
    size, the labels file too, and no other file; else an AssertionError saying what is wrong."""
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    listed = {"manifest.json", manifest["labels"]["file"]}
    assert _sha256(folder / manifest["labels"]["file"]) == manifest["labels"]["sha256"], folder
    for entry in manifest["files"].values():
        path = folder / entry["path"]
        assert path.stat().st_size == entry["bytes"] and _sha256(path) == entry["sha256"], f"{path} is not complete"
        listed.add(entry["path"])
    assert {p.name for p in folder.iterdir()} == listed, f"{folder} holds {sorted(p.name for p in folder.iterdir())}"
    return manifest


def only(parent: Path, *names: str) -> None:
    """``parent`` holds exactly ``names``: no staging folder (``.NAME.tmp.*``), backup (``.NAME.old.*``), temp file.
    onnxruntime keeps a session id in ``$TMPDIR/.ses`` from its import on: that file is its own, not debris."""
    held = sorted(p.name for p in parent.iterdir() if p.name != ".ses")
    assert held == sorted(names), f"{parent}: {held}"


def run_env(tmp: Path) -> dict[str, str]:
    """The process environment, with a private temp folder that must be empty again afterwards."""
    tmp.mkdir(exist_ok=True)
    return {**os.environ, "TMPDIR": str(tmp), "PYTHONDONTWRITEBYTECODE": "1"}


def stderr_ok(err: str, code: int) -> None:
    assert "Traceback" not in err, err
    if code in (130, 143):
        lines = err.strip().splitlines() or ["<nothing on stderr>"]  # an assertion (with the seed), not an IndexError
        assert lines[-1] == f"edgeconv: interrupted ({signal.Signals(code - 128).name})", err
    elif code not in (0, -signal.SIGINT, -signal.SIGTERM):  # a signal after the work ended: Python just exits
        raise AssertionError(f"exit {code}: {err[-800:]}")


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The artifact already in the output folder: LeNet-5, FP32 only. The exports below add FP16 (--force)."""
    folder = tmp_path_factory.mktemp("previous") / "lenet5"
    export_artifact("lenet5", folder)
    return folder


# ----------------------------------------------------------------------------------------------------------------------
# SIGINT / SIGTERM at a random point of the work
# ----------------------------------------------------------------------------------------------------------------------
INT8 = ["--int8", "--no-adaround", "--calib-samples", "8", "--min-agreement", "0"]
SIGNAL_RUNS = {  # what runs, how long its work lasts after its first file appears (the window the signal falls in)
    "export": (["export", "lenet5", "--out", "{out}", "--force", "--fp16"], 1.2),
    "export --int8": (["export", "lenet5", "--out", "{out}", "--force", *INT8], 2.5),
    "bench": ("bench lenet5 --models-dir {models} --iters 1000000 --warmup 0 --no-fidelity --csv {csv}".split(), 2.5),
}


def _signal_run(command: str, signum: int, previous: Path, tmp_path: Path) -> None:
    """One run of ``command`` with ``signum`` at a random point, and the checks of what it left."""
    rng = random.Random(f"{SEED}-{command}-{signum}")
    work, models, tmp = tmp_path / "work", tmp_path / "work" / "models", tmp_path / "tmp"
    work.mkdir(parents=True)
    out = work / "lenet5"
    if command.startswith("export"):
        shutil.copytree(previous, out)
    args, window = SIGNAL_RUNS[command]
    args = [a.format(out=out, models=models, csv=work / "rows.csv") for a in args]
    # The work has begun when its first file appears: the staging folder (export), the models folder (bench), or
    # the process has ended; or at once, in a quarter of the runs, so that imports (seconds of torch) are hit too.
    watched = work if command.startswith("export") else models
    prefixes = (".lenet5.tmp.",) if command.startswith("export") else (".lenet5.tmp.", "lenet5")
    at_start = rng.random() < 0.25
    process = subprocess.Popen(
        [*EDGECONV, *args], cwd=work, env=run_env(tmp), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not at_start and process.poll() is None and time.monotonic() < deadline:
        if watched.is_dir() and any(p.name.startswith(prefixes) for p in watched.iterdir()):
            break
        time.sleep(0.005)
    delay = rng.uniform(0, 3.0 if at_start else window)
    time.sleep(delay)
    if process.poll() is None:
        process.send_signal(signum)
    try:
        _, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    when = "the start" if at_start else "the work"
    context = f"{command}, {signal.Signals(signum).name} {delay:.3f} s into {when} (EDGECONV_FAULT_SEED={SEED})"
    try:
        stderr_ok(err, process.returncode)
        if command.startswith("export"):
            manifest = complete(out)  # the previous artifact (fp32) or the new one (fp32 + ...), never a mix
            assert manifest["precisions"] in (["fp32"], ["fp32", "fp16"], ["fp32", "int8"]), manifest["precisions"]
            only(work, "lenet5")
        else:
            if models.exists():
                if (models / "lenet5").exists():
                    complete(models / "lenet5")
                only(models, *(["lenet5"] if (models / "lenet5").exists() else []))
            only(work, *(["models"] if models.exists() else []))  # no rows.csv: the bench never finished
        only(tmp)
    except AssertionError as exc:
        raise AssertionError(f"{context}: {exc}") from None


@pytest.mark.parametrize("command", list(SIGNAL_RUNS))
def test_signals_at_random_points(command: str, previous: Path, tmp_path: Path) -> None:
    """SIGINT and SIGTERM, each at its own random point of one run of ``command`` (the two runs side by side)."""
    with ThreadPoolExecutor(2) as pool:
        runs = [
            pool.submit(_signal_run, command, signum, previous, tmp_path / signal.Signals(signum).name)
            for signum in (signal.SIGINT, signal.SIGTERM)
        ]
        for run in runs:
            run.result()


# ----------------------------------------------------------------------------------------------------------------------
# A full disk: a real small file system where one can be mounted, and a file-size limit everywhere
# ----------------------------------------------------------------------------------------------------------------------
def _unshare() -> list[str] | None:
    """A command prefix that runs its command in a private mount namespace (so a tmpfs can be mounted without
    touching the machine): as root, or through a user namespace; None where neither is allowed."""
    if shutil.which("unshare") is None:
        return None
    for prefix in (["unshare", "--user", "--map-root-user", "--mount"], ["unshare", "--mount"]):
        probe = subprocess.run(
            [*prefix, "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt && umount /mnt"],
            capture_output=True,
            timeout=30,
        )
        if probe.returncode == 0:
            return prefix
    return None


def _new_export_args(out: Path) -> list[str]:
    return ["export", "lenet5", "--out", str(out), "--force", "--fp16"]


def _assert_previous_kept(err: str, code: int, parent: Path, previous: Path) -> None:
    assert code == 1, err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and sum(line.startswith("edgeconv: error:") for line in lines) == 1, err
    assert lines[-1].startswith("edgeconv: error: cannot write the artifact") and "; " in lines[-1], err
    assert complete(parent / "lenet5") == complete(previous)
    only(parent, "lenet5")


def test_full_disk_keeps_the_previous_artifact(previous: Path, tmp_path: Path) -> None:
    """A 400 KiB tmpfs holding the previous artifact (~250 KiB) has no room for the new one: the export fails with
    one line naming the disk, and the previous artifact is there, complete, with no staging folder beside it."""
    prefix = _unshare()
    if prefix is None:
        pytest.skip("no mount namespace here (unshare refused); the file-size-limit test covers failed writes")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (
        'mount -t tmpfs -o size=400k tmpfs "$1" && cp -r "$2" "$1/lenet5" && shift 2 && "$@"; code=$?; '
        'ls -A "$DISK" > "$REPORT.ls"; ls -A "$DISK/lenet5" >> "$REPORT.ls"; '
        'sha256sum "$DISK"/lenet5/* > "$REPORT.sha"; echo $code > "$REPORT.code"'
    )
    report = tmp_path / "report"
    env = {**run_env(tmp_path / "tmp"), "DISK": str(disk), "REPORT": str(report)}
    result = subprocess.run(
        [*prefix, "sh", "-c", script, "sh", str(disk), str(previous), *EDGECONV, *_new_export_args(disk / "lenet5")],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    code = int(Path(f"{report}.code").read_text())
    assert code == 1, result.stderr
    assert "No space left on device" in result.stderr.strip().splitlines()[-1], result.stderr
    listing = Path(f"{report}.ls").read_text().split()
    assert listing == ["lenet5", *sorted(p.name for p in previous.iterdir())], listing  # no staging debris
    expected = sorted(f"{_sha256(p)}  {disk / 'lenet5' / p.name}" for p in previous.iterdir())
    assert sorted(Path(f"{report}.sha").read_text().splitlines()) == expected
    only(tmp_path / "tmp")


def test_failed_writes_keep_the_previous_artifact(previous: Path, tmp_path: Path) -> None:
    """The same with a file-size limit (``ulimit -f``, 100 kB: model.onnx is 250 kB), which needs no privilege: every
    write past the limit fails (EFBIG) as on a full disk."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(previous, work / "lenet5")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    result = subprocess.run(
        [*EDGECONV, *_new_export_args(work / "lenet5")],
        env=run_env(tmp_path / "tmp"),
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=180,
    )
    _assert_previous_kept(result.stderr, result.returncode, work, previous)
    assert "File too large" in result.stderr
    only(tmp_path / "tmp")


# ----------------------------------------------------------------------------------------------------------------------
# Two exports into one folder at once
# ----------------------------------------------------------------------------------------------------------------------
def test_two_exports_into_one_folder(tmp_path: Path) -> None:
    """Two exports of different artifacts into one folder at once, both with --force: each installs by an atomic
    swap, so the folder ends up holding one of the two, complete. (Two exports of the same artifact, and an unforced
    one meeting another artifact, are raced deterministically below: test_install_race_*.)"""
    first, second = ["--force"], ["--force", "--fp16"]
    work = tmp_path / "work"
    work.mkdir()
    out = work / "lenet5"
    env = run_env(tmp_path / "tmp")
    processes = [
        subprocess.Popen(
            [*EDGECONV, "export", "lenet5", "--out", str(out), *extra],
            env=env,
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for extra in (first, second)
    ]
    results = [(p.wait(timeout=180), p.stderr.read() if p.stderr else "") for p in processes]
    for code, err in results:
        assert code == 0 and "Traceback" not in err, err
    manifest = complete(out)
    assert manifest["precisions"] in (["fp32"], ["fp32", "fp16"])
    only(work, "lenet5")
    only(tmp_path / "tmp")


def _flip_replace(monkeypatch: pytest.MonkeyPatch, folder: Path, other: Path) -> None:
    """``os.replace`` as another export racing this one sees it: ``other`` is installed at ``folder`` just before this
    export's rename into ``folder`` (which then finds it full)."""
    real = os.replace
    state = {"done": False}

    def replace(src: Any, dst: Any) -> None:
        if Path(dst) == folder and not state["done"]:
            state["done"] = True
            shutil.copytree(other, folder)
        real(src, dst)

    monkeypatch.setattr(artifact.os, "replace", replace)


def test_install_race_with_the_same_artifact(previous: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "lenet5"
    _flip_replace(monkeypatch, folder, previous)
    manifest = export_artifact("lenet5", folder)
    assert manifest.unchanged  # the other export wrote the same artifact: this one keeps it
    assert complete(folder) == complete(previous)
    only(tmp_path, "lenet5")


def test_install_race_with_another_artifact(previous: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "lenet5"
    _flip_replace(monkeypatch, folder, previous)
    with pytest.raises(ArtifactError, match="holds a different artifact.*--force"):
        export_artifact("lenet5", folder, fp16=True)
    assert complete(folder) == complete(previous)
    only(tmp_path, "lenet5")


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2 exchange", "two renames"])
def test_interrupt_during_the_swap_is_held(
    previous: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    """Ctrl-C while the new artifact is being swapped in lands after the swap: the folder holds the complete new
    artifact, the old one is gone with the staging folder, and the interrupt still reaches the caller."""
    folder = tmp_path / "lenet5"
    shutil.copytree(previous, folder)
    real = artifact._exchange

    def interrupted_exchange(first: Path, second: Path) -> bool:
        signal.raise_signal(signal.SIGINT)  # arrives mid-install
        return real(first, second) if exchange else False

    monkeypatch.setattr(artifact, "_exchange", interrupted_exchange)
    with pytest.raises(KeyboardInterrupt):
        export_artifact("lenet5", folder, fp16=True, force=True)
    assert complete(folder)["precisions"] == ["fp32", "fp16"]
    only(tmp_path, "lenet5")


# ----------------------------------------------------------------------------------------------------------------------
# Bad inputs as a user's terminal shows them: a sample of the campaign, as real processes
# ----------------------------------------------------------------------------------------------------------------------
def test_sample_of_bad_inputs_as_processes(previous: Path, tmp_path: Path) -> None:
    """The three defects of issue 23: stderr exactly one line, exit code 1 or 2, nothing written, no hang."""
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes((previous / "model.onnx").read_bytes()[:4000])
    cases: list[tuple[Sequence[str], str]] = [
        (["bench", str(truncated)], r"truncated\.onnx is not a readable ONNX model .*export it again"),
        (["bench", str(previous), "--threads", "100000"], r"--threads 100000 is not valid; use 0\.\.\d+"),
    ]
    if tensorrt_version() is None:
        cases.append((["bench", "mobilenet_v2", "--backend", "tensorrt"], r"TensorRT is not installed.*pip install"))
    work = tmp_path / "work"
    work.mkdir()
    env = run_env(tmp_path / "tmp")
    processes = [
        subprocess.Popen(
            [*EDGECONV, *args], cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for args, _ in cases
    ]
    for process, (args, pattern) in zip(processes, cases, strict=True):
        out, err = process.communicate(timeout=120)  # --threads 100000 used to hang here
        assert process.returncode in (1, 2), (args, err)
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("edgeconv: error: "), (args, err)
        assert re.search(pattern, lines[0]), (args, lines[0])
        assert out == "", (args, out)
    only(work)  # nothing exported into models/ by the refused tensorrt bench
    only(tmp_path / "tmp")


def test_readme_states_the_fault_figures() -> None:
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Reliability", 1)[1].split("\n## ", 1)[0]
    for command, count in FAULTS.items():
        row = next(line for line in section.splitlines() if line.startswith(f"| `{command}` "))
        assert row.strip("|").split("|")[4].strip() == str(count), row
    # 2 signals x the runs above, 2 full-disk runs, 1 concurrent pair, 4 in-process install races and interrupts
    assert sum(FAULTS.values()) == 2 * len(SIGNAL_RUNS) + 2 + 1 + 4


def test_an_interrupt_a_library_swallowed_is_reported_as_the_interrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGINT that lands inside torch's imports can be swallowed there; the command then fails with an error of its
    own (seen once in test_signals_at_random_points: "torch.onnx cannot export module 'features.0' ... maximum
    recursion depth exceeded", exit 1). Once the handler has raised an interrupt, the CLI reports the interrupt."""
    import importlib

    from typer.testing import CliRunner

    from edgeconv.cli import app

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    args = ["export", "lenet5", "--out", str(tmp_path / "mine"), "--force"]
    failed = CliRunner().invoke(app, args)
    assert failed.exit_code == 1 and "not an edgeconv artifact" in failed.stderr
    cli_module = importlib.import_module("edgeconv.cli.app")  # the package's ``app`` attribute is the Typer app
    monkeypatch.setattr(cli_module, "received_signals", [signal.SIGINT])
    interrupted = CliRunner().invoke(app, args)
    stderr_ok(interrupted.stderr, interrupted.exit_code)
    assert interrupted.exit_code == 130
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_an_interrupt_while_the_command_line_is_parsed_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """With torch imported only by the commands that need it, the CLI parses its command line within a second of
    starting, where test_signals_at_random_points' early signals land: typer turns a KeyboardInterrupt there into exit
    130 with nothing on stderr (seen once, under three test workers). The CLI says it was interrupted."""
    from typer.core import TyperGroup
    from typer.testing import CliRunner

    from edgeconv.cli import app

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(TyperGroup, "make_context", interrupted)
    result = CliRunner().invoke(app, ["list"])
    stderr_ok(result.stderr, result.exit_code)
    assert result.exit_code == 130
