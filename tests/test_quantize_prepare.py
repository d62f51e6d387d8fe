"""Cross-layer equalization keeps the float function; bias correction removes the mean error of quantized weights."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from edgeconv.quantize.prepare import (
    ChannelClip,
    IdentitySplitConv,
    PaddedConv2d,
    ShiftedClip,
    WeightQuantScheme,
    center_unsigned_activations,
    correct_bias,
    equalize_depthwise_inputs,
    equalize_model,
    find_equalization_pairs,
    split_identity_taps,
)


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


def _symmetric_int8_error(x: torch.Tensor) -> float:
    scale = x.abs().max() / 127
    return float((torch.clamp(torch.round(x / scale), -127, 127) * scale - x).pow(2).mean())


def test_centering_keeps_the_function_and_halves_the_int8_step() -> None:
    net = _net(nn.ReLU6).requires_grad_(False)
    x = torch.randn(8, 3, 16, 16) * 3
    before = net(x)
    plain = net[:4](x)  # the depthwise conv's ReLU6 output, which feeds the unpadded 1x1 conv
    centred = copy.deepcopy(net)
    offsets = center_unsigned_activations(centred, [x[:4], x[4:]], percentile=100.0)
    assert list(offsets) == ["1", "3"] and isinstance(centred[1], ShiftedClip) and isinstance(centred[3], ShiftedClip)
    # conv "2" pads: it now pads with -c, the zero of the shifted domain (and is also the next pair's conv1).
    assert isinstance(centred[2], PaddedConv2d) and centred[2].pad_value == -offsets["1"]
    assert centred[2].padding == (0, 0) and centred[2].pads == (1, 1, 1, 1)
    torch.testing.assert_close(centred(x), before, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(centred[:2](x), net[:2](x) - offsets["1"], rtol=1e-4, atol=1e-5)
    shifted = centred[:4](x)
    top = float(plain.max())
    torch.testing.assert_close(shifted, plain - top / 2, rtol=1e-4, atol=1e-5)
    assert float(shifted.min()) == -top / 2 and abs(float(shifted.max()) - top / 2) < 1e-4 * top
    # Symmetric int8 (TensorRT's grid): the centred tensor's error is about a quarter (half the step, squared).
    assert _symmetric_int8_error(shifted) < 0.4 * _symmetric_int8_error(plain)


def test_centering_leaves_convs_that_pad_their_own_way_alone() -> None:
    """A Conv2dSame pads inside its forward (TF 'SAME'): shifting its input would shift its padding. Only its 1x1 form,
    which never pads, is centred."""
    from edgeconv.zoo.efficientnet import Conv2dSame

    net = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU6(), Conv2dSame(8, 8, 3, 2, groups=8), nn.ReLU6(), Conv2dSame(8, 4, 1)
    ).eval()
    x = torch.rand(2, 3, 15, 15) * 4
    before = net(x)
    assert list(center_unsigned_activations(net, [x], percentile=100.0)) == ["3"]
    assert type(net[2]) is Conv2dSame and isinstance(net[1], nn.ReLU6)
    torch.testing.assert_close(net(x), before, rtol=1e-4, atol=1e-5)


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


class _Bottlenecks(nn.Module):
    """A linear-bottleneck stage: stem conv (no activation) -> two residual blocks -> a dense head conv. The stream's
    channels span 1000x in range, as in MobileNetV2's late stages."""

    def __init__(self, stem_relu: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.stem_act = nn.ReLU() if stem_relu else None
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(8, 16, 1), nn.ReLU6(), nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.Conv2d(16, 8, 1)
            )
            for _ in range(2)
        )
        self.head = nn.Conv2d(8, 4, 1)
        with torch.no_grad():
            spread = torch.logspace(-1.5, 1.5, 8)
            for conv in [self.stem, *(b[3] for b in self.blocks)]:
                conv.weight.mul_(spread.view(-1, 1, 1, 1))
                conv.bias.mul_(spread)
            for conv in [*(b[0] for b in self.blocks), self.head]:
                conv.weight.div_(spread.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.stem_act is not None:
            x = self.stem_act(x)
        for block in self.blocks:
            x = x + block(x)
        return self.head(x)


def test_residual_stream_equalization_keeps_the_function_and_evens_the_ranges() -> None:
    from edgeconv.quantize.prepare import equalize_residual_streams, find_residual_streams

    torch.manual_seed(0)
    net = _Bottlenecks().eval()
    x = torch.randn(16, 3, 12, 12)
    found = find_residual_streams(net)
    assert found is not None
    (stream,) = found[1]
    assert stream.producers == ["stem", "blocks.0.3", "blocks.1.3"]
    assert stream.consumers == ["blocks.0.0", "blocks.1.0", "head"]

    def stream_ranges(model: _Bottlenecks) -> torch.Tensor:
        with torch.no_grad():
            t = model.stem(x)
            return (t + model.blocks[0](t)).abs().amax(dim=(0, 2, 3))

    before, reference = stream_ranges(net), net(x).detach()
    equalized = copy.deepcopy(net)
    assert equalize_residual_streams(equalized, [x[:8], x[8:]], alpha=0.5) == ["stem,blocks.0.3,blocks.1.3"]
    after = stream_ranges(equalized)
    torch.testing.assert_close(equalized(x), reference, rtol=1e-4, atol=1e-4 * reference.abs().max().item())
    spread_before = (before.max() / before.min()).item()
    spread_after = (after.max() / after.min()).item()
    assert spread_after < spread_before**0.6, (spread_before, spread_after)  # alpha 0.5 halves the log-spread


def test_residual_stream_with_a_nonlinear_producer_is_left_alone() -> None:
    from edgeconv.quantize.prepare import equalize_residual_streams

    net = _Bottlenecks(stem_relu=True).eval()  # ReLU(stem) writes the stream: a per-channel scale would not commute
    original = copy.deepcopy(net.state_dict())
    assert equalize_residual_streams(net, [torch.randn(4, 3, 8, 8)]) == []
    assert all(torch.equal(v, original[k]) for k, v in net.state_dict().items())


def _int8_sqnr_db(weight: torch.Tensor) -> float:
    weight = weight.detach()
    scale = weight.abs().flatten(1).amax(1).reshape(-1, 1, 1, 1) / 127
    error = weight - (weight / scale).round() * scale
    return float(10 * torch.log10(weight.pow(2).sum() / error.pow(2).sum()))


def test_identity_split_keeps_the_function_and_the_3x3_range() -> None:
    from edgeconv.fuse import fuse_model
    from edgeconv.zoo.repvgg import RepVGGBlock

    torch.manual_seed(0)
    net = nn.Sequential(RepVGGBlock(8, 16, stride=2), RepVGGBlock(16, 16), RepVGGBlock(16, 16)).eval()
    for bn in [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]:
        bn.running_var.uniform_(0.05, 0.5)  # small identity-branch variances: large centre taps, as in trained RepVGG
    fused = fuse_model(net).model
    before = [_int8_sqnr_db(fused[i].rbr_reparam.weight) for i in (1, 2)]
    split = copy.deepcopy(fused)
    assert split_identity_taps(split) == ["1.rbr_reparam", "2.rbr_reparam"]  # not the stride-2 block without identity
    x = torch.randn(2, 8, 12, 12)
    torch.testing.assert_close(split(x), fused(x), rtol=1e-5, atol=1e-5)
    for i, sqnr in zip((1, 2), before, strict=True):
        module = split[i].rbr_reparam
        assert isinstance(module, IdentitySplitConv)
        assert _int8_sqnr_db(module.conv.weight) > sqnr + 6  # the identity tap no longer sets the channel's range
    assert split_identity_taps(split) == []  # idempotent: the split kernels no longer qualify


def test_identity_split_leaves_ordinary_convs_alone() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1)).eval()
    assert split_identity_taps(net) == []


# --- shared activations (issue 17) ----------------------------------------------------------------------------------


def _fused_resnet(name: str) -> nn.Module:
    from edgeconv.fuse import fuse_model
    from edgeconv.zoo import create_model

    torch.manual_seed(0)
    return fuse_model(create_model(name)).model


def test_split_shared_activations_gives_resnets_cle_and_centring() -> None:
    """ResNet's blocks call one ``self.relu`` 2-3 times: no pair before the split, every conv -> ReLU -> conv after."""
    from edgeconv.quantize.prepare import split_shared_activations

    x = torch.randn(2, 3, 96, 96)
    for name, blocks, per_block in (("resnet18", 8, 1), ("resnet50", 16, 2)):
        model = _fused_resnet(name)
        keys, reference = list(model.state_dict()), model(x).detach()
        assert find_equalization_pairs(model) == []
        added = split_shared_activations(model)
        # BasicBlock: relu after the add gets a copy; Bottleneck: the 2nd and 3rd call sites do.
        assert len(added) == blocks * per_block and "layer1.0.relu_1" in added
        assert list(model.state_dict()) == keys and isinstance(model.layer1[0].relu_1, nn.ReLU)
        assert torch.equal(model(x), reference)  # the same operations in the same order: bit-exact
        assert split_shared_activations(model) == []  # idempotent
        pairs = find_equalization_pairs(model)
        assert len(pairs) == blocks * per_block and ("layer1.0.conv1", "layer1.0.relu", "layer1.0.conv2") in pairs
        equalized = copy.deepcopy(model)
        assert len(equalize_model(equalized).equalized) == blocks * per_block
        torch.testing.assert_close(equalized(x), reference, rtol=1e-4, atol=1e-5 * reference.abs().max().item())
        centred = copy.deepcopy(model)
        assert len(center_unsigned_activations(centred, [x])) == blocks * per_block
        torch.testing.assert_close(centred(x), reference, rtol=1e-4, atol=2e-5 * reference.abs().max().item())


def test_split_shared_activations_handles_aliases_and_leaves_parametric_ones() -> None:
    from edgeconv.quantize.prepare import split_shared_activations

    relu = nn.ReLU()
    net = nn.Sequential(nn.Conv2d(3, 4, 1), relu, nn.Conv2d(4, 4, 1), relu, nn.Conv2d(4, 2, 1)).eval()
    x = torch.randn(2, 3, 5, 5)
    reference = net(x)
    assert split_shared_activations(net) == ["3"]  # one module under two names: the second name gets a copy
    assert net[1] is not net[3] and torch.equal(net(x), reference)
    assert len(find_equalization_pairs(net)) == 2
    block = nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU())
    twice = nn.Sequential(nn.Conv2d(3, 4, 1), block, block).eval()  # a shared block, not a shared activation
    assert split_shared_activations(twice) == [] and twice[1] is twice[2]

    class SharedPReLU(nn.Module):  # a PReLU has a weight: sharing it is part of the model, not an accident
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.act = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 1), nn.PReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.b(self.act(self.a(x))))

    shared = SharedPReLU().eval()
    assert split_shared_activations(shared) == [] and type(shared) is SharedPReLU


def test_split_shared_activations_rewrites_only_the_owner_forward() -> None:
    """The owner keeps its class (a subclass of it), its attributes and later module swaps still take effect."""
    from edgeconv.quantize.prepare import split_shared_activations

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.act = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU6()
            self.note = "kept"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.b(self.act(self.a(x))) + x)

    net = nn.Sequential(Block(), Block()).eval()
    x = torch.randn(2, 4, 6, 6) * 4
    reference = net(x)
    assert split_shared_activations(net) == ["0.act_1", "1.act_1"]
    assert isinstance(net[0], Block) and net[0].note == "kept" and torch.equal(net(x), reference)
    net[0].act_1 = nn.Identity()  # the rewritten forward reads the attribute at each call, as the original did
    assert not torch.equal(net(x), reference)
    clone = copy.deepcopy(net)  # deep copies (fuse_model, the int8 passes) keep the rewritten forward
    assert torch.equal(clone(x), net(x)) and clone[1].act_1 is not net[1].act_1


def _depthwise_input_ranges(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    return net[:2](x).transpose(0, 1).flatten(1).amax(1)


def test_depthwise_input_equalization_is_exact_and_evens_the_relu6_ranges() -> None:
    net = _net(nn.ReLU6)
    original = copy.deepcopy(net)
    x = torch.randn(8, 3, 16, 16) * 3
    spread = _depthwise_input_ranges(net, x)
    assert spread.max() / spread.min() > 30  # the dense conv's channels span three decades
    scales = equalize_depthwise_inputs(net, x.numpy(), policy=(100.0, 1.0))  # one policy for every layer
    assert list(scales) == ["1"]  # only dense -> ReLU6 -> depthwise; depthwise -> ReLU6 -> 1x1 is left alone
    assert isinstance(net[1], ChannelClip) and isinstance(net[3], nn.ReLU6)
    for probe in (x, torch.randn(4, 3, 16, 16) * 10):  # exact in float, beyond the calibration ranges too
        torch.testing.assert_close(net(probe), original(probe), rtol=1e-5, atol=1e-5)
    # every channel now spans the widest one's range (at most 100x its own): one uint8 scale suits them all
    expected = torch.minimum(spread * 100, spread.max())
    torch.testing.assert_close(_depthwise_input_ranges(net, x), expected, rtol=1e-5, atol=1e-6)


def test_depthwise_policy_left_one_photo_out_equalizes_steady_ranges_and_spares_a_photo_that_exceeds_them() -> None:
    x = (torch.randn(16, 3, 16, 16) * 3).numpy()
    photos = np.arange(16) % 4
    net = _net(nn.ReLU6)
    original = copy.deepcopy(net)
    scales = equalize_depthwise_inputs(net, x, photos)
    assert list(scales) == ["1"] and scales["1"] > 1  # four photos alike: finer steps pay, the ranges are stretched
    torch.testing.assert_close(net(torch.from_numpy(x)), original(torch.from_numpy(x)), rtol=1e-5, atol=1e-5)
    loud = x.copy()
    loud[photos == 3] *= 30  # one photo drives every channel far past what the other three showed
    net = _net(nn.ReLU6)
    assert equalize_depthwise_inputs(net, loud, photos) == {}  # stretching would clip it: left as it was
    assert isinstance(net[1], nn.ReLU6)


def test_merged_channel_clips_fuse_and_agree_inside_the_calibration_ranges() -> None:
    import io

    import numpy as np
    import onnx

    from edgeconv.onnxgraph import run_onnx
    from edgeconv.quantize.qdq.clips import merge_channel_clips

    net = _net(nn.ReLU6)
    original = copy.deepcopy(net)
    x = torch.randn(8, 3, 16, 16) * 3
    equalize_depthwise_inputs(net, x.numpy())
    buffer = io.BytesIO()
    torch.onnx.export(net, (x[:1],), buffer, opset_version=17, dynamo=False, input_names=["input"])
    model = onnx.load_from_string(buffer.getvalue())
    assert [n.op_type for n in model.graph.node].count("Min") == 1
    assert merge_channel_clips(model) == 1
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert "Min" not in ops and ops.count("Relu") == 1 and ops.count("Clip") == 2  # Conv + Clip: what ORT fuses
    clip = next(n for n in model.graph.node if n.op_type == "Clip" and n.input[1].endswith("clip_low"))
    high = next(i for i in model.graph.initializer if i.name == clip.input[2])
    assert float(onnx.numpy_helper.to_array(high)) == 6.0  # the saturated channel keeps ReLU6's clip
    got = run_onnx(model.SerializeToString(), x.numpy())
    np.testing.assert_allclose(got, original(x).detach().numpy(), rtol=1e-4, atol=1e-5)
