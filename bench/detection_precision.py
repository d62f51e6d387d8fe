"""Detectors in FP32, FP16 and INT8 (issue 19): box fidelity and ONNX Runtime CPU latency, beside plain ORT PTQ.

For each detector and form (``onnxruntime``: the whole detector at any size; ``tensorrt``: the fixed-size graph):

- FP32: ``model.onnx`` as ``edgeconv export`` writes it;
- FP16 / INT8: ``edgeconv.detector_precision`` on the BatchNorm-folded export (network in low precision, box work in
  float32; INT8 calibrated with edgeconv's defaults: ``--calib-method`` mse, 32 calibration samples);
- the peer a user would reach for: ONNX Runtime's ``quantize_static`` with its defaults on the whole graph (QDQ,
  uint8 activations / int8 weights, MinMax), on the same calibration samples.

Fidelity, on 16 held-out samples (the ``calibration/eval`` photos, whole and cropped): the F1 of each precision's boxes
against the FP32 graph's (same class, IoU >= 0.5), and the share of samples that pass the FP32 export's own
box-for-box check against the FP32 graph (every box matched with IoU >= 0.99 and score within 1e-3, no extra box,
``edgeconv.boxes.compare_detections``). The detectors are seeded random networks (no detection checkpoint can be
installed offline; two attempts to train one on CPU here, from scratch and on the ImageNet MobileNetV2 trunk, reached
mAP@0.5 0.06 in 14 minutes and were dropped), so F1 says mostly how much such a network amplifies rounding.

Latency: batch 1 on ONNX Runtime CPU, median of ``--runs`` interleaved rounds, for the onnxruntime form (ORT CPU is
not the TensorRT form's runtime).

    python bench/detection_precision.py --out bench/results/detection_precision

writes ``detection_precision.md`` and ``.json`` with the environment. Timings are compared only within one run.
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

import numpy as np
import torch
from PIL import Image

from edgeconv.bench import environment, environment_line
from edgeconv.boxes import compare_detections, f1_score
from edgeconv.detection import export_detector, export_fixed_detector, photo_tensor, run_onnx_detector
from edgeconv.detector_precision import (
    DETECTOR_CALIB_SAMPLES,
    detector_int8_options,
    detector_samples,
    half_network,
    quantize_detector,
)
from edgeconv.export import convert_fp16
from edgeconv.files import write_atomic
from edgeconv.fuse.fold import fold_batchnorm
from edgeconv.onnxgraph import session
from edgeconv.quantize.calibration import CalibrationReader, split_calibration_folder
from edgeconv.zoo import create_model

PRECISIONS = ("fp32", "fp16", "int8", "ort_ptq")
LABELS = {
    "fp32": "FP32 (model.onnx)",
    "fp16": "edgeconv FP16 (network fp16, box work fp32)",
    "int8": "edgeconv INT8 (network QDQ, box work fp32)",
    "ort_ptq": "ORT quantize_static defaults (whole graph)",
}


def build(name: str) -> Any:
    """The zoo detector as ``edgeconv export`` builds it (seed 0, woken)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return create_model(name)


def ort_ptq(fp32: Path, out: Path, calibration: list[np.ndarray]) -> Path:
    """ONNX Runtime's ``quantize_static`` with its defaults (QDQ), every node it knows, MinMax."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    quantize_static(str(fp32), str(out), CalibrationReader(calibration, "image"), quant_format=QuantFormat.QDQ)
    return out


def latency(paths: dict[str, Path], feed: np.ndarray, runs: int) -> dict[str, float]:
    """Median ms per precision, rounds interleaved across precisions."""
    runners = {p: session(path, threads=2) for p, path in paths.items()}
    for runner in runners.values():
        runner.run(None, {"image": feed})
    samples: dict[str, list[float]] = {p: [] for p in runners}
    for _ in range(runs):
        for p, runner in runners.items():
            start = time.perf_counter()
            runner.run(None, {"image": feed})
            samples[p].append((time.perf_counter() - start) * 1000)
    return {p: statistics.median(v) for p, v in samples.items()}


def measure(name: str, form: str, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    model = build(name)
    fixed = form == "tensorrt"
    spec_size = (320, 320)
    fixed_size = model.resized_size(torch.zeros(1, 3, 400, 600)) if fixed else None
    export = export_fixed_detector if fixed else export_detector
    size = fixed_size or spec_size
    paths = {"fp32": export(model, tmp / f"{name}-{form}.onnx", size)}
    fused = export(fold_batchnorm(model), tmp / f"{name}-{form}-fused.onnx", size)
    started = time.perf_counter()
    paths["fp16"] = convert_fp16(fused, tmp / f"{name}-{form}-fp16.onnx", half=half_network)
    seconds = {"fp16": time.perf_counter() - started}
    started = time.perf_counter()
    options = detector_int8_options(target=form, force=True)
    entry = quantize_detector(
        fused, paths["fp32"], tmp / f"{name}-{form}-int8.onnx", options, fixed=fixed, size=fixed_size
    )
    paths["int8"] = tmp / f"{name}-{form}-int8.onnx"
    seconds["int8"] = time.perf_counter() - started  # its own held-out check included
    split = split_calibration_folder(None, method=options.calib_method)  # the photos quantize_detector read
    calibration = detector_samples([im for _, im in split.calibration.images], DETECTOR_CALIB_SAMPLES, size=fixed_size)
    started = time.perf_counter()
    paths["ort_ptq"] = ort_ptq(paths["fp32"], tmp / f"{name}-{form}-ortptq.onnx", calibration)
    seconds["ort_ptq"] = time.perf_counter() - started
    inputs = detector_samples([im for _, im in split.evaluation.images], args.eval_samples, size=fixed_size, seed=1)
    expected = [run_onnx_detector(session(paths["fp32"]), x, fixed) for x in inputs]  # once, for every precision
    cap = int(model.roi_heads.detections_per_img)
    row: dict[str, Any] = {"model": name, "form": form, "input": list(size) if fixed else "any",
                           "samples": len(inputs), "seconds": seconds, "precisions": {}}  # fmt: skip
    for precision, path in paths.items():
        runner = session(path, exact=fixed and precision in ("int8", "ort_ptq"))
        found = [run_onnx_detector(runner, x, fixed) for x in inputs]
        scores = [f1_score(ref, got) for ref, got in zip(expected, found, strict=True)]
        strict = [bool(compare_detections(ref, got, cap=cap)) for ref, got in zip(expected, found, strict=True)]
        figures: dict[str, Any] = {"mean_f1": float(np.mean(scores)), "min_f1": float(np.min(scores)),
                                   "box_for_box": float(np.mean(strict)), "bytes": path.stat().st_size}  # fmt: skip
        row["precisions"][precision] = figures
    row["int8_quantized_nodes"] = entry["quantized_nodes"]
    if not fixed:
        feed = photo_tensor(np.asarray(Image.open("calibration/eval/coffee.jpg"))).numpy()
        for precision, ms in latency(paths, feed, args.runs).items():
            row["precisions"][precision]["latency_ms"] = ms
    print(json.dumps(row), file=sys.stderr)
    return row


def render(command: str, env: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [
        "# Detectors in FP32, FP16 and INT8: box fidelity and ORT CPU latency (issue 19)",
        "",
        f"`{command}`",
        "",
        environment_line(env),
        "",
        "Seeded random detectors (woken; no detection checkpoint is installable offline). F1: boxes against the FP32 "
        f"graph's boxes (same class, IoU >= 0.5), mean (min) over {rows[0]['samples']} held-out samples of the "
        "`calibration/eval` photos, whole and cropped. Box for box: the share of "
        "samples passing the FP32 export's check against the FP32 graph (every box matched, IoU >= 0.99, score within "
        "1e-3, no extra box). Latency: batch 1, ORT CPU, "
        "2 threads, median of interleaved rounds (onnxruntime form only; the tensorrt form's INT8 is scored as "
        "written, ORT graph optimizations off). Seconds: making the file (INT8: calibration, quantization and its "
        "held-out gate).",
        "",
        "| model | form | precision | F1 vs FP32 mean (min) | box for box | ORT CPU ms (x FP32) | MB | seconds |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        base = row["precisions"]["fp32"].get("latency_ms")
        for precision in PRECISIONS:
            figures = row["precisions"][precision]
            ms = figures.get("latency_ms")
            speed = f"{ms:.1f} ({ms / base:.2f}x)" if ms is not None and base else "-"
            took = row["seconds"].get(precision)
            lines.append(
                f"| {row['model']} | {row['form']} | {LABELS[precision]} | {figures['mean_f1']:.3f} "
                f"({figures['min_f1']:.2f}) | {figures['box_for_box']:.0%} | {speed} | {figures['bytes'] / 1e6:.1f} | "
                f"{'-' if took is None else f'{took:.1f}'} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/detection_precision"))
    parser.add_argument(
        "--models", nargs="*", default=["fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_mobilenet_v3_large_fpn"]
    )
    parser.add_argument("--forms", nargs="*", default=["onnxruntime", "tensorrt"])
    parser.add_argument("--runs", type=int, default=20, help="timed rounds per precision (median)")
    parser.add_argument("--eval-samples", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            for form in args.forms:
                rows.append(measure(name, form, Path(tmp), args))
    env = environment()
    command = "python bench/detection_precision.py " + " ".join(sys.argv[1:])
    write_atomic(args.out.with_suffix(".json"), json.dumps({"command": command, "environment": env, "rows": rows},
                                                            indent=1).encode())  # fmt: skip
    text = render(command, env, rows)
    write_atomic(args.out.with_suffix(".md"), text.encode())
    print(text)


if __name__ == "__main__":
    main()
