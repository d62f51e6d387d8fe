"""INT8 QDQ export: TensorRT graph rules, ONNX Runtime form checked numerically against PyTorch, fidelity and gate.

Fidelity metric for INT8 (documented in edgeconv.quantize.fidelity): top-1 agreement with the FP32 model on held-out
crops of real photos, plus output SQNR. Small models at 32x32 keep this file at a few seconds of compute.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, numpy_helper
from torch import nn

from edgeconv.errors import InvalidArgumentError, QuantizationError
from edgeconv.onnxgraph import module_name, run_onnx
from edgeconv.quantize.calibration import Preprocessing
from edgeconv.quantize.fidelity import FidelityReport, check_gate, compare_logits, sqnr_db
from edgeconv.quantize.int8 import quantize_int8
from edgeconv.quantize.options import Int8Options

PREP = Preprocessing(input_size=(3, 32, 32))


class Tiny(nn.Module):
    """Dense conv + BN + ReLU, depthwise + ReLU6, pointwise, a residual add, two 1x1 convs, global pool, classifier."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
        self.pw = nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.head = nn.Sequential(nn.Conv2d(16, 32, 1), nn.ReLU(), nn.Conv2d(32, 32, 1), nn.ReLU())
        self.classifier = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.pw(self.dw(x))
        x = self.head(x).mean(dim=(2, 3))
        return self.classifier(x)


def _model() -> Tiny:
    torch.manual_seed(0)
    model = Tiny()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _export(model: nn.Module, path: Path) -> Path:
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, 32, 32),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}},
    )
    return path


# Nearest rounding: these tests are about the graph rules, the gate and fallback, not adaptive rounding (most of the
# INT8 time); tests/test_quantize_adaround.py and tests/test_quantize_cli.py's end-to-end export run AdaRound.
OPTIONS = {"calib_samples": 32, "eval_samples": 48, "calib_method": "minmax", "min_agreement": 0.0, "adaround": False}


@pytest.fixture(scope="module")
def fp32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(_model(), tmp_path_factory.mktemp("int8") / "tiny.onnx")


def test_tensorrt_target_follows_trt_qdq_rules(fp32: Path, tmp_path: Path) -> None:
    out = tmp_path / "trt.onnx"
    report = quantize_int8(fp32, out, PREP, _model(), Int8Options(target="tensorrt", fallback="none", **OPTIONS))
    model = onnx.load(str(out))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for node in qdq:
        assert len(node.input) == 3, f"{node.name} has no explicit zero point"
        zero = inits[node.input[2]]
        assert zero.dtype == np.int8 and not zero.any(), f"{node.name}: zero point {zero} (TensorRT needs int8 zeros)"
        assert (inits[node.input[1]] > 0).all()
    assert not [i for i in model.graph.initializer if i.data_type == TensorProto.UINT8]
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 5
    for conv in convs:
        dq = producer[conv.input[1]]  # weights: float -> Q -> DQ -> Conv, per output channel (axis 0)
        assert dq.op_type == "DequantizeLinear"
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        out_channels = inits[producer[dq.input[0]].input[0]].shape[0]
        assert axis == 0 and inits[dq.input[1]].shape == (out_channels,)
        act = producer[conv.input[0]]  # activations: per-tensor Q/DQ on every conv input
        assert act.op_type == "DequantizeLinear" and inits[act.input[1]].ndim == 0
    assert report.fidelity.top1_agreement >= 0.9 and report.fidelity.output_sqnr_db > 20
    # ReLU6 / ReLU outputs between two convs are centred on 0 for the symmetric grid (stem.2 also feeds the add).
    assert set(report.centred_activations) == {"dw.2", "head.1"}
    clips = {module_name(n.name): n for n in model.graph.node if n.op_type == "Clip"}
    shift = report.centred_activations["head.1"]
    assert float(inits[clips["head.1"].input[1]]) == pytest.approx(-shift)
    _assert_pinned(model, report.centred_activations)
    # The reader's bias follows its quantized weight: W_q (x - c) + b + c sum(W_q) = W_q x + b, with head.2's own bias.
    reader = next(n for n in convs if module_name(n.name) == "head.2")
    dq = producer[reader.input[1]]
    q = producer[dq.input[0]]
    w_q = np.clip(np.rint(inits[q.input[0]] / inits[dq.input[1]].reshape(-1, 1, 1, 1)), -128, 127)
    w_q = w_q * inits[dq.input[1]].reshape(-1, 1, 1, 1)
    expected = _model().head[2].bias.detach().numpy() + shift * w_q.sum(axis=(1, 2, 3))
    np.testing.assert_allclose(inits[reader.input[2]], expected, rtol=1e-5, atol=1e-6)


def _assert_pinned(model: onnx.ModelProto, centred: dict[str, float]) -> None:
    """Each centred activation is quantized on [-c, c] exactly: the ReLU's zeros (-c after the shift) land on -127."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    clips = {module_name(n.name): n for n in model.graph.node if n.op_type == "Clip"}
    for name, c in centred.items():
        reader = next(n for n in model.graph.node if clips[name].output[0] in n.input)
        if reader.op_type == "Pad":  # a padded conv pads with -c, the shifted domain's zero
            assert float(inits[reader.input[2]]) == pytest.approx(-c)
            reader = next(n for n in model.graph.node if reader.output[0] in n.input)
        assert reader.op_type == "QuantizeLinear"
        scale = inits[reader.input[1]]
        assert abs(np.float32(-c) / scale + 127) < 1e-4, f"{name}: -c = {-c} is {np.float32(-c) / scale} steps"


def test_tensorrt_centring_of_padded_readers_keeps_pytorch_function(tmp_path: Path) -> None:
    """A ReLU6 feeding a padded depthwise conv is centred too: the conv pads with -c (ONNX Pad + Conv)."""
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU6(),
        nn.Conv2d(16, 16, 3, 1, 1, groups=16), nn.ReLU6(),
        nn.Conv2d(16, 24, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 10),
    ).eval()  # fmt: skip
    fp32 = _export(model, tmp_path / "dw.onnx")
    out = tmp_path / "dw.int8.onnx"
    report = quantize_int8(fp32, out, PREP, model, Int8Options(target="tensorrt", fallback="none", **OPTIONS))
    assert set(report.centred_activations) == {"1", "3"}
    quantized = onnx.load(str(out))
    pads = [n for n in quantized.graph.node if n.op_type == "Pad"]
    assert len(pads) == 1 and module_name(pads[0].name) == "2"
    constants = {i.name for i in quantized.graph.initializer}
    assert pads[0].input[1] in constants and pads[0].input[2] in constants  # static pads and value, as TensorRT wants
    _assert_pinned(quantized, report.centred_activations)
    x = np.stack([PREP(im) for im in _eval_images()])
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    fidelity = compare_logits(expected, run_onnx(out, x, exact=True))
    assert fidelity.top1_agreement >= 0.95 and fidelity.output_sqnr_db > 30, fidelity.summary()  # measured 38 dB


@pytest.mark.parametrize("method", ["minmax", "mse"])
def test_tensorrt_centring_shift_follows_the_calibration_method(tmp_path: Path, method: str) -> None:
    """Centring shifts a ReLU output by half its range: the maximum on the calibration crops with minmax ranges (which
    clip nothing), the 99.999th percentile (here the second largest value) with the others."""
    from edgeconv.quantize.calibration import prepare_calibration

    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 16, 1), nn.ReLU(),
        nn.Conv2d(16, 24, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 10),
    ).eval()  # fmt: skip
    fp32 = _export(model, tmp_path / "relu.onnx")
    options = Int8Options(target="tensorrt", fallback="none", equalize=False, **{**OPTIONS, "calib_method": method})
    data = prepare_calibration(PREP, options)
    report = quantize_int8(fp32, tmp_path / "relu.int8.onnx", PREP, model, options, data=data)
    assert set(report.centred_activations) == {"1", "3"}
    with torch.no_grad():
        x = torch.from_numpy(data.calibration[:64])
        outputs = {"1": model[:2](x), "3": model[:4](x)}
    for name, output in outputs.items():
        top = output.flatten().topk(2).values.double()
        assert top[0] > top[1]
        expected = top[0] / 2 if method == "minmax" else top[1] / 2
        assert report.centred_activations[name] == pytest.approx(float(expected), rel=1e-5)


def test_onnxruntime_target_matches_pytorch(fp32: Path, tmp_path: Path) -> None:
    out = tmp_path / "ort.onnx"
    torch_model = _model()
    options = Int8Options(target="onnxruntime", bias_correction=True, **OPTIONS)
    report = quantize_int8(fp32, out, PREP, torch_model, options)
    model = onnx.load(str(out))
    ops = {n.op_type for n in model.graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    # uint8 activations, int8 weights
    types = {numpy_helper.to_array(i).dtype for i in model.graph.initializer if i.name.endswith("zero_point")}
    assert np.dtype(np.uint8) in types and np.dtype(np.int8) in types
    # End to end against PyTorch itself (not only against the FP32 ONNX): held-out real-photo crops.
    x = np.stack([PREP(im) for im in _eval_images()])
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    got = run_onnx(out, x)
    fidelity = compare_logits(expected, got)
    assert fidelity.top1_agreement >= 0.9, fidelity.summary()
    assert sqnr_db(expected, got) > 20.0, fidelity.summary()
    # head.0 -> ReLU -> head.2 is equalized; dw.0 -> ReLU6 -> pw.0 is skipped (clip point), stem feeds a residual.
    assert (report.equalized_pairs, report.equalization_skipped, report.bias_corrected_layers) == (1, 1, 6)
    assert {layer.module for layer in report.layers} >= {"stem.0", "dw.0", "pw.0", "head.0", "head.2"}
    assert report.manifest()["fidelity"]["samples"] == 48


def _eval_images() -> list:
    from edgeconv.quantize.calibration import DEFAULT_CALIBRATION_DIR, read_image_folder

    return [im for _, im in read_image_folder(DEFAULT_CALIBRATION_DIR / "eval").images]


def test_gate_refuses_to_write_below_threshold(tmp_path: Path) -> None:
    model = _ties_model()
    fp32 = _export(model, tmp_path / "ties.onnx")
    out = tmp_path / "ties.int8.onnx"
    strict = {**OPTIONS, "min_agreement": 0.99}
    with pytest.raises(QuantizationError, match=r"below the gate: top-1 agreement .* required top-1 agreement >= 99"):
        quantize_int8(fp32, out, PREP, None, Int8Options(fallback="none", **strict))
    assert not out.exists()
    report = quantize_int8(fp32, out, PREP, None, Int8Options(fallback="none", force=True, **strict))
    assert out.exists() and not report.gate_passed and report.fidelity.top1_agreement < 0.99


def _optimized_ops(path: Path, tmp_path: Path) -> dict[str, str]:
    """Node name -> op type of the graph a *default* ORT CPU session actually runs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return {n.name: n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node}


def test_manual_fallback_by_module_name(fp32: Path, tmp_path: Path) -> None:
    for target in ("onnxruntime", "tensorrt"):
        out = tmp_path / f"fb_{target}.onnx"
        report = quantize_int8(
            fp32,
            out,
            PREP,
            None,
            Int8Options(target=target, fallback=("dw", "classifier"), equalize=False, **OPTIONS),  # type: ignore[arg-type]
        )
        assert report.fallback_modules == ["dw.0", "classifier"]
        model = onnx.load(str(out))
        producer = {o: n for n in model.graph.node for o in n.output}
        inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        dw = next(n for n in model.graph.node if module_name(n.name) == "dw.0")
        weight = producer.get(dw.input[1])
        if target == "tensorrt":  # left unquantized: TensorRT runs it in FP16/FP32
            assert weight is None or weight.op_type != "DequantizeLinear"
        else:
            # ORT's WeightBiasQuantization would re-quantize a float weight behind a DequantizeLinear input to
            # per-tensor int8 at load time; a 16-bit weight is left alone and no integer kernel takes it.
            assert weight is not None and inits[weight.input[0]].dtype == np.int16
            ops = _optimized_ops(out, tmp_path)
            assert not [name for name, op in ops.items() if name.startswith(dw.name) and op.startswith("QLinear")]
            assert any(name.startswith(dw.name) and op == "Conv" for name, op in ops.items())
    with pytest.raises(InvalidArgumentError, match="'nope' is not a quantized layer.*stem.0"):
        quantize_int8(fp32, out, PREP, None, Int8Options(fallback=("nope",), **OPTIONS))


def _ties_model() -> Tiny:
    """Two classifier rows that differ by 1e-4 along the direction in which the photos' features differ most: which
    one wins is decided below INT8 resolution (features quantized to uint8, rows to the same int8 values), so
    quantization flips about half of the answers between them. The logits themselves leave the network in float."""
    model = _model()
    with torch.no_grad():
        x = torch.from_numpy(np.stack([PREP(im) for im in _eval_images()]))
        stem = model.stem(x)
        features = model.head(stem + model.pw(model.dw(stem))).mean(dim=(2, 3))
        direction = torch.linalg.svd(features - features.mean(0), full_matrices=False).Vh[0]
        direction = 1e-4 * direction / direction.abs().max()
        model.classifier.weight[1] = model.classifier.weight[0] + direction
        model.classifier.bias[1] = model.classifier.bias[0] - features.mean(0) @ direction  # half on each side
        model.classifier.bias[0] += 50.0
        model.classifier.bias[1] += 50.0
    return model


def test_auto_fallback_keeps_layers_and_tensors_in_high_precision(tmp_path: Path) -> None:
    # One channel of head.0's output scaled up 300x (and head.2's matching input weights down, so the network computes
    # the same function): the per-tensor uint8 grid of that activation is then too coarse for every other channel.
    model = _model()
    with torch.no_grad():
        model.head[0].weight[0] *= 300.0
        model.head[0].bias[0] = model.head[0].bias[0].abs() * 300.0
        model.head[2].weight[:, 0] /= 300.0
    fp32 = _export(model, tmp_path / "outlier.onnx")
    # Nearest rounding: adaptive rounding alone already brings this model to 100% agreement, leaving nothing to fall
    # back on; this test is about choosing what to keep in high precision.
    options = {**OPTIONS, "adaround": False}
    base = quantize_int8(fp32, tmp_path / "none.onnx", PREP, None, Int8Options(fallback="none", **options))
    options = {**options, "min_agreement": 1.0, "max_fallback_layers": 2, "latency_budget": None}
    out = tmp_path / "auto.onnx"
    report = quantize_int8(fp32, out, PREP, None, Int8Options(fallback="auto", force=True, **options))
    assert report.before_fallback is not None and 1 <= len(report.fallback_modules) <= 2
    assert "head.1 output" in report.fallback_modules, report.fallback_modules  # the ReLU after head.0
    assert report.fidelity.mean_kl < 0.5 * base.fidelity.mean_kl, (report.fidelity.summary(), base.fidelity.summary())
    assert report.fidelity.output_sqnr_db > base.fidelity.output_sqnr_db + 6.0
    manifest = report.manifest()
    assert manifest["float_fallback"] == report.fallback_modules
    model_proto = onnx.load(str(out))
    zero_points = {i.name: numpy_helper.to_array(i).dtype for i in model_proto.graph.initializer}
    assert np.dtype(np.uint16) in zero_points.values(), "the outlier tensor is not 16-bit"


def _pair_sums(weight: np.ndarray) -> np.ndarray:
    """Same-sign |w0| + |w1| of input-channel neighbours (2j, 2j+1) at each kernel position (OIHW weight)."""
    rows = weight.astype(np.int32).transpose(0, 2, 3, 1).reshape(weight.shape[0], -1)
    a, b = rows[:, 0::2], rows[:, 1::2]
    return np.where(np.sign(a) == np.sign(b), np.abs(a) + np.abs(b), 0)


def test_saturation_safe_weights_match_exact_arithmetic(tmp_path: Path) -> None:
    from edgeconv.quantize.qdq.weights import limit_pair_sums, make_saturation_safe, saturation_safe_scales

    # A conv whose input channels 0 and 1 carry the largest same-sign weights, fed with activations near the top of
    # the uint8 range: 255 * 127 * 2 overflows the int16 pair sums of ORT's AVX2 u8s8 kernel.
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.ReLU())
    with torch.no_grad():
        conv[0].weight.normal_(0, 0.05)
        conv[0].weight[:, 0:2, 1, 1] = 0.5
    path = tmp_path / "conv.onnx"
    torch.onnx.export(conv, (torch.zeros(1, 6, 8, 8),), str(path), dynamo=False, opset_version=17)
    x = np.random.default_rng(0).uniform(0.8, 1.0, (16, 6, 8, 8)).astype(np.float32)
    from edgeconv.quantize.qdq.ort_static import StaticQuantizer

    options = Int8Options(calib_method="minmax", adaround=False)  # nearest rounding: the fix alone
    quantizer = StaticQuantizer(path, tmp_path, x, "input.1", options, None, saturation_safe=True)
    safe = quantizer(tmp_path / "safe.onnx")
    assert quantizer.safe_layers == 1
    model = onnx.load(str(safe))
    weight = next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("weight_quantized"))
    assert _pair_sums(weight).max() <= 128 and np.abs(weight).max() >= 64  # 8-bit grid, not 7-bit
    expected = conv(torch.from_numpy(x)).detach().numpy()
    fused, exact = run_onnx(safe, x), run_onnx(safe, x, exact=True)
    np.testing.assert_allclose(fused, exact, atol=2 * np.abs(expected).max() / 255)  # one output step each side
    assert sqnr_db(expected.reshape(16, -1), fused) > 30.0
    # the unit pieces: the scale bound and the clamp on the exact layout ORT packs
    w = conv[0].weight.detach().numpy()
    scale = saturation_safe_scales(w, "conv")
    assert (scale >= np.abs(w).reshape(8, -1).max(1) / 127 - 1e-9).all()
    q = np.clip(np.rint(w / scale[:, None, None, None]), -127, 127).astype(np.int8)
    assert _pair_sums(q).max() <= 129
    clamped, changed = limit_pair_sums(np.full((2, 4, 1, 1), 100, np.int8), "conv")
    assert changed == 4 and (clamped == 64).all()
    untouched, changed = limit_pair_sums(np.array([[[[100]], [[-100]]]], np.int8), "conv")  # opposite signs cancel
    assert changed == 0 and untouched.ravel().tolist() == [100, -100]
    again = copy.deepcopy(model)
    assert make_saturation_safe(again, quantizer.model) == 1
    assert again.graph.initializer == model.graph.initializer  # idempotent: a safe graph comes back unchanged


def test_cpu_kernels_pick_the_onnxruntime_weights(tmp_path: Path) -> None:
    """x86 without VNNI (avx2): saturation-safe weights; int32-accumulating kernels (vnni): the whole 8-bit grid; the
    manifest records which, and for which CPU."""
    from edgeconv.errors import InvalidArgumentError
    from edgeconv.quantize.options import cpu_kernels_saturate

    fp32 = _export(_model(), tmp_path / "tiny.onnx")
    forms = {}
    for kernels in ("avx2", "vnni"):
        options = Int8Options(**OPTIONS, fallback="none", cpu_kernels=kernels)
        forms[kernels] = quantize_int8(fp32, tmp_path / f"{kernels}.onnx", PREP, options=options).manifest()["weights"]
    assert forms == {
        "avx2": {"form": "saturation-safe", "cpu_kernels": "avx2"},
        "vnni": {"form": "full 8-bit", "cpu_kernels": "vnni"},
    }
    assert cpu_kernels_saturate("avx2") and not cpu_kernels_saturate("vnni") and not cpu_kernels_saturate("arm")
    with pytest.raises(InvalidArgumentError, match="--cpu-kernels 'sse'"):
        Int8Options(cpu_kernels="sse").validate()


def test_node_names_map_to_real_modules(tmp_path: Path) -> None:
    from edgeconv.zoo import create_model

    model = create_model("mobilenet_v2", width_mult=0.35)
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 64, 64),), str(path), dynamo=False, opset_version=17)
    modules = dict(model.named_modules())
    convs = [n for n in onnx.load(str(path)).graph.node if n.op_type in ("Conv", "Gemm")]
    assert len(convs) == 53
    for node in convs:
        assert isinstance(modules[module_name(node.name)], (nn.Conv2d, nn.Linear)), node.name


def test_fidelity_metrics_on_known_arrays() -> None:
    ref = np.array(
        [
            [4.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # confident (p ~ 0.92)
            [1.0, 1.1, 0.0, 0.0, 0.0, 0.0],  # not confident
            [0.0, 0.0, 5.0, 0.0, 0.0, 0.0],  # confident
            [0.0, 0.0, 0.0, 0.2, 0.1, 0.0],
        ]
    )  # not confident
    test = ref.copy()
    test[1] = [1.2, 1.0, 0.0, 0.0, 0.0, 0.0]  # flips the unconfident one
    test[2] = [0.0, 6.0, 5.0, 0.0, 0.0, 0.0]  # flips a confident one
    report = compare_logits(ref, test)
    assert report.samples == 4 and report.top1_agreement == pytest.approx(0.5)
    assert report.confident_samples == 2 and report.confident_agreement == pytest.approx(0.5)
    assert report.top5_overlap == pytest.approx(1.0)  # 5 of 6 classes: the top 5 sets still coincide
    same = compare_logits(ref, ref)
    assert same.mean_kl == pytest.approx(0.0, abs=1e-12) and same.output_sqnr_db == float("inf")
    assert report.mean_kl > 0.0
    assert sqnr_db(np.ones(100), np.ones(100) * 1.01) == pytest.approx(40.0)


def test_check_gate() -> None:
    report = FidelityReport(300, 0.8, 100, 0.97, 0.9, 0.05, 20.0)
    assert check_gate(report, 0.8)
    with pytest.raises(QuantizationError, match=r"80.0% of 300 \(97.0% of 100 confident\).*>= 85.0%.*--fallback auto"):
        check_gate(report, 0.85)
    assert check_gate(report, 0.85, force=True) is False
    with pytest.raises(InvalidArgumentError):
        check_gate(report, 85)
    assert check_gate(report, 0.8, min_confident=0.97)
    with pytest.raises(QuantizationError, match=r">= 80.0% overall and >= 98.0% on confident samples"):
        check_gate(report, 0.8, min_confident=0.98)
    no_confident = FidelityReport(300, 0.8, 0, float("nan"), 0.9, 0.05, 20.0)
    assert check_gate(no_confident, 0.8, min_confident=0.99)  # a flat softmax has no confident samples to gate on


def test_parse_fallback_and_options() -> None:
    from edgeconv.quantize.options import parse_fallback

    assert parse_fallback("auto") == "auto" and parse_fallback("NONE") == "none"
    assert parse_fallback("features.0.0, classifier.1") == ("features.0.0", "classifier.1")
    with pytest.raises(InvalidArgumentError):
        parse_fallback(" , ")
    with pytest.raises(InvalidArgumentError, match="--target 'tflite' is not known"):
        Int8Options(target="tflite").validate()  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="--calib-method 'kl'"):
        Int8Options(calib_method="kl").validate()


def test_int8_keeps_the_fp32_io_names(fp32: Path, tmp_path: Path) -> None:
    out = tmp_path / "io.onnx"
    quantize_int8(fp32, out, PREP, _model(), Int8Options(fallback="none", **OPTIONS))
    model, reference = onnx.load(str(out)), onnx.load(str(fp32))
    assert [i.name for i in model.graph.input] == [i.name for i in reference.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits"]


@pytest.mark.parametrize("target", ["onnxruntime", "tensorrt"])
def test_the_last_layer_writes_float_logits(fp32: Path, tmp_path: Path, target: str) -> None:
    """quantize_static quantizes the output of every op it quantizes, the graph's too; the logits must not go through
    a uint8 grid (mobilenet_v2: 0.13 per step, coarser than the gap between many crops' top two logits)."""
    out = tmp_path / f"{target}.onnx"
    quantize_int8(fp32, out, PREP, _model(), Int8Options(target=target, fallback="none", **OPTIONS))
    model = onnx.load(str(out))
    producer = {o: n for n in model.graph.node for o in n.output}["logits"]
    assert producer.op_type == "Gemm", producer.op_type
    assert producer.input[0] in {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    read = {name for node in model.graph.node for name in node.input}
    assert all(init.name in read for init in model.graph.initializer)  # no orphaned scale / zero point
    x = np.stack([PREP(im) for im in _eval_images()])
    with torch.no_grad():
        expected = _model()(torch.from_numpy(x)).numpy()
    steps = np.abs(np.diff(np.unique(run_onnx(out, x))))
    assert steps.min() < 1e-3 * (expected.max() - expected.min())  # not 1/255 of the range apart


def test_repvgg_identity_taps_quantize_as_their_own_conv(tmp_path: Path) -> None:
    from edgeconv.fuse import fuse_model
    from edgeconv.zoo.repvgg import RepVGGBlock

    torch.manual_seed(0)
    net = nn.Sequential(
        RepVGGBlock(3, 16, stride=2), RepVGGBlock(16, 16), RepVGGBlock(16, 16), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    for block in net[1:3]:
        block.rbr_identity.running_var.uniform_(0.01, 0.05)  # centre taps ~10x the rest, as in trained RepVGG
    net.append(nn.Linear(16, 10))
    net.eval()
    fp32 = _export(fuse_model(net).model, tmp_path / "repvgg.onnx")
    x = np.stack([PREP(im) for im in _eval_images()])
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()  # the multi-branch PyTorch model itself
    sqnr = {}
    for split in (True, False):
        out = tmp_path / f"split{split}.onnx"
        options = Int8Options(target="tensorrt", fallback="none", split_identity=split, **OPTIONS)
        report = quantize_int8(fp32, out, PREP, net, options)
        sqnr[split] = sqnr_db(expected, run_onnx(out, x, exact=True))
        convs = [n for n in onnx.load(str(out)).graph.node if n.op_type == "Conv"]
        if split:
            assert report.identity_split == ["1.rbr_reparam", "2.rbr_reparam"]
            assert report.manifest()["identity_split_convs"] == report.identity_split
            depthwise = [n for n in convs if next(a.i for a in n.attribute if a.name == "group") == 16]
            assert [module_name(n.name) for n in depthwise] == ["1.rbr_reparam.identity", "2.rbr_reparam.identity"]
        else:
            assert report.identity_split == [] and len(convs) == 3
    assert sqnr[True] > sqnr[False] + 3, sqnr


def test_failed_pre_processing_leaves_nothing_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """quant_pre_process's symbolic shape inference writes its partial model into the current directory when it
    fails; the quantizer runs it in a private one and carries on with the model as exported."""
    from conftest import save_custom_op_model

    from edgeconv.quantize.qdq.ort_static import StaticQuantizer

    save_custom_op_model(tmp_path / "custom.onnx")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    work = Path("work")  # relative, as a user's --out can be
    work.mkdir()
    quantizer = StaticQuantizer(
        Path("..") / "custom.onnx", work, np.zeros((1, 3, 8, 8), np.float32), "x", Int8Options(), None
    )
    assert quantizer.pre == Path("..") / "custom.onnx"  # pre-processing failed: the model as exported
    assert sorted(p.name for p in cwd.iterdir()) == ["work"]
    assert list(work.iterdir()) == []
