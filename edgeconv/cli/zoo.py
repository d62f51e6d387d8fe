"""``edgeconv list`` and ``edgeconv info``: what the zoo holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from edgeconv.cli.app import app, print_json
from edgeconv.errors import UnknownModelError

if TYPE_CHECKING:
    from edgeconv.profile.report import ProfileReport


def _millions(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:.2f} M"


@app.command("list")
def list_command(
    pattern: str = typer.Argument(None, help="Glob or substring to filter names, e.g. 'mobilenet*' or 'resnet'."),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON list of objects instead of a table."),
) -> None:
    """List zoo models: name, family, default input shape, parameter count.

    Example: [bold]edgeconv list shufflenet[/bold]
    """
    from edgeconv.zoo.registry import _suggest, count_params, list_specs

    specs = list_specs(pattern)
    if pattern and not specs:
        raise UnknownModelError(f"no zoo model matches {pattern!r}; {_suggest(pattern)}")
    rows = [
        {
            "name": s.name,
            "family": s.family,
            "inputs": s.inputs,
            "input_shape": [1, *s.input_size],
            "input_layout": s.input_layout,
            "params": count_params(s.name),
            "num_classes": s.num_classes,
            "output": s.output,
            "paper": str(s.paper),
            "weights": [w.name for w in s.weights],
        }
        for s in specs
    ]
    if json_output:
        print_json(rows)
        return
    table = Table(title=f"edgeconv zoo ({len(rows)} models)")
    for column in ("name", "family", "input", "output", "params", "weights"):
        table.add_column(column, justify="right" if column == "params" else "left")
    for r in rows:
        shape = "x".join(map(str, r["input_shape"][1:]))
        if r["inputs"] == "clip":  # C x T x H x W: T frames
            shape = f"clip {shape}"
        output = {"label_map": "label map", "detections": "boxes", "roi_detections": "RoI boxes"}.get(r["output"])
        output = f"{output or 'scores'}, {r['num_classes']} classes" if output != "label map" else output
        table.add_row(r["name"], r["family"], shape, output, _millions(r["params"]), ",".join(r["weights"]) or "-")
    Console().print(table)


def block_summary(report: ProfileReport, depth: int = 2) -> list[dict[str, object]]:
    """Per-block totals: layers grouped by the first ``depth`` parts of their module name (``features.3``)."""
    blocks: dict[str, dict[str, object]] = {}
    for layer in report.layers:
        key = ".".join(layer.name.split("/")[0].split(".")[:depth]) or layer.name
        row = blocks.setdefault(key, {"block": key, "layers": 0, "params": 0, "macs": 0, "output_shape": None})
        row["layers"] = int(row["layers"]) + 1  # type: ignore[call-overload]
        row["params"] = int(row["params"]) + layer.params  # type: ignore[call-overload]
        row["macs"] = int(row["macs"]) + layer.macs  # type: ignore[call-overload]
        row["output_shape"] = list(layer.output_shape)
    return list(blocks.values())


@app.command("info")
def info_command(
    name: str = typer.Argument(..., help="Zoo model name (see `edgeconv list`)."),
    json_output: bool = typer.Option(False, "--json", help="Print the spec as JSON."),
) -> None:
    """Show a model's spec: paper, input, normalization, paper figures vs edgeconv's count, known weights.

    Example: [bold]edgeconv info mobilenet_v2[/bold]
    """
    from edgeconv.profile.count import profile_model
    from edgeconv.zoo.registry import count_params, get_spec

    spec = get_spec(name)
    params = count_params(name)
    report = profile_model(name)
    info = {
        "name": spec.name,
        "family": spec.family,
        "paper": str(spec.paper),
        "description": spec.description,
        "inputs": spec.inputs,
        "input_shape": [1, *spec.input_size],
        "input_layout": spec.input_layout,
        "num_classes": spec.num_classes,
        "output": spec.output,
        "min_input": spec.min_input,
        "min_opset": spec.min_opset,
        "dataset": spec.dataset,
        "mean": spec.mean,
        "std": spec.std,
        "kwargs": spec.kwargs,
        "accepts": spec.builder_kwargs(),
        "params": params,
        "paper_params": spec.figures.params,
        "macs": report.macs,
        "paper_macs": spec.figures.macs,
        "paper_source": spec.figures.source,
        "note": spec.figures.note,
        "torchvision_equivalent": spec.torchvision_name,
        "weights": [{"name": w.name, "source": w.source, "install": w.install} for w in spec.weights],
    }
    info["by_type"] = {key: totals.to_dict() for key, totals in report.by_type().items()}
    info["blocks"] = block_summary(report)
    if json_output:
        print_json(info)
        return
    console = Console()
    table = Table(show_header=False, title=spec.name)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in info.items():
        if key in ("by_type", "blocks"):
            continue
        if key in ("params", "paper_params", "macs", "paper_macs"):
            value = _millions(value)
        elif key == "weights":
            value = "; ".join(f"{w['name']}: {w['source']}" for w in value) or "-"
        table.add_row(key, "-" if value in (None, "", [], {}) else str(value))
    console.print(table)
    by_type = Table(title="by op type (mult-adds = conv/fc multiply-accumulates)")
    for column in ("type", "params", "params %", "mult-adds", "mult-adds %"):
        by_type.add_column(column, justify="left" if column == "type" else "right")
    for key, totals in report.by_type().items():
        by_type.add_row(
            key, _millions(totals.params), f"{totals.params_pct:.2f}", _millions(totals.macs), f"{totals.macs_pct:.2f}"
        )
    console.print(by_type)
    blocks = Table(title="layer summary by block")
    for column in ("block", "layers", "output", "params", "mult-adds"):
        blocks.add_column(column, justify="left" if column in ("block", "output") else "right")
    for row in info["blocks"]:
        shape = "x".join(map(str, row["output_shape"][1:]))
        blocks.add_row(row["block"], str(row["layers"]), shape, _millions(row["params"]), _millions(row["macs"]))
    console.print(blocks)
