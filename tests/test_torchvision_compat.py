"""Where torchvision defines the same model, its state_dict loads into ours strictly and gives identical outputs.

This is what lets users bring real pretrained torchvision checkpoints. torchvision is a dev dependency only. One pair
per zoo family runs by default, the others under ``-m slow``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torchvision  # a dev dependency (cross-checks only)
from conftest import registry_sweep

from edgeconv.zoo import get_spec, list_specs

PAIRS = [s.name for s in list_specs() if s.torchvision_name and not s.is_detector]  # detectors: test_detection.py


@pytest.mark.parametrize("name", registry_sweep(PAIRS))
def test_torchvision_state_dict_loads_strictly_and_outputs_match(
    name: str, zoo_model: Callable[..., torch.nn.Module]
) -> None:
    spec = get_spec(name)
    reference = torchvision.models.get_model(spec.torchvision_name, weights=None, **spec.torchvision_kwargs).eval()
    ours = zoo_model(name)
    with torch.no_grad():  # randomize BN statistics so that a misplaced BN cannot hide behind identity stats
        for module in reference.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    ours.load_state_dict(reference.state_dict(), strict=True)
    channels, *frames, height, width = spec.input_size  # frames: [T] for a clip model (C, T, H, W)
    # Same weights at any resolution: cap the input at 256 so EfficientNet-B5..B7 stay fast (test_zoo runs them native),
    # and a clip at 8 frames of 64x64 (the video ResNets pool globally over T x H x W).
    cap = 64 if spec.is_clip else 256
    x = torch.randn(1, channels, *(min(t, 8) for t in frames), min(height, cap), min(width, cap))
    with torch.inference_mode():
        expected, actual = reference(x), ours(x)
    if isinstance(expected, dict):  # torchvision's segmentation models: {"out": label map scores, "aux": ...}
        expected = expected["out"]
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
