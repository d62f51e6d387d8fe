"""``edgeconv list`` and ``edgeconv info``: what the zoo holds."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from edgeconv.cli.app import app, print_json
from edgeconv.zoo import get_spec, list_specs
from edgeconv.zoo.registry import count_params


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
    specs = list_specs(pattern)
    rows = [
        {
            "name": s.name,
            "family": s.family,
            "input_shape": [1, *s.input_size],
            "params": count_params(s.name),
            "num_classes": s.num_classes,
            "paper": str(s.paper),
            "weights": [w.name for w in s.weights],
        }
        for s in specs
    ]
    if json_output:
        print_json(rows)
        return
    table = Table(title=f"edgeconv zoo ({len(rows)} models)")
    for column in ("name", "family", "input", "params", "weights"):
        table.add_column(column, justify="right" if column == "params" else "left")
    for r in rows:
        shape = "x".join(map(str, r["input_shape"][1:]))
        table.add_row(r["name"], r["family"], shape, _millions(r["params"]), ",".join(r["weights"]) or "-")
    Console().print(table)


@app.command("info")
def info_command(
    name: str = typer.Argument(..., help="Zoo model name (see `edgeconv list`)."),
    json_output: bool = typer.Option(False, "--json", help="Print the spec as JSON."),
) -> None:
    """Show a model's spec: paper, input, normalization, paper figures vs edgeconv's count, known weights.

    Example: [bold]edgeconv info mobilenet_v2[/bold]
    """
    spec = get_spec(name)
    params = count_params(name)
    info = {
        "name": spec.name,
        "family": spec.family,
        "paper": str(spec.paper),
        "description": spec.description,
        "input_shape": [1, *spec.input_size],
        "num_classes": spec.num_classes,
        "dataset": spec.dataset,
        "mean": spec.mean,
        "std": spec.std,
        "kwargs": spec.kwargs,
        "accepts": spec.builder_kwargs(),
        "params": params,
        "paper_params": spec.figures.params,
        "paper_macs": spec.figures.macs,
        "paper_source": spec.figures.source,
        "note": spec.figures.note,
        "torchvision_equivalent": spec.torchvision_name,
        "weights": [{"name": w.name, "source": w.source, "install": w.install} for w in spec.weights],
    }
    if json_output:
        print_json(info)
        return
    console = Console()
    table = Table(show_header=False, title=spec.name)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in info.items():
        if key in ("params", "paper_params", "paper_macs"):
            value = _millions(value)
        elif key == "weights":
            value = "; ".join(f"{w['name']}: {w['source']}" for w in value) or "-"
        table.add_row(key, "-" if value in (None, "", [], {}) else str(value))
    console.print(table)
