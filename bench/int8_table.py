"""INT8 table of issue 5: fidelity against FP32 on held-out crops of real photos, plain PTQ beside edgeconv's INT8,
and INT8 vs FP32 latency on ONNX Runtime CPU (batch 1, interleaved in one process).

    python bench/int8_table.py                         # the full table -> bench/results/int8.md
    python bench/int8_table.py --models mobilenet_v2 --targets onnxruntime --ablations

Models without trained weights (resnet50, shufflenet_v2_x1_0, mobilenet_v3_large, repvgg_a0 here) get their
BatchNorm statistics re-estimated on crops of the *calibration* images (never the evaluation ones), so activations
have realistic ranges; their "agreement" measures INT8 fidelity to that FP32 network, not ImageNet accuracy.
Timings on a shared machine are indicative; accuracy/agreement figures do not depend on load.
"""

from __future__ import annotations

import argparse
import copy
import logging
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from edgeconv.quantize.calibration import Preprocessing, load_calibration_data, random_crops
from edgeconv.quantize.int8 import quantize_int8
from edgeconv.quantize.options import Int8Options
from edgeconv.quantize.qdq.fallback import measure_latency_ratio
from edgeconv.zoo import create_model, get_spec

logger = logging.getLogger("int8_table")

MODELS = ["mobilenet_v2", "efficientnet_lite0", "resnet50", "shufflenet_v2_x1_0", "mobilenet_v3_large", "repvgg_a0"]
REAL_WEIGHTS = {"mobilenet_v2", "efficientnet_lite0"}
ABLATIONS = {
    "no AdaRound (nearest rounding)": {"adaround": False},
    "no CLE (pairs and residual streams)": {"equalize": False},
    "CLE with ReLU6->ReLU": {"relu6": "relu"},
    "with bias correction": {"bias_correction": True},
    "no fallback": {"fallback": "none"},
    "no activation centring (tensorrt)": {"center_activations": False},
    "no identity split (RepVGG)": {"split_identity": False},
    "minmax": {"calib_method": "minmax"},
    "entropy": {"calib_method": "entropy"},
}


@torch.no_grad()
def reestimate_batchnorm(model: torch.nn.Module, samples: np.ndarray, batch_size: int = 16) -> None:
    """Replace BN running statistics by their cumulative average over ``samples`` (train-mode forward passes)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average
    model.train()
    for start in range(0, len(samples), batch_size):
        model(torch.from_numpy(samples[start : start + batch_size]))
    model.eval()


def build(name: str, bn_samples: np.ndarray | None) -> tuple[torch.nn.Module, str]:
    if name in REAL_WEIGHTS:
        return create_model(name, weights="imagenet"), "ImageNet weights"
    torch.manual_seed(0)  # the same random network in every run (rows measured before this line was added were not)
    model = create_model(name)
    assert bn_samples is not None
    reestimate_batchnorm(model, bn_samples)
    return model, "random weights, BN re-estimated on calibration photos"


def export_fp32(model: torch.nn.Module, path: Path, input_size: tuple[int, int, int]) -> None:
    try:
        from edgeconv.errors import ExportError
        from edgeconv.export import export_onnx  # the project's exporter, when present

        try:
            export_onnx(model, path, input_shape=(1, *input_size), opset=17, dynamic_batch=True)
        except ExportError as exc:  # some models trace shape-dependent padding: batch 1 then (slower evaluation)
            logger.warning("dynamic-batch export failed (%s); exporting with batch 1", str(exc)[:200])
            export_onnx(model, path, input_shape=(1, *input_size), opset=17)
        return
    except (ImportError, TypeError) as exc:
        logger.info("edgeconv.export not usable here (%s); torch.onnx.export", exc)
    torch.onnx.export(
        model,
        (torch.zeros(1, *input_size),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["output"],
    )


def fused(model: torch.nn.Module) -> torch.nn.Module:
    from edgeconv.fuse import fuse_model

    return fuse_model(model).model


def _pair(report: object) -> str:
    if report is None:
        return "(gate met, no fallback)"
    return f"{pct(report.top1_agreement)} / {pct(report.confident_agreement)}"  # type: ignore[attr-defined]


def pct(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{100 * x:.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--targets", default="onnxruntime,tensorrt")
    parser.add_argument("--calib-samples", type=int, default=128)
    parser.add_argument("--eval-samples", type=int, default=1000)
    parser.add_argument("--ablations", action="store_true", help="also run each improvement switched off/on")
    parser.add_argument("--ablation-targets", default="onnxruntime", help="targets the ablations run for")
    parser.add_argument("--ablations-matching", default="", help="only the ablations whose label contains this")
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "int8.md"))
    parser.add_argument("--append", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    torch.set_num_threads(2)

    lines: list[str] = []
    ablation_lines: list[str] = []
    for name in args.models.split(","):
        spec = get_spec(name)
        prep = Preprocessing.from_spec(spec)
        data = load_calibration_data(
            None, prep, samples=args.calib_samples, eval_samples=args.eval_samples, seed=0, method="percentile"
        )
        bn_samples = random_crops([im for _, im in data.split.calibration.images], 256, prep, seed=12345)
        model, weights = build(name, None if name in REAL_WEIGHTS else bn_samples)
        fp32_model = fused(model)
        with tempfile.TemporaryDirectory(prefix="int8-table-") as tmp:
            fp32 = Path(tmp) / f"{name}.onnx"
            export_fp32(fp32_model, fp32, spec.input_size)
            for target in args.targets.split(","):
                options = Int8Options(
                    target=target,
                    calib_samples=args.calib_samples,
                    eval_samples=args.eval_samples,
                    min_agreement=0.0,
                    force=True,
                )
                # The done-when thresholds, so that the automatic fallback engages below them.
                gate = (0.85, 0.995) if target == "onnxruntime" else (0.80, 0.99)
                options = replace(options, min_agreement=gate[0], min_confident_agreement=gate[1])
                out = Path(tmp) / f"{name}.{target}.int8.onnx"
                start = time.perf_counter()
                report = quantize_int8(fp32, out, spec, model, options, data=data, measure_baseline=True)
                elapsed = time.perf_counter() - start
                exact = target == "tensorrt"
                f32_ms, i8_ms, ratio = measure_latency_ratio(fp32, out, data.evaluation[:1], runs=args.latency_runs)
                fid, base = report.fidelity, report.baseline
                assert base is not None
                lines.append(
                    f"| {name} | {weights} | {target} | {pct(base.top1_agreement)} / {pct(base.confident_agreement)} "
                    f"| {base.mean_kl:.4f} | {_pair(report.before_fallback)} "
                    f"| {pct(fid.top1_agreement)} / {pct(fid.confident_agreement)} ({fid.confident_samples}) "
                    f"| {pct(fid.top5_overlap)} | {fid.mean_kl:.4f} | {', '.join(report.fallback_modules) or '-'} "
                    f"| {f32_ms:.1f} / {i8_ms:.1f} = {ratio:.2f}x{' (ORT fused s8s8, not TRT)' if exact else ''} "
                    f"| {elapsed:.0f}s |"
                )
                logger.info("%s %s: %s | plain %s", name, target, fid.summary(), base.summary())
                if report.before_fallback is not None:
                    logger.info("before fallback: %s", report.before_fallback.summary())
                gains = {layer.module: layer.fallback_gain for layer in report.layers if layer.fallback_gain}
                logger.info("high-precision fallback: mean KL removed (calibration crops): %s", gains)
                print(lines[-1], flush=True)
                worst = sorted(report.layers, key=lambda layer: layer.sqnr_db)[:3]
                logger.info(
                    "lowest-SQNR layers: %s",
                    ", ".join(f"{layer.module or layer.node} {layer.sqnr_db:.1f} dB" for layer in worst),
                )
                if args.ablations and target in args.ablation_targets.split(","):
                    for label, change in ABLATIONS.items():
                        if args.ablations_matching.lower() not in label.lower():
                            continue
                        ab = quantize_int8(
                            fp32, Path(tmp) / "ab.onnx", spec, model, replace(options, **change), data=data
                        )
                        ablation_lines.append(
                            f"| {name} | {target} | {label} | {_pair(ab.before_fallback)} | "
                            f"{pct(ab.fidelity.top1_agreement)} / {pct(ab.fidelity.confident_agreement)} | "
                            f"{ab.fidelity.mean_kl:.4f} | {', '.join(ab.fallback_modules) or '-'} |"
                        )
                        print(ablation_lines[-1], flush=True)
            if name.startswith("repvgg"):
                lines.extend(_repvgg_rows(name, model, spec, data, Path(tmp), args))

    header = [
        "| model | weights | target | plain PTQ agreement overall / confident | plain PTQ mean KL | "
        "all-INT8 before fallback | edgeconv INT8 overall / confident (n confident) | top-5 overlap | mean KL | "
        "kept in high precision | latency FP32 / INT8 ms (ratio) | quantize time |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = [
        f"\n## INT8 table ({stamp}, {platform.processor() or platform.machine()}, torch threads 2, ORT CPU)\n",
        f"{args.eval_samples} held-out random crops of the evaluation photos, {args.calib_samples} calibration "
        "crops of disjoint photos (calibration/README.md). Plain PTQ = ORT quantize_static QDQ, per-channel, "
        "MinMax, the target's types, nothing else. Agreement = top-1 agreement with the FP32 model; confident = "
        "where FP32's top-1 probability > 0.5. Random-weight rows measure fidelity, not accuracy. tensorrt rows' "
        "fidelity is the "
        "QDQ graph's exact arithmetic (ORT CPU, optimizations off); their latency column is ORT's fused s8s8 CPU "
        "kernels, which is not what TensorRT runs.\n",
        *header,
        *lines,
    ]
    if ablation_lines:
        text += [
            "\n### Ablations (each improvement switched off, one at a time)\n",
            "| model | target | change | all-INT8 before fallback | agreement overall / confident | mean KL | "
            "kept in high precision |",
            "|---|---|---|---|---|---|---|",
            *ablation_lines,
        ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    mode = "a" if args.append and out.exists() else "w"
    with out.open(mode) as f:
        if mode == "w":
            f.write("# INT8 fidelity and latency (bench/int8_table.py)\n")
        f.write("\n".join(text) + "\n")
    print(f"wrote {out}")


def _repvgg_rows(name: str, model: torch.nn.Module, spec, data, tmp: Path, args) -> list[str]:  # noqa: ANN001
    """RepVGG: INT8 of the multi-branch (train-form, BN folded per branch) graph vs the re-parameterized one:
    percentile calibration, nearest rounding, no equalization, no fallback (ORT quantizes the identity BNs too)."""
    from edgeconv.fuse import fold_batchnorm

    rows = []
    unfused = fold_batchnorm(copy.deepcopy(model))
    unfused = getattr(unfused, "model", unfused)
    path = tmp / f"{name}.branches.onnx"
    export_fp32(unfused, path, spec.input_size)
    options = Int8Options(
        target="onnxruntime",
        calib_samples=args.calib_samples,
        eval_samples=args.eval_samples,
        min_agreement=0.0,
        equalize=False,
        bias_correction=False,
        adaround=False,
        fallback="none",
    )
    report = quantize_int8(path, tmp / "branches.int8.onnx", spec, None, options, data=data)
    rows.append(
        f"| {name} (multi-branch form, plain) | random, BN re-estimated | onnxruntime | - | - | - | "
        f"{pct(report.fidelity.top1_agreement)} / {pct(report.fidelity.confident_agreement)} | "
        f"{pct(report.fidelity.top5_overlap)} | {report.fidelity.mean_kl:.4f} | - | - | - |"
    )
    return rows


if __name__ == "__main__":
    main()
