"""``edgeconv bench TARGET``: latency of one model over backends, precisions and batch sizes, side by side."""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

import typer

from edgeconv.cli.app import app, print_json
from edgeconv.errors import InvalidArgumentError
from edgeconv.files import write_atomic

log = logging.getLogger(__name__)

CSV_COLUMNS = (
    "model", "backend", "variant", "precision", "device", "batch", "threads", "iterations", "cold_ms", "mean_ms",
    "std_ms", "min_ms", "max_ms", "p50_ms", "p90_ms", "p99_ms", "throughput", "env",
)  # fmt: skip


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
    if not batches or min(batches) < 1:
        raise InvalidArgumentError(f"--batch {text!r} is not valid; use positive integers such as 1 or 1,8,32")
    return list(dict.fromkeys(batches))


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "env": json.dumps(row.get("env"), sort_keys=True)})
    write_atomic(path, buffer.getvalue().encode("utf-8"))


def plot_rows(path: Path, rows: list[dict[str, Any]], title: str) -> None:
    """Bar chart of p50 per configuration, whiskers from min to p90."""
    from edgeconv.backends.base import import_optional

    matplotlib = import_optional("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['backend']}\n{r['precision']} b{r['batch']}" for r in rows]
    p50 = [r["p50_ms"] for r in rows]
    low = [r["p50_ms"] - r["min_ms"] for r in rows]
    high = [r["p90_ms"] - r["p50_ms"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(rows)), 3.5))
    ax.bar(range(len(rows)), p50, yerr=[low, high], capsize=3, color="#4c72b0")
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel("latency p50 [ms] (whiskers: min..p90)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def _print_table(rows: list[dict[str, Any]], env: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{rows[0]['model']}: latency per batch [ms]", show_lines=False)
    for column in ("backend", "precision", "device", "batch", "cold", "p50", "p90", "p99", "mean", "std", "img/s"):
        table.add_column(column, justify="right" if column not in ("backend", "precision", "device") else "left")
    for r in rows:
        backend = r["backend"] + (f" ({r['provider']})" if r.get("provider") not in (None, "cpu", "cuda") else "")
        backend += f" ({r['variant']})" if r.get("variant") not in (None, "eager") else ""
        table.add_row(
            backend, r["precision"], r["device"], str(r["batch"]), f"{r['cold_ms']:.2f}", f"{r['p50_ms']:.3f}",
            f"{r['p90_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['mean_ms']:.3f}", f"{r['std_ms']:.3f}",
            f"{r['throughput']:.1f}",
        )  # fmt: skip
    console = Console(width=max(Console().width, 130))
    console.print(table)
    cpu, gpu, versions = env.get("cpu", {}), env.get("gpu"), env.get("versions", {})
    parts = [f"CPU {cpu.get('model')} ({cpu.get('usable_cores')} cores, load {cpu.get('load_avg_1m')})"]
    if gpu:
        parts.append(f"GPU {gpu.get('name')} (driver {gpu.get('driver')})")
    parts.append(", ".join(f"{k} {v}" for k, v in versions.items() if v))
    console.print("; ".join(parts), style="dim")


@app.command("bench")
def bench_command(
    target: str = typer.Argument(..., help="Zoo name (exported on the fly into models/), artifact folder or .onnx."),
    backend: list[str] = typer.Option(
        None, "--backend", "-b", help="torch | onnxruntime | tensorrt; repeat or comma-separate. Default onnxruntime."
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
    block: int = typer.Option(10, "--block", help="Iterations per configuration per round-robin block."),
    models_dir: Path = typer.Option(Path("models"), "--models-dir", help="Where zoo names are exported/cached."),
    json_output: bool = typer.Option(False, "--json", help="Print the result rows as JSON."),
    csv_file: Path | None = typer.Option(None, "--csv", help="Also write the rows to this CSV file."),
    plot_file: Path | None = typer.Option(None, "--plot", help="Also write a bar chart (needs edgeconv[plot])."),
) -> None:
    """Measure latency (cold, mean, p50/p90/p99, min, max, std, throughput) of TARGET on one or more backends.

    Several backends/precisions/batches are measured side by side, interleaved in round-robin blocks, so machine
    drift affects them all alike. Every row carries the environment (CPU, GPU, driver, library versions).

    Examples:
      [bold]edgeconv bench mobilenet_v2 --backend torch,onnxruntime --threads 2[/bold]
      [bold]edgeconv bench mobilenet_v2 -b torch --device cuda -p fp32,fp16 --batch 1,8 --cuda-graph[/bold]
    """
    from edgeconv.backends.artifacts import resolve_target
    from edgeconv.bench import CaseOptions, environment, make_cases, measure

    if iters is not None and seconds is not None:
        raise InvalidArgumentError("give --iters or --seconds, not both")
    if iters is None and seconds is None:
        iters = 100
    backends = split_list(backend, ["onnxruntime"])
    precisions = split_list(precision, ["fp32"])
    batches = parse_batches(batch)
    resolved = resolve_target(target, models_dir=models_dir)
    options = CaseOptions(
        device=device,
        threads=threads,
        ort_provider=provider,
        graph_optimization=graph_opt,
        torch_compile=compile_mode if compile_model else False,
        cuda_graph=cuda_graph,
        channels_last=channels_last,
        tf32=tf32,
    )
    cases, skipped = make_cases(resolved, backends=backends, precisions=precisions, batches=batches, options=options)
    for reason in skipped:
        typer.echo(f"edgeconv: skipped {reason}", err=True)
    if not cases:
        raise InvalidArgumentError("no configuration can run: " + "; ".join(skipped))

    def progress(message: str) -> None:
        log.info(message)

    results = measure(cases, warmup=warmup, iterations=iters, seconds=seconds, block=block, progress=progress)
    env = environment()
    rows = [result.row(env) for result in results]
    if csv_file is not None:
        write_csv(csv_file, rows)
    if plot_file is not None:
        plot_rows(plot_file, rows, f"{resolved.name} ({env['cpu'].get('model')})")
    if json_output:
        print_json(rows)
    else:
        _print_table(rows, env)


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
