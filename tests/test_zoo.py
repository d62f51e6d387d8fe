"""Registry-wide checks: every registered model builds, runs at its default input and matches its paper figures.

The output shape of every model is checked on the meta device (no weights, no arithmetic); the real forward pass, for
finite logits, runs one model per family by default and every other model under ``-m slow``; the label-map families'
models run it at their 512-572 px tiles only under ``-m slow``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from conftest import image_and_clip_models, meta_model, registry_sweep
from torch import nn

from edgeconv.errors import InvalidArgumentError, UnknownModelError
from edgeconv.zoo import ModelSpec, create_model, get_spec, list_models, register_model
from edgeconv.zoo.registry import count_params
from edgeconv.zoo.unet import output_size

ALL = image_and_clip_models()  # detectors: test_detection.py


def output_shape(spec: ModelSpec) -> tuple[int, ...]:
    """Class scores per image, or per pixel of a label map: the input's size, except the paper's valid-conv U-Net."""
    if spec.output == "scores":
        return (1, spec.num_classes)
    side = output_size(spec.input_size[1]) if spec.name == "unet" else spec.input_size[1]
    return (1, spec.num_classes, side, side)


@pytest.mark.parametrize("name", ALL)
def test_output_shape_at_default_input(name: str) -> None:
    spec = get_spec(name)
    model = meta_model(name)
    assert not model.training
    with torch.inference_mode():
        out = model(torch.empty(1, *spec.input_size, device="meta"))
    assert out.shape == output_shape(spec)


def _forward_sweep() -> list[Any]:
    """registry_sweep(ALL), with the label-map models under ``-m slow`` too: their default tiles (512-572 px) made
    theirs the dearest forwards of the default run (dilation8 13 s, fcn16s 7 s, unet 5 s on 2 cores). The default run
    checks those shapes on the meta device (test_output_shape_at_default_input) and their numbers at reduced sizes
    (test_export, test_fuse)."""
    slow = pytest.mark.slow
    return [
        pytest.param(*p.values, marks=[*p.marks, slow]) if get_spec(p.values[0]).output == "label_map" else p
        for p in registry_sweep(ALL)
    ]


@pytest.mark.parametrize("name", _forward_sweep())
def test_forward_at_default_input(name: str, zoo_model: Callable[..., nn.Module]) -> None:
    spec = get_spec(name)
    model = zoo_model(name)
    assert not model.training
    with torch.inference_mode():
        out = model(torch.randn(1, *spec.input_size))
    assert out.shape == output_shape(spec)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", [n for n in ALL if get_spec(n).figures.params])
def test_params_match_paper_or_deviation_is_explained(name: str) -> None:
    spec = get_spec(name)
    ours = count_params(name)
    deviation = abs(ours - spec.figures.params) / spec.figures.params
    if deviation > 0.02:  # the counts the note quotes are checked against the code in test_paper_notes.py
        assert spec.figures.note, (
            f"{name}: {ours:,} params vs paper {spec.figures.params:,.0f} ({deviation:.1%}) unexplained"
        )


@pytest.mark.parametrize("name", ALL)
def test_spec_is_complete(name: str) -> None:
    spec = get_spec(name)
    assert spec.paper.title and spec.paper.year > 1980
    assert len(spec.mean) == len(spec.std) == spec.input_size[0]
    assert spec.family


def test_duplicate_name_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model(get_spec(ALL[0]))


def test_unknown_name_suggests_closest() -> None:
    with pytest.raises(UnknownModelError, match="resnet50"):
        create_model("resnet05")


def test_unknown_kwarg_lists_accepted() -> None:
    with pytest.raises(InvalidArgumentError, match="accepts"):
        create_model("lenet5", width_multiplier=2)


def test_list_models_filters() -> None:
    assert list_models("lenet*") == ["lenet5"]
    assert "lenet5" in list_models("net5")
