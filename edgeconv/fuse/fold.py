"""BatchNorm folding over a whole model, and removal of inference no-ops (Dropout, Identity).

How "preceding" is found: ``torch.fx`` symbolic tracing of the model gives the data flow, so a BatchNorm is folded only
when its input is exactly the output of a Conv / ConvTranspose / Linear module *and nothing else reads that output*
(folding would otherwise change the other reader's input, e.g. ``bn(conv(x)) + conv_out``). Plain neighbour rules on
``nn.Sequential`` cannot see ``self.bn1(self.conv1(x))`` in a custom ``forward`` (ResNet, Inception), nor can they see
the extra readers, so fx is the robust choice. Models that fx cannot trace as a whole (Python control flow on tensor
shapes, e.g. ``batch, channels, h, w = x.shape`` in a channel shuffle) are traced module by module: each child that
traces is analysed on its own, a child that does not is split further. A pair split across an untraceable ``forward``
stays unfolded and is reported, never guessed.

The fold is done in place on a copy of the model, so the module classes, their ``forward`` code and the qualified names
(and hence ONNX node names and error messages) stay those of the original: the conv gets the folded weights and the
BatchNorm is replaced by ``nn.Identity`` (or dropped from its ``nn.Sequential`` without renumbering its neighbours).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from edgeconv.fuse.bn_fold import fold_bn_weights

logger = logging.getLogger(__name__)

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_FOLDABLE = (*_CONVS, *_TRANSPOSED, nn.Linear)
_REMOVABLE = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
    nn.Identity,
)


@dataclass
class FoldResult:
    """What ``fold_batchnorm`` did: folded (conv, bn) pairs, BatchNorms left in place (with why), removed no-ops."""

    model: nn.Module
    folded: list[tuple[str, str]] = field(default_factory=list)
    unfoldable: list[tuple[str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def _is_batchnorm(module: nn.Module) -> bool:
    """A BatchNorm, or torchvision's ``FrozenBatchNorm2d`` (its detectors': the statistics as buffers), recognised
    without importing torchvision (an optional dependency)."""
    kind = type(module)
    return isinstance(module, _BATCHNORMS) or (
        kind.__name__ == "FrozenBatchNorm2d" and kind.__module__.startswith("torchvision.")
    )


def _uses_standard_forward(module: nn.Module) -> bool:
    """A subclass that overrides ``forward`` (weight standardisation, sparse masks ...) is not a plain affine op,
    unless it declares ``bn_foldable = True`` (its forward is the op with its own weight and bias after input-only
    work such as TF 'SAME' padding, e.g. ``edgeconv.zoo.efficientnet.Conv2dSame``)."""
    if getattr(module, "bn_foldable", False) is True:
        return True
    for base in (*_FOLDABLE,):
        if isinstance(module, base):
            return type(module).forward is base.forward
    return False


def _bn_usable(bn: Any) -> str | None:
    """Why this BatchNorm cannot be folded at all, or None."""
    if bn.running_mean is None or bn.running_var is None:
        return "track_running_stats=False (uses batch statistics even in eval mode)"
    return None


def _out_channels(op: Any) -> int:
    op = getattr(op, "fold_target", op)
    return op.out_features if isinstance(op, nn.Linear) else op.out_channels


def _foldable(module: nn.Module) -> bool:
    """A Conv / ConvTranspose / Linear, or a module that names the one it folds into (``fold_target``: a deformable
    conv's weight and bias live in its ``conv``)."""
    return isinstance(module, _FOLDABLE) or isinstance(getattr(module, "fold_target", None), nn.Module)


def _fold_pair(op: Any, bn: Any) -> None:
    """Fold ``bn`` into ``op`` in place. The arithmetic runs in float64 and is cast back, so the folded weights carry
    one rounding, not three."""
    op = getattr(op, "fold_target", op)
    weight = op.weight.detach().double()
    bias = op.bias.detach().double() if op.bias is not None else None
    bn64 = copy.deepcopy(bn).double()
    if isinstance(op, _TRANSPOSED) and op.groups > 1:
        # ConvTranspose weight is (in, out/groups, k...): output channel g*(out/groups)+j lives at [group g rows, j].
        groups = op.groups
        shape = weight.shape
        grouped = weight.reshape(groups, shape[0] // groups, shape[1], *shape[2:])
        std = torch.sqrt(bn64.running_var + bn64.eps)
        gamma = bn64.weight if bn64.weight is not None else torch.ones_like(std)
        beta = bn64.bias if bn64.bias is not None else torch.zeros_like(std)
        scale = (gamma / std).detach()
        scale_shape = [groups, 1, shape[1]] + [1] * (len(shape) - 2)
        new_weight = (grouped * scale.reshape(scale_shape)).reshape(shape)
        base = bias if bias is not None else torch.zeros_like(std)
        new_bias = ((base - bn64.running_mean) * scale + beta).detach()
    else:
        out_axis = 1 if isinstance(op, _TRANSPOSED) else 0
        with torch.no_grad():
            new_weight, new_bias = fold_bn_weights(weight, bias, bn64, out_axis=out_axis)
    dtype = op.weight.dtype
    with torch.no_grad():
        op.weight.copy_(new_weight.to(dtype))
        if op.bias is None:
            op.bias = nn.Parameter(new_bias.to(dtype=dtype, device=op.weight.device))
        else:
            op.bias.copy_(new_bias.to(dtype))


class _Tracer(fx.Tracer):
    """Default fx tracer, but every foldable op and BatchNorm is a leaf even when it is a subclass (so the analysis
    sees the module call, not the functional ops inside it)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return _is_batchnorm(m) or _foldable(m) or super().is_leaf_module(m, module_qualified_name)


def _trace(module: nn.Module) -> fx.Graph | None:
    try:
        return _Tracer().trace(module)
    except Exception as exc:  # fx raises many types (TraceError, TypeError, RuntimeError ...) for untraceable code
        logger.debug("fx cannot trace %s: %s", type(module).__name__, str(exc).splitlines()[0] if str(exc) else exc)
        return None


def _find_pairs(root: nn.Module, prefix: str, pairs: list[tuple[str, str]], seen_bn: set[str]) -> None:
    """Collect (op name, bn name) pairs whose data flow fx proves, recursing into children fx cannot trace."""
    graph = _trace(root)
    if graph is None:
        for name, child in root.named_children():
            _find_pairs(child, f"{prefix}{name}.", pairs, seen_bn)
        return
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    for node in graph.nodes:
        if node.op != "call_module" or not _is_batchnorm(root.get_submodule(str(node.target))):
            continue
        seen_bn.add(prefix + str(node.target))
        src = node.args[0] if node.args else None
        if not isinstance(src, fx.Node) or src.op != "call_module" or len(node.args) != 1 or node.kwargs:
            continue
        op = root.get_submodule(str(src.target))
        if not _foldable(op) or not _uses_standard_forward(op):
            continue
        if len(src.users) != 1 or calls[str(src.target)] != 1 or calls[str(node.target)] != 1:
            continue  # the op output has another reader, or a module is shared: folding would change them
        pairs.append((prefix + str(src.target), prefix + str(node.target)))


def _set_submodule(model: nn.Module, name: str, new: nn.Module | None) -> None:
    """Replace ``name`` by ``new``; with ``new=None`` drop it from its ``nn.Sequential`` parent (keys of the other
    children unchanged, so qualified names stay those of the original model)."""
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if new is None:
        del parent._modules[attr]
    else:
        setattr(parent, attr, new)


def _why_unfoldable(model: nn.Module, bn_name: str, traced: set[str]) -> str:
    bn = model.get_submodule(bn_name)
    reason = _bn_usable(bn)
    if reason:
        return reason
    if bn_name not in traced:
        return "its producer could not be traced (Python control flow in the enclosing forward)"
    return (
        "its input is not the sole output of a Conv/ConvTranspose/Linear (e.g. pre-activation BN after an add/concat)"
    )


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with its BatchNorms folded and no-ops removed (see ``fold_batchnorm_report``)."""
    return fold_batchnorm_report(model).model


def fold_batchnorm_report(model: nn.Module, *, copy_model: bool = True) -> FoldResult:
    """Fold every BatchNorm that directly follows a Conv (dense, grouped, depthwise), ConvTranspose or Linear into it,
    and remove Dropout and Identity modules. Works on an eval-mode deep copy; ``model`` is not modified.

    A BatchNorm that cannot be folded (pre-activation nets, BN after a concat, ``track_running_stats=False``) is left
    in place and listed in ``unfoldable`` with the reason; it still runs correctly, as a BatchNormalization node.
    ``copy_model=False`` folds ``model`` itself (for callers that already hold a private copy).
    """
    fused = (copy.deepcopy(model) if copy_model else model).eval()
    result = FoldResult(model=fused)
    pairs: list[tuple[str, str]] = []
    traced: set[str] = set()
    _find_pairs(fused, "", pairs, traced)
    folded_bns: set[str] = set()
    for op_name, bn_name in pairs:
        op, bn = fused.get_submodule(op_name), fused.get_submodule(bn_name)
        reason = _bn_usable(bn)
        features = None if reason else int(bn.get_buffer("running_mean").shape[0])  # FrozenBatchNorm2d: no num_features
        if reason is None and _out_channels(op) != features:
            reason = f"{op_name} has {_out_channels(op)} outputs but the BatchNorm {features} features"
        if reason is not None:
            continue
        _fold_pair(op, bn)
        _set_submodule(fused, bn_name, nn.Identity())
        folded_bns.add(bn_name)
        result.folded.append((op_name, bn_name))
    for name, module in list(fused.named_modules()):
        if _is_batchnorm(module) and name not in folded_bns:
            result.unfoldable.append((name, _why_unfoldable(fused, name, traced)))
    result.removed = [name for name in remove_noops(fused) if name not in folded_bns]
    logger.info("folded %d BatchNorms, %d left unfolded", len(result.folded), len(result.unfoldable))
    return result


def remove_noops(model: nn.Module) -> list[str]:
    """Drop Dropout / Identity from ``nn.Sequential`` containers and turn the others into ``nn.Identity`` (a custom
    ``forward`` still calls them). Returns the names of the modules removed or replaced (excluding plain Identities
    that had to stay)."""
    removed: list[str] = []
    for name, module in list(model.named_modules()):
        if not name or not isinstance(module, _REMOVABLE):
            continue
        parent_name, _, _ = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if isinstance(parent, nn.Sequential) and type(parent).forward is nn.Sequential.forward:
            _set_submodule(model, name, None)
            removed.append(name)
        elif not isinstance(module, nn.Identity):
            _set_submodule(model, name, nn.Identity())
            removed.append(name)
    return removed
