"""``edgeconv profile TARGET``: params, mult-adds and memory per layer of a zoo model or an ONNX file."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from edgeconv.cli.app import app, model_kwargs, parse_input_size, print_json
from edgeconv.errors import InvalidArgumentError
from edgeconv.profile.report import ProfileReport


def _count(value: float, unit: str = "") -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {suffix}{unit}"
    return f"{value:.0f} {unit}".rstrip()


def _bytes(value: float) -> str:
    for scale, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if value >= scale:
            return f"{value / scale:.2f} {suffix}"
    return f"{value:.0f} B"


def is_onnx_target(target: str) -> bool:
    return target.lower().endswith(".onnx") or Path(target).is_file() or Path(target).is_dir()


def profile_target(
    target: str, input_size: str | None = None, batch: int = 1, width_mult: float | None = None
) -> ProfileReport:
    """What the command profiles: an ONNX file (fixed shapes, batch pinned) or a zoo model at the given input."""
    from edgeconv.profile import profile_model, profile_onnx

    if is_onnx_target(target):
        if input_size is not None or width_mult is not None:
            raise InvalidArgumentError(
                f"--input-size and --width-mult apply to zoo models, not to {target!r}: an ONNX graph's shapes are "
                "fixed at export (re-export with `edgeconv export MODEL --input-size ...`)"
            )
        from edgeconv.profile.onnx_count import compare_with_zoo

        if Path(target).is_dir():  # an artifact folder: its FP32 model
            from edgeconv.backends.artifacts import resolve_target

            target = str(resolve_target(target).onnx_for("fp32"))
        report = profile_onnx(target, batch=batch)
        report.notes.extend(compare_with_zoo(target, report))  # artifact folders name their zoo model
        return report
    return profile_model(target, parse_input_size(input_size), batch=batch, **model_kwargs(width_mult))


def print_report(report: ProfileReport, *, by_type: bool, console: Console | None = None) -> None:
    console = console or Console()
    shape = "x".join(map(str, report.input_shape))
    if by_type:
        table = Table(title=f"{report.model} ({report.source}, input {shape}): by op type")
        for column in ("type", "layers", "params", "params %", "mult-adds", "mult-adds %", "memory (MAC)"):
            table.add_column(column, justify="left" if column == "type" else "right")
        for key, totals in report.by_type().items():
            table.add_row(
                key,
                str(totals.layers),
                _count(totals.params),
                f"{totals.params_pct:.2f}",
                _count(totals.macs),
                f"{totals.macs_pct:.2f}",
                _bytes(totals.memory_bytes),
            )
    else:
        table = Table(title=f"{report.model} ({report.source}, input {shape}): per layer")
        for column in ("name", "type", "output", "params", "mult-adds", "other ops", "memory (MAC)"):
            table.add_column(column, justify="left" if column in ("name", "type", "output") else "right")
        for layer in report.layers:
            table.add_row(
                layer.name,
                layer.type,
                "x".join(map(str, layer.output_shape)) or "-",
                _count(layer.params) if layer.params else "",
                _count(layer.macs) if layer.macs else "",
                _count(layer.other_ops) if layer.other_ops else "",
                _bytes(layer.memory_bytes),
            )
    console.print(table)
    console.print(
        f"[bold]total[/bold]: params {report.params:,} ({_count(report.params)}), mult-adds {report.macs:,} "
        f"({_count(report.macs)}), other ops {_count(report.other_ops)}, memory access {_bytes(report.memory_bytes)}, "
        f"activations {_bytes(report.activation_bytes)} (largest {_bytes(report.max_activation_bytes)})"
    )
    for note in report.notes:
        console.print(f"note: {note}", highlight=False)


@app.command("profile")
def profile_command(
    target: str = typer.Argument(
        ..., help="Zoo model name (see `edgeconv list`), path to an .onnx file, or an artifact folder."
    ),
    input_size: str = typer.Option(None, "--input-size", help="H or H,W (zoo models; default: the model's own)."),
    batch: int = typer.Option(1, "--batch", help="Batch size (mult-adds and activations scale with it)."),
    width_mult: float = typer.Option(None, "--width-mult", help="Width multiplier (MobileNet, ShuffleNet ...)."),
    by_type: bool = typer.Option(False, "--by-type", help="Totals per op type instead of the per-layer table."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object (layers, by_type, totals)."),
    csv_path: Path = typer.Option(None, "--csv", help="Also write the per-layer table to this CSV file."),
    # ---- latency (added by the backends helper): --latency / --backend options go here; keep the counting above. ----
    latency: bool = typer.Option(False, "--latency", help="Measure per-layer latency and the op-class breakdown."),
    backend: str = typer.Option("onnxruntime", "--backend", help="With --latency: onnxruntime | tensorrt."),
    precision: str = typer.Option("fp32", "--precision", help="With --latency: fp32 | fp16 | int8."),
    runs: int = typer.Option(50, "--runs", help="With --latency: profiled runs averaged (after --warmup)."),
    warmup: int = typer.Option(10, "--warmup", help="With --latency: profiled runs dropped first."),
    threads: int = typer.Option(None, "--threads", help="With --latency: onnxruntime intra-op threads."),
) -> None:
    """Count params, mult-adds (one per multiply-accumulate of conv / fc), other ops and memory per layer.

    Examples: [bold]edgeconv profile mobilenet_v1 --by-type[/bold];
    [bold]edgeconv profile models/mobilenet_v2.onnx --json[/bold]
    """
    from edgeconv.cli.preflight import check_outputs, check_run_plan

    check_outputs(target, Path("models"), {"--csv": csv_path})
    if latency:  # everything --latency can refuse, before a zoo name is exported into models/
        from edgeconv.bench import CaseOptions

        if not 1 <= runs <= 100_000 or not 0 <= warmup <= 100_000:
            raise InvalidArgumentError(
                f"--runs {runs} / --warmup {warmup} are not valid; use --runs 1..100000 and --warmup 0..100000"
            )
        if backend not in ("onnxruntime", "tensorrt"):
            raise InvalidArgumentError(f"--latency needs --backend onnxruntime or tensorrt, not {backend!r}")
        options = CaseOptions(threads=threads)
        check_run_plan(target, backends=[backend], precisions=[precision], options=options, models_dir=Path("models"))
    report = profile_target(target, input_size, batch, width_mult)
    if csv_path is not None:
        report.write_csv(csv_path)
    # ---- latency (backends helper): join per-layer latency onto `report` here, before printing. ----
    if latency:
        from edgeconv.cli.bench import print_latency_breakdown
        from edgeconv.profile.latency import profile_latency

        result = profile_latency(
            target, backend=backend, precision=precision, batch=batch, warmup=warmup, runs=runs, threads=threads
        )
        if json_output:
            print_json({**report.to_dict(), "latency": result.to_dict()})
        else:
            print_latency_breakdown(result)
        return
    if json_output:
        print_json(report.to_dict())
        return
    print_report(report, by_type=by_type)
    if csv_path is not None:
        typer.echo(f"wrote {csv_path}")
