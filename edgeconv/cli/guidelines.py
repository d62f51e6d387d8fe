"""``edgeconv guidelines``: ShuffleNet V2's four guidelines (Ma et al. 2018, Tables 1-4) measured on this machine's
engines, the paper's figures beside edgeconv's."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from edgeconv.bench import environment_line
from edgeconv.cli.app import app, print_json
from edgeconv.cli.bench import split_list
from edgeconv.errors import InvalidArgumentError

log = logging.getLogger(__name__)

PLATFORM_LABELS = {"gpu": "GPU", "arm": "ARM"}
PAPER_UNITS = {"gpu": "b/s", "arm": "img/s"}


def parse_scales(text: str) -> tuple[int, ...]:
    """``1,2,4`` -> (1, 2, 4); only the paper's three sizes."""
    from edgeconv.guidelines import SCALES

    try:
        scales = tuple(dict.fromkeys(int(part) for part in text.split(",") if part.strip()))
    except ValueError:
        scales = ()
    if not scales or any(s not in SCALES for s in scales):
        raise InvalidArgumentError(
            f"--scales {text!r} is not valid; use the paper's sizes {','.join(map(str, SCALES))} or a subset, e.g. 1"
        )
    return tuple(sorted(scales))


def print_guideline_table(report: dict[str, Any], console: Console, platforms: Sequence[str] = ("gpu", "arm")) -> None:
    """One guideline table, grouped by size: per row the paper's network, speed and ratio to the first row for each
    platform in ``platforms``, then each measured run's ratio and speed; then the verdicts, the claim and the
    readings."""
    from edgeconv.guidelines import format_speed

    table = Table(title=f"{report['title']}\n[dim]{report['source']}[/dim]")
    table.add_column("size")
    table.add_column("row", no_wrap=True)
    for platform in platforms:
        table.add_column(f"paper {PLATFORM_LABELS[platform]}\nnetwork")
        table.add_column(f"paper {PLATFORM_LABELS[platform]}\n{PAPER_UNITS[platform]}  x first", justify="right")
    for column in report["measured_columns"]:
        network = "\n(network)" if column["platform"] not in platforms else ""
        label = column["label"].replace(", ", "\n", 1)
        table.add_column(f"{label}\nx first  {PAPER_UNITS[column['platform']]}{network}", justify="right", no_wrap=True)
    rows = report["rows"]
    for index, row in enumerate(rows):
        new_size = index == 0 or rows[index - 1]["size"] != row["size"]
        size = " / ".join(dict.fromkeys(row["column"][p] for p in platforms)) if new_size else ""
        cells = [size, row["label"]]
        for platform in platforms:
            cells.append(row["network"][platform])
            cells.append(f"{format_speed(row['paper'][platform])}  {row['paper_ratio'][platform]:.2f}")
        for column, cell in zip(report["measured_columns"], row["measured"], strict=True):
            if cell is None:
                cells.append("-")
                continue
            ratio = "-" if cell["ratio"] is None else f"[bold]{cell['ratio']:.2f}[/bold]"
            text = f"{ratio}  {format_speed(cell['speed'])}"
            if cell.get("passed") is False:
                text += " [red](output differs)[/red]"
            if column["platform"] not in platforms:
                text += f"\n[dim]{cell['network']}[/dim]"
            cells.append(text)
        table.add_row(*cells, end_section=index + 1 < len(rows) and rows[index + 1]["size"] != row["size"])
    console.print(table)
    console.print(
        f"Rule: {report['rule']}; two speeds differ only by more than {report['margin']:.0%} and than the spread of "
        "their repeats (else: within noise).",
        highlight=False,
    )
    verdicts = [f"paper {PLATFORM_LABELS[p]}: {report['paper_verdicts'][p]}" for p in platforms]
    for column in report["measured_columns"]:
        wider = [
            f"{label} {spread:.0%}"
            for label, spread in zip(report["columns"][column["platform"]], column["spreads"], strict=True)
            if spread is not None and spread > report["margin"]
        ]
        noise = f" (largest repeat spread: {', '.join(wider)})" if wider else ""
        verdicts.append(f"{column['label']}: {column['verdict']}{noise}")
    for line in verdicts:
        console.print(f"  {line}", highlight=False, markup=False)
    console.print(f'Paper: "{report["claim"]}"', style="dim", highlight=False)
    for reading in report["readings"]:
        console.print(f"Reading: {reading}", style="dim", highlight=False, markup=False)
    if report["pending"]:
        console.print(report["pending"], style="dim", highlight=False, markup=False)
    console.print()


def print_readings(console: Console, readings: Sequence[str]) -> None:
    for reading in readings:
        console.print(f"Reading: {reading}", style="dim", highlight=False, markup=False)


@app.command("guidelines")
def guidelines_command(
    guideline: list[str] = typer.Option(
        None, "--guideline", "-g", help="g1 | g2 | g3 | g4; repeat or comma-separate. Default: all four."
    ),
    backend: list[str] = typer.Option(
        None,
        "--backend",
        "-b",
        help="Any backend `edgeconv bench` runs (torch, onnxruntime, openvino, tensorrt); repeat or "
        "comma-separate. Default: torch,onnxruntime,openvino on cpu; torch,onnxruntime on cuda.",
    ),
    device: str = typer.Option("cpu", "--device", help="cpu (the paper's ARM channel counts) | cuda (its GPU ones)."),
    threads: int = typer.Option(1, "--threads", help="CPU threads per engine; 1 mirrors the paper's single thread."),
    iters: int = typer.Option(30, "--iters", help="Timed iterations per network, backend and repeat."),
    warmup: int = typer.Option(5, "--warmup", help="Untimed runs per network after the cold run."),
    repeats: int = typer.Option(1, "--repeats", help="Measure each table this many times; the median is kept."),
    scales: str = typer.Option("1,2,4", "--scales", help="The paper's sizes to run: 1,2,4 or a subset."),
    batch: int = typer.Option(1, "--batch", help="Batch size (the paper states none; 1 is edgeconv's reading)."),
    columns: str = typer.Option(
        None, "--columns", help="Which of the paper's channel counts: arm | gpu. Default: arm on cpu, gpu on cuda."
    ),
    margin: float = typer.Option(0.05, "--margin", help="Speed differences within this fraction are 'within noise'."),
    statistic: str = typer.Option(
        "min",
        "--statistic",
        help="Time per batch a speed is made of: min (fastest run; robust on a shared machine) | p50 | mean (the "
        "paper's average of 100 runs).",
    ),
    cuda_graph: bool = typer.Option(False, "--cuda-graph", help="torch on cuda: replay each network as a CUDA graph."),
    json_output: bool = typer.Option(False, "--json", help="Print the results document as JSON."),
    out: Path = typer.Option(
        None, "--out", help="Also write the results document (JSON, atomically) here.", dir_okay=False
    ),
) -> None:
    """Measure ShuffleNet V2's four guidelines (Ma et al. 2018, Tables 1-4) here.

    G1 channel ratio c1:c2, G2 group count g, G3 fragments in series and
    in parallel, G4 ReLU and shortcut in a bottleneck unit: each at equal
    mult-adds per table, 56x56 input, 10 stacked blocks.

    All rows of a table run interleaved on every backend, from one ONNX
    export. Each row shows its speed and its ratio to the table's first
    row, beside the paper's (GTX 1080Ti batches/s, Snapdragon 810
    images/s), and each guideline gets a verdict by a stated rule.

    Examples:

      [bold]edgeconv guidelines[/bold]  (all four; torch, onnxruntime, openvino; 1 thread)

      [bold]edgeconv guidelines -g g2,g4 --threads 2 --repeats 3[/bold]

      [bold]edgeconv guidelines -g g1 --scales 1 --iters 10 --json[/bold]

      [bold]edgeconv guidelines --device cuda -b torch,tensorrt --out gpu.json[/bold]

    Recorded results: [bold]python bench/guidelines.py[/bold]; shown by
    [bold]edgeconv tables shufflenet_v2_g1[/bold] (g2, g3, g4).
    """
    from edgeconv.files import check_output_file
    from edgeconv.guidelines import (
        DEVICE_BACKENDS,
        GUIDELINES,
        PAPER,
        READINGS,
        GuidelineOptions,
        get_guideline,
        guideline_report,
        results_document,
        run_guidelines,
        write_results,
    )

    keys = [get_guideline(key).key for key in split_list(guideline, list(GUIDELINES))]
    options = GuidelineOptions(
        device=device,
        backends=tuple(split_list(backend, list(DEVICE_BACKENDS.get(device, ("torch",))))),
        threads=threads,
        batch=batch,
        iterations=iters,
        warmup=warmup,
        repeats=repeats,
        scales=parse_scales(scales),
        columns=columns,
        margin=margin,
        statistic=statistic,  # type: ignore[arg-type]  # validated by GuidelineOptions.validate
        cuda_graph=cuda_graph,
    )
    options.validate()
    if out is not None:
        check_output_file(out, option="--out")  # before minutes of measuring, not after
    console = Console(width=max(Console().width, 150), stderr=json_output)

    with console.status("exporting the guideline networks") as status:  # one updating line, on stderr with --json
        run = run_guidelines(keys, options, progress=status.update)
    document = results_document([run])
    if out is not None:
        write_results(out, document)
    if json_output:
        print_json(document)
        return
    for key in keys:
        print_guideline_table(guideline_report(key, [run]), console, platforms=(options.platform,))
    for key in keys:
        table = run["tables"][key]
        for line in [*table["skipped"], *table["failures"]]:
            console.print(f"{key}: left out {line}", style="yellow", highlight=False, markup=False)
    print_readings(console, READINGS)
    console.print(f"Paper: {PAPER}", style="dim", highlight=False)
    console.print(environment_line(run["env"], f"Measured in {run['seconds']:.0f} s"), style="dim", highlight=False)
    if out is not None:
        console.print(f"Results written to {out}", highlight=False)
