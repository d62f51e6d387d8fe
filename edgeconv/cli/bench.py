"""``edgeconv bench TARGET``: latency of one model over backends, precisions and batch sizes, side by side."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import typer

from edgeconv.bench import engine_label, environment_line
from edgeconv.cli import remote as on_board
from edgeconv.cli.app import app, print_json
from edgeconv.cli.rows import plot_rows, write_csv
from edgeconv.errors import InvalidArgumentError

log = logging.getLogger(__name__)


def split_list(values: list[str] | None, default: list[str]) -> list[str]:
    """Repeatable options that also take comma lists: ``--backend torch --backend onnxruntime,tensorrt``."""
    out: list[str] = []
    for value in values or []:
        out += [part.strip() for part in value.split(",") if part.strip()]
    return list(dict.fromkeys(out)) or default


def parse_batches(text: str) -> list[int]:
    try:
        batches = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1 or max(batches) > 4096:
        raise InvalidArgumentError(f"--batch {text!r} is not valid; use integers in 1..4096 such as 1 or 1,8,32")
    return list(dict.fromkeys(batches))


def parse_ov_precisions(text: str | None, everything: bool) -> tuple[str | None, ...]:
    """``f32,default`` -> ("f32", None); OpenVINO's default is None."""
    from edgeconv.backends.openvino import INFERENCE_PRECISIONS

    values = [v.strip() for v in (text or ("f32,default" if everything else "default")).split(",") if v.strip()]
    for value in values:
        if value != "default" and value not in INFERENCE_PRECISIONS:
            raise InvalidArgumentError(
                f"--ov-precision {value!r} is not valid; use {', '.join(INFERENCE_PRECISIONS)} or default"
            )
    return tuple(dict.fromkeys(None if v == "default" else v for v in values))


def build_cases(
    target: Any, backends: list[str], precisions: list[str], batches: list[int], options: Any
) -> tuple[list[Any], list[str]]:
    """Cases for the asked backends; ``all`` expands to every engine here and every precision the artifact has (each
    engine the ones its runner accepts: PyTorch fp32, and fp16 on CUDA)."""
    from edgeconv.backends.availability import available_backends, refusal
    from edgeconv.bench import make_cases

    if "all" not in backends:
        return make_cases(
            target, backends=backends, precisions=precisions or ["fp32"], batches=batches, options=options
        )
    cases: list[Any] = []
    skipped: list[str] = []
    for name in dict.fromkeys([*available_backends(options.device), *(b for b in backends if b != "all")]):
        wanted = [p for p in precisions or list(target.onnx) if refusal(name, p, options) is None]
        found, why = make_cases(target, backends=[name], precisions=wanted, batches=batches, options=options)
        cases += found
        skipped += why
    return cases, skipped


def _print_recommendation(
    rows: list[dict[str, Any]], best: dict[int, dict[str, Any]], gate: Any, checked: bool
) -> None:
    if not checked:
        typer.echo("No recommendation without fidelity (--no-fidelity): the fastest row may change answers.")
        return
    for batch_size in sorted({r["batch"] for r in rows}):
        row = best.get(batch_size)
        if row is None:
            typer.echo(f"Batch {batch_size}: no configuration passes {gate.describe()}.")
            continue
        check = row["check"]
        typer.echo(
            f"Recommended at batch {batch_size}: {engine_label(row)} {row['precision']}, p50 {row['p50_ms']:.3f} ms, "
            f"top-1 agreement {100 * check['top1_agreement']:.1f}% (the fastest row that passes {gate.describe()})."
        )


def _print_table(rows: list[dict[str, Any]], env: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{rows[0]['model']}: latency per batch [ms]", show_lines=False)
    columns = ["backend", "precision", "device", "batch", "cold", "p50", "p90", "p99", "mean", "std", "img/s"]
    checked = any(r.get("check") for r in rows)
    if checked:
        columns += ["top-1 agree", "confident", "max rel err"]
    for column in columns:
        table.add_column(column, justify="right" if column not in ("backend", "precision", "device") else "left")
    for r in rows:
        cells = [
            engine_label(r) + (" *" if r.get("recommended") else ""), r["precision"], r["device"], str(r["batch"]),
            f"{r['cold_ms']:.2f}", f"{r['p50_ms']:.3f}", f"{r['p90_ms']:.3f}", f"{r['p99_ms']:.3f}",
            f"{r['mean_ms']:.3f}", f"{r['std_ms']:.3f}", f"{r['throughput']:.1f}",
        ]  # fmt: skip
        check = r.get("check")
        if checked and check:
            confident = check.get("confident_agreement")
            cells += [
                f"{100 * check['top1_agreement']:.1f}%",
                f"{100 * confident:.1f}% of {check['confident_samples']}" if confident is not None else "-",
                f"{check['max_rel_error']:.1e}",
            ]
        elif checked:
            cells += ["", "", ""]
        table.add_row(*cells)
    console = Console(width=max(Console().width, 175 if checked else 130))
    console.print(table)
    console.print(environment_line(env), style="dim", highlight=False, markup=False)


@app.command("bench")
def bench_command(
    target: str = typer.Argument(..., help="Zoo name (exported on the fly into models/), artifact folder or .onnx."),
    backend: list[str] = typer.Option(
        None,
        "--backend",
        "-b",
        help="torch | onnxruntime | openvino | tensorrt, or all (every engine this machine has, every precision the "
        "artifact has); repeat or comma-separate. Default onnxruntime.",
    ),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda (tensorrt always runs on cuda)."),
    precision: list[str] = typer.Option(None, "--precision", "-p", help="fp32 | fp16 | int8; repeat or comma list."),
    batch: str = typer.Option("1", "--batch", help="Batch sizes, e.g. 1,8,32."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed runs per configuration after the cold run."),
    iters: int | None = typer.Option(None, "--iters", help="Timed iterations per configuration (default 100)."),
    seconds: float | None = typer.Option(None, "--seconds", help="Time per configuration instead of --iters."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (torch and onnxruntime intra-op)."),
    provider: str | None = typer.Option(
        None, "--ort-provider", help="onnxruntime execution provider cpu | cuda | tensorrt (default: from --device)."
    ),
    graph_opt: str = typer.Option(
        "all", "--graph-opt", help="onnxruntime graph optimization: disable|basic|extended|all"
    ),
    compile_model: bool = typer.Option(False, "--compile", help="torch: torch.compile (inductor) the model."),
    compile_mode: str = typer.Option(
        "default", "--compile-mode", help="torch.compile mode with --compile: default | max-autotune | ..."
    ),
    cuda_graph: bool = typer.Option(
        False, "--cuda-graph", help="torch on cuda and tensorrt: capture one run as a CUDA graph and replay it."
    ),
    channels_last: bool = typer.Option(False, "--channels-last", help="torch: NHWC memory layout."),
    tf32: bool = typer.Option(
        False, "--tf32", help="torch fp32 on cuda: allow TF32 (PyTorch's conv default); without it fp32 is IEEE FP32."
    ),
    ov_precision: str = typer.Option(
        None,
        "--ov-precision",
        help="openvino inference precision(s): f32, bf16, f16, default (OpenVINO's own: bf16 on CPUs that have it); "
        "comma list. Default: default; with --backend all: f32,default.",
    ),
    ov_device: str = typer.Option("CPU", "--ov-device", help="openvino device name: CPU, GPU, NPU, AUTO."),
    no_fidelity: bool = typer.Option(
        False, "--no-fidelity", help="Skip each row's top-1 agreement with FP32 on held-out photos."
    ),
    fidelity_crops: int = typer.Option(
        200, "--fidelity-crops", help="Held-out photo crops for the fidelity column (plus the 4 export photos)."
    ),
    block: int = typer.Option(10, "--block", help="Iterations per configuration per round-robin block."),
    models_dir: Path = typer.Option(Path("models"), "--models-dir", help="Where zoo names are exported/cached."),
    json_output: bool = typer.Option(False, "--json", help="Print the result rows as JSON."),
    csv_file: Path | None = typer.Option(None, "--csv", help="Also write the rows to this CSV file."),
    plot_file: Path | None = typer.Option(None, "--plot", help="Also write a bar chart (needs edgeconv[plot])."),
    on: list[str] = on_board.ON,
    lock_clocks: bool = on_board.LOCK_CLOCKS,
    accept_new_host_key: bool = on_board.ACCEPT_NEW_HOST_KEY,
    known_hosts: Path | None = on_board.KNOWN_HOSTS,
    remote_edgeconv: str | None = on_board.REMOTE_EDGECONV,
    remote_dir: str | None = on_board.REMOTE_DIR,
    remote_timeout: float = on_board.REMOTE_TIMEOUT,
    no_data_transfers: bool = on_board.NO_DATA_TRANSFERS,
    board_root: str = on_board.BOARD_ROOT,
) -> None:
    """Measure latency (cold, mean, p50/p90/p99, min, max, std, throughput) of TARGET on one or more backends.

    Several backends/precisions/batches are measured side by side, interleaved in round-robin blocks, so machine
    drift affects them all alike. Every row carries the environment (CPU, GPU, driver, library versions).

    Every row also carries its fidelity: top-1 agreement with FP32 (the artifact's FP32 ONNX on ONNX Runtime, checked
    against PyTorch at export) on held-out photos. The run ends with a recommendation per batch size: the fastest row
    whose fidelity passes the artifact's INT8 gate (or edgeconv's default gate).

    Examples:
      [bold]edgeconv bench models/mobilenet_v2 --backend all --threads 2[/bold]
      [bold]edgeconv bench mobilenet_v2 --backend torch,onnxruntime --threads 2[/bold]
      [bold]edgeconv bench mobilenet_v2 -b torch --device cuda -p fp32,fp16 --batch 1,8 --cuda-graph[/bold]
    """
    from edgeconv.backends.artifacts import resolve_target
    from edgeconv.bench import (
        CaseOptions,
        Gate,
        check_timing,
        environment,
        fidelity_check,
        measure,
        recommend,
        target_reference,
    )
    from edgeconv.cli.preflight import check_run_plan

    if iters is not None and seconds is not None:
        raise InvalidArgumentError("give --iters or --seconds, not both")
    if iters is None and seconds is None:
        iters = 100
    backends = split_list(backend, ["onnxruntime"])
    everything = "all" in backends
    precisions = split_list(precision, [])
    batches = parse_batches(batch)
    hints = parse_ov_precisions(ov_precision, everything)
    if fidelity_crops < 0:
        raise InvalidArgumentError(f"--fidelity-crops {fidelity_crops} must be >= 0")
    options = CaseOptions(
        device=device,
        threads=threads,
        ort_provider=provider,
        graph_optimization=graph_opt,
        torch_compile=compile_mode if compile_model else False,
        cuda_graph=cuda_graph,
        channels_last=channels_last,
        tf32=tf32,
        openvino_precisions=hints,
        openvino_device=ov_device,
    )
    check_timing(warmup=warmup, iterations=iters, seconds=seconds, block=block)
    on_board.check_remote_only(on, lock_clocks=lock_clocks, accept_new_host_key=accept_new_host_key,
                               no_data_transfers=no_data_transfers, remote_edgeconv=bool(remote_edgeconv),
                               remote_dir=bool(remote_dir), known_hosts=bool(known_hosts))  # fmt: skip
    if on:  # the same measurement on boards over SSH (edgeconv.remote): what this machine has does not matter
        on_board.bench_on(
            on, target, models_dir=models_dir, json_output=json_output, csv_file=csv_file, plot_file=plot_file,
            request=dict(backends=backends, precisions=precisions, batches=batches, device=device, warmup=warmup,
                         iterations=iters, seconds=seconds, threads=threads, ort_provider=provider,
                         graph_optimization=graph_opt, compile_mode=compile_mode if compile_model else None,
                         cuda_graph=cuda_graph, channels_last=channels_last, tf32=tf32, ov_precision=ov_precision,
                         ov_device=ov_device, fidelity=not no_fidelity, fidelity_crops=fidelity_crops, block=block),
            options=on_board.remote_options(known_hosts=known_hosts, accept_new_host_key=accept_new_host_key,
                                            remote_edgeconv=remote_edgeconv, remote_dir=remote_dir,
                                            timeout=remote_timeout, lock_clocks=lock_clocks,
                                            no_data_transfers=no_data_transfers, board_root=board_root),
        )  # fmt: skip
        return
    check_run_plan(
        target, backends=backends, precisions=precisions, options=options, models_dir=models_dir,
        outputs={"--csv": csv_file, "--plot": plot_file},
    )  # fmt: skip  # all before a zoo name is exported into models/
    resolved = resolve_target(target, models_dir=models_dir)
    cases, skipped = build_cases(resolved, backends, precisions, batches, options)
    if not cases:
        raise InvalidArgumentError("no configuration can run: " + "; ".join(skipped))
    for reason in skipped:
        typer.echo(f"edgeconv: skipped {reason}", err=True)

    def progress(message: str) -> None:
        log.info(message)

    check = None
    if not no_fidelity:
        images, reference, described = target_reference(resolved, fidelity_crops)
        log.info("fidelity: %d images against %s", len(images), described)

        def check(case: Any) -> dict[str, Any]:
            return {**fidelity_check(case, images, reference), "reference": described}

    failures: list[str] = []
    results = measure(
        cases, warmup=warmup, iterations=iters, seconds=seconds, block=block, progress=progress, check=check,
        failures=failures,
    )  # fmt: skip
    if not results:
        raise InvalidArgumentError("no configuration ran: " + "; ".join(failures))
    for failure in failures:
        typer.echo(f"edgeconv: failed {failure}", err=True)
    env = environment()
    rows = [result.row(env) for result in results]
    gate = Gate.of(resolved.manifest)
    best = recommend(rows, gate) if check is not None else {}
    for row in best.values():
        row["recommended"] = True
    if csv_file is not None:
        write_csv(csv_file, rows)
    if plot_file is not None:
        plot_rows(plot_file, rows, f"{resolved.name} ({env['cpu'].get('model')})")
    if json_output:
        print_json(rows)
    else:
        _print_table(rows, env)
        _print_recommendation(rows, best, gate, check is not None)


def print_latency_breakdown(result: Any, top: int = 25) -> None:
    """Rich tables for ``edgeconv profile --latency``: slowest modules with their mult-adds, then the op classes."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 130))
    table = Table(
        title=f"{result.model}: per-layer latency on {result.backend} ({result.precision}, batch {result.batch})"
    )
    for column in ("module", "ops", "ms", "% of e2e", "mult-adds", "ms / M mult-adds"):
        table.add_column(column, justify="left" if column in ("module", "ops") else "right")
    rows = result.by_module()
    for row in rows[:top]:
        table.add_row(
            row["module"] or "(no module)", ",".join(row["ops"]), f"{row['mean_ms']:.4f}",
            f"{100 * row['mean_ms'] / result.end_to_end_ms:.1f}" if result.end_to_end_ms else "",
            f"{row['macs'] / 1e6:.2f} M" if row["macs"] else "",
            f"{row['ms_per_mmac']:.4f}" if row["ms_per_mmac"] else "",
        )  # fmt: skip
    console.print(table)
    if len(rows) > top:
        console.print(f"... {len(rows) - top} more modules (--json for all)", style="dim")
    classes = Table(title="Runtime by op class")
    for column in ("class", "ms", "% of end-to-end"):
        classes.add_column(column, justify="left" if column == "class" else "right")
    for name, (ms, pct) in result.classes().items():
        classes.add_row(name, f"{ms:.3f}", f"{pct:.1f}")
    console.print(classes)
    console.print(
        f"end-to-end {result.end_to_end_ms:.3f} ms = layers {result.layers_ms:.3f} ms + not in any layer "
        f"{result.gap_ms:.3f} ms (mean of {result.runs} profiled runs)"
    )
    for note in result.notes:
        console.print(f"note: {note}", highlight=False)
