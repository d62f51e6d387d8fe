"""torchvision's semantic segmentation networks, on edgeconv's own backbones, with torchvision's ``state_dict`` keys
(seeds 000 and 002): FCN on a dilated ResNet, DeepLabV3 (Chen et al. 2017) with atrous spatial pyramid pooling on a
dilated ResNet-50 and on MobileNetV3-Large, and LR-ASPP (Howard et al. 2019) on MobileNetV3-Large.

Dilated ("atrous") convolution (Yu & Koltun 2016; seed 002) keeps the resolution a classifier would throw away: a
stage whose first block would stride 2 strides 1 instead and dilates its 3x3 convs (and all later ones) by 2, so the
receptive field grows as before while the map stays at 1/8 (ResNet: stages 4 and 5 dilated) or 1/16 (MobileNetV3: its
last stage) of the input. ``dilate_resnet`` / ``dilate_mobilenet_v3`` do this to a built classifier, as torchvision's
``replace_stride_with_dilation`` / ``dilated=True`` do, without changing a single parameter.

ASPP: five parallel branches on the backbone's last map, a 1x1 conv, three 3x3 convs with dilation rates r1..r3 and
an image-pooling branch (global average, 1x1 conv, then upsampled back to the map), concatenated and projected by a
1x1 conv. The paper uses rates 6/12/18 at output stride 16 and doubles them at output stride 8; torchvision's
DeepLabHead uses 12/24/36 for both of its backbones (the ResNet-50 at output stride 8, MobileNetV3 at 16), and so do
the registered models, whose torchvision checkpoints were trained that way; ``atrous_rates`` changes them.

Every network returns class scores per pixel at the input's size (bilinear upsampling, ``align_corners=False``), the
``"out"`` entry of torchvision's output dict. The auxiliary FCN head (``aux=True``) exists for training and for loading
torchvision checkpoints that carry it; it adds parameters but is not run by ``forward``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from edgeconv.zoo.fcn import LONG_2015
from edgeconv.zoo.mobilenet import HOWARD_2019, MobileNetV3, V3InvertedResidual, mobilenet_v3_large
from edgeconv.zoo.registry import ModelSpec, Paper, register_model
from edgeconv.zoo.resnet import RESNET_CONFIGS, ResNet

CHEN_2017 = Paper(
    "L.-C. Chen, G. Papandreou, F. Schroff, H. Adam",
    2017,
    "Rethinking Atrous Convolution for Semantic Image Segmentation",
)
VOC_NUM_CLASSES = 21  # PASCAL VOC's 20 classes and background: torchvision's checkpoints (COCO images, VOC labels)


# --- dilation -------------------------------------------------------------------------------------------------------
def _dilate(conv: nn.Conv2d, dilation: int) -> None:
    conv.stride = (1, 1)
    conv.dilation = (dilation, dilation)
    conv.padding = tuple((k - 1) // 2 * dilation for k in conv.kernel_size)


def dilate_resnet(model: ResNet, stages: Sequence[bool] = (False, True, True)) -> ResNet:
    """Replace the stride of ``layer2..layer4`` (one flag each) by dilation, in place: torchvision's
    ``replace_stride_with_dilation``. A stage's first block keeps the dilation reached before it, later blocks use the
    new one; the downsampling shortcut keeps its 1x1 conv at stride 1."""
    dilation = 1
    for layer, dilate in zip((model.layer2, model.layer3, model.layer4), stages, strict=True):
        if not dilate:
            continue
        previous, dilation = dilation, dilation * 2
        for index, block in enumerate(layer):
            bottleneck: Any = block  # Bottleneck or BasicBlock: both have conv2, downsample and stride
            _dilate(bottleneck.conv2, previous if index == 0 else dilation)
            if index == 0 and bottleneck.downsample is not None:
                bottleneck.downsample[0].stride = (1, 1)
            bottleneck.stride = 1
    return model


def dilate_mobilenet_v3(model: MobileNetV3, dilation: int = 2) -> MobileNetV3:
    """Replace the stride of MobileNetV3's last stage (its last three bottlenecks) by dilation, in place:
    torchvision's ``mobilenet_v3_large(dilated=True)``. The strided block keeps no residual, as before."""
    blocks = [m for m in model.features if isinstance(m, V3InvertedResidual)]
    for block in blocks[-3:]:
        _dilate(_depthwise(block), dilation)
    return model


# --- heads ------------------------------------------------------------------------------------------------------------
class FCNHead(nn.Sequential):
    """torchvision's FCN head: 3x3 conv to a quarter of the channels, BN, ReLU, dropout, 1x1 conv to the classes."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        inter = in_channels // 4
        super().__init__(
            nn.Conv2d(in_channels, inter, 3, padding=1, bias=False),
            nn.BatchNorm2d(inter),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Conv2d(inter, num_classes, 1),
        )


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: int = 1, dilation: int = 1) -> list[nn.Module]:
    padding = (kernel - 1) // 2 * dilation
    return [
        nn.Conv2d(in_channels, out_channels, kernel, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    ]


class ASPPPooling(nn.Sequential):
    """The image-pooling branch: global average, 1x1 conv, BN, ReLU, upsampled back to the map's size."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), *_conv_bn_relu(in_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        return F.interpolate(super().forward(x), size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (Chen et al. 2017, Sec. 3.3): 1x1, three dilated 3x3, image pooling; concatenated,
    projected to ``out_channels``."""

    def __init__(self, in_channels: int, atrous_rates: Sequence[int], out_channels: int = 256) -> None:
        super().__init__()
        branches: list[nn.Module] = [nn.Sequential(*_conv_bn_relu(in_channels, out_channels))]
        branches += [nn.Sequential(*_conv_bn_relu(in_channels, out_channels, 3, rate)) for rate in atrous_rates]
        branches.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(*_conv_bn_relu(len(branches) * out_channels, out_channels), nn.Dropout(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class DeepLabHead(nn.Sequential):
    def __init__(self, in_channels: int, num_classes: int, atrous_rates: Sequence[int] = (12, 24, 36)) -> None:
        super().__init__(ASPP(in_channels, atrous_rates), *_conv_bn_relu(256, 256, 3), nn.Conv2d(256, num_classes, 1))


class LRASPPHead(nn.Module):
    """Lite R-ASPP (Howard et al. 2019, Sec. 6.3): the 1/16 map through a 1x1 conv, gated per channel by a pooled
    squeeze (sigmoid), upsampled to the 1/8 map and added to a 1x1 classifier of that map."""

    def __init__(self, low_channels: int, high_channels: int, num_classes: int, inter_channels: int = 128) -> None:
        super().__init__()
        self.cbr = nn.Sequential(*_conv_bn_relu(high_channels, inter_channels))
        self.scale = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(high_channels, inter_channels, 1, bias=False), nn.Sigmoid()
        )
        self.low_classifier = nn.Conv2d(low_channels, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter_channels, num_classes, 1)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        x = self.cbr(high) * self.scale(high)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.low_classifier(low) + self.high_classifier(x)


# --- backbones --------------------------------------------------------------------------------------------------------
class ResNetBackbone(nn.Module):
    """A ResNet without its pooling and classifier (torchvision's ``IntermediateLayerGetter`` over it: same keys)."""

    def __init__(self, resnet: ResNet) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def _upsample_to(scores: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    return F.interpolate(scores, size=image.shape[-2:], mode="bilinear", align_corners=False)


class SegmentationModel(nn.Module):
    """torchvision's FCN / DeepLabV3: ``backbone`` -> ``classifier`` -> bilinear upsampling to the input size."""

    def __init__(self, backbone: nn.Module, classifier: nn.Module, aux_classifier: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier
        if aux_classifier is not None:  # None adds no state_dict keys, as in torchvision
            self.aux_classifier = aux_classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _upsample_to(self.classifier(self.backbone(x)), x)


class LRASPP(nn.Module):
    """MobileNetV3-Large's features (dilated last stage) with the LR-ASPP head on its 1/8 and 1/16 maps."""

    def __init__(self, features: nn.Sequential, low_index: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = features
        self.low_index = low_index
        self.classifier = LRASPPHead(_out_channels(features[low_index]), _out_channels(features[-1]), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, low = x, x
        for index, layer in enumerate(self.backbone):
            y = layer(y)
            if index == self.low_index:
                low = y
        return _upsample_to(self.classifier(low, y), x)


def _out_channels(layer: nn.Module) -> int:
    return next(m for m in reversed(list(layer.modules())) if isinstance(m, nn.Conv2d)).out_channels


def _depthwise(block: V3InvertedResidual) -> nn.Conv2d:
    return next(m for m in block.block.modules() if isinstance(m, nn.Conv2d) and m.groups > 1)


def _mobilenet_features() -> tuple[nn.Sequential, int]:
    """Dilated MobileNetV3-Large features, and the index of its last block at 1/8 of the input (torchvision's "C2",
    where the aux / low branch taps): the stem, the strided blocks and the last layer delimit the stages."""
    model = mobilenet_v3_large()
    features = model.features
    strided = [
        i for i, m in enumerate(features) if isinstance(m, V3InvertedResidual) and _depthwise(m).stride != (1, 1)
    ]
    stages = [0, *strided, len(features) - 1]
    dilate_mobilenet_v3(model)
    return features, stages[-4]


# --- builders ---------------------------------------------------------------------------------------------------------
def _resnet_backbone(depth: str, output_stride: int) -> ResNetBackbone:
    if output_stride not in (8, 16):
        raise ValueError(f"output_stride {output_stride} must be 8 or 16")
    resnet = ResNet.from_config(RESNET_CONFIGS[depth])
    return ResNetBackbone(dilate_resnet(resnet, (False, output_stride == 8, True)))


def _fcn_resnet(depth: str, num_classes: int, aux: bool) -> SegmentationModel:
    aux_head = FCNHead(1024, num_classes) if aux else None
    return SegmentationModel(_resnet_backbone(depth, 8), FCNHead(2048, num_classes), aux_head)


def fcn_resnet50(*, num_classes: int = VOC_NUM_CLASSES, aux: bool = False) -> SegmentationModel:
    return _fcn_resnet("resnet50", num_classes, aux)


def fcn_resnet101(*, num_classes: int = VOC_NUM_CLASSES, aux: bool = False) -> SegmentationModel:
    return _fcn_resnet("resnet101", num_classes, aux)


def deeplabv3_resnet50(
    *,
    num_classes: int = VOC_NUM_CLASSES,
    aux: bool = False,
    output_stride: int = 8,
    atrous_rates: tuple[int, int, int] = (12, 24, 36),
) -> SegmentationModel:
    return SegmentationModel(
        _resnet_backbone("resnet50", output_stride),
        DeepLabHead(2048, num_classes, atrous_rates),
        FCNHead(1024, num_classes) if aux else None,
    )


def deeplabv3_mobilenet_v3_large(
    *, num_classes: int = VOC_NUM_CLASSES, aux: bool = False, atrous_rates: tuple[int, int, int] = (12, 24, 36)
) -> SegmentationModel:
    features, low = _mobilenet_features()
    aux_head = FCNHead(_out_channels(features[low]), num_classes) if aux else None
    return SegmentationModel(features, DeepLabHead(_out_channels(features[-1]), num_classes, atrous_rates), aux_head)


def lraspp_mobilenet_v3_large(*, num_classes: int = VOC_NUM_CLASSES) -> LRASPP:
    features, low = _mobilenet_features()
    return LRASPP(features, low, num_classes)


_SEGMENTATION = dict(
    input_size=(3, 520, 520),  # torchvision's evaluation size for these checkpoints (shorter side resized to 520)
    num_classes=VOC_NUM_CLASSES,
    crop_pct=1.0,
    dataset="voc",
    output="label_map",
)
for _builder, _paper, _family, _what in (
    (
        fcn_resnet50,
        LONG_2015,
        "fcn",
        "FCN head on a ResNet-50 dilated to output stride 8 (torchvision's fcn_resnet50).",
    ),
    (fcn_resnet101, LONG_2015, "fcn", "FCN head on a ResNet-101 dilated to output stride 8."),
    (deeplabv3_resnet50, CHEN_2017, "deeplab", "ASPP (rates 12/24/36, image pooling) on a ResNet-50 at stride 8."),
    (
        deeplabv3_mobilenet_v3_large,
        CHEN_2017,
        "deeplab",
        "ASPP (rates 12/24/36, image pooling) on MobileNetV3-Large with its last stage dilated (output stride 16).",
    ),
    (
        lraspp_mobilenet_v3_large,
        HOWARD_2019,
        "lraspp",
        "Lite R-ASPP on MobileNetV3-Large's 1/8 and 1/16 maps (last stage dilated).",
    ),
):
    register_model(
        ModelSpec(
            name=_builder.__name__,
            family=_family,
            paper=_paper,
            builder=_builder,
            torchvision_name=_builder.__name__,
            torchvision_kwargs={"weights_backbone": None},  # its default downloads an ImageNet backbone
            description=_what + " Class scores per pixel at the input's size.",
            **_SEGMENTATION,  # type: ignore[arg-type]
        )
    )
