"""Fusion (BatchNorm folding, re-parameterization) checked numerically against the unfused model, for every zoo model
(one per family by default, the rest under ``-m slow``).

Metric: max relative error = max|fused - unfused| / max|unfused| over the logits. The fold itself runs in float32 (the
production path); both models are then cast to float64 for the forward pass, so the comparison measures the fold's
algebra and the rounding of the folded float32 weights, not float32 accumulation noise of a 150-layer forward.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from conftest import registry_sweep
from torch import nn

from edgeconv.fuse import fold_batchnorm, fuse_model, reparameterize
from edgeconv.fuse.fold import _fold_pair
from edgeconv.zoo import get_spec
from edgeconv.zoo.layers import channel_shuffle

BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine parameters: an identity BN would make folding look right when it is not."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, BATCHNORMS) and module.running_mean is not None:
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
                module.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
                if module.weight is not None:
                    module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                    module.bias.copy_(torch.randn(n, generator=generator) * 0.2)


def sample_input(name: str, model: nn.Module) -> torch.Tensor:
    """One image (or clip, of the model's frames) at the smallest of a few reduced resolutions that the model accepts,
    else at its default size."""
    spec = get_spec(name)
    channels, *frames, height, width = spec.input_size  # frames: [T] for a clip model (C, T, H, W)
    side = max(height, width)
    candidates = [s for s in (16, 32, 64, 96, 160) if s < side and s >= side // 8] if side > 32 else [16]
    candidates = ([spec.min_input] if spec.min_input else []) + candidates
    for size in candidates:
        small = torch.randn(1, channels, *frames, size, size)
        try:
            with torch.inference_mode():
                model(small)
            return small
        except Exception:  # fixed-size classifier heads, cells that need a minimum map size
            continue
    return torch.randn(1, *spec.input_size)


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def batchnorms_after_ops(model: nn.Module, x: torch.Tensor) -> list[tuple[str, str]]:
    """Independent of the fuser's fx analysis: (bn, op) where the BatchNorm's input tensor *is* a conv/linear output."""
    produced: dict[int, str] = {}
    keep: list[torch.Tensor] = []  # keeps outputs alive so id() values are not reused during the pass
    left: list[tuple[str, str]] = []
    names = {m: n for n, m in model.named_modules()}

    def after_op(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        keep.append(output)
        produced[id(output)] = names[module]

    def before_bn(module: nn.Module, args: tuple) -> None:
        if args and id(args[0]) in produced:
            left.append((names[module], produced[id(args[0])]))

    handles = []
    for module in model.modules():
        if isinstance(module, FOLDABLE):
            handles.append(module.register_forward_hook(after_op))
        elif isinstance(module, BATCHNORMS):
            handles.append(module.register_forward_pre_hook(before_bn))
    with torch.inference_mode():
        model(x)
    for handle in handles:
        handle.remove()
    return left


@pytest.mark.parametrize("name", registry_sweep())
def test_fused_matches_unfused(name: str, zoo_model: Callable[..., nn.Module]) -> None:
    model = zoo_model(name)
    randomize_batchnorm(model)
    x = sample_input(name, model)
    report = fuse_model(model)
    assert report.params_after <= report.params_before
    left = batchnorms_after_ops(report.model, x)
    with torch.inference_mode():  # both models are private to this test: cast in place, no copies
        expected = model.double()(x.double())
        actual = report.model.double()(x.double())
    err = relative_error(actual, expected)
    assert err <= 1e-5, f"{name}: fused vs unfused max relative error {err:.2e} > 1e-5"
    for bn_name, op_name in left:
        # A BN left right after a conv must be unsafe to fold (the conv output has another reader): prove it by
        # folding it anyway and seeing the output change.
        trial = copy.deepcopy(report.model)
        _fold_pair(trial.get_submodule(op_name), trial.get_submodule(bn_name))
        parent, _, attr = bn_name.rpartition(".")
        setattr(trial.get_submodule(parent) if parent else trial, attr, nn.Identity())
        with torch.inference_mode():
            changed = relative_error(trial(x.double()), expected)
        assert changed > 1e-5, f"{name}: {bn_name} after {op_name} was foldable but left unfolded"
    named = dict(report.model.named_modules())
    for bn_name, why in report.unfoldable:
        assert isinstance(named[bn_name], BATCHNORMS) and why
    assert not any(isinstance(m, nn.Dropout) for m in report.model.modules())


def test_fold_covers_grouped_depthwise_transposed_and_linear() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.BatchNorm2d(8),  # depthwise
        nn.Conv2d(8, 12, 1, groups=4),
        nn.BatchNorm2d(12),
        nn.ReLU(),  # grouped
        nn.ConvTranspose2d(12, 8, 2, stride=2, groups=4, bias=False),
        nn.BatchNorm2d(8),  # grouped transposed
        nn.ConvTranspose2d(8, 6, 3, padding=1),
        nn.BatchNorm2d(6, affine=False),
        nn.Flatten(),
        nn.Linear(6 * 16 * 16, 20),
        nn.BatchNorm1d(20),
        nn.Dropout(0.5),
        nn.Linear(20, 5),
    )
    randomize_batchnorm(model)
    model.eval()
    report = fuse_model(model)
    assert len(report.folded) == 6 and report.unfoldable == []
    assert not any(isinstance(m, (*BATCHNORMS, nn.Dropout, nn.Identity)) for m in report.model.modules())
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    with torch.inference_mode():
        assert relative_error(report.model.double()(x), model.double()(x)) <= 1e-12 * 1e6  # float32 weights: ~1e-7
    assert report.params_after < report.params_before


class SharedOutput(nn.Module):
    """conv output read twice: folding the BN into the conv would corrupt the skip path."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


class PreActivation(nn.Module):
    """BN -> ReLU -> conv: nothing precedes the BN, so it must be reported, not folded."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(4)
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(torch.relu(self.bn(x)))


def test_unsafe_and_preactivation_batchnorms_are_reported_not_folded() -> None:
    model = nn.Sequential(SharedOutput(), PreActivation()).eval()
    randomize_batchnorm(model)
    report = fuse_model(model)
    assert report.folded == []
    assert {name for name, _ in report.unfoldable} == {"0.bn", "1.bn"}
    x = torch.randn(2, 4, 6, 6)
    with torch.inference_mode():
        assert relative_error(report.model(x), model(x)) < 1e-6


class ShapeBranching(nn.Module):
    """fx cannot trace a forward that branches on a tensor value; its children are still analysed one by one."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(4, 8, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.conv = nn.Conv2d(8, 8, 1)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        if y.sum() > 0:  # data-dependent control flow
            y = channel_shuffle(y, 2)
        return self.bn(self.conv(y))


def test_untraceable_module_is_split_and_the_rest_reported() -> None:
    model = ShapeBranching().eval()
    randomize_batchnorm(model)
    report = fuse_model(model)
    assert report.folded == [("block.0", "block.1")]
    assert [name for name, _ in report.unfoldable] == ["bn"]
    assert "could not be traced" in report.unfoldable[0][1]
    x = torch.randn(2, 4, 5, 5)
    with torch.inference_mode():
        assert relative_error(report.model(x), model(x)) < 1e-6


class TwoBranch(nn.Module):
    """A minimal RepVGG-style block: 3x3 + 1x1 branches, merged by its own ``reparameterize``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv3 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv1 = nn.Conv2d(4, 4, 1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(x) + self.conv1(x) if self.conv1 is not None else self.conv3(x)

    def reparameterize(self) -> None:
        self.calls += 1
        if self.conv1 is None:
            return
        with torch.no_grad():
            self.conv3.weight[:, :, 1:2, 1:2] += self.conv1.weight
            self.conv3.bias += self.conv1.bias
        self.conv1 = None


def test_reparameterize_calls_every_hook_and_is_safe_twice() -> None:
    model = nn.Sequential(TwoBranch(), nn.ReLU(), TwoBranch()).eval()
    x = torch.randn(1, 4, 6, 6)
    with torch.inference_mode():
        expected = model(x)
    fused = copy.deepcopy(model)
    assert reparameterize(fused) == ["0", "2"]
    assert reparameterize(fused) == ["0", "2"]
    with torch.inference_mode():
        assert relative_error(fused(x), expected) < 1e-6
    report = fuse_model(model)
    assert report.reparameterized == ["0", "2"] and report.params_after < report.params_before
    assert model[0].conv1 is not None  # the input model is untouched


def test_fold_batchnorm_returns_a_copy_in_eval_mode() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    fused = fold_batchnorm(model)
    assert model.training and not fused.training
    assert isinstance(model[1], nn.BatchNorm2d) and len(fused) == 1
