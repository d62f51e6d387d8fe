"""Convolutionization (seed 001, "fully convolutional networks"): a classifier whose head is Linear layers over a fixed
spatial map becomes its fully convolutional equivalent.

The first Linear sees the flattened ``C x H x W`` map of the feature extractor; it becomes a ``Conv2d(C, out, (H, W))``
with the same weights (``torch.flatten`` orders the map channel-major, row-major, as a conv kernel is laid out). Each
later Linear sees a vector and becomes a 1x1 conv. At the native input size the result is the classifier's output as
an ``(N, classes, 1, 1)`` map, equal to float precision; at a larger input it slides the whole classifier over the
image with the stride of the feature extractor and returns an ``(N, classes, H', W')`` map of class scores, re-using
the computation that overlapping windows share.

The seed's routine converts every ``nn.Linear`` of a flat layer list and makes the "strong and disputable assumption
that only ``nn.Linear`` has to be converted". Here the model must have the torchvision layout that AlexNet and VGG
share (``features``, an optional ``avgpool``, ``classifier``); the adaptive pool is dropped only where it is the
identity at the native size, and anything in the head other than Linear, activations and Dropout is refused with the
reason, since it would not slide.

>>> dense = convolutionize(create_model("alexnet"), (3, 224, 224))
>>> dense(torch.zeros(1, 3, 384, 384)).shape  # torch.Size([1, 1000, 6, 6])
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from edgeconv.errors import InvalidArgumentError

# Elementwise (or, in eval mode, no-op) modules that act on a conv's output map as they act on a Linear's vector.
_SLIDING = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Dropout, nn.Identity)


class FullyConvolutional(nn.Module):
    """``features`` followed by ``classifier``, both convolutional: ``(N, 3, H, W) -> (N, classes, H', W')``."""

    def __init__(self, features: nn.Module, classifier: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def convolutionize(model: nn.Module, input_size: tuple[int, ...]) -> FullyConvolutional:
    """The fully convolutional equivalent of ``model`` for its native ``input_size`` ``(C, H, W)``, sharing no
    parameters with it (``model`` is left unchanged)."""
    features, classifier = getattr(model, "features", None), getattr(model, "classifier", None)
    if not isinstance(features, nn.Module) or not isinstance(classifier, nn.Sequential):
        raise InvalidArgumentError(
            f"{type(model).__name__} has no 'features' module and 'classifier' Sequential (the AlexNet / VGG layout); "
            "only classifiers with that layout can be convolutionized"
        )
    device = next(model.parameters()).device
    features = copy.deepcopy(features).eval()  # probed in eval mode without touching the caller's model
    with torch.no_grad():
        feature_map = features(torch.zeros((1, *input_size), device=device))
        pool = getattr(model, "avgpool", None)
        if pool is not None and tuple(pool(feature_map).shape) != tuple(feature_map.shape):
            raise InvalidArgumentError(
                f"{type(model).__name__}'s avgpool changes its {tuple(feature_map.shape[1:])} feature map at input "
                f"{input_size}; convolutionize at the input size where it is the identity (the model's native size)"
            )
    channels, height, width = feature_map.shape[1:]
    layers: list[nn.Module] = []
    first = True
    for index, module in enumerate(classifier):
        if isinstance(module, nn.Linear):
            kernel = (height, width) if first else (1, 1)
            expected = channels * height * width if first else channels
            if module.in_features != expected:
                raise InvalidArgumentError(
                    f"classifier.{index} takes {module.in_features} features, but the map before it has {expected} "
                    f"({channels}x{kernel[0]}x{kernel[1]}) at input {input_size}"
                )
            conv = nn.Conv2d(channels, module.out_features, kernel, bias=module.bias is not None)
            conv.to(device=module.weight.device, dtype=module.weight.dtype)
            with torch.no_grad():
                conv.weight.copy_(module.weight.reshape(conv.weight.shape))
                if module.bias is not None:
                    conv.bias.copy_(module.bias)
            layers.append(conv)
            channels, first = module.out_features, False
        elif isinstance(module, _SLIDING):
            layers.append(copy.deepcopy(module))
        else:
            raise InvalidArgumentError(
                f"classifier.{index} is a {type(module).__name__}; convolutionize handles Linear layers, activations "
                "and Dropout in the head"
            )
    if first:
        raise InvalidArgumentError(f"{type(model).__name__}'s classifier has no Linear layer to convolutionize")
    return FullyConvolutional(features, nn.Sequential(*layers)).train(model.training)
