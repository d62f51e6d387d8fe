"""FP16 and INT8 forms of an exported detector: the network in low precision, the box work in float.

A detector's graph is two kinds of work. The *network* -- the trunk and FPN, the RPN's conv head, the box head's fc
layers and the box predictor (``NETWORK_MODULES``) -- is where the arithmetic is and where FP16 and INT8 pay off. The
*box work* -- anchors, box decoding, clipping, score thresholds, TopK, NMS, RoI pooling and the level assignment --
stays in float32: box coordinates need float32's resolution (FP16 has 0.5 px steps above 1024), NMS decides on exact
score comparisons, and ONNX Runtime's CPU RoiAlign and NonMaxSuppression take float32 only.

- FP16 (``half_network``): the network's float tensors and weights become float16, with a Cast wherever a float16
  tensor meets the box work (and back). Nothing else changes: the box work, the If subgraphs and the outputs are
  float32 as exported.
- INT8 (``quantize_detector``): ONNX Runtime's ``quantize_static`` on the network's nodes only, in the target's QDQ
  scheme (the classifiers', ``edgeconv.quantize.qdq.ort_static``), calibrated on the detector's own inputs: photos of
  ``calibration/calib`` at their own size (the ONNX Runtime form resizes inside the graph) or resized to the fixed
  form's size. The RPN's and the box predictor's outputs leave the network in float (``float_heads``).

Both are gated by the F1 of their boxes (same class, IoU >= 0.5, ``edgeconv.boxes.f1_score``), the box-level
counterpart of a classifier's top-1 agreement: FP16 against PyTorch FP32 on the export's photos, INT8 against the FP32
graph on held-out photos (``calibration/eval``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# The modules of the zoo's detectors that run the network (module names as the exporter's node scopes give them;
# the fixed form nests the detector under ``detector.``): Faster R-CNN's, then Fast R-CNN's.
NETWORK_MODULES = (
    "backbone", "rpn.head", "roi_heads.box_head", "roi_heads.box_predictor",
    "features", "head", "cls_score", "bbox_pred",
)  # fmt: skip
# Inputs that stay float32 whatever the data's type: Resize's roi and scales.
_FLOAT_INPUTS = {"Resize": (1, 2)}


def is_network(node_name: str) -> bool:
    """Whether an exported detector's node belongs to one of ``NETWORK_MODULES``."""
    from edgeconv.onnxgraph import module_name

    module = module_name(node_name).removeprefix("detector.")
    return any(module == prefix or module.startswith(prefix + ".") for prefix in NETWORK_MODULES)


def _elem_types(model: Any) -> dict[str, int]:
    """Element type of every top-level tensor that ONNX shape inference can type."""
    from edgeconv.onnxgraph import inferred_structure

    graph = inferred_structure(model).graph  # the large weights are typed graph inputs there
    types = {i.name: i.data_type for i in graph.initializer}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
            types[info.name] = info.type.tensor_type.elem_type
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            types[node.output[0]] = node.attribute[0].t.data_type
    return types


def half_network(model: Any) -> Any:
    """A copy of the exported detector ``model`` (``onnx.ModelProto``) with its network in float16 and everything else
    as it was; see the module docstring. Only top-level nodes change: subgraphs read float32 tensors as before."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    half = onnx.ModelProto()
    half.CopyFrom(model)
    graph = half.graph
    types = _elem_types(half)
    float32 = TensorProto.FLOAT
    producers = {out: node for node in graph.node for out in node.output}
    initializers = {i.name: i for i in graph.initializer}

    def typed_float(name: str) -> bool:
        return types.get(name) == float32

    # A node runs in float16 when it is in the network, writes a float32 tensor and every input it reads as data is
    # typed (Shape, Cast and the shape arithmetic write integers and stay as they are); not a node with subgraphs (the
    # ZF trunk's LRN squeeze If), whose branches write float32.
    halved = [
        node for node in graph.node
        if is_network(node.name) and node.op_type not in ("Constant", "If", "Loop", "Scan")
        and any(typed_float(o) for o in node.output)
        and all(name == "" or name in types for name in node.input)
    ]  # fmt: skip
    halved_outputs = {out for node in halved for out in node.output if typed_float(out)}
    renamed = {name: f"{name}/fp16" for name in halved_outputs}
    before: dict[int, list[Any]] = {}  # Casts to float16, placed before their first reader (the node order stays valid
    after: dict[int, list[Any]] = {}  # for the If subgraphs' implicit reads), and Casts back after their writer
    converted: dict[str, str] = {}

    def as_half(name: str, reader: Any) -> str:
        """The float16 version of the float32 tensor ``name`` (an initializer's copy, a Constant's copy or a Cast)."""
        if name in renamed:
            return renamed[name]
        if name not in converted:
            converted[name] = f"{name}/to_fp16"
            constant = producers.get(name)
            value = initializers.get(name)
            if value is None and constant is not None and constant.op_type == "Constant":
                value = constant.attribute[0].t
            if value is not None:
                array = numpy_helper.to_array(value)
                graph.initializer.append(numpy_helper.from_array(array.astype(np.float16), converted[name]))
            else:
                cast = helper.make_node(
                    "Cast", [name], [converted[name]], to=TensorProto.FLOAT16, name=f"{name}/Cast_fp16"
                )
                before.setdefault(id(reader), []).append(cast)
        return converted[name]

    for node in halved:
        keep = _FLOAT_INPUTS.get(node.op_type, ())
        for i, name in enumerate(node.input):
            if name and i not in keep and typed_float(name):
                node.input[i] = as_half(name, node)
        for i, name in enumerate(node.output):
            if name in renamed:
                node.output[i] = renamed[name]
    # Every float32 name is still float32 where anything outside the halved nodes reads it: a Cast back from float16.
    halved_ids = {id(node) for node in halved}
    read_outside = {name for node in graph.node if id(node) not in halved_ids for name in node.input}
    read_outside |= {o.name for o in graph.output} | _outer_scope_reads(graph)
    read_as_float = {
        node.input[i] for node in halved for i in _FLOAT_INPUTS.get(node.op_type, ()) if i < len(node.input)
    }
    for node in halved:
        for name in node.output:
            original = name.removesuffix("/fp16")
            if name != original and (original in read_outside or original in read_as_float):
                cast = helper.make_node("Cast", [name], [original], to=float32, name=f"{original}/Cast_fp32")
                after.setdefault(id(node), []).append(cast)
    ordered = [new for node in graph.node for new in [*before.get(id(node), []), node, *after.get(id(node), [])]]
    del graph.node[:]
    graph.node.extend(ordered)
    still_read = {name for node in graph.node for name in node.input} | _outer_scope_reads(graph)
    for node in [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in still_read]:
        graph.node.remove(node)  # network constants read only as float16 copies
    for init in [i for i in graph.initializer if i.name not in still_read]:
        graph.initializer.remove(init)
    del graph.value_info[:]  # types changed; the runtime infers them again
    return half


def _outer_scope_reads(graph: Any) -> set[str]:
    """Names the subgraphs of ``graph``'s nodes (If branches), at any depth, read from the graphs around them."""
    names: set[str] = set()
    for node in graph.node:
        for attribute in node.attribute:
            for inner in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                names.update(name for sub in inner.node for name in sub.input)
                names |= _outer_scope_reads(inner)
    return names


# A detector's whole graph runs once per calibration or held-out sample (resnet50_fpn: about a second at 800 px on 2
# cores), so its defaults are smaller than a classifier's 128 / 300 crops.
DETECTOR_CALIB_SAMPLES = 32
DETECTOR_EVAL_SAMPLES = 16


def detector_samples(
    images: Sequence[Any], count: int, *, size: tuple[int, int] | None = None, seed: int = 0
) -> list[np.ndarray]:
    """``count`` detector inputs (1, 3, H, W) float32 in [0, 1] from PIL ``images``: each image whole first, then
    random crops of 40-100% of each side (round-robin over the images, from ``seed``). At their own size for the ONNX
    Runtime form (it resizes inside the graph); resized to ``size`` (H, W) for the fixed form."""
    from PIL import Image

    from edgeconv.detection import photo_tensor

    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        image = images[i % len(images)]
        if i >= len(images):
            width, height = image.size
            w, h = (max(32, round(side * rng.uniform(0.4, 1.0))) for side in (width, height))
            left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            image = image.crop((left, top, left + w, top + h))
        if size is not None:
            image = image.resize(size[::-1], Image.Resampling.BILINEAR)
        out.append(photo_tensor(np.asarray(image.convert("RGB"))).numpy())
    return out


def box_f1(
    reference: Any, candidate: Any, samples: Sequence[np.ndarray], fixed: bool, progress: Any = None
) -> list[float]:
    """F1 (IoU >= 0.5, same class) of the ``candidate`` session's boxes against the ``reference`` session's, per
    sample; ``progress(done, total)`` after each."""
    from edgeconv.boxes import f1_score
    from edgeconv.detection import run_onnx_detector

    scores = []
    for sample in samples:
        found = run_onnx_detector(reference, sample, fixed), run_onnx_detector(candidate, sample, fixed)
        scores.append(f1_score(*found))
        if progress is not None:
            progress(len(scores), len(samples))
    return scores


def detector_int8_options(**overrides: Any) -> Any:
    """``Int8Options`` with a detector's sample counts (``DETECTOR_CALIB_SAMPLES`` / ``DETECTOR_EVAL_SAMPLES``)."""
    from edgeconv.quantize.options import Int8Options

    return Int8Options(**{"calib_samples": DETECTOR_CALIB_SAMPLES, "eval_samples": DETECTOR_EVAL_SAMPLES, **overrides})


def quantize_detector(
    fused_fp32: str | os.PathLike[str],
    reference_fp32: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    options: Any,
    *,
    fixed: bool,
    size: tuple[int, int] | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """INT8 form of an exported detector (see the module docstring), written atomically at ``out_path`` when its
    boxes pass the gate; returns the manifest's ``int8`` entry.

    ``fused_fp32``: the detector exported with its BatchNorms folded into the convs (``edgeconv.fuse``), the graph
    that is quantized; ``reference_fp32``: the FP32 artifact (``model.onnx``), the INT8 boxes' reference. ``options``:
    ``Int8Options`` -- ``target`` (the form's QDQ scheme), ``calib_dir``, ``calib_method``, ``calib_samples`` and
    ``eval_samples`` (``detector_int8_options`` gives a detector's defaults), ``percentile``, ``seed``,
    ``cpu_kernels``; ``min_agreement``: the least mean F1; ``force``: write it below the gate too. Raises
    ``QuantizationError`` below the gate."""
    import tempfile
    import time

    import onnx
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    from edgeconv.errors import QuantizationError
    from edgeconv.files import write_atomic
    from edgeconv.onnxgraph import session
    from edgeconv.quantize.calibration import CalibrationReader, split_calibration_folder
    from edgeconv.quantize.options import cpu_kernels_saturate
    from edgeconv.quantize.qdq.ort_static import (
        _ort_method,
        _quantize_kwargs,
        activation_grid,
        float_outputs,
        percentile_ranges,
    )
    from edgeconv.quantize.qdq.weights import make_saturation_safe

    calib_count, eval_count = options.calib_samples, options.eval_samples
    progress = progress or options.progress  # the CLI's progress line: samples done / total in the current stage
    stage = options.on_stage or (lambda _label: None)  # the CLI prints one line per finished stage
    started = time.perf_counter()
    split = split_calibration_folder(options.calib_dir, seed=options.seed, method=options.calib_method)
    calibration = detector_samples(
        [im for _, im in split.calibration.images], calib_count, size=size, seed=options.seed
    )
    held_out = detector_samples([im for _, im in split.evaluation.images], eval_count, size=size, seed=options.seed + 1)
    source = onnx.load(str(fused_fp32))
    nodes = [node.name for node in source.graph.node if is_network(node.name)]
    kwargs = _quantize_kwargs(options.target, options)
    saturating = options.target == "onnxruntime" and cpu_kernels_saturate(options.cpu_kernels)
    with tempfile.TemporaryDirectory(prefix="edgeconv-int8-detector-") as tmp:
        work = Path(tmp)
        extra: dict[str, Any] = {}
        stage(f"calibrate ({options.calib_method}) and quantize the network on {len(calibration)} samples")
        streamed = options.calib_method in ("percentile", "mse")  # ORT's own calibrator would keep every tensor
        if streamed:
            cache = work / "ranges.json"
            grid = activation_grid(options.target) if options.calib_method == "mse" else None
            ranges = percentile_ranges(source, calibration, "image", options.percentile, 1, progress, grid=grid)
            save_tensors_data(ranges, cache)
            extra["calibration_cache_path"] = str(cache)
        quantized_path = work / "int8.onnx"
        # read by ORT's own calibrator (minmax, entropy), which then counts on the progress line sample by sample
        reader = CalibrationReader(calibration, "image", progress=None if streamed else progress)
        root = logging.getLogger()  # ORT's quantizer warns on the root logger: shared RPN-head biases, no pre-process
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            quantize_static(
                str(fused_fp32), str(quantized_path), reader, nodes_to_quantize=nodes,
                calibrate_method=_ort_method(options.calib_method), **kwargs, **extra,
            )  # fmt: skip
        except Exception as exc:
            raise QuantizationError(f"INT8 quantization of {fused_fp32} failed: {str(exc).splitlines()[0]}") from exc
        finally:
            root.setLevel(level)
        quantized = onnx.load(str(quantized_path))
        float_outputs(quantized)
        float_heads(quantized)
        safe_layers = make_saturation_safe(quantized, source) if saturating else 0
        quantize_seconds = time.perf_counter() - started
        stage(f"INT8 boxes against FP32 on {len(held_out)} held-out samples")
        reference = session(reference_fp32)
        candidate = session(quantized, exact=fixed)  # the fixed form as written (TensorRT's arithmetic), as classifiers
        scores = box_f1(reference, candidate, held_out, fixed, progress)
    mean_f1 = float(np.mean(scores))
    entry = {
        "target": options.target,
        "scheme": "network Conv/Gemm (and, onnxruntime form, the ops between them) in QDQ INT8; box work in float32",
        "quantized_nodes": sum(node.op_type == "QuantizeLinear" for node in quantized.graph.node),
        "calibration": {
            "method": options.calib_method,
            "samples": len(calibration),
            "images": [p.name for p in split.calibration.paths],
        },  # fmt: skip
        "weights": {"saturation_safe_layers": safe_layers, "cpu_kernels": options.cpu_kernels},
        "fidelity": {
            "metric": "F1 of INT8 boxes against FP32 boxes (same class, IoU >= 0.5), per held-out sample",
            "samples": len(held_out),
            "images": [p.name for p in split.evaluation.paths],
            "mean_f1": round(mean_f1, 4),
            "min_f1": round(float(np.min(scores)), 4),
            "per_sample": [round(float(v), 4) for v in scores],
            "gate": options.min_agreement,
            "passed": mean_f1 >= options.min_agreement,
        },
        "seconds": {"quantize": round(quantize_seconds, 2), "total": round(time.perf_counter() - started, 2)},
    }
    if mean_f1 < options.min_agreement and not options.force:
        raise QuantizationError(
            f"INT8 boxes agree with FP32 at mean F1 {mean_f1:.3f} on {len(held_out)} held-out samples, below the gate "
            f"{options.min_agreement:.2f}; a trained detector's are much closer than a random one's -- pass your "
            "--weights, or --force to keep it anyway, or --min-agreement to set the gate"
        )
    write_atomic(Path(out_path), quantized.SerializeToString())
    return entry


def float_heads(model: Any) -> int:
    """Remove the QuantizeLinear -> DequantizeLinear pairs through which only the box work reads a network output (the
    RPN's objectness and box deltas, the box predictor's class scores and box deltas), so that the box work decodes,
    thresholds and ranks float outputs, not their 8-bit roundings (as ``float_outputs`` does for a classifier's
    logits); returns how many pairs were removed. A tensor the network reads as well (the FPN's maps, which the RPN
    head and RoIAlign both read) keeps its pair: both read the same values."""
    from edgeconv.onnxgraph import Graph

    graph = Graph(model)
    removed = []
    for q in [n for n in graph.nodes if n.op_type == "QuantizeLinear"]:
        source = graph.producer.get(q.input[0])
        if source is None or not is_network(source.name) or len(graph.consumers.get(q.input[0], [])) != 1:
            continue
        dqs = graph.consumers.get(q.output[0], [])
        readers = [r for dq in dqs for r in graph.consumers.get(dq.output[0], [])]
        if not dqs or any(dq.op_type != "DequantizeLinear" for dq in dqs) or any(is_network(r.name) for r in readers):
            continue
        for dq in dqs:
            for reader in readers:
                for i, name in enumerate(reader.input):
                    if name == dq.output[0]:
                        reader.input[i] = q.input[0]
        removed += [q, *dqs]
    for node in removed:
        model.graph.node.remove(node)
    return sum(node.op_type == "QuantizeLinear" for node in removed)


# The FP16 form's gate: mean box F1 against PyTorch FP32 on the export's photos. A seeded random detector amplifies
# float16's rounding from layer to layer (fasterrcnn_mobilenet_v3_large_320_fpn: FPN outputs 1.6% off in relative
# norm), so its boxes are not those of FP32 one for one; a broken conversion scores near 0.
FP16_MIN_F1 = 0.7


def validate_detector_fp16(
    path: str | os.PathLike[str],
    model: Any,
    photos: Sequence[np.ndarray],
    names: Sequence[str],
    image_size: tuple[int, int] | None = None,
    *,
    min_f1: float = FP16_MIN_F1,
) -> dict[str, Any]:
    """The FP16 graph at ``path`` against the PyTorch FP32 ``model`` on each photo (at its own size, or resized to the
    fixed form's ``image_size``): F1 (same class, IoU >= 0.5) per photo, their mean, and whether it is >= ``min_f1``."""
    from edgeconv.boxes import f1_score
    from edgeconv.detection import photo_tensor, resized_photo, run_onnx_detector, run_torch_detector
    from edgeconv.onnxgraph import session

    runner = session(path)
    fixed = image_size is not None
    per_photo = {}
    for name, photo in zip(names, photos, strict=True):
        image = resized_photo(photo, image_size) if image_size is not None else photo_tensor(photo)
        reference, actual = run_torch_detector(model, image), run_onnx_detector(runner, image.numpy(), fixed)
        per_photo[name] = {"f1": round(f1_score(reference, actual), 4), "reference": len(reference),
                           "fp16": len(actual)}  # fmt: skip
    mean_f1 = float(np.mean([v["f1"] for v in per_photo.values()]))
    return {"metric": "F1 of FP16 boxes against PyTorch FP32 boxes (same class, IoU >= 0.5)", "photos": per_photo,
            "mean_f1": round(mean_f1, 4), "min_f1": min_f1, "passed": mean_f1 >= min_f1}  # fmt: skip
