"""Detectors (seed 004): Fast R-CNN and Faster R-CNN build, load torchvision's checkpoints key for key, export to ONNX
and match PyTorch box for box on real photos, including a photo where the detector finds nothing.

The default run exports fasterrcnn_mobilenet_v3_large_320_fpn and Fast R-CNN; the other detectors under ``-m slow``,
at a reduced resize (``min_size``) where their own is slow.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision
from torchvision.ops.misc import FrozenBatchNorm2d
from typer.testing import CliRunner

from edgeconv.boxes import (
    Detections,
    box_iou,
    compare_detections,
    draw_detections,
    f1_score,
    letterbox,
    match,
    unletterbox,
)
from edgeconv.cli import app
from edgeconv.detection import (
    DETECTION_PHOTOS,
    export_detector,
    export_fixed_detector,
    export_roi_detector,
    photo_tensor,
    run_torch_detector,
    validate_detector,
    validate_fixed_detector,
    validate_roi_detector,
)
from edgeconv.export import validation_batch, validation_images
from edgeconv.fixed_detector import FixedSizeDetector
from edgeconv.zoo import create_model, get_spec, list_specs
from edgeconv.zoo.detection import resize_bilinear

DETECTORS = [s.name for s in list_specs() if s.is_detector]
TORCHVISION = [s.name for s in list_specs() if s.is_detector and s.torchvision_name]
SMALL = "fasterrcnn_mobilenet_v3_large_320_fpn"
# Slow detectors resize to a smaller shorter side in the export checks (the graph is the same at any size).
REDUCED = {
    "fasterrcnn_resnet50_fpn": {"min_size": 320, "max_size": 512},
    "fasterrcnn_mobilenet_v3_large_fpn": {"min_size": 320, "max_size": 512},
    "fasterrcnn_vgg16": {"min_size": 224, "max_size": 384},
    "fasterrcnn_zf": {"min_size": 320, "max_size": 512},
}
runner = CliRunner()


def test_detectors_are_registered_with_their_outputs() -> None:
    assert set(DETECTORS) == {
        "fast_rcnn_vgg16",
        "fasterrcnn_resnet50_fpn",
        "fasterrcnn_mobilenet_v3_large_fpn",
        "fasterrcnn_mobilenet_v3_large_320_fpn",
        "fasterrcnn_vgg16",
        "fasterrcnn_zf",
    }
    assert get_spec("fast_rcnn_vgg16").inputs == "image_rois"
    assert {get_spec(n).output for n in DETECTORS} == {"detections", "roi_detections"}


def _torchvision_reference(name: str) -> torch.nn.Module:
    """torchvision's detector as its COCO checkpoint is laid out: BatchNorm frozen (statistics as buffers)."""
    reference = torchvision.models.get_model(name, weights=None, weights_backbone=None).eval()

    def freeze(module: torch.nn.Module) -> None:
        for child_name, child in module.named_children():
            if isinstance(child, torch.nn.BatchNorm2d):
                frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
                frozen.running_mean.uniform_(-0.5, 0.5)  # not identity: a misplaced BN would show
                frozen.running_var.uniform_(0.5, 2.0)
                frozen.weight.copy_(child.weight.detach())
                frozen.bias.copy_(child.bias.detach())
                setattr(module, child_name, frozen)
            else:
                freeze(child)

    freeze(reference)
    return reference


@pytest.mark.parametrize("name", [n if n == SMALL else pytest.param(n, marks=pytest.mark.slow) for n in TORCHVISION])
def test_torchvision_checkpoint_layout_loads_strictly_with_its_parameter_count(name: str) -> None:
    weights_enum = torchvision.models.get_model_weights(name)
    ours = create_model(name)
    reference = _torchvision_reference(name)
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert sum(p.numel() for p in ours.parameters()) == weights_enum.DEFAULT.meta["num_params"]
    assert sum(p.numel() for p in ours.parameters()) == get_spec(name).figures.params


def test_same_detections_as_torchvision_with_its_weights() -> None:
    """At the detector's own size (no resize), ours is torchvision's model: the same boxes, scores and labels."""
    reference = _torchvision_reference(SMALL)
    ours = create_model(SMALL)
    ours.load_state_dict(reference.state_dict(), strict=True)
    image = photo_tensor(validation_images(["coffee"])[0])[..., :320, :320]
    with torch.inference_mode():
        expected = reference([image[0]])[0]
        boxes, scores, labels = ours(image)
    torch.testing.assert_close(boxes, expected["boxes"])
    torch.testing.assert_close(scores, expected["scores"])
    assert torch.equal(labels, expected["labels"])


@pytest.mark.parametrize("shape", [((3, 512, 512), (320, 320)), ((3, 400, 600), (320, 480)), ((3, 37, 50), (80, 61))])
def test_resize_is_torchs_bilinear(shape: tuple[tuple[int, ...], tuple[int, int]]) -> None:
    image = torch.rand(shape[0])
    expected = torch.nn.functional.interpolate(image[None], size=shape[1], mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(resize_bilinear(image, shape[1]), expected, rtol=0, atol=1e-5)


def test_random_init_ranks_boxes_instead_of_tying_them() -> None:
    """``wake``: a random detector gives distinct scores, and detections on some photos but not on all."""
    model = create_model(SMALL)
    photos = validation_images(DETECTION_PHOTOS)
    found = {name: run_torch_detector(model, photo_tensor(p)) for name, p in zip(DETECTION_PHOTOS, photos, strict=True)}
    assert len(found["coffee"]) == 100 and len(np.unique(found["coffee"].scores)) > 90
    assert found["coffee"].scores.max() - found["coffee"].scores.min() > 0.1
    # the photos the export checks use for "finds nothing": at its own size, and square (a letterbox adds nothing)
    assert len(found["chelsea"]) == len(found["immunohistochemistry"]) == 0


def _check_export(name: str, tmp_path, **kwargs) -> None:
    model = create_model(name, **kwargs)
    path = export_detector(model, tmp_path / "d.onnx", (model.min_size, model.min_size))
    results = validate_detector(path, model, validation_images(DETECTION_PHOTOS), DETECTION_PHOTOS)
    assert all(results.values()), results
    assert sum(r.reference for r in results.values()) > 0  # boxes were compared, not only empty outputs
    fixed = export_fixed_detector(model, tmp_path / "f.onnx", (model.min_size, model.min_size))
    size = (model.min_size, model.min_size)
    results = validate_fixed_detector(fixed, model, validation_images(DETECTION_PHOTOS), DETECTION_PHOTOS, size)
    assert all(results.values()), results


def test_onnxruntime_form_matches_pytorch_box_for_box_including_no_detections(tmp_path) -> None:
    model = create_model(SMALL)
    path = export_detector(model, tmp_path / "d.onnx", (320, 320))
    results = validate_detector(path, model, validation_images(DETECTION_PHOTOS), DETECTION_PHOTOS)
    assert all(results.values()), results
    assert results["chelsea"].reference == results["chelsea"].actual == 0  # nothing found: an empty output
    assert results["coffee"].matched == 100 and results["coffee"].min_iou >= 0.99
    # the photos are 400x600, 300x451, 512x512, 427x640 and 512x512: none at the 320x320 the graph was traced at
    assert len({p.shape[:2] for p in validation_images(DETECTION_PHOTOS)}) == 4


@pytest.mark.parametrize(
    ("name", "size"),
    [(SMALL, (320, 320)), pytest.param("fasterrcnn_resnet50_fpn", (320, 480), marks=pytest.mark.slow)],
)
def test_fixed_size_form_is_the_detector_exactly(name: str, size: tuple[int, int]) -> None:
    """Eager, the TensorRT form returns the detector's own detections (padded): same boxes, bit for bit."""
    model = create_model(name, **REDUCED.get(name, {}))
    fixed = FixedSizeDetector(model, size)
    for photo in validation_images(["coffee", "astronaut"]):
        canvas = photo_tensor(letterbox(photo, size)[0])
        expected = run_torch_detector(model, canvas)
        with torch.inference_mode():
            boxes, scores, labels, count = fixed(canvas)
        assert boxes.shape == (100, 4) and scores.shape == labels.shape == (100,) and count.shape == (1,)
        n = int(count)
        assert n == len(expected) > 0
        assert np.array_equal(boxes[:n].numpy(), expected.boxes) and np.array_equal(scores[:n].numpy(), expected.scores)
        assert np.array_equal(labels[:n].numpy(), expected.labels)
        assert not boxes[n:].any() and not scores[n:].any() and not labels[n:].any()


def _check_static(path) -> None:
    """The TensorRT form's contract: NMS and RoiAlign as ONNX ops, no branches, constant K, fixed output shapes."""
    import onnx

    proto = onnx.load(path)
    ops = {n.op_type for n in proto.graph.node}
    assert {"NonMaxSuppression", "RoiAlign", "TopK"} <= ops and not ops & {"If", "Loop", "NonZero"}
    constants = {o for n in proto.graph.node if n.op_type == "Constant" for o in n.output}
    constants |= {i.name for i in proto.graph.initializer}
    assert all(n.input[1] in constants for n in proto.graph.node if n.op_type == "TopK")  # K is a constant
    dims = [[d.dim_value for d in o.type.tensor_type.shape.dim] for o in proto.graph.output]
    assert dims == [[100, 4], [100], [100], [1]]


@pytest.mark.slow  # the CLI test below covers the same export in the default run
def test_tensorrt_form_is_static_and_matches_pytorch_on_onnxruntime(tmp_path) -> None:
    model = create_model(SMALL)
    path = export_fixed_detector(model, tmp_path / "f.onnx", (320, 320))
    _check_static(path)
    results = validate_fixed_detector(path, model, validation_images(DETECTION_PHOTOS), DETECTION_PHOTOS, (320, 320))
    assert all(results.values()), results
    assert results["immunohistochemistry"].reference == results["immunohistochemistry"].actual == 0
    assert results["coffee"].reference == 100  # a 400x600 photo resized to 320x320


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in DETECTORS if n not in (SMALL, "fast_rcnn_vgg16")])
def test_every_faster_rcnn_exports_and_matches_pytorch(name: str, tmp_path) -> None:
    _check_export(name, tmp_path, **REDUCED.get(name, {}))


def test_fast_rcnn_exports_with_max_roi_pool_and_matches_pytorch(tmp_path) -> None:
    import onnx

    model = create_model("fast_rcnn_vgg16")
    path = export_roi_detector(model, tmp_path / "r.onnx", (128, 192))
    assert "MaxRoiPool" in {n.op_type for n in onnx.load(path).graph.node}
    # two photos at the traced size, one at another: both sizes are dynamic
    images = list(validation_batch((3, 128, 192))[:2, None]) + list(validation_batch((3, 160, 128))[:1, None])
    check = validate_roi_detector(path, model, images)
    assert check["passed"], check


# ---- edgeconv.boxes ------------------------------------------------------------------------------------------------
def _dets(boxes, scores, labels) -> Detections:
    return Detections.of(boxes, scores, labels)


def test_iou_and_matching() -> None:
    a = _dets([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [1, 2])
    assert box_iou(a.boxes, [[0, 0, 10, 10], [5, 0, 15, 10], [40, 40, 41, 41]]).round(4).tolist()[0] == [1, 0.3333, 0]
    assert compare_detections(a, a)
    shifted = _dets([[0, 0, 10, 10], [20, 20, 30, 30.5]], [0.9, 0.8], [1, 2])  # IoU 0.952
    assert not compare_detections(a, shifted) and compare_detections(a, shifted, iou=0.95)
    assert not compare_detections(a, _dets(a.boxes, [0.9, 0.8], [1, 3]))  # another class
    assert not compare_detections(a, _dets(a.boxes, [0.9, 0.802], [1, 2]))  # score off by 2e-3
    extra = _dets([*a.boxes, [50, 50, 60, 60]], [0.9, 0.8, 0.7], [1, 2, 1])
    result = compare_detections(a, extra)
    assert not result and (result.matched, result.actual) == (2, 3)
    assert compare_detections(_dets([], [], []), _dets([], [], []))
    assert match(a, _dets([[0, 0, 10, 10]], [0.5], [1]), 0.5) == [0, -1]


def test_f1_of_detections() -> None:
    a = _dets([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [1, 2])
    assert f1_score(a, a) == 1.0
    assert f1_score(a, _dets([[0, 0, 10, 10]], [0.5], [1])) == pytest.approx(2 / 3)
    assert f1_score(a, _dets([[0, 0, 10, 10]], [0.5], [2])) == 0.0
    assert f1_score(_dets([], [], []), _dets([], [], [])) == 1.0


def test_letterbox_round_trip() -> None:
    photo = np.full((300, 450, 3), 200, np.uint8)
    canvas, scale = letterbox(photo, (320, 320))
    assert canvas.shape == (320, 320, 3) and scale == pytest.approx(320 / 450)
    assert canvas[:213].min() == 200 and not canvas[214:].any()  # the photo on top, black padding below
    boxes = unletterbox(np.array([[0, 0, 320, 213.3], [10, 10, 20, 300]]), scale, (300, 450))
    np.testing.assert_allclose(boxes[0], [0, 0, 450, 300], atol=0.5)
    assert boxes[1, 3] == 300  # clipped to the photo


def test_compare_allows_swaps_only_at_the_detection_cap() -> None:
    boxes = [[i, 0, i + 10, 10] for i in range(0, 300, 30)]
    reference = _dets(boxes, np.linspace(0.9, 0.5, 10), [1] * 10)
    swapped = _dets([*boxes[:9], [500, 0, 510, 10]], [*np.linspace(0.9, 0.5, 10)[:9], 0.5004], [1] * 10)
    assert not compare_detections(reference, swapped)
    result = compare_detections(reference, swapped, cap=10)
    assert result and result.tolerated == 1
    far = _dets([*boxes[:8], [500, 0, 510, 10], boxes[9]], [*np.linspace(0.9, 0.5, 10)[:8], 0.5004, 0.5], [1] * 10)
    assert not compare_detections(reference, far, cap=10)  # an unmatched box far above the cut


def test_compare_allows_nms_to_pick_either_of_two_tied_boxes() -> None:
    reference = _dets([[0, 0, 10, 10], [5, 0, 15, 10], [40, 0, 50, 10]], [0.5, 0.5, 0.4], [2, 2, 2])
    other_pick = _dets([[5, 0, 15, 10], [0, 0, 10, 10], [40, 0, 50, 10]], [0.5, 0.5, 0.4], [2, 2, 2])
    assert compare_detections(reference, other_pick)  # the same boxes, tied, in another order: plain matches
    one_each = _dets([[0, 0, 10, 10], [40, 0, 50, 10]], [0.5, 0.4], [2, 2])
    assert not compare_detections(reference, one_each)  # counts differ: never tolerated
    reference2 = _dets([[0, 0, 10, 10], [40, 0, 50, 10]], [0.5, 0.4], [2, 2])
    tied_other = _dets([[20, 0, 30, 10], [40, 0, 50, 10]], [0.5, 0.4], [2, 2])
    assert not compare_detections(reference2, tied_other)  # a lone box replaced: no tie on either side
    reference3 = _dets([[0, 0, 10, 10], [3, 0, 13, 10], [40, 0, 50, 10]], [0.5, 0.5, 0.4], [2, 2, 2])
    picked_other = _dets([[60, 0, 70, 10], [3, 0, 13, 10], [40, 0, 50, 10]], [0.5, 0.5, 0.4], [2, 2, 2])
    result = compare_detections(reference3, picked_other)
    assert result and result.tolerated == 1


def test_sub_pixel_boxes_match_by_corners() -> None:
    thin = _dets([[265.0946, 168.777, 265.2745, 184.167]], [0.4], [81])
    shifted = _dets([[265.0937, 168.777, 265.2735, 184.1666]], [0.4], [81])
    assert box_iou(thin.boxes, shifted.boxes)[0, 0] < 0.99 and compare_detections(thin, shifted)


def test_draw_detections_outlines_each_box_above_the_threshold() -> None:
    image = np.zeros((60, 80, 3), np.uint8)
    dets = _dets([[10, 10, 40, 50], [50, 5, 70, 20]], [0.9, 0.2], [3, 7])
    drawn = draw_detections(image, dets, [f"c{i}" for i in range(10)], threshold=0.5)
    assert drawn.shape == image.shape and not image.any()  # a copy
    assert drawn[30, 10].any() and drawn[30, 40].any()  # left and right edges of the first box
    assert not drawn[15, 70].any() and not drawn[20, 60].any()  # the second box is below the threshold
    assert not drawn[30, 25].any()  # inside the box: not filled


# ---- the command line ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", [pytest.param("onnxruntime", marks=pytest.mark.slow), "tensorrt"])
def test_export_command_writes_a_validated_detector_artifact_the_engine_runs(target: str, tmp_path) -> None:
    from edgeconv.runtime import Engine

    out = tmp_path / "det"
    result = runner.invoke(app, ["export", SMALL, "--target", target, "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["output"]["kind"] == "detections" and manifest["detector"]["form"] == target
    assert manifest["input"]["dynamic_size"] == (target == "onnxruntime")
    photos = manifest["validation"]["fp32"]["photos"]
    assert manifest["validation"]["fp32"]["passed"] and photos["immunohistochemistry"]["reference"] == 0
    assert sorted(p.name for p in out.iterdir()) == ["labels.txt", "manifest.json", "model.onnx"]
    labels = (out / "labels.txt").read_text().splitlines()
    assert len(labels) == 91 and labels[1] == "person"
    assert "chelsea" in result.stdout and "pass" in result.stdout

    engine = Engine(out)
    coffee = validation_images(["coffee"])[0]
    found = engine.detect(coffee)
    if target == "onnxruntime":  # the photo at its own size: PyTorch's detections
        expected = run_torch_detector(create_model(SMALL), photo_tensor(coffee))
        assert compare_detections(expected, found, cap=100)
    else:  # letterboxed and mapped back onto the 400x600 photo
        _check_static(out / "model.onnx")
        assert len(found) > 0 and found.boxes[:, 2].max() <= 600 and found.boxes[:, 3].max() <= 400
    assert len(engine.detect(coffee, threshold=0.5)) < len(found)
    assert len(engine.detect(validation_images(["immunohistochemistry"])[0])) == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--target", "openvino"], "--target 'openvino' is not one of"),
        (["--dynamic-batch"], "--dynamic-batch does not apply"),
        (["--input-size", "256"], "--input-size does not apply"),
        (["--opset", "13"], "--opset 13 is too low"),
    ],
)
def test_export_command_refuses_what_detectors_do_not_take(flags: list[str], message: str, tmp_path) -> None:
    result = runner.invoke(app, ["export", SMALL, "--out", str(tmp_path / "x"), *flags])
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert not (tmp_path / "x").exists() and not list(tmp_path.iterdir())


# ---- profile: the RoI heads counted per proposal, cross-checked with fvcore ----------------------------------------
def _fvcore_fixed(name: str, size: tuple[int, int]) -> dict[str, int]:
    """fvcore's count per operator for the detector's fixed-shape form (the same convention: a fixed proposal count)."""
    import warnings

    from fvcore.nn import FlopCountAnalysis

    fixed = FixedSizeDetector(create_model(name), size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = FlopCountAnalysis(fixed, torch.zeros(1, 3, *size))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        return dict(analysis.by_operator())


def _check_profile_against_fvcore(name: str, size: tuple[int, int], proposals: int) -> None:
    from edgeconv.profile.count import profile_model

    report = profile_model(name)
    assert report.params == get_spec(name).figures.params
    fc6 = next(r for r in report.layers if r.name == "roi_heads.box_head.fc6")
    assert fc6.macs == proposals * (fc6.params - 1024)  # per proposal, each weight once (the bias is no mult-add)
    fvcore = _fvcore_fixed(name, size)
    # The same conv and fc mult-adds (fvcore files MobileNetV3's squeeze-excitation 1x1 convs under conv, edgeconv
    # under fc: compare the sum). fvcore also counts nearest upsampling (FPN's top-down path) and adaptive pooling,
    # which have no multiply-accumulates: the whole deviation.
    assert report.macs == fvcore["conv"] + fvcore["linear"]
    assert set(fvcore) - {"conv", "linear"} <= {"upsample_nearest2d", "adaptive_avg_pool2d"}
    assert any("proposals" in note for note in report.notes)


def test_detector_profile_counts_the_roi_heads_per_proposal_as_fvcore_does() -> None:
    _check_profile_against_fvcore(SMALL, (320, 320), proposals=150)


@pytest.mark.slow
def test_resnet50_fpn_profile_at_800x1333_with_1000_proposals_agrees_with_fvcore() -> None:
    _check_profile_against_fvcore("fasterrcnn_resnet50_fpn", (800, 1333), proposals=1000)


@pytest.mark.slow
def test_fast_rcnn_profile_counts_its_heads_for_2000_rois() -> None:
    from edgeconv.profile.count import FAST_RCNN_ROIS, profile_model

    report = profile_model("fast_rcnn_vgg16", input_size=(224, 320))
    fc6 = next(r for r in report.layers if r.name == "head.1")
    assert fc6.macs == FAST_RCNN_ROIS * 512 * 7 * 7 * 4096
    assert report.params == sum(p.numel() for p in create_model("fast_rcnn_vgg16").parameters())


def test_profile_command_prints_a_detector_as_json() -> None:
    result = runner.invoke(app, ["profile", SMALL, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["params"] == 19_386_354 and data["macs"] > 2e9
