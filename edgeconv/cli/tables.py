"""``edgeconv tables [NAME]``: the papers' resource tables, paper figure beside edgeconv's count."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from edgeconv.cli.app import app, print_json
from edgeconv.profile.tables import TableResult, compute_tables, get_table, table_names


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "%":
        return f"{value:.2f}%"
    return f"{value:.4g} {unit}".strip()


def _deviation(result_row: object) -> str:
    deviation = getattr(result_row, "deviation", None)
    if deviation is None:
        return "-"
    if getattr(result_row, "deviation_unit", "") == "pp":
        return f"{deviation:+.2f} pp"
    return f"{100 * deviation:+.1f}%"


def print_table(result: TableResult, console: Console) -> None:
    """The table with one footnote per flagged or unreproduced row (long explanations read badly in a cell)."""
    table = Table(title=f"{result.title}\n[dim]{result.source}[/dim]")
    for column in ("row", "metric", "paper", "edgeconv", "deviation", "status"):
        table.add_column(column, justify="right" if column in ("paper", "edgeconv", "deviation") else "left")
    footnotes: list[str] = []
    for row in result.rows:
        status = "[red]FLAG[/red]" if row.flagged else row.status
        if row.status != "ok" and row.explanation:
            footnotes.append(row.explanation)
            status += f" [{len(footnotes)}]"
        table.add_row(
            row.label,
            row.metric,
            _number(row.paper, row.unit),
            _number(row.edgeconv, row.unit),
            _deviation(row),
            status,
        )
    console.print(table)
    if result.note:
        console.print(result.note, style="dim", highlight=False)
    for index, text in enumerate(footnotes, 1):
        console.print(f"[{index}] {text}", highlight=False, markup=False)
    console.print()


@app.command("tables")
def tables_command(
    name: str = typer.Argument(None, help=f"One table: {', '.join(table_names())}. Default: all."),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON list of tables, each with name and rows."),
) -> None:
    """Reproduce the papers' resource tables from the zoo's code: paper figure, edgeconv figure, deviation.

    Deviations over 2% (0.05 pp for shares) are flagged and carry their explanation.
    Example: [bold]edgeconv tables mobilenet_v1_table2[/bold]
    """
    names = [get_table(name).name] if name else None
    results = compute_tables(names)
    if json_output:
        print_json([result.to_dict() for result in results])
        return
    console = Console()
    for result in results:
        print_table(result, console)
