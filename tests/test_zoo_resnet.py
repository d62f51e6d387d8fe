"""Family-specific checks for the residual / dense zoo: ResNet(-X), Wide ResNet, pre-activation ResNet, PyramidNet,
DenseNet, DPN, SE-ResNet and CBAM (the registry-wide forward / paper-figure checks live in test_zoo.py)."""

from __future__ import annotations

import pytest
import torch
from conftest import meta_model
from torch import nn

from edgeconv.errors import InvalidArgumentError
from edgeconv.zoo import create_model
from edgeconv.zoo.preact_resnet import PreActBasicBlock
from edgeconv.zoo.registry import count_params
from edgeconv.zoo.resnet import BasicBlock
from edgeconv.zoo.senet import CBAM


def _randomize_bn(model: nn.Module) -> None:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)


@pytest.mark.parametrize("name", ["se_resnet50", "cbam_resnet50"])
def test_attention_resnet_is_plain_resnet_plus_attention(name: str) -> None:
    """Same conv/BN weights as resnet50: attention changes the output; forcing its gates to 1 gives resnet50 back."""
    plain, attended = create_model("resnet50"), create_model(name)
    _randomize_bn(plain)
    missing, unexpected = attended.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected
    assert missing and all(".attention." in key for key in missing)
    assert len({key.split(".attention.")[0] for key in missing}) == 16  # one module per bottleneck block
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        expected, actual = plain(x), attended(x)
    assert not torch.allclose(actual, expected, atol=1e-3)

    with torch.no_grad():  # sigmoid(60) == 1.0 in float32: every gate passes its input unchanged
        for block in attended.modules():
            if isinstance(getattr(block, "attention", None), nn.Module):
                gates = [m for m in block.attention.modules() if isinstance(m, nn.Conv2d) and m.out_channels > 1]
                gates[-1].weight.zero_()
                gates[-1].bias.fill_(30.0)  # CBAM sums two MLP outputs: 2 x 30
                for spatial in (m for m in block.attention.modules() if isinstance(m, nn.BatchNorm2d)):
                    spatial.weight.zero_()
                    spatial.bias.fill_(60.0)
        actual = attended(x)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_cbam_spatial_attention_reweights_pixels() -> None:
    """CBAM = channel gate, then a per-pixel gate from [max_c, mean_c] through a 7x7 conv (checked by formula)."""
    torch.manual_seed(0)
    cbam = CBAM(32, reduction=16).eval()
    assert cbam.spatial.conv.weight.shape == (1, 2, 7, 7)
    x = torch.randn(2, 32, 9, 9)
    with torch.no_grad():
        mlp = cbam.channel
        channel_scale = torch.sigmoid(
            mlp.fc2(torch.relu(mlp.fc1(x.mean((2, 3), keepdim=True))))
            + mlp.fc2(torch.relu(mlp.fc1(x.amax((2, 3), keepdim=True))))
        )
        y = channel_scale * x
        pooled = torch.cat((y.amax(1, keepdim=True), y.mean(1, keepdim=True)), 1)
        spatial_scale = torch.sigmoid(cbam.spatial.bn(cbam.spatial.conv(pooled)))
        torch.testing.assert_close(cbam(x), spatial_scale * y)
    assert spatial_scale.shape == (2, 1, 9, 9)
    assert spatial_scale.std() > 1e-3  # it differs from pixel to pixel, unlike an SE gate


def test_preact_unit_keeps_a_clean_identity_path() -> None:
    """With its last conv zeroed a pre-activation unit is exactly the identity (negative values included); the
    original post-activation block is not, because of the ReLU after the addition."""
    x = torch.randn(1, 16, 8, 8)
    preact, post = PreActBasicBlock(16, 16).eval(), BasicBlock(16, 16).eval()
    with torch.no_grad():
        preact.conv2.weight.zero_()
        post.bn2.weight.zero_()
        torch.testing.assert_close(preact(x), x)
        assert not torch.allclose(post(x), x)
    model = create_model("preact_resnet18")
    assert isinstance(model.layer1[0].bn1, nn.Identity)  # the stem already ends in BN-ReLU
    assert all(isinstance(unit.bn1, nn.BatchNorm2d) for unit in (model.layer1[1], model.layer2[0], model.layer4[1]))


def test_wide_resnet_depth_and_width_follow_the_paper() -> None:
    model = meta_model("wide_resnet28_10")  # shapes only: no weights, no arithmetic
    assert [len(group) for group in (model.block1, model.block2, model.block3)] == [4, 4, 4]
    assert [group[0].conv2.out_channels for group in (model.block1, model.block2, model.block3)] == [160, 320, 640]
    with torch.inference_mode():
        assert model(torch.empty(2, 3, 32, 32, device="meta")).shape == (2, 10)
    # The other rows of the paper's CIFAR table (seed 004: WRN-16-8 11.0M, WRN-16-4 2.7M).
    assert abs(count_params("wide_resnet28_10", depth=16, widen_factor=8) / 11.0e6 - 1) < 0.02
    assert abs(count_params("wide_resnet28_10", depth=16, widen_factor=4) / 2.7e6 - 1) < 0.02
    with pytest.raises(InvalidArgumentError, match="6n \\+ 4"):
        create_model("wide_resnet28_10", depth=27)


def test_resnext101_64x4d_matches_the_papers_count() -> None:
    """The seeds' ResNeXt-101 (64x4d, 83.6M) is the same class with groups=64, width_per_group=4."""
    assert abs(count_params("resnext101_32x8d", groups=64, width_per_group=4) / 83.6e6 - 1) < 0.01


def test_pyramidnet_widens_linearly_with_zero_padded_shortcuts() -> None:
    model = create_model("pyramidnet")
    widths = [unit.conv2.out_channels for stage in (model.layer1, model.layer2, model.layer3) for unit in stage]
    assert len(widths) == 54 and widths[-1] == 64
    steps = [b - a for a, b in zip([16, *widths[:-1]], widths, strict=True)]
    assert set(steps) <= {0, 1} and sum(steps) == 48  # +48/54 per unit: never a jump at the downsampling
    unit = model.layer2[0].eval()
    x = torch.randn(1, unit.bn1.num_features, 8, 8)
    with torch.no_grad():
        unit.bn3.weight.zero_()  # residual branch -> 0: what remains is the pooled, zero-padded input
        unit.bn3.bias.zero_()
        out = unit(x)
    torch.testing.assert_close(out[:, : x.shape[1]], nn.functional.avg_pool2d(x, 2))
    assert torch.count_nonzero(out[:, x.shape[1] :]) == 0
    # Other widenings in the paper's table: alpha 84 -> 3.8M, alpha 270 -> 28.3M.
    assert abs(count_params("pyramidnet", alpha=84) / 3.8e6 - 1) < 0.02
    assert abs(count_params("pyramidnet", alpha=270) / 28.3e6 - 1) < 0.02
    with pytest.raises(InvalidArgumentError, match="6n \\+ 2"):
        create_model("pyramidnet", depth=111)


@pytest.mark.parametrize(
    ("name", "layers", "final_channels"),
    [("densenet_bc_100_12", 16, 342), ("densenet_bc_250_24", 41, 1734), ("densenet_bc_190_40", 31, 2190)],
)
def test_cifar_densenet_bc_structure(name: str, layers: int, final_channels: int) -> None:
    model = meta_model(name)
    blocks = [m for n, m in model.features.named_children() if n.startswith("denseblock")]
    assert [len(block) for block in blocks] == [layers] * 3
    assert model.classifier.in_features == final_channels
    assert model.features.conv0.kernel_size == (3, 3) and not hasattr(model.features, "pool0")


def test_densenet_layers_concatenate_their_inputs() -> None:
    """Every dense layer's output is appended: the block output keeps the block input as its first channels."""
    model = create_model("densenet_bc_100_12")
    block = model.features.denseblock1
    x = torch.randn(1, 24, 8, 8)
    with torch.inference_mode():
        out = block(x)
    assert out.shape == (1, 24 + 16 * 12, 8, 8)
    torch.testing.assert_close(out[:, :24], x)


def test_densenet264_follows_table_1() -> None:
    model = meta_model("densenet264")
    blocks = [m for n, m in model.features.named_children() if n.startswith("denseblock")]
    assert [len(block) for block in blocks] == [6, 12, 64, 48]
    assert model.classifier.in_features == 2688


@pytest.mark.parametrize(("name", "channels"), [("dpn68", 832), ("dpn92", 2688)])
def test_dpn_dual_paths(name: str, channels: int) -> None:
    """The residual path keeps its width while the dense path grows by ``inc`` per block."""
    model = create_model(name)
    assert model.classifier.in_channels == channels
    block = model.features.conv3_2
    in_channels = block.c1x1_a.bn.num_features
    residual, dense = torch.randn(1, block.num_1x1_c, 8, 8), torch.randn(1, in_channels - block.num_1x1_c, 8, 8)
    with torch.inference_mode():
        out_residual, out_dense = block((residual, dense))
    assert out_residual.shape == residual.shape
    assert out_dense.shape[1] == dense.shape[1] + 32  # inc of stage conv3 for both variants
    torch.testing.assert_close(out_dense[:, : dense.shape[1]], dense)


def test_attention_reduction_is_validated() -> None:
    with pytest.raises(InvalidArgumentError, match="reduction"):
        create_model("se_resnet50", reduction=0)
