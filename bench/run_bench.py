"""Benchmark driver: the MobileNet / ShuffleNet comparison set over every backend and precision this machine has.

    python bench/run_bench.py                 # full run: writes bench/results/<machine>.{json,md} + plots
    python bench/run_bench.py --quick         # smoke check: 2 models, few iterations, <machine>-quick.*
    python bench/run_bench.py --models dense --machine NAME-dense
                                              # segmentation networks at 256 and 512 (--input-sizes)

Run the full mode on a quiet machine (nothing else running, fixed CPU governor, on a Jetson a fixed nvpmodel mode and
``jetson_clocks``): every row records the environment, including the 1-minute load average at the time of the run.
What runs is detected, not configured: PyTorch eager on CPU (and CUDA fp32/fp16 when torch sees a GPU), ONNX Runtime
with the execution providers its build has (CPU; CUDA/TensorRT EPs with onnxruntime-gpu), native TensorRT when
installed (fp32/fp16, int8 when the artifact has a QDQ graph). All configurations of one model are measured
interleaved (edgeconv.bench.measure), and the whole measurement is repeated ``--repeats`` times so run-to-run spread
is reported next to the figures. Per-layer breakdowns (ShuffleNet V2's op classes) come from the ONNX Runtime profiler
(and TensorRT's IProfiler when available).

On a GPU (bench/gpu_check.sh runs this):

    python bench/run_bench.py --device cuda --backends torch --batch 1,8 --precisions fp32,fp16 \
        --torch-variants eager,cuda-graph,compile,compile+cuda-graph --compile-budget 150

Dense prediction (``--models dense``, or any models with ``--input-sizes 256,512``): each model runs at every size
from one artifact exported with ``--dynamic-size`` (the driver exports the FP32 one at the first size; export the INT8
one yourself, e.g. ``edgeconv export lraspp_mobilenet_v3_large --int8 --dynamic-size --dynamic-batch --input-size 256
--out models/lraspp_mobilenet_v3_large``), a side its size rule refuses moved to the next one it takes (the valid-conv
U-Net's 188 + 16 k); the fidelity of a label map is per-pixel agreement and mean IoU with FP32 on at most
``DENSE_FIDELITY`` held-out crops (a 512x512 map has 262,144 pixels), and the per-op-class breakdown is measured at
each size.

Video (``--models video``): the 3D CNNs at their own clip size (batch 1), fidelity on clips panning across the
held-out photos; export their INT8 artifacts yourself (``edgeconv export r3d_18 --int8``; the onnxruntime form keeps
the thin 3D convs ORT runs slower in INT8 in float, bench/results/int8_conv3d.md).

Every row carries the fidelity of its outputs against PyTorch FP32 on the CPU (``--fidelity N`` held-out crops plus
the export check's four photos; ``--fidelity -1`` skips it): max relative error within the export check's tolerance
(FP32 1e-4, FP16 and TF32 1e-2) and top-1 agreement. Models with a catalog checkpoint run with it (``--weights
imagenet`` where installed); the others are randomly initialised with a fixed seed. Results are written after every
model, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from edgeconv.backends.artifacts import Target, resolve_target  # noqa: E402
from edgeconv.bench import (  # noqa: E402
    BenchCase,
    CaseOptions,
    Gate,
    engine_label,
    environment,
    fidelity_check,
    gpu_state,
    isa_label,
    make_cases,
    measure,
    recommend,
    target_reference,
)
from edgeconv.errors import EdgeconvError, InvalidArgumentError  # noqa: E402

log = logging.getLogger("run_bench")

COMPARISON_SET = (
    "mobilenet_v1", "mobilenet_v2", "mobilenet_v2_140", "shufflenet_v1", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5", "shufflenet_v2_x2_0", "mobilenet_v3_large", "mobilenet_v3_small", "efficientnet_b0",
    "resnet18", "resnet50", "repvgg_a0", "nasnet_a_mobile",
)  # fmt: skip
QUICK_SET = ("mobilenet_v2", "shufflenet_v2_x1_0")
# The dense-prediction networks of the seeds, mobile ones first, and the deformable ResNet-50 of the same lecture
# (a classifier): run at DENSE_SIZES unless --input-sizes.
DENSE_SET = (
    "lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "unet_padded", "unet", "fcn8s", "fcn_resnet50",
    "deeplabv3_resnet50", "dilation8", "deform_resnet50",
)  # fmt: skip
# Seed 004's 3D CNNs (clip classifiers, batch 1 at their own clip size): INT8 3D convolution on ONNX Runtime CPU.
VIDEO_SET = ("r3d_18", "mc3_18", "r2plus1d_18", "c3d", "ji2013_3dcnn")
SETS = {"comparison": COMPARISON_SET, "dense": DENSE_SET, "video": VIDEO_SET}
DENSE_SIZES = (256, 512)
DENSE_FIDELITY = 16  # held-out crops for a label map's fidelity: 16 x 21 classes x 512 x 512 floats is 350 MB
TORCH_VARIANTS = ("eager", "cuda-graph", "compile", "compile+cuda-graph", "eager+tf32", "eager+channels-last")
# Deployment form for the PyTorch baseline too: RepVGG is benchmarked re-parameterized (the exported ONNX is fused).
REPARAMETERIZE = {"repvgg_a0"}
CLASS_ORDER = ("Conv", "Elementwise", "Data movement", "Other", "Not in any layer")


def parse_variant(name: str) -> dict[str, Any]:
    """``compile+cuda-graph`` -> CaseOptions fields {torch_compile, cuda_graph, channels_last, tf32}; a variant
    without ``eager`` or ``compile`` (``cuda-graph``) is eager."""
    base, *flags = name.split("+")
    if base not in ("eager", "compile"):
        base, flags = "eager", [base, *flags]
    unknown = [f for f in flags if f not in ("cuda-graph", "channels-last", "tf32")]
    if unknown or len(set(flags)) != len(flags):
        raise InvalidArgumentError(
            f"torch variant {name!r} is not valid; use eager or compile, optionally +cuda-graph, +channels-last, "
            f"+tf32 (e.g. {', '.join(TORCH_VARIANTS)})"
        )
    return {
        "torch_compile": base == "compile",
        "cuda_graph": "cuda-graph" in flags,
        "channels_last": "channels-last" in flags,
        "tf32": "tf32" in flags,
    }


def detect() -> dict[str, Any]:
    """What this machine can run: {device: [(backend, provider, precisions)]}."""
    found: dict[str, Any] = {"cpu": [("torch", None, ["fp32"]), ("onnxruntime", "cpu", ["fp32", "fp16", "int8"])]}
    gpu: list[tuple[str, str | None, list[str]]] = []
    try:
        import torch

        if torch.cuda.is_available():
            gpu.append(("torch", None, ["fp32", "fp16"]))
    except ImportError:
        pass
    import onnxruntime

    providers = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" in providers:
        gpu.append(("onnxruntime", "cuda", ["fp32", "fp16", "int8"]))
    if "TensorrtExecutionProvider" in providers:
        gpu.append(("onnxruntime", "tensorrt", ["fp32", "fp16", "int8"]))
    import importlib.util

    if importlib.util.find_spec("openvino") is not None:
        found["cpu"].append(("openvino", None, ["fp32", "int8"]))  # FP16 files: OpenVINO upcasts them on a CPU
    from edgeconv.backends.tensorrt import tensorrt_version

    if tensorrt_version() is not None:
        gpu.append(("tensorrt", None, ["fp32", "fp16", "int8"]))
    if gpu:
        found["cuda"] = gpu
    return found


def machine_name(env: dict[str, Any]) -> str:
    gpu = (env.get("gpu") or {}).get("name")
    jetson = (env.get("jetson") or {}).get("model")
    cpu = env["cpu"]
    base = jetson or gpu or f"{cpu.get('model')}-{cpu.get('usable_cores')}c-{isa_label(cpu.get('isa') or [])}"
    return re.sub(r"[^a-z0-9]+", "-", str(base).lower()).strip("-")


def model_figures(name: str, size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Mult-adds and params of the model at input ``size`` (H, W; default its spec's) (edgeconv's profiler, meta
    device)."""
    try:
        from edgeconv.profile import profile_model

        report = profile_model(name, size)
        return {"macs": report.macs, "params": report.params}
    except (EdgeconvError, ImportError, RuntimeError) as exc:
        log.warning("no mult-add count for %s: %s", name, exc)
        return {"macs": None, "params": None}


def chosen_weights(name: str, weights: str) -> str | None:
    """``--weights`` for one model: a catalog name or path, or None for random (``auto``: the catalog's ImageNet
    checkpoint where its package is installed)."""
    if weights != "auto":
        return None if weights == "random" else weights
    from edgeconv.zoo import get_spec
    from edgeconv.zoo.weights import find_catalog_file

    entry = next((e for e in get_spec(name).weights if e.name == "imagenet"), None)
    if entry is None:
        return None
    try:
        find_catalog_file(entry)
    except EdgeconvError as exc:
        log.warning("%s: random weights (%s)", name, exc)
        return None
    return entry.name


def build_module(name: str, weights: str) -> tuple[Any, str | None]:
    """The zoo model in its deployment form, built once per run (every runner copies it): the catalog checkpoint when
    ``weights`` is ``auto`` and one is installed, else random weights from the export's seed."""
    import torch

    from edgeconv.zoo import create_model

    chosen = chosen_weights(name, weights)
    torch.manual_seed(0)
    module = create_model(name, weights=chosen)
    if name in REPARAMETERIZE:
        module = module.reparameterize()
    return module.eval(), chosen


def artifact_target(name: str, args: argparse.Namespace) -> Target:
    """models/NAME resolved as a benchmark target, exported first (FP32, dynamic batch, catalog weights per
    ``--weights``; with ``--input-sizes`` dynamic height and width too, at the first size) when it is not there yet."""
    folder = Path(args.models_dir) / name
    if not any(folder.glob("*.onnx")):
        from edgeconv.artifact import export_artifact

        sizes = {"dynamic_size": True, "input_size": fitted_size(name, args.input_sizes[0])} if args.input_sizes else {}
        export_artifact(name, folder, weights=chosen_weights(name, args.weights), dynamic_batch=True, **sizes)
    return resolve_target(str(folder), models_dir=Path(args.models_dir))


def fitted_size(name: str, side: int) -> tuple[int, int]:
    """(side, side), or for a model with a size rule (the valid-conv U-Net) the first side at or above it that the
    model takes (checked on the meta device)."""
    from edgeconv.profile import profile_model
    from edgeconv.zoo import get_spec

    if get_spec(name).min_input is None:
        return side, side
    for candidate in range(max(side, get_spec(name).min_input or 1), side + 257):
        try:
            profile_model(name, (candidate, candidate))
        except (EdgeconvError, ValueError, RuntimeError):
            continue
        if candidate != side:
            log.info("%s takes no %d-pixel side: %d instead", name, side, candidate)
        return candidate, candidate
    raise InvalidArgumentError(f"{name} takes no side from {side} to {side + 256}")


def torch_target(name: str, module: Any, size: tuple[int, int] | None = None) -> Target:
    """A target for the torch backend alone: no ONNX export needed (the GPU machine runs torch only)."""
    from edgeconv.zoo import get_spec

    channels, *spatial = get_spec(name).input_size
    return Target(name=name, onnx={}, input_name="input", input_shape=(-1, channels, *(size or spatial)),
                  zoo_name=name, module_factory=lambda: module)  # fmt: skip


def run_model(
    name: str,
    available: dict[str, Any],
    args: argparse.Namespace,
    compile_spent: float,
    size: tuple[int, int] | None = None,
) -> tuple[list[dict[str, Any]], list[str], float]:
    """Measure one model in every configuration (at input ``size``, (H, W), with ``--input-sizes``); returns its rows,
    what was not run (and why), and the seconds its compiled configurations spent in their first (compiling) runs."""
    if set(b for entries in available.values() for b, _, _ in entries) == {"torch"}:
        module, weights = build_module(name, args.weights)
        target = torch_target(name, module, size)
    else:
        # ONNX engines run the artifact in models/NAME (exported here with the catalog weights when missing); the torch
        # rows run the model it was exported from, rebuilt from its manifest, so every row computes the same function.
        target = artifact_target(name, args)
        weights = ((target.manifest.get("weights") or {}).get("name")) or None
        module = target.module_factory() if target.module_factory else None
        if module is not None and name in REPARAMETERIZE:
            module = module.reparameterize()
        target.module_factory = lambda: module
    cases: list[BenchCase] = []
    skipped: list[str] = []
    gate = dataclasses.asdict(Gate.of(target.manifest))
    variants = list(args.torch_variants)
    if compile_spent >= args.compile_budget:
        dropped = [v for v in variants if v.startswith("compile")]
        variants = [v for v in variants if not v.startswith("compile")]
        skipped += [f"torch[{v}]: compile budget of {args.compile_budget:.0f} s spent ({compile_spent:.0f} s)"
                    for v in dropped]  # fmt: skip
    for device, entries in available.items():
        for backend, provider, precisions in entries:
            wanted = [p for p in precisions if p in args.precisions]
            if backend == "onnxruntime" and provider == "cpu" and not args.ort_cpu_fp16:
                wanted = [p for p in wanted if p != "fp16"]  # ORT CPU has few fp16 kernels: casts, not a deployment
            for variant in variants if backend == "torch" else ["eager"]:
                flags = parse_variant(variant)
                if device != "cuda" and (flags["cuda_graph"] or flags["tf32"]):
                    skipped.append(f"torch[{variant}]/{device}: CUDA only")
                    continue
                precisions_here = [p for p in wanted if not (flags["tf32"] and p != "fp32")]  # TF32 is an fp32 mode
                options = CaseOptions(device=device, threads=args.threads, ort_provider=provider,
                                      openvino_precisions=args.ov_precisions, **flags)  # fmt: skip
                found, why = make_cases(
                    target, backends=[backend], precisions=precisions_here, batches=args.batch, options=options,
                    size=size,
                )  # fmt: skip
                for case in found:
                    case.info["weights"] = weights or "random"
                    case.info["gate"] = gate
                cases += found
                skipped += why
    images = reference = None
    if args.fidelity >= 0:
        from edgeconv.zoo import get_spec

        dense = get_spec(name).output == "label_map"
        crops = min(args.fidelity, DENSE_FIDELITY) if dense else args.fidelity
        images, reference, described = target_reference(target, crops, size if target.dynamic_size else None)

    def check(case: BenchCase) -> dict[str, Any]:
        return {**fidelity_check(case, images, reference), "reference": described}

    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    for repeat in range(args.repeats):
        results = measure(
            cases, warmup=args.warmup, iterations=args.iters, seconds=args.seconds, block=args.block,
            check=check if images is not None and repeat == 0 else None, failures=failures,
        )  # fmt: skip
        for result in results:
            rows.append({**result.row(), "repeat": repeat})
            if result.case.info.get("variant", "").startswith("compile"):
                compile_spent += (result.stats.cold_ms or 0.0) / 1000.0
    skipped += [f"failed: {f}" for f in dict.fromkeys(failures)]
    return rows, skipped, compile_spent


def breakdowns(
    name: str, args: argparse.Namespace, available: dict[str, Any], size: tuple[int, int] | None = None
) -> list[dict[str, Any]]:
    """Per-op-class latency at batch 1 of the FP32 and (where the artifact has one) INT8 ONNX, on ONNX Runtime CPU
    and native TensorRT where installed."""
    from edgeconv.profile.latency import profile_latency

    target = resolve_target(name, models_dir=Path(args.models_dir))
    precisions = [p for p in ("fp32", "int8") if p in args.precisions and p in target.onnx]
    out = []
    backends = ["onnxruntime"] + (["tensorrt"] if any(b == "tensorrt" for b, _, _ in available.get("cuda", [])) else [])
    for backend in backends:
        for precision in precisions:
            try:
                result = profile_latency(
                    name, backend=backend, precision=precision, batch=1, warmup=args.warmup, runs=args.profile_runs,
                    threads=args.threads, device="cuda" if backend == "tensorrt" else "cpu",
                    models_dir=args.models_dir, input_size=size if target.dynamic_size else None,
                )  # fmt: skip
            except EdgeconvError as exc:
                log.warning("no %s %s breakdown for %s: %s", backend, precision, name, exc)
                continue
            data = result.to_dict()
            data["by_module"] = result.by_module()[:10]
            if size is not None:
                data["input_size"] = f"{size[0]}x{size[1]}"
            out.append(data)
    return out


def config_key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (
        r["model"], r.get("input_size"), r["backend"], r.get("provider"), r.get("variant"), r["precision"], r["device"],
        r["batch"],
    )  # fmt: skip


def model_label(r: dict[str, Any]) -> str:
    """A row's model, with its input size where the run had several (``--input-sizes``)."""
    return r["model"] + (f" @{r['input_size']}" if r.get("input_size") else "")


def spread(rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], float]:
    """Run-to-run spread of p50 per configuration: (max - min) / min over the repeats."""
    groups: dict[tuple[Any, ...], list[float]] = {}
    for r in rows:
        groups.setdefault(config_key(r), []).append(r["p50_ms"])
    return {k: (max(v) - min(v)) / min(v) for k, v in groups.items() if len(v) > 1 and min(v) > 0}


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration: the median-of-repeats p50 (and the repeat with that p50's other figures)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(config_key(r), []).append(r)
    spreads = spread(rows)
    out = []
    for key, group in groups.items():
        group = sorted(group, key=lambda r: r["p50_ms"])
        chosen = dict(group[len(group) // 2])
        chosen["p50_spread"] = spreads.get(key)
        chosen.pop("repeat", None)
        chosen["check"] = next((r["check"] for r in group if r.get("check")), None)  # measured in repeat 0
        out.append(chosen)
    # PyTorch eager FP32 on the same device and batch is the baseline of the speed-up column.
    base = {
        (model_label(r), r["device"], r["batch"]): r["p50_ms"]
        for r in out
        if r["backend"] == "torch" and r.get("variant", "eager") == "eager" and r["precision"] == "fp32"
    }
    for r in out:
        b = base.get((model_label(r), r["device"], r["batch"]))
        r["vs_torch"] = r["p50_ms"] / b if b else None
    # The recommendation: per model (and input size) and batch, the fastest row whose fidelity passes the gate.
    for model in dict.fromkeys(model_label(r) for r in out):
        rows = [r for r in out if model_label(r) == model and r.get("gate")]
        if rows:
            for r in recommend(rows, Gate(**rows[0]["gate"])).values():
                r["recommended"] = True
    return out


def clocks(state: dict[str, Any], when: str) -> str:
    if "sm_clock_mhz" not in state:
        return f"clocks {when}: not read (no NVML)"
    return (
        f"{when}: SM {state['sm_clock_mhz']} / {state['max_sm_clock_mhz']} MHz, memory {state['mem_clock_mhz']} / "
        f"{state['max_mem_clock_mhz']} MHz, {state['temperature_c']} C, power limit {state['power_limit_w']:.0f} W"
    )


def fidelity_cells(check: dict[str, Any] | None) -> str:
    if not check:
        return " |  |  | "
    ok = {True: "ok", False: "**no**", None: "-"}[check.get("passed")]
    confident = check.get("confident_agreement")
    conf = f"{100 * confident:.1f}% of {check['confident_samples']:,}" if confident is not None else "-"
    agree = f"{100 * check['top1_agreement']:.1f}%"
    if check.get("unit") == "pixel":  # a label map: per-pixel agreement, and the mean IoU of the two maps
        agree = f"{100 * check['top1_agreement']:.2f}% of px, mIoU {check['mean_iou']:.3f}"
    return f"{check['max_rel_error']:.1e} | {ok} | {agree} | {conf}"


def paper_section(results: Path, summary: list[dict[str, Any]], env: dict[str, Any]) -> list[str]:
    """The ShuffleNet V2 paper's Table 8 beside these results (``edgeconv tables shufflenet_v2 --bench`` as
    Markdown): only its measured rows, so nothing is profiled each time the file is rewritten."""
    from edgeconv.profile.tables import GPU_SPEED_METRIC, LATENCY_METRIC, BenchResults, compute_table, get_table

    if not any(r["model"].startswith("shufflenet_v2") for r in summary):
        return []  # the table's rows are ShuffleNet V2's (a dense-prediction run has none)
    devices = {r.get("device") for r in summary}
    wanted = {m for m, device in ((LATENCY_METRIC, "cpu"), (GPU_SPEED_METRIC, "cuda")) if device in devices}
    spec = get_table("shufflenet_v2")
    spec = dataclasses.replace(spec, rows=tuple(r for r in spec.rows if r.metric in wanted))
    rows = compute_table(spec, bench=BenchResults(path=results, summary=summary, env=env)).rows if wanted else []
    if not rows:
        return []
    lines = [
        "",
        "## Beside the ShuffleNet V2 paper (Ma et al. 2018, Table 8)",
        "",
        "The paper: GPU = GTX 1080Ti, cuDNN 7.0, batch 8, batches/s from the mean of 100 runs; ARM = Snapdragon 810, "
        "one thread, batch 1, shown as ms per image. Other hardware, so what compares is each figure's ratio to "
        "ShuffleNet V2 1x (`edgeconv tables shufflenet_v2 --bench` prints the same).",
        "",
        "| row | metric | paper | edgeconv | x 1x paper | x 1x ours | measured with |",
        "|---|---|---:|---:|---:|---:|---|",
    ]

    def cell(value: float | None, digits: int = 2) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    for r in rows:
        lines.append(
            f"| {r.label} | {r.metric} | {cell(r.paper, 1)} | {cell(r.edgeconv, 1)} | {cell(r.ratio_paper)} | "
            f"{cell(r.ratio_edgeconv)} | {r.measured_with or r.explanation} |"
        )
    return lines


def markdown(summary: list[dict[str, Any]], parts: list[dict[str, Any]], env: dict[str, Any], args: argparse.Namespace,
             skipped: list[str], path: Path) -> str:  # fmt: skip
    cpu, gpu, versions = env["cpu"], env.get("gpu"), env["versions"]
    lines = [
        f"# Latency on {machine_name(env)}" + (" (quick smoke run: not for comparison)" if args.quick else ""),
        "",
        f"- Command: `{getattr(args, 'command', None) or 'python bench/run_bench.py'}`",
        f"- CPU: {cpu.get('model')} ({cpu.get('usable_cores')} usable / {cpu.get('logical_cores')} logical cores, "
        f"{' '.join(cpu.get('isa') or []) or 'ISA not read'}, "
        f"governor {cpu.get('governor', 'n/a')}, load {cpu.get('load_avg_1m')} at start)",
        (f"- GPU: {gpu.get('name')} (cc {gpu.get('compute_capability')}, {gpu.get('memory_gb')} GiB, driver "
         f"{gpu.get('driver')}, cuDNN {gpu.get('cudnn')}); {clocks(gpu, 'at start')}; "
         f"{clocks(env.get('gpu_at_end') or {}, 'at the end')}" if gpu else "- GPU: none"),
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v),
    ]  # fmt: skip
    if env.get("jetson"):
        jetson = env["jetson"]
        lines.append(f"- Jetson: {jetson.get('model')}, L4T {jetson.get('l4t')}, power mode {jetson.get('power_mode')}")
    lines += [
        f"- Method: batch {','.join(map(str, args.batch))}, warm-up {args.warmup}, "
        + (f"torch variants {', '.join(args.torch_variants)} (cuDNN benchmark mode on, FP32 without TF32 unless "
           "+tf32), " if "cuda" in {r['device'] for r in summary} else "")
        + (f"{args.iters} iterations" if args.iters else f"{args.seconds} s")
        + f" per configuration, interleaved in blocks of {args.block}, {args.repeats} repeat(s); p50 is the median "
        "repeat's; spread = (max - min) / min of p50 over repeats; threads "
        + (str(args.threads) if args.threads else "library default"),
        "",
        "Fidelity: each configuration's outputs against "
        + (f"{reference_of(summary)}, on {fidelity_images_of(summary)} images (the export check's 4 photos + "
           "held-out crops of calibration/eval)" if summary and summary[0].get("check") else "nothing (--fidelity -1)")
        + ": max relative error (tolerance by the arithmetic a row runs: FP32 1e-4, FP16/TF32 1e-2, bf16 8e-2; ok = "
        "within it and no top-1 change beyond a near tie; INT8 has the gate instead), top-1 agreement overall and "
        "where FP32 is confident (p > 0.5); for a label map, per-pixel agreement (px) and the mean IoU of its map and "
        "FP32's.",
        "",
        "| model | M mult-adds | M params | weights | backend | precision | device | batch | p50 ms | p90 ms | p99 ms "
        "| mean ms | std ms | img/s | cold ms | vs torch | spread | max rel err | ok | top-1 agree | confident agree |",
        "|---|---:|---:|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]  # fmt: skip
    for r in summary:
        backend = engine_label(r) + (" **rec**" if r.get("recommended") else "")
        macs = f"{r['macs'] / 1e6:.0f}" if r.get("macs") else "?"
        params = f"{r['params'] / 1e6:.2f}" if r.get("params") else "?"
        vs = f"{r['vs_torch']:.2f}x" if r.get("vs_torch") else ""
        sp = f"{100 * r['p50_spread']:.1f}%" if r.get("p50_spread") is not None else ""
        lines.append(
            f"| {model_label(r)} | {macs} | {params} | {r.get('weights', '')} | {backend} | {r['precision']} | "
            f"{r['device']} | {r['batch']} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} | {r['p99_ms']:.3f} | "
            f"{r['mean_ms']:.3f} | {r['std_ms']:.3f} | {r['throughput']:.1f} | {r['cold_ms']:.1f} | {vs} | {sp} | "
            + fidelity_cells(r.get("check"))
            + " |"
        )
    recommended = [r for r in summary if r.get("recommended")]
    if recommended:
        gate = Gate(**recommended[0]["gate"])
        lines += ["", f"## Recommendation: the fastest row that passes the gate ({gate.describe()})", ""]
        for r in recommended:
            lines.append(
                f"- {model_label(r)}, batch {r['batch']}: {engine_label(r)} {r['precision']} on {r['device']}, "
                f"p50 {r['p50_ms']:.3f} ms, top-1 agreement {100 * r['check']['top1_agreement']:.1f}%"
            )
    lines += paper_section(path, summary, env)
    if parts:
        lines += [
            "",
            "## Runtime by operator class (ShuffleNet V2, Ma et al. 2018, Fig. 2), batch 1, % of end-to-end",
            "",
            "| model | backend | precision | end-to-end ms | " + " | ".join(CLASS_ORDER) + " |",
            "|---|---|---|---:|" + "---:|" * len(CLASS_ORDER),
        ]
        for p in parts:
            cells = " | ".join(f"{p['classes'][c]['pct']:.1f}" for c in CLASS_ORDER)
            lines.append(
                f"| {model_label(p)} | {p['backend']} | {p.get('precision', 'fp32')} | {p['end_to_end_ms']:.3f} | "
                f"{cells} |"
            )
        lines += ["", "'Not in any layer' is the measured end-to-end time minus the sum of per-layer kernel times."]
    if skipped:
        lines += ["", "## Not run", ""] + [f"- {s}" for s in not_run(skipped, bool(getattr(args, "input_sizes", None)))]
    return "\n".join(lines) + "\n"


def reference_of(summary: list[dict[str, Any]]) -> str:
    """What the rows' fidelity was measured against (older results files do not say: PyTorch FP32 then)."""
    found = dict.fromkeys((r.get("check") or {}).get("reference", "PyTorch FP32 on the CPU") for r in summary)
    return " / ".join(found) if found else "PyTorch FP32 on the CPU"


def not_run(skipped: list[str], dynamic_size: bool = False) -> list[str]:
    """The 'Not run' list, with the models that have no INT8 file (the usual case) folded into one line."""
    no_int8 = sorted({s.split()[0] for s in skipped if "has no int8 ONNX" in s})
    rest = sorted({s for s in skipped if "has no int8 ONNX" not in s})
    if no_int8:
        flags = "--int8 --dynamic-size --dynamic-batch --input-size N" if dynamic_size else "--int8"
        rest.insert(
            0,
            f"int8 rows of {', '.join(no_int8)}: no INT8 artifact in models/ (export one with "
            f"`edgeconv export NAME {flags}`; an INT8 export takes minutes, so the driver never makes one)",
        )
    return rest


def fidelity_images_of(summary: list[dict[str, Any]]) -> str:
    """How many images the rows' fidelity was measured on (a label map's ``samples`` counts pixels)."""
    counts = dict.fromkeys(r["check"].get("images") or r["check"]["samples"] for r in summary if r.get("check"))
    return " / ".join(map(str, counts))


def plots(summary: list[dict[str, Any]], parts: list[dict[str, Any]], stem: Path) -> list[Path]:
    try:
        import matplotlib
    except ImportError:
        log.warning("matplotlib missing (pip install 'edgeconv[plot]'): no plots")
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, ax = plt.subplots(figsize=(8, 5))
    series: dict[str, list[dict[str, Any]]] = {}
    for r in summary:
        if r["batch"] == min(x["batch"] for x in summary) and r.get("macs"):
            label = f"{engine_label(r)} {r['precision']} {r['device']}"  # OpenVINO f32 and bf16 are two series
            series.setdefault(label, []).append(r)
    for label, rows in series.items():
        rows = sorted(rows, key=lambda r: r["macs"])
        ax.plot([r["macs"] / 1e6 for r in rows], [r["p50_ms"] for r in rows], "o", label=label)
        for r in rows:
            ax.annotate(model_label(r), (r["macs"] / 1e6, r["p50_ms"]), fontsize=6, alpha=0.7)
    ax.set_xlabel("mult-adds [M]")
    ax.set_ylabel("p50 latency [ms], batch 1")
    ax.set_title("Latency vs mult-adds")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = stem.with_name(stem.name + "_latency_vs_macs.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)
    if parts:
        fig, ax = plt.subplots(figsize=(8, 0.4 * len(parts) + 1.5))
        labels = [f"{model_label(p)} ({p['backend']} {p.get('precision', 'fp32')})" for p in parts]
        left = [0.0] * len(parts)
        for name in CLASS_ORDER:
            values = [max(p["classes"][name]["pct"], 0.0) for p in parts]
            ax.barh(labels, values, left=left, label=name)
            left = [a + b for a, b in zip(left, values, strict=True)]
        ax.set_xlabel("% of end-to-end latency")
        ax.legend(fontsize=7, ncol=5, loc="lower center", bbox_to_anchor=(0.5, 1.0))
        fig.tight_layout()
        path = stem.with_name(stem.name + "_breakdown.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def select(available: dict[str, Any], devices: list[str] | None, backends: list[str] | None) -> dict[str, Any]:
    """``detect()`` narrowed to the asked devices and backends; asking for one the machine lacks is an error."""
    for device in devices or []:
        if device not in available:
            raise InvalidArgumentError(f"--device {device}: not available here (found {', '.join(available)})")
    found = {b for entries in available.values() for b, _, _ in entries}
    for backend in backends or []:
        if backend not in found:
            raise InvalidArgumentError(f"--backends {backend}: not available here (found {', '.join(sorted(found))})")
    narrowed = {
        device: [e for e in entries if backends is None or e[0] in backends]
        for device, entries in available.items()
        if devices is None or device in devices
    }
    return {device: entries for device, entries in narrowed.items() if entries}


def write_results(
    stem: Path, env: dict[str, Any], args: argparse.Namespace, rows: list[dict[str, Any]], parts: list[dict[str, Any]],
    skipped: list[str], start: float, *, final: bool,
) -> list[Path]:  # fmt: skip
    from edgeconv.files import write_atomic

    summary = summarize(rows)
    env = {**env, "gpu_at_end": gpu_state() if env.get("gpu") else None}  # clocks after the load, not only idle
    document = {"env": env, "args": {k: v for k, v in vars(args).items()}, "rows": rows, "summary": summary,
                "breakdowns": parts, "skipped": skipped, "seconds": round(time.time() - start, 1),
                "complete": final}  # fmt: skip
    json_path, md_path = stem.with_suffix(".json"), stem.with_suffix(".md")
    write_atomic(json_path, json.dumps(document, indent=1, default=str).encode())
    write_atomic(md_path, markdown(summary, parts, env, args, skipped, json_path).encode())
    return [json_path, md_path, *(plots(summary, parts, stem) if final else [])]


def render(path: Path) -> int:
    """Markdown and plots again from a results JSON, with the arguments it was measured with."""
    from edgeconv.files import write_atomic

    document = json.loads(path.read_text(encoding="utf-8"))
    args = argparse.Namespace(**document["args"])
    summary = summarize(document["rows"])
    write_atomic(path.with_suffix(".md"), markdown(summary, document["breakdowns"], document["env"], args,
                                                   document["skipped"], path).encode())  # fmt: skip
    plots(summary, document["breakdowns"], path.with_suffix(""))
    log.info("rendered %s", path.with_suffix(".md"))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke check: 2 models, batch 1, few iterations")
    parser.add_argument("--models", default=None,
                        help="comma list of zoo names, or a set: comparison (the default: MobileNet / ShuffleNet "
                        "papers' models), dense (segmentation networks, at --input-sizes 256,512), "
                        "video (3D CNNs)")  # fmt: skip
    parser.add_argument("--input-sizes", default=None,
                        help="comma list of square input sides: every model runs at each one from a --dynamic-size "
                        "artifact (default: the artifact's size; 256,512 for --models dense)")  # fmt: skip
    parser.add_argument("--device", default=None, help="comma list of cpu, cuda (default: every one detected)")
    parser.add_argument("--backends", default=None, help="comma list of torch, onnxruntime, tensorrt (default: all)")
    parser.add_argument("--batch", default=None, help="comma list of batch sizes (default 1; quick 1)")
    parser.add_argument("--precisions", default="fp32,fp16,int8")
    parser.add_argument("--torch-variants", default="eager",
                        help=f"comma list for the torch backend, from {', '.join(TORCH_VARIANTS)}")  # fmt: skip
    parser.add_argument("--compile-budget", type=float, default=float("inf"),
                        help="seconds of torch.compile (first runs of compiled variants) after which later models "
                        "run without the compile variants (listed under 'Not run')")  # fmt: skip
    parser.add_argument(
        "--fidelity",
        type=int,
        default=None,
        help="held-out crops for each row's fidelity check (default 200; quick 8); -1: no check",
    )
    parser.add_argument(
        "--ov-precisions",
        default="f32,default",
        help="OpenVINO inference precisions: f32, bf16, f16, default (OpenVINO's own for the CPU)",
    )
    parser.add_argument(
        "--weights",
        default="auto",
        help="auto (catalog checkpoint where installed, else random), random, or a catalog name",
    )
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--iters", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--block", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=None, help="whole-measurement repeats (default 3; quick 1)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--profile-runs", type=int, default=None)
    parser.add_argument("--no-breakdown", action="store_true")
    parser.add_argument("--ort-cpu-fp16", action="store_true", help="also time FP16 ONNX on the ORT CPU EP")
    parser.add_argument("--models-dir", default=str(ROOT / "models"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--machine", default=None, help="result file name (default: from the GPU/CPU model)")
    parser.add_argument(
        "--render",
        default=None,
        metavar="RESULTS.json",
        help="only re-write the Markdown and plots of an existing results file (nothing is measured)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if args.render:
        return render(Path(args.render))
    args.command = " ".join(["python bench/run_bench.py", *(argv if argv is not None else sys.argv[1:])])

    quick = args.quick
    chosen = args.models or ("quick" if quick else "comparison")
    models = list({**SETS, "quick": QUICK_SET}.get(chosen) or chosen.split(","))
    try:
        sides = args.input_sizes or (",".join(map(str, DENSE_SIZES)) if chosen == "dense" else "")
        args.input_sizes = [int(v) for v in sides.split(",") if v.strip()]
    except ValueError:
        parser.error(f"--input-sizes {args.input_sizes!r}: give square sides separated by commas, e.g. 256,512")
    if any(v < 16 for v in args.input_sizes):
        parser.error(f"--input-sizes {args.input_sizes}: sides must be at least 16 pixels")
    args.batch = [int(b) for b in (args.batch or "1").split(",")]
    args.precisions = args.precisions.split(",")
    args.torch_variants = [v.strip() for v in args.torch_variants.split(",") if v.strip()]
    args.ov_precisions = tuple(None if v == "default" else v for v in args.ov_precisions.split(",") if v)
    args.warmup = args.warmup if args.warmup is not None else (2 if quick else 20)
    if args.iters is None and args.seconds is None:
        args.iters = 10 if quick else 300
    args.repeats = args.repeats or (1 if quick else 3)
    args.profile_runs = args.profile_runs or (5 if quick else 100)
    args.fidelity = args.fidelity if args.fidelity is not None else (8 if quick else 200)

    from edgeconv.zoo import list_models

    registered = set(list_models())
    try:
        for variant in args.torch_variants:
            parse_variant(variant)
        available = select(
            detect(),
            args.device.split(",") if args.device else None,
            args.backends.split(",") if args.backends else None,
        )
    except InvalidArgumentError as exc:
        parser.error(str(exc))
    env = environment()
    log.info("backends: %s", json.dumps(available))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / ((args.machine or machine_name(env)) + ("-quick" if quick else ""))
    rows: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    skipped: list[str] = []
    compile_spent = 0.0
    start = time.time()
    with_ort = any(b == "onnxruntime" for entries in available.values() for b, _, _ in entries)
    for name in models:
        if name not in registered:
            skipped.append(f"{name}: not in the zoo")
            continue
        sizes: list[tuple[int, int] | None] = [None]
        if args.input_sizes:
            try:
                sizes = list(dict.fromkeys(fitted_size(name, side) for side in args.input_sizes))
            except EdgeconvError as exc:
                skipped.append(f"{name}: {exc}")
                continue
        for size in sizes:
            label = name + (f" @{size[0]}x{size[1]}" if size else "")
            log.info("== %s", label)
            try:
                model_rows, why, compile_spent = run_model(name, available, args, compile_spent, size)
            except EdgeconvError as exc:
                skipped.append(f"{label}: {exc}")
                continue
            figures = model_figures(name, size)
            rows += [{**r, **figures} for r in model_rows]
            skipped += [f"{label} {w}" for w in why]
            if with_ort and not args.no_breakdown:
                parts += breakdowns(name, args, available, size)
            if rows:  # after every model: an interrupted run keeps what it measured
                write_results(stem, env, args, rows, parts, skipped, start, final=False)
    if not rows:
        log.error("nothing ran: %s", "; ".join(skipped))
        return 1
    written = write_results(stem, env, args, rows, parts, skipped, start, final=True)
    log.info("wrote %s", ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
