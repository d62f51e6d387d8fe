"""U-Net (seed 000; Ronneberger et al. 2015): the paper's valid-conv network and the padded variant."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgeconv.export import export_onnx
from edgeconv.zoo.unet import UNet, centre_crop, output_size


def _paper_parameters(in_channels: int = 1, classes: int = 2, width: int = 64, depth: int = 4) -> int:
    """Counted from the paper's Fig. 1 layer by layer: two 3x3 convs per level, 2x2 up-convs, the 1x1 head."""
    conv3 = lambda c_in, c_out: 9 * c_in * c_out + c_out  # noqa: E731
    channels = [width * 2**level for level in range(depth + 1)]
    total = 0
    for c_in, c_out in zip([in_channels, *channels[:-1]], channels, strict=True):
        total += conv3(c_in, c_out) + conv3(c_out, c_out)
    for c in channels[1:]:
        total += 4 * c * (c // 2) + c // 2  # 2x2 up-convolution halving the channels
        total += conv3(c, c // 2) + conv3(c // 2, c // 2)  # after concatenating the skip (c // 2 + c // 2 = c)
    return total + channels[0] * classes + classes


def test_paper_unet_maps_a_572_tile_to_a_388_label_map() -> None:
    assert sum(p.numel() for p in UNet().parameters()) == _paper_parameters() == 31_030_658
    with torch.device("meta"):
        model = UNet()
        for size in (572, 508, 444):
            out = model(torch.zeros(1, 1, size, size))
            assert out.shape == (1, 2, output_size(size), output_size(size))
    assert output_size(572) == 388


def test_valid_unet_tiles_seamlessly() -> None:
    """The paper's overlap-tile strategy: with valid convs a tile's label map is the centre of the tile, so a tile cut
    from a larger image at an offset that is a multiple of 2 ** depth predicts exactly that part of the larger map."""
    x = torch.arange(36.0).reshape(1, 1, 6, 6)
    assert torch.equal(centre_crop(x, 2, 4), x[..., 2:4, 1:5])
    torch.manual_seed(0)
    model = UNet(3, 4, width=4, depth=2).eval()
    image = torch.randn(1, 3, 108, 108)
    with torch.no_grad():
        whole = model(image)
        tile = model(image[..., 8:100, 8:100])
    side = output_size(92, depth=2)
    assert tile.shape == (1, 4, side, side) and whole.shape[-1] == output_size(108, depth=2)
    torch.testing.assert_close(tile, whole[..., 8 : 8 + side, 8 : 8 + side], rtol=1e-5, atol=1e-5)


def test_padded_unet_keeps_the_size_and_exports_with_up_convolutions(tmp_path: Path) -> None:
    import onnx

    torch.manual_seed(0)
    model = UNet(3, 5, width=8, depth=3, padding=1, batch_norm=True).eval()
    assert model(torch.randn(2, 3, 64, 96)).shape == (2, 5, 64, 96)
    report = export_onnx(model, tmp_path / "unet.onnx", (1, 3, 64, 64))
    assert report.validation  # ONNX Runtime against PyTorch on the validation photos
    ops = {n.op_type for n in onnx.load(str(report.path)).graph.node}
    assert {"ConvTranspose", "Concat", "MaxPool"} <= ops


def test_unet_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="padding 2"):
        UNet(padding=2)
    with pytest.raises(ValueError, match="depth 0"):
        UNet(depth=0)
