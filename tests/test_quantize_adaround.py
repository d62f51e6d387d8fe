"""Adaptive rounding (edgeconv.quantize.qdq.adaround) on both QDQ forms: weights stay on the graph's own 8-bit grid, one
step at most from nearest rounding, within the onnxruntime target's pair-sum limit; the rounding is re-applied to
re-quantized graphs; and the quantized model's output on held-out real-photo crops gets closer to FP32."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from test_quantize_int8 import OPTIONS, PREP, _export, _model
from torch import nn

from edgeconv.onnxgraph import run_onnx
from edgeconv.quantize.calibration import prepare_calibration
from edgeconv.quantize.fidelity import FidelityReport, sqnr_db
from edgeconv.quantize.options import Int8Options
from edgeconv.quantize.qdq.ort_static import StaticQuantizer
from edgeconv.quantize.qdq.weights import limit_pair_sums


def _weights(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per compute node: (integer weight, per-channel scale) as the graph runs it, for both QDQ forms."""
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    result = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm") or node.input[1] not in producer:
            continue
        dq = producer[node.input[1]]
        scale = inits[dq.input[1]]
        if dq.input[0] in inits:
            q = inits[dq.input[0]]
        else:  # tensorrt form: float weight -> Q -> DQ
            w = inits[producer[dq.input[0]].input[0]]
            q = np.clip(np.rint(w / scale.reshape((-1,) + (1,) * (w.ndim - 1))), -128, 127).astype(np.int8)
        result[node.name] = (q, scale)
    return result


def _outlier_model() -> nn.Module:
    """Three convs; in the last two, one weight per output channel 40x the largest other one, so that the per-channel
    8-bit grid is coarse for the rest and how each weight is rounded shows in the output (with ordinary weights the
    activations' 8-bit error dominates a model this small)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 10, 1)
    ).eval()
    with torch.no_grad():
        for conv in (model[2], model[4]):
            conv.weight.view(conv.weight.shape[0], -1)[:, 0] = 40 * conv.weight.abs().max()
    return model


@pytest.mark.parametrize("target", ["onnxruntime", "tensorrt"])
def test_adaround_keeps_the_grid_and_brings_outputs_closer(target: str, tmp_path: Path) -> None:
    fp32 = _export(_outlier_model(), tmp_path / "outlier.onnx")
    options = Int8Options(target=target, **OPTIONS)  # type: ignore[arg-type]
    data = prepare_calibration(PREP, options)
    graphs = {}
    for adaround in (False, True):
        work = tmp_path / str(adaround)
        work.mkdir()
        quantizer = StaticQuantizer(
            fp32, work, data.calibration, "input", replace(options, target=target, adaround=adaround), None
        )
        graphs[adaround] = quantizer(work / "q.onnx")
    rounded = quantizer.rounded
    assert rounded and [r.module for r in rounded] == ["0", "2", "4"]
    assert rounded[-1].error < 0.9 * rounded[-1].error_nearest and rounded[-1].flipped > 0.05
    nearest, learned = _weights(graphs[False]), _weights(graphs[True])
    float_model = onnx.load(str(quantizer.pre))
    float_inits = {i.name: numpy_helper.to_array(i) for i in float_model.graph.initializer}
    float_weights = {n.name: float_inits[n.input[1]] for n in float_model.graph.node if n.op_type == "Conv"}
    changed = 0
    for name, (q, scale) in learned.items():
        assert np.array_equal(scale, nearest[name][1]), f"{name}: the grid moved"
        w = float_weights[name] / scale.reshape((-1,) + (1,) * (q.ndim - 1))
        assert (np.abs(q - w) < 1.0 + 1e-4).all(), f"{name}: a weight moved more than one step"
        changed += int((q != nearest[name][0]).sum())
        if target == "onnxruntime":
            assert limit_pair_sums(q, "conv")[1] == 0, f"{name}: a neighbour pair sums past 128"
    assert changed > 0
    # held-out crops: the learned rounding brings the output closer to the FP32 model's (seed 0: +1.4 to +3.9 dB)
    expected = run_onnx(fp32, data.evaluation)
    exact = target == "tensorrt"
    before = sqnr_db(expected, run_onnx(graphs[False], data.evaluation, exact=exact))
    after = sqnr_db(expected, run_onnx(graphs[True], data.evaluation, exact=exact))
    assert after > before + 1.0, (before, after)


def test_layers_over_the_weight_limit_keep_nearest_rounding(tmp_path: Path) -> None:
    """AdaRound holds ~15 floats per weight while it learns: a layer with more than ``max_weights`` (VGG's fc6, 103M)
    keeps the quantizer's nearest rounding, and the layers around it are still learned."""
    fp32 = _export(_outlier_model(), tmp_path / "outlier.onnx")
    options = Int8Options(target="onnxruntime", **OPTIONS)  # type: ignore[arg-type]
    data = prepare_calibration(PREP, options)
    graphs, rounded = {}, []
    for adaround in (False, True):
        work = tmp_path / str(adaround)
        work.mkdir()
        quantizer = StaticQuantizer(fp32, work, data.calibration, "input", replace(options, adaround=adaround), None)
        quantizer.adaround_options = replace(quantizer.adaround_options, max_weights=32 * 32 * 9 - 1)  # layer "2"
        graphs[adaround] = _weights(quantizer(work / "q.onnx"))
        rounded = quantizer.rounded
    assert [r.module for r in rounded] == ["0", "4"]
    big = next(name for name, (q, _) in graphs[True].items() if q.size == 32 * 32 * 9)
    assert np.array_equal(graphs[True][big][0], graphs[False][big][0])
    assert any(not np.array_equal(graphs[True][n][0], graphs[False][n][0]) for n in graphs[True] if n != big)


def _dw_node(model: onnx.ModelProto) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.op_type == "Conv" and "/dw/" in n.name)


def _bias(path: Path, node: str) -> np.ndarray:
    """The float bias a Conv of either QDQ form adds."""
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    name = next(n for n in model.graph.node if n.name == node).input[2]
    if name in inits:
        return inits[name].astype(np.float64)
    dq = producer[name]
    return inits[dq.input[0]].astype(np.float64) * inits[dq.input[1]]


@pytest.mark.parametrize("target", ["onnxruntime", "tensorrt"])
def test_depthwise_convs_keep_nearest_rounding_and_get_their_bias_corrected(target: str, tmp_path: Path) -> None:
    """Depthwise convs are left out of AdaRound by default (``AdaRoundOptions.depthwise``): the weight the quantizer
    rounded to nearest stays and the bias is corrected instead (``depthwise_bias``), so that on the crops AdaRound
    learns from each output channel's mean is FP32's (the QDQ graph's pre-activation error has zero mean per channel,
    which it has not with nearest rounding); with ``depthwise=True`` the weight is learned and the bias left alone. A
    re-quantized graph gets the same correction back (``apply_rounding``)."""
    from edgeconv.onnxgraph import run_named

    fp32 = _export(_model(), tmp_path / "tiny.onnx")
    options = Int8Options(**{**OPTIONS, "adaround": True, "target": target})  # type: ignore[arg-type]
    data = prepare_calibration(PREP, options)
    paths, learned, corrected, correction = {}, {}, {}, {}
    for variant in ("nearest", "default", "depthwise"):
        work = tmp_path / variant
        work.mkdir()
        quantizer = StaticQuantizer(
            fp32, work, data.calibration, "input", replace(options, adaround=variant != "nearest"), None
        )
        quantizer.adaround_options = replace(quantizer.adaround_options, depthwise=variant == "depthwise")
        paths[variant] = quantizer(work / "q.onnx")
        learned[variant] = [r.module for r in quantizer.rounded or [] if r.bias is None]
        corrected[variant] = [r.module for r in quantizer.rounded or [] if r.bias is not None]
        correction[variant] = next((r.bias for r in quantizer.rounded or [] if r.bias is not None), None)
        if variant == "default":
            rounded = list(quantizer.rounded or [])
            again = quantizer(work / "q1.onnx")  # re-quantized: the rounding and the correction re-applied
    assert learned["default"] == ["stem.0", "pw.0", "head.0", "head.2", "classifier"]
    assert corrected["default"] == ["dw.0"]
    assert learned["depthwise"] == ["stem.0", "dw.0", "pw.0", "head.0", "head.2", "classifier"]
    assert corrected["depthwise"] == []
    # the manifest tells the two apart; a correction measured on the crops can only lower their error
    from edgeconv.quantize.fidelity import compare_logits
    from edgeconv.quantize.report import Int8Report

    logits = np.eye(4, 10, dtype=np.float32)
    section = Int8Report(target, "mse", compare_logits(logits, logits), None, [], True, 0.5, rounded=rounded)
    adaround = section.manifest()["adaround"]
    assert adaround["layers"] == 5 and set(adaround["output_mse_vs_nearest"]) == set(learned["default"])
    assert list(adaround["bias_corrected_output_mse_vs_nearest"]) == ["dw.0"]
    assert 0 < adaround["bias_corrected_output_mse_vs_nearest"]["dw.0"] <= 1
    graphs = {variant: _weights(path) for variant, path in paths.items()}
    dw = _dw_node(onnx.load(str(paths["default"]))).name
    assert np.array_equal(graphs["default"][dw][0], graphs["nearest"][dw][0])
    assert not np.array_equal(graphs["depthwise"][dw][0], graphs["nearest"][dw][0])
    assert np.array_equal(_bias(paths["depthwise"], dw), _bias(paths["nearest"], dw))
    assert np.array_equal(_bias(again, dw), _bias(paths["default"], dw))
    for name, (q, scale) in _weights(again).items():
        assert np.array_equal(q, graphs["default"][name][0]) and np.array_equal(scale, graphs["default"][name][1])

    # ORT's QDQ graph drops the ReLU6 the range covers and gives the Conv its output name: compare each graph's own
    # Conv output, both before the activation
    output = _dw_node(onnx.load(str(paths["default"]))).output[0]
    float_output = next(n for n in quantizer.model.graph.node if n.name == dw).output[0]
    crops = data.calibration[: quantizer.adaround_options.samples]
    want = run_named(quantizer.model, [float_output], crops)[float_output]

    def channel_mean_error(path: Path) -> np.ndarray:
        got = run_named(onnx.load(str(path)), [output], crops, exact=True)[output]
        return np.abs((want - got).mean(axis=(0, 2, 3)))

    before, after = channel_mean_error(paths["nearest"]), channel_mean_error(paths["default"])
    assert before.max() > 1e-4  # nearest rounding shifts some channel's mean
    kept = correction["default"] != 0  # the channels whose correction held when each fold of crops was left out
    assert kept.any()
    assert after[kept].max() < 0.05 * before.max(), (before.max(), after[kept].max())


def test_a_bias_correction_is_kept_only_where_it_holds_on_photos_it_was_not_measured_on() -> None:
    """``_validated``: per channel, the mean error of the crops, kept where the mean of the other photos' crops lowers
    each left-out photo's error: a shift every photo shares is corrected, one that a single photo carries, or that
    changes sign from photo to photo, is not (the plain mean would correct both)."""
    from edgeconv.quantize.qdq.adaround import _validated

    rng = np.random.default_rng(0)
    groups = np.arange(64) % 8  # 64 crops of 8 photos, round-robin
    noise = rng.normal(0.0, 0.01, (64, 3))
    shared = 0.05 + noise[:, 0]  # every photo shifted alike
    one_photo = np.where(groups == 3, 0.4, 0.0) + noise[:, 1]  # only photo 3
    alternating = np.where(groups % 2 == 0, 0.05, -0.05) + 0.004 + noise[:, 2]  # the sign follows the photo
    error = np.stack([shared, one_photo, alternating], axis=1)
    corrected = _validated(error, groups)
    np.testing.assert_allclose(corrected[0], shared.mean())
    assert corrected[1] == 0.0 and corrected[2] == 0.0
    assert np.all(error.mean(axis=0) != 0.0)  # what the plain mean would have added


def test_centring_keeps_the_bias_correction(tmp_path: Path) -> None:
    """Centring re-derives its readers' biases from the float bias (``compensate_offsets``): a bias correction given
    to it is added on top, not lost."""
    from edgeconv.quantize.qdq.offsets import compensate_offsets

    fp32 = _export(_model(), tmp_path / "tiny.onnx")
    options = Int8Options(**{**OPTIONS, "target": "tensorrt"})  # type: ignore[arg-type]
    data = prepare_calibration(PREP, options)
    quantizer = StaticQuantizer(fp32, tmp_path, data.calibration, "input", options, None)
    model = onnx.load(str(quantizer(tmp_path / "q.onnx")))
    dw = _dw_node(model)
    offsets = {"stem.2": 0.5}  # as if the stem's ReLU (read by the depthwise conv) were centred
    delta = np.linspace(-0.1, 0.1, 16).astype(np.float32)
    assert compensate_offsets(model, quantizer.model, offsets) >= 1
    plain = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == dw.input[2])).copy()
    compensate_offsets(model, quantizer.model, offsets, {dw.name: delta})
    corrected = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == dw.input[2]))
    np.testing.assert_allclose(corrected - plain, delta, atol=1e-6)


def test_rounding_is_reapplied_and_fallback_layers_keep_their_own(tmp_path: Path) -> None:
    fp32 = _export(_model(), tmp_path / "tiny.onnx")
    options = Int8Options(**{**OPTIONS, "adaround": True})
    data = prepare_calibration(PREP, options)
    quantizer = StaticQuantizer(fp32, tmp_path, data.calibration, "input", replace(options, target="onnxruntime"), None)
    first = _weights(quantizer(tmp_path / "q0.onnx"))
    dw = next(name for name in first if "/dw/" in name)
    again = _weights(quantizer(tmp_path / "q1.onnx", exclude=[dw]))
    assert again[dw][0].dtype == np.int16  # the fallback layer: 16-bit, not the learned 8-bit weight
    for name, (q, _) in first.items():
        if name != dw:
            assert np.array_equal(again[name][0], q), name


@pytest.mark.parametrize("target", ["onnxruntime", "tensorrt"])
def test_rounding_is_kept_only_where_it_brings_the_network_closer(target: str, tmp_path: Path) -> None:
    """``int8._keep_rounding_if_better`` returns whichever graph, learned or nearest rounding, is closer to FP32 (top-1
    agreement, then mean KL) on the calibration crops AdaRound did not learn from, says so in a note when it drops the
    rounding, and leaves the quantizer re-applying exactly what it kept."""
    from edgeconv.quantize.fidelity import compare_logits
    from edgeconv.quantize.int8 import _keep_rounding_if_better, rounding_is_closer
    from edgeconv.quantize.qdq.adaround import AdaRoundOptions

    fp32 = _export(_outlier_model(), tmp_path / "outlier.onnx")
    options = Int8Options(target=target, **{**OPTIONS, "adaround": True, "calib_samples": 96})  # type: ignore[arg-type]
    data = prepare_calibration(PREP, options)
    unseen = data.calibration[AdaRoundOptions().samples :]
    assert len(unseen) == 32
    quantizer = StaticQuantizer(fp32, tmp_path, data.calibration, "input", options, None)
    learned = quantizer(tmp_path / "q0.onnx")
    rounding = quantizer.rounded
    notes: list[str] = []
    exact = target == "tensorrt"
    kept = _keep_rounding_if_better(quantizer, learned, fp32, data, exact, notes)
    reference = run_onnx(fp32, unseen)

    def fidelity(path: Path) -> FidelityReport:
        return compare_logits(reference, run_onnx(path, unseen, exact=exact))

    nearest = tmp_path / "q0_nearest.onnx"  # kept by the call that learned the rounding, from the same graph
    assert quantizer.nearest == nearest and kept in (learned, nearest)
    (tmp_path / "fresh").mkdir()
    fresh = StaticQuantizer(fp32, tmp_path / "fresh", data.calibration, "input", replace(options, adaround=False), None)
    quantized = _weights(fresh(tmp_path / "fresh" / "q.onnx"))
    assert {k: (q.tolist(), s.tolist()) for k, (q, s) in _weights(nearest).items()} == {
        k: (q.tolist(), s.tolist()) for k, (q, s) in quantized.items()
    }  # what quantizing again without AdaRound gives
    assert (kept == learned) == rounding_is_closer(fidelity(learned), fidelity(nearest))
    assert (kept == nearest) == bool(notes) == (quantizer.rounded == [])
    if kept == learned:
        assert quantizer.rounded is rounding
    again = _weights(quantizer(tmp_path / "q1.onnx"))
    assert all(np.array_equal(again[name][0], q) for name, (q, _) in _weights(kept).items())


@pytest.mark.parametrize("target", ["onnxruntime", "tensorrt"])
def test_rounding_is_learned_again_around_layers_in_high_precision(target: str, tmp_path: Path) -> None:
    """With a layer in high precision, the later layers' rounding is learned again on that graph (``relearn``: their
    inputs no longer carry its 8-bit error), and ``int8._relearn_rounding`` keeps whichever rounding, re-applied or
    learned again, brings the network closer to FP32 on the calibration crops AdaRound did not learn from; the next
    quantization re-applies the one kept."""
    from edgeconv.quantize.fidelity import compare_logits
    from edgeconv.quantize.int8 import _relearn_rounding, rounding_is_closer

    fp32 = _export(_outlier_model(), tmp_path / "outlier.onnx")
    options = Int8Options(target=target, **{**OPTIONS, "adaround": True, "calib_samples": 96})  # type: ignore[arg-type]
    data = prepare_calibration(PREP, options)
    quantizer = StaticQuantizer(fp32, tmp_path, data.calibration, "input", options, None)
    quantizer(tmp_path / "q0.onnx")
    first = quantizer.rounded
    assert first and [r.module for r in first] == ["0", "2", "4"]
    kept_float = [first[0].node]
    reapplied = quantizer(tmp_path / "q1.onnx", kept_float)
    assert quantizer.rounded is first
    exact = target == "tensorrt"
    chosen = _relearn_rounding(quantizer, reapplied, kept_float, [], fp32, data, exact)
    relearned = tmp_path / "q1_relearned.onnx"
    assert chosen in (reapplied, relearned) and relearned.is_file()
    learned_again = {name: q for name, (q, _) in _weights(relearned).items() if name not in kept_float}
    assert learned_again.keys() == {r.node for r in first[1:]}
    assert any(not np.array_equal(learned_again[r.node], r.weight) for r in first[1:])  # learned on other inputs

    unseen = data.calibration[quantizer.adaround_options.samples :]
    reference = run_onnx(fp32, unseen)

    def fidelity(path: Path) -> FidelityReport:
        return compare_logits(reference, run_onnx(path, unseen, exact=exact))

    assert (chosen == relearned) == rounding_is_closer(fidelity(relearned), fidelity(reapplied))
    if chosen == relearned:
        assert quantizer.rounded is not first and [r.module for r in quantizer.rounded or []] == ["2", "4"]
    else:
        assert quantizer.rounded is first
    again = _weights(quantizer(tmp_path / "q2.onnx", kept_float))
    assert all(np.array_equal(again[name][0], q) for name, (q, _) in _weights(chosen).items())


def test_rounding_is_judged_by_top1_agreement_first_then_kl() -> None:
    """resnet50 (random weights, tensorrt form): AdaRound lowered the mean KL and cost 13 points of top-1 agreement."""
    from edgeconv.quantize.fidelity import compare_logits
    from edgeconv.quantize.int8 import rounding_is_closer

    reference = np.array([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0], [1.0, 0.9, 0.0]])
    flipped = reference.copy()
    flipped[3] = [0.9, 1.0, 0.0]  # one crop's top-1 flips, the KL barely moves
    blurred = reference * 0.8  # every top-1 kept, a higher KL
    one_flip, blur, exact = (compare_logits(reference, x) for x in (flipped, blurred, reference))
    assert one_flip.mean_kl < blur.mean_kl
    assert not rounding_is_closer(one_flip, blur)  # fewer agreeing crops loses whatever the KL
    assert rounding_is_closer(blur, one_flip)
    assert rounding_is_closer(exact, blur) and not rounding_is_closer(blur, exact)  # a tie goes to the lower KL
    assert rounding_is_closer(exact, exact)


def _soft_weight_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(V, floor, scale, upstream gradient) where both clamps hold in places: a weight beyond the grid, h at 0 or 1."""
    from edgeconv.quantize.qdq.adaround import QMAX, QMIN

    generator = torch.Generator().manual_seed(0)
    scale = torch.rand(8, 1, 1, 1, generator=generator, dtype=torch.float64) + 0.5
    floor = torch.randint(-127, 127, (8, 4, 3, 3), generator=generator).double()
    floor[0, 0] = QMAX  # floor + h above the grid for h > 0
    floor[1, 0] = QMIN - 1  # below it
    v = torch.randn(8, 4, 3, 3, generator=generator, dtype=torch.float64) * 4  # h clamped at 0 and 1 in places
    upstream = torch.randn(8, 4, 3, 3, generator=generator, dtype=torch.float64)
    return v, floor, scale, upstream


@pytest.mark.parametrize("beta", [None, 2.0, 13.7])
def test_soft_weight_gradient_is_autograds(beta: float | None) -> None:
    """``_SoftWeight``'s hand-written gradient with respect to V is the one autograd computes through the rectified
    sigmoid, both clamps and the regularizer, with and without it."""
    from edgeconv.quantize.qdq.adaround import GAMMA, QMAX, QMIN, ZETA, _SoftWeight

    v, floor, scale, upstream = _soft_weight_case()
    regularization = 0.1
    leaf = v.clone().requires_grad_(True)
    h = (torch.sigmoid(leaf) * (ZETA - GAMMA) + GAMMA).clamp(0, 1)
    weight = torch.clamp(floor + h, QMIN, QMAX) * scale
    loss = (weight * upstream).sum()
    if beta is not None:
        loss = loss + regularization * (1 - (2 * h - 1).abs().pow(beta)).mean()
    loss.backward()
    assert leaf.grad is not None
    held = ((h == 0) | (h == 1)).sum()
    assert 0 < held < h.numel()  # both clamps take part

    soft = _SoftWeight(v.clone(), floor, scale, learning_rate=1e-2)
    mine = soft.weight()
    assert torch.equal(mine.detach(), weight.detach())
    (mine * upstream).sum().backward()
    torch.testing.assert_close(soft.gradient(mine, regularization, beta), leaf.grad, rtol=1e-12, atol=1e-15)


def test_soft_weight_steps_are_torch_adams() -> None:
    """``_SoftWeight.step`` is torch.optim.Adam's update on V, bit for bit, over steps with and without the
    regularizer (the bias corrections change every step)."""
    from edgeconv.quantize.qdq.adaround import _SoftWeight

    v, floor, scale, upstream = _soft_weight_case()
    soft = _SoftWeight(v.clone(), floor, scale, learning_rate=1e-2)
    theirs = v.clone().requires_grad_(True)
    adam = torch.optim.Adam([theirs], lr=1e-2)
    for step in range(6):
        beta = None if step < 2 else 20.0 - step
        mine = soft.weight()
        (mine * upstream).sum().backward()
        with torch.no_grad():
            theirs.copy_(soft.v)  # Adam steps from where _SoftWeight is, with the gradient it computed
        theirs.grad = soft.gradient(mine, 0.1, beta).clone()
        soft.step(mine, 0.1, beta)
        adam.step()
        assert torch.equal(soft.v, theirs.detach()), step
        assert not torch.equal(soft.v, v)
