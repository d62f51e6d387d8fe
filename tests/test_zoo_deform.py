"""Deformable convolution (seed 002; Dai et al. 2017, v2 Zhu et al. 2019): torchvision's arithmetic, the papers'
zero-initialized offsets, and the ONNX DeformConv export run on ONNX Runtime against PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.ops import deform_conv2d

from edgeconv.export import DEFORM_CONV_OPSET, export_onnx, validation_batch
from edgeconv.onnxgraph import session
from edgeconv.zoo.deform import DeformConv2d


def _layer(modulated: bool, **kwargs: int) -> DeformConv2d:
    torch.manual_seed(0)
    layer = DeformConv2d(8, 12, 3, modulated=modulated, **kwargs).eval()
    with torch.no_grad():  # trained-looking offsets of a few pixels, so that the sampling is really deformed
        layer.offset.weight.normal_(0.0, 0.2)
        layer.offset.bias.normal_(0.0, 1.0)
    return layer


@pytest.mark.parametrize("modulated", [False, True])
def test_deform_conv_is_torchvisions_arithmetic_on_predicted_offsets(modulated: bool) -> None:
    layer = _layer(modulated, stride=2, offset_groups=2)
    x = torch.randn(2, 8, 15, 17)
    with torch.no_grad():
        predicted = layer.offset(x)
        taps = 2 * 9
        offset = predicted[:, : 2 * taps]
        mask = torch.sigmoid(predicted[:, 2 * taps :]) if modulated else None
        expected = deform_conv2d(x, offset, layer.conv.weight, layer.conv.bias, stride=2, padding=1, mask=mask)
        got = layer(x)
    assert offset.abs().max() > 1.0  # taps move by more than a pixel
    torch.testing.assert_close(got, expected)
    assert got.shape == (2, 12, 8, 9)


@pytest.mark.parametrize("modulated", [False, True])
def test_untrained_deform_conv_is_the_regular_grid(modulated: bool) -> None:
    """Zero-initialized predictor (both papers): offsets 0, so v1 is the regular conv; v2's masks are sigmoid(0)."""
    torch.manual_seed(0)
    layer = DeformConv2d(8, 12, 3, padding=1, modulated=modulated).eval()
    conv = nn.Conv2d(8, 12, 3, padding=1)
    conv.weight.data, conv.bias.data = layer.conv.weight.data.clone(), torch.zeros(12)
    x = torch.randn(1, 8, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), conv(x) * (0.5 if modulated else 1.0), rtol=1e-5, atol=1e-5)


class _Net(nn.Module):
    def __init__(self, modulated: bool) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.deform = _layer(modulated)
        self.head = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.deform(torch.relu(self.stem(x)))).mean(dim=(2, 3)))


@pytest.mark.parametrize("modulated", [False, True])
def test_deform_conv_exports_as_onnx_deformconv_and_runs_on_onnxruntime(modulated: bool, tmp_path: Path) -> None:
    import onnx

    model = _Net(modulated).eval()
    report = export_onnx(model, tmp_path / "deform.onnx", (1, 3, 64, 64), opset=DEFORM_CONV_OPSET)
    assert report.validation  # ONNX Runtime against PyTorch on the real validation photos
    graph = onnx.load(str(report.path)).graph
    deform = [n for n in graph.node if n.op_type == "DeformConv"]
    assert len(deform) == 1 and len(deform[0].input) == (5 if modulated else 4)
    x = validation_batch((3, 64, 64))[:1]
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    sess = session(str(report.path))
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_deform_conv_below_opset_19_fails_with_the_opset_named(tmp_path: Path) -> None:
    from edgeconv.errors import ExportError

    with pytest.raises(ExportError, match="opset 17"):
        export_onnx(_Net(False).eval(), tmp_path / "d.onnx", (1, 3, 64, 64), opset=17)
    assert not (tmp_path / "d.onnx").exists()


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation", "offset_groups", "groups", "modulated"),
    [
        (3, 1, 1, 1, 1, 1, False),
        (3, 2, 1, 1, 2, 1, True),
        (3, 1, 2, 2, 1, 2, False),
        ((3, 2), (2, 1), (1, 0), (1, 2), 1, 1, True),
    ],
)
def test_grid_sample_decomposition_is_torchvisions_arithmetic(  # noqa: PLR0913 - the op's parameters
    kernel, stride, padding, dilation, offset_groups: int, groups: int, modulated: bool
) -> None:
    from torch.nn.modules.utils import _pair

    from edgeconv.zoo.deform import deform_conv2d_grid_sample

    torch.manual_seed(0)
    (kh, kw), s, p, d = _pair(kernel), _pair(stride), _pair(padding), _pair(dilation)
    x = torch.randn(2, 8, 13, 11)
    weight, bias = torch.randn(12, 8 // groups, kh, kw), torch.randn(12)
    out_h = (13 + 2 * p[0] - d[0] * (kh - 1) - 1) // s[0] + 1
    out_w = (11 + 2 * p[1] - d[1] * (kw - 1) - 1) // s[1] + 1
    offset = 3 * torch.randn(2, 2 * offset_groups * kh * kw, out_h, out_w)  # many taps fall outside the image
    mask = torch.rand(2, offset_groups * kh * kw, out_h, out_w) if modulated else None
    expected = deform_conv2d(x, offset, weight, bias, stride=s, padding=p, dilation=d, mask=mask)
    got = deform_conv2d_grid_sample(x, offset, weight, bias, s, p, d, mask, groups)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


@pytest.mark.parametrize("modulated", [False, True])
def test_grid_sample_export_needs_no_deformconv_and_runs_on_openvino(modulated: bool, tmp_path: Path) -> None:
    import onnx

    model = _Net(modulated).eval()
    decomposed = _Net(modulated).eval()
    decomposed.load_state_dict(model.state_dict())
    decomposed.deform.grid_sample = True
    report = export_onnx(decomposed, tmp_path / "g.onnx", (1, 3, 64, 64), reference=model)  # against the native op
    ops = {n.op_type for n in onnx.load(str(report.path)).graph.node}
    assert report.validation and report.opset == 17 and "GridSample" in ops and "DeformConv" not in ops
    assert report.runtime_notes == []
    ov = pytest.importorskip("openvino")
    x = validation_batch((3, 64, 64))[:1]
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = next(
        iter(
            ov.Core()
            .compile_model(str(report.path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
            .create_infer_request()
            .infer({0: x})
            .values()
        )
    )
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
