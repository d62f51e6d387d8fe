"""Keeping parts of a model in high precision: named by the user (``--fallback MODULES``) or chosen automatically,
most useful first, until the gate holds on the calibration crops."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from edgeconv.errors import InvalidArgumentError
from edgeconv.onnxgraph import module_name, run_onnx, session
from edgeconv.quantize.calibration import CalibrationData
from edgeconv.quantize.fidelity import FidelityReport, compare_logits, meets_gate
from edgeconv.quantize.options import GATE_MARGIN, Int8Options
from edgeconv.quantize.qdq.ort_static import StaticQuantizer
from edgeconv.quantize.qdq.sensitivity import LayerSensitivity, tensor_sqnr
from edgeconv.quantize.qdq.weights import quantizable_nodes

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)


def resolve_fallback(model: onnx.ModelProto, modules: Sequence[str]) -> list[str]:
    """PyTorch module names (or ONNX node names) -> ONNX node names of the compute ops they cover."""
    nodes = quantizable_nodes(model)
    chosen: list[str] = []
    for name in modules:
        hits = [
            n.name for n in nodes if name in (n.name, module_name(n.name)) or module_name(n.name).startswith(name + ".")
        ]
        if not hits:
            known = ", ".join(sorted({module_name(n.name) or n.name for n in nodes})[:8])
            raise InvalidArgumentError(
                f"--fallback layer {name!r} is not a quantized layer of this model; "
                f"layers are PyTorch module names such as: {known} ..."
            )
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def measure_latency_ratio(
    fp32: Path, int8: Path, sample: np.ndarray, *, runs: int = 30, warmup: int = 5, exact: bool = False
) -> tuple[float, float, float]:
    """(fp32 ms, int8 ms, ratio): medians of interleaved batch-1 runs on ORT CPU, same process, same input."""
    sessions = [session(fp32, spin=True), session(int8, exact=exact, spin=True)]  # as deployed
    feeds = [{s.get_inputs()[0].name: sample[:1]} for s in sessions]
    for s, f in zip(sessions, feeds, strict=True):
        for _ in range(warmup):
            s.run(None, f)
    times: list[list[float]] = [[], []]
    for _ in range(runs):
        for i, (s, f) in enumerate(zip(sessions, feeds, strict=True)):
            start = time.perf_counter()
            s.run(None, f)
            times[i].append(time.perf_counter() - start)
    a, b = float(np.median(times[0])) * 1e3, float(np.median(times[1])) * 1e3
    return a, b, b / a


def _better(trial: FidelityReport, best: FidelityReport) -> bool:
    """Whether ``trial`` is worth its extra float work: no worse on the gated figures (top-1 agreement, overall and on
    confident crops) and better on agreement or, failing that, on mean KL. (KL alone kept layers that lowered it while
    agreement fell: mobilenet_v2, 80.5% -> 78.1% on the calibration crops.)"""
    if trial.top1_agreement < best.top1_agreement:
        return False
    if best.confident_samples and trial.confident_agreement < best.confident_agreement:
        return False
    return trial.top1_agreement > best.top1_agreement or trial.mean_kl < best.mean_kl


@dataclass(frozen=True)
class _Fallback:
    """One thing the automatic fallback can keep in high precision: a compute node, or an activation tensor."""

    kind: Literal["node", "tensor"]
    name: str
    label: str  # PyTorch module name (``features.1.conv.0.0``) or ``<module> output``


def auto_fallback(
    quantizer: StaticQuantizer,
    candidate: Path,
    layers: list[LayerSensitivity],
    work: Path,
    data: CalibrationData,
    reference_cal: np.ndarray,
    fp32: Path,
    options: Int8Options,
    exact: bool,
) -> tuple[Path, list[_Fallback], float | None]:
    """Keep parts of the model in high precision, most useful first, until the gate holds on the *calibration* crops
    (the held-out crops stay untouched for the final figure), within ``max_fallback_layers`` and the latency budget.

    Candidates: the weights of the first three and the last compute layers, of the layers with the lowest weight SQNR
    (mobilenet_v2's first depthwise conv) and with the most accumulated input error; on the onnxruntime target also the
    activation tensors 8 bits carry worst (mobilenet_v2's late residual sums: range +-30, values mostly within +-2).
    Each is first tried alone and ranked by how much it lowers the mean KL divergence on the calibration crops
    (smoother than top-1 agreement on 128 crops); in that order, each is then kept if ``_better`` says so, until
    calibration-crop agreement is ``GATE_MARGIN`` above the gate and confident agreement at its gate."""

    def score(path: Path) -> FidelityReport:
        return compare_logits(reference_cal, run_onnx(path, data.calibration, exact=exact))

    def build(items: Sequence[_Fallback], name: str) -> Path:
        nodes = [i.name for i in items if i.kind == "node"]
        tensors = [i.name for i in items if i.kind == "tensor"]
        return quantizer(work / name, nodes, tensors)

    base = score(candidate)
    by_input = sorted(layers, key=lambda layer: layer.own_sqnr_db)
    by_weight = sorted(layers, key=lambda layer: layer.weight_sqnr_db)
    # The first layers' errors travel through the whole network (mobilenet_v2's first depthwise conv, 9 weights per
    # channel, costs 3 points of agreement with 8-bit weights alone), the last one's go straight into the logits.
    nodes = dict.fromkeys(x.node for x in [*layers[:3], *layers[-1:], *by_weight[:3], *by_input[:3]])
    by_node = {layer.node: layer for layer in layers}
    pool = [_Fallback("node", n, by_node[n].module or n) for n in nodes]
    if options.target == "onnxruntime":
        producer = {o: n.name for n in quantizer.model.graph.node for o in n.output}
        sqnr = tensor_sqnr(quantizer.pre, quantizer.ranges(), data.calibration[:16])
        for name in sorted(sqnr, key=sqnr.__getitem__)[:6]:
            module = module_name(producer.get(name, "")) or name
            pool.append(_Fallback("tensor", name, f"{module} output"))
            logger.info("8-bit SQNR of %s: %.1f dB", pool[-1].label, sqnr[name])
    gains: dict[_Fallback, float] = {}
    for i, item in enumerate(pool):
        trial = score(build([item], f"single{i}.onnx"))
        gains[item] = base.mean_kl - trial.mean_kl
        logger.info(
            "%s in high precision alone: mean KL %.4f -> %.4f, agreement %+.1f points",
            item.label,
            base.mean_kl,
            trial.mean_kl,
            100 * (trial.top1_agreement - base.top1_agreement),
        )
    chosen: list[_Fallback] = []
    best, best_path, latency = base, candidate, None
    for item in sorted(pool, key=lambda x: -gains[x]):
        if gains[item] <= 0.0 or len(chosen) >= options.max_fallback_layers:
            break
        if meets_gate(best, options.min_agreement + GATE_MARGIN, options.min_confident_agreement):
            break
        trial_items = chosen + [item]
        path = build(trial_items, f"fallback{len(trial_items)}.onnx")
        result = score(path)
        ratio = None
        if options.latency_budget is not None and options.target == "onnxruntime":
            _, _, ratio = measure_latency_ratio(fp32, path, data.calibration[:1], runs=100)
            if ratio > options.latency_budget:
                logger.info("%s costs %.2fx FP32 latency (> %.2fx); skipped", item.label, ratio, options.latency_budget)
                continue
        if _better(result, best):
            chosen, best, best_path, latency = trial_items, result, path, ratio
    logger.info(
        "high precision: %s (calibration-crop agreement %.1f%% -> %.1f%%)",
        ", ".join(i.label for i in chosen) or "none",
        100 * base.top1_agreement,
        100 * best.top1_agreement,
    )
    node_gains = {i.name: gains[i] for i in pool if i.kind == "node"}
    for layer in layers:
        layer.fallback_gain = node_gains.get(layer.node)
    return best_path, chosen, latency
