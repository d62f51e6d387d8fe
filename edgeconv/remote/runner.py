"""``edgeconv bench|build ... --on user@host``: the whole loop on a board, from the workstation.

For each board: connect (:mod:`~edgeconv.remote.ssh`), read the board record (:mod:`~edgeconv.remote.board`), copy
the artifact (:mod:`~edgeconv.remote.sync`), optionally lock the clocks, then measure with the board's edgeconv
(``edgeconv bench FOLDER ... --json``: the rows come back in exactly the local schema) or, on a board with JetPack but
no edgeconv, with trtexec (:mod:`~edgeconv.remote.trtexec`, rows built in the same schema). Every row gets a
``board`` record: the board, and the run's clocks, temperatures, mean power, energy per inference and warnings.

When the board can report power (tegrastats), each configuration runs as its own remote command, so that each row's
watts are its own; otherwise all configurations run in one command, interleaved as locally.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import logging
import posixpath
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeconv.errors import ArtifactError, EdgeconvError, InvalidArgumentError, QuantizationError, RemoteError
from edgeconv.remote.board import (
    Board,
    PowerSampler,
    collect_board,
    parse_jetson_clocks,
    read_temperatures,
    run_record,
    with_energy,
)
from edgeconv.remote.commands import Program, remote_command, wrapped
from edgeconv.remote.ssh import (
    DEFAULT_REMOTE_DIR,
    BoardSession,
    CommandResult,
    SshOptions,
    best_effort,
    one_line,
    open_board,
    parse_board,
)
from edgeconv.remote.sync import (
    MANIFEST,
    LocalArtifact,
    SyncResult,
    local_artifact,
    read_remote_manifest,
    remote_sha256,
    replace_remote,
    sync_artifact,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteOptions:
    """How to reach and use the boards (the CLI's ``--on`` group of options)."""

    known_hosts: Path | None = None
    accept_new_host_key: bool = False
    remote_edgeconv: str | None = None  # path of edgeconv on the board; default: looked up (PATH, ~/.local/bin)
    remote_dir: str = DEFAULT_REMOTE_DIR  # relative to the login directory, or absolute
    timeout: float = 1800.0  # one remote build or benchmark command
    connect_timeout: float = 20.0
    lock_clocks: bool = False
    data_transfers: bool = True  # trtexec: time H2D + compute + D2H (False: --noDataTransfers, compute only)
    tegrastats_interval_ms: int = 100
    system_root: str = "/"  # where the board's system files are: "/" on a real board (tests point it elsewhere)

    def ssh(self) -> SshOptions:
        return SshOptions(self.known_hosts, self.accept_new_host_key, self.connect_timeout)


@dataclass(frozen=True)
class BenchRequest:
    """What ``edgeconv bench`` was asked, to be run on the board. Options at their local default are not passed on,
    so a board's edgeconv of another version runs what it can (and says so when it cannot)."""

    backends: tuple[str, ...] = ("onnxruntime",)
    precisions: tuple[str, ...] = ()  # empty: the remote edgeconv's default
    batches: tuple[int, ...] = (1,)
    device: str = "cpu"
    warmup: int = 10
    iterations: int | None = 100
    seconds: float | None = None
    threads: int | None = None
    ort_provider: str | None = None
    graph_optimization: str = "all"
    compile_mode: str | None = None  # torch.compile with this mode (--compile --compile-mode)
    cuda_graph: bool = False
    channels_last: bool = False
    tf32: bool = False
    ov_precision: str | None = None
    ov_device: str = "CPU"
    fidelity: bool = True
    fidelity_crops: int = 200
    block: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "backends", tuple(self.backends))
        object.__setattr__(self, "precisions", tuple(self.precisions))
        object.__setattr__(self, "batches", tuple(int(b) for b in self.batches))

    def configurations(self) -> list[tuple[str, str, int]]:
        precisions = self.precisions or ("fp32",)
        return [(b, p, n) for b in self.backends for p in precisions for n in self.batches]

    def splittable(self) -> bool:
        """Whether each configuration can run alone (``--backend all`` is expanded by the board's edgeconv, so it runs
        as one command; no --precision is fp32, as locally)."""
        return "all" not in self.backends

    def edgeconv_args(self, backends: Sequence[str], precisions: Sequence[str], batches: Sequence[int]) -> list[str]:
        """The remote ``edgeconv bench`` options for one group of configurations (the target comes first)."""
        args = ["--backend", ",".join(backends), "--batch", ",".join(str(b) for b in batches), "--json"]
        args += ["--precision", ",".join(precisions)] if precisions else []
        args += ["--iters", str(self.iterations)] if self.iterations is not None else ["--seconds", str(self.seconds)]
        defaults = BenchRequest()
        for flag, value, default in (
            ("--device", self.device, defaults.device),
            ("--warmup", self.warmup, defaults.warmup),
            ("--threads", self.threads, None),
            ("--ort-provider", self.ort_provider, None),
            ("--graph-opt", self.graph_optimization, defaults.graph_optimization),
            ("--compile-mode", self.compile_mode, None),
            ("--ov-precision", self.ov_precision, None),
            ("--ov-device", self.ov_device, defaults.ov_device),
            ("--fidelity-crops", self.fidelity_crops, defaults.fidelity_crops),
            ("--block", self.block, defaults.block),
        ):
            if value is not None and value != default:
                args += [flag, str(value)]
        switches = (
            ("--compile", self.compile_mode is not None),
            ("--cuda-graph", self.cuda_graph),
            ("--channels-last", self.channels_last),
            ("--tf32", self.tf32),
            ("--no-fidelity", not self.fidelity),
        )
        return args + [flag for flag, on in switches if on]


@dataclass(frozen=True)
class BuildRequest:
    """What ``edgeconv build`` was asked, to be built on the board."""

    precision: str = "fp16"
    batch: int = 1
    max_batch: int | None = None
    dla_core: int | None = None
    gpu_fallback: bool = True
    workspace_mb: int | None = 1024
    optimization_level: int = 3
    typing: str = "auto"
    force: bool = False


@dataclass
class BoardOutcome:
    label: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    error: str | None = None
    build: dict[str, Any] | None = None


# ---------------------------------------------------------------------------------------------------------------
# Entry points (synchronous: the CLI calls these)
# ---------------------------------------------------------------------------------------------------------------
def bench_on_boards(
    boards: Sequence[str], target: str | Path, request: BenchRequest, options: RemoteOptions
) -> list[BoardOutcome]:
    """Benchmark the local artifact ``target`` (folder or .onnx) on every board, concurrently. A board that fails
    has ``error`` set (one line naming it and the cause); the others still report."""
    addresses = [parse_board(text) for text in boards]
    if len({a.label for a in addresses}) != len(addresses):
        raise InvalidArgumentError(f"--on names a board twice ({', '.join(boards)}); give each board once")
    artifact = local_artifact(target)

    async def all_boards() -> list[BoardOutcome]:
        return list(
            await asyncio.gather(
                *(_guarded(a.label, _bench_board(a, artifact, target, request, options)) for a in addresses)
            )
        )

    return asyncio.run(all_boards())


def build_on_board(board: str, target: str | Path, request: BuildRequest, options: RemoteOptions) -> BoardOutcome:
    """Build a TensorRT engine of ``target`` on ``board``; it stays in the board's copy of the artifact folder, with
    its build log, recorded in that folder's manifest."""
    address = parse_board(board)
    artifact = local_artifact(target)
    outcome = asyncio.run(_guarded(address.label, _build_board(address, artifact, target, request, options)))
    if outcome.error:
        raise RemoteError(outcome.error)
    return outcome


async def _guarded(label: str, work: Any) -> BoardOutcome:
    try:
        outcome: BoardOutcome = await work
        return outcome
    except EdgeconvError as exc:
        message = str(exc)
        if not message.startswith(f"board {label}:"):
            message = f"board {label}: {message}"
        return BoardOutcome(label=label, error=" ".join(message.split()))
    except Exception as exc:  # a library's error (asyncssh's config parser, say): one line, the other boards go on
        log.debug("board %s", label, exc_info=True)
        return BoardOutcome(label=label, error=f"board {label}: {type(exc).__name__}: {one_line(exc)}")


# ---------------------------------------------------------------------------------------------------------------
# One board
# ---------------------------------------------------------------------------------------------------------------
async def _prepare(session: BoardSession, options: RemoteOptions) -> tuple[Board, Program | None, Program | None]:
    board = await collect_board(session)
    edgeconv = await session.find("edgeconv", override=options.remote_edgeconv)
    if options.remote_edgeconv and edgeconv is None:
        raise session.error(
            f"--remote-edgeconv {options.remote_edgeconv!r} is not an executable file there; give the path of "
            "edgeconv on the board (e.g. ~/venv/bin/edgeconv as /home/USER/venv/bin/edgeconv)"
        )
    trtexec = await session.find("trtexec")
    board.record["runner"] = "edgeconv" if edgeconv else "trtexec" if trtexec else None
    if edgeconv:
        board.record["edgeconv"] = edgeconv.path
    if trtexec:
        board.record["trtexec"] = trtexec.path
    return board, edgeconv, trtexec


def _no_runner(session: BoardSession) -> RemoteError:
    return session.error(
        "neither edgeconv nor TensorRT's trtexec is installed there: pip install edgeconv on the board (then "
        "--remote-edgeconv PATH if it is not on PATH), or install JetPack's TensorRT (sudo apt install nvidia-jetpack)"
    )


def _remote_target(sync: SyncResult, artifact: LocalArtifact) -> str:
    return posixpath.join(sync.folder, artifact.target_file) if artifact.target_file else sync.folder


async def _bench_board(
    address: Any, artifact: LocalArtifact, target: str | Path, request: BenchRequest, options: RemoteOptions
) -> BoardOutcome:
    outcome = BoardOutcome(label=address.label)
    async with open_board(address, options.ssh(), system_root=options.system_root) as session:
        board, edgeconv, trtexec = await _prepare(session, options)
        if edgeconv is None:
            if trtexec is None:
                raise _no_runner(session)
            others = [b for b in request.backends if b != "tensorrt"]
            if others:
                raise session.error(
                    f"it has no edgeconv, only TensorRT's trtexec, which runs --backend tensorrt, not "
                    f"{', '.join(others)}; pip install edgeconv on the board for those"
                )
        sync = await sync_artifact(session, artifact, options.remote_dir)
        board.record["artifact"] = sync.to_json()
        outcome.record = board.record
        restore = await _lock_clocks(session, board, options) if options.lock_clocks else None
        try:
            if edgeconv is not None:
                outcome.rows = await _bench_with_edgeconv(
                    session, board, edgeconv, _remote_target(sync, artifact), request, options
                )
            else:
                assert trtexec is not None  # checked above
                outcome.rows, outcome.skipped = await _bench_with_trtexec(
                    session, board, trtexec, sync, artifact, target, request, options
                )
        finally:
            if restore is not None:
                restored = await restore()
                board.record["clocks_restored"] = restored
                for row in outcome.rows:
                    row["board"]["clocks_restored"] = restored
    return outcome


def _groups(request: BenchRequest, board: Board) -> list[tuple[list[str], list[str], list[int]]]:
    if board.tegrastats is None or not request.splittable():
        return [(list(request.backends), list(request.precisions), list(request.batches))]
    return [([b], [p], [n]) for b, p, n in request.configurations()]


async def _bench_with_edgeconv(
    session: BoardSession,
    board: Board,
    edgeconv: Program,
    remote_target: str,
    request: BenchRequest,
    options: RemoteOptions,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for backends, precisions, batches in _groups(request, board):
        marks: dict[str, float] = {}

        def on_line(stream: str, line: str, stamp: float, marks: dict[str, float] = marks) -> None:
            # edgeconv -v logs "loading <runner>" before each model load and "round N: ..." after each timed round.
            if stream == "stderr" and ": loading " in line:
                marks["load"] = stamp
            elif stream == "stderr" and re.search(r": round \d+: ", line):
                marks["last_round"] = stamp

        command = wrapped(
            ["timeout", "-k", "10", int(options.timeout)],
            edgeconv,
            "-v",
            "bench",
            remote_target,
            *request.edgeconv_args(backends, precisions, batches),
        )
        result, run = await _sampled(
            session, board, options, command, on_line, marks, stage="running edgeconv bench on the board"
        )
        group_rows = _edgeconv_rows(session, result, options.timeout, "edgeconv bench")
        shared = len(group_rows)
        rows += [{**row, "board": with_energy(board.record, run, row, shared_by=shared)} for row in group_rows]
    return rows


async def _sampled(
    session: BoardSession,
    board: Board,
    options: RemoteOptions,
    command: str,
    on_line: Callable[[str, str, float], None],
    marks: dict[str, float],
    *,
    stage: str,
    start_mark: str = "load",
    end_mark: str = "last_round",
    window: str = "from the model load to the last timed round",
) -> tuple[CommandResult, dict[str, Any]]:
    """Run ``command`` while tegrastats samples the board; the run record covers the samples between the two marks
    that ``on_line`` sets from the command's output (all samples of the command when it printed neither)."""
    before = await read_temperatures(session, board)
    sampler = None
    if board.tegrastats is not None:
        sampler = PowerSampler(session, board.tegrastats, options.tegrastats_interval_ms, options.timeout + 120)
        if not await sampler.start():
            sampler = None
    started = time.monotonic()
    try:
        result = await session.stream(command, timeout=options.timeout + 30, stage=stage, on_line=on_line)
    finally:
        if sampler is not None:
            await sampler.stop()
    ended = time.monotonic()
    after = await read_temperatures(session, board)
    samples: list[dict[str, Any]] = []
    if sampler is not None:
        samples = sampler.window(marks.get(start_mark, started), marks.get(end_mark, ended))
        if not samples:
            samples = sampler.window(started, ended)
            window = "the whole remote command (its timed part was shorter than one tegrastats interval)"
    clocks_state = board.record.get("jetson_clocks")
    run = run_record(
        board,
        samples,
        before_c=before,
        after_c=after,
        interval_ms=options.tegrastats_interval_ms,
        window=window,
        locked_by_edgeconv=options.lock_clocks,
        clocks_state=clocks_state,
    )
    if board.tegrastats is not None and sampler is None:  # the board record is already written: the run says it
        run.setdefault("notes", []).append("tegrastats did not start: no power, clocks or temperatures during the run")
    if sampler is not None and not sampler.as_root:
        run.setdefault("notes", []).append("tegrastats ran without root: GPU and EMC clocks are not in its output")
    return result, run


def _edgeconv_rows(session: BoardSession, result: CommandResult, timeout: float, what: str) -> list[dict[str, Any]]:
    if result.exit_status == 124:
        raise session.error(f"timed out after {timeout:.0f} s while running {what} there (--timeout)")
    if result.exit_status != 0:
        raise session.error(f"remote {what} failed (exit {result.exit_status}): {result.last_error_line()}")
    try:
        rows = json.loads(result.stdout)
    except json.JSONDecodeError:
        rows = None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "p50_ms" in r for r in rows):
        raise session.error(
            f"remote {what} printed no JSON rows; is its edgeconv older than this one? (pip install -U edgeconv there)"
        )
    for line in result.stderr.splitlines():
        if line.startswith("edgeconv: skipped"):
            log.warning("board %s: %s", session.label, line.removeprefix("edgeconv: "))
    return rows


# ---------------------------------------------------------------------------------------------------------------
# jetson_clocks
# ---------------------------------------------------------------------------------------------------------------
async def _privileged(session: BoardSession, program: Program, *args: str, stage: str) -> CommandResult:
    """As the login user (root on many boards), then through ``sudo -n``, which fails rather than ask a password."""
    result = await session.run(remote_command(program, *args), timeout=120, stage=stage)
    if result.exit_status == 0:
        return result
    return await session.run(wrapped(["sudo", "-n"], program, *args), timeout=120, stage=stage)


async def _lock_clocks(session: BoardSession, board: Board, options: RemoteOptions) -> Callable[[], Any]:
    """``jetson_clocks --store``, then ``jetson_clocks``; returns the coroutine function that restores the stored
    state (and reports whether it did)."""
    program = board.jetson_clocks
    if program is None:
        raise session.error("--lock-clocks needs jetson_clocks, which this board does not have (it is not a Jetson)")
    stored = posixpath.join(
        await session.absolute(options.remote_dir), f".edgeconv-l4t_dfs-{secrets.token_hex(4)}.conf"
    )
    hint = (
        f"jetson_clocks needs root: let the login user run {program.path} through sudo without a password "
        f"(sudo visudo: USER ALL=(root) NOPASSWD: {program.path})"
    )
    saved = await _privileged(session, program, "--store", stored, stage="storing the clocks (jetson_clocks --store)")
    if saved.exit_status != 0:
        raise session.error(f"--lock-clocks: {saved.last_error_line()}; {hint}")
    locked = await _privileged(session, program, stage="locking the clocks (jetson_clocks)")
    if locked.exit_status != 0:
        raise session.error(f"--lock-clocks: {locked.last_error_line()}; {hint}")
    shown = await _privileged(session, program, "--show", stage="reading the locked clocks")
    state = parse_jetson_clocks(shown.stdout)
    if state:
        state.pop("power_mode", None)
        board.record["jetson_clocks_before_lock"] = board.record.get("jetson_clocks")
        board.record["jetson_clocks"] = state

    async def restore() -> bool:
        result = await _privileged(session, program, "--restore", stored, stage="restoring the clocks")
        await best_effort(
            session.run(
                remote_command(Program("rm", "rm"), "-f", "--", stored), timeout=30, stage="removing the stored clocks"
            )
        )
        if result.exit_status != 0:
            log.warning("board %s: jetson_clocks --restore failed: %s", session.label, result.last_error_line())
        return result.exit_status == 0

    return restore


# ---------------------------------------------------------------------------------------------------------------
# trtexec
# ---------------------------------------------------------------------------------------------------------------
def board_env(
    record: dict[str, Any], device: str | None = None, compute_capability: str | None = None
) -> dict[str, Any]:
    """The ``env`` of a trtexec row, in the schema of :func:`edgeconv.bench.environment`, from the board record:
    only what the board reported."""
    env: dict[str, Any] = {}
    if record.get("hostname"):
        env["hostname"] = record["hostname"]
    if record.get("kernel"):
        env["os"] = f"Linux {record['kernel']}"
    cpu = {
        k: v
        for k, v in {
            "model": record.get("cpu", {}).get("model"),
            "arch": record.get("arch"),
            "logical_cores": record.get("cpu", {}).get("cores"),
        }.items()
        if v is not None
    }
    if cpu:
        env["cpu"] = cpu
    gpu = {k: v for k, v in {"name": device, "compute_capability": compute_capability}.items() if v is not None}
    env["gpu"] = gpu or None
    env["versions"] = {k: record[k] for k in ("tensorrt", "cuda", "cudnn") if record.get(k)}
    if record.get("jetson"):
        mode = record.get("power_mode", {})
        env["jetson"] = {
            k: v
            for k, v in {
                "model": record.get("model"),
                "l4t": record.get("l4t"),
                "power_mode_id": mode.get("id"),
                "power_mode": mode.get("name"),
            }.items()
            if v is not None
        }
    return env


async def _trt_version(session: BoardSession, board: Board, trtexec: Program) -> Any:
    from edgeconv.backends.tensorrt import parse_trt_version, trt_features
    from edgeconv.remote.trtexec import parse_log

    if not board.record.get("tensorrt"):
        result = await session.run(remote_command(trtexec, "--help"), timeout=60, stage="asking trtexec its version")
        version = parse_log(result.stdout + result.stderr).get("tensorrt")
        if not version:
            raise session.error(f"cannot tell the TensorRT version of {trtexec.path} (no banner in trtexec --help)")
        board.record["tensorrt"] = version
    return trt_features(parse_trt_version(board.record["tensorrt"]))


def _trtexec_failure(result: CommandResult, info: dict[str, Any]) -> str:
    """Why a trtexec run failed: the timeout, else the last error its log names, else its last error line."""
    if result.exit_status == 124:
        return "timed out (--timeout)"
    return (info.get("errors") or [result.last_error_line()])[-1]


async def _write_remote(session: BoardSession, path: str, data: bytes) -> None:
    """Write a board file atomically: a temp file next to it, then an overwriting rename."""
    sftp = await session.sftp()
    temp = posixpath.join(posixpath.dirname(path), f".{posixpath.basename(path)}.{secrets.token_hex(4)}.tmp")
    async with sftp.open(temp, "wb") as handle:
        await handle.write(data)
    await replace_remote(sftp, temp, path)


@dataclass
class _EngineChoice:
    onnx_name: str
    onnx_sha: str
    low: int
    opt: int
    high: int
    plan: Any


def _choose(
    artifact: LocalArtifact,
    target: Any,
    features: Any,
    precision: str,
    batch: int,
    max_batch: int,
    dla_core: int | None,
    build: BuildRequest | None = None,
) -> _EngineChoice:
    """Which ONNX, batch profile and builder plan a (precision, batch) needs: the rules of ``engine_for``."""
    from edgeconv.backends.tensorrt import BuildRequest as TrtBuildRequest
    from edgeconv.backends.tensorrt import engine_batch_range, engine_onnx, plan_build, summarize_onnx

    onnx_path = engine_onnx(target, precision)
    if onnx_path.name not in artifact.files:
        raise ArtifactError(f"{onnx_path.name} was not copied to the board (it is not in {artifact.name})")
    low, opt, high = engine_batch_range(target.input_shape[0], batch, max_batch=max_batch, dla=dla_core is not None)
    extra: dict[str, Any] = {}
    if build is not None:
        extra = {
            "workspace_mb": build.workspace_mb,
            "gpu_fallback": build.gpu_fallback,
            "optimization_level": build.optimization_level,
            "typing": build.typing,
        }
    request = TrtBuildRequest(
        precision=precision, min_batch=low, opt_batch=opt, max_batch=high, dla_core=dla_core, **extra
    )
    plan = plan_build(features, request, summarize_onnx(onnx_path))
    return _EngineChoice(onnx_path.name, artifact.files[onnx_path.name][1], low, opt, high, plan)


async def _ensure_engine(
    session: BoardSession,
    board: Board,
    trtexec: Program,
    folder: str,
    choice: _EngineChoice,
    features: Any,
    options: RemoteOptions,
    *,
    batch: int,
    force: bool = False,
) -> tuple[dict[str, Any], str]:
    """The engine record (manifest entry) for ``choice`` in the board's folder, building it with trtexec when the
    manifest has none that fits; returns (record, build log path or "")."""
    from edgeconv.backends.tensorrt import EngineRecord, engine_file_name, find_engine
    from edgeconv.remote.trtexec import SOC_COMPUTE_CAPABILITY, build_flags, parse_log

    plan, version = choice.plan, features.version
    capability = SOC_COMPUTE_CAPABILITY.get(str(board.record.get("soc")))
    manifest_path = posixpath.join(folder, MANIFEST)
    manifest = await read_remote_manifest(session, folder)  # the sync just wrote it; the build below adds one record
    if capability and not force:
        found = find_engine(
            manifest.data,
            precision=plan.precision,
            version=version,
            compute_capability=capability,
            batch=batch,
            onnx_sha256=choice.onnx_sha,
            dla_core=plan.dla_core,
        )
        if found is not None and await (await session.sftp()).exists(posixpath.join(folder, found.file)):
            return found.to_json(), ""
    building = posixpath.join(folder, f".building-{secrets.token_hex(4)}.engine")
    flags = build_flags(plan, onnx_path=posixpath.join(folder, choice.onnx_name), engine_path=building, version=version)
    started = time.monotonic()
    result = await session.run(
        wrapped(["timeout", "-k", "10", int(options.timeout)], trtexec, *flags),
        timeout=options.timeout + 30,
        stage=f"building the {plan.precision} engine with trtexec",
    )
    seconds = time.monotonic() - started
    text = result.stdout + result.stderr
    info = parse_log(text)
    capability = info.get("compute_capability") or capability or "unknown"
    name = engine_file_name(Path(choice.onnx_name).stem, plan.precision, capability, version, plan.dla_core)
    log_path = posixpath.join(folder, f"{name}.build.log")
    await _write_remote(session, log_path, text.encode("utf-8"))
    if result.exit_status != 0 or info.get("status") == "FAILED":
        await best_effort((await session.sftp()).remove(building))
        why = _trtexec_failure(result, info)
        raise session.error(f"trtexec could not build {choice.onnx_name} ({plan.precision}): {why}; log: {log_path}")
    final = posixpath.join(folder, name)
    await replace_remote(await session.sftp(), building, final)
    digest = await remote_sha256(session, final)
    if digest is None:
        raise session.error(f"sha256sum of the engine {final} failed")
    record = EngineRecord(
        file=name,
        precision=plan.precision,
        tensorrt_version=str(version),
        gpu_name=info.get("device", "unknown"),
        compute_capability=capability,
        onnx_file=choice.onnx_name,
        onnx_sha256=choice.onnx_sha,
        engine_sha256=digest,
        min_batch=choice.low,
        opt_batch=choice.opt,
        max_batch=choice.high,
        dla_core=plan.dla_core,
        network_flags=plan.network_flags,
        builder_flags=plan.builder_flags,
        build_seconds=round(info.get("build_seconds", seconds), 3),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    entry = {
        **record.to_json(),
        "built_with": "trtexec",
        "build_log": posixpath.basename(log_path),
        "trtexec_flags": flags,
    }
    manifest.record_engine(entry)
    await _write_remote(session, manifest_path, manifest.to_bytes())
    return entry, log_path


async def _bench_with_trtexec(
    session: BoardSession,
    board: Board,
    trtexec: Program,
    sync: SyncResult,
    artifact: LocalArtifact,
    target: str | Path,
    request: BenchRequest,
    options: RemoteOptions,
) -> tuple[list[dict[str, Any]], list[str]]:
    from edgeconv.backends.artifacts import resolve_target
    from edgeconv.bench import compute_stats
    from edgeconv.remote.trtexec import parse_export_times, parse_log, timing_flags

    features = await _trt_version(session, board, trtexec)
    resolved = resolve_target(str(target))
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for _backend, precision, batch in request.configurations():
        try:
            choice = _choose(artifact, resolved, features, precision, batch, max(request.batches), None)
        except (InvalidArgumentError, ArtifactError, QuantizationError) as exc:
            skipped.append(f"tensorrt/{precision}/batch {batch}: {exc}")
            continue
        engine, _log = await _ensure_engine(
            session, board, trtexec, sync.folder, choice, features, options, batch=batch
        )
        times = posixpath.join(sync.folder, f".edgeconv-times-{secrets.token_hex(4)}.json")
        dynamic = resolved.input_shape[0] <= 0
        timing = timing_flags(
            engine_path=posixpath.join(sync.folder, engine["file"]),
            times_path=times,
            input_name=resolved.input_name,
            shape=(batch, *resolved.input_shape[1:]) if dynamic else None,
            iterations=request.iterations,
            seconds=request.seconds,
            data_transfers=options.data_transfers,
        )
        marks: dict[str, float] = {}

        def on_line(stream: str, line: str, stamp: float, marks: dict[str, float] = marks) -> None:
            if "Starting inference" in line:
                marks["start"] = stamp
            elif "=== Performance summary ===" in line or "=== Trace details ===" in line:
                marks.setdefault("end", stamp)

        command = wrapped(["timeout", "-k", "10", int(options.timeout)], trtexec, *timing.flags)
        result, run = await _sampled(
            session,
            board,
            options,
            command,
            on_line,
            marks,
            stage=f"timing the {precision} engine with trtexec",
            start_mark="start",
            end_mark="end",
            window="trtexec's warm-up and timed iterations",
        )
        info = parse_log(result.stdout + result.stderr)
        if result.exit_status != 0 or info.get("status") == "FAILED":
            raise session.error(f"trtexec failed to time {engine['file']}: {_trtexec_failure(result, info)}")
        sftp = await session.sftp()
        try:
            async with sftp.open(times, "rb") as handle:
                exported = (await handle.read()).decode("utf-8")
        finally:
            await best_effort(sftp.remove(times))
        samples = parse_export_times(exported, metric=timing.metric, warmup_ms=timing.warmup_ms)
        stats = compute_stats(samples, batch=batch, cold_ms=None)
        row: dict[str, Any] = {
            "model": resolved.name,
            "backend": "tensorrt",
            "precision": precision,
            "device": "cuda",
            "threads": None,
            "engine": engine["file"],
            "runner": "trtexec",
            "batch": batch,
            **stats.to_dict(),
            "trtexec": {
                "flags": timing.flags,
                "metric": timing.metric,
                "data_transfers": timing.data_transfers,
                "cuda_graph": timing.cuda_graph,
                "spin_wait": True,
                "warmup_ms": timing.warmup_ms,
                "summary_ms": info.get("summary_ms", {}),
                "throughput_qps": info.get("throughput_qps"),
            },
            "env": board_env(board.record, engine.get("gpu_name"), engine.get("compute_capability")),
        }
        row["board"] = with_energy(board.record, run, row)
        rows.append(row)
    if not rows:
        raise session.error("no configuration can run with trtexec: " + "; ".join(skipped))
    return rows, skipped


# ---------------------------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------------------------
async def _build_board(
    address: Any, artifact: LocalArtifact, target: str | Path, request: BuildRequest, options: RemoteOptions
) -> BoardOutcome:
    outcome = BoardOutcome(label=address.label)
    async with open_board(address, options.ssh(), system_root=options.system_root) as session:
        board, edgeconv, trtexec = await _prepare(session, options)
        if edgeconv is None and trtexec is None:
            raise _no_runner(session)
        sync = await sync_artifact(session, artifact, options.remote_dir)
        board.record["artifact"] = sync.to_json()
        outcome.record = board.record
        if edgeconv is not None:
            args = [
                "--backend",
                "tensorrt",
                "--precision",
                request.precision,
                "--batch",
                str(request.batch),
                "--opt-level",
                str(request.optimization_level),
                "--typing",
                request.typing,
                "--json",
            ]
            args += ["--max-batch", str(request.max_batch)] if request.max_batch is not None else []
            args += ["--dla-core", str(request.dla_core)] if request.dla_core is not None else []
            args += ["--workspace", str(request.workspace_mb)] if request.workspace_mb is not None else []
            args += [
                flag for flag, on in (("--no-gpu-fallback", not request.gpu_fallback), ("--force", request.force)) if on
            ]
            command = wrapped(
                ["timeout", "-k", "10", int(options.timeout)], edgeconv, "build", _remote_target(sync, artifact), *args
            )
            result = await session.run(command, timeout=options.timeout + 30, stage="building the engine with edgeconv")
            record: dict[str, Any] | None = None
            if result.exit_status == 0:
                try:
                    loaded = json.loads(result.stdout)
                    record = loaded if isinstance(loaded, dict) and "file" in loaded else None
                except json.JSONDecodeError:
                    record = None
            log_name = f"{record['file']}.build.log" if record else f"edgeconv-build-{request.precision}.build.log"
            log_path = posixpath.join(sync.folder, log_name)
            await _write_remote(session, log_path, (result.stdout + result.stderr).encode("utf-8"))
            if record is None:
                if result.exit_status == 124:
                    raise session.error(f"timed out after {options.timeout:.0f} s while building (--timeout)")
                raise session.error(
                    f"remote edgeconv build failed (exit {result.exit_status}): "
                    f"{result.last_error_line()}; log: {log_path}"
                )
        else:
            from edgeconv.backends.artifacts import resolve_target

            assert trtexec is not None
            features = await _trt_version(session, board, trtexec)
            choice = _choose(
                artifact,
                resolve_target(str(target)),
                features,
                request.precision,
                request.batch,
                max(request.batch, request.max_batch or request.batch),
                request.dla_core,
                request,
            )
            record, log_path = await _ensure_engine(
                session,
                board,
                trtexec,
                sync.folder,
                choice,
                features,
                options,
                batch=request.batch,
                force=request.force,
            )
        outcome.build = {
            "board": address.label,
            "folder": sync.folder,
            "engine": record,
            "build_log": log_path or None,
            "runner": board.record["runner"],
        }
    return outcome
