"""Per-layer latency: measured time per ONNX node (ONNX Runtime profiler) or TensorRT layer (IProfiler), mapped back
to PyTorch module names, joined to the per-layer mult-adds of :func:`edgeconv.profile.profile_onnx`, and grouped into
ShuffleNet V2's runtime classes (Ma et al. 2018, Fig. 2): Conv / Elementwise / Data movement / Other.

Names: the TorchScript exporter names nodes after the module scope (``/features/features.0/features.0.0/Conv``);
ONNX Runtime keeps those names except where its optimizer rewrites nodes -- the NCHWc layout pass names a convolution
after its output tensor (``/features/features.0/features.0.2/Relu_output_0_nchwc`` when a ReLU was fused into it). Such
names are resolved through the original graph: output tensor -> producing node, and a fused activation back to the
convolution it was fused into. TensorRT names fused layers by joining the ONNX node names (``A + B``), which resolve the
same way. Nodes ONNX Runtime adds itself (``ReorderInput``/``ReorderOutput`` layout conversions) have no module.

Totals: the per-layer times are kernel times; what ONNX Runtime spends between kernels is the gap between their sum and
the measured ``model_run`` time, reported as its own row so the classes and the gap add up to the end-to-end latency.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeconv.backends.base import LayerProfile
from edgeconv.errors import EdgeconvError, InvalidArgumentError
from edgeconv.onnxgraph import module_name

log = logging.getLogger(__name__)

OP_CLASSES = ("Conv", "Elementwise", "Data movement", "Other")

# Conv also holds the fully connected layer (Gemm/MatMul): both are the mult-add layers of the profiler.
_CONV_OPS = {"Conv", "FusedConv", "ConvTranspose", "QLinearConv", "ConvInteger", "NhwcConv", "NhwcFusedConv",
             "DeformConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul", "QLinearMatMul", "MatMulInteger",
             "QGemm"}  # fmt: skip
_ELEMENTWISE_OPS = {
    "Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "LeakyRelu", "PRelu", "Elu", "Selu", "Gelu",
    "Mish", "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Neg", "Abs", "Max", "Min", "Erf", "Where", "Sum",
    "BatchNormalization", "QuickGelu", "BiasGelu", "QLinearAdd", "QLinearMul", "QLinearSigmoid", "Cast",
    "QuantizeLinear", "DequantizeLinear", "PointWise", "Swish",
}  # fmt: skip
_DATA_OPS = {
    "Transpose", "Reshape", "Concat", "Split", "Slice", "Gather", "Flatten", "Squeeze", "Unsqueeze", "Shape",
    "Identity", "Expand", "Tile", "Pad", "ReorderInput", "ReorderOutput", "Reformat", "Shuffle", "MemcpyToHost",
    "MemcpyFromHost", "QLinearConcat", "Copy", "ConstantOfShape", "Size", "DepthToSpace", "SpaceToDepth",
}  # fmt: skip
# Activations ONNX Runtime and TensorRT fuse into the preceding convolution.
_FUSABLE = {"Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Add", "Mul", "BatchNormalization",
            "Tanh"}  # fmt: skip


def op_class(op_type: str) -> str:
    """ShuffleNet V2's runtime class of an operator: Conv / Elementwise / Data movement / Other (pooling, reductions,
    softmax, whole TensorRT-EP partitions ...)."""
    if op_type in _CONV_OPS:
        return "Conv"
    if op_type in _ELEMENTWISE_OPS:
        return "Elementwise"
    if op_type in _DATA_OPS:
        return "Data movement"
    return "Other"


def module_of(node_name: str) -> str:
    """PyTorch module of a TorchScript-exported node name (``/features/features.1/conv/conv.0/Conv`` ->
    ``features.1.conv.0``) by ``edgeconv.onnxgraph.module_name``, the rule the mult-add count uses too, so times and
    mult-adds join on the same key; ``""`` for names the exporter did not write (no leading ``/``)."""
    return module_name(node_name) if node_name.startswith("/") else ""


@dataclass
class _Node:
    name: str
    op_type: str
    inputs: list[str]


@dataclass
class GraphIndex:
    """The original ONNX graph, for resolving optimizer-renamed nodes."""

    nodes: dict[str, _Node]
    producer: dict[str, str]  # tensor name -> node name

    @classmethod
    def from_onnx(cls, path: str | os.PathLike[str]) -> GraphIndex:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        nodes: dict[str, _Node] = {}
        producer: dict[str, str] = {}
        for node in model.graph.node:
            nodes[node.name] = _Node(node.name, node.op_type, list(node.input))
            for output in node.output:
                producer[output] = node.name
        return cls(nodes, producer)

    def original(self, name: str) -> _Node | None:
        """The original node behind a (possibly renamed) backend node name.

        ORT renames: ``<output tensor>_nchwc`` (NCHWc layout pass), ``fused <node>`` (FusedGemm ...),
        ``<node>/QuickGeluFusion/`` (pattern fusions, e.g. x * sigmoid(x)), ``<node>_token_<n>`` (inserted copies).
        """
        if name in self.nodes:
            return self.nodes[name]
        base = re.sub(r"^fused ", "", name)
        base = re.sub(r"(_nchwc)+$", "", base)
        base = re.sub(r"/[A-Za-z0-9]+Fusion/?$", "", base)
        for candidate in (base, re.sub(r"_token_\d+$", "", base)):
            if candidate in self.nodes:
                return self.nodes[candidate]
            if candidate in self.producer:
                return self.nodes.get(self.producer[candidate])
        return None

    def conv_behind(self, node: _Node, depth: int = 4) -> _Node | None:
        """The convolution an activation/Add chain was fused onto (breadth-first up the inputs)."""
        frontier = [node]
        for _ in range(depth):
            nxt: list[_Node] = []
            for current in frontier:
                for tensor in current.inputs:
                    parent = self.nodes.get(self.producer.get(tensor, ""))
                    if parent is None:
                        continue
                    if parent.op_type in _CONV_OPS:
                        return parent
                    if parent.op_type in _FUSABLE:
                        nxt.append(parent)
            frontier = nxt
        return None


def _first_onnx_name(layer_name: str) -> str:
    """First ONNX node name inside a TensorRT layer name (``A + B``, ``PWN(A, B)``, ``{ForeignNode[A...B]}``)."""
    match = re.search(r"(/[^\s,\]\)\+]+)", layer_name)
    if match:
        return match.group(1)
    return layer_name.split(" + ")[0].strip()


@dataclass(frozen=True)
class LatencyRow:
    node: str  # the backend's name
    module: str  # PyTorch module ("" when the node has none, e.g. layout reorders)
    op_type: str
    op_class: str
    mean_ms: float
    pct: float  # of end-to-end
    macs: int  # mult-adds of this module (first row of a module carries them; 0 on the others)

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "module": self.module,
            "op_type": self.op_type,
            "op_class": self.op_class,
            "mean_ms": self.mean_ms,
            "pct": self.pct,
            "macs": self.macs,
        }


@dataclass
class LatencyBreakdown:
    model: str
    backend: str
    precision: str
    batch: int
    runs: int
    end_to_end_ms: float
    rows: list[LatencyRow]
    notes: list[str] = field(default_factory=list)

    @property
    def layers_ms(self) -> float:
        return float(sum(r.mean_ms for r in self.rows))

    @property
    def gap_ms(self) -> float:
        return self.end_to_end_ms - self.layers_ms

    def classes(self) -> dict[str, tuple[float, float]]:
        """Op class -> (ms, % of end-to-end), in OP_CLASSES order, plus ``Not in any layer`` (the gap)."""
        out: dict[str, tuple[float, float]] = {}
        for name in OP_CLASSES:
            ms = sum(r.mean_ms for r in self.rows if r.op_class == name)
            out[name] = (ms, 100.0 * ms / self.end_to_end_ms if self.end_to_end_ms else 0.0)
        gap = self.gap_ms
        out["Not in any layer"] = (gap, 100.0 * gap / self.end_to_end_ms if self.end_to_end_ms else 0.0)
        return out

    def by_module(self) -> list[dict[str, Any]]:
        """Time and mult-adds per PyTorch module, slowest first; ms per mega-mult-add shows where time is spent
        out of proportion to arithmetic."""
        acc: dict[str, dict[str, Any]] = {}
        for r in self.rows:
            entry = acc.setdefault(r.module, {"module": r.module, "mean_ms": 0.0, "macs": 0, "ops": []})
            entry["mean_ms"] += r.mean_ms
            entry["macs"] += r.macs
            if r.op_type not in entry["ops"]:
                entry["ops"].append(r.op_type)
        rows = sorted(acc.values(), key=lambda e: -e["mean_ms"])
        for e in rows:
            e["ms_per_mmac"] = e["mean_ms"] / (e["macs"] / 1e6) if e["macs"] else None
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "backend": self.backend,
            "precision": self.precision,
            "batch": self.batch,
            "runs": self.runs,
            "end_to_end_ms": self.end_to_end_ms,
            "layers_ms": self.layers_ms,
            "gap_ms": self.gap_ms,
            "classes": {k: {"ms": ms, "pct": pct} for k, (ms, pct) in self.classes().items()},
            "rows": [r.to_dict() for r in self.rows],
            "notes": self.notes,
        }


def breakdown(
    profile: LayerProfile,
    graph: GraphIndex,
    *,
    macs_by_module: dict[str, int] | None = None,
    model: str = "",
    precision: str = "fp32",
    batch: int = 1,
) -> LatencyBreakdown:
    """Map a backend's layer times to modules and classes and attach mult-adds (once per module)."""
    macs_by_module = macs_by_module or {}
    rows: list[LatencyRow] = []
    seen_modules: set[str] = set()
    unresolved = 0
    for layer in profile.layers:
        name = layer.name if profile.backend != "tensorrt" else _first_onnx_name(layer.name)
        node = graph.original(name)
        op_type = layer.op_type or (node.op_type if node else "")
        if node is not None and op_class(op_type) == "Conv" and node.op_type not in _CONV_OPS:
            node = graph.conv_behind(node) or node
        module = module_of(node.name) if node is not None else module_of(name)
        if node is None and name.startswith("/"):
            unresolved += 1
        macs = 0
        if module and module not in seen_modules:
            macs = int(macs_by_module.get(module, 0))
            seen_modules.add(module)
        pct = 100.0 * layer.mean_ms / profile.end_to_end_ms if profile.end_to_end_ms else 0.0
        rows.append(LatencyRow(layer.name, module, op_type, op_class(op_type), layer.mean_ms, pct, macs))
    notes = []
    if unresolved:
        notes.append(f"{unresolved} node names were not found in the ONNX graph (module taken from the name)")
    missing = sum(v for k, v in macs_by_module.items() if k not in seen_modules)
    if missing:
        notes.append(f"{missing / 1e6:.1f} M mult-adds belong to modules with no timed layer (fused away)")
    return LatencyBreakdown(
        model=model,
        backend=profile.backend,
        precision=precision,
        batch=batch,
        runs=profile.runs,
        end_to_end_ms=profile.end_to_end_ms,
        rows=rows,
        notes=notes,
    )


def macs_by_module(
    onnx_path: str | os.PathLike[str],
    batch: int = 1,
    *,
    zoo_name: str | None = None,
    input_size: tuple[int, ...] | None = None,
) -> dict[str, int]:
    """Mult-adds per PyTorch module from the profiler: its PyTorch count when the zoo model is known (module names
    are exactly the keys the node names map to), at ``input_size`` (C, H, W; default the ONNX input's), else its ONNX
    count (same node-name rule as the timings).

    The PyTorch count is preferred because ONNX shape inference cannot follow every dynamic-batch graph (the
    reshapes of a channel shuffle computed from ``Shape`` leave later nodes without shapes, hence uncounted).
    """
    from edgeconv.profile import profile_model, profile_onnx

    if zoo_name is not None:
        import onnx

        model = onnx.load(str(onnx_path), load_external_data=False)
        dims = model.graph.input[0].type.tensor_type.shape.dim
        size = tuple(input_size) if input_size is not None else tuple(d.dim_value for d in dims[1:])
        report = profile_model(zoo_name, size if len(size) == 3 and min(size) > 0 else None, batch=batch)
    else:
        report = profile_onnx(onnx_path, batch=batch)
    out: dict[str, int] = {}
    for layer in report.layers:
        key = module_of(layer.name) if layer.name.startswith("/") else layer.name
        out[key] = out.get(key, 0) + int(layer.macs)
    return out


def profile_latency(
    target: str,
    *,
    backend: str = "onnxruntime",
    precision: str = "fp32",
    batch: int = 1,
    warmup: int = 10,
    runs: int = 50,
    threads: int | None = None,
    device: str = "cpu",
    models_dir: str | os.PathLike[str] = "models",
    seed: int = 0,
    input_size: tuple[int, int] | None = None,
) -> LatencyBreakdown:
    """Measure per-layer latency of ``target`` (zoo name, artifact folder or .onnx) on ``backend``, at ``input_size``
    (H, W) when its ONNX has a dynamic height and width.

    ``warmup`` runs are profiled too but dropped; the remaining ``runs`` are averaged.
    """
    if runs < 1 or warmup < 0:
        raise InvalidArgumentError(f"runs ({runs}) must be >= 1 and warmup ({warmup}) >= 0")
    from edgeconv.backends.artifacts import resolve_target

    resolved = resolve_target(target, models_dir=Path(models_dir))
    shape = resolved.batch_shape(batch, input_size)
    x = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    profile: LayerProfile | None
    if backend == "onnxruntime":
        from edgeconv.backends.onnxruntime import OnnxRuntimeRunner

        onnx_path = resolved.onnx_for(precision)
        runner = OnnxRuntimeRunner(onnx_path, device=device, precision=precision, threads=threads, profile=True)
        with runner:
            for _ in range(warmup + runs):
                runner.run(x)
            profile = runner.layer_profile(skip_runs=warmup)
    elif backend == "tensorrt":
        from edgeconv.backends.tensorrt import TensorRTRunner, engine_for

        engine_path, record = engine_for(resolved, precision=precision, batch=batch)
        onnx_path = engine_path.parent / record.onnx_file
        trt_runner = TensorRTRunner(engine_path, record, profile=True)
        with trt_runner:
            for _ in range(warmup):
                trt_runner.run(x)
            trt_runner.reset_layer_times()
            for _ in range(runs):
                trt_runner.run(x)
            profile = trt_runner.layer_profile()
    else:
        raise InvalidArgumentError(f"per-layer latency needs --backend onnxruntime or tensorrt, not {backend!r}")
    assert profile is not None  # both runners were created with profiling on
    graph = GraphIndex.from_onnx(onnx_path)
    results = []
    # The PyTorch count names modules of the zoo model as built; a graph exported after fusion/re-parameterization
    # (RepVGG) has other convolutions, so fall back to the ONNX count when the first leaves convolutions without one.
    for zoo_name in dict.fromkeys([resolved.zoo_name, None]):
        try:
            macs = macs_by_module(onnx_path, batch=batch, zoo_name=zoo_name, input_size=shape[1:])
        except EdgeconvError as exc:  # the ONNX count of a dynamic-size graph: keep the PyTorch count's result
            if not results:
                raise
            log.info("no ONNX mult-add count for %s (%s); the PyTorch count's breakdown is kept", onnx_path, exc)
            break
        result = breakdown(
            profile,
            graph,
            macs_by_module=macs,
            model=resolved.name,
            precision=precision,
            batch=batch,
        )
        results.append(result)
        if all(r.macs or not r.module or r.op_class != "Conv" for r in result.rows if r.op_type != "ReorderOutput"):
            break
    return max(results, key=lambda r: sum(1 for row in r.rows if row.macs))


def format_classes(result: LatencyBreakdown) -> list[tuple[str, str, str]]:
    """(class, ms, %) rows for a table."""
    return [(name, f"{ms:.3f}", f"{pct:.1f}") for name, (ms, pct) in result.classes().items()]


def summarize(results: Sequence[LatencyBreakdown]) -> dict[str, dict[str, float]]:
    """Model -> class -> % of end-to-end, for the bench plots."""
    return {r.model: {k: pct for k, (_, pct) in r.classes().items()} for r in results}
