"""ONNX's checker, shape inference and version converter on the whole model vs on its structure only.

``edgeconv.export`` runs each of these on every export (opset 18 -> 17 for dynamo's graph, the full check, strict
shape inference, the check of the simplified and of the FP16 graph). Each is a C++ call that serializes the whole
``ModelProto`` and parses it again, weights included, though none of them reads a weight's values.
``onnxgraph.apply_to_structure`` runs them on the model with its large initializers as typed graph inputs and puts
the result back around the model's own weights. For each model (random weights, ``torch.manual_seed(0)``, dynamo
at opset 18, the spec's input size) this times, in one process, version conversion to 17
(``export.convert_version``) + ``check_model(full_check)``
+ ``infer_shapes(strict)`` both ways, best of ``--repeat``, and checks the two results are the same graph: nodes,
value_info, inputs, opsets and every initializer equal.

Run::

    .venv/bin/python bench/structure_passes.py    # about 3 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

MODELS = ("vgg16", "dilation8", "resnet50", "mobilenet_v2")


def passes(model: Any) -> Any:
    import onnx

    from edgeconv.export import convert_version

    converted = convert_version(model, 17)
    onnx.checker.check_model(converted, full_check=True)
    return onnx.shape_inference.infer_shapes(converted, strict_mode=True)


def same_graph(a: Any, b: Any) -> bool:
    weights = {t.name: t for t in a.graph.initializer}
    return (
        a.graph.node == b.graph.node
        and a.graph.value_info == b.graph.value_info
        and a.graph.input == b.graph.input
        and a.opset_import == b.opset_import
        and weights == {t.name: t for t in b.graph.initializer}
    )


def measure(name: str, repeat: int) -> dict[str, Any]:
    import onnx
    import torch

    from edgeconv.onnxgraph import apply_to_structure
    from edgeconv.zoo import create_model, get_spec

    spec = get_spec(name)
    torch.manual_seed(0)
    program = torch.onnx.export(
        create_model(name).eval(), (torch.zeros(1, *spec.input_size),), dynamo=True, opset_version=18, verbose=False
    )
    assert program is not None
    data = program.model_proto.SerializeToString()
    whole = light = None
    times: dict[str, list[float]] = {"whole": [], "structure": []}
    for _ in range(repeat):
        model = onnx.load_from_string(data)
        start = time.perf_counter()
        whole = passes(model)
        times["whole"].append(time.perf_counter() - start)
        model = onnx.load_from_string(data)
        start = time.perf_counter()
        light = apply_to_structure(model, passes)
        times["structure"].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in times.items()}
    return {
        "model": name,
        "input": "x".join(map(str, (1, *spec.input_size))),
        "megabytes": round(len(data) / 1e6, 1),
        "nodes": len(whole.graph.node) if whole is not None else 0,
        "whole_s": round(best["whole"], 3),
        "structure_s": round(best["structure"], 3),
        "ratio": round(best["whole"] / best["structure"], 1),
        "same_graph": bool(whole is not None and light is not None and same_graph(whole, light)),
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        f"Command: `{result['command']}`",
        "",
        "# ONNX's structure passes on the whole model vs without its weights (`onnxgraph.apply_to_structure`)",
        "",
        f"- Date: {result['date']}; {result['environment']}",
        "- Setup: random weights (`torch.manual_seed(0)`), dynamo export at opset 18, the spec's input size; timed: "
        "`export.convert_version(m, 17)` + `checker.check_model(full_check=True)` + "
        f"`shape_inference.infer_shapes(strict_mode=True)`, best of {result['repeat']}, both ways in one process. "
        "`same graph`: nodes, value_info, inputs, opsets and all initializers equal between the two results.",
        "",
        "| model | input | MB | nodes | whole model s | structure only s | ratio | same graph |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['model']} | {r['input']} | {r['megabytes']} | {r['nodes']} | {r['whole_s']} | {r['structure_s']} "
            f"| {r['ratio']}x | {'yes' if r['same_graph'] else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated zoo names")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "structure_passes"), help="path, no suffix")
    args = parser.parse_args(argv)

    from edgeconv.bench import environment, environment_line
    from edgeconv.files import write_atomic

    result: dict[str, Any] = {
        "command": "python bench/structure_passes.py" + "".join(f" {shlex.quote(a)}" for a in argv),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "environment": environment_line(environment(), "machine"),
        "repeat": args.repeat,
        "rows": [measure(name.strip(), args.repeat) for name in args.models.split(",") if name.strip()],
    }
    out = Path(args.out)
    write_atomic(out.with_suffix(".json"), (json.dumps(result, indent=1) + "\n").encode())
    write_atomic(out.with_suffix(".md"), render(result).encode())
    print(render(result))
    return 0 if all(r["same_graph"] for r in result["rows"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
