"""Seconds to profile every zoo model at its default input (the issue asks < 10 s each on a 2-core machine).

    python bench/profile_speed.py [PATTERN] [--out bench/results/profile_speed.json]

Each model is profiled once (no cache); the time includes building the model (on the meta device where the builder
allows it) and the one shape-propagation forward. The process's one-off warm-up (torch's lazy imports on the first
meta-device op) is measured first and reported separately as ``warmup_s``. Timings are only meaningful on a quiet
machine: the lead re-runs this for the committed figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from edgeconv.files import write_atomic
from edgeconv.profile import profile_model
from edgeconv.zoo import list_models


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pattern", nargs="?", default=None, help="glob over registry names, e.g. 'mobilenet*'")
    parser.add_argument("--out", type=Path, default=None, help="write results as JSON here (atomically)")
    parser.add_argument("--limit", type=float, default=10.0, help="seconds per model the issue allows")
    args = parser.parse_args()

    # The first meta-device op of a process imports torch._dynamo / torch._refs (seconds): a one-off cost of every
    # fresh `edgeconv profile` process, recorded on its own so the per-model figures compare models, not import order.
    start = time.perf_counter()
    profile_model("lenet5")
    warmup = time.perf_counter() - start
    print(f"warm-up (first profile in this process, lenet5): {warmup:.2f} s", flush=True)
    rows = []
    for name in list_models(args.pattern):
        start = time.perf_counter()
        report = profile_model(name)
        seconds = time.perf_counter() - start
        rows.append({"model": name, "seconds": round(seconds, 3), "macs": report.macs, "params": report.params,
                     "layers": len(report.layers), "over_limit": seconds > args.limit})  # fmt: skip
        print(f"{name:28s} {seconds:7.2f} s  {report.macs / 1e6:12.1f} M MACs  {len(report.layers):5d} layers",
              flush=True)  # fmt: skip
    slow = [r["model"] for r in rows if r["over_limit"]]
    print(f"{len(rows)} models, max {max((r['seconds'] for r in rows), default=0):.2f} s; over {args.limit:g} s: "
          f"{', '.join(slow) or 'none'}")  # fmt: skip
    if args.out is not None:
        env = {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform(),
               "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}  # fmt: skip
        record = {"env": env, "limit_s": args.limit, "warmup_s": round(warmup, 3), "results": rows}
        write_atomic(args.out, json.dumps(record, indent=2).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
