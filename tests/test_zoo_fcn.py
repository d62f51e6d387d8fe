"""FCN-32s/16s/8s (seeds 000/001; Long et al. 2015) on a convolutionized VGG: bilinear upsampling, sizes, the
classifier's window at the centre, export."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from edgeconv.export import export_onnx
from edgeconv.zoo.fcn import FCN, bilinear_upsampling, fcn_from_vgg
from edgeconv.zoo.vgg import POOL, make_layers


@pytest.mark.parametrize("factor", [2, 8, 32])
def test_upsampling_starts_as_bilinear_interpolation(factor: int) -> None:
    layer = bilinear_upsampling(3, factor)
    x = torch.randn(1, 3, 6, 5)
    with torch.no_grad():
        got = layer(x)
    expected = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert got.shape == expected.shape == (1, 3, 6 * factor, 5 * factor)
    inner = slice(factor, -factor)  # the borders differ: zero padding here, edge replication there
    torch.testing.assert_close(got[..., inner, inner], expected[..., inner, inner], rtol=1e-5, atol=1e-5)


def _tiny(stride: int, classes: int = 4) -> FCN:
    torch.manual_seed(0)
    features = make_layers((8, POOL, 8, POOL, 16, POOL, 16, POOL, 16, POOL))
    head = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 1), nn.ReLU())
    model = FCN(features, head, classes, stride=stride).eval()
    with torch.no_grad():  # trained-looking score layers (they start at zero, as in the paper)
        for name, module in model.named_modules():
            if name.startswith("score"):
                module.weight.normal_(0.0, 0.5)
    return model


@pytest.mark.parametrize("stride", [32, 16, 8])
def test_fcn_label_map_has_the_input_size(stride: int) -> None:
    model = _tiny(stride)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 96, 160))
    assert out.shape == (2, 4, 96, 160)
    assert out.abs().sum() > 0


def test_skips_add_nothing_until_trained() -> None:
    """Zero-initialized pool3 / pool4 scores: an untrained FCN-8s is bilinear upsampling of FCN-32s's coarse scores."""
    model = _tiny(8)
    with torch.no_grad():
        model.score_pool3.weight.zero_()
        model.score_pool4.weight.zero_()
        x = torch.randn(1, 3, 128, 128)
        coarse = model.score(model.head(model.features(x)))
        out = model(x)
    expected = F.interpolate(coarse, scale_factor=32, mode="bilinear", align_corners=False)
    inner = slice(64, -64)  # away from the borders, where the 2x/2x/8x chain and one 32x step differ
    torch.testing.assert_close(out[..., inner, inner], expected[..., inner, inner], rtol=1e-4, atol=1e-4)


def test_fcn_on_vgg_keeps_the_classifier_window_at_the_centre(zoo_model: Callable[..., nn.Module]) -> None:
    """fc6 padded by 3: at 224x224 the centre of the 7x7 score map sees exactly the classifier's 7x7 window."""
    vgg = zoo_model("vgg11").eval()  # the head of VGG-16 (fc6 over 512x7x7), five pools; shared with other tests
    fcn = fcn_from_vgg(vgg, num_classes=1000, stride=32).eval()
    fc8 = vgg.classifier[-1]
    with torch.no_grad():
        fcn.score.weight.copy_(fc8.weight[:, :, None, None])
        fcn.score.bias.copy_(fc8.bias)
        x = torch.randn(1, 3, 224, 224)
        scores = fcn.score(fcn.head(fcn.features(x)))
        expected = vgg(x)
    assert scores.shape == (1, 1000, 7, 7)
    torch.testing.assert_close(scores[:, :, 3, 3], expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    assert not any(isinstance(m, nn.Linear) for m in fcn.modules())


def test_fcn_exports_and_validates(tmp_path: Path) -> None:
    import onnx

    report = export_onnx(_tiny(8), tmp_path / "fcn8s.onnx", (1, 3, 64, 96))
    assert report.validation  # ONNX Runtime against PyTorch on the validation photos
    ops = [n.op_type for n in onnx.load(str(report.path)).graph.node]
    assert ops.count("ConvTranspose") == 3


def test_fcn_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="stride 4"):
        _tiny(4)
    with pytest.raises(ValueError, match="max pools"):
        FCN(make_layers((8, POOL, 8, POOL)), nn.Sequential(nn.Conv2d(8, 8, 1)), 2)
    with pytest.raises(ValueError, match="even"):
        bilinear_upsampling(2, 3)
