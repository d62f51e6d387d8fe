"""Folding BatchNorm into the preceding linear operator.

For y = BN(W x + b):  W' = W * gamma / sqrt(var + eps),  b' = (b - mean) * gamma / sqrt(var + eps) + beta
(the three-line form of RepVGG's ``_fuse_bn_tensor``, Ding et al. 2021).
"""

from __future__ import annotations

import torch
from torch import nn


def fold_bn_weights(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d | nn.BatchNorm1d, out_axis: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (weight, bias) of the operator with ``bn`` folded in. ``out_axis`` is the output-channel axis of
    ``weight`` (0 for Conv / Linear, 1 for ConvTranspose)."""
    assert bn.running_mean is not None and bn.running_var is not None
    std = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    shape = [1] * weight.dim()
    shape[out_axis] = -1
    if bias is None:
        bias = torch.zeros_like(bn.running_mean)
    return weight * scale.reshape(shape), (bias - bn.running_mean) * scale + beta
