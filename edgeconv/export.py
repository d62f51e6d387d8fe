"""PyTorch -> ONNX export, checked: onnx.checker, shape inference, simplification, and a numerical comparison against
PyTorch on ONNX Runtime CPU with real photographs.

Exporter choice (``exporter="auto"``, the default): the torch.export-based exporter (dynamo; upstream's default since
torch 2.9, the TorchScript one is deprecated) wherever its graph validates against PyTorch at the opset asked, else the
TorchScript exporter (``torch.onnx.export(..., dynamo=False)``), and ``ExportReport.exporter_fallback`` says why:
  * dynamo implements opset >= 18 only and reaches 17 through the ONNX version converter (``convert_version``, which
    fills its Pad and Split gaps), which fails for an op new in 18 (Mish) and then keeps 18; TensorRT 8.6 (JetPack
    6.0) parses at most opset 17, so such a graph is not kept;
  * it exports a dynamic batch only here: ``dynamic_size`` graphs go to TorchScript directly;
  * an op it cannot export, or a graph that fails the numerical check (a data-dependent Python float that TorchScript
    would freeze, dynamo keeps: tests/test_export.py).
Dynamo's graph is exported at opset 18, its nodes renamed from their module-path metadata the TorchScript way
(``scope_node_names``: ``/layer1/layer1.0/conv1/Conv``, how a numerical divergence is traced back to a named module),
then brought down to the opset asked. It takes about twice as long (bench/results/exporters.md compares the two on the
zoo; ``bench/exporter_auto.py`` lists what ``auto`` picks per model). ``exporter="torchscript"`` or ``"dynamo"``
forces one; a forced dynamo export keeps opset 18 with a warning where the conversion fails (``exact_opset``: an
error instead, which is how the auto exporter's attempt stops before validating a graph it would not keep).

Simplifier: onnxslim. It is pure Python (installs wherever onnx does), actively maintained and released, and keeps
opset, names and dynamic axes; onnxsim (onnx-simplifier) is a C++ extension whose wheels have lagged new Python and
onnx releases (source builds need cmake) and it is not installed here.

Validation metric: ``edgeconv.compare`` (FP32 passes at relative error <= 1e-4, FP16 at <= 1e-2, every image keeping its
top-1 class except near ties).
"""

from __future__ import annotations

import ast
import contextlib
import copy
import functools
import io
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from edgeconv import onnxgraph
from edgeconv.compare import FP16_TOLERANCE, FP32_TOLERANCE, Comparison, compare_outputs
from edgeconv.data import validation_images
from edgeconv.errors import ExportError, InvalidArgumentError, ValidationError, first_line
from edgeconv.files import signals_held, write_atomic

logger = logging.getLogger(__name__)

# TensorRT 8.6 parses opset <= 17, TRT 10/11 up to 20+/25, ONNX Runtime >= 1.14 runs 17: the one safe for all.
DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 13, 21

Exporter = Literal["auto", "torchscript", "dynamo"]
EXPORTERS: tuple[str, ...] = ("auto", "torchscript", "dynamo")


@dataclass
class ExportReport:
    path: Path
    opset: int  # the opset written (the dynamo exporter may keep 18 where a lower one was asked)
    exporter: str  # the one that wrote the file: "dynamo" or "torchscript"
    input_name: str
    output_name: str
    input_shape: tuple[int, ...]
    dynamic_batch: bool
    simplified: bool
    nodes: int
    validation: Comparison | None
    warnings: list[str] = field(default_factory=list)
    runtime_notes: list[str] = field(default_factory=list)  # ops some runtimes lack (``RUNTIME_NOTES``)
    dynamic_size: bool = False
    validation_resized: Comparison | None = None  # at ``second_size``, for a dynamic-size export
    output_shape: tuple[int, ...] = ()  # at the export's input shape
    exporter_fallback: str | None = None  # exporter="auto": why the TorchScript exporter wrote it instead of dynamo


def validation_batch(
    input_shape: Sequence[int],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    clip_format: str = "rgb",
) -> np.ndarray:
    """The validation photos preprocessed for a (C, H, W) input, stacked into an (N, C, H, W) float32 batch; for a
    (C, T, H, W) clip input, one clip per photo panning across it (``preprocess.pan_clip``), (N, C, T, H, W)."""
    from edgeconv.preprocess import pan_clip, preprocess_image

    channels = int(input_shape[0])
    if len(input_shape) == 4:
        clips = [
            pan_clip(img, input_shape, mean=mean or (0.45, 0.45, 0.45), std=std or (0.225, 0.225, 0.225),
                     clip_format=clip_format)
            for img in validation_images()
        ]  # fmt: skip
        return np.concatenate(clips, axis=0)
    mean = mean or ((0.485, 0.456, 0.406) if channels == 3 else (0.5,) * channels)
    std = std or ((0.229, 0.224, 0.225) if channels == 3 else (0.5,) * channels)
    images = [preprocess_image(img, input_size=tuple(input_shape), mean=mean, std=std) for img in validation_images()]
    return np.concatenate(images, axis=0).astype(np.float32)


def _batches(images: np.ndarray, batch: int | None) -> Iterator[np.ndarray]:
    """Static batch: every image once, in batches of exactly ``batch`` (cycling to fill). Dynamic: all at once."""
    if batch is None:
        yield images
        return
    count = max(len(images), batch)
    order = [i % len(images) for i in range(count + (-count) % batch)]
    for start in range(0, len(order), batch):
        yield images[order[start : start + batch]]


def run_torch(model: nn.Module, batch: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(batch)).float().numpy()


def validate_onnx(
    onnx_model: str | os.PathLike | bytes,
    reference: nn.Module,
    images: np.ndarray,
    *,
    tolerance: float = FP32_TOLERANCE,
    batch: int | None = 1,
) -> Comparison:
    """Run ``images`` through ONNX Runtime CPU and ``reference`` (PyTorch, eval) and compare the outputs."""
    session = onnxgraph.session(onnx_model)
    input_name = session.get_inputs()[0].name
    ref_out, ort_out = [], []
    for chunk in _batches(images, batch):
        ort_out.append(session.run(None, {input_name: chunk})[0])
        ref_out.append(run_torch(reference, chunk))
    return compare_outputs(np.concatenate(ref_out), np.concatenate(ort_out).astype(np.float32), tolerance)


# --- export -------------------------------------------------------------------------------------------------------


# An explicit constant pad (INT8 preparation's PaddedConv2d) reverses its pads with a Slice of step -1, which the
# TorchScript exporter says it cannot fold: the graph is still right (the export is validated against PyTorch).
_HARMLESS_WARNINGS = ("Constant folding - Only steps=1 can be constant folded",)


@contextlib.contextmanager
def _collect_warnings(sink: list[str]) -> Iterator[None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        if issubclass(w.category, (DeprecationWarning, FutureWarning)):
            continue  # the exporter's own deprecation notice: documented in this module's docstring
        text = str(w.message).splitlines()[0]
        if text.startswith(_HARMLESS_WARNINGS):
            continue
        if text not in sink:
            sink.append(text)
            logger.warning("exporter: %s", text)


@contextlib.contextmanager
def _silence_native_stderr() -> Iterator[None]:
    """The TorchScript exporter dumps its whole IR graph to file descriptor 2 from C++ when an operator fails
    (``_jit_onnx_log("Torch IR graph at exception")``); the user gets our one-line error instead. SIGINT and SIGTERM
    wait until the exporter returns and stderr is back (``signals_held``): an interrupt inside it was either
    swallowed (raised in a ``__del__``, printed to the silenced stream) or left stderr pointing at /dev/null."""
    if hasattr(torch._C, "_jit_set_onnx_log_output_stream"):  # its default stream is stdout, which carries --json
        torch._C._jit_set_onnx_log_output_stream("stderr")
    with signals_held():
        sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no real stderr (embedded interpreter): nothing to silence
            yield
            return
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 2)
                with contextlib.redirect_stderr(io.StringIO()):
                    yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


DEFORM_CONV_OPSET = 19  # the first opset with DeformConv
GRID_SAMPLE_OPSET = 16  # the first with GridSample: deformable convs decomposed (zoo.deform.deform_conv2d_grid_sample)
DEFORM_CONV_FORMS = ("native", "grid-sample")

# ONNX ops that only some runtimes execute: one line each, printed by `edgeconv export` and kept in the manifest.
# DeformConv was measured here on 2026-11-30 (a one-node graph and deform_resnet50); TensorRT is NVIDIA's operator list.
RUNTIME_NOTES = {
    "DeformConv": "DeformConv (opset 19) runs on ONNX Runtime (checked: 1.32; its CPU/CUDA kernels arrived in 2026 "
    "with microsoft/onnxruntime#27393, 1.19 and older refuse it) and parses in TensorRT 10.1+ (FP32/FP16 only, no "
    "INT8); OpenVINO 2026.4 has no conversion rule for it and TensorRT 8.6 (JetPack 6.0) no parser support: for "
    "those, `edgeconv export --deform-conv grid-sample` writes its exact decomposition (GridSample + Conv, opset 16; "
    "cost in bench/results/deform_conv.md)",
}


def _deform_conv2d_symbolic(  # noqa: PLR0913 - torchvision's op signature
    g: Any,
    input: Any,  # noqa: A002
    weight: Any,
    offset: Any,
    mask: Any,
    bias: Any,
    stride_h: Any,
    stride_w: Any,
    pad_h: Any,
    pad_w: Any,
    dil_h: Any,
    dil_w: Any,
    n_weight_grps: Any,
    n_offset_grps: Any,
    use_mask: Any,
) -> Any:
    """``torchvision::deform_conv2d`` as ONNX ``DeformConv``: the same inputs (the mask only when one was given),
    strides, pads (begin and end alike), dilations and groups."""
    from torch.onnx import symbolic_helper

    def const(value: Any, name: str) -> int:
        return int(symbolic_helper._get_const(value, "i", name))

    inputs = [input, weight, offset, bias]
    if const(use_mask, "use_mask"):
        inputs.append(mask)
    pads = [const(pad_h, "pad_h"), const(pad_w, "pad_w")]
    return g.op(
        "DeformConv",
        *inputs,
        strides_i=[const(stride_h, "stride_h"), const(stride_w, "stride_w")],
        pads_i=pads + pads,
        dilations_i=[const(dil_h, "dil_h"), const(dil_w, "dil_w")],
        group_i=const(n_weight_grps, "n_weight_grps"),
        offset_group_i=const(n_offset_grps, "n_offset_grps"),
    )


@functools.cache
def _register_symbolics() -> None:
    """Ops the TorchScript exporter does not know, once per process: torchvision's deformable conv as ONNX
    ``DeformConv`` (opset 19 and above; below, the exporter says which opset added it)."""
    for opset in range(DEFORM_CONV_OPSET, MAX_OPSET + 1):
        torch.onnx.register_custom_op_symbolic("torchvision::deform_conv2d", _deform_conv2d_symbolic, opset)


@functools.cache
def share_torchlib_registry() -> bool:
    """Once per process: torch.onnx's dynamo exporter builds its table of ONNX functions from onnxscript's torchlib on
    every export, parsing the source of about 500 functions; from here on it is built once per opset and each export
    gets its own copy (the exporter only reads it; ``custom_translation_table`` adds to the copy), so the same
    functions at the same opset. Saves the second and later exports of a process (``export --int8`` exports twice,
    ``bench`` once per zoo model) 1-2.5 s each on a 2-core AMD EPYC: mobilenet_v2 at 224 5.4 -> 4.3 s, lenet5 2.3 ->
    1.3 s, resnet18 5.2 -> 4.1 s, mobilenet_v3_small 9.8 -> 7.3 s. Returns False, changing nothing, on a torch without
    this private API."""
    try:
        from torch.onnx._internal.exporter import _constants, _registration
    except ImportError:
        return False
    registry_class = _registration.ONNXRegistry
    build = registry_class.__dict__.get("from_torchlib")
    if not isinstance(build, classmethod) or not hasattr(registry_class(), "functions"):
        return False
    built: dict[int, Any] = {}

    def from_torchlib(cls: type, opset_version: int = _constants.TORCHLIB_OPSET) -> Any:
        if opset_version not in built:
            built[opset_version] = build.__func__(cls, opset_version=opset_version)
        registry = copy.copy(built[opset_version])
        registry.functions = {op: list(metas) for op, metas in built[opset_version].functions.items()}
        return registry

    registry_class.from_torchlib = classmethod(from_torchlib)
    return True


def _torch_export(
    model: nn.Module,
    example: tuple[torch.Tensor, ...],
    *,
    opset: int,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]] | None,
    exporter: Exporter,
    exact_opset: bool = False,
) -> Any:
    """Export ``model``: its ONNX graph. The dynamo exporter's comes as a ModelProto (no serialization and parse of the
    whole model: about 1 s at VGG-16's size); the TorchScript one writes bytes, parsed here."""
    if exporter == "torchscript":
        import onnx

        _register_symbolics()
        buffer = io.BytesIO()
        try:
            torch.onnx.export(
                model,
                example,
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
            return onnx.load_from_string(buffer.getvalue())
        except TypeError as exc:  # a torch without the TorchScript exporter rejects dynamo=False
            if "dynamo" not in str(exc):
                raise
            logger.warning("this torch has no TorchScript ONNX exporter; using the torch.export-based one")
    dynamic_shapes = None
    if dynamic_axes:
        dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) + (None,) * (len(example) - 1)
    # At 18 (its lowest native opset) the exporter keeps the module paths in node metadata, which name the nodes
    # below; asked for less, it converts first, losing them (and keeps 18 silently where the conversion fails).
    share_torchlib_registry()
    program = torch.onnx.export(
        model,
        example,
        dynamo=True,
        opset_version=max(opset, 18),
        input_names=input_names,
        output_names=output_names,
        dynamic_shapes=dynamic_shapes,
        verbose=False,  # its progress lines go to stdout, which carries the CLI's --json
    )
    assert program is not None  # dynamo=True always returns the ONNXProgram
    proto = program.model_proto
    scope_node_names(proto, _call_indices(program))
    return _convert_opset(proto, opset, exact_opset)


_SCOPES = "pkg.torch.onnx.name_scopes"  # the dynamo exporter's module path per node: ['', 'layer1', 'layer1.0', ...]
_FX_NODE = "pkg.torch.onnx.fx_node"  # "%relu_2 : [num_users=1] = call_function[...](...)"


def _call_indices(program: Any) -> dict[str, int]:
    """FX node name -> which call of its innermost module made it: torch.export keys a repeated call ``...relu@1``."""
    exported = getattr(program, "exported_program", None)
    found: dict[str, int] = {}
    for fx in exported.graph.nodes if exported is not None else ():
        stack = fx.meta.get("nn_module_stack") or {}
        repeat = re.search(r"@(\d+)$", list(stack)[-1]) if stack else None
        found[fx.name] = int(repeat.group(1)) if repeat else 0
    return found


def scope_node_names(proto: Any, calls: dict[str, int] | None = None) -> None:
    """Rename (in place) each node of a dynamo-exported graph that carries ``pkg.torch.onnx.name_scopes`` metadata the
    TorchScript exporter's way, which ``onnxgraph.module_name`` reads: ``/layer1/layer1.0/layer1.0.conv1/Conv`` (every
    scope the module's full name), ``Conv_1``, ``Conv_2`` ... when a name repeats. The k-th repeated call of a module
    is scoped ``relu_k`` (``calls``: FX node name -> k), as TorchScript does and ``locate_divergence`` expects. A Conv /
    Gemm whose weight is an initializer ``<module>.weight`` is named after that module: the optimizer's Conv with a
    folded BatchNorm carries the BatchNorm's scope, and keeps the conv's weight name. A renamed node's output tensors
    become ``<node name>_output_<i>``, as TorchScript's are: onnxslim names the Gemm it makes of a MatMul and an Add
    (a Linear layer's decomposition) after the MatMul's output."""
    graph = proto.graph
    initializers = {i.name for i in graph.initializer}
    used = {n.name for n in graph.node}
    keep = {o.name for o in graph.output}
    tensors: dict[str, str] = {}
    for node in graph.node:
        props = {p.key: p.value for p in node.metadata_props}
        try:
            scopes = ast.literal_eval(props.get(_SCOPES, "None"))
        except (ValueError, SyntaxError):
            continue
        if not isinstance(scopes, list) or len(scopes) < 2:
            continue
        module = str(scopes[-2])  # the last entry is the aten op's own name
        weight = node.input[1] if node.op_type in ("Conv", "ConvTranspose", "Gemm") and len(node.input) > 1 else ""
        if weight in initializers and weight.endswith(".weight"):
            module = weight.removesuffix(".weight")
        parts = module.split(".") if module else []
        fx_name = props.get(_FX_NODE, "").split(" ", 1)[0].lstrip("%")
        call = (calls or {}).get(fx_name, 0) if parts and module == scopes[-2] else 0
        base = "".join("/" + ".".join(parts[: i + 1]) for i in range(len(parts)))
        base += f"_{call}/{node.op_type}" if call else f"/{node.op_type}"
        name, count = base, 0
        while name in used:
            count += 1
            name = f"{base}_{count}"
        used.discard(node.name)
        used.add(name)
        node.name = name
        tensors.update({t: f"{name}_output_{i}" for i, t in enumerate(node.output) if t and t not in keep})
    if any(attr.g.node or attr.graphs for n in graph.node for attr in n.attribute):
        return  # a subgraph may read outer tensors by name: keep them
    for node in graph.node:
        for names in (node.input, node.output):
            names[:] = [tensors.get(t, t) for t in names]
    for info in graph.value_info:
        info.name = tensors.get(info.name, info.name)


_PASSED_OVER = "edgeconv.unconverted"  # a domain the version converter leaves alone, for the nodes below


def _same_at_13(node: Any) -> bool:
    """Whether an opset-18 node means the same at opsets 13-17, where the version converter has no adapter for it:
    Pad without ``axes`` (18 added only that input), Split with its sizes as an input, or ``num_outputs`` equal parts
    (Split-13 splits equally into as many outputs when given no sizes; an uneven split fails the checks after)."""
    if node.domain not in ("", "ai.onnx"):
        return False
    if node.op_type == "Pad":
        return len(node.input) < 4 or not node.input[3]
    if node.op_type == "Split":
        parts = next((a.i for a in node.attribute if a.name == "num_outputs"), None)
        sizes = len(node.input) > 1 and bool(node.input[1])
        return sizes != (parts is not None) and parts in (None, len(node.output))
    return False


def convert_version(proto: Any, opset: int) -> Any:
    """The ONNX version converter's ``proto`` at ``opset``, with two of its gaps filled. It has no opset 18 -> 17
    adapter for Pad and Split, which dynamo writes for explicit padding and channel splits: those whose meaning does
    not change (``_same_at_13``) are passed over and kept as they are. Opset 18 moved the Reduce ops' axes to an
    input, and converting down keeps ``noop_with_empty_axes``, which only ReduceSum-13 has: dropped."""
    import onnx
    from onnx import version_converter

    passed = [n for n in proto.graph.node if _same_at_13(n)] if graph_opset(proto) >= 18 and opset >= 13 else []
    for node in passed:
        node.domain = _PASSED_OVER
    if passed:
        proto.opset_import.append(onnx.helper.make_opsetid(_PASSED_OVER, 1))
    try:
        converted = version_converter.convert_version(proto, opset)
    finally:
        for node in passed:
            node.domain = ""
        if passed:
            del proto.opset_import[-1]
    for node in converted.graph.node:
        if node.domain == _PASSED_OVER:
            node.domain = ""
            kept = [a for a in node.attribute if a.name != "num_outputs"]  # Split-13 has no such attribute
            del node.attribute[:]
            node.attribute.extend(kept)
        if node.op_type.startswith("Reduce") and node.op_type != "ReduceSum" and opset < 18:
            kept = [a for a in node.attribute if not (a.name == "noop_with_empty_axes" and a.i == 0)]
            del node.attribute[:]
            node.attribute.extend(kept)
    imports = [o for o in converted.opset_import if o.domain != _PASSED_OVER]
    del converted.opset_import[:]
    converted.opset_import.extend(imports)
    return converted


def _convert_opset(proto: Any, opset: int, exact: bool = False) -> Any:
    """``proto`` brought down to ``opset`` by the ONNX version converter and checked, or as it is (with a warning
    naming the opset written) when the converter fails; ``exact``: ``ExportError`` then."""
    written = graph_opset(proto)
    if written <= opset:
        return proto

    def convert(light: Any) -> Any:
        converted = convert_version(light, opset)
        _check(converted)
        return converted

    try:
        return onnxgraph.apply_to_structure(proto, convert)
    except Exception as exc:
        if exact:
            raise ExportError(f"the ONNX version converter cannot write opset {opset}: {first_line(exc)}") from exc
        warnings.warn(
            f"wrote opset {written}, not {opset}: the ONNX version converter failed ({first_line(exc)}); "
            "TensorRT 8.6 (JetPack 6.0) parses at most opset 17",
            stacklevel=2,
        )
        return proto


def _check(proto: Any) -> None:
    import onnx

    onnx.checker.check_model(proto, full_check=True)


def _checked_shapes(proto: Any) -> Any:
    import onnx

    _check(proto)
    return onnx.shape_inference.infer_shapes(proto, strict_mode=True)


def graph_opset(proto: Any) -> int:
    """The default-domain (ai.onnx) opset a graph declares."""
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def _record_module_inputs(model: nn.Module, example: tuple[torch.Tensor, ...]) -> dict[str, tuple[Any, ...]]:
    """Positional inputs of every module call in one forward pass (first call only)."""
    recorded: dict[str, tuple[Any, ...]] = {}
    handles = []
    for name, module in model.named_modules():

        def hook(mod: nn.Module, args: tuple[Any, ...], name: str = name) -> None:
            recorded.setdefault(name, tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args))

        handles.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():  # not inference_mode: inference tensors cannot be traced again by the exporter
            model(*example)
    except Exception:  # the export error is what matters; a forward that also fails is reported by it
        pass
    finally:
        for handle in handles:
            handle.remove()
    return recorded


def find_unexportable_module(
    model: nn.Module, example: tuple[torch.Tensor, ...], try_export: Callable[[nn.Module, tuple[Any, ...]], None]
) -> str | None:
    """Descend from the root to the innermost module that fails to export on its own: the first failing child at
    each level, or the module itself when all its children export (the culprit is in its own ``forward``)."""
    inputs = _record_module_inputs(model, example)
    current = ""
    while True:
        module = model.get_submodule(current) if current else model
        culprit = None
        for child_name, child in module.named_children():
            full = f"{current}.{child_name}" if current else child_name
            args = inputs.get(full)
            if args is None or not all(isinstance(a, torch.Tensor) for a in args):
                continue
            try:
                try_export(child, args)
            except Exception:
                culprit = full
                break
        if culprit is None:
            return current or None
        current = culprit


def _dynamic_axes(
    input_name: str, output_name: str, output_rank: int, dynamic_batch: bool, dynamic_size: bool
) -> dict[str, dict[int, str]] | None:
    """``torch.onnx.export``'s dynamic axes: the batch, and the height and width of the input and of a 4-D output (a
    label map, a dense score map); a 2-D output (class scores) keeps its class axis fixed."""
    if not (dynamic_batch or dynamic_size):
        return None
    inputs: dict[int, str] = {0: "batch"} if dynamic_batch else {}
    outputs = dict(inputs)
    if dynamic_size:
        inputs.update({2: "height", 3: "width"})
        if output_rank == 4:
            outputs.update({2: "out_height", 3: "out_width"})
    return {input_name: inputs, output_name: outputs}


def _pin_output_dims(proto: Any, shape: tuple[int, ...], dynamic: dict[int, str]) -> None:
    """In place, every axis of the graph output that is not declared dynamic gets its size from ``shape`` (the
    exporter names the class axis of a Resize output ``Resizelogits_dim_1``)."""
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    if len(dims) == len(shape):
        for axis, dim in enumerate(dims):
            if axis not in dynamic:
                dim.dim_value = shape[axis]


class _Unless(logging.Filter):
    """Drops the records whose message starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def _export_auto(model: nn.Module, path: Path, input_shape: Sequence[int], **options: Any) -> ExportReport:
    """``exporter="auto"``: the torch.export-based exporter where it writes a graph that validates at the opset asked,
    else the TorchScript one; the report says which wrote the file and why dynamo did not."""
    why = "dynamic height and width: the torch.export path here makes only the batch dynamic"
    if not options["dynamic_size"]:
        attempt = path.with_name(path.name + ".dynamo")
        quiet = _Unless("exporter: ")  # dynamo's warnings matter only if its graph is kept
        logger.addFilter(quiet)
        try:
            report: ExportReport | None = export_onnx(
                model, attempt, input_shape, exporter="dynamo", exact_opset=True, **options
            )
        except ExportError as exc:
            report, why = None, f"it failed: {first_line(exc)}"
        finally:
            logger.removeFilter(quiet)
        try:
            if report is not None and report.opset == options["opset"]:
                os.replace(attempt, path)
                report.path = path
                for text in report.warnings:
                    logger.warning("exporter: %s", text)
                return report
            if report is not None:
                why = f"it wrote opset {report.opset}, not the {options['opset']} asked"
        finally:
            attempt.unlink(missing_ok=True)
    logger.info("ONNX export with the TorchScript exporter; dynamo's was not used (%s)", why)
    report = export_onnx(model, path, input_shape, exporter="torchscript", **options)
    report.exporter_fallback = why
    return report


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    input_shape: Sequence[int],
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    input_name: str = "input",
    output_name: str = "logits",
    simplify: bool = True,
    validate: bool = True,
    reference: nn.Module | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    tolerance: float = FP32_TOLERANCE,
    exporter: Exporter = "auto",
    dynamic_size: bool = False,
    second_size: tuple[int, int] | None = None,
    clip_format: str = "rgb",
    exact_opset: bool = False,
) -> ExportReport:
    """Export ``model`` (eval mode, CPU, float32) to ``path`` and check it.

    ``input_shape`` is the full input shape (batch, C, H, W); with ``dynamic_batch`` the batch axis becomes a named
    dimension ``batch``. With ``dynamic_size`` the height and width become ``height`` / ``width`` (and a 4-D output's
    ``out_height`` / ``out_width``), and the graph is validated again at ``second_size`` (H, W) when given, a size the
    model takes other than the export size (``edgeconv export --dynamic-size`` always gives one). ``reference`` is the
    PyTorch model the ONNX output is compared with (default: ``model``; pass the unfused original to cover fusion
    too). ``mean`` / ``std`` normalize the validation photos. A 5-D ``input_shape`` (batch, C, T, H, W) is a video clip
    model's: it is validated on clips panning across the photos, with ``clip_format``'s channels. ``exact_opset``:
    raise ``ExportError`` when the dynamo exporter's graph cannot be brought down to ``opset`` (else it is kept at the
    opset written, with a warning).
    Raises ``ExportError`` naming the module when the exporter fails or when ONNX Runtime disagrees with PyTorch.
    The file is written atomically: on any failure nothing is left at ``path``.
    """
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise InvalidArgumentError(
            f"opset {opset} is not supported; use {MIN_OPSET}..{MAX_OPSET} "
            f"({DEFAULT_OPSET} runs on TensorRT 8.6+ and ONNX Runtime)"
        )
    if exporter not in EXPORTERS:
        raise InvalidArgumentError(f"exporter {exporter!r} is not one of {', '.join(EXPORTERS)}")
    if exporter == "auto":
        return _export_auto(
            model,
            Path(path),
            input_shape,
            opset=opset,
            dynamic_batch=dynamic_batch,
            input_name=input_name,
            output_name=output_name,
            simplify=simplify,
            validate=validate,
            reference=reference,
            mean=mean,
            std=std,
            tolerance=tolerance,
            dynamic_size=dynamic_size,
            second_size=second_size,
            clip_format=clip_format,
        )
    shape = tuple(int(v) for v in input_shape)
    if len(shape) < 2 or min(shape) < 1:
        raise InvalidArgumentError(
            f"input_shape {input_shape} must be the full shape (batch, C, H, W) with positive sizes"
        )
    model = model.eval().float().cpu()
    path = Path(path)
    trace_batch = max(shape[0], 2) if dynamic_batch else shape[0]  # trace at >1 so no axis specializes to batch 1
    example = (torch.randn(trace_batch, *shape[1:]),)
    if dynamic_size and second_size is not None and tuple(second_size) == shape[2:]:
        raise InvalidArgumentError(f"second_size {tuple(second_size)} is the export size; give another (H, W)")
    try:
        with torch.no_grad():  # the output's shape: which axes are dynamic, and the sizes of the others
            output_shape = tuple(int(v) for v in model(*example).shape)
    except (RuntimeError, ValueError, TypeError) as exc:
        if isinstance(exc, InvalidArgumentError):
            raise
        raise ExportError(f"the model cannot run on input {'x'.join(map(str, shape))}: {first_line(exc)}") from exc
    dynamic_axes = _dynamic_axes(input_name, output_name, len(output_shape), dynamic_batch, dynamic_size)
    caught: list[str] = []

    def try_export(module: nn.Module, args: tuple[Any, ...]) -> None:
        names = [f"in{i}" for i in range(len(args))]
        with _collect_warnings([]), _silence_native_stderr():
            _torch_export(
                module,
                args,
                opset=opset,
                input_names=names,
                output_names=["out"],
                dynamic_axes=None,
                exporter=exporter,
            )

    try:
        with _collect_warnings(caught), _silence_native_stderr():
            proto = _torch_export(
                model,
                example,
                opset=opset,
                input_names=[input_name],
                output_names=[output_name],
                dynamic_axes=dynamic_axes,
                exporter=exporter,
                exact_opset=exact_opset,
            )
    except ExportError:
        raise
    except Exception as exc:
        culprit = find_unexportable_module(model, example, try_export)
        where = (
            f"module {culprit!r} ({type(model.get_submodule(culprit)).__name__})"
            if culprit
            else "the model's own forward"
        )
        raise ExportError(f"torch.onnx cannot export {where} at opset {opset}: {first_line(exc)}") from exc

    _pin_output_dims(proto, output_shape, dynamic_axes.get(output_name, {}) if dynamic_axes else {})
    output_shape = (shape[0], *output_shape[1:])  # traced at trace_batch; reported at the batch asked
    written_opset = graph_opset(proto)  # the dynamo exporter keeps 18 where the version converter fails
    try:
        onnxgraph.apply_to_structure(proto, _checked_shapes)
    except Exception as exc:
        raise ExportError(f"exported graph fails onnx.checker / shape inference: {first_line(exc)}") from exc
    if simplify:
        import onnxslim

        try:
            # Shapes from ONNX's inference on the structure, not onnxslim's (ORT's symbolic inference, on the whole
            # model with its weights, between passes): node for node the same graph for each zoo family's test model,
            # slak_tiny's simplification 7.9 s -> 3.3 s, convnext_tiny's 5.1 s -> 1.2 s.
            proto = onnxgraph.apply_to_structure(onnxslim.slim(proto, no_shape_infer=True), _checked_shapes)
        except Exception as exc:  # a simplifier bug must not cost the user the export: keep the checked graph
            logger.warning("onnxslim failed (%s); keeping the unsimplified graph", first_line(exc))
            simplify = False
    data = proto.SerializeToString()

    comparison = resized = None
    if validate:
        images = validation_batch(shape[1:], mean, std, clip_format)
        reference = (reference or model).eval().float().cpu()
        comparison = validate_onnx(
            data, reference, images, tolerance=tolerance, batch=None if dynamic_batch else shape[0]
        )
        logger.info("ONNX Runtime vs PyTorch: %s", comparison.describe())
        if not comparison:
            raise ExportError(
                _divergence_message(
                    model, proto, images[:1] if dynamic_batch else images[: shape[0]], comparison, tolerance
                )
            )
        if dynamic_size and second_size is not None:
            other = validation_batch((shape[1], *second_size), mean, std)
            resized = validate_onnx(
                data, reference, other, tolerance=tolerance, batch=None if dynamic_batch else shape[0]
            )
            logger.info("ONNX Runtime vs PyTorch at %dx%d: %s", *second_size, resized.describe())
            if not resized:
                raise ExportError(
                    f"the dynamic-size graph disagrees with PyTorch at {second_size[0]}x{second_size[1]} (it passed "
                    f"at the export size {shape[2]}x{shape[3]}): {resized.describe()}; export at a fixed size"
                )
    write_atomic(path, data)
    notes = [RUNTIME_NOTES[op] for op in sorted({node.op_type for node in proto.graph.node}) if op in RUNTIME_NOTES]
    return ExportReport(
        path=path,
        opset=written_opset,
        exporter=exporter,
        input_name=input_name,
        output_name=output_name,
        input_shape=shape,
        dynamic_batch=dynamic_batch,
        simplified=simplify,
        nodes=len(proto.graph.node),
        validation=comparison,
        warnings=caught,
        runtime_notes=notes,
        dynamic_size=dynamic_size,
        validation_resized=resized,
        output_shape=output_shape,
    )


# --- locating a divergence ----------------------------------------------------------------------------------------


def layer_outputs_onnx(proto: Any, batch: np.ndarray) -> dict[str, np.ndarray]:
    """Every float intermediate tensor of the graph, by name, for one batch (extra graph outputs, ORT CPU)."""
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    existing = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for name in node.output:
            if name and name not in existing:
                model.graph.output.append(onnx.ValueInfoProto(name=name))
                existing.add(name)
    session = onnxgraph.session(model)
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, {session.get_inputs()[0].name: batch})
    return {n: v for n, v in zip(names, values, strict=True) if isinstance(v, np.ndarray) and v.dtype.kind == "f"}


def locate_divergence(model: nn.Module, proto: Any, batch: np.ndarray, tolerance: float) -> tuple[str, float] | None:
    """The first module (in execution order, innermost first) whose PyTorch output differs from the matching ONNX
    tensor by more than ``tolerance`` (relative), with that error; None when every matched layer agrees."""
    modules = dict(model.named_modules())
    last_tensor: dict[str, str] = {}
    for node in proto.graph.node:
        owner = onnxgraph.module_name(node.name)  # the node-name -> module mapping every stage uses
        if not owner or not node.output:
            continue
        parts = owner.split(".")
        for depth in range(1, len(parts) + 1):  # a node is also the latest output of every enclosing module
            last_tensor[".".join(parts[:depth])] = node.output[0]
    produced_by: dict[int, str] = {}
    order: list[tuple[str, str, torch.Tensor, int | None]] = []
    calls: dict[str, int] = {}
    keep: list[Any] = []
    handles = []
    for name, module in modules.items():
        if not name:
            continue

        def hook(mod: nn.Module, args: tuple[Any, ...], out: Any, name: str = name) -> None:
            if isinstance(out, torch.Tensor):
                keep.append(out)
                source = id(args[0]) if args and isinstance(args[0], torch.Tensor) else None
                count = calls[name] = calls.get(name, 0) + 1
                key = name if count == 1 else f"{name}_{count - 1}"  # the exporter's scope of a repeated call: relu_1
                order.append((name, key, out.detach().clone(), source))
                produced_by[id(out)] = key

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.inference_mode():
            model(torch.from_numpy(batch))
    finally:
        for handle in handles:
            handle.remove()
    # A module with no ONNX node in it (BatchNorm folded into the Conv by the exporter) owns its producer's tensor.
    for _, key, _, source in order:
        if key not in last_tensor and source in produced_by and produced_by[source] in last_tensor:
            last_tensor[key] = last_tensor.pop(produced_by[source])
    onnx_values = layer_outputs_onnx(proto, batch)
    for name, key, value, _ in order:
        tensor = last_tensor.get(key)
        if tensor is None or tensor not in onnx_values:
            continue
        theirs, ours = onnx_values[tensor], value.float().numpy()
        if theirs.shape != ours.shape:
            continue
        scale = float(np.abs(ours).max())
        err = float(np.abs(theirs - ours).max()) / scale if scale > 0 else float(np.abs(theirs).max())
        if not np.isfinite(theirs).all() or err > tolerance:
            return name, err
    return None


def _divergence_message(
    model: nn.Module, proto: Any, batch: np.ndarray, comparison: Comparison, tolerance: float
) -> str:
    head = f"ONNX Runtime output disagrees with PyTorch: {comparison.describe()}"
    try:
        found = locate_divergence(model, proto, batch, tolerance)
    except Exception as exc:  # the localisation is a diagnosis aid; its own failure must not hide the real error
        logger.debug("could not localise the divergence: %s", exc)
        found = None
    if found is None:
        return f"{head}; all matched layers agree: the difference comes from the reference model (fusion?)"
    name, err = found
    kind = type(model.get_submodule(name)).__name__
    return f"{head}; first diverging layer: {name!r} ({kind}, relative error {err:.3g})"


# --- FP16 ---------------------------------------------------------------------------------------------------------


def convert_fp16(
    onnx_path: str | os.PathLike, out_path: str | os.PathLike, half: Callable[[Any], Any] | None = None
) -> Path:
    """FP16 weights and compute with FP32 inputs/outputs (Cast nodes at the edges), checked and written atomically.

    ``half``: the conversion of the ``onnx.ModelProto`` (a detector's: ``edgeconv.detector_precision.half_network``);
    default ``onnxruntime.transformers.float16`` (shipped inside onnxruntime; onnxconverter-common is not needed).
    """
    import onnx

    def whole(model: Any) -> Any:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        converted = convert_float_to_float16(model, keep_io_types=True)
        sort_topologically(converted.graph)
        return converted

    try:
        fp16 = onnxgraph.apply_to_structure((half or whole)(onnx.load(str(onnx_path))), _check)
    except Exception as exc:
        raise ExportError(f"FP16 conversion of {onnx_path} failed: {first_line(exc)}") from exc
    out = Path(out_path)
    write_atomic(out, fp16.SerializeToString())
    return out


def sort_topologically(graph: Any) -> None:
    """Reorder ``graph.node`` so every node comes after its producers (in place). The float16 converter appends its
    input Casts at the end of the node list, which onnx.checker and TensorRT's parser reject."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        ready = [n for n in pending if all(name in available for name in n.input)]
        if not ready:
            raise ExportError(f"graph has a cycle or a dangling input near node {pending[0].name!r}")
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
        for node in ready:
            ordered.append(node)
            available.update(node.output)
    copies = [type(n)() for n in ordered]
    for copy_, node in zip(copies, ordered, strict=True):
        copy_.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def validate_fp16(
    onnx_path: str | os.PathLike | bytes,
    reference: nn.Module,
    images: np.ndarray,
    *,
    batch: int | None = 1,
    tolerance: float = FP16_TOLERANCE,
) -> Comparison:
    """FP16 model on ONNX Runtime CPU against the FP32 PyTorch model: raises ``ValidationError`` below the gate."""
    comparison = validate_onnx(onnx_path, reference, images, tolerance=tolerance, batch=batch)
    if not comparison:
        raise ValidationError(f"FP16 model disagrees with PyTorch FP32: {comparison.describe()}")
    return comparison
