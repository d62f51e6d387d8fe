"""Calibration crops, the INT8 gate's held-out crops and deployment see one preprocessing per model (issue 17).

The crop ratio and the resize interpolation are the spec's (``crop_pct`` / ``interpolation``, timm's names): 0.875 and
bilinear for ImageNet models, 1.0 (no centre crop) for the small whole-image models (LeNet on MNIST, CIFAR nets).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeconv.preprocess import manifest_preprocessing, preprocess_from_manifest, preprocess_image
from edgeconv.quantize.calibration import (
    DEFAULT_CALIBRATION_DIR,
    Preprocessing,
    load_calibration_data,
    random_crops,
    split_calibration_folder,
)
from edgeconv.zoo import get_spec

SMALL_INPUT = ("lenet5", "nin")  # MNIST, CIFAR-10: trained on whole 32x32 images
IMAGENET = "shufflenet_v2_x0_5"  # the cheapest ImageNet model of the zoo


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A real, non-square photo (400 x 600): a centre crop and a whole-image resize differ on it."""
    import skimage.data

    return Image.fromarray(skimage.data.coffee())


def test_specs_carry_the_crop_ratio_and_interpolation() -> None:
    for name in SMALL_INPUT:
        assert get_spec(name).crop_pct == 1.0 and get_spec(name).interpolation == "bilinear"
    imagenet = get_spec(IMAGENET)
    assert imagenet.crop_pct == 0.875 and imagenet.interpolation == "bilinear"  # resize 256, centre crop 224
    for name in ("resnet18", "mobilenet_v2"):
        assert get_spec(name).crop_pct == 0.875


@pytest.mark.parametrize("name", [*SMALL_INPUT, IMAGENET])
def test_calibration_and_manifest_preprocessing_agree(name: str, photo: Image.Image) -> None:
    spec = get_spec(name)
    calibration = Preprocessing.from_spec(spec)
    manifest = manifest_preprocessing(spec)
    assert manifest["resize_ratio"] == spec.crop_pct and manifest["resize"] == spec.interpolation
    assert manifest["color"] == ("L" if spec.input_size[0] == 1 else "RGB")
    assert Preprocessing.from_manifest(manifest, spec.input_size) == calibration
    deployed = preprocess_from_manifest(photo, manifest, spec.input_size)
    assert deployed.shape == (1, *spec.input_size)
    np.testing.assert_array_equal(deployed[0], calibration(photo))
    np.testing.assert_array_equal(deployed, preprocess_image(photo, spec))  # the spec's own defaults, too
    # The comparison is sensitive: the other crop ratio gives another input.
    other = replace(calibration, resize_ratio=0.875 if spec.crop_pct == 1.0 else 1.0)
    assert not np.array_equal(other(photo), calibration(photo))


def test_interpolation_is_applied(photo: Image.Image) -> None:
    spec = get_spec(IMAGENET)
    bicubic = replace(spec, interpolation="bicubic")
    assert manifest_preprocessing(bicubic)["resize"] == "bicubic"
    out = Preprocessing.from_spec(bicubic)(photo)
    np.testing.assert_array_equal(
        out, preprocess_from_manifest(photo, manifest_preprocessing(bicubic), spec.input_size)[0]
    )
    assert not np.array_equal(out, Preprocessing.from_spec(spec)(photo))
    from edgeconv.errors import InputError

    with pytest.raises(InputError, match="interpolation 'cubic' is not known"):
        preprocess_image(photo, spec, interpolation="cubic")


def test_older_manifests_read_as_before(photo: Image.Image) -> None:
    """Manifests written before ``resize`` / ``resize_ratio`` were recorded meant bilinear and 0.875."""
    spec = get_spec(IMAGENET)
    old = {"mean": list(spec.mean), "std": list(spec.std)}
    np.testing.assert_array_equal(
        preprocess_from_manifest(photo, old, spec.input_size)[0], Preprocessing.from_spec(spec)(photo)
    )


@pytest.mark.parametrize("name", ["lenet5", IMAGENET])
def test_int8_calibration_and_gate_crops_use_the_deployed_preprocessing(name: str) -> None:
    """``prepare_calibration`` (what ``quantize_int8`` calibrates and gates on) draws its calibration and held-out
    crops through exactly the preprocessing the manifest records for deployment."""
    from edgeconv.quantize import Int8Options
    from edgeconv.quantize.calibration import prepare_calibration

    spec = get_spec(name)
    split = split_calibration_folder(DEFAULT_CALIBRATION_DIR)
    deployed = Preprocessing.from_manifest(manifest_preprocessing(spec), spec.input_size)
    data = prepare_calibration(spec, Int8Options(calib_samples=3, eval_samples=3, seed=5), split=split)
    expected_calibration = random_crops([im for _, im in split.calibration.images], 3, deployed, seed=5)
    expected_evaluation = random_crops([im for _, im in split.evaluation.images], 3, deployed, seed=5 + 1_000_003)
    np.testing.assert_array_equal(data.calibration, expected_calibration)
    np.testing.assert_array_equal(data.evaluation, expected_evaluation)
    direct = load_calibration_data(None, deployed, samples=3, eval_samples=3, seed=5, split=split)
    np.testing.assert_array_equal(direct.evaluation, data.evaluation)


@pytest.mark.parametrize(
    "name",
    [
        "lenet5",
        IMAGENET,
    ],
)
def test_deployed_artifact_preprocesses_as_calibration(name: str, tmp_path: Path, photo: Image.Image) -> None:
    from edgeconv.artifact import export_artifact
    from edgeconv.runtime import Engine

    spec = get_spec(name)
    folder = tmp_path / name
    export_artifact(name, folder)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["preprocessing"] == manifest_preprocessing(spec)
    engine = Engine(folder)
    np.testing.assert_array_equal(engine.preprocess(photo)[0], Preprocessing.from_spec(spec)(photo))


def test_bench_fidelity_images_follow_the_artifact_manifest(tmp_path: Path) -> None:
    """``edgeconv bench ARTIFACT`` compares every row on photos preprocessed as the artifact's manifest says (read
    without the zoo, so without torch on a board): the spec's for an artifact edgeconv wrote, the manifest's where the
    two differ."""
    from edgeconv.artifact import export_artifact
    from edgeconv.backends.artifacts import resolve_target
    from edgeconv.bench import fidelity_images, target_reference

    folder = tmp_path / "lenet5"
    export_artifact("lenet5", folder)
    images, _, _ = target_reference(resolve_target(str(folder)), crops=3)
    np.testing.assert_array_equal(images, fidelity_images(Preprocessing.from_spec(get_spec("lenet5")), 3))
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    manifest["preprocessing"]["mean"] = [0.0]
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    shifted, _, _ = target_reference(resolve_target(str(folder)), crops=3)
    mean, std = get_spec("lenet5").mean[0], get_spec("lenet5").std[0]
    np.testing.assert_allclose(shifted, images + mean / std, atol=1e-5)


@pytest.mark.parametrize("name", ["ji2013_3dcnn", "c3d"])  # gray + optical flow; RGB
def test_a_clip_models_manifest_reads_back_as_its_calibration(name: str) -> None:
    """A clip artifact's manifest entry (its frames from the (C, T, H, W) input, its clip format) reads back as the
    preprocessing that calibrated it, which ``edgeconv bench`` then compares the rows on."""
    spec = get_spec(name)
    read = Preprocessing.from_manifest(manifest_preprocessing(spec), spec.input_size)
    assert read == Preprocessing.from_spec(spec) and read.frames == spec.input_size[1]
    assert read.clip_format == spec.clip_format
