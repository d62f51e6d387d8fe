"""The model zoo: every architecture in the lecture notes, defined in plain PyTorch.

>>> from edgeconv.zoo import create_model, list_models
>>> model = create_model("mobilenet_v2", weights="imagenet")
"""

from edgeconv.zoo.builder import create_model
from edgeconv.zoo.registry import (
    ModelSpec,
    Paper,
    PaperFigures,
    WeightsEntry,
    get_spec,
    list_models,
    list_specs,
    register_model,
)

# Each family module registers its models on import.
from edgeconv.zoo import (  # noqa: E402,F401  isort: skip
    lenet,
    alexnet,
    vgg,
    nin,
    allcnn,
    inception,
    xception,
    resnet,
    preact_resnet,
    pyramidnet,
    dpn,
    densenet,
    senet,
    mobilenet,
    shufflenet,
    efficientnet,
    nasnet,
    repvgg,
    convnext,
    replknet,
    slak,
    unet,
    fcn,
    deeplab,
    deform,
    dilation,
    video,
    detection,
)

__all__ = [
    "ModelSpec",
    "Paper",
    "PaperFigures",
    "WeightsEntry",
    "create_model",
    "get_spec",
    "list_models",
    "list_specs",
    "register_model",
]
