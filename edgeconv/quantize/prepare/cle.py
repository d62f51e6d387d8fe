"""Cross-layer equalization in PyTorch (Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization
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
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import fx, nn

from edgeconv.quantize.prepare.common import HOMOGENEOUS, PASS, RELU6, LayerTracer

logger = logging.getLogger(__name__)


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
        leaves = [(n, m) for n, m in _leaf_sequence(module, f"{name}." if name else "") if not isinstance(m, PASS)]
        for (n1, m1), (na, ma), (n2, m2) in zip(leaves, leaves[1:], leaves[2:], strict=False):
            if isinstance(m1, nn.Conv2d) and isinstance(ma, (*HOMOGENEOUS, *RELU6)) and isinstance(m2, nn.Conv2d):
                triples.append((n1, na, n2))
    return triples


def _pairs_from_fx(model: nn.Module) -> list[tuple[str, str, str]] | None:
    try:
        graph = LayerTracer().trace(model)
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
            if not isinstance(module_of(user), PASS):
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
        if act is None or not isinstance(module_of(act), (*HOMOGENEOUS, *RELU6)) or calls[str(act.target)] != 1:
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


def compatible_pair(conv1: nn.Conv2d, conv2: nn.Conv2d) -> str | None:
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
        why = compatible_pair(conv1, conv2)
        if why is None and isinstance(act, RELU6):
            if relu6 == "skip":
                why = "ReLU6 between (scaling would move its clip point)"
            else:
                model.set_submodule(na, nn.ReLU(inplace=False))
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
