"""Benchmark driver: the MobileNet / ShuffleNet comparison set over every backend and precision this machine has.

    python bench/run_bench.py                 # full run: writes bench/results/<machine>.{json,md} + plots
    python bench/run_bench.py --quick         # smoke check: 2 models, few iterations, <machine>-quick.*

Run the full mode on a quiet machine (nothing else running, fixed CPU governor, on a Jetson a fixed nvpmodel mode and
``jetson_clocks``): every row records the environment, including the 1-minute load average at the time of the run.
What runs is detected, not configured: PyTorch eager on CPU (and CUDA fp32/fp16 when torch sees a GPU), ONNX Runtime
with the execution providers its build has (CPU; CUDA/TensorRT EPs with onnxruntime-gpu), native TensorRT when
installed (fp32/fp16, int8 when the artifact has a QDQ graph). All configurations of one model are measured
interleaved (edgeconv.bench.measure), and the whole measurement is repeated ``--repeats`` times so run-to-run spread
is reported next to the figures. Per-layer breakdowns (ShuffleNet V2's op classes) come from the ONNX Runtime profiler
(and TensorRT's IProfiler when available).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from edgeconv.backends.artifacts import resolve_target  # noqa: E402
from edgeconv.bench import CaseOptions, environment, make_cases, measure  # noqa: E402
from edgeconv.errors import EdgeconvError  # noqa: E402

log = logging.getLogger("run_bench")

COMPARISON_SET = (
    "mobilenet_v1", "mobilenet_v2", "mobilenet_v2_140", "shufflenet_v1", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5", "shufflenet_v2_x2_0", "mobilenet_v3_large", "mobilenet_v3_small", "efficientnet_b0",
    "resnet18", "resnet50", "repvgg_a0", "nasnet_a_mobile",
)  # fmt: skip
QUICK_SET = ("mobilenet_v2", "shufflenet_v2_x1_0")
# Deployment form for the PyTorch baseline too: RepVGG is benchmarked re-parameterized (the exported ONNX is fused).
REPARAMETERIZE = {"repvgg_a0"}
CLASS_ORDER = ("Conv", "Elementwise", "Data movement", "Other", "Not in any layer")


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
    from edgeconv.backends.tensorrt import tensorrt_version

    if tensorrt_version() is not None:
        gpu.append(("tensorrt", None, ["fp32", "fp16", "int8"]))
    if gpu:
        found["cuda"] = gpu
    return found


def machine_name(env: dict[str, Any]) -> str:
    gpu = (env.get("gpu") or {}).get("name")
    jetson = (env.get("jetson") or {}).get("model")
    base = jetson or gpu or f"{env['cpu'].get('model')}-{env['cpu'].get('usable_cores')}c"
    return re.sub(r"[^a-z0-9]+", "-", str(base).lower()).strip("-")


def model_figures(name: str) -> dict[str, Any]:
    """Mult-adds and params of the model at its default input (edgeconv's profiler, meta device)."""
    try:
        from edgeconv.profile import profile_model

        report = profile_model(name)
        return {"macs": report.macs, "params": report.params}
    except (EdgeconvError, ImportError, RuntimeError) as exc:
        log.warning("no mult-add count for %s: %s", name, exc)
        return {"macs": None, "params": None}


def run_model(name: str, available: dict[str, Any], args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[str]]:
    target = resolve_target(name, models_dir=Path(args.models_dir))
    if name in REPARAMETERIZE and target.module_factory is not None:
        factory = target.module_factory

        def fused() -> Any:
            return factory().reparameterize()

        target.module_factory = fused
    cases = []
    skipped: list[str] = []
    for device, entries in available.items():
        for backend, provider, precisions in entries:
            wanted = [p for p in precisions if p in args.precisions]
            if backend == "onnxruntime" and provider == "cpu" and not args.ort_cpu_fp16:
                wanted = [p for p in wanted if p != "fp16"]  # ORT CPU has few fp16 kernels: casts, not a deployment
            options = CaseOptions(device=device, threads=args.threads, ort_provider=provider)
            found, why = make_cases(target, backends=[backend], precisions=wanted, batches=args.batch, options=options)
            cases += found
            skipped += why
    rows: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        results = measure(cases, warmup=args.warmup, iterations=args.iters, seconds=args.seconds, block=args.block)
        for result in results:
            rows.append({**result.row(), "repeat": repeat})
    return rows, skipped


def breakdowns(name: str, args: argparse.Namespace, available: dict[str, Any]) -> list[dict[str, Any]]:
    from edgeconv.profile.latency import profile_latency

    out = []
    backends = ["onnxruntime"] + (["tensorrt"] if any(b == "tensorrt" for b, _, _ in available.get("cuda", [])) else [])
    for backend in backends:
        try:
            result = profile_latency(
                name, backend=backend, batch=1, warmup=args.warmup, runs=args.profile_runs, threads=args.threads,
                device="cuda" if backend == "tensorrt" else "cpu", models_dir=args.models_dir,
            )  # fmt: skip
        except EdgeconvError as exc:
            log.warning("no %s breakdown for %s: %s", backend, name, exc)
            continue
        data = result.to_dict()
        data["by_module"] = result.by_module()[:10]
        out.append(data)
    return out


def spread(rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], float]:
    """Run-to-run spread of p50 per configuration: (max - min) / min over the repeats."""
    groups: dict[tuple[Any, ...], list[float]] = {}
    for r in rows:
        key = (r["model"], r["backend"], r.get("provider"), r["precision"], r["device"], r["batch"])
        groups.setdefault(key, []).append(r["p50_ms"])
    return {k: (max(v) - min(v)) / min(v) for k, v in groups.items() if len(v) > 1 and min(v) > 0}


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration: the median-of-repeats p50 (and the repeat with that p50's other figures)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        key = (r["model"], r["backend"], r.get("provider"), r["precision"], r["device"], r["batch"])
        groups.setdefault(key, []).append(r)
    spreads = spread(rows)
    out = []
    for key, group in groups.items():
        group = sorted(group, key=lambda r: r["p50_ms"])
        chosen = dict(group[len(group) // 2])
        chosen["p50_spread"] = spreads.get(key)
        chosen.pop("repeat", None)
        out.append(chosen)
    # PyTorch eager on the same device and batch is the baseline of the speed-up column.
    base = {(r["model"], r["device"], r["batch"]): r["p50_ms"] for r in out if r["backend"] == "torch"}
    for r in out:
        b = base.get((r["model"], r["device"], r["batch"]))
        r["vs_torch"] = r["p50_ms"] / b if b else None
    return out


def markdown(summary: list[dict[str, Any]], parts: list[dict[str, Any]], env: dict[str, Any], args: argparse.Namespace,
             skipped: list[str]) -> str:  # fmt: skip
    cpu, gpu, versions = env["cpu"], env.get("gpu"), env["versions"]
    lines = [
        f"# Latency on {machine_name(env)}" + (" (quick smoke run: not for comparison)" if args.quick else ""),
        "",
        f"- CPU: {cpu.get('model')} ({cpu.get('usable_cores')} usable / {cpu.get('logical_cores')} logical cores, "
        f"governor {cpu.get('governor', 'n/a')}, load {cpu.get('load_avg_1m')} at start)",
        (f"- GPU: {gpu.get('name')} (cc {gpu.get('compute_capability')}, driver {gpu.get('driver')})" if gpu
         else "- GPU: none"),
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v),
    ]  # fmt: skip
    if env.get("jetson"):
        jetson = env["jetson"]
        lines.append(f"- Jetson: {jetson.get('model')}, L4T {jetson.get('l4t')}, power mode {jetson.get('power_mode')}")
    lines += [
        f"- Method: batch {','.join(map(str, args.batch))}, warm-up {args.warmup}, "
        + (f"{args.iters} iterations" if args.iters else f"{args.seconds} s")
        + f" per configuration, interleaved in blocks of {args.block}, {args.repeats} repeat(s); p50 is the median "
        "repeat's; spread = (max - min) / min of p50 over repeats; threads "
        + (str(args.threads) if args.threads else "library default"),
        "",
        "| model | M mult-adds | M params | backend | precision | device | batch | p50 ms | p90 ms | p99 ms | mean ms "
        "| std ms | img/s | cold ms | vs torch | spread |",
        "|---|---:|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for r in summary:
        backend = r["backend"] + (f" ({r['provider']})" if r.get("provider") else "")
        macs = f"{r['macs'] / 1e6:.0f}" if r.get("macs") else "?"
        params = f"{r['params'] / 1e6:.2f}" if r.get("params") else "?"
        vs = f"{r['vs_torch']:.2f}x" if r.get("vs_torch") else ""
        sp = f"{100 * r['p50_spread']:.1f}%" if r.get("p50_spread") is not None else ""
        lines.append(
            f"| {r['model']} | {macs} | {params} | {backend} | {r['precision']} | {r['device']} | {r['batch']} | "
            f"{r['p50_ms']:.3f} | {r['p90_ms']:.3f} | {r['p99_ms']:.3f} | {r['mean_ms']:.3f} | {r['std_ms']:.3f} | "
            f"{r['throughput']:.1f} | {r['cold_ms']:.1f} | {vs} | {sp} |"
        )
    if parts:
        lines += [
            "",
            "## Runtime by operator class (ShuffleNet V2, Ma et al. 2018, Fig. 2), batch 1, % of end-to-end",
            "",
            "| model | backend | end-to-end ms | " + " | ".join(CLASS_ORDER) + " |",
            "|---|---|---:|" + "---:|" * len(CLASS_ORDER),
        ]
        for p in parts:
            cells = " | ".join(f"{p['classes'][c]['pct']:.1f}" for c in CLASS_ORDER)
            lines.append(f"| {p['model']} | {p['backend']} | {p['end_to_end_ms']:.3f} | {cells} |")
        lines += ["", "'Not in any layer' is the measured end-to-end time minus the sum of per-layer kernel times."]
    if skipped:
        lines += ["", "## Not run", ""] + [f"- {s}" for s in sorted(set(skipped))]
    return "\n".join(lines) + "\n"


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
            label = f"{r['backend']}{'/' + r['provider'] if r.get('provider') else ''} {r['precision']} {r['device']}"
            series.setdefault(label, []).append(r)
    for label, rows in series.items():
        rows = sorted(rows, key=lambda r: r["macs"])
        ax.plot([r["macs"] / 1e6 for r in rows], [r["p50_ms"] for r in rows], "o", label=label)
        for r in rows:
            ax.annotate(r["model"], (r["macs"] / 1e6, r["p50_ms"]), fontsize=6, alpha=0.7)
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
        labels = [f"{p['model']} ({p['backend']})" for p in parts]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke check: 2 models, batch 1, few iterations")
    parser.add_argument("--models", default=None, help="comma list (default: the comparison set)")
    parser.add_argument("--batch", default=None, help="comma list of batch sizes (default 1; quick 1)")
    parser.add_argument("--precisions", default="fp32,fp16,int8")
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)

    quick = args.quick
    models = args.models.split(",") if args.models else list(QUICK_SET if quick else COMPARISON_SET)
    args.batch = [int(b) for b in (args.batch or "1").split(",")]
    args.precisions = args.precisions.split(",")
    args.warmup = args.warmup if args.warmup is not None else (2 if quick else 20)
    if args.iters is None and args.seconds is None:
        args.iters = 10 if quick else 300
    args.repeats = args.repeats or (1 if quick else 3)
    args.profile_runs = args.profile_runs or (5 if quick else 100)

    from edgeconv.zoo import list_models

    registered = set(list_models())
    available = detect()
    env = environment()
    log.info("backends: %s", json.dumps(available))
    rows: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    skipped: list[str] = []
    start = time.time()
    for name in models:
        if name not in registered:
            skipped.append(f"{name}: not in the zoo")
            continue
        log.info("== %s", name)
        try:
            model_rows, why = run_model(name, available, args)
        except EdgeconvError as exc:
            skipped.append(f"{name}: {exc}")
            continue
        figures = model_figures(name)
        rows += [{**r, **figures} for r in model_rows]
        skipped += [f"{name} {w}" for w in why]
        if not args.no_breakdown:
            parts += breakdowns(name, args, available)
    if not rows:
        log.error("nothing ran: %s", "; ".join(skipped))
        return 1
    summary = summarize(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / ((args.machine or machine_name(env)) + ("-quick" if quick else ""))
    document = {"env": env, "args": {k: v for k, v in vars(args).items()}, "rows": rows, "summary": summary,
                "breakdowns": parts, "skipped": skipped, "seconds": round(time.time() - start, 1)}  # fmt: skip
    from edgeconv.files import write_atomic

    write_atomic(stem.with_suffix(".json"), json.dumps(document, indent=1, default=str).encode())
    write_atomic(stem.with_suffix(".md"), markdown(summary, parts, env, args, skipped).encode())
    written = plots(summary, parts, stem)
    log.info("wrote %s", ", ".join(str(p) for p in [stem.with_suffix(".json"), stem.with_suffix(".md"), *written]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
