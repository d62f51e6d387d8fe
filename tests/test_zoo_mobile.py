"""Family checks for the mobile zoo: width multipliers, input resolutions, group counts, TF padding, NASNet cells.

MobileNet V1's and ShuffleNet V1's resource tables are reproduced from the models themselves (conv / FC mult-adds
counted with forward hooks), against the figures printed in the papers. Counts, shapes and layer geometry are checked on
the meta device (no weights, no arithmetic); the numeric checks run on the CPU.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import meta_model
from torch import nn

from edgeconv.errors import InvalidArgumentError
from edgeconv.zoo import create_model
from edgeconv.zoo.efficientnet import Conv2dSame
from edgeconv.zoo.layers import make_divisible
from edgeconv.zoo.registry import count_params


def _macs_and_weights(model: nn.Module, resolution: int) -> tuple[float, int]:
    """Conv + FC multiply-accumulates at ``resolution`` and parameters without BN (the papers' conventions), from the
    output shapes: a meta-device model needs no arithmetic."""
    total = 0

    def hook(module: nn.Module, _: object, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            total += out.numel() * module.weight[0].numel()
        elif isinstance(module, nn.Linear):
            total += module.weight.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.inference_mode():
        device = next(model.parameters()).device
        assert model(torch.zeros(1, 3, resolution, resolution, device=device)).shape == (1, 1000)
    for handle in handles:
        handle.remove()
    weights = sum(p.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) for p in m.parameters())
    return total, weights


# --- MobileNet V1 -----------------------------------------------------------------------------------------------------

# Howard et al. 2017, Table 6 (width) and Table 7 (resolution): million mult-adds, million parameters.
V1_WIDTH_TABLE = [(1.0, 569, 4.2), (0.75, 325, 2.6), (0.5, 149, 1.3), (0.25, 41, 0.5)]
V1_RESOLUTION_TABLE = [(192, 418), (160, 290), (128, 186)]


@pytest.mark.parametrize(("width", "paper_macs", "paper_params"), V1_WIDTH_TABLE)
def test_mobilenet_v1_width_multiplier_reproduces_table_6(width: float, paper_macs: float, paper_params: float) -> None:
    model = meta_model("mobilenet_v1", width_mult=width)
    assert model.classifier.in_features == max(8, int(1024 * width))
    macs, weights = _macs_and_weights(model, 224)
    assert macs / 1e6 == pytest.approx(paper_macs, rel=0.01)
    assert weights / 1e6 == pytest.approx(paper_params, abs=0.05)


@pytest.mark.parametrize(("resolution", "paper_macs"), V1_RESOLUTION_TABLE)
def test_mobilenet_v1_any_resolution_reproduces_table_7(resolution: int, paper_macs: float) -> None:
    macs, _ = _macs_and_weights(meta_model("mobilenet_v1"), resolution)  # runs a forward pass at that resolution
    assert macs / 1e6 == pytest.approx(paper_macs, rel=0.01)


def test_mobilenet_v1_layer_types_are_clean() -> None:
    convs = [m for m in meta_model("mobilenet_v1").modules() if isinstance(m, nn.Conv2d)]
    standard = [c for c in convs if c.groups == 1 and c.kernel_size == (3, 3)]
    depthwise = [c for c in convs if c.groups == c.in_channels == c.out_channels and c.kernel_size == (3, 3)]
    pointwise = [c for c in convs if c.kernel_size == (1, 1) and c.groups == 1]
    assert (len(standard), len(depthwise), len(pointwise), len(convs)) == (1, 13, 13, 27)


# --- MobileNet V2 / V3 ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"])
def test_width_mult_changes_channels(name: str) -> None:
    narrow, wide = meta_model(name, width_mult=0.5), meta_model(name, width_mult=1.0)
    stem = wide.features[0][0].out_channels
    assert narrow.features[0][0].out_channels == make_divisible(stem * 0.5) < stem
    assert count_params(name, width_mult=0.5) < count_params(name)
    with torch.inference_mode():
        assert narrow(torch.empty(1, 3, 96, 96, device="meta")).shape == (1, 1000)


def test_mobilenet_v2_head_widens_only_above_one() -> None:
    assert meta_model("mobilenet_v2", width_mult=0.5).last_channel == 1280
    assert meta_model("mobilenet_v2_140").last_channel == 1792


@pytest.mark.parametrize("bad", [0.0, -1.0, 10.0])
def test_bad_width_mult_is_refused(bad: float) -> None:
    with pytest.raises(InvalidArgumentError, match="width_mult"):
        create_model("mobilenet_v2", width_mult=bad)


# --- ShuffleNet -------------------------------------------------------------------------------------------------------

# Zhang et al. 2018, Table 1: ShuffleNet 1x complexity (MFLOPs = mult-adds) per group count.
V1_GROUP_TABLE = [(1, 143), (2, 140), (3, 137), (4, 133), (8, 137)]


@pytest.mark.parametrize(("groups", "paper_macs"), V1_GROUP_TABLE)
def test_shufflenet_v1_groups_reproduce_table_1(groups: int, paper_macs: float) -> None:
    model = meta_model("shufflenet_v1", groups=groups)
    assert model.stage2[1].gconv1[0].groups == groups and model.stage2[0].gconv1[0].groups == 1
    macs, _ = _macs_and_weights(model, 224)
    assert macs / 1e6 == pytest.approx(paper_macs, rel=0.02)


@pytest.mark.parametrize(("width", "paper_params", "paper_macs"), [(1.5, 3.4, 292), (2.0, 5.4, 524)])
def test_shufflenet_v1_widths_match_mobilenet_v2_table(width: float, paper_params: float, paper_macs: float) -> None:
    model = meta_model("shufflenet_v1", groups=3, width_mult=width)
    macs, _ = _macs_and_weights(model, 224)
    assert count_params("shufflenet_v1", groups=3, width_mult=width) / 1e6 == pytest.approx(paper_params, rel=0.02)
    assert macs / 1e6 == pytest.approx(paper_macs, rel=0.03)


@pytest.mark.parametrize("groups", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("width", [0.25, 0.5, 1.0, 1.5, 2.0])
def test_shufflenet_v1_every_group_and_width_builds(groups: int, width: float) -> None:
    assert count_params("shufflenet_v1", groups=groups, width_mult=width) > 0  # channel splits are all valid


def test_shufflenet_v1_small_config_runs() -> None:
    model = create_model("shufflenet_v1", groups=8, width_mult=0.25, num_classes=10)
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)


@pytest.mark.parametrize("groups", [0, 5, 6, 16])
def test_shufflenet_v1_bad_groups_name_valid_values(groups: int) -> None:
    with pytest.raises(InvalidArgumentError, match=r"groups .* one of 1, 2, 3, 4, 8"):
        create_model("shufflenet_v1", groups=groups)


@pytest.mark.parametrize("width", [0.1, 2.5])
def test_shufflenet_v1_bad_width_names_range(width: float) -> None:
    with pytest.raises(InvalidArgumentError, match=r"\[0\.25, 2\.0\]"):
        create_model("shufflenet_v1", width_mult=width)


# --- EfficientNet -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "kernel"), [(16, 3), (15, 3), (16, 5), (15, 5)])
def test_conv2d_same_pads_like_tensorflow(size: int, kernel: int) -> None:
    conv = Conv2dSame(4, 4, kernel, 2, groups=4, bias=False)
    x = torch.randn(1, 4, size, size)
    total = max((-(-size // 2) - 1) * 2 + kernel - size, 0)
    before, after = total // 2, total - total // 2  # TF: the odd pixel goes bottom / right
    expected = F.conv2d(F.pad(x, (before, after, before, after)), conv.weight, None, 2, 0, 1, 4)
    torch.testing.assert_close(conv(x), expected, rtol=0, atol=0)
    assert conv(x).shape[-1] == -(-size // 2)


def test_efficientnet_lite_is_lite() -> None:
    model = meta_model("efficientnet_lite4")
    kinds = {type(m) for m in model.modules()}
    assert nn.ReLU6 in kinds and nn.SiLU not in kinds and not any("SqueezeExcitation" in k.__name__ for k in kinds)
    assert model.features[0][0].out_channels == 32 and model.classifier[1].in_features == 1280  # unscaled stem / head
    assert len(model.features[1]) == 1 and len(model.features[7]) == 1  # unscaled first / last stage depth
    assert isinstance(model.features[0][0], Conv2dSame)
    plain = meta_model("efficientnet_lite0", tf_same_padding=False)
    assert not any(isinstance(m, Conv2dSame) for m in plain.modules())


def test_efficientnet_compound_scaling_depths() -> None:
    depths = [len(stage) for stage in meta_model("efficientnet_b3").features[1:8]]
    assert depths == [2, 3, 3, 5, 5, 6, 2]  # ceil(1.4 * (1, 2, 2, 3, 3, 4, 1))


# --- NASNet -----------------------------------------------------------------------------------------------------------


def test_nasnet_a_mobile_runs_at_other_resolutions() -> None:
    model = create_model("nasnet_a_mobile")
    with torch.inference_mode():
        for size in (64, 97):  # even and odd maps at every reduction: TF 'SAME' padding handles both
            assert model(torch.randn(1, 3, size, size)).shape == (1, 1000)


def test_nasnet_a_mobile_reproduces_paper_table() -> None:
    macs, weights = _macs_and_weights(meta_model("nasnet_a_mobile"), 224)
    assert macs / 1e6 == pytest.approx(564, rel=0.01)  # Zoph et al. 2018, Table 3: 564 M mult-adds, 5.3 M params
    assert count_params("nasnet_a_mobile") / 1e6 == pytest.approx(5.3, rel=0.01)
