"""Adaptive rounding of INT8 weights (Nagel et al. 2020, "Up or Down? Adaptive Rounding for Post-Training
Quantization"), on a QDQ ONNX graph.

Rounding each weight to the nearest grid point minimizes the weight error, not the error of the layer's output. For
each quantized layer in graph order, AdaRound keeps the graph's own per-channel scale and learns, per weight, whether
to round down or up: a rectified sigmoid ``h(V)`` in [0, 1] added to ``floor(w / s)``, optimized with Adam so that
the layer's output on calibration crops matches the FP32 graph's, with a regularizer annealed to push every ``h`` to
0 or 1. The layer's input comes from the QDQ graph with every earlier layer already re-rounded (the paper's
"asymmetric reconstruction"), so a layer also absorbs part of the error that reaches it; a ReLU / Clip that follows
the layer is applied to both sides (errors the activation clips away do not count).

Works on both QDQ forms: int8 weight initializers (onnxruntime target) and float weight -> Q -> DQ (tensorrt target,
where the float initializer is replaced by the exact grid value ``s * q``). For the onnxruntime target the result is
passed through ``limit_pair_sums`` again, since rounding up can push a neighbour pair past what ORT's AVX2 kernel adds
without saturating.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeconv.onnxgraph import Graph, Segments, module_name
from edgeconv.quantize.calibration import crop_photos
from edgeconv.quantize.qdq.offsets import compensate_offsets
from edgeconv.quantize.qdq.weights import dequantized_weight, weight_grid

if TYPE_CHECKING:
    import onnx
    import torch

logger = logging.getLogger(__name__)

ZETA, GAMMA = 1.1, -0.1  # stretch of the rectified sigmoid (paper, section 3.3)
QMIN, QMAX = -127, 127  # symmetric int8 weights, both targets


@dataclass(frozen=True)
class AdaRoundOptions:
    """Per layer: Adam steps on random batches of ``batch_size`` of the first ``samples`` calibration crops.

    ``batch_size`` 4 rather than 8: half the arithmetic per step, the same fidelity (mobilenet_v2, 1000 held-out crops,
    onnxruntime form: 86.9% / 99.7% confident, mean KL 0.045 with 4; 85.5% / 99.7%, 0.046 with 8; AdaRound 40 s
    instead of 67 s on 2 cores)."""

    iterations: int = 200
    batch_size: int = 4
    learning_rate: float = 1e-2
    # Weight of the rounding regularizer (mean over weights) against the output MSE, which is measured relative to
    # nearest rounding's so that one setting serves layers of any output scale.
    regularization: float = 0.1
    warmup: float = 0.2  # fraction of iterations before the regularizer starts
    beta: tuple[float, float] = (20.0, 2.0)  # annealed exponent of the regularizer
    samples: int = 64
    seed: int = 0
    window: int = 28  # Conv outputs larger than window x window are learned on random windows of that size
    # Layers with more weights keep nearest rounding: learning holds about 15 floats per weight (V, its gradient, Adam's
    # two moments, the soft weight and the autograd buffers), so fc6 of a convolutionized VGG-16 (103M weights) needs
    # ~6 GB on top of the graphs, and fcn8s's export was OOM-killed at 12 GB RSS with it (10 GB peak without AdaRound).
    # 20M keeps VGG's fc7 (16.8M) and every conv of the zoo.
    max_weights: int = 20_000_000
    # Depthwise convs (one input channel per filter) keep nearest rounding: each output reads k x k weights, so there
    # is little rounding to choose, and on their large maps they took a third of the time. mobilenet_v2, 2 cores
    # (per-layer lines of `edgeconv --verbose export mobilenet_v2 --weights imagenet --int8`): AdaRound lowered their
    # output MSE by 0-4.4% (median 0.6%) against 1-51% for the other layers, and took 17 of its 56 s; on 1000 held-out
    # crops (bench/results/int8_peers.md) without them, onnxruntime form 87.6% -> 87.8% top-1
    # agreement, confident 99.4% -> 100%, mean KL 0.0306 -> 0.0335; tensorrt form 85.3% -> 86.1%, 99.4% both,
    # 0.0575 -> 0.0581.
    depthwise: bool = False
    # ... and get an empirical bias correction instead (Nagel et al. 2019, "Data-Free Quantization", section 4.2, from
    # data): per output channel, the mean over the same crops of the float graph's pre-activation minus the QDQ
    # graph's (its input from the graph with every earlier layer already rounded), added to the bias where it holds
    # on photos it was not measured on (``_validated``). With few weights per output their rounding errors do not
    # average out, so each channel's output is shifted; AdaRound's layers absorb such shifts, the depthwise ones did
    # not. 1000 held-out crops, 2-core Xeon (VNNI: full 8-bit weights), no fallback, against no correction:
    # efficientnet_lite0 onnxruntime form 92.4% -> 94.2% top-1 agreement, mean KL 0.0062 -> 0.0053; mobilenet_v2
    # onnxruntime form 86.6% -> 87.2%, 0.0328 -> 0.0298, tensorrt form 86.5% -> 87.1%, 0.0442 -> 0.0421. Without
    # the check (every channel corrected, as 029bd0b did) efficientnet_lite0 fell to 80.5% / 0.0545: a channel whose
    # shift one photo carries, or whose sign changes from photo to photo, is moved the wrong way on the others.
    depthwise_bias: bool = True


@dataclass
class RoundedLayer:
    """The integer weight AdaRound chose for one node, with the scale it was chosen for."""

    node: str
    module: str  # PyTorch module name
    scale: np.ndarray
    weight: np.ndarray  # int8, in the node's weight layout
    error_nearest: float  # output MSE on the calibration crops with nearest rounding
    error: float  # ... with the learned rounding (or, ``bias`` set, with the corrected bias)
    flipped: float  # fraction of weights rounded away from nearest
    bias: np.ndarray | None = None  # added to the bias (depthwise convs: their empirical bias correction)


@dataclass
class _Layer:
    node: onnx.NodeProto
    float_weight: np.ndarray
    bias: np.ndarray | None
    scale: np.ndarray  # broadcastable to the weight
    store: Callable[[np.ndarray], None]
    target: str  # float-graph tensor to match: the node's output or the ReLU/Clip after it
    output: str  # the float-graph node's own output (before the ReLU/Clip)
    add_bias: Callable[[np.ndarray], np.ndarray] | None  # adds to the bias; returns what the graph really adds
    activation: tuple[float, float] | None  # (low, high) clamp applied after the node, if any
    attrs: dict[str, Any]  # the node's ONNX attributes
    offset: float = 0.0  # the input is a centred activation x - offset: the bias follows the rounded weight


def adaround(
    qdq: onnx.ModelProto,
    float_model: onnx.ModelProto,
    samples: np.ndarray,
    work: Path,
    options: AdaRoundOptions | None = None,
    *,
    constrain: Callable[[onnx.NodeProto, np.ndarray], np.ndarray] | None = None,
    progress: Callable[[int, int], None] | None = None,
    offsets: Mapping[str, float] | None = None,
    photos: np.ndarray | None = None,
) -> list[RoundedLayer]:
    """Re-round, in place, the 8-bit weights of every quantized Conv / Gemm / MatMul of ``qdq`` (built from
    ``float_model``, matched by node name). ``constrain(node, int_weight)`` returns the integer weight the target can
    run (the onnxruntime target limits neighbour pair sums). ``offsets``: centred activations (module name -> shift,
    ``offsets.compensate_offsets``), whose readers' biases move with their rounded weights. ``photos``: the photo each
    sample comes from (``CalibrationData.calibration_photos``; None: ``crop_photos``' 8 folds), against which the
    depthwise convs' bias correction is checked. Returns what was done per layer, for re-applying the result to a
    re-quantized graph (``apply_rounding``)."""
    import torch

    options = options or AdaRoundOptions()
    offsets = offsets or {}
    samples = samples[: options.samples]
    layers = _layers(qdq, float_model, offsets)
    if not options.depthwise and not options.depthwise_bias:
        layers = [layer for layer in layers if not _depthwise(layer)]
    done: list[RoundedLayer] = []
    corrections: dict[str, np.ndarray] = {}  # node -> bias correction, kept when centring re-derives the bias
    generator = torch.Generator().manual_seed(options.seed)
    groups = crop_photos(len(samples), 0) if photos is None else np.asarray(photos)[: len(samples)]
    # One pass over each graph: the QDQ graph up to each layer (its earlier layers already re-rounded), the float
    # graph up to each layer's target; only the tensors still needed later are kept between pieces.
    quantized = Segments(qdq, {Graph(qdq).inputs[0]: samples})
    reference = Segments(float_model, {Graph(float_model).inputs[0]: samples})
    for index, layer in enumerate(layers):
        if _depthwise(layer) and not options.depthwise:  # runs the QDQ graph through the layer in the same piece
            corrected = _correct_bias(layer, quantized, reference, qdq, float_model, offsets, corrections, groups)
            if corrected is not None:
                done.append(corrected)
            if progress:
                progress(index + 1, len(layers))
            continue
        inputs = quantized.advance(layer.node.name).get(layer.node.input[0])
        targets = reference.produce(layer.target)
        if inputs is None or targets is None:
            continue
        if layer.float_weight.size > options.max_weights:
            logger.info(
                "adaround %s: %.1fM weights, more than %.1fM: nearest rounding kept",
                layer.node.name,
                layer.float_weight.size / 1e6,
                options.max_weights / 1e6,
            )
            if progress:
                progress(index + 1, len(layers))
            continue
        started = time.perf_counter()
        q, nearest, error = _optimize(layer, torch.from_numpy(inputs), torch.from_numpy(targets), options, generator)
        if constrain is not None:
            q = constrain(layer.node, q)
        layer.store(q)
        compensate_offsets(qdq, float_model, offsets, corrections)  # later layers' inputs come from this graph
        flipped = float(np.mean(q != np.clip(np.rint(layer.float_weight / layer.scale), QMIN, QMAX)))
        module = module_name(layer.node.name) or layer.node.name
        done.append(RoundedLayer(layer.node.name, module, layer.scale.reshape(-1).copy(), q, nearest, error, flipped))
        logger.info(
            "adaround %s: output MSE %.3g -> %.3g, %.1f%% flipped (%.2f s)",
            layer.node.name,
            nearest,
            error,
            100 * flipped,
            time.perf_counter() - started,
        )
        if progress:
            progress(index + 1, len(layers))
    return done


def _correct_bias(
    layer: _Layer,
    quantized: Segments,
    reference: Segments,
    qdq: onnx.ModelProto,
    float_model: onnx.ModelProto,
    offsets: Mapping[str, float],
    corrections: dict[str, np.ndarray],
    groups: np.ndarray,
) -> RoundedLayer | None:
    """Empirical bias correction of one layer that keeps nearest rounding (``AdaRoundOptions.depthwise_bias``): add
    to its bias, per output channel, the mean of the float graph's pre-activation minus the QDQ graph's on the crops,
    where leaving each photo (``groups``) out shows it holds (``_validated``); ``quantized`` continues from the
    corrected output."""
    if layer.add_bias is None:
        return None
    compensate_offsets(qdq, float_model, offsets, corrections)  # the bias as the finished graph derives it
    want = reference.produce(layer.output)
    got = quantized.produce(layer.node.output[0])
    if want is None or got is None or want.shape != got.shape:
        return None
    error = want - got
    per_sample = error.mean(axis=tuple(range(2, got.ndim)), dtype=np.float64)  # samples x channels
    added = layer.add_bias(_validated(per_sample, groups).astype(np.float32))
    corrections[layer.node.name] = added
    got += added.reshape(1, -1, *[1] * (got.ndim - 2))  # later layers read the corrected output
    # The output MSE before and after, from the error's sums: mean((e - a)^2) = mean(e^2) - 2 a.sum(e) / n + a^2 / C
    before = float(np.vdot(error.reshape(-1), error.reshape(-1))) / error.size
    channel_sums = per_sample.mean(axis=0) * error.size / error.shape[1]
    after = before + float(np.sum(added * (added * error.size / error.shape[1] - 2 * channel_sums))) / error.size
    weight = dequantized_weight(layer.node, quantized.graph.producer, quantized.graph.initializers)
    assert weight is not None  # _layers found the same DequantizeLinear
    q = np.rint(weight / layer.scale).astype(np.int8)
    module = module_name(layer.node.name) or layer.node.name
    logger.info(
        "bias correction %s: %d of %d channels, output MSE %.3g -> %.3g",
        layer.node.name,
        np.count_nonzero(added),
        added.size,
        before,
        after,
    )
    return RoundedLayer(layer.node.name, module, layer.scale.reshape(-1).copy(), q, before, after, 0.0, added)


def _validated(error: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per channel, the mean of ``error`` (samples x channels: each sample's mean error over the map) where it holds
    out of sample: leaving each group (photo) out in turn, the mean of the other groups' samples, added, must lower the
    left-out groups' squared error in total (a group of n samples with mean m loses n * (2 * d * m - d^2) of it to a
    correction d); 0 elsewhere."""
    labels = np.unique(groups)
    counts = np.array([np.sum(groups == g) for g in labels], dtype=np.float64)[:, None]
    means = np.stack([error[groups == g].mean(axis=0) for g in labels])  # groups x channels
    total = (counts * means).sum(axis=0)
    others = (total - counts * means) / np.maximum(len(groups) - counts, 1)  # each group's d, measured without it
    gain = (counts * (2 * others * means - others**2)).sum(axis=0)
    return np.where(gain > 0, total / len(groups), 0.0)


def apply_rounding(qdq: onnx.ModelProto, float_model: onnx.ModelProto, rounded: Sequence[RoundedLayer]) -> int:
    """Write ``rounded`` weights (and bias corrections) into a re-quantized ``qdq`` wherever the node still has the
    same 8-bit scale (a node the fallback moved to 16 bits keeps its own). Returns the number of layers written."""
    by_node = {r.node: r for r in rounded}
    count = 0
    for layer in _layers(qdq, float_model):
        r = by_node.get(layer.node.name)
        if r is not None and np.array_equal(r.scale, layer.scale.reshape(-1)):
            layer.store(r.weight)
            if r.bias is not None and layer.add_bias is not None:
                layer.add_bias(r.bias)
            count += 1
    return count


def bias_corrections(rounded: Sequence[RoundedLayer]) -> dict[str, np.ndarray]:
    """Node -> bias correction, for ``compensate_offsets``."""
    return {r.node: r.bias for r in rounded if r.bias is not None}


def _layers(
    qdq: onnx.ModelProto, float_model: onnx.ModelProto, offsets: Mapping[str, float] | None = None
) -> list[_Layer]:
    """The 8-bit weight layers of ``qdq``, with how to read and write each one's integer weight."""
    import onnx
    from onnx import numpy_helper

    inits = {i.name: i for i in qdq.graph.initializer}
    float_inits = {i.name: i for i in float_model.graph.initializer}
    float_nodes = {n.name: n for n in float_model.graph.node}
    float_producer = {o: n for n in float_model.graph.node for o in n.output}
    producer = {o: n for n in qdq.graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in float_model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    layers = []
    for node in qdq.graph.node:
        source = float_nodes.get(node.name)
        if source is None or len(node.input) < 2 or not _supported(node):
            continue
        dq = producer.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[1] not in inits:
            continue
        if source.input[1] not in float_inits:
            continue
        weight = numpy_helper.to_array(float_inits[source.input[1]]).astype(np.float32)
        if (node.op_type == "Conv") != (weight.ndim == 4):
            continue  # 1-D / 3-D convs are not in the zoo
        scale, zero = weight_grid(dq, inits, weight.ndim)
        if np.any(zero):
            continue  # symmetric weights only
        scale = scale.astype(np.float32)
        store = _writer(dq, inits, producer, scale)
        if store is None:
            continue
        bias = None
        if len(source.input) > 2 and source.input[2] in float_inits:
            bias = numpy_helper.to_array(float_inits[source.input[2]]).astype(np.float32)
        target, activation = source.output[0], None
        after = consumers.get(source.output[0], [])
        if len(after) == 1 and after[0].op_type in ("Relu", "Clip"):
            activation = _clamp(after[0], float_inits)
            if activation is not None:
                target = after[0].output[0]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        before = float_producer.get(source.input[0])
        if before is not None and before.op_type == "Pad":  # a PaddedConv2d reading a centred activation
            before = float_producer.get(before.input[0])
        offset = (offsets or {}).get(module_name(before.name) or "", 0.0) if before is not None else 0.0
        if offset and node.op_type != "Conv":
            offset = 0.0  # centring only ever feeds convs (prepare.center_unsigned_activations)
        add_bias = _bias_adder(node, inits, producer) if len(node.input) > 2 else None
        layers.append(
            _Layer(node, weight, bias, scale, store, target, source.output[0], add_bias, activation, attrs, offset)
        )
    return layers


def _depthwise(layer: _Layer) -> bool:
    """A grouped Conv with one input channel per group."""
    return layer.node.op_type == "Conv" and int(layer.attrs.get("group", 1)) > 1 and layer.float_weight.shape[1] == 1


def _supported(node: onnx.NodeProto) -> bool:
    """2-D Conv, plain Gemm (no transA, alpha = beta = 1) and MatMul: what ``_forward`` computes."""
    import onnx

    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Gemm":
        return not attrs.get("transA", 0) and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
    return node.op_type in ("Conv", "MatMul")


def _writer(
    dq: onnx.NodeProto, inits: dict[str, onnx.TensorProto], producer: dict[str, onnx.NodeProto], scale: np.ndarray
) -> Callable[[np.ndarray], None] | None:
    from onnx import TensorProto, numpy_helper

    if dq.input[0] in inits:
        tensor = inits[dq.input[0]]
        if tensor.data_type != TensorProto.INT8:  # 16-bit fallback weights are left as they are
            return None

        def store_int(q: np.ndarray) -> None:
            tensor.CopyFrom(numpy_helper.from_array(q.astype(np.int8), tensor.name))

        return store_int
    q_node = producer.get(dq.input[0])
    if q_node is None or q_node.op_type != "QuantizeLinear" or q_node.input[0] not in inits:
        return None
    if len(q_node.input) > 2 and q_node.input[2] in inits and inits[q_node.input[2]].data_type != TensorProto.INT8:
        return None
    float_tensor = inits[q_node.input[0]]

    def store_float(q: np.ndarray) -> None:  # the tensorrt form quantizes a float weight: give it the grid value
        float_tensor.CopyFrom(
            numpy_helper.from_array((q.astype(np.float32) * scale).astype(np.float32), float_tensor.name)
        )

    return store_float


def _bias_adder(
    node: onnx.NodeProto, inits: dict[str, onnx.TensorProto], producer: dict[str, onnx.NodeProto]
) -> Callable[[np.ndarray], np.ndarray] | None:
    """How to add to ``node``'s bias: a float initializer (tensorrt form), or an int32 one behind a
    DequantizeLinear (onnxruntime form), where the amount is rounded to the bias's grid."""
    from onnx import TensorProto, numpy_helper

    name = node.input[2]
    if name in inits and inits[name].data_type == TensorProto.FLOAT:
        tensor = inits[name]

        def add_float(delta: np.ndarray) -> np.ndarray:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) + delta, tensor.name))
            return delta

        return add_float
    dq = producer.get(name)
    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits or dq.input[1] not in inits:
        return None
    if inits[dq.input[0]].data_type != TensorProto.INT32:
        return None
    if len(dq.input) > 2 and dq.input[2] and np.any(numpy_helper.to_array(inits[dq.input[2]])):
        return None  # ORT writes a zero point of zeros
    quantized, scale = inits[dq.input[0]], numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32)

    def add_int(delta: np.ndarray) -> np.ndarray:
        steps = np.rint(delta / scale)
        value = numpy_helper.to_array(quantized).astype(np.int64) + steps.astype(np.int64)
        info = np.iinfo(np.int32)
        quantized.CopyFrom(numpy_helper.from_array(np.clip(value, info.min, info.max).astype(np.int32), quantized.name))
        return (steps * scale).astype(np.float32)

    return add_int


def _clamp(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> tuple[float, float] | None:
    from onnx import numpy_helper

    if node.op_type == "Relu":
        return (0.0, math.inf)
    bounds = []
    for i in (1, 2):
        if len(node.input) <= i or not node.input[i]:
            bounds.append(math.inf if i == 2 else -math.inf)
        elif node.input[i] in inits:
            bounds.append(float(numpy_helper.to_array(inits[node.input[i]])))
        else:
            return None
    return bounds[0], bounds[1]


def _pad(layer: _Layer, x: torch.Tensor) -> torch.Tensor:
    """``x`` with the Conv's zero padding applied (ONNX ``pads``: begins then ends)."""
    import torch.nn.functional as F

    pads = list(layer.attrs.get("pads", [0, 0, 0, 0]))
    return F.pad(x, [pads[1], pads[3], pads[0], pads[2]]) if any(pads) else x


def _forward(
    layer: _Layer, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, *, padded: bool = False
) -> torch.Tensor:
    """The layer on ``x`` (``padded``: the Conv's padding already applied, as ``_pad`` does)."""
    import torch
    import torch.nn.functional as F

    attrs, op = layer.attrs, layer.node.op_type
    if layer.offset and bias is not None:  # W_q (x - c) + b + c sum(W_q): what compensate_offsets writes
        bias = bias + layer.offset * (weight - torch.from_numpy(layer.float_weight)).flatten(1).sum(1)
    if op == "Conv":
        pads = [0, 0, 0, 0] if padded else list(attrs.get("pads", [0] * 2 * (weight.ndim - 2)))
        half = len(pads) // 2
        if pads[:half] != pads[half:]:
            x = _pad(layer, x)
            pads = [0] * len(pads)
        y = F.conv2d(
            x,
            weight,
            bias,
            stride=tuple(attrs.get("strides", [1, 1])),
            padding=tuple(pads[:half]),
            dilation=tuple(attrs.get("dilations", [1, 1])),
            groups=int(attrs.get("group", 1)),
        )
    elif op == "Gemm":
        w = weight.t() if attrs.get("transB", 0) else weight
        y = x @ w
        if bias is not None:
            y = y + bias
    else:  # MatMul (bias, if any, is a separate Add that is not part of the layer)
        y = x @ weight
    if layer.activation is not None:
        y = y.clamp(layer.activation[0], layer.activation[1])
    return y


class _SoftWeight:
    """The soft weight ``s * clamp(floor + h(V), QMIN, QMAX)``, with
    ``h(V) = clamp(sigmoid(V) (ZETA - GAMMA) + GAMMA, 0, 1)``, and one Adam step on ``V`` for
    ``loss + regularization * mean(1 - |2h - 1|^beta)`` given the loss's gradient with respect to the weight: the
    derivative autograd computes and ``torch.optim.Adam``'s update, written out by hand in buffers allocated once
    (``tests/test_quantize_adaround.py`` compares both with torch's). Autograd's chain allocates a fresh tensor of the
    layer's size for each of its ~20 element-wise steps, and the large late layers (a 1280 x 1000 classifier) spent
    most of their AdaRound time there and in the optimizer's bookkeeping, not in the layer itself."""

    BETAS, EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults

    def __init__(self, v: torch.Tensor, floor: torch.Tensor, scale: torch.Tensor, learning_rate: float) -> None:
        import torch

        self.v, self.floor, self.scale, self.learning_rate = v, floor, scale, learning_rate
        self.sigmoid, self.h, self.grad, self.work = (torch.empty_like(v) for _ in range(4))
        self.h_free = self.level_free = torch.empty(0, dtype=torch.bool)
        self.moment, self.moment_sq = torch.zeros_like(v), torch.zeros_like(v)
        self.steps = 0

    def weight(self) -> torch.Tensor:
        """The soft weight, a new leaf whose ``grad`` the loss's backward pass fills."""
        import torch

        with torch.no_grad():
            torch.sigmoid(self.v, out=self.sigmoid)
            torch.mul(self.sigmoid, ZETA - GAMMA, out=self.h).add_(GAMMA)
            self.h_free = (self.h >= 0) & (self.h <= 1)  # where each clamp passes the gradient (bounds included)
            self.h.clamp_(0, 1)
            level = self.floor + self.h
            self.level_free = (level >= QMIN) & (level <= QMAX)
            return level.clamp_(QMIN, QMAX).mul_(self.scale).requires_grad_(True)

    def gradient(self, weight: torch.Tensor, regularization: float, beta: float | None) -> torch.Tensor:
        """d(total loss)/dV from ``weight.grad``, with the rounding regularizer's part unless ``beta`` is None."""
        import torch

        with torch.no_grad():
            assert weight.grad is not None
            grad = torch.mul(weight.grad, self.scale, out=self.grad).mul_(self.level_free)  # d loss / d h
            if beta is not None:  # d/dh of mean(1 - |2h - 1|^beta) = -2 beta |2h - 1|^(beta - 1) sign(2h - 1) / n
                centred = torch.mul(self.h, 2.0, out=self.work).sub_(1.0)
                scale = -2 * beta * regularization / grad.numel()
                grad.addcmul_(centred.abs().pow_(beta - 1), centred.sign(), value=scale)
            slope = torch.mul(self.sigmoid, -1.0, out=self.work).add_(1.0).mul_(self.sigmoid)  # sigmoid'(V)
            return grad.mul_(slope).mul_(ZETA - GAMMA).mul_(self.h_free)

    def rounded_up(self) -> torch.Tensor:
        """Where the learned rounding goes up from the floor: h(V) >= 0.5."""
        import torch

        with torch.no_grad():
            return torch.sigmoid(self.v).mul_(ZETA - GAMMA).add_(GAMMA) >= 0.5

    def step(self, weight: torch.Tensor, regularization: float, beta: float | None) -> None:
        """One Adam step on ``V``: torch.optim.Adam's single-tensor update, operation for operation."""
        import torch

        grad = self.gradient(weight, regularization, beta)
        beta1, beta2 = self.BETAS
        self.steps += 1
        with torch.no_grad():
            self.moment.lerp_(grad, 1 - beta1)
            self.moment_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            correction1, correction2 = 1 - beta1**self.steps, 1 - beta2**self.steps
            denominator = torch.sqrt(self.moment_sq, out=self.work).div_(correction2**0.5).add_(self.EPS)
            self.v.addcdiv_(self.moment, denominator, value=-self.learning_rate / correction1)


def _optimize(
    layer: _Layer, x: torch.Tensor, target: torch.Tensor, options: AdaRoundOptions, generator: torch.Generator
) -> tuple[np.ndarray, float, float]:
    """Learned integer weight, and the output MSE on all of ``x`` with nearest and with learned rounding."""
    import torch

    w = torch.from_numpy(layer.float_weight)
    s = torch.from_numpy(layer.scale)
    bias = torch.from_numpy(layer.bias) if layer.bias is not None else None
    floor = torch.floor(w / s)
    rest = (w / s - floor).clamp(1e-4, 1 - 1e-4)
    # h(V) = rest at the start: the soft weight equals the float weight
    v = -torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1)

    def error(q: torch.Tensor) -> float:
        with torch.no_grad():
            total = 0.0
            for start in range(0, len(x), 16):
                y = _forward(layer, x[start : start + 16], q * s, bias)
                total += float(((y - target[start : start + 16]) ** 2).sum())
            return total / target.numel()

    nearest = torch.clamp(torch.round(w / s), QMIN, QMAX)
    base = error(nearest)
    if not base > 0:
        return nearest.numpy().astype(np.int8), base, base
    soft = _SoftWeight(v, floor, s, options.learning_rate)
    warm = int(options.warmup * options.iterations)
    sample = _sampler(layer, x, target, options, generator)
    for step in range(options.iterations):
        inputs, wanted, padded = sample()
        weight = soft.weight()
        y = _forward(layer, inputs, weight, bias, padded=padded)
        (((y - wanted) ** 2).mean() / base).backward()
        beta = None
        if step >= warm:
            progress = (step - warm) / max(1, options.iterations - warm)
            beta = options.beta[1] + 0.5 * (options.beta[0] - options.beta[1]) * (1 + math.cos(math.pi * progress))
        soft.step(weight, options.regularization, beta)
    learned = torch.clamp(floor + soft.rounded_up().to(floor.dtype), QMIN, QMAX)
    learned_error = error(learned)
    if learned_error > base:  # never worse than nearest on the calibration crops
        return nearest.numpy().astype(np.int8), base, base
    return learned.numpy().astype(np.int8), base, learned_error


def _sampler(
    layer: _Layer, x: torch.Tensor, target: torch.Tensor, options: AdaRoundOptions, generator: torch.Generator
) -> Callable[[], tuple[torch.Tensor, torch.Tensor, bool]]:
    """What each optimization step sees: ``batch_size`` random crops (input, target, whether the input is padded).
    A Conv whose output map is larger than ``window`` x ``window`` is optimized on one random output window of that
    size (and the input window it reads) per step: the same loss in expectation, at a fraction of the cost on the
    early, high-resolution layers, which took most of the time with whole maps."""
    import torch

    count = min(options.batch_size, len(x))
    size = options.window
    if layer.node.op_type != "Conv" or target.ndim != 4 or target.shape[2] * target.shape[3] <= size * size:

        def whole() -> tuple[torch.Tensor, torch.Tensor, bool]:
            idx = torch.randint(0, len(x), (count,), generator=generator)
            return x[idx], target[idx], False

        return whole
    padded = _pad(layer, x)
    stride = layer.attrs.get("strides", [1, 1])
    dilation = layer.attrs.get("dilations", [1, 1])
    kernel = layer.float_weight.shape[2:]
    out_h, out_w = target.shape[2:]
    win_h, win_w = min(size, out_h), min(size, out_w)

    def window() -> tuple[torch.Tensor, torch.Tensor, bool]:
        idx = torch.randint(0, len(x), (count,), generator=generator)
        oy = int(torch.randint(0, out_h - win_h + 1, (1,), generator=generator))
        ox = int(torch.randint(0, out_w - win_w + 1, (1,), generator=generator))
        iy, ix = oy * stride[0], ox * stride[1]
        span_h = (win_h - 1) * stride[0] + (kernel[0] - 1) * dilation[0] + 1
        span_w = (win_w - 1) * stride[1] + (kernel[1] - 1) * dilation[1] + 1
        inputs = padded[:, :, iy : iy + span_h, ix : ix + span_w][idx]  # the window of every crop, then 8 of them
        return inputs, target[:, :, oy : oy + win_h, ox : ox + win_w][idx], True

    return window
