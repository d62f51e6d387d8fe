"""The 3D CNNs of seed 004 (issue 19), zoo and profile stages: the video ResNets against torchvision (layout, parameter
counts and the ops torchvision documents), C3D's and Ji et al.'s shapes and parameters against their papers, Conv3d
mult-adds by hand and against fvcore, clip inputs through ``profile_model`` and the CLI, clips panning across photos
(validation and calibration), export with FP16, and the runtime on a clip's frames.

The registry-wide sweeps (test_zoo, test_fuse, test_profile, test_torchvision_compat, test_paper_notes, test_export)
cover these models too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import fvcore_count, meta_model
from torch import nn
from typer.testing import CliRunner

from edgeconv.cli import app
from edgeconv.errors import InputError, InvalidArgumentError
from edgeconv.profile import profile_model
from edgeconv.zoo import ModelSpec, create_model, get_spec, list_specs
from edgeconv.zoo.registry import count_params
from edgeconv.zoo.video import JI_2013, midplanes

runner = CliRunner()
VIDEO_RESNETS = ("r3d_18", "mc3_18", "r2plus1d_18")
CLIP_MODELS = (*VIDEO_RESNETS, "c3d", "ji2013_3dcnn")


def torchvision_weights_meta(name: str) -> dict:
    """The metadata torchvision documents for its Kinetics-400 checkpoint of ``name`` (read from the installed
    source: nothing is downloaded)."""
    from torchvision.models import video

    enum = {"r3d_18": video.R3D_18_Weights, "mc3_18": video.MC3_18_Weights, "r2plus1d_18": video.R2Plus1D_18_Weights}
    return enum[name].KINETICS400_V1.meta


# ---- registry ------------------------------------------------------------------------------------------------------
def test_clip_models_are_registered_as_clips() -> None:
    clips = {spec.name for spec in list_specs() if spec.is_clip}
    assert set(CLIP_MODELS) <= clips
    for name in VIDEO_RESNETS:
        spec = get_spec(name)
        assert spec.input_size == (3, 16, 112, 112) and spec.input_layout == "NCTHW"
        assert spec.num_classes == 400 and spec.torchvision_name == name
        assert spec.mean == (0.43216, 0.394666, 0.37645) and spec.std == (0.22803, 0.22145, 0.216989)
    assert get_spec("c3d").input_size == (3, 16, 112, 112) and get_spec("c3d").num_classes == 487
    ji = get_spec("ji2013_3dcnn")
    assert ji.input_size == (3, 7, 60, 40) and ji.num_classes == 3 and ji.paper == JI_2013
    assert not get_spec("resnet18").is_clip and get_spec("resnet18").input_layout == "NCHW"


def test_spec_input_size_must_match_its_kind() -> None:
    spec = get_spec("r3d_18")
    with pytest.raises(ValueError, match=r"\(C, T, H, W\)"):
        ModelSpec(name="x", family="x", paper=spec.paper, builder=spec.builder, inputs="clip", input_size=(3, 112, 112))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        ModelSpec(name="x", family="x", paper=spec.paper, builder=spec.builder, input_size=(3, 16, 112, 112))
    with pytest.raises(ValueError, match="inputs 'video'"):
        ModelSpec(name="x", family="x", paper=spec.paper, builder=spec.builder, inputs="video")


# ---- video ResNets vs torchvision ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", VIDEO_RESNETS)
def test_state_dict_keys_order_and_shapes_are_torchvisions(name: str) -> None:
    """Key for key, in torchvision's order, with its shapes (the numerical check with loaded weights is in
    test_torchvision_compat); parameters equal the ``num_params`` torchvision documents for its checkpoint."""
    import torchvision

    with torch.device("meta"):
        reference = torchvision.models.get_model(name)
    ours = meta_model(name)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, v.shape) for k, v in reference.state_dict().items()
    ]
    assert count_params(name) == torchvision_weights_meta(name)["num_params"]


def test_parameter_counts() -> None:
    assert {name: count_params(name) for name in VIDEO_RESNETS} == {
        "r3d_18": 33_371_472,
        "mc3_18": 11_695_440,
        "r2plus1d_18": 31_505_325,
    }


@pytest.mark.parametrize("name", VIDEO_RESNETS)
def test_mult_adds_are_torchvisions_documented_ops(name: str) -> None:
    """torchvision's ``_ops`` ("GFLOPS") for these checkpoints are conv + linear multiply-accumulates at 16 x 112 x 112
    in billions, rounded to 3 decimals: edgeconv's count at the default input rounds to each exactly
    (40,696,553,472 / 43,342,635,008 / 40,519,080,960)."""
    report = profile_model(name)
    assert report.input_shape == (1, 3, 16, 112, 112)
    assert round(report.macs / 1e9, 3) == torchvision_weights_meta(name)["_ops"]


def test_r2plus1d_midplanes_keep_the_3d_convs_parameters() -> None:
    """Tran et al. 2018's M_i: the (2+1)D factorization has (about) the parameters of the 3x3x3 conv it replaces."""
    assert [midplanes(64, 64), midplanes(64, 128), midplanes(256, 512), midplanes(512, 512)] == [144, 230, 921, 1152]
    for n_in, n_out in ((64, 64), (64, 128), (128, 256), (256, 512), (512, 512)):
        m = midplanes(n_in, n_out)
        factored = n_in * m * 9 + m * n_out * 3  # 1x3x3 then 3x1x1
        assert factored <= 27 * n_in * n_out < factored + 9 * n_in + 3 * n_out  # floor: less than one more mid map


def test_mc3_convs_are_2d_above_conv2_x() -> None:
    model = meta_model("mc3_18")
    kernels = {name: m.kernel_size for name, m in model.named_modules() if isinstance(m, nn.Conv3d)}
    assert kernels["layer1.0.conv1.0"] == (3, 3, 3)
    assert all(
        k == (1, 3, 3)
        for n, k in kernels.items()
        if n.startswith(("layer2", "layer3", "layer4")) and "downsample" not in n
    )
    assert model.layer2[0].downsample[0].stride == (1, 2, 2)  # 2D stages keep the frames


def test_video_resnet_maps_at_the_default_clip() -> None:
    """Stem 1x2x2, stages 3-5 halve T, H and W (R3D / R(2+1)D) or only H and W (MC3's 2D stages)."""
    for name, last in (
        ("r3d_18", (1, 512, 2, 7, 7)),
        ("r2plus1d_18", (1, 512, 2, 7, 7)),
        ("mc3_18", (1, 512, 16, 7, 7)),
    ):
        model = meta_model(name)
        with torch.inference_mode():
            x = model.stem(torch.empty(1, 3, 16, 112, 112, device="meta"))
            assert x.shape == (1, 64, 16, 56, 56)
            x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
        assert x.shape == last, name


# ---- C3D -----------------------------------------------------------------------------------------------------------
def test_c3d_shapes_and_parameters() -> None:
    model = meta_model("c3d")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    assert [m.out_channels for m in convs] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert all(m.kernel_size == (3, 3, 3) and m.stride == (1, 1, 1) and m.padding == (1, 1, 1) for m in convs)
    assert model.pool1.kernel_size == (1, 2, 2) and model.pool5.padding == (0, 1, 1)
    with torch.inference_mode():
        x = torch.empty(1, 3, 16, 112, 112, device="meta")
        x = model.pool4(model.conv4b(model.conv4a(model.pool3(model.conv3b(model.conv3a(model.pool2(model.conv2(
            model.pool1(model.conv1(x))))))))))  # fmt: skip
        assert x.shape == (1, 512, 2, 7, 7)
        assert model.pool5(model.conv5b(model.conv5a(x))).shape == (1, 512, 1, 4, 4)  # 8192 = fc6's inputs
    assert (model.fc6.in_features, model.fc6.out_features, model.fc7.out_features) == (8192, 4096, 4096)
    assert model.fc8.out_features == 487
    widths = [3, 64, 128, 256, 256, 512, 512, 512, 512]
    conv_params = sum(a * b * 27 + b for a, b in zip(widths, widths[1:], strict=False))
    fc_params = 8192 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 487 + 487
    assert count_params("c3d") == conv_params + fc_params == 79_991_015
    assert meta_model("c3d", num_classes=101).fc8.out_features == 101  # UCF101


def test_c3d_runs_on_the_smallest_clip_its_head_takes() -> None:
    model = meta_model("c3d")
    with torch.inference_mode():
        assert model(torch.empty(2, 3, 16, 96, 96, device="meta")).shape == (2, 487)
        with pytest.raises(RuntimeError):  # conv5b's map pools to 1 x 2 x 2: not fc6's 8192 inputs
            model(torch.empty(1, 3, 16, 64, 64, device="meta"))


# ---- Ji et al. 2013 ------------------------------------------------------------------------------------------------
def map_shapes(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        module.register_forward_hook(lambda m, a, out, name=name: shapes.__setitem__(name, tuple(out.shape)))
        for name, module in model.named_modules()
        if name.count(".") == 1 or name in ("c6", "fc")
    ]
    with torch.inference_mode():
        model(x)
    for hook in hooks:
        hook.remove()
    return shapes


def test_ji2013_map_counts_and_sizes_are_the_papers() -> None:
    """Fig. 3: C2 2 x 23 maps of 54x34, S3 27x17, C4 6 x 13 maps of 21x12, S5 7x4 (78 maps), C6 128 of 1x1.
    Shapes are (N, channels, frames, H, W); maps per set = sum over the hardwired channels of their frames."""
    shapes = map_shapes(meta_model("ji2013_3dcnn"), torch.empty(1, 3, 7, 60, 40, device="meta"))
    # H1: gray, gradient-x, gradient-y (7 frames each); optflow-x, optflow-y (6 each): 33 maps
    appearance, motion = meta_model("ji2013_3dcnn").hardwired(torch.empty(1, 3, 7, 60, 40, device="meta"))
    assert appearance.shape == (1, 3, 7, 60, 40) and motion.shape == (1, 2, 6, 60, 40)
    assert 3 * 7 + 2 * 6 == 33
    expected = {
        "c2": ((1, 3 * 2, 5, 54, 34), (1, 2 * 2, 4, 54, 34)),  # 2 sets: 5 + 5 + 5 + 4 + 4 = 23 maps each
        "s3": ((1, 6, 5, 27, 17), (1, 4, 4, 27, 17)),
        "c4": ((1, 3 * 6, 3, 21, 12), (1, 2 * 6, 2, 21, 12)),  # 6 sets: 3 + 3 + 3 + 2 + 2 = 13 maps each
        "s5": ((1, 18, 3, 7, 4), (1, 12, 2, 7, 4)),
    }
    for layer, (app_shape, motion_shape) in expected.items():
        assert shapes[f"appearance.{layer}"] == app_shape and shapes[f"motion.{layer}"] == motion_shape, layer
    maps_per_set = {
        layer: (app[1] * app[2] + mot[1] * mot[2]) // sets
        for (layer, (app, mot)), sets in zip(expected.items(), (2, 2, 6, 6), strict=True)
    }
    assert maps_per_set == {"c2": 23, "s3": 23, "c4": 13, "s5": 13}
    assert shapes["c6"] == (1, 128, 1, 1) and shapes["fc"] == (1, 3)


def test_ji2013_layer_parameters_are_the_papers() -> None:
    """C2 1,480, S3 92, C4 3,810, S5 156 as the paper states; C6 and the output layer differ as the docstring says."""
    model = meta_model("ji2013_3dcnn")

    def params(layer: str) -> int:
        streams = (model.appearance, model.motion)
        return sum(p.numel() for stream in streams for p in stream.get_submodule(layer).parameters())

    assert {layer: params(layer) for layer in ("c2", "s3", "c4", "s5")} == {"c2": 1480, "s3": 92, "c4": 3810, "s5": 156}
    assert sum(p.numel() for p in model.c6.parameters()) == 128 * 78 * 7 * 4 + 128 == 279_680
    assert 128 * 78 * (7 * 4 + 1) == 289_536  # the paper's C6: a bias per connection
    assert sum(p.numel() for p in model.fc.parameters()) == 128 * 3 + 3
    assert 1480 + 92 + 3810 + 156 + 289_536 + 128 * 3 == get_spec("ji2013_3dcnn").figures.params
    assert count_params("ji2013_3dcnn") == 285_605


def test_ji2013_hardwired_layer_is_fixed() -> None:
    model = create_model("ji2013_3dcnn")
    assert "hardwired.kernels" not in model.state_dict()  # not learned, not in checkpoints
    assert not list(model.hardwired.parameters())
    frames = torch.arange(7.0).view(1, 1, 7, 1, 1)
    gray = frames + 3.0 * torch.arange(40.0) + 2.0 * torch.arange(60.0).view(60, 1)  # ramps: d/dx 3, d/dy 2
    flow = torch.randn(1, 2, 7, 60, 40)
    clip = torch.cat((gray.expand(1, 1, 7, 60, 40), flow), dim=1)
    appearance, motion = model.hardwired(clip)
    torch.testing.assert_close(appearance[:, 0], clip[:, 0])
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    torch.testing.assert_close(appearance[:, 1][inner], torch.full_like(appearance[:, 1][inner], 3.0))
    torch.testing.assert_close(appearance[:, 2][inner], torch.full_like(appearance[:, 2][inner], 2.0))
    torch.testing.assert_close(motion, flow[:, :, :6])  # 6 flows between 7 frames; the 7th frame is ignored
    with torch.inference_mode():
        out = model(clip)
    assert out.shape == (1, 3) and torch.isfinite(out).all()


# ---- profile: Conv3d by hand, fvcore, clip input sizes -------------------------------------------------------------
def test_conv3d_mult_adds_by_hand() -> None:
    """out_c x in_c / groups x kT x kH x kW x T' x H' x W'."""
    conv = nn.Conv3d(4, 8, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2))
    report = profile_model(conv, (4, 6, 20, 20))
    (row,) = report.layers
    assert row.output_shape == (1, 8, 6, 10, 10)
    assert row.macs == 8 * 4 * 3 * 5 * 5 * 6 * 10 * 10 and row.type == "conv_kxk 3x5x5"
    assert row.params == 8 * 4 * 75 + 8 and row.other_ops == 8 * 6 * 10 * 10  # bias adds are not mult-adds
    grouped = profile_model(nn.Conv3d(4, 8, (3, 1, 1), groups=2, bias=False), (4, 5, 7, 7), batch=2).layers[0]
    assert grouped.macs == 2 * 8 * (4 // 2) * 3 * 3 * 7 * 7 and grouped.type == "conv_group"
    temporal = profile_model(nn.Conv3d(4, 4, (3, 1, 1), groups=4, bias=False), (4, 5, 7, 7)).layers[0]
    assert temporal.macs == 4 * 1 * 3 * 3 * 7 * 7 and temporal.type == "conv_dw"


# fvcore counts one "flop" per multiply-accumulate of conv / linear (as edgeconv's mult-adds) and BatchNorm by its own
# rule (edgeconv: other ops); it has no rule for adaptive_avg_pool3d, max_pool3d, avg_pool3d, tanh, mul or add (other
# ops in edgeconv, not mult-adds), so those are absent from its counts. Clips: the video ResNets at 8 x 32 x 32, C3D at
# its smallest clip (16 x 96 x 96: its fc6 fixes the size), Ji's network at its own 7 x 60 x 40.
FVCORE_CLIPS = [
    ("r3d_18", (3, 8, 32, 32)),
    ("mc3_18", (3, 8, 32, 32)),
    ("r2plus1d_18", (3, 8, 32, 32)),
    ("c3d", (3, 16, 96, 96)),
    ("ji2013_3dcnn", None),
]


@pytest.mark.parametrize(("name", "size"), FVCORE_CLIPS)
def test_mult_adds_match_fvcore(name: str, size: tuple[int, ...] | None) -> None:
    report = profile_model(name, size)  # meta device, shapes only
    by_operator = fvcore_count(name, report.input_shape)
    assert set(by_operator) <= {"conv", "linear", "batch_norm"}, by_operator
    assert by_operator["conv"] + by_operator["linear"] == report.macs, by_operator
    assert by_operator["conv"] == sum(r.macs for r in report.layers if r.op.lower().startswith("conv"))


def test_profile_model_takes_clip_sizes() -> None:
    assert profile_model("r3d_18", 64).input_shape == (1, 3, 16, 64, 64)  # H: channels and frames kept
    assert profile_model("r3d_18", (64, 48), batch=2).input_shape == (2, 3, 16, 64, 48)
    assert profile_model("r3d_18", (3, 8, 64, 64)).input_shape == (1, 3, 8, 64, 64)
    with pytest.raises(InvalidArgumentError, match=r"\(C, T, H, W\) for a clip model"):
        profile_model("r3d_18", (3, 64, 64))
    with pytest.raises(InvalidArgumentError, match=r"\(C, H, W\)"):
        profile_model("resnet18", (3, 8, 64, 64))
    # Conv3d mult-adds scale with T' x H' x W': half the frames, half the mult-adds (up to the FC)
    full, half = profile_model("r3d_18", (3, 16, 64, 64)), profile_model("r3d_18", (3, 8, 64, 64))
    fc = 512 * 400
    assert full.macs - fc == 2 * (half.macs - fc)


# ---- CLI -----------------------------------------------------------------------------------------------------------
def test_cli_list_and_info_show_clip_inputs() -> None:
    result = runner.invoke(app, ["list", "--json", "3d"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["r3d_18"]["input_shape"] == [1, 3, 16, 112, 112] and rows["r3d_18"]["inputs"] == "clip"
    assert rows["r3d_18"]["input_layout"] == "NCTHW" and rows["r3d_18"]["params"] == 33_371_472
    result = runner.invoke(app, ["list", "ji2013"])
    assert result.exit_code == 0 and "clip 3x7x60x40" in result.stdout
    result = runner.invoke(app, ["info", "ji2013_3dcnn", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["inputs"] == "clip" and info["input_shape"] == [1, 3, 7, 60, 40] and info["params"] == 285_605
    assert info["macs"] == 15_625_224
    result = runner.invoke(app, ["info", "r2plus1d_18"])
    assert result.exit_code == 0 and "NCTHW" in result.stdout


def test_cli_profile_clip_model() -> None:
    result = runner.invoke(app, ["profile", "mc3_18", "--json", "--input-size", "32"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["input_shape"] == [1, 3, 16, 32, 32] and data["params"] == 11_695_440
    assert "conv_kxk 3x3x3" in data["by_type"] and "conv_kxk 1x3x3" in data["by_type"]


def test_pan_clip_frames_are_shifted_windows_of_one_photo() -> None:
    from edgeconv.export import validation_images
    from edgeconv.preprocess import pan_clip

    photo = validation_images()[0]
    clip = pan_clip(photo, (3, 5, 24, 32), mean=(0, 0, 0), std=(1, 1, 1), shift=(1, 2))[0]
    assert clip.shape == (3, 5, 24, 32) and 0 <= clip.min() and clip.max() <= 1
    for t in range(4):  # frame t + 1 is frame t moved by (1, 2): the scene moves by (-1, -2)
        np.testing.assert_array_equal(clip[:, t + 1, :-1, :-2], clip[:, t, 1:, 2:])
    assert not np.array_equal(clip[:, 0], clip[:, 1])
    gray = pan_clip(photo, (3, 5, 24, 32), mean=(0, 0, 0), std=(1, 1, 1), shift=(-1, 2), clip_format="gray_flow")[0]
    assert np.all(gray[1, :-1] == -2) and np.all(gray[2, :-1] == 1)  # optical flow x, y: the scene's motion
    assert np.all(gray[1:, -1] == 0)  # the last frame has no next frame
    np.testing.assert_array_equal(gray[0, 1, 1:, :-2], gray[0, 0, :-1, 2:])  # gray pans up and right
    np.testing.assert_allclose(gray[0, 2], clip[:, 2].transpose(1, 2, 0) @ np.array([0.299, 0.587, 0.114]), atol=1e-5)


def test_calibration_crops_of_a_clip_model_are_clips() -> None:
    from edgeconv.export import validation_images
    from edgeconv.quantize.calibration import Preprocessing, random_crops

    prep = Preprocessing.from_spec(get_spec("r3d_18"), (32, 40))
    assert prep.sample_shape == (3, 16, 32, 40) and prep.frames == 16
    from PIL import Image

    crops = random_crops([Image.fromarray(photo) for photo in validation_images()], 6, prep, seed=1)
    assert crops.shape == (6, 3, 16, 32, 40) and np.isfinite(crops).all()
    assert Preprocessing.from_spec(get_spec("ji2013_3dcnn")).clip_format == "gray_flow"
    image = Preprocessing.from_spec(get_spec("mobilenet_v2"))
    assert image.sample_shape == (3, 224, 224) and image.frames == 0


def test_cli_export_of_a_clip_model_validates_fp32_and_fp16_on_panning_clips(tmp_path: Path) -> None:
    out = tmp_path / "ji"
    result = runner.invoke(app, ["export", "ji2013_3dcnn", "--fp16", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["input"]["shape"] == [1, 3, 7, 60, 40] and manifest["input"]["layout"] == "NCTHW"
    assert manifest["preprocessing"]["frames"] == 7 and manifest["preprocessing"]["clip_format"] == "gray_flow"
    fp32, fp16 = manifest["validation"]["fp32"], manifest["validation"]["fp16"]
    assert fp32["passed"] and fp32["images"] == 4 and fp32["max_rel_error"] <= 1e-4
    assert fp16["passed"] and fp16["max_rel_error"] <= 1e-2


def test_engine_classifies_a_clip_from_its_frames_like_pytorch(tmp_path: Path) -> None:
    """A video ResNet exported at a reduced frame size; ``Engine.classify`` takes the clip as its list of frames, with
    no torch on its path, and ranks the classes as PyTorch does on the same preprocessed clip."""
    from edgeconv.artifact import export_artifact
    from edgeconv.export import validation_images
    from edgeconv.preprocess import preprocess_clip
    from edgeconv.runtime import Engine

    spec = get_spec("r3d_18")
    export_artifact("r3d_18", out_dir=tmp_path / "r3d", input_size=(32, 32))
    engine = Engine(tmp_path / "r3d")
    assert engine.is_clip and engine.input_shape == (1, 3, 16, 32, 32)
    photo = np.asarray(validation_images()[1])
    frames = [photo[8 * t : 8 * t + 300, 4 * t : 4 * t + 300] for t in range(16)]  # a pan over the photo
    top = engine.classify(frames, top_k=3)
    torch.manual_seed(0)
    model = create_model("r3d_18").eval()
    clip = preprocess_clip(frames, (3, 16, 32, 32), mean=spec.mean, std=spec.std, resize_ratio=spec.crop_pct)
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(clip))[0].double(), 0)
    assert [label for label, _ in top] == [engine.labels[i] for i in probs.argsort(descending=True)[:3].tolist()]
    np.testing.assert_allclose([p for _, p in top], probs.sort(descending=True).values[:3].numpy(), rtol=1e-3)
    with pytest.raises(InputError, match="give a list of its 16 frames"):
        engine.classify(photo)
    with pytest.raises(InputError, match="takes clips of 16 frames; got 2"):
        engine.classify(frames[:2])


def test_cli_int8_export_of_a_clip_model_quantizes_its_3d_convs_and_gates_on_clips(tmp_path: Path) -> None:
    import onnx

    out = tmp_path / "ji8"
    args = ["export", "ji2013_3dcnn", "--int8", "--calib-samples", "16", "--no-adaround", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    int8 = json.loads((out / "manifest.json").read_text())["int8"]
    assert int8["gate"]["passed"] and int8["fidelity"]["samples"] == 300  # held-out clips, top-1 agreement
    assert int8["fidelity"]["top1_agreement"] >= 0.9
    # Every 3D conv of this network reads 1 channel per group: ORT CPU runs those slower in INT8 than in float
    # (bench/results/int8_conv3d.md), so they stay in float (16-bit Q/DQ); C6 and the output layer are INT8.
    assert int8["float_for_speed"] == ["hardwired", "motion.c2", "appearance.c2", "motion.c4", "appearance.c4"]
    graph = onnx.load(out / "model_int8.onnx").graph
    weights = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}

    def weight_type(node: onnx.NodeProto) -> int:
        dq = producer[node.input[1]]
        assert dq.op_type == "DequantizeLinear"
        return weights[dq.input[0]].data_type

    convs = {n.name: weight_type(n) for n in graph.node if n.op_type in ("Conv", "Gemm")}
    assert sorted(t for name, t in convs.items() if "/c6/" in name or "/fc/" in name) == [onnx.TensorProto.INT8] * 2
    assert sum(t == onnx.TensorProto.INT16 for t in convs.values()) == 5


def test_thin_3d_convs_are_the_ones_ort_runs_slower_in_int8() -> None:
    import io

    import onnx

    from edgeconv.quantize.qdq.weights import thin_3d_convs

    net = nn.Sequential(
        nn.Conv3d(3, 8, 3),  # a stem on RGB frames: thin
        nn.Conv3d(8, 8, 3, groups=8),  # depthwise: ORT has a kernel for it
        nn.Conv3d(8, 16, 1),  # dense: INT8 pays
        nn.Conv3d(16, 32, 1, groups=16),  # one channel in, two out per group: thin
        nn.Flatten(2),
        nn.Conv1d(32, 4, 1),  # not 3D
    ).eval()
    buffer = io.BytesIO()
    torch.onnx.export(net, (torch.zeros(1, 3, 6, 8, 8),), buffer, dynamo=False, opset_version=17)
    names = thin_3d_convs(onnx.load_from_string(buffer.getvalue()))
    assert names == ["/0/Conv", "/3/Conv"]


def test_cli_export_refuses_dynamic_size_for_clip_models_in_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["export", "r3d_18", "--dynamic-size"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--dynamic-size and --fully-convolutional are for image models" in lines[0]
    assert not any(tmp_path.iterdir())  # nothing written, models/ not even created
