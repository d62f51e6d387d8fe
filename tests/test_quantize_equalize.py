"""Cross-layer equalization keeps the float function; bias correction removes the mean error of quantized weights."""

from __future__ import annotations

import copy

import torch
from torch import nn

from edgeconv.quantize.equalize import WeightQuantScheme, correct_bias, equalize_model, find_equalization_pairs


def _net(act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Dense -> depthwise -> pointwise, with badly mismatched channel ranges (what BN folding produces)."""
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        act(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        act(),
        nn.Conv2d(8, 6, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 4),
    ).eval()
    with torch.no_grad():
        net[0].weight.mul_(torch.logspace(-2, 1, 8).reshape(-1, 1, 1, 1))
        net[2].weight.mul_(torch.logspace(1, -2, 8).reshape(-1, 1, 1, 1))
    return net


def _ranges(conv: nn.Conv2d) -> torch.Tensor:
    return conv.weight.abs().flatten(1).amax(1)


def test_cle_preserves_the_function_and_equalizes_ranges() -> None:
    net = _net()
    x = torch.randn(4, 3, 16, 16)
    before = net(x)
    spread_before = _ranges(net[2]).max() / _ranges(net[2]).min()
    report = equalize_model(net)
    assert report.equalized == [("0", "2"), ("2", "4")]
    torch.testing.assert_close(net(x), before, rtol=1e-4, atol=1e-5)
    assert _ranges(net[2]).max() / _ranges(net[2]).min() < spread_before / 10


def test_cle_skips_relu6_pairs_by_default_and_can_replace_them() -> None:
    net = _net(nn.ReLU6)
    x = torch.randn(2, 3, 16, 16) * 5
    before = net(x)
    report = equalize_model(copy.deepcopy(net))
    assert report.equalized == [] and len(report.skipped) == 2 and "ReLU6" in report.skipped[0][2]
    replaced = copy.deepcopy(net)
    rep = equalize_model(replaced, relu6="relu")
    assert rep.relu6_replaced == ["1", "3"] and isinstance(replaced[1], nn.ReLU)
    # ReLU6 -> ReLU changes the function wherever activations pass 6 (why it is opt-in).
    assert not torch.allclose(replaced(x), before, atol=1e-3)


def test_pairs_need_a_single_reader() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.act, self.b = nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.act(self.a(x))
            return self.b(y) + y  # y has a second reader: scaling it would change the sum

    assert find_equalization_pairs(Branchy()) == []


def test_bias_correction_reduces_the_mean_output_error() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1)).eval()
    scheme = WeightQuantScheme(qmax=7)  # 4-bit weights make the bias visible above sampling noise
    data = [torch.rand(8, 3, 12, 12) for _ in range(4)]  # post-ReLU-like: positive inputs have non-zero mean

    def quantized(model: nn.Module) -> nn.Module:
        q = copy.deepcopy(model)
        with torch.no_grad():
            for m in q.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.copy_(scheme.fake_quantize(m.weight))
        return q

    def mean_error(model: nn.Module) -> float:
        q = quantized(model)
        with torch.no_grad():
            errs = [(q(x) - net(x)).mean(dim=(0, 2, 3)) for x in data]
        return float(torch.stack(errs).mean(0).abs().mean())

    before = mean_error(net)
    corrected = copy.deepcopy(net)
    applied = correct_bias(corrected, data, scheme)
    assert set(applied) == {"0", "2"}
    after = mean_error(corrected)
    assert after < before / 3, (before, after)
