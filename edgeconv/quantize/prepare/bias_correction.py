"""Empirical bias correction (Nagel et al. 2019). Quantizing weights ``W -> W_q`` shifts the expected output by
``E[(W_q - W) x]``; subtracting it from the bias removes the systematic part of the error. The expectation is taken
empirically, over the calibration data's inputs to each layer (the paper's "empirical bias correction"), including
padding and border effects.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

logger = logging.getLogger(__name__)


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
