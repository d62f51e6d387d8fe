"""The ``--on user@host`` options shared by ``edgeconv bench`` and ``edgeconv build``, and the boards' table.

Not a command: ``edgeconv.cli.bench`` and ``edgeconv.cli.build`` take these options and hand them to
:mod:`edgeconv.remote`. Tables and colours live here because the library never prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgeconv.errors import InvalidArgumentError

ON = typer.Option(
    None,
    "--on",
    help="Run on this board over SSH: user@host[:port] or a Host of ~/.ssh/config. Repeat for several boards "
    "(one side-by-side table). Keys and ssh-agent only; the host key must be in known_hosts.",
)
LOCK_CLOCKS = typer.Option(
    False, "--lock-clocks", help="With --on (Jetson): run jetson_clocks for the measurement, restore the clocks after."
)
ACCEPT_NEW_HOST_KEY = typer.Option(
    False,
    "--accept-new-host-key",
    help="With --on: add a board's host key to known_hosts when it has none there yet (a changed key is refused).",
)
KNOWN_HOSTS = typer.Option(None, "--known-hosts", help="With --on: known_hosts file (default ~/.ssh/known_hosts).")
REMOTE_EDGECONV = typer.Option(
    None,
    "--remote-edgeconv",
    help="With --on: path of edgeconv on the board (default: edgeconv on its PATH, then ~/.local/bin/edgeconv; "
    "without one, trtexec runs --backend tensorrt).",
)
REMOTE_DIR = typer.Option(
    None, "--remote-dir", help="With --on: where artifacts live on the board (default ~/.cache/edgeconv/artifacts)."
)
REMOTE_TIMEOUT = typer.Option(1800.0, "--timeout", help="With --on: seconds allowed for one remote build or run.")
NO_DATA_TRANSFERS = typer.Option(
    False,
    "--no-data-transfers",
    help="With --on, trtexec: time GPU compute only (trtexec --noDataTransfers); default times copies too.",
)
BOARD_ROOT = typer.Option("/", "--board-root", hidden=True, help="Board system files under this root (tests).")


def remote_options(
    *,
    known_hosts: Path | None,
    accept_new_host_key: bool,
    remote_edgeconv: str | None,
    remote_dir: str | None,
    timeout: float,
    lock_clocks: bool = False,
    no_data_transfers: bool = False,
    board_root: str = "/",
) -> Any:
    from edgeconv.remote import RemoteOptions
    from edgeconv.remote.ssh import DEFAULT_REMOTE_DIR

    if timeout <= 0:
        raise InvalidArgumentError(f"--timeout {timeout} must be > 0 seconds")
    if known_hosts is not None and known_hosts.exists() and not known_hosts.is_file():
        raise InvalidArgumentError(f"--known-hosts {known_hosts} is not a file; give the path of a known_hosts file")
    return RemoteOptions(
        known_hosts=known_hosts,
        accept_new_host_key=accept_new_host_key,
        remote_edgeconv=remote_edgeconv,
        remote_dir=remote_dir or DEFAULT_REMOTE_DIR,
        timeout=timeout,
        lock_clocks=lock_clocks,
        data_transfers=not no_data_transfers,
        system_root=board_root,
    )


def _working(what: str) -> Any:
    """A spinner on stderr while boards work (a copy, an engine build or a benchmark there takes minutes)."""
    from rich.console import Console

    return Console(stderr=True).status(f"{what} ...")


def _configuration(row: dict[str, Any]) -> tuple[str, str, str, int]:
    from edgeconv.bench import engine_label

    backend = engine_label(row) + (" (trtexec)" if row.get("runner") == "trtexec" else "")
    return backend, row["precision"], row["device"], int(row["batch"])


def board_summary(record: dict[str, Any]) -> str:
    """One line per board: what it is and the state it was in."""
    parts = [record.get("model") or record.get("hostname") or "?"]
    if record.get("l4t"):
        parts.append(f"L4T {record['l4t']}" + (f" (JetPack {record['jetpack']})" if record.get("jetpack") else ""))
    elif record.get("os"):
        parts.append(record["os"])
    mode = record.get("power_mode")
    if mode:
        parts.append(f"power mode {mode.get('name')} ({mode.get('id')})")
    clocks = record.get("jetson_clocks", {})
    if "locked" in clocks:
        parts.append("jetson_clocks " + ("on" if clocks["locked"] else "off"))
    versions = [f"{name} {record[key]}" for key, name in (("tensorrt", "TensorRT"), ("cuda", "CUDA"),
                                                          ("cudnn", "cuDNN")) if record.get(key)]  # fmt: skip
    parts += versions
    if record.get("gpu", {}).get("name"):
        parts.append(f"GPU {record['gpu']['name']} (driver {record['gpu'].get('driver')})")
    cpu = record.get("cpu", {})
    if cpu.get("model"):
        parts.append(f"CPU {cpu['model']} x{cpu.get('cores', '?')}")
    return ", ".join(str(part) for part in parts)


def print_boards(rows: list[dict[str, Any]], outcomes: list[Any]) -> None:
    """p50 (and mJ per image where the board reports power) per configuration, one column per board; each board's
    record and warnings below."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=max(Console().width, 130))
    labels = [o.label for o in outcomes if o.rows]
    if rows:
        energy = any(r["board"].get("run", {}).get("energy_mj_per_inference") is not None for r in rows)
        title = f"{escape(str(rows[0]['model']))}: p50 latency per batch \\[ms]"
        table = Table(title=title + (", energy \\[mJ/image]" if energy else ""))
        for column in ("backend", "precision", "device", "batch"):
            table.add_column(column, justify="right" if column == "batch" else "left")
        for label in labels:
            table.add_column(f"{escape(label)}\np50", justify="right", overflow="fold")
            if energy:
                table.add_column(f"{escape(label)}\nmJ/img", justify="right", overflow="fold")
        cells: dict[tuple[str, str, str, int], dict[str, dict[str, Any]]] = {}
        for row in rows:
            cells.setdefault(_configuration(row), {})[row["board"]["name"]] = row
        for configuration, by_board in cells.items():
            line = [configuration[0], configuration[1], configuration[2], str(configuration[3])]
            for label in labels:
                found: dict[str, Any] | None = by_board.get(label)
                line.append(f"{found['p50_ms']:.3f}" if found else "-")
                if energy:
                    mj = found["board"].get("run", {}).get("energy_mj_per_inference") if found else None
                    line.append(f"{mj:.2f}" if mj is not None else "-")
            table.add_row(*line)
        console.print(table)
    for outcome in outcomes:
        if outcome.error:
            continue
        console.print(f"{outcome.label}: {board_summary(outcome.record)}", style="dim", highlight=False, markup=False)
        warnings: list[str] = []
        for row in outcome.rows:
            for warning in row["board"].get("run", {}).get("warnings", []):
                if warning not in warnings:
                    warnings.append(warning)
        for warning in warnings + list(outcome.record.get("notes", [])):
            console.print(f"  warning: {warning}", style="yellow", highlight=False, markup=False)
        for reason in outcome.skipped:
            console.print(f"  skipped {reason}", style="dim", highlight=False, markup=False)


def check_remote_only(on: list[str] | None, **given: bool) -> None:
    """Options that only mean something with --on."""
    if not on:
        for name, value in given.items():
            if value:
                raise InvalidArgumentError(f"--{name.replace('_', '-')} only applies with --on user@host")


def local_source(target: str, models_dir: Path) -> Path:
    """The local artifact to copy for ``target``: a zoo name is exported into ``models_dir`` first, as locally."""
    from edgeconv.backends.artifacts import resolve_target

    resolved = resolve_target(target, models_dir=models_dir)
    path = Path(target)
    if path.is_file():
        return path
    if resolved.folder is None:
        raise InvalidArgumentError(f"{target!r} resolved to no artifact folder; pass the folder from edgeconv export")
    return resolved.folder


def bench_on(
    on: list[str],
    target: str,
    *,
    models_dir: Path,
    request: dict[str, Any],
    options: Any,
    json_output: bool,
    csv_file: Path | None,
    plot_file: Path | None,
) -> None:
    """``edgeconv bench ... --on``: measure on every board, print one table (or JSON rows), one line per failed
    board on stderr, exit 1 if any failed."""
    from edgeconv.cli.app import print_json
    from edgeconv.cli.preflight import check_outputs
    from edgeconv.cli.rows import plot_rows, write_csv
    from edgeconv.remote import BenchRequest, bench_on_boards, parse_board
    from edgeconv.remote.ssh import require_asyncssh

    require_asyncssh()
    for board in on:
        parse_board(board)  # a bad address fails before anything is exported
    check_outputs(target, models_dir, {"--csv": csv_file, "--plot": plot_file})
    source = local_source(target, models_dir)
    with _working(f"copying, building and benchmarking on {', '.join(on)}"):
        outcomes = bench_on_boards(on, source, BenchRequest(**request), options)
    rows = [row for outcome in outcomes for row in outcome.rows]
    for outcome in outcomes:
        for reason in outcome.skipped:
            typer.echo(f"edgeconv: skipped on {outcome.label}: {reason}", err=True)
    if rows and csv_file is not None:
        write_csv(csv_file, rows)
    if rows and plot_file is not None:
        plot_rows(plot_file, rows, f"{rows[0]['model']} on {', '.join(o.label for o in outcomes if o.rows)}")
    if json_output:
        print_json(rows)
    else:
        print_boards(rows, outcomes)
    failed = [outcome.error for outcome in outcomes if outcome.error]
    for message in failed:
        typer.echo(f"edgeconv: error: {message}", err=True)
    if failed:
        raise typer.Exit(1)


def build_on(
    on: list[str],
    artifact: str,
    *,
    models_dir: Path,
    request: dict[str, Any],
    options: Any,
    json_output: bool,
    timing_cache: Path | None,
) -> None:
    """``edgeconv build ... --on``: build on each board; the engine and its build log stay in the board's copy of
    the artifact folder, recorded in its manifest. One line per failed board on stderr, exit 1 if any failed."""
    from edgeconv.cli.app import print_json
    from edgeconv.errors import RemoteError
    from edgeconv.remote import BuildRequest, build_on_board, parse_board
    from edgeconv.remote.ssh import require_asyncssh

    if timing_cache is not None:
        raise InvalidArgumentError("--timing-cache is a file of this machine; with --on the board builds without one")
    require_asyncssh()
    for board in on:
        parse_board(board)
    source = local_source(artifact, models_dir)
    builds: list[tuple[str, dict[str, Any], dict[str, Any]]] = []  # (board, build, board record)
    failed: list[str] = []
    for board in on:
        try:
            with _working(f"copying and building on {board}"):
                outcome = build_on_board(board, source, BuildRequest(**request), options)
        except RemoteError as exc:
            failed.append(str(exc))
            continue
        builds.append((outcome.label, outcome.build or {}, outcome.record))
    if json_output:
        print_json([{**build, "board_record": record} for _label, build, record in builds])
    else:
        for label, build, _record in builds:
            engine = build["engine"]
            typer.echo(
                f"{label}:{build['folder']}/{engine['file']}: TensorRT {engine['tensorrt_version']}, "
                f"{engine['precision']}, batch {engine['min_batch']}..{engine['max_batch']}, {engine['gpu_name']} "
                f"(sm {engine['compute_capability']}), log {build['build_log'] or '(reused)'}"
            )
    for message in failed:
        typer.echo(f"edgeconv: error: {message}", err=True)
    if failed:
        raise typer.Exit(1)
