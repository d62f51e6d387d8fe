"""The TorchScript ONNX exporter beside the torch.export-based ("dynamo") one, per zoo model.

PyTorch deprecated the TorchScript exporter that ``edgeconv.export.export_onnx`` uses by default. For every registry
name (random weights, ``torch.manual_seed(0)``, the spec's input size, batch 1 unless ``--batch``), this exports
the same model instance with both exporters through ``export_onnx`` itself (opset 17 asked, onnxslim, the numerical
check against PyTorch on the four validation photos; an ``ExportError`` is a result) into a temporary folder and
records per model and exporter:

- ok, or the first line of the error;
- export seconds (the whole ``export_onnx`` call: export, checker, onnxslim, validation);
- the opset the written graph declares (the dynamo exporter implements opset >= 18 and reaches 17 only through the
  ONNX version converter, which may fail and keep 18), the node count, the max abs / relative error reported;
- name mapping: the fraction of Conv/Gemm nodes of the written graph for which ``onnxgraph.module_name(node.name)``
  is a module that exists in ``dict(model.named_modules())`` ("exists"), and for which that module is itself a
  ``Conv*d`` / ``Linear`` ("owns weights": a Conv whose name points at its folded BatchNorm is not);
- dynamo only: whether the written graph's nodes still carry ``metadata_props`` (the module path, under
  ``pkg.torch.onnx.name_scopes``), and the same two fractions computed from the metadata of the graph as it was
  *before* onnxslim (captured by wrapping ``onnxslim.slim`` in this process; matched by node name, which onnxslim
  keeps): what a mapping could recover if export kept the metadata or a name->module table. Where the ONNX version
  converter did reach opset 17, its C++ round trip has dropped the metadata before onnxslim sees the graph.

Run (one process, one thread; the whole zoo takes about an hour on 2 busy cores)::

    OMP_NUM_THREADS=1 nohup nice -n 10 .venv/bin/python bench/exporters.py > /tmp/exporters.log 2>&1 &
    .venv/bin/python bench/exporters.py --models 'lenet5,mobilenet_v2' --out /tmp/exporters   # a quick look

The .md names the command that made it; the .json holds every row and the environment. The .json is rewritten after
every model, so a long run that is stopped still leaves its rows (``--resume`` skips the models already there).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime as dt
import json
import logging
import os
import platform
import re
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing


DEFAULT_OUT = ROOT / "bench" / "results" / "exporters"
WEIGHTED_OPS = ("Conv", "Gemm")
COMPARED = ("torchscript", "dynamo")  # export_onnx's exporter="auto" picks between these two (bench/exporter_auto.py)
# export_onnx's divergence message: "max abs diff 0.0123, max relative error 4.5e-05 (tolerance ..."
_NUMBERS = re.compile(r"max abs diff (\S+), max relative error (\S+) ")

log = logging.getLogger("exporters")

# What was checked by hand beside the run (torch 2.14.1, onnxscript 0.7.2, onnx 1.23.2, onnxslim 0.1.98); the
# figures above them are this run's own.
NOTES = """\
- Since this run, `export_onnx(..., exporter="dynamo")` (and `edgeconv export --exporter dynamo`) exports at 18,
  renames the nodes from their metadata the TorchScript way before onnxslim (`export.scope_node_names`) and converts
  the optimized graph to the opset asked (keeping 18 with a warning where that fails). Re-measured on a subset
  (`--models mobilenet_v2,resnet18,efficientnet_b0,convnext_tiny,cbam_resnet50,alexnet_lrn,lenet5`): opset 17 for
  all but alexnet_lrn (18, warned), and the Conv/Gemm name mapping equal to TorchScript's on every one (330/362; the
  32 misses are cbam_resnet50's second calls, scoped `fc1_1` by both). The table above predates that change.
- Why dynamo stays at opset 18: asked for 17, torch exports at 18 and runs the ONNX C API version converter *before*
  its optimizer; that fails on every ReduceMean (global average pooling, `mean`), whose opset-18 `axes` input is not
  yet a constant there (`axes_input_to_attribute.h: No initializer or constant input to node found`), and on the
  Pad of `F.local_response_norm` (alexnet_lrn, zfnet: `No Adapter To Version $17 for Pad`); the graph is then kept
  at 18 without an error. Only the models with neither (LeNet-5, AlexNet, the VGGs) reach 17.
  Exporting at 18 and converting the *optimized* graph with `onnx.version_converter.convert_version(proto, 17)`
  works once the converter's leftover `noop_with_empty_axes=0` attribute (not valid on ReduceMean-13) is removed:
  mobilenet_v2, resnet18, efficientnet_b0, convnext_tiny and cbam_resnet50 checked, ONNX Runtime vs PyTorch
  relative error <= 2e-6, not part of this run.
- Node metadata: the dynamo graph carries the module path per node (`pkg.torch.onnx.name_scopes`, `namespace`,
  `pkg.torch.onnx.class_hierarchy`, ...), but onnxslim keeps only the model's `metadata_props`, not the nodes', and
  the C API version converter drops node metadata too (a converted graph keeps only the optimizer's
  `pkg.onnxscript.rewriter.rule_name`). So no graph `export_onnx` writes by default (slimmed) maps a node to a
  module; only `simplify=False` at opset 18 would keep the metadata. Even before onnxslim, a Conv the optimizer
  fused with its BatchNorm (`FuseBatchNormIntoConv`) carries the BatchNorm's scope (`features.0.1`, not
  `features.0.0`), hence "owns" far below "exists"; and Gemm nodes onnxslim builds from MatMul+Add (ConvNeXt's and
  SLaK's pointwise Linear layers) have new names and none.
- TorchScript's mapping misses only cbam_resnet50's 32 channel-attention convs: its shared MLP runs twice (avg and
  max pooled), and the second call's scope is `fc1_1`, which `module_name` returns as `...channel.fc1_1` (no such
  module; `export.locate_divergence` knows that suffix, `module_name` does not).
"""


def versions(names: tuple[str, ...]) -> dict[str, str | None]:
    from importlib.metadata import version

    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = version(name)
        except Exception:  # PackageNotFoundError
            found[name] = None
    return found


def load_avg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def scope_module(props: dict[str, str]) -> str | None:
    """The module path the dynamo exporter wrote into a node's metadata: the last module of
    ``pkg.torch.onnx.name_scopes`` (``['', 'features', 'features.0', 'features.0.1', 'conv2d']`` -> ``features.0.1``;
    the last entry is the aten op's own name). None when the node has none."""
    raw = props.get("pkg.torch.onnx.name_scopes")
    if not raw:
        return None
    try:
        scopes = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return None
    return scopes[-2] if isinstance(scopes, list) and len(scopes) >= 2 else None


@contextlib.contextmanager
def unslimmed_scopes(store: dict[str | None, Any]) -> Iterator[None]:
    """While active, every graph handed to ``onnxslim.slim`` first leaves its node name -> metadata module path in
    ``store`` (export_onnx calls ``onnxslim.slim`` through the module attribute, so wrapping it here is enough), and
    under the key ``None`` the number of its nodes that carry any metadata at all."""
    import onnxslim

    real = onnxslim.slim

    def slim(model: Any, *args: Any, **kwargs: Any) -> Any:
        if hasattr(model, "graph"):
            for node in model.graph.node:
                store[node.name] = scope_module({p.key: p.value for p in node.metadata_props})
            store[None] = sum(1 for node in model.graph.node if len(node.metadata_props))
        return real(model, *args, **kwargs)

    onnxslim.slim = slim
    try:
        yield
    finally:
        onnxslim.slim = real


def coverage(owners: list[str | None], modules: dict[str, Any]) -> dict[str, Any]:
    """How many of the weighted nodes' owners exist as modules, and how many of them hold the weights themselves."""
    from torch import nn

    exists = [o for o in owners if o and o in modules]
    owns = [o for o in exists if isinstance(modules[o], (nn.modules.conv._ConvNd, nn.Linear))]
    total = len(owners)
    return {
        "nodes": total,
        "exists": len(exists),
        "owns_weights": len(owns),
        "exists_fraction": round(len(exists) / total, 4) if total else None,
        "owns_weights_fraction": round(len(owns) / total, 4) if total else None,
    }


def export_row(model: Any, spec: Any, exporter: str, batch: int, opset: int, tmp: Path) -> dict[str, Any]:
    import onnx

    from edgeconv.export import export_onnx
    from edgeconv.onnxgraph import module_name

    row: dict[str, Any] = {"model": spec.name, "exporter": exporter, "ok": False, "error": None}
    path = tmp / f"{spec.name}.{exporter}.onnx"
    scopes: dict[str | None, Any] = {}
    row["load_avg_before"] = load_avg()
    start = time.perf_counter()
    try:
        with unslimmed_scopes(scopes):
            report = export_onnx(
                model,
                path,
                (batch, *spec.input_size),
                opset=opset,
                mean=spec.mean,
                std=spec.std,
                exporter=exporter,  # type: ignore[arg-type]
            )
    except Exception as exc:  # ExportError is a result; anything else too, recorded in its row
        row["seconds"] = round(time.perf_counter() - start, 2)
        text = str(exc).strip()
        row["error"] = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:400]
        found = _NUMBERS.search(text)
        if found:
            row["max_abs_diff"], row["max_rel_error"] = float(found[1]), float(found[2])
        log.info("%s %s failed after %.1f s: %s", spec.name, exporter, row["seconds"], row["error"])
        return row
    row["seconds"] = round(time.perf_counter() - start, 2)
    row["ok"] = True
    row["warnings"] = report.warnings
    row["simplified"] = report.simplified
    if report.validation is not None:
        row["max_abs_diff"] = report.validation.max_abs_diff
        row["max_rel_error"] = report.validation.max_rel_error
        row["top1_agreement"] = report.validation.top1_agreement
    try:
        proto = onnx.load(str(path), load_external_data=False)
        row["opset"] = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        row["nodes"] = len(proto.graph.node)
        row["file_bytes"] = path.stat().st_size
        weighted = [n for n in proto.graph.node if n.op_type in WEIGHTED_OPS]
        modules = dict(model.named_modules())
        row["name_mapping"] = coverage([module_name(n.name) for n in weighted], modules)
        row["nodes_with_metadata"] = sum(1 for n in proto.graph.node if len(n.metadata_props))
        if exporter == "dynamo":
            row["renamed_by_slim"] = sum(1 for n in weighted if n.name not in scopes)
            row["nodes_with_metadata_before_slim"] = scopes.get(None)
            row["metadata_mapping_before_slim"] = coverage([scopes.get(n.name) for n in weighted], modules)
    except Exception as exc:  # the export itself succeeded: a failing look at its graph is noted, not fatal
        row["analysis_error"] = f"{type(exc).__name__}: {exc}"[:400]
    finally:
        path.unlink(missing_ok=True)
    row["load_avg_after"] = load_avg()
    log.info(
        "%s %s: %.1f s, opset %s, %s nodes, rel err %.3g, mapping %s",
        spec.name,
        exporter,
        row["seconds"],
        row.get("opset"),
        row.get("nodes"),
        row.get("max_rel_error", float("nan")),
        (row.get("name_mapping") or {}).get("exists_fraction"),
    )
    return row


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _sci(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_model: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_model.setdefault(row["model"], {})[row["exporter"]] = row
    summary: dict[str, Any] = {"models": len(by_model)}
    for exporter in COMPARED:
        done = [r for r in rows if r["exporter"] == exporter]
        ok = [r for r in done if r["ok"]]
        mapped = [r["name_mapping"] for r in ok if r.get("name_mapping")]
        summary[exporter] = {
            "run": len(done),
            "validated": len(ok),
            "failed": sorted(r["model"] for r in done if not r["ok"]),
            "opsets": sorted({r.get("opset") for r in ok if r.get("opset") is not None}),
            "at_opset_17": sum(1 for r in ok if r.get("opset") == 17),
            "seconds_total": round(sum(r.get("seconds", 0.0) for r in done), 1),
            "weighted_nodes": sum(m["nodes"] for m in mapped),
            "mapped_exists": sum(m["exists"] for m in mapped),
            "mapped_owns_weights": sum(m["owns_weights"] for m in mapped),
        }
        if exporter == "dynamo":
            before = [r["metadata_mapping_before_slim"] for r in ok if r.get("metadata_mapping_before_slim")]
            summary[exporter]["metadata_before_slim_exists"] = sum(m["exists"] for m in before)
            summary[exporter]["metadata_before_slim_owns_weights"] = sum(m["owns_weights"] for m in before)
            summary[exporter]["written_nodes_with_metadata"] = sum(r.get("nodes_with_metadata", 0) for r in ok)
    both = [(m["torchscript"], m["dynamo"]) for m in by_model.values() if len(m) == 2]
    both_ok = [(t, d) for t, d in both if t["ok"] and d["ok"]]
    ratios = [d["seconds"] / t["seconds"] for t, d in both_ok if t["seconds"] > 0]
    summary["both_validated"] = len(both_ok)
    summary["median_seconds_ratio_dynamo_over_torchscript"] = round(statistics.median(ratios), 2) if ratios else None
    # Both pass at 1e-4; below ~1e-6 the two differ by float32 rounding order only.
    summary["dynamo_rel_error_within_2x_or_1e-6"] = sum(
        1 for t, d in both_ok if d.get("max_rel_error", 1.0) <= max(2 * t.get("max_rel_error", 0.0), 1e-6)
    )
    errors = [(t.get("max_rel_error"), d.get("max_rel_error")) for t, d in both_ok]
    rel = [d / t for t, d in errors if t and d is not None]
    summary["median_rel_error_ratio_dynamo_over_torchscript"] = round(statistics.median(rel), 2) if rel else None
    summary["dynamo_only"] = sorted(d["model"] for t, d in both if d["ok"] and not t["ok"])
    summary["torchscript_only"] = sorted(t["model"] for t, d in both if t["ok"] and not d["ok"])
    return summary


def render(result: dict[str, Any]) -> str:
    env, cpu, s = result["environment"], result["environment"]["cpu"], result["summary"]
    ts, dy = s["torchscript"], s["dynamo"]

    def frac(a: int, b: int) -> str:
        return f"{a}/{b} ({100 * a / b:.0f}%)" if b else "-"

    lines = [
        f"Command: `{result['command']}`",
        "",
        "# TorchScript vs torch.export-based (dynamo) ONNX exporter, per zoo model",
        "",
        f"- Date: {result['date']} (finished {result['finished']})",
        f"- Machine: {cpu.get('model')} ({cpu.get('usable_cores')} usable of {cpu.get('logical_cores')} logical "
        f"cores; {' '.join(cpu.get('isa') or [])}), {env['os']}, Python {env['python']}, torch threads "
        f"{env['torch_threads']}; load average {result['load_avg_start']} at the start, {result['load_avg_end']} "
        "at the end (other work shares the cores: seconds are indicative)",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v),
        f"- Setup: random weights (`torch.manual_seed({result['seed']})`, one instance per model for both "
        f"exporters), batch {result['batch']}, the spec's input size, opset {result['opset']} asked; "
        "`edgeconv.export.export_onnx(..., exporter=E)` with its defaults (onnx.checker, onnxslim, FP32 check "
        "against PyTorch on 4 photos at relative error <= 1e-4). Seconds = the whole call.",
        "- Mapping: Conv/Gemm nodes of the written graph whose `onnxgraph.module_name(node.name)` is a module of the "
        "model (exists) / is the Conv or Linear module itself (owns). `meta` = the dynamo graph's "
        "`pkg.torch.onnx.name_scopes` metadata *before* onnxslim, matched to the written nodes by name (exists / "
        "owns). onnxslim drops node metadata (it keeps the model's only), so the written dynamo graphs carry none; "
        "where the ONNX version converter did bring the graph down to opset 17, the converter's C++ round trip "
        "has dropped it already (meta 0%), and the node names are the FX graph's (`node_conv2d_3`).",
        "",
        "## Summary",
        "",
        f"- Validated: TorchScript {ts['validated']}/{ts['run']}, dynamo {dy['validated']}/{dy['run']}; both "
        f"{s['both_validated']}. Dynamo only: {', '.join(s['dynamo_only']) or 'none'}; TorchScript only: "
        f"{', '.join(s['torchscript_only']) or 'none'}.",
        f"- Opset written (17 asked): TorchScript {ts['opsets']} ({ts['at_opset_17']} at 17); dynamo {dy['opsets']} "
        f"({dy['at_opset_17']} at 17).",
        f"- Export seconds: median ratio dynamo / TorchScript {s['median_seconds_ratio_dynamo_over_torchscript']} "
        f"over the {s['both_validated']} models both validate; totals {ts['seconds_total']} s vs "
        f"{dy['seconds_total']} s.",
        f"- Numerics: dynamo's max relative error is within 2x TorchScript's or <= 1e-6 for "
        f"{s['dynamo_rel_error_within_2x_or_1e-6']} of {s['both_validated']}; median ratio dynamo / TorchScript "
        f"{s['median_rel_error_ratio_dynamo_over_torchscript']}.",
        f"- Name mapping via `module_name(node.name)`: TorchScript {frac(ts['mapped_exists'], ts['weighted_nodes'])} "
        f"exist, {frac(ts['mapped_owns_weights'], ts['weighted_nodes'])} own; dynamo "
        f"{frac(dy['mapped_exists'], dy['weighted_nodes'])} exist. Dynamo metadata before onnxslim: "
        f"{frac(dy.get('metadata_before_slim_exists', 0), dy['weighted_nodes'])} exist, "
        f"{frac(dy.get('metadata_before_slim_owns_weights', 0), dy['weighted_nodes'])} own (a Conv with a folded "
        "BatchNorm carries the BatchNorm's scope); nodes of the written dynamo graphs with metadata: "
        f"{dy.get('written_nodes_with_metadata', 0)}.",
        "",
        "## Per model",
        "",
        "| model | input | TS | TS s | TS opset | TS nodes | TS rel err | TS map | dynamo | dyn s | dyn/TS | "
        "dyn opset | dyn nodes | dyn rel err | dyn map | dyn meta exists / owns |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_model: dict[str, dict[str, dict[str, Any]]] = {}
    for row in result["rows"]:
        by_model.setdefault(row["model"], {})[row["exporter"]] = row
    failures = []
    for name, pair in by_model.items():
        cells = [name, "x".join(str(v) for v in pair[next(iter(pair))].get("input_shape", []))]
        for exporter in COMPARED:
            row = pair.get(exporter)
            if row is None:
                cells += ["not run"] + ["-"] * (4 if exporter == "torchscript" else 6)
                continue
            mapping = row.get("name_mapping") or {}
            cells += [
                "ok" if row["ok"] else "**fail**",
                f"{row.get('seconds', 0):.1f}",
            ]
            if exporter == "dynamo":
                other = pair.get("torchscript")
                ratio = row["seconds"] / other["seconds"] if other and other.get("seconds") else None
                cells.append("-" if ratio is None else f"{ratio:.1f}")
            cells += [
                str(row.get("opset", "-")),
                str(row.get("nodes", "-")),
                _sci(row.get("max_rel_error")),
                _pct(mapping.get("exists_fraction")),
            ]
            if exporter == "dynamo":
                meta = row.get("metadata_mapping_before_slim") or {}
                cells.append(f"{_pct(meta.get('exists_fraction'))} / {_pct(meta.get('owns_weights_fraction'))}")
            if not row["ok"]:
                failures.append(f"- {name}, {exporter} ({row.get('seconds', 0):.1f} s): `{row['error']}`")
        lines.append("| " + " | ".join(cells) + " |")
    if failures:
        lines += ["", "## Failures (first line of the error)", ""] + failures
    lines += ["", "## Notes", "", NOTES.rstrip()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=None, help="comma-separated names or globs (default: the whole zoo)")
    parser.add_argument("--exporters", default=",".join(COMPARED), help="comma-separated, of " + ", ".join(COMPARED))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="results path without suffix (.md and .json)")
    parser.add_argument("--resume", action="store_true", help="keep the rows of --out's .json, run the other models")
    parser.add_argument("--render-only", action="store_true", help="rewrite --out's .md from its .json, run nothing")
    args = parser.parse_args(argv)
    out = Path(args.out)
    from edgeconv.bench import cpu_info
    from edgeconv.files import write_atomic

    if args.render_only:
        write_atomic(out.with_suffix(".md"), render(json.loads(out.with_suffix(".json").read_text())).encode())
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)

    import torch

    from edgeconv.zoo import create_model, get_spec, list_models

    exporters = [e.strip() for e in args.exporters.split(",") if e.strip()]
    unknown = [e for e in exporters if e not in COMPARED]
    if unknown:
        parser.error(f"unknown exporter(s) {unknown}; use {', '.join(COMPARED)}")
    names: list[str] = []
    for pattern in args.models.split(",") if args.models else [None]:
        pattern = pattern.strip() if pattern else None
        found = [pattern] if pattern in list_models() else list_models(pattern)  # an exact name: that model only
        if pattern and not found:
            parser.error(f"no zoo model matches {pattern!r}")
        names += [n for n in found if n not in names and not get_spec(n).is_clip]  # clips: no export stage yet
    command = "python bench/exporters.py" + "".join(f" {shlex.quote(a)}" for a in argv)
    rows: list[dict[str, Any]] = []
    if args.resume and out.with_suffix(".json").is_file():
        rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    done = {(r["model"], r["exporter"]) for r in rows}
    result: dict[str, Any] = {
        "command": command,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "batch": args.batch,
        "opset": args.opset,
        "seed": args.seed,
        "load_avg_start": load_avg(),
        "environment": {
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(),
            "cpu": cpu_info(),
            "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "versions": versions(
                ("edgeconv", "torch", "onnx", "onnxscript", "onnx-ir", "onnxslim", "onnxruntime", "numpy")
            ),  # fmt: skip
        },
    }

    def save() -> None:
        result["rows"] = rows
        result["summary"] = summarize(rows)
        result["load_avg_end"] = load_avg()
        result["finished"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        write_atomic(out.with_suffix(".json"), (json.dumps(result, indent=1, default=str) + "\n").encode())
        write_atomic(out.with_suffix(".md"), render(result).encode())

    with tempfile.TemporaryDirectory(prefix="edgeconv-exporters-") as name:
        tmp = Path(name)
        for index, model_name in enumerate(names, 1):
            todo = [e for e in exporters if (model_name, e) not in done]
            if not todo:
                continue
            log.info("[%d/%d] %s", index, len(names), model_name)
            spec = get_spec(model_name)
            try:
                torch.manual_seed(args.seed)
                model = create_model(model_name)
            except Exception as exc:  # a model that cannot be built is a row per exporter too
                for exporter in todo:
                    rows.append({"model": model_name, "exporter": exporter, "ok": False, "seconds": 0.0,
                                 "error": f"building the model: {type(exc).__name__}: {exc}"[:400]})  # fmt: skip
                save()
                continue
            for exporter in todo:
                try:
                    row = export_row(model, spec, exporter, args.batch, args.opset, tmp)
                except Exception as exc:  # export_row records export failures; this is anything around them
                    row = {"model": model_name, "exporter": exporter, "ok": False, "seconds": 0.0,
                           "error": f"{type(exc).__name__}: {exc}"[:400]}  # fmt: skip
                row["input_shape"] = [args.batch, *spec.input_size]
                rows.append(row)
            del model
            save()
    if not rows:
        save()
    print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
