"""Structural re-parameterization of the zoo's multi-branch models, checked numerically against the unfused model.

Error measure everywhere: max|after - before| / max|before| over the logits of a random batch, in eval mode, with every
BatchNorm's running statistics and affine parameters drawn at random (identity statistics would hide a misplaced BN).
Reduced inputs keep CI fast; one model runs at its full 224x224.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgeconv.zoo import create_model, list_models
from edgeconv.zoo.replknet import ReparamLargeKernelConv
from edgeconv.zoo.repvgg import REPVGG_CONFIGS, RepVGGBlock
from edgeconv.zoo.slak import DecomposedLargeKernelConv

REPVGG = list_models("repvgg_*")
TOLERANCE = 1e-5


def randomize_batchnorm(model: nn.Module) -> None:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)


def relative_error(after: torch.Tensor, before: torch.Tensor) -> float:
    return ((after - before).abs().max() / before.abs().max()).item()


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_reparameterization(
    name: str, size: int, merged: type[nn.Module] | None = None
) -> tuple[nn.Module, float, int, int]:
    """Build zoo model ``name`` and reparameterize it; return (model, relative error, params before, params after).

    ``merged``: the block type whose BNs must all be gone; None means no BatchNorm may be left anywhere.
    """
    model = create_model(name)
    randomize_batchnorm(model)
    x = torch.randn(2, 3, size, size)
    with torch.inference_mode():
        before = model(x)
    params_before = count(model)
    assert model.reparameterize() is model
    with torch.inference_mode():
        after = model(x)
    scopes = [m for m in model.modules() if isinstance(m, merged)] if merged else [model]
    assert scopes and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for s in scopes for m in s.modules())
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    with torch.inference_mode():
        probe = model(x[:1, :, :32, :32])
    model.reparameterize()  # a second call must change nothing: same tensor objects, same output
    assert list(tensors) == [*dict(model.named_parameters()), *dict(model.named_buffers())]
    assert all(t is tensors[k] for k, t in [*model.named_parameters(), *model.named_buffers()])
    with torch.inference_mode():
        assert torch.equal(model(x[:1, :, :32, :32]), probe)
    return model, relative_error(after, before), params_before, count(model)


@pytest.mark.parametrize("name", REPVGG)
def test_repvgg_reparameterize_matches_multibranch(name: str) -> None:
    _, error, params_before, params_after = check_reparameterization(name, 64)
    assert error <= TOLERANCE, f"{name}: relative error {error:.2e}"
    deploy = REPVGG_CONFIGS[name.removeprefix("repvgg_")].deploy_params
    assert abs(params_after - deploy) / deploy <= 0.02, f"{name}: {params_after:,} deploy params vs paper {deploy:,.0f}"
    assert params_after < params_before


def test_repvgg_a0_at_224_and_deploy_params() -> None:
    _, error, params_before, params_after = check_reparameterization("repvgg_a0", 224)
    assert error <= TOLERANCE, f"relative error {error:.2e}"
    assert abs(params_after - 8.3e6) / 8.3e6 <= 0.02  # the figure: "RepVGG-A0 deploy form: 8.3 M"
    assert abs(params_before - 9.11e6) / 9.11e6 <= 0.01  # training-time form


def test_repvgg_deploy_form_is_plain_3x3_conv_relu() -> None:
    model = create_model("repvgg_a0").reparameterize()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.kernel_size == (3, 3) and c.bias is not None for c in convs)
    assert sum(isinstance(m, RepVGGBlock) for m in model.modules()) == len(convs) == 22  # 1 + 2 + 4 + 14 + 1
    assert all(
        m.rbr_dense is None and m.rbr_1x1 is None and m.rbr_identity is None
        for m in model.modules()
        if isinstance(m, RepVGGBlock)
    )


def test_repvgg_state_dict_uses_official_keys() -> None:
    keys = create_model("repvgg_a0").state_dict().keys()
    assert {
        "stage0.rbr_dense.conv.weight",
        "stage0.rbr_1x1.bn.running_var",
        "stage1.1.rbr_identity.weight",
        "stage4.0.rbr_dense.bn.bias",
        "linear.weight",
    } <= set(keys)
    assert "stage1.0.rbr_identity.weight" not in keys  # stride 2: no identity branch
    deploy = create_model("repvgg_a0").reparameterize().state_dict().keys()
    assert "stage3.13.rbr_reparam.weight" in deploy and "stage3.13.rbr_reparam.bias" in deploy


def test_repvgg_block_in_float64_is_exact() -> None:
    # One block in float64 shows the merge itself is exact; the float32 model errors above are rounding only.
    block = RepVGGBlock(16, 16).double().eval()
    randomize_batchnorm(block)
    x = torch.randn(2, 16, 9, 9, dtype=torch.float64)
    with torch.no_grad():
        before = block(x)
        block.reparameterize()
        assert relative_error(block(x), before) < 1e-13
        assert block.rbr_reparam is not None and block.rbr_reparam.weight.dtype == torch.float64


def test_replknet_reparameterize_matches_two_branches() -> None:
    model, error, params_before, params_after = check_reparameterization("replknet_31b", 64, ReparamLargeKernelConv)
    assert error <= TOLERANCE, f"relative error {error:.2e}"
    assert params_after < params_before
    deploy = set(model.state_dict())  # the official repository's deploy-form keys
    assert {
        "stages.3.blocks.2.large_kernel.lkb_reparam.weight",
        "stages.0.blocks.0.large_kernel.lkb_reparam.bias",
    } <= deploy
    assert not any("lkb_origin" in k or "small_conv" in k for k in deploy)


def test_replknet_large_kernel_merge_in_float64() -> None:
    conv = ReparamLargeKernelConv(8, 31, 5).double().eval()
    randomize_batchnorm(conv)
    x = torch.randn(1, 8, 40, 40, dtype=torch.float64)
    with torch.no_grad():
        before = conv(x)
        conv.reparameterize()
        assert conv.lkb_reparam is not None and conv.lkb_reparam.kernel_size == (31, 31)
        assert relative_error(conv(x), before) < 1e-13


def test_slak_reparameterize_matches_three_branches() -> None:
    _, error, params_before, params_after = check_reparameterization("slak_tiny", 64)
    assert error <= TOLERANCE, f"relative error {error:.2e}"
    assert params_after < params_before


def test_slak_decomposed_kernel_merge_in_float64() -> None:
    conv = DecomposedLargeKernelConv(8, 51, 5).double().eval()
    randomize_batchnorm(conv)
    x = torch.randn(1, 8, 57, 60, dtype=torch.float64)
    with torch.no_grad():
        before = conv(x)
        conv.reparameterize()
        assert conv.lkb_reparam_vertical is not None and conv.lkb_reparam_vertical.kernel_size == (51, 5)
        assert conv.lkb_reparam_horizontal is not None and conv.lkb_reparam_horizontal.kernel_size == (5, 51)
        assert relative_error(conv(x), before) < 1e-13
