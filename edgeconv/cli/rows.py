"""Writing ``edgeconv bench`` result rows: a CSV file and a bar chart. Shared by the local run (``edgeconv.cli.bench``)
and the on-board one (``edgeconv.cli.remote.bench_on``), which ``edgeconv.cli.bench`` itself calls: so it lives in
neither of them.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from edgeconv.files import write_atomic

CSV_COLUMNS = (
    "model", "backend", "variant", "precision", "device", "batch", "threads", "iterations", "cold_ms", "mean_ms",
    "std_ms", "min_ms", "max_ms", "p50_ms", "p90_ms", "p99_ms", "throughput", "env",
)  # fmt: skip


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
