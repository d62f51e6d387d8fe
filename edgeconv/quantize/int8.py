"""INT8 post-training quantization to QDQ ONNX, one form per runtime, with a fidelity gate: the orchestrator.

Stages (each timed; the times go into the manifest):

1. **data** -- calibration and held-out crops from disjoint photos, through the model's own preprocessing
   (``calibration.py``), and the FP32 artifact's logits on both.
2. **prepare** (PyTorch, on the BN-folded model; ``prepare/``) -- one module per activation call site, cross-layer
   equalization of conv pairs and residual streams, activation centring (tensorrt target), the identity-tap split of
   re-parameterized kernels, optionally bias correction. Each is exact in float (bias correction aside), and the one
   exporter ``edgeconv export`` uses proves it on every run: the prepared model is exported with its checker,
   simplifier and numerical check against the *unprepared* model.
3. **quantize** -- ONNX Runtime's ``quantize_static`` with the target's QDQ scheme, then the target's weight treatment:
   saturation-safe weights (onnxruntime target, CPUs whose integer kernels saturate), the centred activations' biases
   and adaptive rounding, block by block; depthwise convs keep nearest rounding and get their biases corrected where
   the correction holds on calibration photos it was not measured on (``qdq/``).
4. **sensitivity** and **fallback** -- per-layer SQNR, and layers / activation tensors kept in high precision until the
   gate holds (``qdq/sensitivity.py``, ``qdq/fallback.py``).
5. **fidelity** -- agreement with the FP32 artifact on the held-out crops, and the gate.

Targets (bench/results/int8.md):

- ``onnxruntime``: uint8 activations (asymmetric, per tensor), int8 symmetric per-channel weights. ORT's u8s8 GEMM on
  AVX2 without VNNI saturates (``qdq/weights.py``): weights on such CPUs stay on a saturation-safe 8-bit grid; on CPUs
  whose integer kernels do not saturate (AVX512-VNNI, AVX-VNNI, AMX, ARM's dot-product instructions) they use the whole
  grid. ``Int8Options.cpu_kernels`` picks the form (detected by default) and the manifest records it.
- ``tensorrt``: int8 symmetric activations and weights, every zero point 0, per-channel weights on the output-channel
  axis, Q/DQ only on the inputs of compute ops (TensorRT fuses them). Its fidelity is measured on ONNX Runtime CPU with
  graph optimizations off, i.e. the QDQ graph's exact arithmetic (TensorRT accumulates in int32). ReLU / ReLU6 outputs
  between two convs are centred on 0 first, so that they get the whole symmetric grid instead of its positive half.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from edgeconv.errors import CalibrationError, QuantizationError
from edgeconv.files import write_atomic
from edgeconv.onnxgraph import module_name, run_onnx
from edgeconv.quantize.calibration import (
    MIN_IMAGES,
    CalibrationData,
    Preprocessing,
    ProgressCallback,
    prepare_calibration,
)
from edgeconv.quantize.fidelity import FidelityReport, check_gate, compare_logits
from edgeconv.quantize.options import Int8Options, cpu_kernels_saturate
from edgeconv.quantize.qdq.fallback import auto_fallback, resolve_fallback
from edgeconv.quantize.qdq.ort_static import StaticQuantizer
from edgeconv.quantize.qdq.sensitivity import layer_sqnr
from edgeconv.quantize.report import Int8Report

if TYPE_CHECKING:
    from torch import nn

    from edgeconv.zoo.registry import ModelSpec

logger = logging.getLogger(__name__)


class _Stages:
    """Times each stage and tells the caller which one runs (``Int8Options.on_stage``, the CLI's progress line)."""

    def __init__(self, on_stage: Callable[[str], None] | None) -> None:
        self.on_stage = on_stage
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str, label: str) -> Iterator[None]:
        if self.on_stage:
            self.on_stage(label)
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - started, 2)


def quantize_int8(
    model_fp32_onnx: str | Path,
    out_path: str | Path,
    spec: ModelSpec | Preprocessing,
    torch_model: nn.Module | None = None,
    options: Int8Options | None = None,
    *,
    progress: ProgressCallback | None = None,
    data: CalibrationData | None = None,
    measure_baseline: bool = False,
) -> Int8Report:
    """Quantize ``model_fp32_onnx`` to a QDQ INT8 model at ``out_path`` (written atomically) and measure it.

    ``torch_model``: the FP32 PyTorch model the ONNX file came from; needed for the PyTorch preparation (equalization,
    centring, identity split, bias correction); without it those steps are skipped and noted. ``data``: pre-computed
    calibration crops (benchmarks reuse one set across variants). ``measure_baseline``: also quantize with plain ORT
    PTQ (minmax, nothing else) for comparison. Raises ``QuantizationError`` when the held-out agreement is below
    ``options.min_agreement`` and ``options.force`` is not set; the file is then not written.
    """
    options = options or Int8Options()
    options.validate()
    source_fp32 = Path(model_fp32_onnx)
    out = Path(out_path)
    if not source_fp32.is_file():
        raise QuantizationError(f"FP32 model {source_fp32} does not exist; export it first")
    if options.calib_samples < MIN_IMAGES[options.calib_method]:
        raise CalibrationError(f"--calib-samples {options.calib_samples} is below what {options.calib_method} needs")
    progress = progress or options.progress
    stage = _Stages(options.on_stage)
    io = _io(source_fp32)
    if options.input_size is None and len(io.dims) == 4 and all(isinstance(d, int) for d in io.dims[2:]):
        options = replace(options, input_size=(int(io.dims[2]), int(io.dims[3])))
    saturating = options.target == "onnxruntime" and cpu_kernels_saturate(options.cpu_kernels)
    exact = options.target == "tensorrt"
    notes: list[str] = []

    def judge(logits_path: Path) -> FidelityReport:  # against the FP32 artifact on the held-out crops, and the gate
        logits = run_onnx(logits_path, data.evaluation, exact=exact)
        return compare_logits(
            reference, logits, min_agreement=options.min_agreement, min_confident=options.min_confident_agreement
        )

    with stage("data", "calibration crops"):
        data = data or prepare_calibration(spec, options, progress)
        reference = run_onnx(source_fp32, data.evaluation)

    with tempfile.TemporaryDirectory(prefix="edgeconv-int8-") as tmp:
        work = Path(tmp)
        prepared = _Prepared(source_fp32)
        if torch_model is not None and _prepares(options):
            with stage("prepare", "prepare in PyTorch (equalize, centre, split) and export"):
                prepared = _prepare(torch_model, spec, work, data, options, io)
        elif torch_model is None and _prepares(options):
            notes.append(
                "no PyTorch model given: equalization, activation centring, identity split and bias correction skipped"
            )

        baseline = None
        if measure_baseline:
            with stage("baseline", "plain ONNX Runtime PTQ (baseline)"):
                (work / "plain").mkdir()
                plain_options = Int8Options(target=options.target, calib_method="minmax", adaround=False)
                plain = StaticQuantizer(
                    source_fp32, work / "plain", data.calibration, io.input_name, plain_options, None, plain=True
                )
                path = plain(work / "plain" / "plain.onnx")
                baseline = judge(path)

        with stage("quantize", "calibrate, quantize and round the weights"):
            quantizer = StaticQuantizer(
                prepared.path,
                work,
                data.calibration,
                io.input_name,
                options,
                progress,
                prepared.offsets,
                saturation_safe=saturating,
                photos=data.calibration_photos(),
            )
            candidate = quantizer(work / "q0.onnx")
        if quantizer.rounded:
            with stage("rounding check", "compare adaptive and nearest rounding on unseen calibration crops"):
                candidate = _keep_rounding_if_better(quantizer, candidate, source_fp32, data, exact, notes)
        fallback_nodes: list[str] = []
        if isinstance(options.fallback, tuple):
            with stage("quantize", "quantize again with the chosen layers in high precision"):
                fallback_nodes = resolve_fallback(quantizer.model, [n.strip() for n in options.fallback if n.strip()])
                candidate = quantizer(work / "q_manual.onnx", fallback_nodes)
            if fallback_nodes and quantizer.rounded:
                with stage("rounding again", "learn the rounding again around the layers in high precision"):
                    candidate = _relearn_rounding(quantizer, candidate, fallback_nodes, [], source_fp32, data, exact)
        with stage("sensitivity", "measure fidelity and per-layer sensitivity"):
            fidelity = judge(candidate)
            layers = layer_sqnr(prepared.path, candidate, data.evaluation[:16])  # enough to rank layers

        latency = None
        before_fallback = None
        fallback_tensors: list[str] = []
        if options.fallback == "auto" and not fidelity:
            with stage("fallback", "keep the most sensitive layers in high precision"):
                before_fallback = fidelity
                candidate, chosen, latency = auto_fallback(
                    quantizer,
                    candidate,
                    layers,
                    work,
                    data,
                    run_onnx(source_fp32, data.calibration),  # only the fallback scores calibration crops
                    source_fp32,
                    options,
                    exact,
                )
                fallback_nodes = [i.name for i in chosen if i.kind == "node"]
                fallback_tensors = [i.label for i in chosen if i.kind == "tensor"]
            if chosen and quantizer.rounded:
                with stage("rounding again", "learn the rounding again around the layers in high precision"):
                    tensors = [i.name for i in chosen if i.kind == "tensor"]
                    candidate = _relearn_rounding(
                        quantizer, candidate, fallback_nodes, tensors, source_fp32, data, exact
                    )
            fidelity = judge(candidate)
        gate = check_gate(fidelity, force=options.force)
        if not gate:
            notes.append(
                f"written below the gate with --force ({fidelity.summary()}; gate {options.min_agreement:.1%} overall, "
                f"{options.min_confident_agreement:.1%} confident)"
            )
        write_atomic(out, candidate.read_bytes())

    return Int8Report(
        target=options.target,
        calib_method=options.calib_method,
        fidelity=fidelity,
        baseline=baseline,
        fallback_modules=[module_name(n) or n for n in fallback_nodes] + fallback_tensors,
        gate_passed=gate,
        min_agreement=options.min_agreement,
        min_confident_agreement=options.min_confident_agreement,
        equalized_pairs=prepared.eq_pairs,
        depthwise_equalized=prepared.depthwise,
        float_for_speed=[module_name(n) or n for n in quantizer.slow_in_int8],
        equalized_streams=prepared.streams,
        equalization_skipped=prepared.eq_skipped,
        bias_corrected_layers=prepared.bc_layers,
        centred_activations=prepared.offsets,
        identity_split=prepared.split,
        split_activations=prepared.split_activations,
        rounded=quantizer.rounded or [],
        layers=layers,
        latency_ratio=latency,
        calibration_images=[p.name for p in data.split.calibration.paths] if data.split else [],
        evaluation_images=[p.name for p in data.split.evaluation.paths] if data.split else [],
        skipped_files=[f"{p.name}: {why}" for p, why in data.skipped],
        calib_samples=len(data.calibration),
        seed=options.seed,
        notes=notes,
        before_fallback=before_fallback,
        weights_form=("saturation-safe" if saturating else "full 8-bit") if options.target == "onnxruntime" else None,
        cpu_kernels=options.cpu_kernels,
        exporter=prepared.exporter,
        stage_seconds=stage.seconds,
    )


def _keep_rounding_if_better(
    quantizer: StaticQuantizer,
    rounded: Path,
    source_fp32: Path,
    data: CalibrationData,
    exact: bool,
    notes: list[str],
) -> Path:
    """Adaptive rounding makes each layer's output closer to FP32 on the crops it learned from, which does not always
    bring the whole network closer (resnet50 with random weights, tensorrt form: 62.5% top-1 agreement with it, 75.4%
    with nearest rounding, although its mean KL was lower). Keep it only if, on the calibration crops it did not learn
    from (the held-out crops stay for the gate), the network agrees with FP32's top-1 at least as often as with
    nearest rounding -- the gate's measure -- and, on a tie, its mean KL to FP32 is not higher."""
    nearest = quantizer.nearest  # written by the call that learned the rounding if some calibration crops are unseen
    if nearest is None:
        return rounded
    scores = _on_unseen_crops(quantizer, (rounded, nearest), source_fp32, data, exact)
    if scores is None or rounding_is_closer(*scores):
        return rounded
    with_rounding, without = scores
    quantizer.rounded = []  # later quantizations (the fallback's) keep nearest rounding too
    notes.append(
        f"adaptive rounding not kept: on {without.samples} calibration crops it did not learn from, top-1 agreement "
        f"with FP32 {with_rounding.top1_agreement:.1%} with it, {without.top1_agreement:.1%} with nearest rounding "
        f"(mean KL {with_rounding.mean_kl:.4f} / {without.mean_kl:.4f})"
    )
    return nearest


def _relearn_rounding(
    quantizer: StaticQuantizer,
    candidate: Path,
    nodes: Sequence[str],
    tensors: Sequence[str],
    source_fp32: Path,
    data: CalibrationData,
    exact: bool,
) -> Path:
    """Learn the adaptive rounding again on the graph with ``nodes`` / ``tensors`` in high precision, and keep
    whichever rounding brings the network closer to FP32 on the calibration crops AdaRound does not learn from.

    The rounding re-applied from the all-INT8 graph was learned with each layer's input carrying the 8-bit error of the
    layers before it, part of which each layer absorbed; once a layer before it runs in high precision, that part is
    wrong. mobilenet_v2 (onnxruntime form, 1000 held-out crops) with ``--fallback features.2.conv.1.0``: 85.2% top-1
    agreement / mean KL 0.0408 with the re-applied rounding, 87.8% / 0.0344 learned again (all-INT8: 87.8% /
    0.0335)."""
    previous = quantizer.rounded
    relearned = quantizer(candidate.with_name(f"{candidate.stem}_relearned.onnx"), nodes, tensors, relearn=True)
    scores = _on_unseen_crops(quantizer, (relearned, candidate), source_fp32, data, exact)
    if scores is None:
        return relearned
    again, before = scores
    logger.info(
        "rounding learned again around the layers in high precision: top-1 agreement %.1f%% (re-applied %.1f%%), "
        "mean KL %.4f (%.4f) on %d unseen calibration crops",
        100 * again.top1_agreement,
        100 * before.top1_agreement,
        again.mean_kl,
        before.mean_kl,
        before.samples,
    )
    if rounding_is_closer(again, before):
        return relearned
    quantizer.rounded = previous
    return candidate


def _on_unseen_crops(
    quantizer: StaticQuantizer, paths: Sequence[Path], source_fp32: Path, data: CalibrationData, exact: bool
) -> list[FidelityReport] | None:
    """Each graph of ``paths`` against FP32 on the calibration crops AdaRound does not learn from (the held-out crops
    stay for the gate); None when every calibration crop was learned from."""
    unseen = data.calibration[quantizer.adaround_options.samples :]
    if len(unseen) == 0:
        return None
    reference = run_onnx(source_fp32, unseen)
    return [compare_logits(reference, run_onnx(path, unseen, exact=exact)) for path in paths]


def rounding_is_closer(learned: FidelityReport, nearest: FidelityReport) -> bool:
    """Whether learned rounding is at least as close to FP32 as nearest rounding: more crops agreeing on the top-1
    class, or as many and a mean KL no higher."""
    agreeing = round(learned.top1_agreement * learned.samples), round(nearest.top1_agreement * nearest.samples)
    return agreeing[0] > agreeing[1] or (agreeing[0] == agreeing[1] and learned.mean_kl <= nearest.mean_kl)


# --- the FP32 artifact's interface ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _IO:
    input_name: str
    dims: list[int | str]  # the input's dimensions; a name for a dynamic one
    output_name: str
    opset: int


def _io(path: Path) -> _IO:
    """Input name and dimensions, output name and opset of the FP32 ONNX file: the INT8 file keeps them (drop-in)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    graph_input = next(i for i in model.graph.input if i.name not in inits)
    dims: list[int | str] = [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "batch")
        for d in graph_input.type.tensor_type.shape.dim
    ]
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    return _IO(graph_input.name, dims, model.graph.output[0].name, max(13, opset))  # QDQ's axis needs 13+


# --- prepare in PyTorch --------------------------------------------------------------------------------------------


def _prepares(options: Int8Options) -> bool:
    return options.equalize or options.bias_correction or _centers(options) or options.split_identity


def _centers(options: Int8Options) -> bool:
    return options.center_activations and options.target == "tensorrt"


@dataclass
class _Prepared:
    """The float model to quantize, and what ``_prepare`` did to it."""

    path: Path
    eq_pairs: int = 0
    eq_skipped: int = 0
    streams: int = 0
    bc_layers: int = 0
    offsets: dict[str, float] = field(default_factory=dict)  # centred activation (module name) -> shift
    split: list[str] = field(default_factory=list)  # convs whose identity taps were split out
    split_activations: list[str] = field(default_factory=list)  # activation modules given one copy per call site
    depthwise: int = 0  # depthwise convs whose ReLU6 input was equalized
    exporter: str | None = None


def _prepare(
    torch_model: nn.Module,
    spec: ModelSpec | Preprocessing,
    work: Path,
    data: CalibrationData,
    options: Int8Options,
    io: _IO,
) -> _Prepared:
    """The PyTorch preparation, on a BN-folded copy of ``torch_model``, then one export through ``export_onnx``, checked
    against ``torch_model`` itself: every step but bias correction keeps the function exactly (in float)."""
    from torch import nn

    from edgeconv.export import FP32_TOLERANCE, export_onnx
    from edgeconv.fuse import fuse_model
    from edgeconv.quantize.prepare import (
        batches,
        center_unsigned_activations,
        correct_bias,
        equalize_depthwise_inputs,
        equalize_model,
        equalize_residual_streams,
        split_identity_taps,
        split_shared_activations,
    )

    # A copy (the caller's model is left as it is); folded only if the caller's still has BatchNorms to fold: the
    # artifact path hands over the model it already fused.
    unfused = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in torch_model.modules())
    model = (fuse_model(torch_model).model if unfused else copy.deepcopy(torch_model)).eval()
    prepared = _Prepared(work / "prepared.onnx")
    if options.equalize or _centers(options):
        prepared.split_activations = split_shared_activations(model)
    if options.equalize:
        eq = equalize_model(model, relu6=options.relu6)
        prepared.eq_pairs, prepared.eq_skipped = len(eq.equalized), len(eq.skipped)
        prepared.streams = len(equalize_residual_streams(model, batches(data.calibration[:64], 16)))
        if options.equalize_depthwise and options.target == "onnxruntime":
            subset = data.calibration[:64]
            depthwise = equalize_depthwise_inputs(model, subset, data.calibration_photos()[:64])
            prepared.depthwise = len(depthwise)
    if _centers(options):
        # Half the 99.999th percentile, pinned there (qdq.offsets); with minmax ranges, which clip nothing, half the
        # maximum. resnet50 (random weights), 300 held-out crops, nearest rounding, minmax ranges and centring at
        # the maximum: 76.3% top-1 agreement / mean KL 0.0064, plain PTQ 75.0% / 0.0069; with the shift from the
        # percentile as estimated before 6020bd8, 74.0% / 0.0083 (bench/results/int8_resnet50_tensorrt.md).
        percentile = 100.0 if options.calib_method == "minmax" else options.percentile
        prepared.offsets = center_unsigned_activations(model, batches(data.calibration[:64], 16), percentile)
    if options.split_identity:  # last: exact for any kernel, and it must not hide convs from the passes above
        prepared.split = split_identity_taps(model)
    reference: nn.Module = torch_model
    if options.bias_correction:  # changes the function on purpose: the export is checked against the corrected model
        # Both targets quantize weights symmetric per channel to [-127, 127]: correct_bias's default scheme.
        subset = data.calibration[: options.bias_correction_samples]
        prepared.bc_layers = len(correct_bias(model, batches(subset, 16)))
        reference = model
    prep = spec if isinstance(spec, Preprocessing) else Preprocessing.from_spec(spec, options.input_size)
    dynamic = not isinstance(io.dims[0], int)
    dynamic_size = not all(isinstance(d, int) for d in io.dims[2:])  # H, W: the crops' size, and dynamic again
    sizes = data.calibration.shape[2:] if dynamic_size else io.dims[2:]
    shape = [1 if dynamic else int(io.dims[0]), int(io.dims[1]), *(int(d) for d in sizes)]
    report = export_onnx(
        model,
        prepared.path,
        shape,
        opset=io.opset,
        dynamic_batch=dynamic,
        dynamic_size=dynamic_size,
        input_name=io.input_name,
        output_name=io.output_name,
        reference=reference,
        mean=prep.mean,
        std=prep.std,
        tolerance=max(FP32_TOLERANCE, options.prepared_tolerance),
    )
    prepared.exporter = report.exporter
    if prepared.depthwise:  # the per-channel clips of the equalized ReLU6s become one fusable Clip each
        import onnx

        from edgeconv.quantize.qdq.clips import merge_channel_clips

        graph = onnx.load(prepared.path)
        merge_channel_clips(graph)
        write_atomic(prepared.path, graph.SerializeToString())
    return prepared
