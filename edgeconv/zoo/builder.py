"""Building a zoo model from its registered spec, with its weights if asked.

Borrowed shape: timm's ``_builder.py`` beside ``_registry.py``: the registry only holds specs, the builder looks a
spec up, calls its builder and loads weights (``edgeconv.zoo.weights``), so neither of those two imports this one.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from edgeconv.errors import InvalidArgumentError
from edgeconv.zoo.registry import get_spec
from edgeconv.zoo.weights import load_weights


def create_model(name: str, *, weights: str | None = None, **kwargs: Any) -> nn.Module:
    """Build a zoo model in eval mode.

    ``weights``: a path to a state_dict file, or the name of a catalog entry (``"imagenet"``).
    ``kwargs`` override the spec's builder arguments (``num_classes``, ``width_mult``, ``groups`` ...).
    """
    spec = get_spec(name)
    accepted = spec.builder_kwargs()
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        raise InvalidArgumentError(
            f"{name} does not take {', '.join(map(repr, unknown))}; it accepts: {', '.join(accepted) or 'no arguments'}"
        )
    model = spec.builder(**{**spec.kwargs, **kwargs})
    if weights is not None:
        load_weights(model, spec, weights)
    return model.eval()
