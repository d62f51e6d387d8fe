"""Deformable convolution across runtimes: which ones execute ONNX DeformConv, and what its exact decomposition
(``--deform-conv grid-sample``: GridSample + Conv, opset 16) costs where it does not (issue 18).

    python bench/deform_conv.py        # ~2 min on 2 cores -> bench/results/deform_conv.md

Model: ``deform_resnet50`` (13 deformable 3x3 convs in conv3-conv5, the zoo's random init: offsets of about a pixel
in conv3 growing to tens of pixels in conv5), BatchNorm folded, batch 1, 224x224, exported twice with
``edgeconv.export.export_onnx``: native (ONNX DeformConv, opset 19) and decomposed (opset 17). Inputs: the four
validation photos. Each runtime gets 2 threads; latency is the median of ``--runs`` runs after 5 warm-up runs, the
variants alternated in one process; OpenVINO runs at f32 inference precision (its CPU default on bf16 hardware is
bf16). Errors: max |out - PyTorch| / max |PyTorch| over the photos, PyTorch being torchvision's own deform_conv2d.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def _median_ms(runners: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in runners}
    for i in range(runs + 5):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            if i >= 5:
                times[name].append(time.perf_counter() - start)
    return {name: 1000 * float(np.median(t)) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "deform_conv.md"))
    args = parser.parse_args()
    torch.set_num_threads(2)

    import onnx
    import onnxruntime as ort

    from edgeconv.export import DEFORM_CONV_OPSET, export_onnx, validation_batch
    from edgeconv.fuse import fuse_model
    from edgeconv.profile import profile_model
    from edgeconv.zoo import create_model
    from edgeconv.zoo.deform import DeformConv2d

    print("exporting deform_resnet50 twice (native, grid-sample) and checking both ...", file=sys.stderr, flush=True)
    torch.manual_seed(0)
    model = create_model("deform_resnet50")
    fused = fuse_model(model).model
    photos = validation_batch((3, 224, 224))
    with torch.inference_mode():
        reference = model(torch.from_numpy(photos)).numpy()
    x = photos[:1]
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="deform-") as tmp:
        native = Path(tmp) / "native.onnx"
        export_onnx(fused, native, (1, 3, 224, 224), opset=DEFORM_CONV_OPSET, reference=model)
        decomposed_model = fuse_model(model).model
        for module in decomposed_model.modules():
            if isinstance(module, DeformConv2d):
                module.grid_sample = True
        decomposed = Path(tmp) / "grid_sample.onnx"
        export_onnx(decomposed_model, decomposed, (1, 3, 224, 224), reference=model)
        ops = {
            name: sorted({n.op_type for n in onnx.load(str(path)).graph.node} & {"DeformConv", "GridSample"})
            for name, path in (("native", native), ("grid-sample", decomposed))
        }
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        sessions = {
            name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            for name, path in (("native", native), ("grid-sample", decomposed))
        }
        runners: dict[str, Callable[[], object]] = {}
        outputs: dict[str, np.ndarray] = {}
        for name, sess in sessions.items():
            runners[f"ONNX Runtime, {name}"] = lambda sess=sess: sess.run(None, {"input": x})
            outputs[f"ONNX Runtime, {name}"] = np.concatenate([sess.run(None, {"input": p[None]})[0] for p in photos])
        with torch.inference_mode():
            runners["PyTorch (torchvision op)"] = lambda: fused(torch.from_numpy(x))
            outputs["PyTorch (torchvision op)"] = fused(torch.from_numpy(photos)).numpy()
            decomposed_model.eval()
            runners["PyTorch, grid-sample"] = lambda: decomposed_model(torch.from_numpy(x))
            outputs["PyTorch, grid-sample"] = decomposed_model(torch.from_numpy(photos)).numpy()
        openvino_native = "not installed"
        try:
            import openvino as ov

            core = ov.Core()
            try:
                core.read_model(str(native))
                openvino_native = "reads it"
            except Exception as exc:  # OpenVINO raises its own error types
                lines = [line.strip() for line in str(exc).splitlines() if "DeformConv" in line] or [str(exc)]
                openvino_native = "refuses it: " + lines[0][:160]
            compiled = core.compile_model(
                core.read_model(str(decomposed)), "CPU", {"INFERENCE_NUM_THREADS": 2, "INFERENCE_PRECISION_HINT": "f32"}
            )
            request = compiled.create_infer_request()
            runners["OpenVINO, grid-sample"] = lambda: request.infer({0: x})
            outputs["OpenVINO, grid-sample"] = np.concatenate(
                [next(iter(request.infer({0: p[None]}).values())) for p in photos]
            )
            openvino_version = ov.get_version()
        except ImportError:
            openvino_version = "not installed"
        print(f"timing {len(runners)} runtimes x {args.runs} runs ...", file=sys.stderr, flush=True)
        latency = _median_ms(runners, args.runs)
    base = latency["ONNX Runtime, native"]
    scale = float(np.abs(reference).max())
    for name, ms in latency.items():
        error = float(np.abs(outputs[name] - reference).max()) / scale
        same = float((outputs[name].argmax(1) == reference.argmax(1)).mean())
        rows.append(f"| {name} | {ms:.1f} | {ms / base:.2f} | {error:.1e} | {same:.0%} |")
    profile = profile_model("deform_resnet50")
    deform_macs = sum(r.macs for r in profile.layers if r.op_type == "conv_deform")
    sampling = sum(r.other_ops for r in profile.layers if r.op_type == "conv_deform")
    from edgeconv.bench import environment, environment_line

    text = [
        "# Deformable convolution: runtimes and the exact decomposition (bench/deform_conv.py)\n",
        f"Command: `python bench/deform_conv.py --runs {args.runs}`\n",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {environment_line(environment(), 'machine')}"
        f"; Python {platform.python_version()}, OpenVINO {openvino_version}",
        f"- deform_resnet50, 1x3x224x224, BatchNorm folded; ops written: native {ops['native']}, grid-sample "
        f"{ops['grid-sample']}; OpenVINO on the native file: {openvino_native}",
        f"- Profile (edgeconv profile deform_resnet50): {profile.macs / 1e9:.2f} G mult-adds, of which the 13 "
        f"deformable convs {deform_macs / 1e9:.2f} G; their bilinear sampling and bias {sampling / 1e6:.1f} M "
        "ops (counted apart, in other ops)",
        "",
        "| runtime, form | latency ms (median) | vs ONNX Runtime native | max rel error vs PyTorch | top-1 same |",
        "|---|---:|---:|---:|---:|",
        *rows,
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(text) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
