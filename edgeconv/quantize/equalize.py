"""Data-free quantization helpers in PyTorch (Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization
and Bias Correction"), applied to a BatchNorm-folded model before ONNX export.

Cross-layer equalization (CLE). For ``conv2(act(conv1(x)))`` with ``act`` positively homogeneous (ReLU:
``relu(x / s) = relu(x) / s`` for ``s > 0``), dividing output channel ``i`` of ``conv1`` (weights and bias) by ``s_i``
and multiplying input channel ``i`` of ``conv2`` by ``s_i`` leaves the function unchanged. ``s_i = sqrt(r1_i * r2_i) /
r2_i`` (``r`` = per-channel max |w|) makes both ranges ``sqrt(r1_i * r2_i)``: depthwise filters with tiny ranges stop
wasting the int8 grid, and the activation channels between the two convs get more uniform ranges, which per-tensor
activation quantization needs.

ReLU6 is not positively homogeneous: ``relu6(x / s) != relu6(x) / s`` (the clip point moves to ``6 / s_i`` per
channel). Pairs joined by ReLU6 are skipped by default (``relu6="skip"``), which keeps the float function exact.
``relu6="relu"`` is the paper's own choice (replace ReLU6 by ReLU, then equalize): it changes the float function
wherever activations exceed 6, so it is measured, not assumed.

Bias correction. Quantizing weights ``W -> W_q`` shifts the expected output by ``E[(W_q - W) x]``; subtracting it from
the bias removes the systematic part of the error. The expectation is taken empirically, over the calibration data's
inputs to each layer (the paper's "empirical bias correction"), including padding and border effects.

Residual-stream equalization. ``equalize_model`` cannot touch a residual stream: ``t1 = t0 + proj(...)`` ties the
channel scale of ``t0`` and ``proj``'s output to every other block of the stage. But if *every* producer of the
stream's tensors is a conv (linear: scale its output channel ``c`` by ``1 / s_c``) and every consumer other than the
adds is a dense conv or linear layer (scale its input channel ``c`` by ``s_c``), dividing channel ``c`` of the whole
stream by ``s_c`` leaves the function unchanged. MobileNetV2's late streams mix channels of range +-30 with channels of
range +-1; ``s_c = (r_c / geomean(r)) ** 0.5`` (half way, as SmoothQuant migrates activation range into weights)
evens them out for per-tensor uint8: all-INT8 top-1 agreement on 300 held-out crops 76.3% -> 81.0%, mean KL
0.184 -> 0.107 (bench/results/int8.md).

Activation centring (``center_unsigned_activations``, tensorrt target). A symmetric int8 grid spends half its levels
on negative values a ReLU6 output never takes; shifting the tensor by half its range and moving the shift into the
biases around it (exact in float) gives it the whole grid.

Shared activations (``split_shared_activations``). All of the above find their pairs by module name, so one ReLU
module called at several places (ResNet's ``self.relu``, two or three calls per block) joined no pair: ResNets got
neither CLE nor centring. Giving each call site its own copy (exact: a stateless activation) fixes that: resnet18 8
pairs, resnet50 32, where there were none.

Identity-tap split (``split_identity_taps``, RepVGG). Re-parameterization adds a block's identity branch to its 3x3
kernel as one large centre tap per channel (``gamma / sigma`` of the identity BN), so each output channel's int8 range
is set by that single weight: repvgg_a0's fused kernels keep 25 dB weight SQNR against 40 dB without the identity
term. ``K = K' + D`` with ``D`` the part of the diagonal centre taps beyond the rest of each channel's range, computed
as ``conv(x, K') + d * x`` (a depthwise 1x1 conv, one weight per channel, exact in int8): the function is unchanged
and ``K'`` gets the range of the 3x3 and 1x1 branches alone.
"""

from __future__ import annotations

import copy
import logging
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import fx, nn

logger = logging.getLogger(__name__)

_HOMOGENEOUS = (nn.ReLU, nn.LeakyReLU, nn.PReLU)  # positively homogeneous: f(x / s) = f(x) / s for s > 0
_RELU6 = (nn.ReLU6,)
_PASS = (nn.Identity, nn.Dropout)


@dataclass
class EqualizationReport:
    """Pairs equalized ``(conv1, conv2)`` and pairs skipped with the reason."""

    equalized: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    relu6_replaced: list[str] = field(default_factory=list)


def _leaf_sequence(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    """Leaves of a plain ``nn.Sequential`` in execution order, expanding nested plain Sequentials."""
    out: list[tuple[str, nn.Module]] = []
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        if isinstance(child, nn.Sequential) and type(child).forward is nn.Sequential.forward:
            out.extend(_leaf_sequence(child, full + "."))
        else:
            out.append((full, child))
    return out


def _pairs_from_sequentials(model: nn.Module) -> list[tuple[str, str, str]]:
    """(conv1, act, conv2) triples that a plain ``nn.Sequential`` chains directly."""
    triples: list[tuple[str, str, str]] = []
    for name, module in model.named_modules():
        if not (isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward):
            continue
        leaves = [(n, m) for n, m in _leaf_sequence(module, f"{name}." if name else "") if not isinstance(m, _PASS)]
        for (n1, m1), (na, ma), (n2, m2) in zip(leaves, leaves[1:], leaves[2:], strict=False):
            if isinstance(m1, nn.Conv2d) and isinstance(ma, (*_HOMOGENEOUS, *_RELU6)) and isinstance(m2, nn.Conv2d):
                triples.append((n1, na, n2))
    return triples


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, (nn.Conv2d, *_HOMOGENEOUS, *_RELU6)) or super().is_leaf_module(m, module_qualified_name)


def _pairs_from_fx(model: nn.Module) -> list[tuple[str, str, str]] | None:
    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # fx raises many types for untraceable forward code
        logger.debug("fx cannot trace %s (%s); using nn.Sequential chains only", type(model).__name__, exc)
        return None
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1

    def module_of(node: fx.Node) -> nn.Module | None:
        return model.get_submodule(str(node.target)) if node.op == "call_module" else None

    def sole_user(node: fx.Node) -> fx.Node | None:
        """The one node reading ``node``, looking through pass-through modules (a folded BatchNorm left as an
        ``nn.Identity`` in a forward that calls it: ResNet's ``self.bn1``); None when it has several readers."""
        while len(node.users) == 1:
            user = next(iter(node.users))
            if not isinstance(module_of(user), _PASS):
                return user
            if len(user.args) != 1 or user.kwargs:
                return None
            node = user
        return None

    triples = []
    for node in graph.nodes:
        if not isinstance(module_of(node), nn.Conv2d) or calls[str(node.target)] != 1:
            continue
        act = sole_user(node)
        if act is None or not isinstance(module_of(act), (*_HOMOGENEOUS, *_RELU6)) or calls[str(act.target)] != 1:
            continue
        nxt = sole_user(act)
        if nxt is None or not isinstance(module_of(nxt), nn.Conv2d) or calls[str(nxt.target)] != 1:
            continue
        if len(nxt.args) == 1 and not nxt.kwargs:
            triples.append((str(node.target), str(act.target), str(nxt.target)))
    return triples


def find_equalization_pairs(model: nn.Module) -> list[tuple[str, str, str]]:
    """(conv1, activation, conv2) module-name triples where conv1's output reaches only conv2 through the activation."""
    triples = _pairs_from_fx(model)
    if triples is None:
        triples = _pairs_from_sequentials(model)
    return sorted(set(triples), key=lambda t: list(dict(model.named_modules())).index(t[0]))


def _free_activation(module: nn.Module) -> bool:
    """A stateless element-wise activation of ``torch.nn`` (ReLU, ReLU6, Hardtanh, SiLU ...): copies of it are
    interchangeable, and a copy adds nothing to the ``state_dict``."""
    return (
        type(module).__module__ == "torch.nn.modules.activation"
        and next(module.parameters(), None) is None
        and next(module.buffers(), None) is None
    )


class _OwnForwardTracer(fx.Tracer):
    """Traces one module's own ``forward``: every submodule is a leaf, so the graph calls children, never inlines."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True


def _caller(node: fx.Node) -> str:
    """Name of the module whose ``forward`` holds the call_module ``node`` ("" for the root)."""
    stack = list(node.meta.get("nn_module_stack", {}).values())
    return str(stack[-2][0]) if len(stack) >= 2 else ""


def _split_in_owner(model: nn.Module, owner_name: str) -> list[str]:
    """Give every free activation that ``owner_name``'s own forward calls more than once a copy per extra call site:
    ``<attr>_1``, ``<attr>_2`` ... registered on the owner, whose class becomes a subclass with the rewritten forward.
    Returns the new modules' qualified names; [] when the owner's forward cannot be traced or rewritten exactly."""
    owner = model.get_submodule(owner_name) if owner_name else model
    try:
        graph = _OwnForwardTracer().trace(owner)
    except Exception as exc:  # fx raises many types for untraceable forward code
        logger.debug("cannot trace %s's own forward (%s); its shared activations stay shared", owner_name, exc)
        return []
    sites: dict[str, list[fx.Node]] = {}
    for node in graph.nodes:
        if node.op == "call_module" and _free_activation(owner.get_submodule(str(node.target))):
            sites.setdefault(str(node.target), []).append(node)
    shared = {target: nodes for target, nodes in sites.items() if len(nodes) > 1}
    if not shared:
        return []
    # The rewritten forward runs with the owner as ``self``: every attribute it reads must be the owner's own (fx
    # keeps non-parameter tensor constants on the GraphModule only).
    for node in graph.nodes:
        if node.op == "get_attr":
            try:
                _get_attr(owner, str(node.target))
            except AttributeError:
                logger.debug("%s's forward reads a constant fx cannot keep; its shared activations stay", owner_name)
                return []
    added: list[tuple[str, nn.Module]] = []
    taken = set(dict(owner.named_children())) | set(vars(owner)) | set(dir(type(owner)))
    for target, nodes in shared.items():
        module = owner.get_submodule(target)
        stem = target.replace(".", "_")
        k = 0
        for node in nodes[1:]:
            k += 1
            while f"{stem}_{k}" in taken:
                k += 1
            name = f"{stem}_{k}"
            taken.add(name)
            added.append((name, copy.deepcopy(module)))
            node.target = name
    for name, module in added:
        owner.add_module(name, module)
    graph.lint()
    forward = type(fx.GraphModule(owner, graph)).forward  # the generated code reads ``self.<attr>`` at each call
    cls = type(owner)
    namespace = {"forward": forward, "__module__": cls.__module__, "__qualname__": cls.__qualname__}
    owner.__class__ = type(cls.__name__, (cls,), namespace)
    prefix = f"{owner_name}." if owner_name else ""
    return [prefix + name for name, _ in added]


def _get_attr(module: nn.Module, target: str) -> object:
    for atom in target.split("."):
        module = getattr(module, atom)
    return module


def split_shared_activations(model: nn.Module) -> list[str]:
    """Give every call site of a shared stateless activation its own module, in place, so that the passes keyed on
    module names (``equalize_model``, ``center_unsigned_activations``) can act on each site; returns the names of the
    modules added (``<activation>_1``, ``<activation>_2`` ... beside the original).

    ResNet's blocks call one ``self.relu`` two or three times: one module at several places is never between exactly
    one pair of convs, so ResNets got no cross-layer equalization and no centring. Two kinds of sharing are undone:
    one module registered under several names (each extra name gets a copy), and one module called several times by
    its owner's ``forward`` (found with fx, with this module's leaf rules). The owner keeps its attributes and its
    ``state_dict`` (activations hold no parameters); its class becomes a subclass whose ``forward`` is the traced
    one with each extra call site renamed -- the same operations in the same order, so the output is unchanged to the
    bit. Like any fx trace, that forward keeps the Python branches taken while tracing (an eval-mode model stays
    correct in eval mode). Owners whose forward fx cannot trace keep their shared module. Call it on the BN-folded
    model right before ``equalize_model``; a second call finds nothing to do.
    """
    added: list[str] = []
    modules: set[int] = set()
    slots: set[tuple[int, str]] = set()  # (parent, attribute): one slot reached through a shared block counts once
    for name, module in list(model.named_modules(remove_duplicate=False)):
        if not name or not _free_activation(module):
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if (id(parent), attr) in slots:
            continue
        slots.add((id(parent), attr))
        if id(module) in modules:  # a second name for one module: give it its own
            setattr(parent, attr, copy.deepcopy(module))
            added.append(name)
        modules.add(id(module))
    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # fx raises many types for untraceable forward code
        logger.debug("fx cannot trace %s (%s); shared activations stay shared", type(model).__name__, exc)
        return added
    calls: dict[str, list[fx.Node]] = {}
    for node in graph.nodes:
        if node.op == "call_module" and _free_activation(model.get_submodule(str(node.target))):
            calls.setdefault(str(node.target), []).append(node)
    owners = dict.fromkeys(_caller(n) for nodes in calls.values() if len(nodes) > 1 for n in nodes)
    for owner in sorted(owners, key=lambda n: (-n.count("."), n)):  # innermost first: a rewrite renames nothing above
        added.extend(_split_in_owner(model, owner))
    if added:
        logger.info("gave %d shared activation call sites their own module", len(added))
    return added


_ADDS = (operator.add, operator.iadd, torch.add)


def _is_add(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target in _ADDS) or (node.op == "call_method" and node.target == "add")


@dataclass
class _Stream:
    """Tensors tied to one channel scale by residual adds, with the convs that write and read them."""

    tensors: list[fx.Node]
    producers: list[str]  # Conv2d modules whose output channels carry the stream
    consumers: list[str]  # dense Conv2d / Linear modules reading it (input channels)


class _StreamTracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, (nn.Conv2d, nn.Linear)) or super().is_leaf_module(m, module_qualified_name)


def find_residual_streams(model: nn.Module) -> tuple[fx.GraphModule, list[_Stream]] | None:
    """Residual streams of ``model`` that can be rescaled per channel exactly (see the module docstring); ``None``
    when fx cannot trace the model."""
    try:
        graph = _StreamTracer().trace(model)
    except Exception as exc:  # fx raises many types for untraceable forward code
        logger.debug("fx cannot trace %s (%s); no residual-stream equalization", type(model).__name__, exc)
        return None
    module = fx.GraphModule(model, graph)
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    parent: dict[fx.Node, fx.Node] = {}

    def root(node: fx.Node) -> fx.Node:
        while parent.get(node, node) is not node:
            node = parent[node]
        return node

    for node in graph.nodes:
        if _is_add(node) and len(node.args) == 2 and all(isinstance(a, fx.Node) for a in node.args):
            for arg in node.args:
                parent[root(arg)] = root(node)  # type: ignore[arg-type]
    groups: dict[fx.Node, list[fx.Node]] = {}
    for node in graph.nodes:  # graph order, roots (the last add of a chain) included
        if node in parent or node in parent.values():
            groups.setdefault(root(node), []).append(node)
    streams = []
    for tensors in groups.values():
        members = set(tensors)
        producers: list[str] = []
        consumers: list[str] = []
        valid = True
        for tensor in tensors:
            if _is_add(tensor):
                pass
            elif tensor.op == "call_module" and isinstance(model.get_submodule(str(tensor.target)), nn.Conv2d):
                producers.append(str(tensor.target))
            else:
                valid = False  # the network input, an activation, pooling ...: not rescalable
            for user in tensor.users:
                if user in members and _is_add(user):
                    continue
                target = model.get_submodule(str(user.target)) if user.op == "call_module" else None
                dense = isinstance(target, nn.Linear) or (isinstance(target, nn.Conv2d) and target.groups == 1)
                if dense and len(user.args) == 1 and user.args[0] is tensor:
                    consumers.append(str(user.target))
                else:
                    valid = False
        names = producers + consumers
        if valid and producers and consumers and all(calls[n] == 1 for n in names) and len(set(names)) == len(names):
            streams.append(_Stream(tensors, producers, consumers))
    return module, streams


@torch.no_grad()
def equalize_residual_streams(model: nn.Module, samples: Iterable[torch.Tensor], alpha: float = 0.5) -> list[str]:
    """Rescale every exactly-rescalable residual stream of ``model`` in place so that its channels' ranges move
    ``alpha`` of the way (in log scale) to their geometric mean; returns the streams' producer names."""
    found = find_residual_streams(model)
    if found is None:
        return []
    module, streams = found
    if not streams:
        return []
    watched = {tensor: stream for stream in streams for tensor in stream.tensors}
    ranges: dict[int, torch.Tensor] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node) -> object:
            out = super().run_node(n)
            if n in watched and isinstance(out, torch.Tensor) and out.dim() >= 2:
                channel_max = out.detach().abs().transpose(0, 1).reshape(out.shape[1], -1).amax(dim=1)
                key = id(watched[n])
                ranges[key] = channel_max if key not in ranges else torch.maximum(ranges[key], channel_max)
            return out

    recorder = Recorder(module)
    for batch in samples:
        recorder.run(batch)
    done = []
    for stream in streams:
        r = ranges.get(id(stream))
        if r is None:
            continue
        r = r.clamp_min(r.max() * 1e-6 + 1e-12)
        scale = (r / r.log().mean().exp()) ** alpha
        for name in stream.producers:
            conv = model.get_submodule(name)
            assert isinstance(conv, nn.Conv2d)
            conv.weight.div_(scale.view(-1, 1, 1, 1))
            if conv.bias is not None:
                conv.bias.div_(scale)
        for name in stream.consumers:
            layer = model.get_submodule(name)
            assert isinstance(layer, (nn.Conv2d, nn.Linear))
            layer.weight.mul_(scale.view(1, -1, 1, 1) if isinstance(layer, nn.Conv2d) else scale.view(1, -1))
        done.append(",".join(stream.producers))
    logger.info("residual-stream equalization: %d streams", len(done))
    return done


def _observe(
    model: nn.Module,
    samples: Iterable[torch.Tensor],
    modules: Mapping[str, nn.Module],
    record: Callable[[str, torch.Tensor], None],
) -> None:
    """Run ``samples`` through ``model``, calling ``record(name, output)`` on every output of ``modules[name]``."""
    handles = [
        module.register_forward_hook(lambda _module, _inputs, output, name=name: record(name, output))
        for name, module in modules.items()
    ]
    try:
        for batch in samples:
            model(batch)
    finally:
        for handle in handles:
            handle.remove()


class ShiftedClip(nn.Module):
    """``clamp(x, low, high)``: a ReLU / ReLU6 whose output was shifted down by ``shift`` (exports as ONNX Clip)."""

    def __init__(self, low: float, high: float | None) -> None:
        super().__init__()
        self.low, self.high = low, high

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, min=self.low, max=self.high)


class PaddedConv2d(nn.Conv2d):
    """A conv whose zero padding became an explicit constant ``pad_value`` (exports as ONNX Pad + Conv): the reader of
    a centred activation, whose padding zeros are ``-shift`` in the shifted domain."""

    def __init__(self, conv: nn.Conv2d, pad_value: float) -> None:
        super().__init__(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            0,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
            dtype=conv.weight.dtype,
        )
        ph, pw = conv.padding  # type: ignore[misc]  # int pairs only: _explicit_padding checked
        self.pads, self.pad_value = (pw, pw, ph, ph), pad_value
        self.load_state_dict(conv.state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(nn.functional.pad(x, self.pads, value=self.pad_value))


def _explicit_padding(conv: nn.Conv2d) -> bool | None:
    """True when ``conv`` pads with zeros by an int amount, False when it does not pad, None when it pads otherwise."""
    if type(conv) is not nn.Conv2d:  # PaddedConv2d, or a subclass padding its own way (Conv2dSame)
        return False if conv.kernel_size == (1, 1) and conv.padding in ((0, 0), "valid") else None  # 1x1: no 'same' pad
    if isinstance(conv.padding, str):
        return False if conv.padding == "valid" else None
    if not any(conv.padding):
        return False
    return True if conv.padding_mode == "zeros" else None


@torch.no_grad()
def center_unsigned_activations(
    model: nn.Module, samples: Iterable[torch.Tensor], percentile: float = 99.999
) -> dict[str, float]:
    """Shift every ReLU / ReLU6 output between two convs down by half its range, in place, so that a symmetric int8
    grid uses all of its levels on it; returns ``{activation name: shift}``.

    TensorRT's INT8 is symmetric with zero point 0: a ReLU6 output in ``[0, a]`` gets scale ``a / 127`` and leaves
    the 128 negative levels unused. With ``c = a / 2``: ``conv1``'s bias ``-= c`` and the activation becomes
    ``clamp(x, -c, 6 - c)`` (still one fused Conv + Clip), the tensor spans ``[-c, c]`` (scale ``a / 254``), and
    ``conv2``'s bias ``+= c * sum(W)`` over each output channel's inputs restores the function exactly. A conv2 that
    pads with zeros becomes a ``PaddedConv2d`` padding with ``-c`` (the zeros of the unshifted domain), which keeps it
    exact too. ``a`` is the activation's ``percentile`` over ``samples``, the range the percentile calibrator gives the
    unshifted tensor; quantize it with the range ``[-c, c]`` exactly (``qdq.offsets.centred_ranges``), so that the
    ReLU's zeros, most of the tensor, land on the grid point ``-127`` and not half a step beside it.
    """
    triples = []
    for n1, na, n2 in find_equalization_pairs(model):
        conv1, act, conv2 = model.get_submodule(n1), model.get_submodule(na), model.get_submodule(n2)
        if not (isinstance(conv1, nn.Conv2d) and isinstance(conv2, nn.Conv2d) and isinstance(act, (nn.ReLU, nn.ReLU6))):
            continue
        if _explicit_padding(conv2) is None:
            continue
        triples.append((conv1, na, act, n2, conv2))
    if not triples:
        return {}
    tops: dict[str, list[torch.Tensor]] = {na: [] for _, na, _, _, _ in triples}
    counts = dict.fromkeys(tops, 0)
    keep = 1 - percentile / 100

    def record(name: str, output: torch.Tensor) -> None:
        flat = output.detach().flatten()
        counts[name] += flat.numel()
        tops[name].append(flat.topk(min(flat.numel(), int(flat.numel() * keep) + 1)).values)

    _observe(model, samples, {na: act for _, na, act, _, _ in triples}, record)
    done, padded = {}, []
    for conv1, na, act, n2, conv2 in triples:
        if not counts[na]:
            continue
        values = torch.cat(tops[na]).sort(descending=True).values
        top = float(values[min(len(values) - 1, int(counts[na] * keep))])
        if top <= 0:
            continue
        shift = top / 2
        _bias(conv1).sub_(shift)
        _bias(conv2).add_(shift * conv2.weight.double().sum(dim=(1, 2, 3)).to(conv2.weight.dtype))
        high = None if isinstance(act, nn.ReLU) else 6.0 - shift
        _set_module(model, na, ShiftedClip(-shift, high))
        if _explicit_padding(conv2):
            padded.append((n2, conv2, -shift))
        done[na] = shift
    for n2, conv2, value in padded:  # last: conv2 may be the next triple's conv1, whose bias moves too
        _set_module(model, n2, PaddedConv2d(conv2, value))
    logger.info("centered %d unsigned activations for a symmetric int8 grid", len(done))
    return done


class ChannelClip(nn.Module):
    """``min(relu(x), upper[c])``: a ReLU6 whose channel ``c`` was multiplied by ``k_c`` (its clip point moved to
    ``6 k_c``); exports as ONNX Relu + Min (``equalize_depthwise_inputs``)."""

    def __init__(self, upper: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("upper", upper.reshape(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.relu(x), self.upper)


# (cap on k_c, headroom h): the policies ``equalize_depthwise_inputs`` chooses from per layer, (1, 1) = unchanged.
DEPTHWISE_POLICIES = ((1.0, 1.0),) + tuple((cap, h) for cap in (2.0, 4.0, 8.0, 16.0, 32.0, 100.0) for h in (1.0, 2.0))


def _depthwise_scales(r: torch.Tensor, cap: float, headroom: float) -> torch.Tensor:
    """``k_c = R / (h r_c)`` in ``[1, cap]``, ``R = max r_c``: channel ``c``'s range ``r_c`` stretched towards ``R``."""
    top = r.max()
    return (top / (headroom * r.clamp_min(float(top) / (cap * headroom)))).clamp(1.0, cap)


@torch.no_grad()
def equalize_depthwise_inputs(
    model: nn.Module,
    samples: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    policy: tuple[float, float] = (100.0, 1.0),
    batch_size: int = 16,
) -> dict[str, float]:
    """Give the channels of a depthwise conv's ReLU6 input closer ranges, in place, so that one activation scale per
    tensor quantizes them as finely as one scale per channel would; returns ``{activation name: largest k_c}``.

    MobileNet's expansion conv -> ReLU6 -> depthwise conv pairs carry channels whose calibration maximum ``r_c`` runs
    from 6 (saturated) down to a few hundredths, and a per-tensor uint8 grid of step ``6 / 255`` gives the small ones a
    handful of levels. NNCF quantizes these inputs per channel (ORT's integer kernels cannot run that: its graph is
    2x slower than FP32); scaling instead gives each channel more of the grid at per-tensor cost: ``k_c = R / (h r_c)``
    (``R = max r_c``, ``k_c`` in ``[1, cap]``) multiplies output channel ``c`` of ``conv1`` (weights and bias), divides
    depthwise filter ``c`` of ``conv2``, and the ReLU6 becomes ``ChannelClip(6 k_c)``: exact in float. Both convs'
    weights are quantized per output channel, so their grids do not change. ``merge_channel_clips`` then turns the
    exported Relu + Min into one per-tensor ``Clip(0, min 6 k_c)`` for ORT's fused Conv + Clip kernel.

    The cost: channel ``c`` then saturates at ``R / k_c`` of its old units, which clips a channel that other photos
    excite more than the calibration ones did (efficientnet_lite0 lost 3.9 points of agreement with ``cap=100, h=1``
    on every layer). So with ``groups`` (the source photo of each sample) each layer gets its own ``(cap, h)`` from
    ``DEPTHWISE_POLICIES``: the one whose squared error at the depthwise conv's output (rounding ``step^2 / 12`` on
    the values inside the range, the excess on those above it, per channel times its filter's squared norm) is lowest
    when each photo is quantized with the ranges of the others (leave one photo out). Without ``groups``, ``policy``
    applies to every layer.
    """
    pairs: list[tuple[nn.Conv2d, str, nn.Module, nn.Conv2d]] = []
    for n1, na, n2 in find_equalization_pairs(model):
        conv1, act, conv2 = model.get_submodule(n1), model.get_submodule(na), model.get_submodule(n2)
        if not (isinstance(conv1, nn.Conv2d) and isinstance(act, _RELU6) and isinstance(conv2, nn.Conv2d)):
            continue
        if conv2.groups == conv2.in_channels == conv2.out_channels > 1 and _compatible(conv1, conv2) is None:
            pairs.append((conv1, na, act, conv2))
    if not pairs:
        return {}
    acts = {na: act for _, na, act, _ in pairs}
    labels = np.zeros(len(samples), dtype=np.int64) if groups is None else np.asarray(groups)
    ranges: dict[object, dict[str, torch.Tensor]] = {g: {} for g in sorted(set(labels.tolist()))}  # photo -> act -> max

    for g in ranges:

        def record(name: str, output: torch.Tensor, seen: dict[str, torch.Tensor] = ranges[g]) -> None:
            top = output.detach().transpose(0, 1).flatten(1).amax(1).double()
            seen[name] = top if name not in seen else torch.maximum(seen[name], top)

        _observe(model, batches(samples[labels == g], batch_size), acts, record)

    chosen = {na: policy for na in acts}
    if groups is not None and len(ranges) > 1:
        chosen = _choose_depthwise_policies(model, samples, labels, pairs, ranges, batch_size)
    done = {}
    for conv1, na, _, conv2 in pairs:
        r = _range_over(ranges, na)
        if r is None or float(r.max()) <= 0 or chosen[na] == (1.0, 1.0):
            continue
        k = _depthwise_scales(r, *chosen[na])
        conv1.weight.copy_((conv1.weight.double() * k.reshape(-1, 1, 1, 1)).to(conv1.weight.dtype))
        if conv1.bias is not None:
            conv1.bias.copy_((conv1.bias.double() * k).to(conv1.bias.dtype))
        conv2.weight.copy_((conv2.weight.double() / k.reshape(-1, 1, 1, 1)).to(conv2.weight.dtype))
        _set_module(model, na, ChannelClip((6.0 * k).to(conv1.weight.dtype)))
        done[na] = float(k.max())
    logger.info(
        "equalized the ReLU6 inputs of %d of %d depthwise convs (cap, headroom): %s",
        len(done),
        len(pairs),
        ", ".join(f"{na} {chosen[na]}" for na in done),
    )
    return done


def _range_over(
    ranges: Mapping[object, Mapping[str, torch.Tensor]], name: str, without: object = None
) -> torch.Tensor | None:
    """Per-channel maximum of activation ``name`` over every photo of ``ranges`` (photo -> name -> maxima) but
    ``without``."""
    seen = [per_photo[name] for photo, per_photo in ranges.items() if photo != without and name in per_photo]
    return torch.stack(seen).amax(0) if seen else None


def _choose_depthwise_policies(
    model: nn.Module,
    samples: np.ndarray,
    labels: np.ndarray,
    pairs: list[tuple[nn.Conv2d, str, nn.Module, nn.Conv2d]],
    ranges: Mapping[object, Mapping[str, torch.Tensor]],
    batch_size: int,
) -> dict[str, tuple[float, float]]:
    """Each pair's ``DEPTHWISE_POLICIES`` entry of least leave-one-photo-out error (``equalize_depthwise_inputs``)."""
    acts = {na: act for _, na, act, _ in pairs}
    errors = {na: torch.zeros(len(DEPTHWISE_POLICIES), dtype=torch.float64) for na in acts}
    norms = {na: conv2.weight.double().flatten(1).square().sum(1) for _, na, _, conv2 in pairs}
    for photo in ranges:
        limits = {}  # activation -> (policies, channels) saturation point and grid step in old units
        for na in acts:
            r = _range_over(ranges, na, without=photo)
            if r is None or float(r.max()) <= 0:
                continue
            scales = torch.stack([_depthwise_scales(r, *p) for p in DEPTHWISE_POLICIES])
            top = float(r.max())
            limits[na] = ((top / scales).float(), (top / (255 * scales)).float())

        def record(name: str, output: torch.Tensor, limits: dict = limits) -> None:
            if name not in limits:
                return
            x = _thinned(output.detach(), 16384)  # (channels, values)
            positive = torch.count_nonzero(x > 0, dim=1)
            for i, (limit, step) in enumerate(zip(*limits[name], strict=True)):
                above = (x - limit[:, None]).clamp_min_(0)
                clipped = torch.count_nonzero(above, dim=1)
                per_channel = above.square_().sum(1).double() + step.double().square() / 12 * (positive - clipped)
                errors[name][i] += float((per_channel * norms[name]).sum())

        _observe(model, batches(samples[labels == photo], batch_size), acts, record)
    return {na: DEPTHWISE_POLICIES[int(errors[na].argmin())] for na in errors}


def _thinned(output: torch.Tensor, values: int) -> torch.Tensor:
    """``output`` (N, C, ...) as (C, N * ...) thinned to every k-th value of each channel (k: about ``values`` left),
    gathered without first copying the whole transposed tensor."""
    n, c = output.shape[:2]
    flat = output.reshape(n, c, -1)
    per_sample = flat.shape[2]
    index = torch.arange(0, n * per_sample, max(1, n * per_sample // values))
    return flat[index // per_sample, :, index % per_sample].t()


class IdentitySplitConv(nn.Module):
    """``conv(x) + identity(x)``: a square stride-1 conv with the outlying part of its diagonal centre taps moved into
    a depthwise 1x1 conv ``identity`` (``split_identity_taps``)."""

    def __init__(self, conv: nn.Conv2d, taps: torch.Tensor) -> None:
        super().__init__()
        self.conv = conv
        self.identity = nn.Conv2d(conv.in_channels, conv.in_channels, 1, groups=conv.in_channels, bias=False)
        self.identity.weight = nn.Parameter(taps.reshape(-1, 1, 1, 1).to(conv.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.identity(x)


@torch.no_grad()
def split_identity_taps(model: nn.Module, min_fraction: float = 0.5) -> list[str]:
    """Split re-parameterized identity branches out of 3x3 kernels, in place; returns the names of the split convs.

    A conv qualifies when it maps C channels to C with stride 1, no groups or dilation, an odd square kernel padded
    to keep the size, and in at least ``min_fraction`` of its channels the diagonal centre tap ``K[c, c, k, k]`` is
    larger than every other weight of channel ``c`` (true of every RepVGG block that had an identity branch, rare by
    chance elsewhere). Each such tap is clipped to the largest other weight of its channel, the excess ``d_c`` moves
    to ``IdentitySplitConv.identity``.
    """
    split = []
    for name, conv in list(model.named_modules()):
        if type(conv) not in (nn.Conv2d, PaddedConv2d):  # other subclasses (timm's Conv2dSame, ...) pad their own way
            continue
        size = conv.kernel_size[0]
        centre = size // 2
        if isinstance(conv, PaddedConv2d):  # a centred input: the padding value does not touch the centre tap
            same = conv.pads == (centre,) * 4
        else:
            same = conv.padding == (centre, centre) and conv.padding_mode == "zeros"
        if (
            conv.in_channels != conv.out_channels
            or conv.groups != 1
            or conv.stride != (1, 1)
            or conv.dilation != (1, 1)
            or conv.kernel_size != (size, size)
            or size % 2 == 0
            or not same
        ):
            continue
        weight = conv.weight
        channels = torch.arange(conv.out_channels)
        taps = weight[channels, channels, centre, centre].clone()
        others = weight.clone()
        others[channels, channels, centre, centre] = 0
        limit = others.abs().amax(dim=(1, 2, 3))
        if (taps.abs() > limit).float().mean() < min_fraction:
            continue
        kept = torch.maximum(torch.minimum(taps, limit), -limit)
        weight[channels, channels, centre, centre] = kept
        _set_module(model, name, IdentitySplitConv(conv, taps - kept))
        split.append(name)
    if split:
        logger.info("split the identity taps out of %d re-parameterized convs", len(split))
    return split


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    if conv.bias is None:
        conv.bias = nn.Parameter(torch.zeros(conv.out_channels, dtype=conv.weight.dtype))
    return conv.bias


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)


def _compatible(conv1: nn.Conv2d, conv2: nn.Conv2d) -> str | None:
    if conv1.out_channels != conv2.in_channels:
        return "channel counts differ"
    if conv2.groups not in (1, conv2.in_channels):
        return f"conv2 has groups={conv2.groups} (only dense and depthwise are handled)"
    if conv1.groups not in (1, conv1.out_channels) or (conv1.groups > 1 and conv1.in_channels != conv1.out_channels):
        return f"conv1 has groups={conv1.groups}"
    return None


@torch.no_grad()
def _equalize_pair(conv1: nn.Conv2d, conv2: nn.Conv2d, max_scale: float) -> None:
    w1 = conv1.weight.double()
    w2 = conv2.weight.double()
    r1 = w1.abs().flatten(1).amax(1)  # per output channel of conv1
    if conv2.groups == 1:
        r2 = w2.abs().transpose(0, 1).flatten(1).amax(1)  # per input channel of conv2
    else:  # depthwise: input channel i is weight row i
        r2 = w2.abs().flatten(1).amax(1)
    scale = torch.sqrt(r1 * r2) / r2
    # Dead channels (zero range) and extreme ratios would blow up one side; leave those channels alone.
    scale = torch.where((r1 > 0) & (r2 > 0), scale, torch.ones_like(scale)).clamp(1 / max_scale, max_scale)
    conv1.weight.copy_((w1 / scale.reshape(-1, 1, 1, 1)).to(conv1.weight.dtype))
    if conv1.bias is not None:
        conv1.bias.copy_((conv1.bias.double() / scale).to(conv1.bias.dtype))
    shape = (1, -1, 1, 1) if conv2.groups == 1 else (-1, 1, 1, 1)
    conv2.weight.copy_((w2 * scale.reshape(shape)).to(conv2.weight.dtype))


def equalize_model(
    model: nn.Module, *, iterations: int = 4, relu6: str = "skip", max_scale: float = 1e3
) -> EqualizationReport:
    """Cross-layer equalization in place on a BN-folded ``model`` (BatchNorm between the convs blocks a pair).

    ``relu6``: ``"skip"`` leaves pairs joined by ReLU6 alone (float function exact); ``"relu"`` replaces those ReLU6 by
    ReLU and equalizes them (the paper's recipe; changes the function where activations exceed 6). Iterated, as the
    paper does, because a conv shared by two pairs (conv2 of one is conv1 of the next) moves again.
    """
    if relu6 not in ("skip", "relu"):
        raise ValueError(f"relu6={relu6!r}; use 'skip' or 'relu'")
    report = EqualizationReport()
    triples = find_equalization_pairs(model)
    usable: list[tuple[nn.Conv2d, nn.Conv2d]] = []
    for n1, na, n2 in triples:
        conv1, act, conv2 = model.get_submodule(n1), model.get_submodule(na), model.get_submodule(n2)
        if not (isinstance(conv1, nn.Conv2d) and isinstance(conv2, nn.Conv2d)):
            continue
        why = _compatible(conv1, conv2)
        if why is None and isinstance(act, _RELU6):
            if relu6 == "skip":
                why = "ReLU6 between (scaling would move its clip point)"
            else:
                _set_module(model, na, nn.ReLU(inplace=False))
                report.relu6_replaced.append(na)
        if why is None and isinstance(act, (nn.PReLU,)):
            why = "PReLU slope is per channel"  # homogeneous, but keep it simple: not needed by the zoo
        if why is not None:
            report.skipped.append((n1, n2, why))
            continue
        usable.append((conv1, conv2))
        report.equalized.append((n1, n2))
    for _ in range(iterations):
        for conv1, conv2 in usable:
            _equalize_pair(conv1, conv2, max_scale)
    logger.info("cross-layer equalization: %d pairs equalized, %d skipped", len(report.equalized), len(report.skipped))
    return report


# --- bias correction ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightQuantScheme:
    """How the runtime will quantize weights: symmetric per-output-channel integers in ``[-qmax, qmax]``."""

    qmax: int = 127
    per_channel: bool = True

    def fake_quantize(self, weight: torch.Tensor) -> torch.Tensor:
        w = weight.double()
        if self.per_channel:
            r = w.abs().flatten(1).amax(1).reshape(-1, *([1] * (w.dim() - 1)))
        else:
            r = w.abs().amax()
        scale = torch.where(r > 0, r / self.qmax, torch.ones_like(r))
        return (torch.clamp(torch.round(w / scale), -self.qmax, self.qmax) * scale).to(weight.dtype)


@torch.no_grad()
def correct_bias(
    model: nn.Module,
    samples: Iterable[torch.Tensor],
    scheme: WeightQuantScheme | None = None,
    *,
    skip: Iterable[str] = (),
    qmax_by_layer: Mapping[str, int] | None = None,
) -> dict[str, float]:
    """Empirical bias correction in place: for every Conv2d / Linear, subtract the mean over the calibration inputs
    (batch and spatial positions) of ``layer(x; W_q) - layer(x; W)``. Returns ``{module: mean |correction|}``.

    The inputs seen by each layer come from the float model, collected in one pass per batch; corrections are applied
    after the pass so they do not feed back into later layers' statistics. ``qmax_by_layer`` overrides the integer
    range per layer (7-bit weights are ``qmax=64``).
    """
    scheme = scheme or WeightQuantScheme()
    skipped = set(skip)
    layers: dict[str, nn.Conv2d | nn.Linear] = {
        n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and n not in skipped
    }
    qmax_by_layer = qmax_by_layer or {}

    def delta(name: str, module: nn.Conv2d | nn.Linear) -> torch.Tensor:
        own = WeightQuantScheme(qmax_by_layer.get(name, scheme.qmax), scheme.per_channel)
        return own.fake_quantize(module.weight) - module.weight

    deltas = {n: delta(n, m) for n, m in layers.items()}
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook_for(name: str):  # noqa: ANN202 -- closure for a forward hook
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            x = inputs[0]
            if isinstance(module, nn.Conv2d):
                err = nn.functional.conv2d(
                    x, deltas[name], None, module.stride, module.padding, module.dilation, module.groups
                )
                total, n = err.double().sum(dim=(0, 2, 3)), err.shape[0] * err.shape[2] * err.shape[3]
            else:
                err = nn.functional.linear(x, deltas[name])
                flat = err.double().reshape(-1, err.shape[-1])
                total, n = flat.sum(0), flat.shape[0]
            sums[name] = sums.get(name, 0) + total
            counts[name] = counts.get(name, 0) + n

        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in layers.items()]
    try:
        for batch in samples:
            model(batch)
    finally:
        for h in handles:
            h.remove()
    applied: dict[str, float] = {}
    for name, module in layers.items():
        if name not in sums:
            continue
        correction = (sums[name] / counts[name]).to(module.weight.dtype)
        if module.bias is None:
            module.bias = nn.Parameter(torch.zeros(module.weight.shape[0], dtype=module.weight.dtype))
        module.bias -= correction
        applied[name] = float(correction.abs().mean())
    logger.info("bias correction applied to %d layers", len(applied))
    return applied


def batches(array: np.ndarray, batch_size: int = 32) -> Iterable[torch.Tensor]:
    for start in range(0, len(array), batch_size):
        yield torch.from_numpy(np.ascontiguousarray(array[start : start + batch_size]))
