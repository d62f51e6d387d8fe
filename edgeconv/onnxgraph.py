"""One place for what several stages need from an ONNX graph: who produces and who reads a tensor, the initializers,
the PyTorch module a node came from, an ONNX Runtime CPU session, and intermediate tensors (ONNX Runtime's
``quantization/onnx_model.py`` and ``qdq_loss_debug.py`` show the idea).

Used by INT8 quantization (which layer is which module, AdaRound's block-by-block inputs), export's divergence
locator and the latency profiler, so that a node name maps to the same module everywhere. Imports no torch.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeconv.errors import ArtifactError

if TYPE_CHECKING:
    import onnx

# The op part of a TorchScript-exported node name: ``Conv``, ``Conv_1``, ``Add_3``.
_OP_SUFFIX = re.compile(r"^[A-Za-z]+(_\d+)?(_output_\d+)?$")  # onnxslim names some nodes after their output


def module_name(node_name: str) -> str:
    """PyTorch module name of an ONNX node from the TorchScript exporter, or ``""`` when the node has no scope.

    The exporter's scope path names each module relative to the nearest enclosing module that is not a container:
    ``/features/features.1/conv/conv.0/conv.0.0/Conv`` is ``features.1.conv.0.0`` (``conv`` restarts under the
    ``features.1`` block); ``/layer1/layer1.0/conv1/Conv`` is ``layer1.0.conv1``; ``/classifier/classifier.1/Gemm`` is
    ``classifier.1``; ``/Add`` is ``""``.
    """
    parts = [p for p in node_name.split("/") if p]
    if len(parts) < 2 or not _OP_SUFFIX.match(parts[-1]):
        return ""
    qualified, base, previous = "", "", None
    for part in parts[:-1]:
        if previous is None or not part.startswith(previous + "."):
            base = qualified  # a new relative naming starts inside the current module
        qualified = f"{base}.{part}" if base else part
        previous = part
    return qualified


def session(
    model: str | os.PathLike[str] | bytes | onnx.ModelProto,
    *,
    exact: bool = False,
    threads: int = 0,
    spin: bool = False,
) -> Any:
    """An ONNX Runtime CPU session. ``exact``: graph optimizations off, so a QDQ graph computes as written (what
    TensorRT computes) instead of through ORT's fused integer kernels. ``threads`` 0: ORT's default.

    ``spin``: ORT's default, worker threads that keep spinning after a run for the next one. Off unless asked (latency
    measurements ask): edgeconv's checks and calibration do PyTorch / NumPy work between runs, which threads spinning
    on the same cores slowed down (mobilenet_v2's per-tensor calibration statistics at batch 1, 2 cores: 6.6 s with
    spinning, 3.1 s without; the runs themselves took the same time)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if exact:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    if not isinstance(model, (str, os.PathLike, bytes)):
        model = model.SerializeToString()
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def load_onnx_graph(model_path: str | os.PathLike[str], *, external_data: bool = False) -> Any:
    """The ``onnx.ModelProto`` of a file (its external data only with ``external_data``), or ``ArtifactError`` naming
    the file when it is missing, empty, truncated (an interrupted copy) or not ONNX at all: protobuf's own error is a
    30-line traceback."""
    import onnx

    path = Path(model_path)
    if not path.is_file():
        raise ArtifactError(f"ONNX file {str(path)!r} does not exist; export one with `edgeconv export MODEL`")
    fix = "export it again with `edgeconv export MODEL` (or copy it again)"
    try:
        size = path.stat().st_size
        model = onnx.load(str(path), load_external_data=external_data) if size else None
    except Exception as exc:  # protobuf's DecodeError, OSError, onnx's own checks: all mean "not a readable model"
        why = f"truncated, or not ONNX: {type(exc).__name__}"
        raise ArtifactError(f"{path} is not a readable ONNX model ({why}); {fix}") from None
    if model is None or not model.graph.node:
        raise ArtifactError(f"{path} is not an ONNX model ({'empty file' if not size else 'no graph'}); {fix}")
    return model


class Graph:
    """Index of one ``onnx.ModelProto`` (not a copy: edits to its initializers are seen by the model)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.nodes = list(model.graph.node)
        self.by_name = {n.name: n for n in self.nodes}
        self.producer = {o: n for n in self.nodes for o in n.output if o}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.nodes:
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)
        self.initializers = {i.name: i for i in model.graph.initializer}
        self.outputs = [o.name for o in model.graph.output]
        self.inputs = [i.name for i in model.graph.input if i.name not in self.initializers]

    def array(self, name: str) -> np.ndarray:
        from onnx import numpy_helper

        return numpy_helper.to_array(self.initializers[name])

    def module(self, node: onnx.NodeProto | str) -> str:
        return module_name(node if isinstance(node, str) else node.name)


def with_outputs(model: onnx.ModelProto, names: Iterable[str]) -> onnx.ModelProto:
    """A copy of ``model`` that also outputs the tensors ``names`` (shape and type left to the runtime)."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    present = {o.name for o in copy.graph.output}
    for name in names:
        if name not in present:
            copy.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
            present.add(name)
    return copy


# Initializers of at least this many elements are weights: never a shape, axes or scales that an output's shape
# depends on. Counted from the dims: ``ByteSize()`` or ``len(raw_data)`` copy the bytes (0.8 s for VGG's 500 MB).
_WEIGHT_ELEMENTS = 1 << 14


def _copy_fields(target: Any, source: Any, skip: tuple[str, ...]) -> None:
    """Replace ``target``'s fields by ``source``'s (protobuf messages of one type), except those named in ``skip``."""
    for field in target.DESCRIPTOR.fields:
        if field.name not in skip:
            target.ClearField(field.name)
    target.MergeFrom(type(source)(**{f.name: v for f, v in source.ListFields() if f.name not in skip}))


def apply_to_structure(
    model: onnx.ModelProto, transform: Callable[[onnx.ModelProto], onnx.ModelProto | None]
) -> onnx.ModelProto:
    """``transform`` (ONNX's checker, shape inference, version converter) run on ``model`` without its large weights,
    then ``model`` given the transformed structure around its own weights: changed in place and returned.

    ``transform`` returns the new model, or ``None`` when it only checks. It sees each large initializer as a graph
    input of the same type and shape. ONNX's C++ passes serialize and parse the whole model on every call: about 2 s
    a call on a VGG-16-sized graph (500 MB of weights) that they never read. ``model`` is unchanged when ``transform``
    raises."""
    light, weights, added = _structure(model)
    done = transform(light) or light
    _copy_fields(model, done, skip=("graph",))
    _copy_fields(model.graph, done.graph, skip=("initializer", "input"))
    graph = model.graph
    del graph.input[:]
    graph.input.extend(i for i in done.graph.input if i.name not in added)
    for index in reversed(range(len(graph.initializer))):  # the small ones come back from ``done``; weights stay
        if graph.initializer[index].name not in weights:
            del graph.initializer[index]
    graph.initializer.extend(done.graph.initializer)
    return model


def _structure(model: onnx.ModelProto) -> tuple[onnx.ModelProto, set[str], set[str]]:
    """A copy of ``model`` without its large weights, each typed as a graph input instead; the weights' names, and
    those of them that were not graph inputs already."""
    import onnx

    light = onnx.ModelProto()
    _copy_fields(light, model, skip=("graph",))
    _copy_fields(light.graph, model.graph, skip=("initializer",))
    listed = {i.name for i in model.graph.input}  # an older exporter lists initializers as inputs too
    weights, added = set(), set()
    for tensor in model.graph.initializer:
        if math.prod(tensor.dims) < _WEIGHT_ELEMENTS:
            light.graph.initializer.append(tensor)
            continue
        weights.add(tensor.name)
        if tensor.name not in listed:
            added.add(tensor.name)
            light.graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims))
    return light, weights, added


def inferred_structure(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX shape inference on ``model`` without its large weights (typed graph inputs there, as in
    ``apply_to_structure``): a copy to read types and shapes from; ``model`` is not changed."""
    import onnx

    return onnx.shape_inference.infer_shapes(_structure(model)[0])


def run_batched(
    sess: Any,
    feeds: dict[str, np.ndarray],
    names: Sequence[str] | None = None,
    batch: int = 32,
    fixed: int | None = None,
) -> list[np.ndarray]:
    """``sess.run`` over the first axis of every feed in chunks of ``batch``, outputs concatenated; all feeds have
    the same length. A fixed batch (``fixed``, or the first fed session input's own) is fed full chunks of exactly
    that size, the last one padded with its last sample, dropped again after.

    Integer tensors of rank 0 or 1 are shapes, not samples (a dynamic-size graph's ``Shape -> Gather -> Resize``
    sizes): fed whole to every chunk, and returned once (every chunk computes the same)."""
    batched = {k: v for k, v in feeds.items() if not _is_shape(v)}
    shapes = {k: v for k, v in feeds.items() if _is_shape(v)}
    count = len(next(iter(batched.values())))
    if fixed is None:
        first = next(i for i in sess.get_inputs() if i.name in batched)
        fixed = first.shape[0] if first.shape and isinstance(first.shape[0], int) and first.shape[0] > 0 else None
    step = fixed or batch
    parts: list[list[np.ndarray]] = []
    for start in range(0, count, step):
        chunk = {k: v[start : start + step] for k, v in batched.items()}
        short = step - len(next(iter(chunk.values())))
        if fixed and short > 0:  # a fixed batch dimension: pad with the last sample, drop after
            chunk = {k: np.concatenate([v, np.repeat(v[-1:], short, 0)]) for k, v in chunk.items()}
        values = [np.asarray(v) for v in sess.run(list(names) if names is not None else None, {**chunk, **shapes})]
        if fixed and short > 0:
            values = [v if _is_shape(v) else v[: step - short] for v in values]
        if not parts:
            parts = [[] for _ in values]
        for store, value in zip(parts, values, strict=True):
            store.append(value)
    return [p[0] if len(p) == 1 or _is_shape(p[0]) else np.concatenate(p) for p in parts]


def _is_shape(value: np.ndarray) -> bool:
    return value.dtype.kind in "iu" and value.ndim <= 1


def _typed(name: str, value: np.ndarray) -> onnx.ValueInfoProto:
    import onnx

    dtype = onnx.helper.np_dtype_to_tensor_dtype(value.dtype)
    # A shape tensor keeps its length (Resize checks that ``sizes`` has one entry per axis); samples, their batch.
    return onnx.helper.make_tensor_value_info(
        name, dtype, list(value.shape) if _is_shape(value) else [None] * value.ndim
    )


class Segments:
    """Evaluate a graph piece by piece in node order, keeping only the live tensors between pieces, so that a caller
    can change the weights of the next node before the piece that reads them runs (AdaRound's block-by-block
    reconstruction: every layer's input comes from the graph with the earlier layers already re-rounded), at the cost
    of one pass over the graph in total instead of one per layer.

    ``advance(stop)`` runs the nodes from where the last call stopped up to (not including) the node ``stop`` and
    returns the values of ``stop``'s inputs; ``advance(None)`` runs to the end and returns the graph outputs.
    Nodes that read only initializers (a QDQ graph's weight DequantizeLinear, Constant nodes) are not run in node
    order: each piece recomputes the ones it reads, so a weight changed after its DequantizeLinear's place in the node
    list is still the weight its reader computes with.
    """

    def __init__(self, model: onnx.ModelProto, feeds: dict[str, np.ndarray], *, exact: bool = True) -> None:
        self.graph = Graph(model)
        self.exact = exact
        # A graph traced at a fixed batch can bake it in (a Reshape to (N, -1)): every piece is fed that many rows.
        dims = next(i for i in model.graph.input if i.name == self.graph.inputs[0]).type.tensor_type.shape.dim
        self.fixed = dims[0].dim_value if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None
        self.values: dict[str, np.ndarray] = dict(feeds)  # one row per sample, every one of them
        self.position = 0
        self.order = {id(n): i for i, n in enumerate(self.graph.nodes)}
        constant = set(self.graph.initializers)
        self.constant_nodes: set[int] = set()
        for node in self.graph.nodes:
            if all(not i or i in constant for i in node.input):
                self.constant_nodes.add(id(node))
                constant.update(o for o in node.output if o)

    def _live_after(self, end: int) -> set[str]:
        """Tensors produced before node ``end`` that a node at ``end`` or later (or the graph output) reads."""
        needed = set(self.graph.outputs)
        for node in self.graph.nodes[end:]:
            needed.update(i for i in node.input if i)
        return needed

    def advance(self, stop: str | None) -> dict[str, np.ndarray]:
        end = len(self.graph.nodes) if stop is None else self.order[id(self.graph.by_name[stop])]
        self._run_to(end)
        if stop is None:
            return {name: self.values[name] for name in self.graph.outputs if name in self.values}
        return {name: self.values[name] for name in self.graph.by_name[stop].input if name in self.values}

    def produce(self, tensor: str) -> np.ndarray | None:
        """Run up to and including the node that produces ``tensor``; its value (None for an unknown tensor)."""
        node = self.graph.producer.get(tensor)
        if node is None:
            return self.values.get(tensor)
        self._run_to(max(self.position, self.order[id(node)] + 1), keep=(tensor,))
        return self.values.get(tensor)

    def _with_constants(self, nodes: Sequence[onnx.NodeProto]) -> list[onnx.NodeProto]:
        """``nodes`` and the constant nodes they read, transitively, in graph order."""
        chosen = {id(n): n for n in nodes}
        pending = [i for n in nodes for i in n.input if i]
        while pending:
            producer = self.graph.producer.get(pending.pop())
            if producer is not None and id(producer) in self.constant_nodes and id(producer) not in chosen:
                chosen[id(producer)] = producer
                pending.extend(i for i in producer.input if i)
        return sorted(chosen.values(), key=lambda n: self.order[id(n)])

    def _run_to(self, end: int, keep: Sequence[str] = ()) -> None:
        import onnx

        nodes = self.graph.nodes
        if end < self.position:
            raise ValueError(f"node {nodes[end].name} was already passed")
        live = self._live_after(end) | set(keep)
        piece = [n for n in nodes[self.position : end] if id(n) not in self.constant_nodes]
        produced = {o for n in piece for o in n.output if o}
        outputs = sorted(produced & live)
        if outputs:
            piece = self._with_constants(piece)
            produced = {o for n in piece for o in n.output if o}
            read = {i for n in piece for i in n.input if i and i not in produced}
            inputs = sorted(read - set(self.graph.initializers))
            graph = onnx.helper.make_graph(
                piece,
                "segment",
                [_typed(name, self.values[name]) for name in inputs],
                [onnx.helper.make_empty_tensor_value_info(name) for name in outputs],
                [self.graph.initializers[name] for name in sorted(read & set(self.graph.initializers))],
            )
            model = onnx.helper.make_model(graph, opset_imports=self.graph.model.opset_import)
            model.ir_version = self.graph.model.ir_version
            feeds = {name: self.values[name] for name in inputs}
            values = run_batched(session(model, exact=self.exact), feeds, outputs, fixed=self.fixed)
            self.values.update(zip(outputs, values, strict=True))
        self.position = end
        self.values = {k: v for k, v in self.values.items() if k in live}


def run_named(
    model: onnx.ModelProto, names: Iterable[str], samples: np.ndarray, *, exact: bool = True
) -> dict[str, np.ndarray]:
    """The float tensors ``names`` (and the graph outputs) of ``model`` on ``samples``, fed to its one input."""
    sess = session(with_outputs(model, names), exact=exact)
    outputs = [o.name for o in sess.get_outputs()]
    values = run_batched(sess, {sess.get_inputs()[0].name: samples}, outputs)
    return {name: value for name, value in zip(outputs, values, strict=True) if value.dtype.kind == "f"}


def run_onnx(
    model: str | os.PathLike[str] | onnx.ModelProto,
    samples: np.ndarray,
    *,
    exact: bool = False,
    batch_size: int = 32,
    output: int = 0,
) -> np.ndarray:
    """Output ``output`` of ``model`` on ``samples`` (ORT CPU), one row per sample, flattened: a classifier's logits;
    a 4-D output (a label map's ``(N, classes, H, W)`` scores) keeps its shape. A fixed batch dimension is fed full
    batches (the last one padded)."""
    sess = session(model, exact=exact)
    name = sess.get_outputs()[output].name
    (result,) = run_batched(sess, {sess.get_inputs()[0].name: samples}, [name], batch=batch_size)
    return result if result.ndim == 4 else result.reshape(result.shape[0], -1)
