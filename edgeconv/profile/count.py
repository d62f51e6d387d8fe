"""Count a PyTorch model's cost layer by layer with forward hooks: params, mult-adds, other ops, memory.

Counting convention (the one the MobileNet and ShuffleNet papers use; "FLOPs" in ShuffleNet V2 and EfficientNet mean
the same):

- **mult-adds (MACs)**: one multiply-accumulate of a convolution or fully connected layer. A conv layer costs
  ``output elements x (in_channels / groups) x kernel area`` (a 3D conv on a clip: ``out_c x in_c / groups x kT x kH
  x kW x T' x H' x W'``); a transposed conv ``input elements x (out_channels / groups) x kernel area``; a linear
  layer ``output elements x in_features``; a matmul ``M x N x K``. Bias additions are *not* mult-adds.
- **other ops**: everything else that computes, counted separately and never folded into mult-adds: one op per output
  element for a bias add, an activation, an element-wise add / multiply (residuals, SE scaling); two per element for
  BatchNorm / other normalization at inference (scale and shift); one per element read by the window for pooling
  (``output elements x window area``; global pooling: input elements).
- **data movement** (``cat``, ``contiguous`` after a transpose as in channel shuffle, ``pad``) costs no ops; it shows in
  ``memory_bytes`` only. Views (``view``, ``reshape`` of a contiguous tensor, ``chunk``, slicing) are free.
- **memory_bytes** is ShuffleNet V2's memory access cost (MAC): bytes of weights + input activations + output
  activations of the layer. **activation_bytes** is the size of the layer's output.
- **params** are counted once per module even when the module runs twice (CBAM's shared MLP); a module's parameters
  that no executed layer uses (auxiliary heads skipped in eval mode) are listed in rows with an empty output shape.

Op types (the ``by_type`` breakdown):

- ``conv_dw``: depthwise, ``groups == in_channels > 1``, any kernel, and any channel multiplier (``out_channels = m x
  in_channels``): each filter still sees one input channel, which is what makes it cheap.
- ``conv_group``: grouped but not depthwise (``1 < groups < in_channels``; ShuffleNet V1's grouped 1x1, ResNeXt 3x3).
- ``conv1x1``: dense 1x1 convolution on a feature map larger than 1x1.
- ``fc``: ``nn.Linear``, and a dense 1x1 convolution applied to a 1x1 map (mathematically a fully connected layer:
  MobileNet V2's and SE blocks' 1x1 "convs" on pooled features; MobileNet's Table 2 counts its classifier as FC).
- ``conv_kxk``: any other dense convolution; the breakdown has one row per kernel (``conv_kxk 3x3``, ``conv_kxk 7x7``).
- ``conv_deform``: a deformable convolution (torchvision's ``DeformConv2d``; ONNX ``DeformConv``). Its mult-adds are
  those of a regular conv of the same shapes; its bilinear sampling is counted separately, in other ops: 4 multiply-
  adds per sampled value (the four neighbours), 5 with v2's modulation mask, for ``in_channels x kernel area x output
  positions`` samples. The conv that predicts the offsets is an ordinary conv row of its own.
- ``other``: normalization, activations, pooling, element-wise ops, data movement.

What the hooks see: every leaf module (a module with no children), plus functional calls made in the ``forward`` of
composite or custom modules (``F.conv2d``, ``F.linear``, ``torch.matmul`` / ``@``, ``bmm``, element-wise arithmetic,
pooling, ``cat``), caught with a ``TorchFunctionMode`` and named ``<module>/<op>``. Not counted: ``einsum`` (logged as a
note), and ops in C++ / TorchScript code the Python dispatcher never sees.

Zoo models are built and run on the ``meta`` device (shapes only, no arithmetic), so profiling even EfficientNet-B7 at
600x600 costs one shape propagation; a model whose forward needs real data falls back to one CPU forward.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from edgeconv.errors import EdgeconvError, InputError, InvalidArgumentError
from edgeconv.profile.report import LayerProfile, ProfileReport

logger = logging.getLogger(__name__)

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORM = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LocalResponseNorm,
)
_POOL_WINDOW = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_POOL_GLOBAL = (
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
_FREE = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Flatten, nn.Unflatten)

# Functional ops recognised inside the forward of composite / custom modules (by the function's __name__).
_F_CONV = {"conv1d", "conv2d", "conv3d"}
_F_CONV_T = {"conv_transpose1d", "conv_transpose2d", "conv_transpose3d"}
_F_MATMUL = {"linear", "matmul", "mm", "bmm", "addmm", "baddbmm", "__matmul__", "__rmatmul__"}
_F_ELEMENTWISE = {
    "add", "add_", "__add__", "__iadd__", "__radd__", "sub", "sub_", "__sub__", "__rsub__", "__isub__",
    "mul", "mul_", "__mul__", "__imul__", "__rmul__", "div", "div_", "__truediv__", "__itruediv__",
    "sigmoid", "sigmoid_", "tanh", "tanh_", "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "hardswish",
    "hardsigmoid", "silu", "gelu", "elu", "leaky_relu", "mish", "softmax", "log_softmax", "clamp", "clamp_", "clip",
    "exp", "sqrt", "rsqrt", "pow", "__pow__", "neg", "abs", "maximum", "minimum",
}  # fmt: skip
_F_NORM = {"batch_norm", "layer_norm", "group_norm", "instance_norm", "local_response_norm"}
_F_POOL_WINDOW = {"max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d"}
_F_REDUCE = {
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
    "adaptive_max_pool2d", "adaptive_max_pool3d", "mean", "sum", "amax", "amin", "max", "min", "std", "var",
}  # fmt: skip
_F_COPY = {"cat", "concat", "concatenate", "stack", "contiguous", "pad", "roll", "clone", "interpolate"}
_F_UNCOUNTED = {"einsum", "scaled_dot_product_attention", "tensordot"}


def _is_deform_conv(module: nn.Module) -> bool:
    """torchvision's ``DeformConv2d`` (torchvision is not a dependency: recognized by name and shape)."""
    return type(module).__name__ == "DeformConv2d" and isinstance(getattr(module, "weight", None), torch.Tensor)


def classify_conv(
    in_channels: int, out_channels: int, groups: int, kernel: tuple[int, ...], input_spatial: tuple[int, ...]
) -> tuple[str, str]:
    """(op type, kernel label) of a convolution, following the rules in this module's docstring."""
    label = "x".join(str(k) for k in kernel)
    if groups == 1:
        if all(k == 1 for k in kernel):
            return ("fc" if all(s == 1 for s in input_spatial) else "conv1x1"), label
        return "conv_kxk", label
    if groups == in_channels:
        return "conv_dw", label
    return "conv_group", label


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    return []


def _nbytes(tensors: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _as_tuple(value: Any, dims: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value),) * dims


def _is_known(module: nn.Module) -> bool:
    """A leaf whose cost the hooks compute from the module (torch.nn types and subclasses of the counted ones)."""
    if isinstance(module, (*_CONV, *_CONV_T, nn.Linear, *_NORM, *_POOL_WINDOW, *_POOL_GLOBAL, *_FREE)):
        return True
    if _is_deform_conv(module):
        return True
    return type(module).__module__.startswith("torch.nn.") and not list(module.children())


class _Counter(TorchFunctionMode):
    """Collects rows from leaf-module hooks and from functional calls made inside non-leaf / custom modules."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.rows: list[LayerProfile] = []
        self.stack: list[tuple[str, bool]] = []  # (module name, counted by its own hook)
        self.calls: dict[str, int] = {}
        self.claimed: set[int] = set()  # id() of modules whose direct params are already in a row
        self.executed: set[str] = set()
        self.uncounted: dict[str, int] = {}
        self.names = {id(m): n for n, m in model.named_modules()}
        self.handles: list[Any] = []
        for name, module in model.named_modules():
            known_leaf = not list(module.children()) and _is_known(module)
            self.handles.append(module.register_forward_pre_hook(self._pre(name, known_leaf)))
            self.handles.append(module.register_forward_hook(self._post(name, known_leaf)))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def _unique(self, name: str) -> str:
        count = self.calls.get(name, 0) + 1
        self.calls[name] = count
        return name if count == 1 else f"{name}#{count}"

    def _pre(self, name: str, known_leaf: bool) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any) -> None:
            self.stack.append((name, known_leaf))
            self.executed.add(name)

        return hook

    def _post(self, name: str, known_leaf: bool) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if self.stack and self.stack[-1][0] == name:
                self.stack.pop()
            if known_leaf and not isinstance(module, nn.Identity):
                self._module_row(name, module, _tensors(args), _tensors(output))

        return hook

    def _own_params(self, module: nn.Module) -> int:
        if id(module) in self.claimed:
            return 0
        self.claimed.add(id(module))
        return sum(p.numel() for p in module.parameters(recurse=False))

    def _module_row(
        self, name: str, module: nn.Module, inputs: list[torch.Tensor], outputs: list[torch.Tensor]
    ) -> None:
        out = outputs[0] if outputs else None
        out_numel = sum(t.numel() for t in outputs)
        params = self._own_params(module)
        weight_bytes = sum(p.numel() * p.element_size() for p in module.parameters(recurse=False))
        op_type, kernel, macs, other = "other", "", 0, 0
        if isinstance(module, (*_CONV, *_CONV_T)) and inputs and out is not None:
            dims = module.weight.dim() - 2
            kernel_size = _as_tuple(module.kernel_size, dims)
            spatial = tuple(inputs[0].shape[-dims:])
            op_type, kernel = classify_conv(
                module.in_channels, module.out_channels, module.groups, kernel_size, spatial
            )
            area = math.prod(kernel_size)
            if isinstance(module, _CONV):
                macs = out.numel() * (module.in_channels // module.groups) * area
            else:
                macs = inputs[0].numel() * (module.out_channels // module.groups) * area
            other = out.numel() if module.bias is not None else 0
        elif _is_deform_conv(module) and inputs and out is not None:
            kernel_size = _as_tuple(module.kernel_size, 2)
            op_type, kernel = "conv_deform", "x".join(map(str, kernel_size))
            area = math.prod(kernel_size)
            in_channels, groups = int(module.in_channels), int(module.groups)  # type: ignore[arg-type]
            macs = out.numel() * (in_channels // groups) * area
            samples = out.shape[0] * in_channels * area * out.shape[-2] * out.shape[-1]
            modulated = len(inputs) > 2  # (input, offset, mask)
            other = samples * (5 if modulated else 4) + (out.numel() if module.bias is not None else 0)
        elif isinstance(module, nn.Linear) and out is not None:
            op_type = "fc"
            macs = out.numel() * module.in_features
            other = out.numel() if module.bias is not None else 0
        elif isinstance(module, _NORM):
            other = 2 * out_numel
        elif isinstance(module, _POOL_WINDOW) and out is not None:
            dims = out.dim() - 2
            other = out.numel() * math.prod(_as_tuple(module.kernel_size, dims))
        elif isinstance(module, _POOL_GLOBAL):
            other = sum(t.numel() for t in inputs[:1])
        elif isinstance(module, _FREE):
            other = 0
        else:  # activations and the other elementwise torch.nn layers
            other = out_numel
        self.rows.append(
            LayerProfile(
                name=self._unique(name),
                op=type(module).__name__,
                op_type=op_type,
                kernel=kernel,
                output_shape=tuple(out.shape) if out is not None else (),
                params=params,
                macs=macs,
                other_ops=other,
                memory_bytes=weight_bytes
                + _nbytes(inputs[:1] if isinstance(module, _FREE) else inputs)
                + _nbytes(outputs),
                activation_bytes=_nbytes(outputs),
            )
        )

    # ---- functional calls inside composite / custom modules -------------------------------------------------------
    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if self.stack and self.stack[-1][1]:  # inside a leaf its own hook counts
            return result
        op = getattr(func, "__name__", "")
        if op in _F_UNCOUNTED:
            self.uncounted[op] = self.uncounted.get(op, 0) + 1
            return result
        if not (
            op in _F_CONV or op in _F_CONV_T or op in _F_MATMUL or op in _F_ELEMENTWISE or op in _F_NORM
            or op in _F_POOL_WINDOW or op in _F_REDUCE or op in _F_COPY
        ):  # fmt: skip
            return result
        inputs = _tensors(args) + _tensors(kwargs)
        outputs = _tensors(result)
        if not outputs:
            return result
        out = outputs[0]
        op_type, kernel, macs, other = "other", "", 0, 0
        if op in _F_CONV or op in _F_CONV_T:
            # conv2d(input, weight, bias, stride, padding, dilation, groups); conv_transpose2d has groups at 6 too
            x, weight = args[0], args[1] if len(args) > 1 else kwargs["weight"]
            groups = int(args[6] if len(args) > 6 else kwargs.get("groups", 1))
            dims = weight.dim() - 2
            kernel_size = tuple(weight.shape[2:])
            in_ch = x.shape[1]
            out_ch = out.shape[1]
            op_type, kernel = classify_conv(in_ch, out_ch, groups, kernel_size, tuple(x.shape[-dims:]))
            # weight is (out, in / groups, *k) for conv and (in, out / groups, *k) for transposed conv
            macs = (out.numel() if op in _F_CONV else x.numel()) * weight.shape[1] * math.prod(kernel_size)
        elif op in _F_MATMUL:
            op_type = "fc"
            a = args[1] if op in ("addmm", "baddbmm") else args[0]
            macs = out.numel() * int(a.shape[-1])
        elif op in _F_ELEMENTWISE:
            other = out.numel()
        elif op in _F_NORM:
            other = 2 * out.numel()
        elif op in _F_POOL_WINDOW:
            window = args[1] if len(args) > 1 else kwargs.get("kernel_size", 1)
            other = out.numel() * math.prod(_as_tuple(window, out.dim() - 2))
        elif op in _F_REDUCE:
            other = inputs[0].numel() if inputs else 0
        owner = self.stack[-1][0] if self.stack else ""
        self.rows.append(
            LayerProfile(
                name=self._unique(f"{owner}/{op}" if owner else op),
                op=op,
                op_type=op_type,
                kernel=kernel,
                output_shape=tuple(out.shape),
                macs=macs,
                other_ops=other,
                memory_bytes=_nbytes(inputs) + _nbytes(outputs),  # a weight argument is one of the inputs
                activation_bytes=_nbytes(outputs),
            )
        )
        return result


def _attribute_params(model: nn.Module, counter: _Counter, rows: list[LayerProfile]) -> list[str]:
    """Give parameters no leaf-module row claimed to a functional row of their module, or to a row of their own."""
    unexecuted = 0
    for name, module in model.named_modules():
        own = sum(p.numel() for p in module.parameters(recurse=False))
        if not own or id(module) in counter.claimed:
            continue
        counter.claimed.add(id(module))
        owned = [r for r in rows if "/" in r.name and r.name.rsplit("/", 1)[0] == name]
        if owned:  # e.g. a custom module calling F.conv2d with its own weight: the conv row gets the weight
            max(owned, key=lambda r: r.macs).params += own
            continue
        if name not in counter.executed:
            unexecuted += own
        rows.append(LayerProfile(name=name or "(root)", op=type(module).__name__, op_type="other", output_shape=(),
                                 params=own))  # fmt: skip
    if not unexecuted:
        return []
    return [
        f"{unexecuted:,} parameters sit in modules the forward pass did not run (e.g. auxiliary heads in eval mode); "
        "their rows have an empty output shape; they count in params, not in mult-adds"
    ]


_SHAPE_PRESERVING = (
    *_NORM,
    nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.GELU, nn.LeakyReLU, nn.ELU,
    nn.Mish, nn.PReLU, nn.Hardtanh, nn.Softmax,
    nn.Dropout, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity,
)  # fmt: skip


def _pass_through(module: nn.Module) -> Callable[..., Any]:
    def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return x

    return forward


def profile_module(model: nn.Module, example: torch.Tensor, *, name: str | None = None) -> ProfileReport:
    """Profile ``model`` on one input tensor (any device, meta included) with one forward pass."""
    counter = _Counter(model)
    # On meta only shapes matter, and torch's meta kernels for normalization are slow Python decompositions: layers
    # whose output has the input's shape return the input (their hooks still count them from the shapes).
    patched = [m for m in model.modules() if isinstance(m, _SHAPE_PRESERVING)] if example.is_meta else []
    for module in patched:
        module.forward = _pass_through(module)  # type: ignore[method-assign]
    try:
        with torch.no_grad(), counter:
            model(example)
    finally:
        counter.remove()
        for module in patched:
            del module.forward
    rows = counter.rows
    notes = _attribute_params(model, counter, rows)
    for op, count in sorted(counter.uncounted.items()):
        notes.append(f"{count} call(s) of torch.{op} not counted (no mult-add rule for it)")
    total_params = sum(p.numel() for p in model.parameters())
    listed = sum(r.params for r in rows)
    if listed != total_params:  # shared Parameter objects: named_modules sees each once, parameters() dedups
        notes.append(f"layer rows list {listed:,} parameters, the model holds {total_params:,} (shared tensors)")
    return ProfileReport(
        model=name or type(model).__name__,
        input_shape=tuple(example.shape),
        layers=rows,
        params=total_params,
        source="pytorch",
        notes=notes,
    )


def _input_shape(
    input_size: int | tuple[int, ...] | None, default: tuple[int, ...] | None, batch: int, what: str
) -> tuple[int, ...]:
    if batch < 1:
        raise InvalidArgumentError(f"batch {batch} is not valid; use a positive batch size such as 1")
    if input_size is None:
        if default is None:
            raise InvalidArgumentError(f"profiling {what} needs input_size, e.g. input_size=(3, 224, 224)")
        return (batch, *default)
    size = (input_size,) if isinstance(input_size, int) else tuple(int(s) for s in input_size)
    if len(size) == 1:
        size = size * 2
    clip = default is not None and len(default) == 4  # (C, T, H, W): a video clip model
    if len(size) == 2:  # H, W: channels (and a clip's frames) from the model's default input
        size = (*(default[:-2] if default else (3,)), *size)
    if len(size) != (4 if clip else 3) or min(size) < 1:
        shapes = "H, (H, W) or (C, T, H, W) for a clip model" if clip else "H, (H, W) or (C, H, W)"
        raise InvalidArgumentError(f"input_size {input_size!r} is not valid; use {shapes}")
    return (batch, *size)


FAST_RCNN_ROIS = 2000  # Fast R-CNN's test time: about 2000 selective-search proposals per image (Girshick 2015, 4.)


class _WithRoIs(nn.Module):
    """Fast R-CNN with ``rois`` fixed RoIs (their places do not change the count)."""

    def __init__(self, model: nn.Module, rois: int) -> None:
        super().__init__()
        self.model = model
        self.rois = rois

    def forward(self, image: torch.Tensor) -> Any:
        height, width = image.shape[-2:]
        corners = torch.rand(self.rois, 2, generator=torch.Generator().manual_seed(0)) * torch.tensor([width, height])
        return self.model(image, torch.cat((corners, corners + 32), dim=1))


def _profile_detector(name: str, output: str, shape: tuple[int, ...], model_kwargs: dict[str, Any]) -> ProfileReport:
    """A detector's count by the convention of its paper: at one input size, with the RoI heads run once per proposal
    for a fixed number of proposals (the detector's own test-time count; Fast R-CNN: ``FAST_RCNN_ROIS``), through
    the fixed-shape form (``edgeconv.fixed_detector``), which runs exactly that many. Built on the CPU (the RPN's NMS
    needs values); layer names are the detector's own."""
    from edgeconv.zoo import create_model

    model = create_model(name, **model_kwargs)
    if output == "roi_detections":
        module: nn.Module = _WithRoIs(model, FAST_RCNN_ROIS)
        prefix, note = "model.", f"{FAST_RCNN_ROIS} RoIs: fc6, fc7 and the two heads counted once per RoI"
    else:
        from edgeconv.fixed_detector import FixedSizeDetector

        module = FixedSizeDetector(model, (shape[-2], shape[-1]))
        proposals = model.rpn.post_nms_top_n()  # type: ignore[operator]
        resized = "x".join(map(str, module.resized))  # type: ignore[arg-type]
        prefix = "detector."
        note = (
            f"resized inside to {resized}; {proposals} proposals (the detector's test-time count): the RoI heads "
            "counted once per proposal; RPN and detection NMS, RoI pooling and box decoding have no mult-adds"
        )
    report = profile_module(module, torch.zeros(shape), name=name)
    for i, row in enumerate(report.layers):
        report.layers[i] = dataclasses.replace(row, name=row.name.removeprefix(prefix))
    report.notes.insert(0, note)
    return report


def profile_model(
    model_or_name: nn.Module | str,
    input_size: int | tuple[int, ...] | None = None,
    batch: int = 1,
    **model_kwargs: Any,
) -> ProfileReport:
    """Count params, mult-adds, other ops and memory per layer of a zoo model (by name) or of any ``nn.Module``.

    ``input_size``: H, (H, W) or (C, H, W) for a zoo model, (C, T, H, W) for a clip model (H and (H, W) keep its
    channels and frames); ``None``: the spec's default input. For a module, the
    shape of one sample as a tuple (``(3, 224, 224)``, ``(20,)``) or H for a 3-channel HxH image.
    ``model_kwargs`` go to the zoo builder (``width_mult``, ``num_classes`` ...).
    A zoo model is built and run on the meta device (shapes only); a
    module you pass is run as it is, on its own device, once, under ``torch.no_grad()``.
    """
    if isinstance(model_or_name, nn.Module):
        if model_kwargs:
            raise InvalidArgumentError(f"model kwargs {sorted(model_kwargs)} only apply to zoo names, not to a module")
        if isinstance(input_size, (tuple, list)):  # a module's sample shape is taken as given: (C, H, W), (features,)
            if batch < 1 or not input_size or min(input_size) < 1:
                raise InvalidArgumentError(f"input_size {input_size!r} / batch {batch} are not valid")
            shape = (batch, *(int(s) for s in input_size))
        else:
            shape = _input_shape(input_size, None, batch, type(model_or_name).__name__)
        try:
            device = next(model_or_name.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
        return profile_module(model_or_name, torch.zeros(shape, device=device))

    from edgeconv.zoo import create_model, get_spec

    spec = get_spec(model_or_name)
    shape = _input_shape(input_size, spec.input_size, batch, model_or_name)
    if spec.is_detector:
        if batch != 1:
            raise InvalidArgumentError(f"a detector takes one image at a time; drop batch={batch}")
        return _profile_detector(model_or_name, spec.output, shape, model_kwargs)
    # Cheapest first: build and run on meta (no init, no arithmetic); a builder that needs real tensors (e.g.
    # ``torch.linspace(...).tolist()`` for drop-path rates) is built on CPU and moved to meta; a forward that needs data
    # runs once on CPU.
    model: nn.Module | None = None
    try:
        with torch.device("meta"):
            model = create_model(model_or_name, **model_kwargs)
    except EdgeconvError:
        raise
    except (NotImplementedError, RuntimeError, TypeError, ValueError) as exc:
        logger.debug("building %s on the meta device failed (%s); building on CPU", model_or_name, exc)
    if model is None:
        model = create_model(model_or_name, **model_kwargs).to("meta")
    try:
        return profile_module(model, torch.empty(shape, device="meta"), name=model_or_name)
    except EdgeconvError:
        raise
    except (NotImplementedError, RuntimeError, TypeError, ValueError) as exc:
        logger.debug("meta-device forward of %s failed (%s); running one CPU forward", model_or_name, exc)
    model = create_model(model_or_name, **model_kwargs)
    try:
        return profile_module(model, torch.zeros(shape), name=model_or_name)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"{model_or_name} cannot run on input {'x'.join(map(str, shape))}: {first}; "
            f"its default input is {'x'.join(map(str, spec.input_size))}"
        ) from None
