"""Structural re-parameterization: merge multi-branch training-time blocks (RepVGG, RepLKNet, ACB style) into one conv.

The merge math lives with each block, in its ``reparameterize()`` method (timm's convention, see ``byobnet.py``); this
module only finds and calls those hooks, so any block that exposes one is covered without edgeconv knowing its class.
"""

from __future__ import annotations

import logging

from torch import nn

logger = logging.getLogger(__name__)

HOOK = "reparameterize"


def reparameterize(model: nn.Module) -> list[str]:
    """Call ``reparameterize()`` on every submodule that has one (in place), outermost first. Returns the names of the
    modules whose hook ran.

    Safe to call twice: the hooks themselves are idempotent (a block already in deploy form returns at once), and a
    module that an outer hook detached from the tree is skipped. A hook that returns a new module (instead of
    rewriting itself) has that module put in its place.
    """
    called: list[str] = []
    for name, _ in list(model.named_modules()):
        try:
            module = model.get_submodule(name) if name else model
        except AttributeError:  # removed by an outer block's hook
            continue
        hook = getattr(module, HOOK, None)
        if not callable(hook):
            continue
        replacement = hook()
        if isinstance(replacement, nn.Module) and replacement is not module and name:
            parent_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, attr, replacement)
        called.append(name or type(model).__name__)
    if called:
        logger.info("re-parameterized %d blocks", len(called))
    return called
