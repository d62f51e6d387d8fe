"""edgeconv's INT8 export beside NNCF's defaults over several draws of the calibration crops (issue 17).

``int8_peers.py`` compares one draw (seed 0). Graphs that differ only in the rounding of one tensor move top-1
agreement on its 1000 held-out crops by a point or more (``int8_budget.md``), so one draw says little about which
quantizer agrees more. Here, for each seed ``s``:

- edgeconv: ``python -m edgeconv export MODEL --weights imagenet --int8 --seed s`` (the calibration crops, the gate's
  held-out crops and AdaRound's batch order come from ``s``), timed wall-clock;
- NNCF's defaults: ``nncf.quantize`` on the FP32 ONNX with the same calibration crops (``load_calibration_data``'s
  crops are a function of the seed), ``subset_size`` = all of them.

Every graph is scored on the same held-out crops (``--eval-seed``, int8_peers' 1000 crops by default) against the same
FP32 reference on ONNX Runtime CPU, graph optimizations on, as deployed. The table has each seed, the mean and standard
deviation over seeds, and the paired difference per seed.

Run (about 2 minutes per seed on 2 cores; nothing else should share the cores while it times)::

    .venv/bin/python bench/int8_seeds.py --out bench/results/int8_seeds.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shlex
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # int8_peers, beside this file

import int8_peers  # noqa: E402

log = logging.getLogger("int8_seeds")


def parse_seeds(text: str) -> list[int]:
    """``0,1,2`` or ``0-7``: distinct non-negative seeds, in order."""
    seeds: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"--seeds {text!r}: give seeds such as 0,1,2 or a range such as 0-7")
        span = range(int(first), int(last) + 1) if dash else [int(first)]
        seeds += [s for s in span if s not in seeds]
    if len(seeds) < 2:
        raise ValueError(f"--seeds {text!r}: give at least two seeds, such as 0-7")
    return seeds


def summarize(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation over seeds of each tool's figures, and of edgeconv's top-1 minus NNCF's."""

    def spread(values: list[float]) -> dict[str, float]:
        return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0}

    summary: dict[str, Any] = {}
    for tool in ("edgeconv", "nncf"):
        rows = [s[tool] for s in per_seed if s.get(tool)]
        keys = ("top1", "confident", "mean_kl", "seconds")
        summary[tool] = {key: spread([r[key] for r in rows]) for key in keys} if rows else None
    both = [s for s in per_seed if s.get("edgeconv") and s.get("nncf")]
    differences = [s["edgeconv"]["top1"] - s["nncf"]["top1"] for s in both]
    summary["top1_difference"] = spread(differences) if differences else None
    summary["seeds_at_least_as_high"] = sum(d >= 0 for d in differences)
    summary["seeds_compared"] = len(differences)
    return summary


def _figures(row: int8_peers.Row) -> dict[str, Any]:
    fid = row.fidelity or {}
    return {
        "top1": fid["top1_agreement"],
        "confident": fid["confident_agreement"],
        "mean_kl": fid["mean_kl"],
        "seconds": row.seconds,
    }


def edgeconv_row(
    model: str, seed: int, tmp: Path, held_out: Any, reference: Any, entry: dict[str, Any]
) -> int8_peers.Row:
    """``edgeconv export MODEL --weights imagenet --int8 --seed SEED`` as a user types it, timed and scored."""
    out = tmp / f"edgeconv-{seed}"
    cmd = [sys.executable, "-m", "edgeconv", "export", model, "--weights", "imagenet", "--int8", "--seed", str(seed)]
    cmd += ["--out", str(out), "--force"]
    row = int8_peers.Row("edgeconv", f"seed {seed}", "onnxruntime", " ".join(cmd[3:]))
    logfile = tmp / f"edgeconv-{seed}.log"
    code, row.seconds = int8_peers.run_cli(cmd, logfile)
    if code == 0:
        int8_peers.score(row, out / "model_int8.onnx", held_out, reference)
        entry["edgeconv"] = _figures(row)
    else:
        entry["edgeconv_error"] = logfile.read_text(errors="replace")[-500:]
    return row


def nncf_row(
    fp32: Path, seed: int, calibration: Any, tmp: Path, held_out: Any, reference: Any, entry: dict[str, Any]
) -> int8_peers.Row:
    """NNCF's defaults on ``calibration`` (all of it), timed from loading the FP32 ONNX to saving the INT8 one."""
    row = int8_peers.Row("NNCF", f"defaults, seed {seed}", "onnxruntime", "nncf.quantize(defaults)")
    path = tmp / f"nncf-{seed}.onnx"
    try:
        row.seconds = int8_peers.nncf_quantize(fp32, calibration, path)
        int8_peers.score(row, path, held_out, reference)
        entry["nncf"] = _figures(row)
    except Exception as exc:  # a failed draw is a result too
        entry["nncf_error"] = f"{type(exc).__name__}: {exc}"[:500]
    return row


def render(result: dict[str, Any]) -> str:
    summary, env = result["summary"], result["environment"]
    from edgeconv.bench import environment_line

    pct = int8_peers.pct
    lines = [
        f"# INT8 over {len(result['seeds'])} draws of the calibration crops: {result['model']}, edgeconv and NNCF",
        "",
        f"Command: `{result['command']}` ({result['date']}). {environment_line(env)}",
        "",
        f"Held-out: {result['evaluation']} crops of `calibration/eval` (seed {result['eval_seed']}, int8_peers' "
        f"crops), {result['confident']} of them confident; FP32 `{result['fp32']}` (sha256 {result['fp32_sha256']}) "
        "on ORT CPU. Per seed both tools quantize the same 128 calibration crops; edgeconv's seconds are its whole CLI "
        "command, NNCF's its `nncf.quantize` call.",
        "",
        "| seed | edgeconv top-1 | confident | mean KL | seconds | NNCF top-1 | confident | mean KL | seconds | "
        "crop by crop |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in result["per_seed"]:
        cells = []
        for tool in ("edgeconv", "nncf"):
            r = s.get(tool)
            cells += (
                [pct(r["top1"]), pct(r["confident"]), f"{r['mean_kl']:.4f}", f"{r['seconds']:.0f}"]
                if r
                else [f"failed: {s.get(tool + '_error', '')[:120]!r}", "-", "-", "-"]
            )
        lines.append(f"| {s['seed']} | " + " | ".join(cells) + f" | {s.get('paired') or '-'} |")
    cells = []
    for tool in ("edgeconv", "nncf"):
        t = summary[tool]
        if t is None:
            cells += ["-"] * 4
            continue
        cells += [
            f"{pct(t['top1']['mean'])} ± {100 * t['top1']['sd']:.1f}",
            f"{pct(t['confident']['mean'])} ± {100 * t['confident']['sd']:.1f}",
            f"{t['mean_kl']['mean']:.4f} ± {t['mean_kl']['sd']:.4f}",
            f"{t['seconds']['mean']:.0f}",
        ]
    lines += ["| mean ± SD | " + " | ".join(cells) + " | |", ""]
    diff = summary["top1_difference"]
    if diff:
        n = summary["seeds_compared"]
        lines.append(
            f"edgeconv's top-1 minus NNCF's, per seed: mean {100 * diff['mean']:+.2f} points, SD "
            f"{100 * diff['sd']:.2f} (standard error of the mean {100 * diff['sd'] / n**0.5:.2f}); edgeconv at least "
            f"as high on {summary['seeds_at_least_as_high']} of {n} seeds."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--seeds", default="0-7", help="calibration draws: 0,1,2 or 0-7 (default 0-7)")
    parser.add_argument("--eval-samples", type=int, default=1000)
    parser.add_argument("--eval-seed", type=int, default=0, help="seed of the held-out crops (int8_peers': 0)")
    parser.add_argument("--fp32", default=None, help="FP32 ONNX (default: models/MODEL/model.onnx)")
    parser.add_argument("--out", default=None, help="write the markdown here, and the figures beside it as .json")
    args = parser.parse_args(argv)
    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as exc:
        parser.error(str(exc))
    if args.eval_samples < 1:
        parser.error(f"--eval-samples {args.eval_samples}: give a positive count (the peers' table uses 1000)")
    fp32 = Path(args.fp32) if args.fp32 else ROOT / "models" / args.model / "model.onnx"
    if not fp32.is_file():
        parser.error(f"{fp32}: no FP32 ONNX; run edgeconv export {args.model} --weights imagenet, or pass --fp32")
    import onnx

    try:
        onnx.load(str(fp32), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        parser.error(f"{fp32}: not an ONNX model ({type(exc).__name__}); pass the model.onnx of an FP32 export")
    try:
        import nncf
    except ImportError:
        parser.error("NNCF is not installed; pip install nncf==3.4.0 into this environment")

    sys.path.insert(0, str(ROOT))
    from edgeconv.bench import environment
    from edgeconv.files import write_atomic
    from edgeconv.quantize.calibration import Preprocessing, load_calibration_data, split_calibration_folder
    from edgeconv.quantize.fidelity import softmax
    from edgeconv.zoo import get_spec

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    nncf.set_log_level(logging.WARNING)
    command = "python bench/int8_seeds.py" + "".join(f" {shlex.quote(a)}" for a in argv)
    started, env = dt.datetime.now(dt.timezone.utc), environment()
    prep = Preprocessing.from_spec(get_spec(args.model))
    split = split_calibration_folder()  # the photos, decoded once for every draw
    held_out = load_calibration_data(
        None, prep, samples=8, eval_samples=args.eval_samples, seed=args.eval_seed, split=split
    ).evaluation
    reference = int8_peers._run_onnx()(fp32, held_out)
    per_seed: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edgeconv-seeds-") as name:
        tmp = Path(name)
        for index, seed in enumerate(seeds, 1):
            log.info("seed %d (%d of %d): edgeconv export --int8 --seed %d (about 80 s)", seed, index, len(seeds), seed)
            entry: dict[str, Any] = {"seed": seed}
            mine = edgeconv_row(args.model, seed, tmp, held_out, reference, entry)
            log.info("seed %d: NNCF's defaults on the same calibration crops", seed)
            data = load_calibration_data(None, prep, samples=128, eval_samples=0, seed=seed, split=split)
            peer = nncf_row(fp32, seed, data.calibration, tmp, held_out, reference, entry)
            if mine.hits is not None and peer.hits is not None:
                entry["paired"] = int8_peers.paired(mine, peer)
            per_seed.append(entry)
    result = {
        "command": command,
        "date": f"{started:%Y-%m-%d %H:%M}-{dt.datetime.now(dt.timezone.utc):%H:%M} UTC",
        "model": args.model,
        "seeds": seeds,
        "eval_seed": args.eval_seed,
        "evaluation": len(held_out),
        "confident": int((softmax(reference).max(axis=1) > 0.5).sum()),
        "fp32": fp32.name,
        "fp32_sha256": int8_peers.sha256(fp32),
        "environment": env,
        "per_seed": per_seed,
        "summary": summarize(per_seed),
    }
    text = render(result)
    print(text)
    if args.out:
        out = Path(args.out)
        write_atomic(out, text.encode())
        write_atomic(out.with_suffix(".json"), (json.dumps(result, indent=1, default=str) + "\n").encode())
    return 0 if all("edgeconv" in s and "nncf" in s for s in per_seed) else 1


if __name__ == "__main__":
    raise SystemExit(main())
