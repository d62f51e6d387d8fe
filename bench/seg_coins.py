"""Labelled segmentation check: segmentation networks trained on CPU on scikit-image's ``coins`` photo, their true IoU
in FP32, FP16 and both INT8 forms, INT8's agreement with FP32 beside plain PTQ's, and the INT8 latency ratio (issue 18).

    python bench/seg_coins.py        # ~10 min on 2 cores -> bench/results/seg_coins.md

Data: ``skimage.data.coins()`` (303x384 greyscale, 24 coins, bundled with scikit-image: no download). Labels: coin vs
background, derived as scikit-image's gallery example "Comparing edge-based and region-based segmentation" does --
watershed of the Sobel elevation map from markers (background < 30, coin > 150), then holes filled. Columns 0-255 (16
coins) train, columns 256-383 (8 coins) test: disjoint coins. No segmentation weights can be downloaded here, so this
is the labelled check of the label-map pipeline, and it gives the zoo's segmentation networks weights whose label maps
mean something (random weights give one class everywhere, so INT8 "agrees" trivially).

Models (``--models``): ``unet_padded`` at width 16, depth 3 (0.48 M parameters, not the paper's 31 M: a few CPU
minutes have to train it), ``deeplabv3_mobilenet_v3_large`` and ``lraspp_mobilenet_v3_large`` with 2 classes, from
random init (the greyscale photo repeated on 3 channels, ImageNet normalization as their specs say). Training: random
crops of the training columns with flips, Adam + one-cycle, cross-entropy, seed 0. Evaluation: the test columns' top
296 rows as one 296x128 tile through the exported ONNX files on ONNX Runtime CPU (the tensorrt form: its QDQ graph's
exact arithmetic, graph optimizations off). INT8: ``edgeconv.quantize.quantize_int8`` with its defaults, calibrated on
128 random crops of the training columns and gated on 16 others (per-pixel agreement with FP32); plain PTQ (ONNX
Runtime's quantizer, MinMax, nothing else) on the same crops. Latency: ONNX Runtime CPU, 2 threads, the test tile,
median of 30 runs after 5 warm-up runs, FP32 and the onnxruntime INT8 form alternated in one process.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

logger = logging.getLogger("seg_coins")
TILE = (296, 128)  # the test columns' top rows: a multiple of 2 ** depth
TRAIN_COLUMNS = 256
# name: (builder kwargs, input channels, training crop, steps)
MODELS = {
    "unet_padded": ({"width": 16, "depth": 3}, 1, 96, 400),
    "deeplabv3_mobilenet_v3_large": ({"num_classes": 2}, 3, 128, 400),
    "lraspp_mobilenet_v3_large": ({"num_classes": 2}, 3, 128, 400),
}


def coins_and_labels() -> tuple[np.ndarray, np.ndarray]:
    """The photo (uint8, H x W) and its coin mask (bool), as scikit-image's gallery example derives it."""
    import skimage.data
    from scipy import ndimage
    from skimage import filters, segmentation

    coins = skimage.data.coins()
    markers = np.zeros_like(coins)
    markers[coins < 30] = 1
    markers[coins > 150] = 2
    regions = segmentation.watershed(filters.sobel(coins), markers)
    return coins, ndimage.binary_fill_holes(regions == 2)


def normalize(image: np.ndarray, channels: int, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """uint8 H x W -> float32 (C, H, W), scaled to [0, 1] and normalized per channel (the spec's mean / std)."""
    x = np.repeat(image.astype(np.float32)[None] / 255.0, channels, axis=0)
    return ((x - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]).astype(
        np.float32
    )


def random_crops(image, mask, count, size, rng, channels=1, mean=(0.5,), std=(0.5,)):
    """``count`` random ``size`` x ``size`` crops of image and mask, flipped at random: (N, C, s, s), (N, s, s)."""
    xs, ys = [], []
    for _ in range(count):
        top = int(rng.integers(0, image.shape[0] - size + 1))
        left = int(rng.integers(0, image.shape[1] - size + 1))
        x, y = image[top : top + size, left : left + size], mask[top : top + size, left : left + size]
        if rng.random() < 0.5:
            x, y = x[:, ::-1], y[:, ::-1]
        if rng.random() < 0.5:
            x, y = x[::-1], y[::-1]
        xs.append(normalize(np.ascontiguousarray(x), channels, mean, std))
        ys.append(np.ascontiguousarray(y))
    return np.stack(xs), np.stack(ys).astype(np.int64)


def train(name: str, image: np.ndarray, mask: np.ndarray, *, steps: int | None = None, seed: int = 0) -> nn.Module:
    """Zoo model ``name`` (``MODELS``' settings) trained on crops of ``image`` / ``mask`` (the training columns)."""
    from edgeconv.zoo import create_model, get_spec

    kwargs, channels, crop, default_steps = MODELS[name]
    steps = steps or default_steps
    spec = get_spec(name)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = create_model(name, **kwargs).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    for step in range(steps):
        x, y = random_crops(image, mask, 8, crop, rng, channels, spec.mean, spec.std)
        loss = nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == steps - 1:
            logger.info("%s step %d loss %.4f", name, step, float(loss))
    # BatchNorm statistics re-estimated on the final weights (a cumulative average over 32 batches): MobileNetV3's
    # BatchNorms keep 99% of their old statistics per step (TF's momentum), too slow for a few hundred steps.
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    with torch.no_grad():
        for _ in range(32):
            model(torch.from_numpy(random_crops(image, mask, 8, crop, rng, channels, spec.mean, spec.std)[0]))
    return model.eval()


def iou(prediction: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(coin IoU, mean IoU over coin and background)."""
    scores = []
    for cls in (1, 0):
        inter = np.logical_and(prediction == cls, truth == cls).sum()
        union = np.logical_or(prediction == cls, truth == cls).sum()
        scores.append(float(inter / union) if union else 1.0)
    return scores[0], float(np.mean(scores))


def latency_ratio(fp32: Path, int8: Path, x: np.ndarray, runs: int = 30) -> tuple[float, float]:
    """(FP32 ms, INT8 / FP32) on ONNX Runtime CPU, 2 threads, median of ``runs`` alternated runs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    sessions = [ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]) for p in (fp32, int8)]
    times: list[list[float]] = [[], []]
    for i in range(runs + 5):
        for which, sess in enumerate(sessions):
            start = time.perf_counter()
            sess.run(None, {"input": x})
            if i >= 5:
                times[which].append(time.perf_counter() - start)
    fp32_ms, int8_ms = (1000 * float(np.median(t)) for t in times)
    return fp32_ms, int8_ms / fp32_ms


def measure(name: str, steps: int | None = None, calib: int = 128, held_out: int = 16) -> dict[str, object]:
    """Train, export (FP32, FP16), quantize (both INT8 forms, plain PTQ beside) and measure ``name``."""
    from edgeconv.export import convert_fp16, export_onnx
    from edgeconv.fuse import fuse_model
    from edgeconv.onnxgraph import run_onnx
    from edgeconv.quantize.calibration import CalibrationData, Preprocessing
    from edgeconv.quantize.fidelity import compare_logits
    from edgeconv.quantize.int8 import quantize_int8
    from edgeconv.quantize.options import Int8Options
    from edgeconv.zoo import get_spec

    spec = get_spec(name)
    _, channels, _, _ = MODELS[name]
    image, mask = coins_and_labels()
    train_image, train_mask = image[:, :TRAIN_COLUMNS], mask[:, :TRAIN_COLUMNS]
    started = time.perf_counter()
    model = train(name, train_image, train_mask, steps=steps)
    train_seconds = time.perf_counter() - started
    rows, cols = TILE
    x = normalize(image[:rows, TRAIN_COLUMNS : TRAIN_COLUMNS + cols], channels, spec.mean, spec.std)[None]
    truth = mask[:rows, TRAIN_COLUMNS : TRAIN_COLUMNS + cols].astype(np.int64)
    with torch.inference_mode():
        torch_map = model(torch.from_numpy(x))[0].argmax(0).numpy()
    rng = np.random.default_rng(1)
    crop = lambda count: random_crops(train_image, train_mask, count, cols, rng, channels, spec.mean, spec.std)[0]  # noqa: E731
    data = CalibrationData(calibration=crop(calib), evaluation=crop(held_out))
    prep = Preprocessing(input_size=(channels, cols, cols), mean=spec.mean, std=spec.std, resize_ratio=1.0)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="seg-coins-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        export_onnx(fuse_model(model).model, fp32, (1, channels, cols, cols), reference=model, mean=spec.mean,
                    std=spec.std, dynamic_size=True, second_size=TILE)  # fmt: skip
        convert_fp16(fp32, Path(tmp) / "fp16.onnx")
        files = {"fp32": (fp32, False), "fp16": (Path(tmp) / "fp16.onnx", False)}
        reports = {}
        for target in ("onnxruntime", "tensorrt"):
            out = Path(tmp) / f"int8_{target}.onnx"
            reports[target] = quantize_int8(
                fp32, out, prep, model, Int8Options(target=target, calib_samples=calib), data=data,
                measure_baseline=True,
            )  # fmt: skip
            files[f"int8 {target}"] = (out, target == "tensorrt")
        reference = run_onnx(fp32, x)
        for label, (path, exact) in files.items():
            scores = run_onnx(path, x, exact=exact)
            labels = scores[0].argmax(0)
            coin, mean = iou(labels, truth)
            fidelity = compare_logits(reference, scores)
            row = {"coin_iou": coin, "mean_iou": mean, "pixel_accuracy": float((labels == truth).mean()),
                   "agreement": fidelity.top1_agreement, "iou_with_fp32": fidelity.mean_iou}  # fmt: skip
            if label == "fp32":
                row["agreement_with_pytorch"] = float((labels == torch_map).mean())
            if label.startswith("int8"):
                report = reports[label.split()[1]]
                assert report.baseline is not None
                row.update(
                    gate=report.fidelity.top1_agreement,
                    gate_iou=report.fidelity.mean_iou,
                    plain_agreement=report.baseline.top1_agreement,
                    plain_iou=report.baseline.mean_iou,
                    seconds=sum(report.stage_seconds.values()),
                )
            results[label] = row
        fp32_ms, ratio = latency_ratio(fp32, Path(tmp) / "int8_onnxruntime.onnx", x)
    return {
        "rows": results,
        "train_seconds": train_seconds,
        "params": sum(p.numel() for p in model.parameters()),
        "fp32_ms": fp32_ms,
        "int8_ratio": ratio,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated, from: " + ", ".join(MODELS))
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: per model, 400)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "seg_coins.md"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    from edgeconv.bench import environment, environment_line

    torch.set_num_threads(2)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    _, mask = coins_and_labels()
    test_mask = mask[: TILE[0], TRAIN_COLUMNS : TRAIN_COLUMNS + TILE[1]]
    command = "python bench/seg_coins.py" + (f" --models {args.models}" if args.models != ",".join(MODELS) else "")
    command += f" --steps {args.steps}" if args.steps else ""
    lines = [
        "# Segmentation on scikit-image's coins: true IoU in FP32, FP16 and INT8 (bench/seg_coins.py)\n",
        f"Command: `{command}`\n",
        f"- Date: {started}; {environment_line(environment(), 'machine')}; Python {platform.python_version()}",
        "- Test tile: columns 256-383, rows 0-295 of coins (8 coins not seen in training; coin pixels "
        f"{test_mask.mean():.1%}); labels and protocol in the script's docstring",
        "- INT8 gate columns: per-pixel agreement with FP32 and mean IoU between the two label maps on 16 held-out "
        "crops of the training columns; plain PTQ measured on the same crops",
        "",
    ]
    table = [
        "| model | file | coin IoU | mean IoU | pixel accuracy | agreement with FP32 (test tile) | IoU with FP32 "
        "| gate: agreement / IoU (held-out crops) | plain PTQ: agreement / IoU (same crops) | quantize s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for name in names:
        result = measure(name, args.steps)
        rows = result["rows"]
        assert isinstance(rows, dict)
        for label, row in rows.items():
            gate = f"{row['gate']:.2%} / {row['gate_iou']:.4f}" if "gate" in row else "-"
            plain = f"{row['plain_agreement']:.2%} / {row['plain_iou']:.4f}" if "plain_agreement" in row else "-"
            seconds = f"{row['seconds']:.0f}" if "seconds" in row else "-"
            table.append(
                f"| {name} | {label} | {row['coin_iou']:.4f} | {row['mean_iou']:.4f} | {row['pixel_accuracy']:.2%} "
                f"| {row['agreement']:.2%} | {row['iou_with_fp32']:.4f} | {gate} | {plain} | {seconds} |"
            )
        notes.append(
            f"- {name}: {result['params']:,} parameters, trained in {result['train_seconds']:.0f} s; FP32 ONNX vs "
            f"PyTorch on the test tile {rows['fp32']['agreement_with_pytorch']:.2%} of the pixels agree; latency on "
            f"the tile (ORT CPU, 2 threads): FP32 {result['fp32_ms']:.1f} ms, INT8 (onnxruntime form) "
            f"{result['int8_ratio']:.2f}x FP32"
        )
        print(table[-1], flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines + table + [""] + notes) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
