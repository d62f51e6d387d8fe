"""Resource profiling: params, mult-adds, other ops and memory per layer, from PyTorch modules or ONNX graphs.

>>> from edgeconv.profile import profile_model
>>> report = profile_model("mobilenet_v1")
>>> report.macs, report.params, report.by_type()["conv1x1"].macs_pct

The counting convention is in ``edgeconv.profile.count``'s docstring; the paper tables in ``edgeconv.profile.tables``.
"""

from edgeconv.profile.count import classify_conv, profile_model, profile_module
from edgeconv.profile.onnx_count import profile_onnx
from edgeconv.profile.report import LayerProfile, ProfileReport, TypeTotals

__all__ = [
    "LayerProfile",
    "ProfileReport",
    "TypeTotals",
    "classify_conv",
    "profile_model",
    "profile_module",
    "profile_onnx",
]


def layer_summary(name: str, **model_kwargs: object) -> dict[str, object]:
    """Totals and the by-type breakdown of a zoo model at its default input, without the per-layer rows.

    For ``edgeconv info NAME`` (the CLI's zoo command shows it as the layer summary).
    """
    report = profile_model(name, **model_kwargs)  # type: ignore[arg-type]
    data = report.to_dict()
    data.pop("layers")
    data["layers"] = len(report.layers)
    return data


__all__ += ["layer_summary"]
