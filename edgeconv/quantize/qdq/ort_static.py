"""ONNX Runtime's ``quantize_static`` with each target's QDQ scheme, calibrating once and re-quantizing cheaply (for
the fallback's trials), then the target's own weight treatment: saturation-safe weights, adaptive rounding, the
centred activations' biases."""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeconv.files import scratch_cwd
from edgeconv.quantize.calibration import CalibrationReader, ProgressCallback
from edgeconv.quantize.options import QUANTIZED_OPS, Int8Options
from edgeconv.quantize.qdq.adaround import AdaRoundOptions, RoundedLayer, adaround, apply_rounding, bias_corrections
from edgeconv.quantize.qdq.offsets import centred_ranges, compensate_offsets
from edgeconv.quantize.qdq.weights import gemm_layout, limit_pair_sums, make_saturation_safe, thin_3d_convs

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)


def _ort_method(name: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    return {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
        "mse": CalibrationMethod.Percentile,  # edgeconv's own ranges (percentile_ranges); ORT's only without a cache
    }[name]


def activation_grid(target: str) -> str:
    """The activations' integer grid in ``target``'s QDQ scheme: ``uint8`` (asymmetric) or ``int8`` (symmetric)."""
    return "uint8" if target == "onnxruntime" else "int8"


def high_precision(
    model: onnx.ModelProto, nodes: Sequence[str], tensors: Sequence[str], extra: dict[str, Any]
) -> dict[str, Any]:
    """``extra_options`` giving the weights of ``nodes`` and the activation ``tensors`` 16-bit quantization: how the
    onnxruntime target keeps part of a model "in float".

    Leaving a layer out of ``quantize_static`` does not work on ORT: its ``WeightBiasQuantization`` optimizer (default
    sessions, ORT >= 1.20) quantizes the float weight of any Conv/Gemm whose input comes from a DequantizeLinear to
    *symmetric per-tensor* int8 at load time -- mobilenet_v2's first depthwise conv "in float" lost 17 points of
    agreement that way. A 16-bit weight (per channel, SQNR ~90 dB) has a DequantizeLinear of its own, which that
    optimizer leaves alone, and no CPU integer kernel takes 16-bit operands, so the layer runs as a float Conv under any
    session options. A 16-bit activation tensor likewise makes its producer and consumers run in float on a 256x finer
    grid than uint8, keeping the range (and any ReLU6 folded into it) unchanged.
    """
    from onnxruntime.quantization import QuantType

    inits = {i.name for i in model.graph.initializer}
    wanted = set(nodes)
    overrides = dict(extra.get("TensorQuantOverrides", {}))
    for node in model.graph.node:
        if node.name in wanted and len(node.input) > 1 and node.input[1] in inits:
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            # the output-channel axis of the weight: (out, in, k, k) for Conv, (in, out, k, k) for ConvTranspose
            axis = 1 if node.op_type in ("MatMul", "ConvTranspose") or (node.op_type == "Gemm" and not trans_b) else 0
            overrides[node.input[1]] = [{"quant_type": QuantType.QInt16, "axis": axis}]
    for tensor in tensors:
        overrides[tensor] = [{"quant_type": QuantType.QUInt16}]
    return {**extra, "TensorQuantOverrides": overrides, "UseQDQContribOps": True}


# Ops between a network's last layer and its output that only move or interpolate values: the label map's bilinear
# upsampling of the class scores, a classifier's flatten. The logits stay float through them.
_TO_OUTPUT = ("Resize", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze")


def float_outputs(model: onnx.ModelProto) -> int:
    """Remove the QuantizeLinear -> DequantizeLinear pair in front of each graph output, so that the network's last
    layer (mobilenet_v2's classifier Gemm) writes its output in float, and those between the last layer and the output
    across the ops of ``_TO_OUTPUT`` (a segmentation network's final Resize then upsamples float class scores);
    returns how many pairs were removed.

    ``quantize_static`` quantizes the output of every op it quantizes, the graph's too: the onnxruntime form's logits
    then went through uint8 (mobilenet_v2: 256 steps over [-9, 25], 0.13 per step, where the top two logits of a crop
    are often closer than that). Nothing downstream reads them in int8, and ORT's ``QGemm`` writes float outputs
    (mobilenet_v2's onnxruntime form still runs at 0.51x FP32's latency, bench/results/int8_peers.md)."""
    from edgeconv.onnxgraph import Graph

    graph = Graph(model)
    removed = []
    for output in graph.outputs:
        tensor = output
        while True:
            dq = graph.producer.get(tensor)
            if dq is not None and dq.op_type in _TO_OUTPUT:  # float already: look further up
                if len(graph.consumers.get(dq.input[0], [])) != 1:
                    break
                tensor = dq.input[0]
                continue
            q = graph.producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is None or q.op_type != "QuantizeLinear" or len(graph.consumers.get(q.output[0], [])) != 1:
                break
            if len(graph.consumers.get(tensor, [])) > 1:
                break  # the DequantizeLinear's output is read elsewhere too
            source = graph.producer.get(q.input[0])
            if source is None or len(graph.consumers[q.input[0]]) != 1 or q.input[0] in graph.outputs:
                break  # the float tensor is also read elsewhere (or is a graph input): leave the pair
            source.output[list(source.output).index(q.input[0])] = tensor
            removed += [q, dq]
            if source.op_type not in _TO_OUTPUT:
                break
            tensor = source.input[0]
    for node in removed:
        model.graph.node.remove(node)
    still_read = {name for node in model.graph.node for name in node.input}
    for name in {name for node in removed for name in node.input[1:]} - still_read:  # the pairs' scales, zero points
        if name in graph.initializers:
            model.graph.initializer.remove(graph.initializers[name])
    return len(removed) // 2


def _quantize_kwargs(target: str, options: Int8Options) -> dict[str, Any]:
    """``quantize_static`` arguments for ``target``."""
    from onnxruntime.quantization import QuantFormat, QuantType

    extra: dict[str, Any] = {"CalibPercentile": options.percentile, "WeightSymmetric": True}
    if target == "tensorrt":
        extra.update(
            {
                "ActivationSymmetric": True,
                "AddQDQPairToWeight": True,
                "DedicatedQDQPair": True,
                "QuantizeBias": False,
                "ForceQuantizeNoInputCheck": True,
                "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS),
                "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1, "MatMul": 1},
            }
        )
        types = {"activation_type": QuantType.QInt8, "weight_type": QuantType.QInt8}
        ops = list(QUANTIZED_OPS)
    else:
        types = {"activation_type": QuantType.QUInt8, "weight_type": QuantType.QInt8}
        ops = None  # ORT's default set: also Add, Pool, Concat ..., which keeps whole chains in int8 (speed)
    return {
        "quant_format": QuantFormat.QDQ,
        "per_channel": True,
        "reduce_range": False,
        "op_types_to_quantize": ops,
        "extra_options": extra,
        **types,
    }


class StaticQuantizer:
    """Runs ``quantize_static`` repeatedly on one pre-processed model, calibrating only once (ORT >= 1.31 caches the
    ranges in a file; older releases recalibrate)."""

    def __init__(
        self,
        source: Path,
        workdir: Path,
        samples: np.ndarray,
        input_name: str,
        options: Int8Options,
        progress: ProgressCallback | None,
        offsets: dict[str, float] | None = None,
        *,
        plain: bool = False,
        saturation_safe: bool | None = None,
        photos: np.ndarray | None = None,
    ) -> None:
        """``plain``: what a user of ORT's quantizer gets with the target's types and nothing else (the baseline).
        ``saturation_safe``: onnxruntime target, saturation-safe weights (default: unless ``plain``)."""
        import onnx
        from onnxruntime.quantization import quant_pre_process

        self.pre = workdir.resolve() / "pre.onnx"
        try:
            with scratch_cwd():  # its shape inference writes into the working directory when it fails
                quant_pre_process(str(Path(source).resolve()), str(self.pre))
        except Exception as exc:  # shape inference failures surface as many exception types
            logger.info("quant_pre_process failed (%s); quantizing the model as exported", exc)
            self.pre = source
        self.model = onnx.load(str(self.pre))
        target = options.target
        self.samples, self.input_name, self.target, self.options = samples, input_name, target, options
        self.progress = progress
        self.kwargs = _quantize_kwargs(target, options)
        if saturation_safe is None:
            saturation_safe = not plain
        self.saturation_safe = target == "onnxruntime" and saturation_safe and not plain
        self.safe_layers = 0
        self.adaround = options.adaround and not plain
        # ORT CPU runs these 3D convs slower in INT8 than in float: the onnxruntime form always keeps them in float
        self.slow_in_int8 = thin_3d_convs(self.model) if target == "onnxruntime" and not plain else []
        self.adaround_options = AdaRoundOptions(iterations=options.adaround_iterations, seed=options.seed)
        self.photos = photos  # the photo of each sample, for the depthwise convs' bias correction
        self.rounded: list[RoundedLayer] | None = None  # learned once, on the first (all-INT8) graph
        self.nearest: Path | None = None  # that graph with nearest rounding instead
        self.offsets = offsets or {}  # centred activations (module name -> shift) whose readers' biases follow W_q
        if self.offsets:  # quantized on exactly [-c, c]
            extra = self.kwargs["extra_options"]
            pinned = {
                tensor: [{"rmin": np.float32(-shift), "rmax": np.float32(shift)}]
                for tensor, shift in centred_ranges(self.model, self.offsets).items()
            }
            overrides = {**extra.get("TensorQuantOverrides", {}), **pinned}
            self.kwargs["extra_options"] = {**extra, "TensorQuantOverrides": overrides}
        self.workdir = workdir
        self.cache = workdir / f"ranges.{options.calib_method}.json"
        self.cacheable = (
            "calibration_cache_path"
            in inspect.signature(
                __import__("onnxruntime.quantization", fromlist=["quantize_static"]).quantize_static
            ).parameters
        )
        self.count = 0
        graph_input = next(i for i in self.model.graph.input if i.name == input_name)
        batch_dim = graph_input.type.tensor_type.shape.dim[0]
        self.batch_size = batch_dim.dim_value if batch_dim.HasField("dim_value") else 16  # a fixed batch must be fed

    def __call__(
        self, out: Path, exclude: Sequence[str] = (), tensors: Sequence[str] = (), *, relearn: bool = False
    ) -> Path:
        """Quantize to ``out``, keeping the compute nodes ``exclude`` and the activation ``tensors`` in high precision
        (onnxruntime target: 16-bit weights / 16-bit activations, see ``high_precision``; tensorrt target: the nodes
        left unquantized, which TensorRT then runs in FP16/FP32). The adaptive rounding learned on the first graph is
        re-applied; ``relearn`` learns it again on this one (and re-applies that from then on)."""
        from onnxruntime.quantization import quantize_static

        reader = CalibrationReader(
            self.samples,
            self.input_name,
            batch_size=self.batch_size,
            progress=self.progress if self.count == 0 else None,
        )
        extra = {} if not self.cacheable else {"calibration_cache_path": str(self.cache)}
        method = self.options.calib_method
        if self.cacheable and self.count == 0 and method in ("percentile", "mse") and not self.cache.exists():
            from onnxruntime.quantization.calibrate import save_tensors_data

            ranges = percentile_ranges(
                self.model, self.samples, self.input_name, self.options.percentile, self.batch_size, self.progress,
                grid=activation_grid(self.target) if method == "mse" else None,
            )  # fmt: skip
            save_tensors_data(ranges, self.cache)  # quantize_static reads it instead of calibrating
        kwargs = dict(self.kwargs)
        exclude = list(dict.fromkeys([*self.slow_in_int8, *exclude]))
        if self.target == "onnxruntime" and (exclude or tensors):
            kwargs["extra_options"] = high_precision(self.model, exclude, tensors, kwargs["extra_options"])
            exclude = ()
        printed = io.StringIO()  # ORT's calibrators print progress to stdout, which `--json` keeps for the JSON
        with contextlib.redirect_stdout(printed):
            quantize_static(
                str(self.pre),
                str(out),
                reader,
                nodes_to_exclude=list(exclude) or None,
                calibrate_method=_ort_method(self.options.calib_method),
                **kwargs,
                **extra,
            )
        if printed.getvalue().strip():
            logger.debug("onnxruntime quantization: %s", " / ".join(printed.getvalue().split("\n")).strip(" /"))
        import onnx

        model = onnx.load(str(out))
        float_outputs(model)
        if self.saturation_safe:
            self.safe_layers = make_saturation_safe(model, self.model)
        if self.adaround and self.rounded is None and len(self.samples) > self.adaround_options.samples:
            # the same graph with nearest rounding, for the rounding check (on the crops AdaRound does not learn from)
            nearest = type(model)()
            nearest.CopyFrom(model)
            if self.offsets:
                compensate_offsets(nearest, self.model, self.offsets)
            self.nearest = out.with_name(f"{out.stem}_nearest.onnx")
            onnx.save(nearest, str(self.nearest))
            del nearest
        if self.adaround:
            self._round(model, relearn)
        if self.offsets:
            count = compensate_offsets(model, self.model, self.offsets, bias_corrections(self.rounded or []))
            logger.debug("biases re-derived for %d readers of centred activations", count)
        onnx.save(model, str(out))
        self.count += 1
        return out

    def _round(self, model: onnx.ModelProto, relearn: bool = False) -> None:
        """Adaptive rounding: learned on the first graph (or again, ``relearn``), re-applied to the later ones (layers
        the fallback moved to 16 bits keep theirs)."""
        if self.rounded is not None and not relearn:
            apply_rounding(model, self.model, self.rounded)
            return

        def constrain(node: onnx.NodeProto, weight: np.ndarray) -> np.ndarray:
            """Rounding up can push a neighbour pair past what ORT's AVX2 u8s8 kernel adds without saturating."""
            layout = gemm_layout(node, weight.ndim)
            return weight if layout is None else limit_pair_sums(weight, layout)[0]

        self.rounded = adaround(
            model,
            self.model,
            self.samples,
            self.workdir,
            self.adaround_options,
            constrain=constrain if self.saturation_safe else None,
            progress=self.options.rounding_progress,
            offsets=self.offsets,
            photos=self.photos,
        )

    def ranges(self) -> dict[str, tuple[float, float]]:
        """Calibrated (low, high) of every activation tensor, from ORT's range cache (after the first call)."""
        import json

        if not self.cache.is_file():
            return {}

        def value(v: Any) -> float:  # a number, or a serialized numpy array of one
            return float(np.asarray(v["data"] if isinstance(v, dict) else v, dtype=np.float64).reshape(-1)[0])

        data = json.loads(self.cache.read_text()).get("data", {})
        return {name: (value(r["lowest"]), value(r["highest"])) for name, r in data.items()}


def percentile_ranges(
    model: onnx.ModelProto,
    samples: np.ndarray | Sequence[np.ndarray],
    input_name: str,
    percentile: float,
    batch_size: int = 16,
    progress: ProgressCallback | None = None,
    *,
    grid: str | None = None,
) -> Any:
    """ONNX Runtime's percentile ranges (its ``Percentile`` calibrator with its defaults: symmetric, i.e. on ``|x|``)
    of every float tensor of ``model`` on ``samples``, as ORT's ``TensorsData``, computed exactly from the largest
    magnitudes instead of from ORT's 2048-bin histogram of every tensor: same ranges (mobilenet_v2, 128 crops: 101
    tensors, at most 0.14% apart), 7 s instead of 23 s on 2 cores (most of that was ``np.histogram``).

    Per tensor of N values the threshold ``t`` is the ``ceil(N * percentile / 100)``-th smallest ``|x|``: the smallest
    of the ``N - that + 1`` largest, which are few (1e-5 of N at 99.999) and kept across batches. The range is
    ``(max(-t, min), min(t, max))``: ORT clips its thresholds to the observed extremes.

    ``samples``: an (N, ...) array fed ``batch_size`` at a time, or a sequence of inputs of different sizes fed one by
    one (a detector's photos); then N is estimated as the first input's count times the number of inputs.

    ``grid`` (``"uint8"``, asymmetric, or ``"int8"``, symmetric; ``activation_grid``): the ``mse`` calibration. The
    threshold is then, among the kept magnitudes (the percentile's ``t`` up to the maximum), the one whose expected
    squared quantization error on these samples is least (``mse_threshold``): where the values beyond ``t`` are many
    or far, the whole range costs less than clipping them."""
    import math

    import torch
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import TensorData, TensorsData

    from edgeconv.onnxgraph import session, with_outputs

    names = [input_name] + [o for n in model.graph.node for o in n.output if o]
    sess = session(with_outputs(model, names))
    outputs = [o.name for o in sess.get_outputs()]
    largest: dict[str, torch.Tensor] = {}
    keep: dict[str, int] = {}
    counts: dict[str, int] = {}
    low: dict[str, float] = {}
    high: dict[str, float] = {}
    if isinstance(samples, np.ndarray):
        batches = [samples[start : start + batch_size] for start in range(0, len(samples), batch_size)]
    else:
        batches = [np.asarray(sample) for sample in samples]
    done = 0
    for batch in batches:
        values = dict(zip(outputs, sess.run(None, {input_name: batch}), strict=True))
        values.setdefault(input_name, batch)
        for name, value in values.items():
            if not isinstance(value, np.ndarray) or value.dtype not in (np.float32, np.float16) or not value.size:
                continue
            x = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)).reshape(-1)
            counts[name] = counts.get(name, 0) + x.numel()
            if name not in keep:
                total = x.numel() * len(samples) // len(batch)
                keep[name] = min(total, total - math.ceil(total * percentile / 100.0) + 1)
            lo, hi = torch.aminmax(x)
            low[name], high[name] = min(low.get(name, math.inf), float(lo)), max(high.get(name, -math.inf), float(hi))
            top, kept = x.abs(), largest.get(name)
            if kept is not None and kept.numel() == keep[name]:
                top = top[top > kept.min()]  # only these can still be among the largest
            if kept is not None:
                top = torch.cat([kept, top])
            largest[name] = torch.topk(top, min(keep[name], top.numel()), sorted=False).values
        done += len(batch)
        if progress is not None:
            progress(done, len(samples))
    data = {}
    for name, top in largest.items():
        t = float(top.min()) if grid is None else mse_threshold(top, counts[name], low[name], high[name], grid)
        data[name] = TensorData(lowest=np.float32(max(-t, low[name])), highest=np.float32(min(t, high[name])))
    return TensorsData(CalibrationMethod.Percentile, data)


def mse_threshold(magnitudes: Any, count: int, low: float, high: float, grid: str) -> float:
    """The ``t`` among ``magnitudes`` (the largest ``|x|`` of a tensor of ``count`` values, observed in ``[low, high]``)
    that minimizes the expected squared error of quantizing the tensor to ``(max(-t, low), min(t, high))`` on ``grid``
    (``"uint8"``: step ``(hi - min(lo, 0)) / 255``; ``"int8"``: ``max(|lo|, |hi|) / 127``): rounding, ``step^2 / 12``
    for each value inside, plus clipping, ``(|x| - t)^2`` for each kept magnitude above ``t``. Values below the
    smallest kept magnitude are inside every candidate range, so the kept ones are all the sum needs."""
    import torch

    t = torch.sort(torch.as_tensor(magnitudes, dtype=torch.float64).reshape(-1)).values  # candidates, ascending
    above = torch.arange(len(t) - 1, -1, -1, dtype=torch.float64)  # kept magnitudes after each candidate
    tail = torch.flip(torch.cumsum(torch.flip(t, [0]), 0), [0]) - t  # their sum, and their sum of squares
    tail_sq = torch.flip(torch.cumsum(torch.flip(t * t, [0]), 0), [0]) - t * t
    clipping = tail_sq - 2 * t * tail + above * t * t
    lo, hi = torch.clamp(-t, min=low), torch.clamp(t, max=high)
    if grid == "int8":
        step = torch.maximum(lo.abs(), hi.abs()) / 127
    elif grid == "uint8":
        step = (hi - torch.clamp(lo, max=0.0)) / 255
    else:
        raise ValueError(f"grid {grid!r}: use uint8 or int8")
    error = clipping.clamp_min(0) + (count - above) * step * step / 12
    return float(t[int(torch.argmin(error))])
