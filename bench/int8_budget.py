"""The activation error budget of INT8 graphs: each activation tensor's rounding taken out in turn (issue 17).

For each activation QuantizeLinear -> DequantizeLinear pair of an INT8 ONNX graph, the pair is replaced by a float
clip (Min, Max) to its range: the tensor keeps its clipping and loses its rounding. Each such graph, the one with
every activation's rounding taken out (only the weights left quantized) and the graph itself are scored against FP32
on the held-out crops of ``bench/int8_peers.py`` (``load_calibration_data(..., samples=128, eval_samples=1000,
seed=0)``): top-1 agreement, confident agreement, mean KL, RMS logit error, and the crops whose top-1 changes against
the graph itself. A variant has less rounding than the graph it comes from (whose other choices, AdaRound's and the
bias corrections, were fitted with that rounding in place, so its output is mostly, not always, closer to FP32); how
its measures move says which of them can tell two graphs apart on these crops.

Example (after ``edgeconv export mobilenet_v2 --weights imagenet --int8 --out /tmp/q`` and ``python
bench/int8_peers.py --skip-modelopt --skip-ort --latency-rounds 0 --keep /tmp/keep``)::

    python bench/int8_budget.py "edgeconv=/tmp/q/model_int8.onnx" "nncf defaults=/tmp/keep/nncf_defaults.onnx" \\
        --out bench/results/int8_budget.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def without_rounding(model: Any, tensors: set[str]) -> Any:
    """A copy of ``model`` whose activation Q/DQ pairs on ``tensors`` are ``max(min(x, high), low)``, their range."""
    import onnx
    from onnx import helper, numpy_helper

    from edgeconv.onnxgraph import Graph

    graph = Graph(onnx.ModelProto.FromString(model.SerializeToString()))
    clips: dict[int, list[Any]] = {}  # QuantizeLinear -> the Min, Max nodes in its place
    dropped: set[int] = set()  # its DequantizeLinear readers
    for node in graph.nodes:
        if node.op_type != "QuantizeLinear" or node.input[0] not in tensors:
            continue
        scale, zero = graph.array(node.input[1]).astype(np.float64), graph.array(node.input[2])
        info = np.iinfo(zero.dtype)
        low, high = (info.min - zero.astype(np.int64)) * scale, (info.max - zero.astype(np.int64)) * scale
        if scale.size > 1:  # per channel (NNCF's depthwise inputs): channels on axis 1 of an NCHW map
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if axis != 1:
                raise ValueError(f"{node.name}: per-channel activation on axis {axis}; only axis 1 is handled")
            low, high = low.reshape(-1, 1, 1), high.reshape(-1, 1, 1)
        out = node.output[0]
        for bound, value in (("_low", low), ("_high", high)):
            graph.model.graph.initializer.append(numpy_helper.from_array(np.asarray(value, np.float32), out + bound))
        clipped = out + "_clip"
        clips[id(node)] = [
            helper.make_node("Min", [node.input[0], out + "_high"], [out + "_min"]),
            helper.make_node("Max", [out + "_min", out + "_low"], [clipped]),
        ]
        for dq in graph.consumers.get(out, []):
            dropped.add(id(dq))
            for reader in graph.consumers.get(dq.output[0], []):
                reader.input[:] = [clipped if name == dq.output[0] else name for name in reader.input]
    nodes = [new for node in graph.nodes if id(node) not in dropped for new in clips.get(id(node), [node])]
    del graph.model.graph.node[:]
    graph.model.graph.node.extend(nodes)
    return graph.model


def activations(model: Any) -> list[str]:
    """The float tensors an activation QuantizeLinear quantizes (not initializers: those are weights), graph order."""
    from edgeconv.onnxgraph import Graph

    graph = Graph(model)
    return [n.input[0] for n in graph.nodes if n.op_type == "QuantizeLinear" and n.input[0] not in graph.initializers]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("graphs", nargs="+", help="NAME=PATH of INT8 ONNX graphs (split at the last '=')")
    parser.add_argument("--model", default="mobilenet_v2", help="an ImageNet classifier of the zoo")
    parser.add_argument("--fp32", default=None, help="FP32 ONNX (default: models/MODEL/model.onnx)")
    parser.add_argument("--eval-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the markdown here, and the figures beside it as .json")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    import onnx

    from edgeconv.bench import environment, environment_line
    from edgeconv.files import write_atomic
    from edgeconv.onnxgraph import run_onnx
    from edgeconv.quantize.calibration import Preprocessing, load_calibration_data
    from edgeconv.quantize.fidelity import compare_logits
    from edgeconv.zoo import get_spec

    graphs = []
    for item in args.graphs:
        label, sep, path = item.rpartition("=")
        if not sep or not label or not Path(path).is_file():
            parser.error(f"{item!r}: give NAME=PATH of an existing ONNX file, e.g. edgeconv=/tmp/q/model_int8.onnx")
        try:
            graphs.append((label, Path(path), onnx.load(path)))
        except Exception as exc:  # protobuf's DecodeError and friends: not an ONNX model
            parser.error(f"{path}: not an ONNX model ({type(exc).__name__}); pass the model_int8.onnx of an export")
    if args.eval_samples < 1:
        parser.error(f"--eval-samples {args.eval_samples}: give a positive count (the peers' table uses 1000)")
    fp32 = Path(args.fp32) if args.fp32 else ROOT / "models" / args.model / "model.onnx"
    if not fp32.is_file():
        parser.error(f"{fp32}: no FP32 ONNX; run edgeconv export {args.model} --weights imagenet, or pass --fp32")
    started, env = dt.datetime.now(dt.timezone.utc), environment()
    data = load_calibration_data(
        None,
        Preprocessing.from_spec(get_spec(args.model)),
        samples=8,  # the fewest it takes; only the held-out crops are scored
        eval_samples=args.eval_samples,
        seed=args.seed,
    )
    reference = run_onnx(fp32, data.evaluation)

    def score(label: str, proto: Any, base: np.ndarray | None = None) -> dict[str, Any]:
        logits = run_onnx(proto, data.evaluation)
        fidelity = compare_logits(reference, logits).as_dict()
        row = {
            "variant": label,
            "top1": fidelity["top1_agreement"],
            "confident": fidelity["confident_agreement"],
            "mean_kl": fidelity["mean_kl"],
            "rms": float(np.sqrt(((logits - reference) ** 2).mean())),
            "changed": None if base is None else int((logits.argmax(axis=1) != base).sum()),
            "top1_classes": logits.argmax(axis=1),
        }
        print(f"{label}: top-1 {row['top1']:.1%}, mean KL {row['mean_kl']:.4f}, RMS {row['rms']:.4f}", flush=True)
        return row

    command = "python bench/int8_budget.py" + "".join(f" {shlex.quote(a)}" for a in argv or sys.argv[1:])
    lines = [
        f"# Activation error budget ({args.model}, `bench/int8_budget.py`)",
        "",
        f"Command: `{command}` ({started:%Y-%m-%d %H:%M} UTC). {environment_line(env)}",
        "",
        f"{len(data.evaluation)} held-out crops (int8_peers' crops); FP32 = `{fp32.name}`. Each variant takes "
        "activation rounding out (a Q/DQ pair becomes a float clip to the same range): it has less rounding than "
        "the graph it comes from, whose other choices (AdaRound's, bias corrections) were fitted with it in place.",
        "",
    ]
    figures: dict[str, Any] = {"environment": env, "graphs": {}}
    for label, path, model in graphs:
        names = activations(model)
        base = score(label, model)
        every = score(
            "every activation's rounding taken out", without_rounding(model, set(names)), base["top1_classes"]
        )
        rows = [score(name, without_rounding(model, {name}), base["top1_classes"]) for name in names]
        top1 = np.array([r["top1"] for r in rows])
        kl_removed = np.array([base["mean_kl"] - r["mean_kl"] for r in rows])
        corr = float(np.corrcoef(kl_removed, top1 - base["top1"])[0, 1])
        lines += [
            f"## {label} (`{path.name}`, {len(names)} quantized activation tensors)",
            "",
            f"Over the {len(rows)} single-tensor variants: top-1 from {top1.min():.1%} to {top1.max():.1%} (median "
            f"{np.median(top1):.1%}; the graph {base['top1']:.1%}), {int((top1 < base['top1']).sum())} of them below "
            f"the graph; mean KL removed from {kl_removed.min():+.4f} to {kl_removed.max():+.4f}; correlation of KL "
            f"removed with top-1 gained {corr:+.2f}.",
            "",
            "| variant | top-1 | confident | mean KL | RMS logit error | top-1 changed vs the graph |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for row in [base, every, *sorted(rows, key=lambda r: r["mean_kl"])]:
            changed = "-" if row["changed"] is None else str(row["changed"])
            lines.append(
                f"| {row['variant']} | {row['top1']:.1%} | {row['confident']:.1%} | {row['mean_kl']:.4f} | "
                f"{row['rms']:.4f} | {changed} |"
            )
            del row["top1_classes"]
        lines.append("")
        figures["graphs"][label] = {"path": str(path), "graph": base, "every": every, "tensors": rows}
    text = "\n".join(lines)
    print(text)
    if args.out:
        out = Path(args.out)
        figures["command"] = command
        write_atomic(out, text.encode())
        write_atomic(out.with_suffix(".json"), json.dumps(figures, indent=1).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
