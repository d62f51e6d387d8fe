"""The same counts from an exported ONNX graph, and their reconciliation with the PyTorch count.

Shapes come from ``onnx.shape_inference`` (a symbolic batch dimension is pinned to ``batch``). Mult-adds follow the
convention in ``edgeconv.profile.count``: ``Conv`` = output elements x (C / group) x kernel area, ``ConvTranspose`` =
input elements x (M / group) x kernel area, ``Gemm`` / ``MatMul`` = output elements x K. Parameters are the
initializers the nodes consume; for ``BatchNormalization`` only scale and bias count (mean and variance are buffers in
PyTorch too).

Rows are named after the PyTorch module where the TorchScript exporter's node names say which one
(``/features/features.0/features.0.0/Conv`` -> ``features.0.0``, by ``edgeconv.onnxgraph.module_name``, the mapping
every stage uses), so the two reports join layer by layer.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeconv.errors import ArtifactError, InvalidArgumentError
from edgeconv.files import scratch_cwd
from edgeconv.onnxgraph import module_name
from edgeconv.profile.count import classify_conv
from edgeconv.profile.report import LayerProfile, ProfileReport

logger = logging.getLogger(__name__)

_ELEMENTWISE = {
    "Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "LeakyRelu", "PRelu", "Elu", "Selu", "Gelu",
    "Mish", "Softmax", "LogSoftmax", "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Neg", "Abs", "Max", "Min",
    "Erf", "Where",
}  # fmt: skip
_NORMS = {"BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization", "LRN"}
_WINDOW_POOLS = {"MaxPool", "AveragePool", "LpPool"}
_GLOBAL_POOLS = {"GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax", "ReduceSum", "ReduceL2"}
_PARAM_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "PRelu"}
_FLOAT_TYPES = {1: 4, 10: 2, 11: 8, 16: 2}  # onnx TensorProto elem_type -> bytes (FLOAT, FLOAT16, DOUBLE, BFLOAT16)
_ELEM_BYTES = {1: 4, 2: 1, 3: 1, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 16: 2}


@dataclass(frozen=True)
class _Tensor:
    shape: tuple[int, ...] | None
    elem_type: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape) if self.shape is not None else 0

    @property
    def nbytes(self) -> int:
        return self.numel * _ELEM_BYTES.get(self.elem_type, 4)


def _load(path: str | os.PathLike[str]) -> Any:
    from edgeconv.onnxgraph import load_onnx_graph

    return load_onnx_graph(path, external_data=True)


def _pin_batch(model: Any, batch: int) -> list[str]:
    """Pin symbolic / zero input dims so shape inference yields numbers; list what was pinned."""
    initializers = {init.name for init in model.graph.initializer}
    pinned: list[str] = []
    for graph_input in model.graph.input:
        if graph_input.name in initializers:
            continue
        for index, dim in enumerate(graph_input.type.tensor_type.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                continue
            label = dim.dim_param or "?"
            if index != 0:
                raise InvalidArgumentError(
                    f"input {graph_input.name!r} has a symbolic dimension {label!r} at axis {index}; profile an ONNX "
                    "file exported with a fixed input size (only the batch axis may be dynamic)"
                )
            dim.Clear()
            dim.dim_value = batch
            pinned.append(f"{graph_input.name}[{index}] ({label}) = {batch}")
    return pinned


def _has_unknown_shapes(model: Any) -> bool:
    for value in model.graph.value_info:
        tensor_type = value.type.tensor_type
        if tensor_type.elem_type in _FLOAT_TYPES and any(not d.HasField("dim_value") for d in tensor_type.shape.dim):
            return True
    return False


def profile_onnx(path: str | os.PathLike[str], *, batch: int = 1, name: str | None = None) -> ProfileReport:
    """Count params, mult-adds, other ops and memory per node of an ONNX model (see the module docstring)."""
    import onnx
    from onnx import numpy_helper, shape_inference

    if batch < 1:
        raise InvalidArgumentError(f"batch {batch} is not valid; use a positive batch size such as 1")
    model = _load(path)
    pinned = _pin_batch(model, batch)
    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except onnx.shape_inference.InferenceError as exc:
        raise ArtifactError(f"shape inference failed on {str(path)!r}: {exc}") from None
    if _has_unknown_shapes(inferred):
        # onnx's inference stops at Slice nodes whose bounds are computed (torch's chunk / split exports); onnxruntime's
        # symbolic inference evaluates those shape subgraphs
        try:
            from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

            with scratch_cwd():  # on failure it saves the model into the working directory
                inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
        except Exception as exc:  # an optional improvement: keep onnx's partial shapes and say so in the notes
            logger.debug("symbolic shape inference failed: %s", exc)
    model = inferred

    graph = model.graph
    tensors: dict[str, _Tensor] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim)
        shape = None if any(d < 0 for d in dims) or not tensor_type.HasField("shape") else dims
        tensors[value.name] = _Tensor(shape, tensor_type.elem_type)
    weights: dict[str, _Tensor] = {init.name: _Tensor(tuple(init.dims), init.data_type) for init in graph.initializer}
    for node in graph.node:
        # weights stored as Constant nodes count as weights too; so do Identity copies of a weight (the exporter
        # deduplicates equal initializers, e.g. the zero biases of folded BatchNorms, into one plus Identity nodes)
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            array = numpy_helper.to_array(node.attribute[0].t)
            weights[node.output[0]] = _Tensor(tuple(array.shape), node.attribute[0].t.data_type)
        elif node.op_type == "Identity" and node.input[0] in weights:
            weights[node.output[0]] = weights[node.input[0]]

    graph_inputs = [i for i in graph.input if i.name not in weights]
    input_shape = tensors[graph_inputs[0].name].shape if graph_inputs else None
    rows: list[LayerProfile] = []
    seen_weights: set[str] = set()
    shared = 0
    calls: dict[str, int] = {}
    unknown_shapes: list[str] = []
    for node in graph.node:
        if node.op_type == "Constant" or node.output[0] in weights:
            continue
        outputs = [tensors.get(o) for o in node.output if o]
        out = outputs[0] if outputs else None
        if out is None or out.elem_type not in _FLOAT_TYPES:
            continue  # shape arithmetic (Shape, Gather on int64, ...) is not part of the network's compute
        if out.shape is None:
            unknown_shapes.append(node.name or node.op_type)
            continue
        activations = [tensors[i] for i in node.input if i in tensors and i not in weights]
        params = 0
        # BatchNormalization: scale and bias only; mean and variance are buffers in PyTorch too
        counted_inputs = node.input[:3] if node.op_type == "BatchNormalization" else node.input
        for input_name in counted_inputs:
            weight = weights.get(input_name)
            if weight is None or weight.elem_type not in _FLOAT_TYPES:
                continue
            if input_name in seen_weights:
                shared += weight.numel
                continue
            if weight.numel <= 1 and node.op_type not in _PARAM_OPS:
                continue  # scalar constants (Clip bounds, HardSwish's 3 and 6, epsilons) are not parameters
            seen_weights.add(input_name)
            params += weight.numel
        weight_bytes = sum(weights[i].nbytes for i in node.input if i in weights)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        op_type, kernel, macs, other = "other", "", 0, 0
        x = activations[0] if activations else None
        if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1:
            w = weights.get(node.input[1]) or tensors.get(node.input[1])
            if w is not None and w.shape is not None and x is not None and x.shape is not None:
                group = int(attrs.get("group", 1))
                kernel_size = tuple(w.shape[2:])
                in_channels = x.shape[1]
                out_channels = out.shape[1]
                op_type, kernel = classify_conv(in_channels, out_channels, group, kernel_size, x.shape[2:])
                base = out.numel if node.op_type == "Conv" else x.numel
                macs = base * w.shape[1] * math.prod(kernel_size)
                other = out.numel if len(node.input) > 2 and node.input[2] else 0
        elif node.op_type in ("Gemm", "MatMul"):
            a = tensors.get(node.input[0]) or weights.get(node.input[0])
            if a is not None and a.shape is not None:
                k = a.shape[0] if node.op_type == "Gemm" and attrs.get("transA", 0) else a.shape[-1]
                op_type, macs = "fc", out.numel * k
                other = out.numel if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2] else 0
        elif node.op_type in _ELEMENTWISE:
            other = out.numel
        elif node.op_type in _NORMS:
            other = 2 * out.numel
        elif node.op_type in _WINDOW_POOLS:
            other = out.numel * math.prod(attrs.get("kernel_shape", [1]))
        elif node.op_type in _GLOBAL_POOLS:
            other = x.numel if x is not None else 0
        owner = module_name(node.name) if node.name.startswith("/") else node.name  # other names: kept
        label = (
            owner
            if op_type != "other" or node.op_type in _NORMS
            else f"{owner}/{node.op_type}"
            if owner
            else node.op_type
        )
        label = label or node.op_type
        count = calls.get(label, 0) + 1
        calls[label] = count
        rows.append(
            LayerProfile(
                name=label if count == 1 else f"{label}#{count}",
                op=node.op_type,
                op_type=op_type,
                kernel=kernel,
                output_shape=out.shape,
                params=params,
                macs=macs,
                other_ops=other,
                memory_bytes=weight_bytes + sum(t.nbytes for t in activations) + sum(o.nbytes for o in outputs if o),
                activation_bytes=sum(o.nbytes for o in outputs if o),
            )
        )

    notes: list[str] = []
    if pinned:
        notes.append("symbolic input dims pinned for shape inference: " + ", ".join(pinned))
    if unknown_shapes:
        notes.append(f"{len(unknown_shapes)} node(s) without an inferred shape are not counted: {unknown_shapes[:5]}")
    ops = {node.op_type for node in graph.node}
    conv_bias = sum(1 for r in rows if r.op == "Conv" and r.other_ops)
    if "BatchNormalization" not in ops and conv_bias:
        notes.append(
            "no BatchNormalization nodes: the exporter folds eval-mode BatchNorm into the preceding Conv, so those "
            "convs carry a bias (+C params) where PyTorch has BatchNorm weight and bias (2C params) and BatchNorm's "
            "other ops vanish; mult-adds are unchanged"
        )
    if shared:
        notes.append(
            f"{shared:,} parameters are read by more than one node and counted once: tensors shared by the exporter or "
            "an optimizer (identical values, e.g. the zero biases of folded BatchNorms in an untrained model) or a "
            "module called twice"
        )
    matmuls = [r for r in rows if r.op == "MatMul" and not r.params]
    if matmuls:
        notes.append(f"{len(matmuls)} MatMul node(s) multiply two activations: counted as M x N x K, no params")
    return ProfileReport(
        model=name or Path(path).stem,
        input_shape=input_shape or (),
        layers=rows,
        params=sum(r.params for r in rows),
        source="onnx",
        notes=notes,
        shared_params=shared,
    )


@dataclass(frozen=True)
class Reconciliation:
    """PyTorch vs ONNX: ``mismatches`` lists conv / fc layers whose mult-adds differ; ``explanations`` the rest."""

    pytorch_macs: int
    onnx_macs: int
    pytorch_params: int
    onnx_params: int
    matched_layers: int
    mismatches: list[str]
    explanations: list[str]

    def __bool__(self) -> bool:
        return not self.mismatches and self.pytorch_macs == self.onnx_macs

    def lines(self) -> list[str]:
        head = (
            f"mult-adds: pytorch {self.pytorch_macs:,} / onnx {self.onnx_macs:,}; "
            f"params: pytorch {self.pytorch_params:,} / onnx {self.onnx_params:,}; "
            f"{self.matched_layers} conv/fc layers matched by name"
        )
        return [head, *self.mismatches, *self.explanations]


def reconcile(pytorch: ProfileReport, onnx_report: ProfileReport) -> Reconciliation:
    """Join the two reports layer by layer on conv / fc rows and explain every difference in the totals."""
    onnx_rows = {r.name: r for r in onnx_report.layers if r.op_type != "other"}
    mismatches: list[str] = []
    matched = 0
    unmatched_macs = 0
    for row in pytorch.layers:
        if row.op_type == "other":
            continue
        other = onnx_rows.pop(row.name, None)
        if other is None:
            unmatched_macs += row.macs
            continue
        matched += 1
        if other.macs != row.macs or other.type != row.type:
            mismatches.append(f"{row.name}: pytorch {row.type} {row.macs:,} vs onnx {other.type} {other.macs:,}")
    explanations: list[str] = []
    if unmatched_macs or onnx_rows:
        explanations.append(
            f"{unmatched_macs:,} pytorch mult-adds and {sum(r.macs for r in onnx_rows.values()):,} onnx mult-adds "
            "are in layers whose names do not join (functional ops, renamed nodes); totals still compared"
        )
    bn_pt = sum(r.params for r in pytorch.layers if r.op.startswith("BatchNorm"))
    bn_onnx = sum(r.params for r in onnx_report.layers if r.op == "BatchNormalization")
    if bn_pt != bn_onnx:
        added_bias = sum(
            r.output_shape[1] for r in onnx_report.layers if r.op == "Conv" and r.other_ops and len(r.output_shape) > 1
        ) - sum(r.output_shape[1] for r in pytorch.layers if r.op.startswith("Conv") and r.other_ops and r.output_shape)
        shared = f", {onnx_report.shared_params:,} shared parameters counted once" if onnx_report.shared_params else ""
        explanations.append(
            f"params differ by {onnx_report.params - pytorch.params:+,}: BatchNorm folded into conv at export "
            f"({bn_pt - bn_onnx:,} BatchNorm weights/biases gone, {added_bias:,} conv biases added{shared})"
        )
    removed = sorted(
        {r.op for r in pytorch.layers if r.op in ("Dropout", "Identity", "Flatten") or r.op.startswith("BatchNorm")}
    )
    if removed and bn_pt != bn_onnx:
        explanations.append(f"PyTorch layers with no ONNX node: {', '.join(removed)} (folded or no-ops at inference)")
    if pytorch.macs != onnx_report.macs and not mismatches:
        explanations.append(
            f"total mult-adds differ by {onnx_report.macs - pytorch.macs:+,}: layers counted on one side only "
            "(see the unmatched names above)"
        )
    return Reconciliation(
        pytorch_macs=pytorch.macs,
        onnx_macs=onnx_report.macs,
        pytorch_params=pytorch.params,
        onnx_params=onnx_report.params,
        matched_layers=matched,
        mismatches=mismatches,
        explanations=explanations,
    )


def compare_with_zoo(path: str | os.PathLike[str], onnx_report: ProfileReport) -> list[str]:
    """When ``path`` sits in an edgeconv artifact folder (``manifest.json`` naming its zoo model), reconcile the ONNX
    count with the PyTorch count of that model at the same input; otherwise nothing to say (empty list). A malformed
    manifest is an ``ArtifactError``, as for every other reader of one (``edgeconv.manifest``)."""
    from edgeconv.errors import EdgeconvError
    from edgeconv.manifest import Manifest
    from edgeconv.profile.count import profile_model

    manifest = Manifest.read(Path(path).parent, required=False)  # empty without one
    model, chw = manifest.model_name, tuple((manifest.data.get("input") or {}).get("shape") or ())[1:]
    if model is None or not chw or not all(isinstance(v, int) for v in chw):
        return []  # not an export's manifest (hand-written, engine records only): no zoo model to compare with
    kwargs = manifest.model_kwargs
    try:
        pytorch = profile_model(model, chw, batch=onnx_report.input_shape[0] if onnx_report.input_shape else 1,
                                **kwargs)  # fmt: skip
    except EdgeconvError as exc:
        return [f"vs PyTorch {model}: not compared ({exc})"]
    lines = [f"vs PyTorch {model}: {line}" for line in reconcile(pytorch, onnx_report).lines()]
    if manifest.fused:
        lines.append(
            f"vs PyTorch {model}: the artifact was fused before export (BatchNorm folded, parallel branches merged), "
            "so conv layers of reparameterized models differ from the unfused PyTorch count"
        )
    return lines
