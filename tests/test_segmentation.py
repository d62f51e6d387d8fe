"""Dense prediction through the pipeline (issue 18): torchvision's segmentation models on edgeconv's backbones, label
maps compared per pixel, dynamic-size export validated at two sizes, convolutionized classifiers, U-Net's size rule,
and the deformable ResNet-50 (profile counts, BatchNorm folding, opset)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision  # a dev dependency (cross-checks only)
from torch import nn
from typer.testing import CliRunner

from edgeconv.cli.app import app
from edgeconv.compare import PIXEL_DISAGREEMENT, compare_outputs
from edgeconv.errors import InvalidArgumentError
from edgeconv.export import export_onnx
from edgeconv.fuse import fuse_model
from edgeconv.profile import profile_model
from edgeconv.quantize.fidelity import compare_logits
from edgeconv.zoo import create_model
from edgeconv.zoo import unet as unet_module
from edgeconv.zoo.deeplab import dilate_mobilenet_v3, dilate_resnet
from edgeconv.zoo.deform import DeformConv2d
from edgeconv.zoo.mobilenet import mobilenet_v3_large
from edgeconv.zoo.resnet import resnet50
from edgeconv.zoo.unet import UNet, nearest_sizes, output_size, smallest_size, takes_size

runner = CliRunner()


# ---- torchvision compatibility, with the auxiliary head --------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "params"),
    [("fcn_resnet50", 35_322_218), ("deeplabv3_resnet50", 42_004_074), ("deeplabv3_mobilenet_v3_large", 11_029_328)],
)
def test_aux_head_checkpoints_load_key_for_key(name: str, params: int) -> None:
    """torchvision's checkpoints carry the auxiliary FCN head: ``aux=True`` has the same keys, in the same order, and
    the parameter count torchvision documents for those weights (``num_params``)."""
    reference = torchvision.models.get_model(name, weights=None, weights_backbone=None, aux_loss=True).eval()
    ours = create_model(name, aux=True)
    assert list(ours.state_dict()) == list(reference.state_dict())
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters()) == params
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 72, 88)
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), reference(x)["out"], rtol=1e-5, atol=1e-5)


def test_dilation_keeps_the_map_and_the_parameters() -> None:
    plain, dilated = resnet50(), dilate_resnet(resnet50())
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in dilated.parameters())
    x = torch.zeros(1, 3, 224, 224, device="meta")
    trunk = nn.Sequential(*list(dilated.children())[:-2]).to("meta")
    assert trunk(x).shape == (1, 2048, 28, 28)  # output stride 8
    assert dilated.layer4[1].conv2.dilation == (4, 4) and dilated.layer4[0].conv2.dilation == (2, 2)
    features = dilate_mobilenet_v3(mobilenet_v3_large()).features.to("meta")
    assert features(x).shape == (1, 960, 14, 14)  # output stride 16


# ---- per-pixel comparison -------------------------------------------------------------------------------------------
def test_label_maps_are_compared_per_pixel() -> None:
    """Each pixel's class scores are one sample. A pixel whose class changes counts as a disagreement unless the
    numerical error explains it (a near tie: its PyTorch margin is within the max abs difference); up to 0.1% of the
    pixels may disagree."""
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(2, 3, 40, 50))
    same = compare_outputs(reference, reference + 1e-7, 1e-4)
    assert same and same.unit == "pixel" and same.units == 4000 and same.top1_agreement == 1.0
    assert "per-pixel argmax agreement 100.00% on 4,000 pixels of 2 images" in same.describe()

    reference = np.zeros((1, 2, 100, 100))
    reference[:, 0] = 1.0  # class 0 leads class 1 by 1.0 everywhere
    actual = reference.copy()
    flip = np.zeros((100, 100), bool)
    flip.flat[:10] = True  # 10 of 10,000 pixels: exactly 0.1%
    actual[0, 0][flip] -= 0.6
    actual[0, 1][flip] += 0.6  # max abs difference 0.6 < the margin 1.0: not a near tie
    at_limit = compare_outputs(reference, actual, float("inf"))
    assert at_limit and at_limit.disagreements == 10 and at_limit.near_ties == 0
    assert at_limit.top1_agreement == pytest.approx(0.999) and at_limit.top1_disagreements == list(range(10))
    flip.flat[10] = True
    actual[0, 0][flip], actual[0, 1][flip] = 0.4, 0.6
    over = compare_outputs(reference, actual, float("inf"))
    assert not over and over.disagreements == 11 > PIXEL_DISAGREEMENT * 10_000
    assert not compare_outputs(reference, actual, 1e-4)  # and the relative error fails it in any case


# ---- dynamic-size export ---------------------------------------------------------------------------------------------
def test_dynamic_size_export_is_checked_at_a_second_size(tmp_path: Path) -> None:
    model = create_model("lraspp_mobilenet_v3_large")
    with pytest.raises(InvalidArgumentError, match="second_size"):
        export_onnx(model, tmp_path / "m.onnx", (1, 3, 96, 96), dynamic_size=True, second_size=(96, 96))
    report = export_onnx(model, tmp_path / "m.onnx", (1, 3, 96, 96), dynamic_size=True, second_size=(128, 160))
    assert report.validation and report.validation_resized and report.validation_resized.units == 4 * 128 * 160
    import onnx

    dims = onnx.load(str(tmp_path / "m.onnx")).graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_value or d.dim_param for d in dims] == [1, 21, "out_height", "out_width"]
    assert report.output_shape == (1, 21, 96, 96)
    from edgeconv.onnxgraph import session

    sess = session(str(tmp_path / "m.onnx"))
    assert sess.run(None, {"input": np.zeros((1, 3, 64, 224), np.float32)})[0].shape == (1, 21, 64, 224)


def test_cli_exports_a_label_map_with_dynamic_size(tmp_path: Path) -> None:
    out = tmp_path / "seg"
    result = runner.invoke(app, ["export", "fcn_resnet50", "--input-size", "96", "--dynamic-size", "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["output"] == {"name": "logits", "shape": [1, 21, 96, 96], "dtype": "float32", "kind": "label_map"}
    assert manifest["input"]["dynamic_size"] is True and manifest["labels"]["set"] == "voc"
    resized = manifest["validation"]["fp32_resized"]
    assert resized["passed"] and resized["unit"] == "pixel" and resized["input_size"] == [128, 160]
    assert (out / "labels.txt").read_text().splitlines()[:2] == ["background", "aeroplane"]

    # The runtime: a label map and class probabilities per pixel, equal to PyTorch's on the same input array.
    import skimage.data

    from edgeconv.runtime import Engine, overlay

    engine = Engine(out)
    photo = skimage.data.coffee()
    labels, probs = engine.segment(photo)
    assert engine.output_kind == "label_map" and labels.shape == (96, 96) and probs.shape == (21, 96, 96)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, rtol=1e-5)
    torch.manual_seed(0)  # the artifact's weights: export builds the model from seed 0
    model = create_model("fcn_resnet50")
    with torch.inference_mode():
        expected = model(torch.from_numpy(engine.preprocess(photo)))[0].argmax(0).numpy()
    # An untrained network's map is mostly one class; this one has several (LR-ASPP's and U-Net's have one).
    assert len(np.unique(expected)) > 1 and (labels == expected).mean() >= 0.999
    picture = overlay(photo, labels)
    assert picture.size == (photo.shape[1], photo.shape[0])


def test_cli_refuses_to_replace_a_fixed_size_artifact_before_the_work(tmp_path: Path) -> None:
    out = tmp_path / "seg"
    first = ["export", "lraspp_mobilenet_v3_large", "--input-size", "64", "--out", str(out)]
    assert runner.invoke(app, first).exit_code == 0
    result = runner.invoke(app, [*first, "--dynamic-size"])
    assert result.exit_code == 1 and "other dynamic_size" in result.stderr
    assert "fold BatchNorm" not in result.stderr  # refused before building anything


@pytest.mark.slow  # 18 s; test_zoo_convolutionize checks the convolutionized classifier itself by default
def test_cli_fully_convolutional_alexnet(tmp_path: Path) -> None:
    out = tmp_path / "alex"
    result = runner.invoke(app, ["export", "alexnet", "--fully-convolutional", "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["output"]["kind"] == "score_map" and manifest["output"]["shape"] == [1, 1000, 1, 1]
    resized = manifest["validation"]["fp32_resized"]
    assert resized["passed"] and resized["input_size"] == [288, 384] and resized["units"] == 4 * 3 * 6


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["export", "resnet50", "--fully-convolutional"], "resnet50 cannot be convolutionized"),
        (["export", "unet", "--input-size", "500"], "use 492 or 508"),
        (["export", "unet_padded", "--input-size", "500"], "use 496 or 512"),
        (["export", "deform_resnet50", "--opset", "17"], "needs ONNX opset 19"),
        (["export", "alexnet", "--fully-convolutional", "--int8"], "--int8 with --fully-convolutional"),
        (["export", "lraspp_mobilenet_v3_large", "--num-classes", "-3"], "--num-classes -3 is not valid"),
    ],
)
def test_cli_refuses_bad_dense_requests_in_one_line(args: list[str], needle: str, tmp_path: Path) -> None:
    out = tmp_path / "never"
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.iterdir())


# ---- U-Net's size rule ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("depth", "padding"), [(2, 0), (3, 0), (2, 1)])
def test_unet_size_rule_matches_what_the_network_takes(depth: int, padding: int, monkeypatch) -> None:
    """``takes_size`` against the network itself, with its size check switched off: a size is taken exactly when the
    network runs and every 2x2 pool sees an even map (the paper's rule: otherwise the up-convolved map and the
    cropped skip are half a pixel apart), and the output then has ``output_size``."""
    model = UNet(1, 2, width=2, depth=depth, padding=padding).eval()
    pooled: list[int] = []
    model.pool.register_forward_pre_hook(lambda module, args: pooled.append(args[0].shape[-1]))
    monkeypatch.setattr(unet_module, "takes_size", lambda *args: True)
    for size in range(8, 140):
        pooled.clear()
        try:
            with torch.inference_mode():
                out = model(torch.zeros(1, 1, size, size))
        except RuntimeError:  # a map too small for a conv, or a skip that does not match
            runs = False
        else:
            runs = out.shape[-1] >= 1
        fits = runs and all(side % 2 == 0 for side in pooled)
        assert takes_size(size, depth, padding) == fits, size
        if fits:
            assert out.shape[-1] == output_size(size, depth, padding)
    monkeypatch.undo()
    smallest = smallest_size(depth, padding)
    assert takes_size(smallest, depth, padding) and not any(takes_size(s, depth, padding) for s in range(1, smallest))
    assert all(takes_size(s, depth, padding) for s in nearest_sizes(smallest + 5, depth, padding))


# ---- deformable ResNet-50 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("modulated", [False, True])
def test_deformable_conv_profile_counts_conv_and_sampling_apart(modulated: bool) -> None:
    layer = DeformConv2d(8, 16, 3, stride=2, padding=1, modulated=modulated).eval()
    report = profile_model(layer, (8, 20, 20))
    rows = {row.name: row for row in report.layers}
    deform, offset = rows["conv"], rows["offset"]
    assert deform.type == "conv_deform 3x3" and deform.output_shape == (1, 16, 10, 10)
    assert deform.macs == 100 * 16 * 8 * 9  # a regular conv's mult-adds
    samples = 8 * 9 * 100  # in_channels x kernel area x output positions
    assert deform.other_ops == samples * (5 if modulated else 4) + 16 * 100  # bilinear sampling (+ mask) + bias
    assert offset.macs == 100 * (27 if modulated else 18) * 8 * 9


def test_batchnorm_folds_into_a_deformable_conv() -> None:
    model = create_model("deform_resnet50").double()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    report = fuse_model(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in report.model.modules())
    assert sum(1 for m in report.model.modules() if isinstance(m, DeformConv2d)) == 13
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.inference_mode():
        expected, got = model(x), report.model(x)
    assert (got - expected).abs().max() <= 1e-9 * expected.abs().max()


def test_deformable_export_says_where_deformconv_runs(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), DeformConv2d(8, 8, 3), nn.AdaptiveAvgPool2d(1)).eval()
    with torch.no_grad():
        model[2].offset.weight.normal_(0.0, 0.2)
    report = export_onnx(model, tmp_path / "d.onnx", (1, 3, 32, 32), opset=19)
    assert len(report.runtime_notes) == 1 and "OpenVINO" in report.runtime_notes[0]
    plain = export_onnx(nn.Conv2d(3, 8, 3).eval(), tmp_path / "p.onnx", (1, 3, 32, 32))
    assert plain.runtime_notes == []


# ---- INT8 of label maps ----------------------------------------------------------------------------------------------
def test_label_map_fidelity_counts_pixels_and_iou() -> None:
    reference = np.zeros((2, 3, 4, 5))
    reference[:, 0] = 1.0  # class 0 everywhere ...
    reference[0, 1, :2] = 2.0  # ... but class 1 in the first image's top two rows (10 pixels)
    test = reference.copy()
    test[0, 2, 0, :] = 3.0  # the test map calls the first row (5 pixels) class 2
    report = compare_logits(reference, test, min_agreement=0.9)
    assert report.unit == "pixel" and report.samples == 40 and report.images == 2
    assert report.top1_agreement == pytest.approx(35 / 40) and not report  # 87.5% < the 90% asked
    # IoU per class: 0: 30 / 30, 1: 5 / 10, 2: 0 / 5 -> mean 0.5
    assert report.mean_iou == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert {"unit", "mean_iou", "images"} <= set(report.as_dict()) and "per-pixel agreement" in report.summary()
    classes = compare_logits(reference[:, :, 0, 0], test[:, :, 0, 0])
    assert classes.unit == "image" and "mean_iou" not in classes.as_dict()


@pytest.fixture(scope="module")
def coins_unet() -> tuple[nn.Module, np.ndarray, np.ndarray]:
    return _coins_unet()


def _coins_unet(steps: int = 30) -> tuple[nn.Module, np.ndarray, np.ndarray]:
    """A width-16 U-Net trained for a few seconds on coins (bench/seg_coins.py), calibration and held-out crops. 30
    steps: pixel accuracy 98.5% and IoU 0.98 / 0.96 (background / coin) on the held-out crops (60 steps: 99.2%, 0.99 /
    0.98, at 1.3x the training time)."""
    from conftest import load_script

    bench = load_script("seg_coins")
    image, mask = bench.coins_and_labels()
    model = bench.train("unet_padded", image[:, :256], mask[:, :256], steps=steps)
    rng = np.random.default_rng(1)
    calib = bench.random_crops(image[:, :256], mask[:, :256], 32, 64, rng)[0]
    held_out = bench.random_crops(image[:, :256], mask[:, :256], 8, 64, rng)[0]
    return model, calib, held_out


@pytest.mark.parametrize("target", ["onnxruntime", "tensorrt"])
def test_int8_of_a_trained_unet_is_gated_per_pixel(
    target: str, tmp_path: Path, coins_unet: tuple[nn.Module, np.ndarray, np.ndarray]
) -> None:
    import onnx

    from edgeconv.quantize.calibration import CalibrationData, Preprocessing
    from edgeconv.quantize.int8 import quantize_int8
    from edgeconv.quantize.options import Int8Options

    model, calib, held_out = coins_unet
    fp32 = tmp_path / "fp32.onnx"
    export_onnx(model, fp32, (1, 1, 64, 64), mean=(0.5,), std=(0.5,), dynamic_size=True, second_size=(96, 128))
    prep = Preprocessing(input_size=(1, 64, 64), mean=(0.5,), std=(0.5,), resize_ratio=1.0)
    options = Int8Options(target=target, calib_samples=32, adaround=False, min_agreement=0.98)
    report = quantize_int8(fp32, tmp_path / "int8.onnx", prep, model, options, data=CalibrationData(calib, held_out))
    fidelity = report.fidelity
    assert report.gate_passed and fidelity.unit == "pixel" and fidelity.samples == 8 * 64 * 64
    assert fidelity.top1_agreement >= 0.98 and fidelity.mean_iou >= 0.95
    assert report.manifest()["fidelity"]["mean_iou"] == pytest.approx(fidelity.mean_iou, abs=1e-6)
    graph = onnx.load(str(tmp_path / "int8.onnx")).graph
    producers = {o: n for n in graph.node for o in n.output}
    inits = {i.name: i for i in graph.initializer}
    # The up-convolutions' weights: per output channel, which is axis 1 of a ConvTranspose weight (in, out, k, k).
    widths = sorted(m.out_channels for m in model.modules() if isinstance(m, nn.ConvTranspose2d))
    scales = []
    for node in (n for n in graph.node if n.op_type == "ConvTranspose"):
        dq = producers[node.input[1]]
        assert dq.op_type == "DequantizeLinear" and next((a.i for a in dq.attribute if a.name == "axis"), 1) == 1
        scales.append(len(onnx.numpy_helper.to_array(inits[dq.input[1]])))
    assert sorted(scales) == widths
    # The INT8 file keeps the dynamic height and width of the FP32 one.
    sess = __import__("edgeconv.onnxgraph", fromlist=["session"]).session(str(tmp_path / "int8.onnx"))
    assert sess.run(None, {"input": np.zeros((1, 1, 96, 128), np.float32)})[0].shape == (1, 2, 96, 128)


def test_onnxruntime_form_upsamples_float_class_scores(tmp_path: Path) -> None:
    """A segmentation head's final bilinear Resize reads the last conv's float scores, not uint8 ones."""
    import onnx

    from edgeconv.quantize.calibration import CalibrationData, Preprocessing
    from edgeconv.quantize.int8 import quantize_int8
    from edgeconv.quantize.options import Int8Options

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU())
            self.classifier = nn.Conv2d(8, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            scores = self.classifier(self.body(x))
            return nn.functional.interpolate(scores, size=x.shape[-2:], mode="bilinear", align_corners=False)

    torch.manual_seed(0)
    model = Head().eval()
    fp32 = tmp_path / "fp32.onnx"
    export_onnx(model, fp32, (1, 3, 32, 32))
    rng = np.random.default_rng(0)
    data = CalibrationData(rng.normal(size=(16, 3, 32, 32)).astype(np.float32),
                           rng.normal(size=(4, 3, 32, 32)).astype(np.float32))  # fmt: skip
    prep = Preprocessing(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3, resize_ratio=1.0)
    options = Int8Options(calib_samples=16, adaround=False, min_agreement=0.0, equalize=False)
    quantize_int8(fp32, tmp_path / "int8.onnx", prep, model, options, data=data)
    graph = onnx.load(str(tmp_path / "int8.onnx")).graph
    producers = {o: n for n in graph.node for o in n.output}
    resize = producers[graph.output[0].name]
    assert resize.op_type == "Resize" and producers[resize.input[0]].op_type == "Conv"


# ---- Yu & Koltun's dilated context -------------------------------------------------------------------------------
def test_context_module_starts_as_identity_and_sees_67_pixels() -> None:
    from edgeconv.zoo.dilation import context_module

    module = context_module(4).eval()
    x = torch.randn(1, 4, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(module(x), torch.relu(x))  # identity init: each layer passes its channel through
        for conv in (m for m in module.modules() if isinstance(m, nn.Conv2d)):
            conv.weight.uniform_(0.1, 0.2)  # positive weights: every tap in the receptive field reaches the output
        base = torch.rand(1, 4, 101, 101)
        bumped = base.clone()
        bumped[..., 50, 50] += 1.0
        changed = (module(bumped) - module(base)).abs().sum(dim=(0, 1)) > 0
    rows = changed.any(dim=1).nonzero().flatten()
    assert rows.min() == 50 - 33 and rows.max() == 50 + 33  # 67 x 67: 1 + 2 (1 + 1 + 2 + 4 + 8 + 16 + 1)


def test_dilation8_keeps_vgg16_keys_and_one_eighth_resolution() -> None:
    vgg = create_model("vgg16")
    model = create_model("dilation8")
    model.features.load_state_dict(vgg.features.state_dict(), strict=True)
    scores: list[torch.Tensor] = []
    model.head.register_forward_hook(lambda module, args, out: scores.append(out))
    with torch.device("meta"):
        out = model.to("meta")(torch.empty(1, 3, 96, 128))
    assert scores[0].shape == (1, 21, 12, 16) and out.shape == (1, 21, 96, 128)
