"""Resource profiling: params, mult-adds, other ops and memory per layer, from PyTorch modules or ONNX graphs.

>>> from edgeconv.profile import profile_model
>>> report = profile_model("mobilenet_v1")
>>> report.macs, report.params, report.by_type()["conv1x1"].macs_pct

The counting convention is in ``edgeconv.profile.count``'s docstring; the paper tables in ``edgeconv.profile.tables``.
"""

from __future__ import annotations

from edgeconv import lazy_attributes

# Loaded on first use, as in ``edgeconv/__init__.py``: ``edgeconv.profile.tables`` and ``.report`` (the CLI's tables,
# bench rows) need no torch; ``count`` (PyTorch modules) imports it.
_LAZY = {
    "LayerProfile": "edgeconv.profile.report",
    "ProfileReport": "edgeconv.profile.report",
    "TypeTotals": "edgeconv.profile.report",
    "classify_conv": "edgeconv.profile.count",
    "profile_model": "edgeconv.profile.count",
    "profile_module": "edgeconv.profile.count",
    "profile_onnx": "edgeconv.profile.onnx_count",
}

__all__ = [*_LAZY, "layer_summary"]
__getattr__ = lazy_attributes(__name__, _LAZY)


def layer_summary(name: str, **model_kwargs: object) -> dict[str, object]:
    """Totals and the by-type breakdown of a zoo model at its default input, without the per-layer rows.

    For ``edgeconv info NAME`` (the CLI's zoo command shows it as the layer summary).
    """
    from edgeconv.profile.count import profile_model

    report = profile_model(name, **model_kwargs)  # type: ignore[arg-type]
    data = report.to_dict()
    data.pop("layers")
    data["layers"] = len(report.layers)
    return data
