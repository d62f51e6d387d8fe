"""Detectors on ONNX Runtime CPU: latency of both export forms at two input sizes, and where the time goes.

For each detector (seeded random weights, woken: ``edgeconv.zoo.detection.wake``) and each shorter side: the ONNX
Runtime form (the whole detector, photo at its own size) and the TensorRT form (fixed input, here run on ONNX
Runtime), timed on one real photo (scikit-image's ``coffee``, 400x600) at batch 1, interleaved, and profiled with ONNX
Runtime's profiler: each node's kernel time summed by class -- conv / fc (Conv, Gemm, MatMul), NMS
(NonMaxSuppression), RoI (RoiAlign, MaxRoiPool), top-k / gather / scatter (selecting boxes) and other -- so the table
says how much of a detector's time is NMS and RoI work rather than convolution.

    python bench/detection_bench.py --out bench/results/detection

writes ``detection.md`` and ``detection.json`` with the environment (CPU, versions). Timings are compared only within
one run on one machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from edgeconv.bench import environment, environment_line
from edgeconv.detection import export_detector, export_fixed_detector, photo_tensor
from edgeconv.export import validation_images
from edgeconv.zoo import create_model

# (model, shorter sides): each detector at its own size and one other
CASES = (
    ("fasterrcnn_mobilenet_v3_large_320_fpn", (320, 480)),
    ("fasterrcnn_mobilenet_v3_large_fpn", (480, 800)),
    ("fasterrcnn_resnet50_fpn", (480, 800)),
    ("fasterrcnn_zf", (400, 600)),
    ("fasterrcnn_vgg16", (400, 600)),
)
CLASSES = {
    "conv / fc": {"Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul", "NhwcFusedConv"},
    "NMS": {"NonMaxSuppression"},
    "RoI pooling": {"RoiAlign", "MaxRoiPool"},
    "top-k / gather / scatter": {"TopK", "Gather", "GatherElements", "GatherND", "ScatterElements", "ScatterND",
                                 "NonZero", "Compress"},
}  # fmt: skip


def op_class(op_type: str) -> str:
    return next((name for name, ops in CLASSES.items() if op_type in ops), "other")


def session(path: Path, *, profile: bool = False) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 2
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = str(path.with_suffix(""))
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def breakdown(path: Path, feeds: dict[str, np.ndarray], runs: int) -> dict[str, float]:
    """Mean kernel milliseconds per run by op class, from ONNX Runtime's profiler (the first, warm-up run dropped)."""
    profiled = session(path, profile=True)
    profiled.run(None, feeds)
    for _ in range(runs):
        profiled.run(None, feeds)
    trace = json.loads(Path(profiled.end_profiling()).read_text())
    per_run: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    run_index = -1
    for event in trace:
        if event.get("name") == "model_run":
            run_index += 1
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_run[run_index][op_class(event["args"]["op_name"])] += event["dur"] / 1000
    # A run's kernel events come before its model_run event: index -1 is the warm-up run.
    runs_seen = [per_run[i] for i in sorted(per_run) if i >= 0]
    return {name: statistics.fmean(r.get(name, 0.0) for r in runs_seen) for name in [*CLASSES, "other"]}


def latency(path: Path, feeds: dict[str, np.ndarray], runs: int) -> float:
    runner = session(path)
    runner.run(None, feeds)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        runner.run(None, feeds)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def resize(photo: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(photo).resize(size[::-1], Image.BILINEAR))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/detection"))
    parser.add_argument("--runs", type=int, default=10, help="timed runs per row (median), and profiled runs")
    parser.add_argument("--models", nargs="*", default=[m for m, _ in CASES])
    args = parser.parse_args()
    torch.set_num_threads(2)
    photo = validation_images(["coffee"])[0]  # 400 x 600
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, sides in CASES:
            if name not in args.models:
                continue
            for side in sides:
                torch.manual_seed(0)
                model = create_model(name, min_size=side, max_size=round(side * 5 / 3))
                detections = int(model.roi_heads.detections_per_img)
                resized = model.resized_size(photo_tensor(photo))
                forms = {
                    "onnxruntime": (export_detector(model, Path(tmp) / f"{name}-{side}.onnx", (side, side)), photo),
                    "tensorrt": (
                        export_fixed_detector(model, Path(tmp) / f"{name}-{side}-fixed.onnx", resized),
                        resize(photo, resized),
                    ),
                }
                for form, (path, image) in forms.items():
                    feeds = {"image": photo_tensor(image).numpy()}
                    out = session(path).run(None, feeds)
                    found = int(out[3][0]) if form == "tensorrt" else len(out[1])
                    row = {
                        "model": name,
                        "form": form,
                        "input": f"{image.shape[0]}x{image.shape[1]}",
                        "resized": f"{resized[0]}x{resized[1]}",
                        "proposals": int(model.rpn.post_nms_top_n()),
                        "detections": found,
                        "cap": detections,
                        "latency_ms": latency(path, feeds, args.runs),
                        "kernel_ms": breakdown(path, feeds, args.runs),
                    }
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr)
    env = environment()
    command = "python bench/detection_bench.py " + " ".join(sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps({"command": command, "environment": env, "rows": rows}, indent=1)
    )
    classes = [*CLASSES, "other"]
    lines = [
        "# Detectors on ONNX Runtime CPU: both forms, two sizes, where the time goes",
        "",
        f"`{command}`",
        "",
        environment_line(env),
        "",
        "Batch 1, seeded random weights (woken), one photo (coffee, 400x600), median of the timed runs. `input`: what "
        "the graph takes (the ONNX Runtime form: the photo; the TensorRT form: the photo resized to its fixed size); "
        "`resized`: the detector's inner size. Kernel time by class from ONNX Runtime's profiler (mean per run), "
        "in ms and as a share of the kernel total.",
        "",
        "| model | form | input | resized | proposals | detections | latency ms | " + " | ".join(classes) + " |",
        "|---|---|---|---|---:|---:|---:|" + "---:|" * len(classes),
    ]
    for row in rows:
        total = sum(row["kernel_ms"].values()) or 1.0
        cells = [f"{row['kernel_ms'][c]:.1f} ({row['kernel_ms'][c] / total:.0%})" for c in classes]
        lines.append(
            f"| {row['model']} | {row['form']} | {row['input']} | {row['resized']} | {row['proposals']} | "
            f"{row['detections']} / {row['cap']} | {row['latency_ms']:.1f} | " + " | ".join(cells) + " |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
