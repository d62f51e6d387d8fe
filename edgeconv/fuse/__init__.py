"""Graph-level fusions done in PyTorch before export: RepVGG-style branch merging, then BatchNorm folding.

>>> report = fuse_model(create_model("resnet18"))
>>> report.model, report.params_before, report.params_after, report.unfoldable
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

from torch import nn

from edgeconv.fuse.bn_fold import fold_bn_weights
from edgeconv.fuse.fold import FoldResult, fold_batchnorm, fold_batchnorm_report, remove_noops
from edgeconv.fuse.reparam import reparameterize

logger = logging.getLogger(__name__)


@dataclass
class FuseReport:
    """The fused model and what fusion did to it.

    ``folded``: (op, batchnorm) pairs merged; ``unfoldable``: (batchnorm, reason) left in place;
    ``reparameterized``: blocks whose ``reparameterize()`` ran; ``removed``: Dropout / Identity modules taken out.
    """

    model: nn.Module
    params_before: int
    params_after: int
    folded: list[tuple[str, str]] = field(default_factory=list)
    unfoldable: list[tuple[str, str]] = field(default_factory=list)
    reparameterized: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return {
            "params_before": self.params_before,
            "params_after": self.params_after,
            "folded": len(self.folded),
            "unfoldable": [f"{name}: {why}" for name, why in self.unfoldable],
            "reparameterized": len(self.reparameterized),
            "removed": len(self.removed),
        }


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def fuse_model(model: nn.Module) -> FuseReport:
    """Re-parameterize multi-branch blocks, fold BatchNorm, drop Dropout/Identity; ``model`` itself is untouched.

    Order matters: RepVGG's hook folds each branch's own BN while merging, so it runs before the generic fold.
    """
    before = count_parameters(model)
    work = copy.deepcopy(model).eval()
    reparameterized = reparameterize(work)
    folded = fold_batchnorm_report(work, copy_model=False)
    return FuseReport(
        model=folded.model,
        params_before=before,
        params_after=count_parameters(folded.model),
        folded=folded.folded,
        unfoldable=folded.unfoldable,
        reparameterized=reparameterized,
        removed=folded.removed,
    )


__all__ = [
    "FoldResult",
    "FuseReport",
    "count_parameters",
    "fold_batchnorm",
    "fold_batchnorm_report",
    "fold_bn_weights",
    "fuse_model",
    "remove_noops",
    "reparameterize",
]
