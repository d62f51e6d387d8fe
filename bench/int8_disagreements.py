"""Where two INT8 graphs of one classifier disagree with FP32, photo by photo (issue 17's gap to NNCF's top-1).

``bench/int8_peers.py --keep DIR`` leaves every INT8 graph it scored in DIR; this script scores some of them again on
the same held-out crops (``load_calibration_data(..., samples=128, eval_samples=1000, seed=0)``: crop ``i`` comes from
evaluation photo ``i mod 9``) and says where their top-1 agreement differs:

- per evaluation photo, the crops only the first graph gets wrong and those only the second gets wrong;
- the class swaps behind those crops (FP32's top-1 -> the INT8 graph's), with ImageNet names;
- near ties (FP32's top-2 logits closer than ``--near``) and how many of them each graph flips;
- the RMS of each graph's error on FP32's top-1 minus top-2 logit, and the number of flips a Gaussian error of that
  size would give on these margins (the runner-up only): what a graph's logit error predicts, against what it did.

Example (after ``python bench/int8_peers.py --skip-modelopt --skip-ort --latency-rounds 0 --keep /tmp/keep``)::

    python bench/int8_disagreements.py "nncf defaults=/tmp/keep/nncf_defaults.onnx" \\
        "edgeconv=/tmp/keep/edgeconv_onnxruntime.onnx" --out bench/results/int8_disagreements.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import platform
import shlex
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def gaussian_flips(margin: np.ndarray, sigma: float) -> float:
    """Expected count of crops whose top-1 goes to the runner-up under an N(0, sigma) error on the top-2 difference."""
    return float(sum(0.5 * (1 + math.erf(-m / (sigma * math.sqrt(2)))) for m in margin))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "graphs",
        nargs="+",
        help="NAME=PATH of INT8 ONNX graphs (onnxruntime form; split at the last '='); the first against each other",
    )
    parser.add_argument("--model", default="mobilenet_v2", help="an ImageNet classifier of the zoo")
    parser.add_argument("--fp32", default=None, help="FP32 ONNX (default: models/MODEL/model.onnx)")
    parser.add_argument("--eval-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--near", type=float, default=0.15, help="top-2 logit margin below which a crop is a near tie")
    parser.add_argument("--out", default=None, help="write the markdown here too")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from edgeconv.bench import environment, environment_line
    from edgeconv.data import imagenet_labels
    from edgeconv.onnxgraph import run_onnx
    from edgeconv.quantize.calibration import Preprocessing, load_calibration_data
    from edgeconv.zoo import get_spec

    if args.eval_samples < 1:
        parser.error(f"--eval-samples {args.eval_samples} is not valid; give at least 1 (int8_peers scores 1000)")
    bad = [g for g in args.graphs if "=" not in g or not Path(g.rsplit("=", 1)[1]).is_file()]
    if bad:
        parser.error(f"{bad[0]!r} is not NAME=PATH of an existing ONNX file; give e.g. 'edgeconv=/tmp/keep/x.onnx'")
    graphs = dict(g.rsplit("=", 1) for g in args.graphs)
    fp32 = Path(args.fp32 or ROOT / "models" / args.model / "model.onnx")
    if not fp32.is_file():
        parser.error(f"no FP32 model at {fp32}; run `edgeconv export {args.model} --weights imagenet` or give --fp32")
    data = load_calibration_data(
        None, Preprocessing.from_spec(get_spec(args.model)), samples=128, eval_samples=args.eval_samples, seed=args.seed
    )
    photos = [path.stem for path, _ in data.split.evaluation.images]
    # random_crops visits the photos round-robin: crop i is from photo i mod len(photos)
    photo = np.array([photos[i % len(photos)] for i in range(args.eval_samples)])
    names = imagenet_labels()

    def scores(label: str, path: str | Path) -> np.ndarray:
        print(f"scoring {label} on {args.eval_samples} crops ...", file=sys.stderr, flush=True)
        try:
            out = run_onnx(path, data.evaluation)
        except Exception as exc:  # a corrupt file, another model's graph: one line, not ORT's traceback
            parser.error(f"{path} does not run on {args.model}'s crops ({type(exc).__name__}: {str(exc)[:200]})")
        if out.shape != (args.eval_samples, len(names)):
            parser.error(f"{path} gives outputs of shape {out.shape}, not ImageNet's {len(names)} class scores")
        return out

    reference = scores("FP32", fp32)
    logits = {name: scores(name, path) for name, path in graphs.items()}

    order = np.argsort(-reference, axis=1)
    top1, top2 = order[:, 0], order[:, 1]
    rows = np.arange(len(reference))
    margin = reference[rows, top1] - reference[rows, top2]
    near = margin < args.near
    wrong = {name: out.argmax(axis=1) != top1 for name, out in logits.items()}

    env = environment()
    lines = [
        f"# INT8 disagreements with FP32, photo by photo: {args.model}",
        "",
        f"- Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; Python {platform.python_version()}; "
        + environment_line(env),
        "- Command: `python bench/int8_disagreements.py "
        + " ".join(shlex.quote(g) for g in args.graphs)
        + "` (paths as on the machine that ran it)",
        f"- {args.eval_samples} held-out crops of {len(photos)} photos (crop i from photo i mod {len(photos)}), seed "
        f"{args.seed}; FP32 = `{fp32.name}` on ORT CPU; {int(near.sum())} near ties (FP32's top-2 logits closer than "
        f"{args.near})",
        "",
        "| graph | wrong | near ties flipped | RMS error of top-1 minus top-2 logit "
        "| flips a Gaussian error of that RMS predicts (runner-up only) | RMS logit error |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, out in logits.items():
        error = out - reference
        diff = error[rows, top1] - error[rows, top2]
        sigma = float(np.sqrt(np.mean(diff**2)))
        lines.append(
            f"| {name} | {int(wrong[name].sum())} | {int(wrong[name][near].sum())} of {int(near.sum())} | {sigma:.3f} "
            f"| {gaussian_flips(margin, sigma):.0f} | {float(np.sqrt(np.mean(error**2))):.3f} |"
        )
    first, *others = list(logits)
    for other in others:
        only_first, only_other = wrong[first] & ~wrong[other], wrong[other] & ~wrong[first]
        lines += [
            "",
            f"## {first} against {other}",
            "",
            f"| photo | crops | wrong only with {first} | wrong only with {other} | near ties |",
            "|---|---:|---:|---:|---:|",
        ]
        for p in photos:
            m = photo == p
            lines.append(
                f"| {p} | {int(m.sum())} | {int((only_first & m).sum())} | {int((only_other & m).sum())} "
                f"| {int((near & m).sum())} |"
            )
        for label, mask, out in ((first, only_first, logits[first]), (other, only_other, logits[other])):
            swaps = Counter((photo[i], names[top1[i]], names[out[i].argmax()]) for i in np.where(mask)[0])
            shown = "; ".join(f"{n} x {p}: {a} -> {b}" for (p, a, b), n in swaps.most_common(5))
            lines.append(f"\nWrong only with {label}, most common (photo: FP32's class -> INT8's): {shown}")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
