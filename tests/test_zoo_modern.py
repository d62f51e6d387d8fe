"""The 2020s convnets (ConvNeXt, RepLKNet, SLaK) have the kernels, widths and depths their papers give, the official
repositories' state_dict keys, and no training-only randomness in eval mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgeconv.zoo import create_model
from edgeconv.zoo.convnext import CNBlock, StochasticDepth
from edgeconv.zoo.replknet import ConvFFN, ReparamLargeKernelConv, RepLKBlock
from edgeconv.zoo.slak import Block as SLaKBlock
from edgeconv.zoo.slak import DecomposedLargeKernelConv

# One model of each per module (built with drop path on, which the structure must not depend on): building them is the
# expensive part on CI's two cores.
MODEL_KWARGS = {
    "convnext_tiny": {"stochastic_depth_prob": 0.5},
    "replknet_31b": {"drop_path_rate": 0.5},
    "slak_tiny": {"drop_path_rate": 0.5},
}


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    return {name: create_model(name, **kwargs) for name, kwargs in MODEL_KWARGS.items()}


def test_replknet_31b_kernels_widths_depths_match_paper(models: dict[str, nn.Module]) -> None:
    model = models["replknet_31b"]
    kernels, small, widths, depths = [], set(), [], []
    for stage in model.stages:
        convs = [m for m in stage.modules() if isinstance(m, ReparamLargeKernelConv)]
        assert len({c.kernel_size for c in convs}) == 1
        kernels.append(convs[0].kernel_size)
        small |= {c.small_kernel for c in convs}
        depths.append(sum(isinstance(b, RepLKBlock) for b in stage.blocks))
        assert sum(isinstance(b, ConvFFN) for b in stage.blocks) == depths[-1]
        widths.append(stage.blocks[0].prelkb_bn.num_features)
        for conv in convs:  # depthwise, size-preserving, both branches
            assert conv.lkb_origin is not None and conv.small_conv is not None
            large, small_conv = conv.lkb_origin.conv, conv.small_conv.conv
            assert large.groups == large.in_channels == large.out_channels
            assert large.kernel_size == (conv.kernel_size,) * 2 and large.padding == (conv.kernel_size // 2,) * 2
            assert small_conv.kernel_size == (5, 5) and small_conv.groups == large.groups
    assert kernels == [31, 29, 27, 13]
    assert small == {5}
    assert widths == [128, 256, 512, 1024]
    assert depths == [2, 2, 18, 2]


def test_replknet_state_dict_uses_official_keys(models: dict[str, nn.Module]) -> None:
    keys = set(models["replknet_31b"].state_dict())
    assert {
        "stem.0.conv.weight",
        "stem.3.bn.running_var",
        "stages.0.blocks.0.prelkb_bn.weight",
        "stages.0.blocks.0.large_kernel.lkb_origin.conv.weight",
        "stages.0.blocks.0.large_kernel.small_conv.bn.running_mean",
        "stages.2.blocks.35.pw2.bn.bias",
        "stages.2.blocks.35.preffn_bn.weight",
        "transitions.2.1.conv.weight",
        "norm.running_mean",
        "head.weight",
    } <= keys  # the deploy-form keys (large_kernel.lkb_reparam.*) are checked in test_repvgg.py


def test_slak_tiny_kernels_widths_depths_match_paper(models: dict[str, nn.Module]) -> None:
    model = models["slak_tiny"]
    kernels, widths, depths = [], [], []
    for stage in model.stages:
        blocks = [b for b in stage if isinstance(b, SLaKBlock)]
        depths.append(len(blocks))
        widths.append(blocks[0].pwconv1.in_features)
        assert all(b.pwconv1.out_features == 4 * widths[-1] for b in blocks)
        convs = [b.large_kernel for b in blocks]
        assert len({c.kernel_size for c in convs}) == 1
        kernels.append(convs[0].kernel_size)
        for conv in convs:
            assert conv.Decom1 is not None and conv.Decom2 is not None and conv.small_conv is not None
            big = conv.kernel_size
            assert conv.Decom1.conv.kernel_size == (big, 5)
            assert conv.Decom2.conv.kernel_size == (5, big)
            assert conv.small_conv.conv.kernel_size == (5, 5)
            for branch in (conv.Decom1.conv, conv.Decom2.conv, conv.small_conv.conv):
                assert branch.groups == branch.in_channels == branch.out_channels == widths[-1]
    assert kernels == [51, 49, 47, 13]
    assert widths == [int(96 * 1.3), int(192 * 1.3), int(384 * 1.3), int(768 * 1.3)] == [124, 249, 499, 998]
    assert depths == [3, 3, 9, 3]


@pytest.mark.parametrize("size", [(7, 7), (12, 9), (3, 20)])
def test_slak_decomposed_conv_keeps_feature_map_size(size: tuple[int, int]) -> None:
    conv = DecomposedLargeKernelConv(4, 51, 5).eval()
    x = torch.randn(1, 4, *size)
    with torch.no_grad():
        assert conv(x).shape == x.shape
        conv.reparameterize()
        assert conv(x).shape == x.shape


def test_slak_state_dict_uses_official_keys(models: dict[str, nn.Module]) -> None:
    keys = set(models["slak_tiny"].state_dict())
    assert {
        "downsample_layers.0.0.weight",
        "downsample_layers.0.1.weight",
        "downsample_layers.3.1.weight",
        "stages.0.0.large_kernel.Decom1.conv.weight",
        "stages.0.0.large_kernel.Decom2.bn.running_var",
        "stages.0.0.large_kernel.small_conv.conv.weight",
        "stages.2.8.gamma",
        "stages.3.2.pwconv2.weight",
        "norm.weight",
        "head.bias",
    } <= keys


def test_convnext_tiny_block_design(models: dict[str, nn.Module]) -> None:
    model = models["convnext_tiny"]
    blocks = [m for m in model.modules() if isinstance(m, CNBlock)]
    assert len(blocks) == 3 + 3 + 9 + 3
    for block in blocks:
        dw = block.block[0]
        assert isinstance(dw, nn.Conv2d) and dw.kernel_size == (7, 7) and dw.groups == dw.in_channels
    assert sorted({b.block[0].in_channels for b in blocks}) == [96, 192, 384, 768]


@pytest.mark.parametrize("name", list(MODEL_KWARGS))
def test_convnext_replknet_slak_drop_path_is_inert_in_eval(models: dict[str, nn.Module], name: str) -> None:
    model = models[name]
    assert not model.training
    layers = [m for m in model.modules() if isinstance(m, StochasticDepth)]
    assert any(m.p > 0 for m in layers)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        first = model(x)
        assert torch.equal(model(x), first)
        rates = [m.p for m in layers]
        for m in layers:
            m.p = 0.0
        try:
            assert torch.equal(model(x), first)  # the same as the model built without drop path
        finally:
            for m, rate in zip(layers, rates, strict=True):
                m.p = rate


def test_convnext_stochastic_depth_drops_rows_only_in_training() -> None:
    layer = StochasticDepth(0.5)
    x = torch.ones(64, 3, 2, 2)
    layer.train()
    out = layer(x)
    per_row = out.flatten(1)
    assert set(per_row.unique().tolist()) == {0.0, 2.0}  # dropped rows are 0, kept rows rescaled by 1 / (1 - p)
    assert all(len(row.unique()) == 1 for row in per_row)
    layer.eval()
    assert layer(x) is x
