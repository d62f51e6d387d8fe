"""Convolutionization (seed 001): a classifier's Linear head as convs, equal at the native size, dense beyond it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from edgeconv.errors import InvalidArgumentError
from edgeconv.zoo.convolutionize import convolutionize


@pytest.mark.parametrize("name", ["alexnet", "alexnet_lrn", "vgg16"])
def test_convolutionized_classifier_equals_it_and_slides(zoo_model: Callable[..., nn.Module], name: str) -> None:
    model = zoo_model(name).eval()
    dense = convolutionize(model, (3, 224, 224)).eval()
    assert not any(isinstance(m, nn.Linear) for m in dense.modules())
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected, got = model(x), dense(x)
    assert got.shape == (2, 1000, 1, 1)
    torch.testing.assert_close(got.flatten(1), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())

    # At 384: a 6x6 map of score vectors (one per 32-pixel step), each the classifier on its window of the feature
    # map. The classifier on a 224 crop of the pixels differs near the crop's border (zero padding there, image
    # context here), so the exact statement is about windows of the feature map.
    big = torch.randn(1, 3, 384, 384)
    with torch.no_grad():
        scores = dense(big)
        features = model.features(big)
        window = features.shape[-1] - scores.shape[-1] + 1  # the map the first Linear saw (6 or 7)
        cells = [(i, j) for i in range(scores.shape[-2]) for j in range(scores.shape[-1])]
        windows = torch.cat([features[:, :, i : i + window, j : j + window] for i, j in cells])
        at = model.classifier(torch.flatten(windows, 1))
    assert scores.shape == (1, 1000, 6, 6)
    got = torch.stack([scores[0, :, i, j] for i, j in cells])
    torch.testing.assert_close(got, at, rtol=1e-4, atol=1e-4 * at.abs().max().item())


def test_convolutionize_leaves_the_classifier_alone(zoo_model: Callable[..., nn.Module]) -> None:
    model = zoo_model("alexnet").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dense = convolutionize(model, (3, 224, 224))
    with torch.no_grad():
        for p in dense.parameters():
            p.zero_()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.train()
    assert convolutionize(model, (3, 224, 224)).training
    assert all(m.training for m in model.modules())  # probing the feature map does not switch the caller to eval


def test_convolutionize_refuses_what_does_not_slide(zoo_model: Callable[..., nn.Module]) -> None:
    with pytest.raises(InvalidArgumentError, match="features"):
        convolutionize(zoo_model("resnet18"), (3, 224, 224))
    with pytest.raises(InvalidArgumentError, match="avgpool changes"):
        convolutionize(zoo_model("vgg11"), (3, 160, 160))  # a 5x5 map, pooled to 7x7
    model = zoo_model("alexnet")
    model.classifier.insert(2, nn.BatchNorm1d(4096))
    with pytest.raises(InvalidArgumentError, match=r"classifier\.2 is a BatchNorm1d"):
        convolutionize(model, (3, 224, 224))
