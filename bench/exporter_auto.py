"""Which exporter ``edgeconv export``'s default (``--exporter auto``) picks for each zoo model, and why.

``export_onnx(..., exporter="auto")`` tries the torch.export-based (dynamo) exporter first and keeps its graph where it
validates against PyTorch at the opset asked; otherwise the TorchScript exporter writes the graph and the report
says why. For every registry name that exports (random weights, ``torch.manual_seed(0)``, batch 1, the spec's input
size, opset 17), this records the exporter that wrote the file, the reason for a fallback, the opset, the max
relative error of the check against PyTorch and the seconds of the whole call, clip models included.
bench/exporters.py compares the two exporters themselves side by side.

Run (one process; the whole zoo takes about 25 min on 2 cores)::

    nohup nice -n 10 .venv/bin/python bench/exporter_auto.py > /tmp/exporter_auto.log 2>&1 &
    .venv/bin/python bench/exporter_auto.py --models 'lenet5,alexnet_lrn' --out /tmp/auto   # a quick look
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

log = logging.getLogger("exporter_auto")


def export_row(name: str, opset: int, folder: Path) -> dict[str, Any]:
    import torch

    from edgeconv.export import export_onnx
    from edgeconv.zoo import create_model, get_spec

    spec = get_spec(name)
    row: dict[str, Any] = {"model": name, "input": "x".join(map(str, (1, *spec.input_size)))}
    torch.manual_seed(0)
    start = time.perf_counter()
    try:
        model = create_model(name)
        report = export_onnx(model, folder / f"{name}.onnx", (1, *spec.input_size), opset=opset, mean=spec.mean,
                             std=spec.std)  # fmt: skip
    except Exception as exc:  # an export that fails both ways is a result too
        row.update(ok=False, error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300])
    else:
        validation = report.validation
        row.update(ok=True, exporter=report.exporter, fallback=report.exporter_fallback, opset=report.opset,
                   max_rel_error=validation.max_rel_error if validation else None)  # fmt: skip
    finally:
        (folder / f"{name}.onnx").unlink(missing_ok=True)
    row["seconds"] = round(time.perf_counter() - start, 1)
    log.info("%s: %s", name, row)
    return row


def render(result: dict[str, Any]) -> str:
    rows = result["rows"]
    ok = [r for r in rows if r["ok"]]
    picked = Counter(r["exporter"] for r in ok)
    reasons = Counter(r["fallback"] for r in ok if r["fallback"])
    lines = [
        f"Command: `{result['command']}`",
        "",
        "# `edgeconv export`'s default exporter (`--exporter auto`), per zoo model",
        "",
        f"- Date: {result['date']}, {result['minutes']} min; {result['environment']}",
        f"- Setup: random weights (`torch.manual_seed(0)`), batch 1, the spec's input size, opset {result['opset']} "
        "asked; `edgeconv.export.export_onnx(..., exporter='auto')`: dynamo first, kept where its graph validates "
        "against PyTorch (4 photos, relative error <= 1e-4) at the opset asked, else the TorchScript exporter.",
        f"- Written by dynamo: {picked['dynamo']} of {len(rows)}; by TorchScript: {picked['torchscript']}; "
        f"failed both ways: {len(rows) - len(ok)}. Seconds in all: {sum(r['seconds'] for r in rows):.0f}.",
        "- Why TorchScript: "
        + ("; ".join(f"{why} ({n})" for why, n in reasons.most_common()) if reasons else "never")
        + ".",
        "",
        "| model | input | written by | why not dynamo | opset | max rel err | seconds |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        if r["ok"]:
            err = "-" if r["max_rel_error"] is None else f"{r['max_rel_error']:.2g}"
            cells = [r["exporter"], r["fallback"] or "-", str(r["opset"]), err]
        else:
            cells = ["**failed**", f"`{r['error']}`", "-", "-"]
        lines.append(f"| {r['model']} | {r['input']} | " + " | ".join(cells) + f" | {r['seconds']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=None, help="comma-separated names or globs (default: the whole zoo)")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "exporter_auto"), help="path, no suffix")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)

    from edgeconv.bench import environment, environment_line
    from edgeconv.files import write_atomic
    from edgeconv.zoo import list_models

    names: list[str] = []
    for pattern in args.models.split(",") if args.models else [None]:
        found = [pattern] if pattern in list_models() else list_models(pattern)
        if pattern and not found:
            parser.error(f"no zoo model matches {pattern!r}")
        names += [n for n in found if n not in names]
    started = time.time()
    result: dict[str, Any] = {
        "command": "python bench/exporter_auto.py" + "".join(f" {shlex.quote(a)}" for a in argv),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "environment": environment_line(environment(), "machine"),
        "opset": args.opset,
        "rows": [],
    }
    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="edgeconv-auto-") as folder:
        for index, name in enumerate(names, 1):
            log.info("[%d/%d] %s", index, len(names), name)
            result["rows"].append(export_row(name, args.opset, Path(folder)))
            result["minutes"] = round((time.time() - started) / 60, 1)
            write_atomic(out.with_suffix(".json"), (json.dumps(result, indent=1) + "\n").encode())
            write_atomic(out.with_suffix(".md"), render(result).encode())
    print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
