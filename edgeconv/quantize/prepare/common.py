"""What the preparation passes share: activation types, the FX tracer, forward hooks, conv biases, batches."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np
import torch
from torch import fx, nn

HOMOGENEOUS = (nn.ReLU, nn.LeakyReLU, nn.PReLU)  # positively homogeneous: f(x / s) = f(x) / s for s > 0
RELU6 = (nn.ReLU6,)
PASS = (nn.Identity, nn.Dropout)


class LayerTracer(fx.Tracer):
    """An FX tracer that keeps convs and activations as single call_module nodes."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, (nn.Conv2d, *HOMOGENEOUS, *RELU6)) or super().is_leaf_module(m, module_qualified_name)


def observe(
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


def conv_bias(conv: nn.Conv2d) -> torch.Tensor:
    if conv.bias is None:
        conv.bias = nn.Parameter(torch.zeros(conv.out_channels, dtype=conv.weight.dtype))
    return conv.bias


def batches(array: np.ndarray, batch_size: int = 32) -> Iterable[torch.Tensor]:
    for start in range(0, len(array), batch_size):
        yield torch.from_numpy(np.ascontiguousarray(array[start : start + batch_size]))
