"""Benchmark driver: ShuffleNet V2's four guidelines (Ma et al. 2018, Tables 1-4) on every engine this machine has.

    python bench/guidelines.py                   # writes bench/results/guidelines-<machine>.{json,md}
    python bench/guidelines.py --quick           # smoke check: x1 only, 3 iterations, guidelines-<machine>-quick.*

Runs edgeconv.guidelines.run_guidelines once per thread count (``--threads 1,2``; default 1, the paper's single ARM
thread; ``--append`` adds runs to an existing results file),
every table's rows, sizes and backends interleaved, ``--repeats`` times, from one set of ONNX exports shared by the
runs. The Markdown puts the paper's figures (GTX 1080Ti batches/s, Snapdragon 810 images/s) beside edgeconv's, each
also relative to the table's first row, with each guideline's verdict by its rule; ``edgeconv tables
shufflenet_v2_g1`` (g2, g3, g4) shows the same from the JSON. On a GPU machine: ``--device cuda --threads 0``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
sys.path.insert(0, str(ROOT / "bench"))

from run_bench import machine_name  # noqa: E402  the one naming of result files

from edgeconv.errors import EdgeconvError  # noqa: E402
from edgeconv.files import check_writable, write_atomic  # noqa: E402
from edgeconv.guidelines import (  # noqa: E402
    DEVICE_BACKENDS,
    GUIDELINES,
    PAPER,
    PLATFORM_NAMES,
    PLATFORMS,
    GuidelineOptions,
    format_speed,
    get_guideline,
    guideline_report,
    load_results,
    measured_with,
    results_document,
    run_guidelines,
    write_results,
)

log = logging.getLogger("guidelines")
STATISTIC_NAMES = {"min": "fastest (min)", "p50": "median (p50)", "mean": "mean"}


def markdown(document: dict[str, Any], json_path: Path) -> str:
    """The results file as Markdown: per guideline the paper's figures beside every run's, and the verdicts."""
    runs = document["runs"]
    env = runs[0]["env"] if runs else {}
    cpu, gpu, versions = env.get("cpu") or {}, env.get("gpu") or {}, env.get("versions") or {}
    lines = [
        f"# ShuffleNet V2's guidelines, measured on {document.get('machine')}",
        "",
        f"Paper: {PAPER}, Tables 1-4. Its figures: " + "; ".join(PLATFORM_NAMES[p] for p in PLATFORMS) + ".",
        "",
        f"- CPU: {cpu.get('model')} ({cpu.get('usable_cores')} usable / {cpu.get('logical_cores')} logical cores, "
        f"governor {cpu.get('governor', 'n/a')})",
        f"- GPU: {gpu.get('name') or 'none'}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v),
    ]
    for index, run in enumerate(runs):
        settings = run["settings"]
        load = ((run.get("env") or {}).get("cpu") or {}).get("load_avg_1m")
        lines.append(
            f"- Run {index + 1}: {', '.join(settings['backends'])} on {settings['device']}, threads "
            f"{settings['threads'] or 'default'}, batch {settings['batch']}, the paper's {settings['columns'].upper()} "
            f"channel counts, input {settings['input_size']}x{settings['input_size']}; warm-up {settings['warmup']}, "
            f"{settings['iterations']} iterations per network, {settings['repeats']} repeat(s) (median kept), speed "
            f"from the {STATISTIC_NAMES.get(settings['statistic'], settings['statistic'])} ms per batch; load "
            f"{load} at start; {run['seconds']:.0f} s"
        )
    lines += [
        "",
        "Every speed is shown with its ratio to the table's first row (x first), the comparison the paper makes. A "
        "verdict applies the guideline's rule to one column: two speeds differ only by more than "
        f"{runs[0]['settings']['margin']:.0%} and than the spread of their repeats (the range of the closest two of "
        "three repeats relative to their median, so that a repeat another process slowed throughout widens it no "
        "more than it moves the median; the column's largest is shown beside each verdict), else they are within "
        "noise."
        if runs
        else "No runs.",
        "",
    ]
    for key in GUIDELINES:
        report = guideline_report(key, runs)
        if not report["measured_columns"]:
            continue
        platform = report["measured_columns"][0]["platform"]
        other = "gpu" if platform == "arm" else "arm"
        lines += [f"## {report['title']}", "", f'Paper: "{report["claim"]}". Rule: {report["rule"]}.', ""]
        header = ["row", f"network ({platform.upper()} columns)", f"paper {platform.upper()}", f"paper {other.upper()}"]
        header += [column["label"] for column in report["measured_columns"]]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * (len(header) - 2)]
        for row in report["rows"]:
            if all(cell is None for cell in row["measured"]):
                continue
            cells = [
                row["label"],
                f"{row['column'][platform]}: {row['network'][platform]}",
                f"{format_speed(row['paper'][platform])} ({row['paper_ratio'][platform]:.2f})",
                f"{format_speed(row['paper'][other])} ({row['paper_ratio'][other]:.2f})",
            ]
            for cell in row["measured"]:
                if cell is None or cell["ratio"] is None:
                    cells.append("-")
                else:
                    flag = " (output differs)" if cell.get("passed") is False else ""
                    cells.append(f"{format_speed(cell['speed'])} (**{cell['ratio']:.2f}**){flag}")
            lines.append("| " + " | ".join(cells) + " |")
        sizes = report["columns"][platform]
        lines += ["", "| verdict | " + " | ".join(sizes) + " | overall |", "|---|" + "---|" * (len(sizes) + 1)]
        for p in (platform, other):
            per_size = report["paper_verdicts_per_size"][p]
            lines.append(
                f"| paper {p.upper()} | "
                + " | ".join(v or "-" for v in per_size)
                + f" | {report['paper_verdicts'][p]} |"
            )
        for column in report["measured_columns"]:
            per_size = [
                "-" if v is None else v if spread is None else f"{v} (spread <= {spread:.0%})"
                for v, spread in zip(column["verdicts"], column["spreads"], strict=True)
            ]
            lines.append(f"| {column['label']} | " + " | ".join(per_size) + f" | {column['verdict']} |")
        for reading in report["readings"]:
            lines += ["", f"Reading: {reading}"]
        lines.append("")
    lines += ["## What the paper leaves open, and how edgeconv reads it", ""]
    lines += [f"- {reading}" for reading in document["readings"]]
    problems = [
        f"- {key}: {line}"
        for run in runs
        for key, table in run["tables"].items()
        for line in [*table["skipped"], *table["failures"]]
    ]
    if problems:
        lines += ["", "## Left out", "", *problems]
    lines += [
        "",
        f"Raw figures: `{json_path.name}` (every run's settings, environment and per-network statistics).",
        "",
    ]
    return "\n".join(lines)


def parse_threads(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--threads {text!r} is not valid; use counts such as 1 or 1,2 (0: the default)") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke check: x1 only, 3 iterations, 1 repeat")
    parser.add_argument("--guidelines", default=",".join(GUIDELINES), help="comma list of g1, g2, g3, g4")
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--backends", default=None, help="comma list (default: torch,onnxruntime,openvino on cpu)")
    parser.add_argument(
        "--threads", default="1", help="comma list, e.g. 1,2: one run each (0: the engines' default); default 1"
    )
    parser.add_argument("--iters", type=int, default=None, help="timed iterations per network (default 20)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=None, help="default 3; quick 1")
    parser.add_argument("--scales", default=None, help="comma list of 1, 2, 4 (default all; quick 1)")
    parser.add_argument("--statistic", default="min", help="min (fastest run) | p50 | mean (the paper's)")
    parser.add_argument("--margin", type=float, default=0.05)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--machine", default=None, help="result file name (default: from the CPU/GPU model)")
    parser.add_argument("--append", action="store_true", help="keep the runs already in the results file, add these")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)

    quick = args.quick
    backends = tuple(args.backends.split(",")) if args.backends else DEVICE_BACKENDS.get(args.device, ("torch",))
    # Every option is checked before the first run: a typo must not cost a run of minutes.
    try:
        scales = tuple(int(s) for s in args.scales.split(",")) if args.scales else ((1,) if quick else (1, 2, 4))
        keys = [get_guideline(key).key for key in args.guidelines.split(",")]
        all_options = [
            GuidelineOptions(
                device=args.device,
                backends=backends,
                threads=threads or None,
                iterations=args.iters if args.iters is not None else (3 if quick else 20),
                warmup=1 if quick else args.warmup,
                repeats=args.repeats if args.repeats is not None else (1 if quick else 3),
                scales=scales,
                margin=args.margin,
                statistic=args.statistic,
            )
            for threads in parse_threads(args.threads)
        ]
        for options in all_options:
            options.validate()
        check_writable(Path(args.out), what="--out")
    except (ValueError, EdgeconvError) as exc:
        parser.error(str(exc))
    runs: list[dict[str, Any]] = []
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="edgeconv-guidelines-") as workdir:  # exports shared by every run
        for options in all_options:
            log.info("run: %s", measured_with(options.to_dict(), "+".join(backends)))
            run = run_guidelines(keys, options, workdir=workdir, progress=log.info)
            machine = args.machine or machine_name(run["env"])
            stem = Path(args.out) / f"guidelines-{machine}{'-quick' if quick else ''}"
            if args.append and not runs and stem.with_suffix(".json").is_file():
                runs = list(load_results(stem.with_suffix(".json"))["runs"])
            runs.append(run)
            document = results_document(runs, machine=machine)
            json_path = write_results(stem.with_suffix(".json"), document)
            md_path = stem.with_suffix(".md")
            write_atomic(md_path, markdown(document, json_path).encode("utf-8"))
    log.info("wrote %s and %s in %.0f s", json_path, md_path, time.time() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
