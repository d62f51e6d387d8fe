"""``edgeconv tables [NAME] [--bench FILE]``: the papers' resource tables, paper figure beside edgeconv's count."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from edgeconv.cli.app import app, print_json
from edgeconv.errors import InvalidArgumentError
from edgeconv.profile.tables import (
    MEASURED_METRICS,
    RowResult,
    TableResult,
    compute_tables,
    find_bench_results,
    get_table,
    load_bench,
    table_names,
)

# edgeconv.guidelines.TABLE_NAMES, spelled out: that module builds its networks with torch, which the CLI imports only
# for the commands that need it (tests/test_guidelines.py checks the two agree).
GUIDELINE_TABLES = {f"shufflenet_v2_g{i}": f"g{i}" for i in range(1, 5)}


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "%":
        return f"{value:.2f}%"
    return f"{value:.4g} {unit}".strip()


def _deviation(row: RowResult) -> str:
    if row.metric in MEASURED_METRICS:  # figures from other hardware are not compared; their ratios are
        return "-" if row.ratio_deviation is None else f"{100 * row.ratio_deviation:+.1f}% (ratio)"
    if row.deviation is None:
        return "-"
    if row.deviation_unit == "pp":
        return f"{row.deviation:+.2f} pp"
    return f"{100 * row.deviation:+.1f}%"


def _ratio(row: RowResult) -> str:
    if row.metric not in MEASURED_METRICS:
        return ""
    paper = "-" if row.ratio_paper is None else f"{row.ratio_paper:.2f}"
    ours = "-" if row.ratio_edgeconv is None else f"{row.ratio_edgeconv:.2f}"
    return f"{paper} / {ours}"


def print_table(result: TableResult, console: Console) -> None:
    """The table with one footnote per flagged or unreproduced row (long explanations read badly in a cell)."""
    table = Table(title=f"{result.title}\n[dim]{result.source}[/dim]")
    latency = [row for row in result.rows if row.metric in MEASURED_METRICS]
    reference = next((row.label for row in latency if row.model == result.latency_reference), "reference")
    columns = ["row", "metric", "paper", "edgeconv", "deviation", "status"]
    if latency:
        columns.insert(4, f"x {reference}\npaper / ours")
    for column in columns:
        table.add_column(column, justify="left" if column in ("row", "metric", "status") else "right")
    footnotes: list[str] = []
    for row in result.rows:
        status = "[red]FLAG[/red]" if row.flagged else row.status
        if row.explanation and (row.status != "ok" or row.metric in MEASURED_METRICS):
            if row.explanation not in footnotes:  # one footnote for the same text (pending rows)
                footnotes.append(row.explanation)
            status += f" [{footnotes.index(row.explanation) + 1}]"
        ours = _number(row.edgeconv, row.unit)
        if row.measured_with:  # which backend and device the milliseconds are
            ours += f"\n[dim]{row.measured_with}[/dim]"
        cells = [row.label, row.metric, _number(row.paper, row.unit), ours, _deviation(row), status]
        if latency:
            cells.insert(4, _ratio(row))
        table.add_row(*cells)
    console.print(table)
    if result.note:
        console.print(result.note, style="dim", highlight=False)
    if result.bench:
        bench = result.bench
        console.print(
            f"Measured figures from {bench['file']} (machine {bench['machine']}, CPU {bench['cpu']}, "
            f"{bench['usable_cores']} usable cores, load {bench['load_avg_1m']} at start"
            + (f", GPU {bench['gpu']}" if bench.get("gpu") else "")
            + ")",
            style="dim",
            highlight=False,
            markup=False,
        )
    for index, text in enumerate(footnotes, 1):
        console.print(f"[{index}] {text}", highlight=False, markup=False)
    console.print()


def _table_name(name: str) -> str:
    try:
        return get_table(name).name
    except InvalidArgumentError:
        raise InvalidArgumentError(
            f"unknown table {name!r}; tables: {', '.join([*table_names(), *GUIDELINE_TABLES])}"
        ) from None


def print_guideline_tables(names: list[str], path: Path | None, console: Console | None, json_rows: list) -> None:
    """ShuffleNet V2's guideline tables (edgeconv.guidelines): the paper's figures, and the measured ratios from a
    guideline results file when there is one. With ``console`` None the reports are appended to ``json_rows``."""
    from edgeconv.bench import environment_line
    from edgeconv.cli.guidelines import print_guideline_table, print_readings
    from edgeconv.guidelines import PAPER, READINGS, find_results, guideline_report, load_results

    path = path if path is not None else find_results()
    document = load_results(path) if path is not None else None
    runs = document["runs"] if document else []
    reports = [guideline_report(GUIDELINE_TABLES[name], runs) for name in names]
    if console is None:
        json_rows += [{**report, "guidelines_file": str(path) if path else None} for report in reports]
        return
    for report in reports:
        print_guideline_table(report, console)
    print_readings(console, READINGS)
    console.print(f"Paper: {PAPER}", style="dim", highlight=False)
    if document:
        console.print(environment_line(runs[0]["env"], f"Measured figures from {path}"), style="dim", highlight=False)
    console.print()


@app.command("tables")
def tables_command(
    name: str = typer.Argument(
        None, help=f"One table: {', '.join([*table_names(), *GUIDELINE_TABLES])}. Default: all."
    ),
    bench: Path = typer.Option(
        None,
        "--bench",
        help="Benchmark results (bench/run_bench.py JSON, or the rows of `edgeconv bench --json`, e.g. from a Jetson "
        "with --on) for the latency rows. Default: the newest bench/results/*.json that is not a -quick run.",
        dir_okay=False,
    ),
    board: str = typer.Option(
        None, "--board", help="With --bench rows of several boards (bench --on a --on b): the board to read."
    ),
    guidelines: Path = typer.Option(
        None,
        "--guidelines",
        help="Guideline results (bench/guidelines.py or `edgeconv guidelines --out` JSON) for the shufflenet_v2_g1..g4 "
        "tables. Default: the newest bench/results/guidelines-*.json that is not a -quick run.",
        dir_okay=False,
    ),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON list of tables, each with name and rows."),
) -> None:
    """Reproduce the papers' resource tables from the zoo's code: paper figure, edgeconv figure, deviation.

    Deviations over 2% (0.05 pp for shares) are flagged and carry their explanation. Latency rows show the
    benchmark's p50 beside the paper's (other hardware: not flagged) and compare the latency relative to the table's
    reference model, flagged above 25%.
    The shufflenet_v2_g1..g4 tables are ShuffleNet V2's guideline micro-benchmarks (its Tables 1-4): the paper's GPU
    and ARM figures, each also relative to the table's first row, beside edgeconv's measured ratios (`edgeconv
    guidelines`, `python bench/guidelines.py`) and each guideline's verdict.
    Example: [bold]edgeconv tables mobilenet_v2_comparison --bench bench/results/amd-epyc-2c.json[/bold]
    """
    guideline_names = [n for n in GUIDELINE_TABLES if name in (None, n)]
    names = [] if name in GUIDELINE_TABLES else [_table_name(name)] if name else None
    results = []
    if names != []:
        path = bench if bench is not None else find_bench_results()
        results = compute_tables(names, bench=load_bench(path, board=board) if path is not None else None)
    if json_output:
        rows = [result.to_dict() for result in results]
        if guideline_names:
            print_guideline_tables(guideline_names, guidelines, None, rows)
        print_json(rows)
        return
    console = Console()
    for result in results:
        print_table(result, console)
    if guideline_names:
        print_guideline_tables(guideline_names, guidelines, Console(width=max(console.width, 150)), [])
