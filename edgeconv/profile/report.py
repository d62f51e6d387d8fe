"""``LayerProfile`` and ``ProfileReport``: what a count produces, from PyTorch hooks or from an ONNX graph."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeconv.files import write_atomic

# Order of the op types in every breakdown: the paper tables list the convolution kinds first.
TYPE_ORDER = ("conv1x1", "conv_dw", "conv_kxk", "conv_group", "conv_deform", "fc", "other")
MAC_TYPES = ("conv1x1", "conv_dw", "conv_kxk", "conv_group", "conv_deform", "fc")


@dataclass
class LayerProfile:
    """One executed layer (a leaf module call, or a functional op inside a composite module's ``forward``).

    ``op_type`` is one of ``TYPE_ORDER``; ``type`` (the breakdown key) adds the kernel for dense convolutions
    (``"conv_kxk 3x3"``). ``op`` names what ran (``Conv2d``, ``BatchNorm2d``, ``add``, ``cat``, ``Conv`` for ONNX ...).
    """

    name: str
    op: str
    op_type: str
    output_shape: tuple[int, ...]
    params: int = 0
    macs: int = 0
    other_ops: int = 0
    memory_bytes: int = 0
    activation_bytes: int = 0
    kernel: str = ""

    @property
    def type(self) -> str:
        keyed = self.op_type in ("conv_kxk", "conv_deform") and self.kernel
        return f"{self.op_type} {self.kernel}" if keyed else self.op_type

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "op": self.op,
            "output_shape": list(self.output_shape),
            "params": self.params,
            "macs": self.macs,
            "other_ops": self.other_ops,
            "memory_bytes": self.memory_bytes,
            "activation_bytes": self.activation_bytes,
        }


@dataclass(frozen=True)
class TypeTotals:
    params: int
    macs: int
    params_pct: float
    macs_pct: float
    layers: int
    memory_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "macs": self.macs,
            "params_pct": self.params_pct,
            "macs_pct": self.macs_pct,
            "layers": self.layers,
            "memory_bytes": self.memory_bytes,
        }


def _type_sort_key(key: str) -> tuple[int, int, str]:
    base, _, kernel = key.partition(" ")
    rank = TYPE_ORDER.index(base) if base in TYPE_ORDER else len(TYPE_ORDER)
    # conv_kxk rows by kernel area: 3x3 before 7x7 before 11x11
    area = 1
    for part in kernel.split("x"):
        area *= int(part) if part.isdigit() else 1
    return rank, area, kernel


@dataclass
class ProfileReport:
    """Per-layer and total cost of one model at one input shape.

    ``params`` is the model's total parameter count (for ONNX: the initializers that nodes consume); the layer rows add
    up to it. ``notes`` say what the counter could not see or counted differently.
    """

    model: str
    input_shape: tuple[int, ...]
    layers: list[LayerProfile]
    params: int
    source: str = "pytorch"
    notes: list[str] = field(default_factory=list)
    shared_params: int = 0  # ONNX: parameters counted once although several nodes read them (deduplicated tensors)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def other_ops(self) -> int:
        return sum(layer.other_ops for layer in self.layers)

    @property
    def memory_bytes(self) -> int:
        return sum(layer.memory_bytes for layer in self.layers)

    @property
    def activation_bytes(self) -> int:
        return sum(layer.activation_bytes for layer in self.layers)

    @property
    def max_activation_bytes(self) -> int:
        return max((layer.activation_bytes for layer in self.layers), default=0)

    def by_type(self, *, mac_layers_only: bool = False) -> dict[str, TypeTotals]:
        """Totals per op type (``conv_kxk`` split by kernel). Percentages are of the model's totals.

        ``mac_layers_only`` leaves out ``other`` (BatchNorm, activations, pooling ...) and takes the percentages over
        conv and fc layers only: MobileNet's Table 2 shares are computed that way.
        """
        rows = [layer for layer in self.layers if not (mac_layers_only and layer.op_type == "other")]
        total_params = sum(r.params for r in rows) if mac_layers_only else self.params
        total_macs = sum(r.macs for r in rows)
        sums: dict[str, list[int]] = {}
        for layer in rows:
            acc = sums.setdefault(layer.type, [0, 0, 0, 0])
            acc[0] += layer.params
            acc[1] += layer.macs
            acc[2] += 1
            acc[3] += layer.memory_bytes
        return {
            key: TypeTotals(
                params=p,
                macs=m,
                params_pct=100.0 * p / total_params if total_params else 0.0,
                macs_pct=100.0 * m / total_macs if total_macs else 0.0,
                layers=n,
                memory_bytes=b,
            )
            for key, (p, m, n, b) in sorted(sums.items(), key=lambda kv: _type_sort_key(kv[0]))
        }

    def select(self, prefixes: tuple[str, ...]) -> list[LayerProfile]:
        """Layers named one of ``prefixes`` or lying under one (``inception3a`` -> ``inception3a.branch1...``)."""
        return [
            layer
            for layer in self.layers
            if any(
                layer.name == p or layer.name.startswith(p + ".") or layer.name.startswith(p + "/") for p in prefixes
            )
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "source": self.source,
            "input_shape": list(self.input_shape),
            "params": self.params,
            "macs": self.macs,
            "other_ops": self.other_ops,
            "memory_bytes": self.memory_bytes,
            "activation_bytes": self.activation_bytes,
            "max_activation_bytes": self.max_activation_bytes,
            "layers": [layer.to_dict() for layer in self.layers],
            "by_type": {key: totals.to_dict() for key, totals in self.by_type().items()},
            "notes": list(self.notes),
        }

    def to_csv(self) -> str:
        buffer = io.StringIO()
        columns = [
            "name",
            "type",
            "op",
            "output_shape",
            "params",
            "macs",
            "other_ops",
            "memory_bytes",
            "activation_bytes",
        ]
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for layer in self.layers:
            row = layer.to_dict()
            row["output_shape"] = "x".join(map(str, layer.output_shape))
            writer.writerow(row)
        return buffer.getvalue()

    def write_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the layer table as CSV atomically (temp file in the same folder, then rename)."""
        target = Path(path)
        write_atomic(target, self.to_csv().encode("utf-8"))
        return target
