"""edgeconv's INT8 export beside its peers (issue 17): wall-clock and fidelity on the same crops.

For one model (mobilenet_v2, ImageNet weights) on the SAME 128 calibration crops and the SAME held-out crops
(``load_calibration_data`` on the repository's calibration/ folder, seed 0, 1000 crops of photos disjoint from the
calibration ones), every row is scored against the same FP32 reference (the FP32 ONNX on ONNX Runtime CPU):

- edgeconv, ``--target onnxruntime`` and ``--target tensorrt``: the CLI command a user types, timed wall-clock from
  start to exit (``python -m edgeconv export MODEL --weights imagenet --int8 [--target tensorrt] --out TMP --force``:
  FP32 export, validation, calibration and the quantizer all included); its ``model_int8.onnx`` is then scored here.
- NNCF post-training quantization of the FP32 ONNX (``nncf.quantize`` on the ``onnx.ModelProto``): its defaults;
  with activations per tensor (its default quantizes depthwise convs' inputs per channel, which ORT's integer kernels
  do not take); and the settings NNCF documents for accuracy (``fast_bias_correction=False``; the ``MIXED`` preset,
  asymmetric activations). The ONNX Runtime form's peer.
- NVIDIA ModelOpt's ONNX PTQ (``modelopt.onnx.quantization.quantize``, ``quantize_mode="int8"``, calibrated on CPU):
  its defaults (entropy, FP16 for what is not quantized) and FP32 high precision with entropy and max calibration.
  The TensorRT form's peer. It runs in its own virtual environment (it pins onnxruntime-gpu and onnx releases other
  than the project's), as a subprocess of this script, with the calibration crops handed over as a .npy file.
- ONNX Runtime's ``quantize_static`` (QDQ, per-channel weights, MinMax): the plain baseline, in both forms.

Scoring is edgeconv's own: ``run_onnx`` on ONNX Runtime CPU and ``compare_logits`` (top-1 agreement with FP32; agreement
on "confident" crops, where FP32's top-1 probability > 0.5). The ONNX Runtime form (edgeconv onnxruntime, NNCF, plain
U8S8) runs with ORT's graph optimizations, i.e. its fused integer kernels; the TensorRT form (edgeconv tensorrt,
ModelOpt, plain S8S8) runs with graph optimizations disabled, the Q/DQ arithmetic as written (``exact=True``), which is
how edgeconv measures that form without TensorRT. Seconds: edgeconv's are the whole CLI command; a peer's are its
quantizer call on the prepared crops (load FP32 ONNX -> save INT8 ONNX), with the tool's import added in "with import"
(ModelOpt's: its subprocess, start to exit). Latency: every onnxruntime-form INT8 file and the FP32 model on ORT CPU,
batch 1, interleaved (``--latency-rounds``): INT8 that ORT cannot run on its integer kernels is slower than FP32.

Install the peers (once; about 6.5 GB, mostly the CUDA wheels torch and onnxruntime-gpu pull in, none needed here)::

    python -m venv bench/.venv-peers          # keep it out of git: echo /bench/.venv-peers/ >> .git/info/exclude
    bench/.venv-peers/bin/pip install "nvidia-modelopt[onnx]"
    .venv/bin/pip install nncf                # NNCF (and OpenVINO) live in the project venv already

Run (under ``nice`` on a shared machine; the peers take about 12 min on 2 busy cores, most of it scoring 1000 crops
per row; edgeconv's two CLI exports and their scoring come on top)::

    nice -n 10 .venv/bin/python bench/int8_peers.py                  # all -> bench/results/int8_peers.{md,json}
    nice -n 10 .venv/bin/python bench/int8_peers.py --skip-edgeconv  # the peers only

The .md names the command that made it; the .json holds every figure, the environment and each row's settings.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PEERS_PYTHON = ROOT / "bench" / ".venv-peers" / "bin" / "python"
DEFAULT_OUT = ROOT / "bench" / "results" / "int8_peers"
# Issue 17's thresholds: today's edgeconv figures on these 1000 crops, and the wall-clock budgets.
GOALS = {
    "onnxruntime": {"seconds": 90.0, "top1": 0.86, "confident": 0.997},
    "tensorrt": {"seconds": 120.0, "top1": 0.849, "confident": 0.994},
}
FORM_EVAL = {
    "onnxruntime": "ORT CPU, graph optimizations on (fused int8 kernels)",
    "tensorrt": "ORT CPU, graph optimizations off (Q/DQ arithmetic as written)",
}

log = logging.getLogger("int8_peers")


# --- ModelOpt worker: runs inside the peers' venv (numpy + modelopt only, no edgeconv) --------------------------------


def modelopt_worker(argv: list[str]) -> int:
    """``int8_peers.py modelopt-worker --onnx F --calib C.npy --out O.onnx [--method M] [--high-precision D]``: one
    ModelOpt int8 PTQ; prints one JSON line (seconds, versions) as the last line of stdout."""
    parser = argparse.ArgumentParser(prog="int8_peers.py modelopt-worker")
    parser.add_argument("--onnx", required=True)
    parser.add_argument("--calib", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--method", default=None, help="entropy or max (default: ModelOpt's, entropy)")
    parser.add_argument("--high-precision", default=None, help="fp32 or fp16 (default: ModelOpt's, fp16)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    from importlib.metadata import version

    import numpy as np
    from modelopt.onnx.quantization import quantize

    imported = time.perf_counter()
    calibration = np.load(args.calib)
    kwargs: dict[str, Any] = {"quantize_mode": "int8", "calibration_data": calibration, "calibration_eps": ["cpu"]}
    if args.method:
        kwargs["calibration_method"] = args.method
    if args.high_precision:
        kwargs["high_precision_dtype"] = args.high_precision
    # ModelOpt writes intermediate models beside its input: quantize a copy in the output's folder.
    source = Path(args.out).parent / "fp32_input.onnx"
    shutil.copyfile(args.onnx, source)
    start = time.perf_counter()
    quantize(str(source), output_path=args.out, log_level="WARNING", **kwargs)
    seconds = time.perf_counter() - start
    versions = {
        name: _dist_version(version, name)
        for name in ("nvidia-modelopt", "onnxruntime-gpu", "onnxruntime", "onnx", "numpy", "torch")
    }
    print(
        json.dumps(
            {
                "seconds": seconds,
                "import_seconds": imported - started,
                "kwargs": {k: v for k, v in kwargs.items() if k != "calibration_data"},
                "versions": versions,
            }
        )
    )
    return 0


def _dist_version(version: Callable[[str], str], name: str) -> str | None:
    try:
        return version(name)
    except Exception:  # PackageNotFoundError
        return None


# --- the driver (project venv) ---------------------------------------------------------------------------------------


@dataclass
class Row:
    tool: str  # edgeconv / NNCF / ModelOpt / ONNX Runtime
    variant: str
    form: str  # onnxruntime or tensorrt: how it is scored
    command: str  # what was run, in words a reader can repeat
    seconds: float | None = None
    total_seconds: float | None = None  # with the tool's import / the whole process
    fidelity: dict[str, Any] | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None  # the INT8 file scored (in the run's temporary folder), for the latency pass
    hits: Any = None  # per held-out crop: does its top-1 class match FP32's (for the paired comparison)


def load_avg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def versions(names: tuple[str, ...]) -> dict[str, str | None]:
    from importlib.metadata import version

    return {name: _dist_version(version, name) for name in names}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def qdq_summary(path: Path) -> dict[str, Any]:
    """What a quantized graph holds: Q/DQ counts and the types of the QuantizeLinear zero points (weights too, where
    a graph quantizes them at run time)."""
    import onnx

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    ops = Counter(n.op_type for n in model.graph.node)
    zero_points: Counter[str] = Counter()
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) > 2 and node.input[2] in inits:
            zero_points[onnx.TensorProto.DataType.Name(inits[node.input[2]].data_type).lower()] += 1
    return {
        "quantize_linear": ops.get("QuantizeLinear", 0),
        "dequantize_linear": ops.get("DequantizeLinear", 0),
        "cast": ops.get("Cast", 0),
        "quantize_linear_zero_point_types": dict(zero_points),
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
    }


def _run_onnx() -> Callable[..., Any]:
    from edgeconv.onnxgraph import run_onnx  # imported late: main() puts the checkout on sys.path first

    return run_onnx


def score(row: Row, path: Path, evaluation: Any, reference: Any) -> None:
    from edgeconv.quantize.fidelity import compare_logits

    start = time.perf_counter()
    logits = _run_onnx()(path, evaluation, exact=row.form == "tensorrt")
    row.fidelity = compare_logits(reference, logits).as_dict()
    row.hits = logits.argmax(axis=1) == reference.argmax(axis=1)
    row.extra["score_seconds"] = round(time.perf_counter() - start, 1)
    row.path = path
    row.extra["graph"] = qdq_summary(path)
    log.info(
        "%s %s: %.1f%% / %.1f%% of %d confident",
        row.tool,
        row.variant,
        100 * row.fidelity["top1_agreement"],
        100 * row.fidelity["confident_agreement"],
        row.fidelity["confident_samples"],
    )


def guarded(row: Row, rows: list[Row], body: Callable[[], None]) -> None:
    """Run one row; a failure is recorded in the row (its error text), not fatal to the others."""
    row.extra["load_avg_before"] = load_avg()
    try:
        body()
    except Exception as exc:  # a peer that cannot run here is a result too
        log.exception("%s %s failed", row.tool, row.variant)
        row.error = f"{type(exc).__name__}: {exc}"[:2000]
    row.extra["load_avg_after"] = load_avg()
    rows.append(row)


def run_cli(cmd: list[str], logfile: Path) -> tuple[int, float]:
    """Run ``cmd`` (an argument list, no shell) in the checkout, its output into ``logfile``: (exit code, wall-clock
    seconds from start to exit)."""
    start = time.perf_counter()
    with logfile.open("wb") as sink:
        done = subprocess.run(cmd, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, check=False)
    return done.returncode, time.perf_counter() - start


def nncf_quantize(fp32: Path, samples: Any, path: Path, **kwargs: Any) -> float:
    """``nncf.quantize`` of the FP32 ONNX on all of ``samples`` (``kwargs`` as NNCF takes them), saved at ``path``;
    seconds from loading the FP32 file to saving the INT8 one (NNCF's import not included)."""
    import nncf
    import onnx

    begin = time.perf_counter()
    model = onnx.load(str(fp32))
    name = model.graph.input[0].name
    dataset = nncf.Dataset(list(samples), lambda sample: {name: sample[None]})
    onnx.save(nncf.quantize(model, dataset, subset_size=len(samples), **kwargs), str(path))
    return time.perf_counter() - begin


def edgeconv_rows(args: argparse.Namespace, tmp: Path, evaluation: Any, reference: Any, rows: list[Row]) -> None:
    for target in ("onnxruntime", "tensorrt"):
        out = tmp / f"edgeconv-{target}"
        cmd = [sys.executable, "-m", "edgeconv", "export", args.model, "--weights", "imagenet", "--int8"]
        cmd += ["--target", "tensorrt"] if target == "tensorrt" else []
        cmd += ["--out", str(out), "--force"]
        shown = "python -m edgeconv export " + " ".join(shlex.quote(c) for c in cmd[4:]).replace(str(out), "TMP")
        row = Row("edgeconv", f"--target {target} (defaults)", target, shown)

        def body(row: Row = row, cmd: list[str] = cmd, out: Path = out, target: str = target) -> None:
            logfile = tmp / f"{out.name}.log"
            code, row.seconds = run_cli(cmd, logfile)
            row.total_seconds, row.extra["exit_code"] = row.seconds, code
            if code != 0:
                raise RuntimeError(f"exit code {code}: {logfile.read_text(errors='replace')[-1500:]}")
            manifest = json.loads((out / "manifest.json").read_text())
            int8 = manifest.get("int8") or {}
            row.extra["manifest_int8"] = {k: int8.get(k) for k in ("target", "fidelity", "gate", "float_fallback")}
            fp32 = out / "model.onnx"
            row.extra["fp32_sha256"] = sha256(fp32) if fp32.is_file() else None
            score(row, out / "model_int8.onnx", evaluation, reference)
            if row.extra["fp32_sha256"] != args.fp32_sha256 and fp32.is_file():  # also against its own FP32
                from edgeconv.quantize.fidelity import compare_logits

                own = _run_onnx()(fp32, evaluation)
                logits = _run_onnx()(out / "model_int8.onnx", evaluation, exact=target == "tensorrt")
                row.extra["fidelity_vs_own_fp32"] = compare_logits(own, logits).as_dict()
                row.extra["own_fp32_vs_reference"] = compare_logits(reference, own).as_dict()
            if args.keep:
                shutil.copyfile(out / "model_int8.onnx", Path(args.keep) / f"edgeconv_{target}.onnx")

        guarded(row, rows, body)


NNCF_VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    # NNCF quantizes depthwise convs' inputs per channel by default (its CPU hardware config). ORT's integer kernels
    # take one activation scale per tensor; ORT runs that graph slower than FP32 (the latency column).
    "activations per tensor": {"activations_per_channel": False},
    "fast_bias_correction=False": {"fast_bias_correction": False},
    "preset=MIXED, fast_bias_correction=False": {"fast_bias_correction": False, "preset": "MIXED"},
}


def nncf_rows(args: argparse.Namespace, tmp: Path, data: Any, reference: Any, rows: list[Row]) -> None:
    start = time.perf_counter()
    import nncf

    import_seconds = time.perf_counter() - start
    nncf.set_log_level(logging.WARNING)
    for variant, settings in NNCF_VARIANTS.items():
        shown = ", ".join(
            "advanced_parameters=AdvancedQuantizationParameters(activations_quantization_params="
            f"QuantizationParameters(per_channel={v}))"
            if k == "activations_per_channel"
            else f"{k}={'nncf.QuantizationPreset.' + v if k == 'preset' else v}"
            for k, v in settings.items()
        )
        row = Row(
            "NNCF",
            variant,
            "onnxruntime",
            f"nncf.quantize(onnx.load(fp32), nncf.Dataset(crops), subset_size={len(data.calibration)}"
            + (f", {shown})" if shown else ")"),
        )

        def body(row: Row = row, settings: dict[str, Any] = settings, variant: str = variant) -> None:
            kwargs = dict(settings)
            if "preset" in kwargs:
                kwargs["preset"] = getattr(nncf.QuantizationPreset, kwargs["preset"])
            if "activations_per_channel" in kwargs:
                from nncf.quantization.advanced_parameters import (
                    AdvancedQuantizationParameters,
                    QuantizationParameters,
                )

                per_channel = QuantizationParameters(per_channel=kwargs.pop("activations_per_channel"))
                kwargs["advanced_parameters"] = AdvancedQuantizationParameters(
                    activations_quantization_params=per_channel
                )
            path = tmp / f"nncf_{len(rows)}.onnx"
            row.seconds = nncf_quantize(args.fp32, data.calibration, path, **kwargs)
            row.total_seconds = row.seconds + import_seconds
            score(row, path, data.evaluation, reference)
            if args.keep:
                shutil.copyfile(path, Path(args.keep) / f"nncf_{variant.split(',')[0].split('=')[0]}.onnx")

        guarded(row, rows, body)


MODELOPT_VARIANTS: dict[str, dict[str, str | None]] = {
    "defaults (entropy, FP16 elsewhere)": {"method": None, "high_precision": None},
    "entropy, FP32 elsewhere": {"method": "entropy", "high_precision": "fp32"},
    "max, FP32 elsewhere": {"method": "max", "high_precision": "fp32"},
}


def modelopt_rows(args: argparse.Namespace, tmp: Path, data: Any, reference: Any, rows: list[Row]) -> dict[str, Any]:
    import numpy as np

    python = Path(args.peers_python)
    calib = tmp / "calibration.npy"
    np.save(calib, data.calibration)
    info: dict[str, Any] = {"python": str(python)}
    for index, (variant, settings) in enumerate(MODELOPT_VARIANTS.items()):
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in settings.items() if v]
        names = {"method": "calibration_method", "high_precision": "high_precision_dtype"}
        shown = (
            "modelopt.onnx.quantization.quantize(fp32, quantize_mode='int8', calibration_data=crops, "
            "calibration_eps=['cpu']" + "".join(f", {names[k]}='{v}'" for k, v in settings.items() if v) + ")"
        )
        row = Row("ModelOpt", variant, "tensorrt", shown)

        def body(row: Row = row, flags: list[str] = flags, index: int = index) -> None:
            if not python.is_file():
                raise FileNotFoundError(
                    f"{python} is missing: python -m venv bench/.venv-peers && "
                    "bench/.venv-peers/bin/pip install 'nvidia-modelopt[onnx]'"
                )
            work = tmp / f"modelopt_{index}"
            work.mkdir()
            out = work / "int8.onnx"
            cmd = [
                str(python),
                str(Path(__file__).resolve()),
                "modelopt-worker",
                "--onnx",
                str(args.fp32),
                "--calib",
                str(calib),
                "--out",
                str(out),
                *flags,
            ]
            begin = time.perf_counter()
            done = subprocess.run(cmd, cwd=work, capture_output=True, text=True, check=False)
            row.total_seconds = time.perf_counter() - begin
            (tmp / f"modelopt_{index}.log").write_text(done.stdout + done.stderr)
            if done.returncode != 0:
                raise RuntimeError(f"exit code {done.returncode}: {(done.stdout + done.stderr)[-1500:]}")
            report = json.loads(done.stdout.strip().splitlines()[-1])
            row.seconds = report["seconds"]
            row.extra["modelopt_kwargs"] = report["kwargs"]
            info["versions"] = report["versions"]
            score(row, out, data.evaluation, reference)
            if args.keep:
                shutil.copyfile(out, Path(args.keep) / f"modelopt_{index}.onnx")

        guarded(row, rows, body)
    return info


def ort_kwargs(form: str) -> dict[str, Any]:
    """What a user of ORT's ``quantize_static`` asks for, per form (the plain baseline of bench/results/int8.md)."""
    from onnxruntime.quantization import QuantFormat, QuantType

    ops = ["Conv", "ConvTranspose", "Gemm", "MatMul"]
    kwargs: dict[str, Any] = {
        "quant_format": QuantFormat.QDQ,
        "per_channel": True,
        "reduce_range": False,
        "weight_type": QuantType.QInt8,
        "extra_options": {"WeightSymmetric": True},
    }
    if form == "tensorrt":  # TensorRT's rules: symmetric int8 activations, Q/DQ on compute-op inputs only
        kwargs["activation_type"] = QuantType.QInt8
        kwargs["op_types_to_quantize"] = ops
        kwargs["extra_options"].update(
            {
                "ActivationSymmetric": True,
                "AddQDQPairToWeight": True,
                "DedicatedQDQPair": True,
                "QuantizeBias": False,
                "ForceQuantizeNoInputCheck": True,
                "OpTypesToExcludeOutputQuantization": ops,
                "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1, "MatMul": 1},
            }
        )
    else:
        kwargs["activation_type"] = QuantType.QUInt8
    return kwargs


def ort_kwargs_shown(form: str) -> dict[str, Any]:
    """``ort_kwargs`` as text, for the report (enum members by name)."""
    return {k: getattr(v, "name", v) for k, v in ort_kwargs(form).items()}


def ort_rows(args: argparse.Namespace, tmp: Path, data: Any, reference: Any, rows: list[Row]) -> None:
    for form in ("onnxruntime", "tensorrt"):
        types = "U8S8" if form == "onnxruntime" else "S8S8 symmetric, conv/gemm inputs only"
        row = Row(
            "ONNX Runtime",
            f"quantize_static QDQ {types}, MinMax",
            form,
            "quant_pre_process(fp32), then quantize_static(pre, out, reader, calibrate_method=MinMax, "
            + ", ".join(f"{k}={v}" for k, v in ort_kwargs_shown(form).items())
            + ")",
        )

        def body(row: Row = row, form: str = form) -> None:
            import onnx
            from onnxruntime.quantization import CalibrationMethod, quant_pre_process, quantize_static

            from edgeconv.quantize.calibration import CalibrationReader

            pre, path = tmp / f"ort_pre_{form}.onnx", tmp / f"ort_{form}.onnx"
            begin = time.perf_counter()
            quant_pre_process(str(args.fp32), str(pre))
            model = onnx.load(str(pre))
            dim = model.graph.input[0].type.tensor_type.shape.dim[0]
            reader = CalibrationReader(
                data.calibration,
                model.graph.input[0].name,
                batch_size=dim.dim_value if dim.HasField("dim_value") else 16,
            )
            quantize_static(str(pre), str(path), reader, calibrate_method=CalibrationMethod.MinMax, **ort_kwargs(form))
            row.seconds = row.total_seconds = time.perf_counter() - begin
            score(row, path, data.evaluation, reference)

        guarded(row, rows, body)


def measure_latency(rows: list[Row], fp32: Path, rounds: int, feed: Any) -> float | None:
    """Batch-1 latency on ONNX Runtime CPU (default graph optimizations, all cores) of the FP32 model and of every
    onnxruntime-form row's INT8 file on ``feed`` (one crop), interleaved round by round so that drift hits all alike;
    medians in ms, into each row's ``extra["ort_cpu_ms"]``. Returns FP32's. TensorRT-form rows are not timed: ORT CPU
    is not their runtime."""
    import numpy as np

    from edgeconv.onnxgraph import session

    timed = [r for r in rows if r.form == "onnxruntime" and r.path is not None and not r.error]
    sessions = [session(str(fp32))] + [session(str(r.path)) for r in timed]
    name = sessions[0].get_inputs()[0].name
    times: list[list[float]] = [[] for _ in sessions]
    for index in range(rounds + 10):  # 10 warm-up rounds
        for sess, record in zip(sessions, times, strict=True):
            start = time.perf_counter()
            sess.run(None, {name: feed})
            if index >= 10:
                record.append(1e3 * (time.perf_counter() - start))
    medians = [float(np.median(t)) for t in times]
    for row, ms in zip(timed, medians[1:], strict=True):
        row.extra["ort_cpu_ms"] = round(ms, 3)
    log.info("latency (ORT CPU, batch 1, median of %d): FP32 %.2f ms", rounds, medians[0])
    return medians[0]


def paired(mine: Row, peer: Row) -> str:
    """The two top-1 agreements compared crop by crop: the crops only one of the two gets right, and the exact
    two-sided McNemar p-value (the chance of a split at least this uneven if both were equally faithful)."""
    only_peer = int((peer.hits & ~mine.hits).sum())
    only_mine = int((mine.hits & ~peer.hits).sum())
    n, k = only_peer + only_mine, min(only_peer, only_mine)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0
    return f"crop by crop {only_peer} right only with {peer.tool}, {only_mine} only with edgeconv (McNemar p = {p:.2f})"


def pct(value: float | None) -> str:
    return "-" if value is None or value != value else f"{100 * value:.1f}%"


def verdicts(rows: list[Row], fp32_ms: float | None = None) -> list[str]:
    """Issue 17's done-when, per form, where edgeconv's rows were measured."""
    lines = []
    for form, goal in GOALS.items():
        mine = next((r for r in rows if r.tool == "edgeconv" and r.form == form and r.fidelity), None)
        if mine is None:
            continue
        fid = mine.fidelity or {}
        peer_tool = "NNCF" if form == "onnxruntime" else "ModelOpt"
        peers = [r for r in rows if r.tool == peer_tool and r.form == form and r.fidelity]
        best = max(peers, key=lambda r: (r.fidelity or {})["top1_agreement"], default=None)
        best_conf = max(peers, key=lambda r: (r.fidelity or {})["confident_agreement"], default=None)
        checks = [
            f"{mine.seconds:.0f} s {'<=' if (mine.seconds or 1e9) <= goal['seconds'] else '>'} {goal['seconds']:.0f} s",
            f"top-1 {pct(fid['top1_agreement'])} {'>=' if fid['top1_agreement'] >= goal['top1'] else '<'} "
            f"{pct(goal['top1'])}",
            f"confident {pct(fid['confident_agreement'])} "
            f"{'>=' if fid['confident_agreement'] >= goal['confident'] else '<'} {pct(goal['confident'])}",
        ]
        if best is not None and best_conf is not None:
            b, c = best.fidelity or {}, best_conf.fidelity or {}
            checks.append(
                f"best {peer_tool} top-1 {pct(b['top1_agreement'])} ({best.variant}): "
                f"{'at least as high' if fid['top1_agreement'] >= b['top1_agreement'] else 'LOWER'}; best {peer_tool} "
                f"confident {pct(c['confident_agreement'])} ({best_conf.variant}): "
                f"{'at least as high' if fid['confident_agreement'] >= c['confident_agreement'] else 'LOWER'}"
            )
            if mine.hits is not None and best.hits is not None:
                checks.append(f"top-1 against {peer_tool} {best.variant}: {paired(mine, best)}")
        if form == "onnxruntime" and mine.extra.get("ort_cpu_ms") is not None:
            fp32_ms = fp32_ms or 0.0
            fast = [r for r in peers if r.extra.get("ort_cpu_ms") is not None and r.extra["ort_cpu_ms"] < fp32_ms]
            quickest = max(fast, key=lambda r: (r.fidelity or {})["top1_agreement"], default=None)
            checks.append(
                f"ORT CPU ms (x FP32): edgeconv {_latency(mine, fp32_ms)}, "
                + ", ".join(f"{peer_tool} {r.variant} {_latency(r, fp32_ms)}" for r in peers)
            )
            if quickest is not None:
                q = quickest.fidelity or {}
                checks.append(
                    f"best {peer_tool} that runs faster than FP32 on ORT: top-1 {pct(q['top1_agreement'])}, confident "
                    f"{pct(q['confident_agreement'])} ({quickest.variant}): "
                    f"{'at least as high' if fid['top1_agreement'] >= q['top1_agreement'] else 'LOWER'} / "
                    f"{'at least as high' if fid['confident_agreement'] >= q['confident_agreement'] else 'LOWER'}"
                )
        lines.append(f"- `--target {form}`: " + "; ".join(checks))
    return lines


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def _latency(row: Row, fp32_ms: float | None) -> str:
    ms = row.extra.get("ort_cpu_ms")
    if ms is None:
        return "-"
    return f"{ms:.2f}" + (f" ({ms / fp32_ms:.2f}x)" if fp32_ms else "")


def render(result: dict[str, Any], rows: list[Row]) -> str:
    env, cpu = result["environment"], result["environment"]["cpu"]
    data = result["data"]
    lines = [
        f"Command: `{result['command']}`",
        "",
        f"# INT8 export beside its peers: {result['model']} (ImageNet weights), issue 17",
        "",
        f"- Date: {result['date']}",
        f"- Machine: {cpu.get('model')} ({cpu.get('usable_cores')} usable of {cpu.get('logical_cores')} logical "
        f"cores; {' '.join(cpu.get('isa') or [])}), {env['os']}, Python {env['python']}; load average "
        f"{result['load_avg_start']} at the start, {result['load_avg_end']} at the end (other work shares the cores: "
        "seconds are indicative, agreement does not depend on load)",
        "- Versions: "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
        + (
            "; peers' venv: " + ", ".join(f"{k} {v}" for k, v in env["peers_versions"].items() if v)
            if env.get("peers_versions")
            else ""
        ),
        f"- Data: {data['calibration']} calibration crops of `calibration/calib` and {data['evaluation']} held-out "
        f"crops of the disjoint `calibration/eval` photos (edgeconv's `load_calibration_data`, seed {data['seed']}); "
        f"{data['confident']} held-out crops are confident (FP32 top-1 probability > 0.5). Reference: "
        f"`{data['fp32']}` (sha256 {data['fp32_sha256']}) on ORT CPU.",
        f"- Scoring: ONNX Runtime form = {FORM_EVAL['onnxruntime']}; TensorRT form = {FORM_EVAL['tensorrt']}.",
        "- Seconds: edgeconv = the whole CLI command, wall-clock (FP32 export and validation included); peers = "
        'their quantizer call on the prepared crops (load FP32 ONNX -> save INT8), "with import" adds loading the '
        "tool (ModelOpt: its whole subprocess).",
        "",
        f"- Latency: batch 1 on ONNX Runtime CPU, default graph optimizations, all cores, median of "
        f"{result.get('latency_rounds')} interleaved rounds after 10 warm-up rounds, on one held-out crop; FP32 "
        f"{_ms(result.get('fp32_ort_cpu_ms'))}. Only onnxruntime-form rows are timed: ORT CPU is not the TensorRT "
        "form's runtime.",
        "",
        "| tool | settings | form | seconds | with import | top-1 agreement | confident agreement | top-5 overlap "
        "| mean KL | output SQNR dB | ORT CPU ms (x FP32) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row.error:
            lines.append(
                f"| {row.tool} | {row.variant} | {row.form} | - | - | failed: {row.error[:200]!r} | - | - | - | - | - |"
            )
            continue
        fid = row.fidelity or {}
        secs = "-" if row.seconds is None else f"{row.seconds:.1f}"
        total = "-" if row.total_seconds is None else f"{row.total_seconds:.1f}"
        lines.append(
            f"| {row.tool} | {row.variant} | {row.form} | {secs} | {total} | {pct(fid.get('top1_agreement'))} | "
            f"{pct(fid.get('confident_agreement'))} of {fid.get('confident_samples')} | "
            f"{pct(fid.get('top5_overlap'))} | {fid.get('mean_kl', float('nan')):.4f} | "
            f"{fid.get('output_sqnr_db', float('nan')):.1f} | {_latency(row, result.get('fp32_ort_cpu_ms'))} |"
        )
    lines += ["", "## What each row ran", ""]
    lines += [f"- {r.tool}, {r.variant}: `{r.command}`" for r in rows]
    if result.get("skipped"):
        lines += ["", "Not run this time: " + ", ".join(result["skipped"]) + "."]
    goal_lines = verdicts(rows, result.get("fp32_ort_cpu_ms"))
    lines += ["", "## Issue 17's done-when", ""]
    lines += goal_lines or [
        "- edgeconv's rows were not run (`--skip-edgeconv`): run without it for the verdict. "
        "Goals: `--target onnxruntime` <= 90 s and >= 86.0% / 99.7%; `--target tensorrt` <= 120 s "
        "and >= 84.9% / 99.4%; each at least as high as NNCF's (onnxruntime form) and ModelOpt's "
        "(tensorrt form)."
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["modelopt-worker"]:
        return modelopt_worker(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument(
        "--fp32",
        default=None,
        help="FP32 ONNX the peers quantize and the reference runs "
        "(default models/MODEL/model.onnx; exported with `edgeconv export MODEL --weights imagenet` "
        "if missing)",
    )
    parser.add_argument("--calib-samples", type=int, default=128)
    parser.add_argument("--eval-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-edgeconv", action="store_true", help="peers only (edgeconv's rows in a later run)")
    parser.add_argument("--skip-nncf", action="store_true")
    parser.add_argument("--skip-modelopt", action="store_true")
    parser.add_argument("--skip-ort", action="store_true", help="skip the plain ORT quantize_static baseline")
    parser.add_argument("--peers-python", default=str(DEFAULT_PEERS_PYTHON), help="python of ModelOpt's venv")
    parser.add_argument("--keep", default=None, help="folder to copy every INT8 model into")
    parser.add_argument("--latency-rounds", type=int, default=200, help="interleaved timing rounds (0: no timing)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="results path without suffix (.md and .json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

    from edgeconv.bench import cpu_info
    from edgeconv.files import write_atomic
    from edgeconv.quantize.calibration import Preprocessing, load_calibration_data
    from edgeconv.quantize.fidelity import softmax
    from edgeconv.zoo import get_spec

    command = "python bench/int8_peers.py" + "".join(f" {shlex.quote(a)}" for a in argv)
    started = dt.datetime.now(dt.timezone.utc)
    load_start = load_avg()
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    result: dict[str, Any] = {"command": command, "model": args.model, "load_avg_start": load_start}
    with tempfile.TemporaryDirectory(prefix="edgeconv-peers-") as name:
        tmp = Path(name)
        fp32 = Path(args.fp32) if args.fp32 else ROOT / "models" / args.model / "model.onnx"
        if not fp32.is_file():
            log.info("%s missing: exporting the FP32 artifact", fp32)
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "edgeconv",
                    "export",
                    args.model,
                    "--weights",
                    "imagenet",
                    "--out",
                    str(tmp / "fp32"),
                ],
                cwd=ROOT,
                check=True,
            )
            fp32 = tmp / "fp32" / "model.onnx"
        args.fp32, args.fp32_sha256 = fp32, sha256(fp32)
        data = load_calibration_data(
            None,
            Preprocessing.from_spec(get_spec(args.model)),
            samples=args.calib_samples,
            eval_samples=args.eval_samples,
            seed=args.seed,
        )
        reference = _run_onnx()(fp32, data.evaluation)
        confident = int((softmax(reference).max(axis=1) > 0.5).sum())
        try:
            shown_fp32 = str(fp32.resolve().relative_to(ROOT))
        except ValueError:
            shown_fp32 = "exported FP32 (" + fp32.name + ")"
        split = data.split
        result["data"] = {
            "calibration": len(data.calibration),
            "evaluation": len(data.evaluation),
            "seed": args.seed,
            "confident": confident,
            "fp32": shown_fp32,
            "fp32_sha256": args.fp32_sha256,
            "calibration_images": [p.name for p in split.calibration.paths] if split else None,
            "evaluation_images": [p.name for p in split.evaluation.paths] if split else None,
        }
        skipped = []
        peers_info: dict[str, Any] = {}
        if not args.skip_edgeconv:
            edgeconv_rows(args, tmp, data.evaluation, reference, rows)
        else:
            skipped.append("edgeconv (`--skip-edgeconv`)")
        if not args.skip_nncf:
            nncf_rows(args, tmp, data, reference, rows)
        else:
            skipped.append("NNCF")
        if not args.skip_modelopt:
            peers_info = modelopt_rows(args, tmp, data, reference, rows)
        else:
            skipped.append("ModelOpt")
        if not args.skip_ort:
            ort_rows(args, tmp, data, reference, rows)
        else:
            skipped.append("ORT quantize_static")
        result["latency_rounds"] = args.latency_rounds
        if args.latency_rounds > 0:
            result["fp32_ort_cpu_ms"] = measure_latency(rows, fp32, args.latency_rounds, data.evaluation[:1])
    env = {
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "cpu": cpu_info(),
        "versions": versions(("edgeconv", "numpy", "torch", "onnx", "onnxruntime", "nncf", "openvino")),
        "peers_versions": peers_info.get("versions"),
        "peers_python": peers_info.get("python"),
    }
    result.update(
        {
            "date": started.strftime("%Y-%m-%d %H:%M UTC"),
            "environment": env,
            "skipped": skipped,
            "load_avg_end": load_avg(),
            "goals": GOALS,
            "rows": [{k: v for k, v in vars(r).items() if k not in ("path", "hits")} for r in rows],
        }
    )
    out = Path(args.out)
    write_atomic(out.with_suffix(".json"), (json.dumps(result, indent=1, default=str) + "\n").encode())
    text = render(result, rows)
    write_atomic(out.with_suffix(".md"), text.encode())
    print(text)
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
