"""Is INT8 3D convolution faster than FP32 on ONNX Runtime CPU? One conv per graph, side by side (issue 19).

Every case is one ``nn.Conv3d`` (or, for contrast, ``nn.Conv2d``) of the zoo's video networks at its real input size,
exported to ONNX (opset 17) and quantized by ONNX Runtime's ``quantize_static`` (QDQ, per-channel int8 weights, uint8
activations, MinMax on the case's own random input), then timed FP32 against INT8 on ORT CPU (default graph
optimizations, so ORT fuses DequantizeLinear -> Conv -> QuantizeLinear into its integer ``QLinearConv``), batch 1,
median of interleaved runs. The INT8 time includes quantizing the input and dequantizing the output, as a quantized
layer inside a network does not pay: for cheap convs the ratio overstates INT8's cost, for expensive ones it is the
conv. The check ``max |int8 - fp32| / max |fp32|`` shows the INT8 graph computes the same conv.

Run (about a minute on 2 cores, alone)::

    .venv/bin/python bench/int8_conv3d.py                     # -> bench/results/int8_conv3d.{md,json}
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

# (label, module, input shape): the zoo's 3D convs at their real sizes, and 2D convs for contrast.
CASES: list[tuple[str, nn.Module, tuple[int, ...]]] = [
    ("r3d_18 layer1 conv: 64 -> 64, 3x3x3", nn.Conv3d(64, 64, 3, padding=1), (1, 64, 16, 56, 56)),
    ("r3d_18 layer3 conv: 256 -> 256, 3x3x3", nn.Conv3d(256, 256, 3, padding=1), (1, 256, 4, 14, 14)),
    ("r2plus1d_18 temporal: 144 -> 64, 3x1x1", nn.Conv3d(144, 64, (3, 1, 1), padding=(1, 0, 0)), (1, 144, 16, 56, 56)),
    ("c3d conv2: 64 -> 128, 3x3x3", nn.Conv3d(64, 128, 3, padding=1), (1, 64, 16, 56, 56)),
    ("depthwise 3D: 64, 3x3x3", nn.Conv3d(64, 64, 3, padding=1, groups=64), (1, 64, 16, 28, 28)),
    ("r3d_18 stem: 3 -> 64, 3x7x7 s(1,2,2)", nn.Conv3d(3, 64, (3, 7, 7), (1, 2, 2), (1, 3, 3)), (1, 3, 16, 112, 112)),
    ("c3d conv1: 3 -> 64, 3x3x3", nn.Conv3d(3, 64, 3, padding=1), (1, 3, 16, 112, 112)),
    ("ji2013 hardwired: 1 -> 3, 1x3x3", nn.Conv3d(1, 3, (1, 3, 3), padding=(0, 1, 1)), (1, 1, 7, 60, 40)),
    ("ji2013 C2: 3 -> 6, 3x7x7, groups 3", nn.Conv3d(3, 6, (3, 7, 7), groups=3), (1, 3, 7, 60, 40)),
    ("ji2013 C4: 6 -> 18, 3x7x6, groups 6", nn.Conv3d(6, 18, (3, 7, 6), groups=6), (1, 6, 5, 27, 17)),
    ("2D contrast: 64 -> 64, 3x3", nn.Conv2d(64, 64, 3, padding=1), (1, 64, 56, 56)),
    ("2D contrast: stem 3 -> 32, 3x3 s2", nn.Conv2d(3, 32, 3, 2, 1), (1, 3, 224, 224)),
]


def measure(module: Any, shape: tuple[int, ...], folder: Path, runs: int) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    x = torch.randn(shape)
    fp32, int8 = folder / "fp32.onnx", folder / "int8.onnx"
    torch.onnx.export(module.eval(), (x,), str(fp32), input_names=["x"], dynamo=False, opset_version=17)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.data = iter([{"x": x.numpy()}])

        def get_next(self) -> dict[str, Any] | None:
            return next(self.data, None)

    quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)  # fmt: skip
    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (fp32, int8)]
    feed = {"x": x.numpy()}
    outputs = [s.run(None, feed)[0] for s in sessions]
    times: list[list[float]] = [[], []]
    for _ in range(3):
        for s in sessions:
            s.run(None, feed)
    for _ in range(runs):
        for i, s in enumerate(sessions):
            start = time.perf_counter()
            s.run(None, feed)
            times[i].append(time.perf_counter() - start)
    kernels = sorted({n.op_type for n in _optimized(int8).graph.node})
    fp32_ms, int8_ms = (1000 * statistics.median(t) for t in times)
    error = float(np.abs(outputs[1] - outputs[0]).max() / max(np.abs(outputs[0]).max(), 1e-12))
    return {"fp32_ms": fp32_ms, "int8_ms": int8_ms, "ratio": int8_ms / fp32_ms, "rel_error": error, "int8_ops": kernels}


def _optimized(path: Path) -> Any:
    """The graph ORT runs (after its fusions), to say which kernel the INT8 conv became."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED  # fusions, no layout changes
    options.optimized_model_filepath = str(path.with_suffix(".opt.onnx"))
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return onnx.load(options.optimized_model_filepath)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="interleaved timed runs per case")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "int8_conv3d"), help="path, no suffix")
    args = parser.parse_args(argv)
    from edgeconv.bench import environment, environment_line
    from edgeconv.files import write_atomic

    torch.manual_seed(0)  # the inputs; the modules were initialized at import, after torch's default seed
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgeconv-conv3d-") as name:
        for label, module, shape in CASES:
            row = {
                "case": label,
                "module": repr(module),
                "input": list(shape),
                **measure(module, shape, Path(name), args.runs),
            }
            print(
                f"{label}: FP32 {row['fp32_ms']:.2f} ms, INT8 {row['int8_ms']:.2f} ms ({row['ratio']:.2f}x)", flush=True
            )
            rows.append(row)
    command = "python bench/int8_conv3d.py" + "".join(f" {a}" for a in argv)
    env = environment_line(environment(), "machine")
    lines = [
        f"Command: `{command}`",
        "",
        "# INT8 against FP32 3D convolution on ONNX Runtime CPU, one conv per graph (issue 19)",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {env}",
        f"- Method: see the script's docstring; batch 1, median of {args.runs} interleaved runs after 3 warm-up runs.",
        "",
        "| case | input | FP32 ms | INT8 ms | INT8 / FP32 | INT8 kernel (ORT's fused graph) | max rel err |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        ops = ", ".join(o for o in r["int8_ops"] if o not in ("QuantizeLinear", "DequantizeLinear")) or "-"
        lines.append(
            f"| {r['case']} | {'x'.join(map(str, r['input']))} | {r['fp32_ms']:.2f} | {r['int8_ms']:.2f} | "
            f"{r['ratio']:.2f}x | {ops} | {r['rel_error']:.1e} |"
        )
    out = Path(args.out)
    write_atomic(out.with_suffix(".md"), ("\n".join(lines) + "\n").encode())
    write_atomic(
        out.with_suffix(".json"), (json.dumps({"command": command, "env": env, "rows": rows}, indent=1) + "\n").encode()
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
