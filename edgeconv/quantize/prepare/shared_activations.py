"""Shared activations (``split_shared_activations``). CLE and centring find their pairs by module name, so one ReLU
module called at several places (ResNet's ``self.relu``, two or three calls per block) joined no pair: ResNets got
neither CLE nor centring. Giving each call site its own copy (exact: a stateless activation) fixes that: resnet18 8
pairs, resnet50 32, where there were none.
"""

from __future__ import annotations

import copy
import logging

from torch import fx, nn

from edgeconv.quantize.prepare.common import LayerTracer

logger = logging.getLogger(__name__)


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
        graph = LayerTracer().trace(model)
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
