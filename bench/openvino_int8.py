"""edgeconv's INT8 artifact on OpenVINO beside NNCF's post-training INT8 (the OpenVINO user's own quantizer), with
OpenVINO's FP32 and default precision and ONNX Runtime beside them: latency and fidelity in one run.

    python bench/openvino_int8.py                       # mobilenet_v2 (ImageNet) -> bench/results/openvino_int8.md
    python bench/openvino_int8.py --model models/mobilenet_v2 --threads 2

Needs an artifact with an INT8 file (`edgeconv export mobilenet_v2 --weights imagenet --int8`) and `pip install
openvino nncf`. NNCF quantizes the artifact's FP32 ONNX with its defaults (``nncf.quantize(model, dataset)``) on the
same calibration crops edgeconv's INT8 export uses (calibration/calib, 128 crops, seed 0); both INT8 models are
scored on the same held-out crops (calibration/eval, never used to calibrate) against the FP32 ONNX on ONNX Runtime.
All rows are timed interleaved in one process (edgeconv.bench.measure, which lets each engine's spinning threads park
before the next engine runs), batch 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import numpy as np  # noqa: E402

from edgeconv.backends.artifacts import resolve_target  # noqa: E402
from edgeconv.backends.onnxruntime import OnnxRuntimeRunner  # noqa: E402
from edgeconv.backends.openvino import OpenVINORunner  # noqa: E402
from edgeconv.bench import BenchCase, Gate, environment, fidelity_check, measure, target_reference  # noqa: E402
from edgeconv.files import write_atomic  # noqa: E402

log = logging.getLogger("openvino_int8")


def nncf_int8(onnx_path: Path, calibration: np.ndarray, out_dir: Path) -> tuple[Path, float]:
    """NNCF post-training quantization of the FP32 ONNX (read by OpenVINO) with its defaults; returns the IR path and
    the seconds it took."""
    import nncf
    import openvino as ov

    start = time.perf_counter()
    model = ov.Core().read_model(str(onnx_path))
    dataset = nncf.Dataset(list(calibration), lambda sample: sample[None])
    quantized = nncf.quantize(model, dataset)
    seconds = time.perf_counter() - start
    path = out_dir / "nncf_int8.xml"
    ov.save_model(quantized, str(path))
    return path, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models" / "mobilenet_v2"), help="artifact folder with INT8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--block", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--crops", type=int, default=300, help="held-out crops for fidelity (plus 4 export photos)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "openvino_int8.md"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)

    from edgeconv.quantize.calibration import Preprocessing, load_calibration_data
    from edgeconv.zoo import get_spec

    target = resolve_target(args.model)
    if "int8" not in target.onnx or "fp32" not in target.onnx:
        parser.error(
            f"{args.model} needs model.onnx and model_int8.onnx: edgeconv export NAME --weights imagenet --int8"
        )
    spec = get_spec(target.zoo_name or target.name)
    calibration = load_calibration_data(None, Preprocessing.from_spec(spec), samples=128, eval_samples=0).calibration
    images, reference, described = target_reference(target, args.crops)
    shape = (1, *target.input_shape[1:])
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="edgeconv-nncf-") as tmp:
        nncf_path, nncf_seconds = nncf_int8(target.onnx["fp32"], calibration, Path(tmp))
        log.info("NNCF quantized in %.1f s", nncf_seconds)

        def ov(path: Path, precision: str, hint: str | None, label: str) -> BenchCase:
            runner = OpenVINORunner(path, precision=precision, inference_precision=hint, input_shape=shape,
                                    threads=args.threads, label=label)  # fmt: skip
            return BenchCase(runner, x, {"engine": "OpenVINO", "model": label})

        def ort(path: Path, precision: str, label: str) -> BenchCase:
            runner = OnnxRuntimeRunner(path, precision=precision, threads=args.threads, label=label)
            return BenchCase(runner, x, {"engine": "ONNX Runtime", "model": label})

        cases = [
            ort(target.onnx["fp32"], "fp32", "FP32"),
            ort(target.onnx["int8"], "int8", "edgeconv INT8"),
            ov(target.onnx["fp32"], "fp32", "f32", "FP32, precision hint f32"),
            ov(target.onnx["fp32"], "fp32", None, "FP32, OpenVINO's default precision"),
            ov(target.onnx["int8"], "int8", None, "edgeconv INT8"),
            ov(nncf_path, "int8", None, "NNCF INT8"),
        ]

        def check(case: BenchCase) -> dict[str, Any]:
            out = fidelity_check(case, images, reference)
            if isinstance(case.runner, OpenVINORunner):
                out["inference_precision"] = case.runner.effective_precision
            return out

        rounds: list[list[Any]] = []
        for repeat in range(args.repeats):
            rounds.append(measure(cases, warmup=args.warmup, iterations=args.iters, block=args.block,
                                  check=check if repeat == 0 else None))  # fmt: skip
    env = environment()
    gate = Gate.of(target.manifest)
    int8 = target.manifest.get("int8") or {}
    lines = [
        f"# INT8 on OpenVINO: edgeconv's artifact beside NNCF ({target.name}, batch 1, {args.threads} threads)",
        "",
        f"Command: `python bench/openvino_int8.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
        f"- CPU: {env['cpu'].get('model')} ({' '.join(env['cpu'].get('isa') or [])}; "
        f"{env['cpu'].get('usable_cores')} usable cores, load "
        f"{env['cpu'].get('load_avg_1m')} at the end); "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v),
        f"- Fidelity: {len(images)} images (4 export photos + {args.crops} held-out crops) against {described}; "
        f"gate: {gate.describe()}",
        f"- NNCF {__import__('nncf').__version__} quantized the FP32 ONNX with its defaults in {nncf_seconds:.1f} s "
        "(128 calibration crops, the ones edgeconv's export calibrates on); edgeconv's INT8 file is the artifact's "
        f"(`{Path(target.onnx['int8']).name}`, `--target {int8.get('target')}`, fallback layers "
        f"{json.dumps(int8.get('float_fallback'))})",
        f"- Timing: {args.iters} iterations per row after {args.warmup} warm-up, interleaved in blocks of "
        f"{args.block}, {args.repeats} rounds; p50 is the median round's; OpenVINO "
        f"{__import__('openvino').__version__.split('-')[0]}",
        "",
        "| engine | model | runs in | p50 ms | mean ms | vs ORT FP32 | round spread | top-1 agreement | confident "
        "agreement | mean KL |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    base = None
    for index, case in enumerate(cases):
        p50s = sorted(r[index].stats.p50_ms for r in rounds)
        p50 = p50s[len(p50s) // 2]
        mean = sorted(r[index].stats.mean_ms for r in rounds)[len(p50s) // 2]
        base = base or p50
        check = rounds[0][index].check or {}
        hint = check.get("inference_precision")
        runs_in = case.runner.precision if hint is None else hint
        if case.runner.precision == "int8" and hint is not None:
            runs_in = f"int8, rest {hint}"  # the precision hint applies to what is not quantized
        confident = check.get("confident_agreement")
        lines.append(
            f"| {case.info['engine']} | {case.info['model']} | {runs_in} | {p50:.3f} | {mean:.3f} | {p50 / base:.2f} | "
            f"{100 * (p50s[-1] - p50s[0]) / p50s[0]:.1f}% | {100 * check.get('top1_agreement', float('nan')):.1f}% | "
            + (f"{100 * confident:.1f}% of {check['confident_samples']}" if confident is not None else "-")
            + f" | {check.get('mean_kl', float('nan')):.4f} |"
        )
    write_atomic(Path(args.out), ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
