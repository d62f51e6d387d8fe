"""The Inception family: GoogLeNet (v1), BN-Inception (v2), Inception-v3, Inception-v4 and Inception-ResNet-v2.

All use ``BasicConv2d`` (conv without bias -> BatchNorm -> ReLU, attributes ``conv`` / ``bn``), the block that
torchvision and timm use, so that their checkpoints load unchanged:

- ``googlenet`` and ``inception_v3``: torchvision's layouts and ``state_dict`` keys (checked by the compatibility
  test). Auxiliary classifiers are optional (``aux_logits``); with them, training mode returns a named tuple with the
  auxiliary logits and eval mode returns the main logits only, as torchvision does.
- ``bn_inception``: the network of the BatchNorm paper (Ioffe & Szegedy 2015, Fig. 5), built from the same generic
  ``Inception`` module as GoogLeNet (double 3x3 instead of 5x5, average pooling, stride-2 modules with pass-through).
- ``inception_v4`` / ``inception_resnet_v2``: Szegedy et al. 2017, with timm's (ported from TF-slim) attribute names.

Pooling is done by modules rather than functional calls so that per-layer profilers and exporters see every op.
"""

from __future__ import annotations

from collections import namedtuple
from functools import partial

import torch
from torch import nn

from edgeconv.errors import InvalidArgumentError
from edgeconv.zoo.registry import ModelSpec, Paper, PaperFigures, register_model

SZEGEDY_2015 = Paper(
    "C. Szegedy, W. Liu, Y. Jia, P. Sermanet, S. Reed, D. Anguelov, D. Erhan, V. Vanhoucke, A. Rabinovich",
    2015,
    "Going Deeper with Convolutions",
)
IOFFE_2015 = Paper(
    "S. Ioffe, C. Szegedy",
    2015,
    "Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift",
)
SZEGEDY_2016 = Paper(
    "C. Szegedy, V. Vanhoucke, S. Ioffe, J. Shlens, Z. Wojna",
    2016,
    "Rethinking the Inception Architecture for Computer Vision",
)
SZEGEDY_2017 = Paper(
    "C. Szegedy, S. Ioffe, V. Vanhoucke, A. Alemi",
    2017,
    "Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning",
)

# TF-slim checkpoints (Inception-v4, Inception-ResNet-v2, Xception) expect inputs scaled to [-1, 1].
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
NASNET_TABLE = "Zoph et al. 2018 (NASNet), Table 2, as in seed 002"
EFFICIENTNET_TABLE = "Tan & Le 2019 (EfficientNet), Table 2, as in seeds 002/004"

GoogLeNetOutputs = namedtuple("GoogLeNetOutputs", ["logits", "aux_logits2", "aux_logits1"])
InceptionOutputs = namedtuple("InceptionOutputs", ["logits", "aux_logits"])


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm -> ReLU with torchvision's / timm's attribute names (``conv``, ``bn``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
        eps: float = 1e-3,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=eps)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def _cat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(tensors, 1)


def _truncated_normal_init(model: nn.Module, std: float) -> None:
    """torchvision's GoogLeNet init (``init_weights=True``)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-2, b=2)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _transform_input(x: torch.Tensor) -> torch.Tensor:
    """torchvision's ``transform_input``: ImageNet-normalized input -> the [-1, 1] scaling of Google's checkpoints."""
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    channels = [x[:, i : i + 1] * (std[i] / 0.5) + (mean[i] - 0.5) / 0.5 for i in range(3)]
    return torch.cat(channels, 1)


# --------------------------------------------------------------------------------------------------------------------
# GoogLeNet and BN-Inception share one module: 1x1 | 1x1 -> 3x3 | 1x1 -> kxk (or 3x3 -> 3x3) | pool -> 1x1


class Inception(nn.Module):
    """The Inception module (Szegedy et al. 2015, Fig. 2b) and its BN-Inception form (Ioffe & Szegedy 2015, Fig. 5).

    ``double_3x3`` replaces branch3's 5x5 by two 3x3 convs (BN-Inception). ``stride=2`` makes a reduction module:
    strided last convs, a strided pool and, with ``pool_proj=0``, the pooled input passed through unprojected;
    ``ch1x1=0`` drops the 1x1 branch. ``branch3_kernel_size`` is 3 in torchvision's GoogLeNet (a known deviation kept
    for checkpoint compatibility, pytorch/vision#906) and 5 in the paper.
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        *,
        branch3_kernel_size: int = 3,
        double_3x3: bool = False,
        pool: str = "max",
        stride: int = 1,
        eps: float = 1e-3,
    ) -> None:
        super().__init__()
        conv = partial(BasicConv2d, eps=eps)
        self.branch1 = conv(in_channels, ch1x1, 1) if ch1x1 else None
        self.branch2 = nn.Sequential(conv(in_channels, ch3x3red, 1), conv(ch3x3red, ch3x3, 3, stride, 1))
        if double_3x3:
            self.branch3 = nn.Sequential(
                conv(in_channels, ch5x5red, 1), conv(ch5x5red, ch5x5, 3, 1, 1), conv(ch5x5, ch5x5, 3, stride, 1)
            )
        else:
            k = branch3_kernel_size
            self.branch3 = nn.Sequential(conv(in_channels, ch5x5red, 1), conv(ch5x5red, ch5x5, k, stride, k // 2))
        pool_type = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
        pool_layer = pool_type(3, stride, padding=1 if stride == 1 else 0, ceil_mode=True)
        projection = [conv(in_channels, pool_proj, 1)] if pool_proj else []
        self.branch4 = nn.Sequential(pool_layer, *projection)
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + (pool_proj or in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [self.branch2(x), self.branch3(x), self.branch4(x)]
        if self.branch1 is not None:
            outputs.insert(0, self.branch1(x))
        return _cat(outputs)


class GoogLeNetAux(nn.Module):
    """GoogLeNet's auxiliary classifier (torchvision's ``InceptionAux``): pool to 4x4, 1x1 conv 128, fc 1024, fc."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d((4, 4))  # the paper's 5x5/3 average pool at 14x14
        self.conv = BasicConv2d(in_channels, 128, 1)
        self.fc1 = nn.Linear(2048, 1024)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(p=dropout)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(self.pool(x)), 1)
        return self.fc2(self.dropout(self.relu(self.fc1(x))))


# GoogLeNet, seed 004's table (Szegedy et al. 2015, Table 1):
# name: (in, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj)
GOOGLENET_BLOCKS: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


class GoogLeNet(nn.Module):
    """GoogLeNet with torchvision's attribute names (``inception3a`` ... ``inception5b``, ``aux1``, ``aux2``)."""

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        aux_logits: bool = False,
        transform_input: bool = False,
        dropout: float = 0.2,
        dropout_aux: float = 0.7,
        branch3_kernel_size: int = 3,
    ) -> None:
        super().__init__()
        if branch3_kernel_size not in (3, 5):
            raise InvalidArgumentError(
                f"branch3_kernel_size {branch3_kernel_size!r} is not supported; use 3 (torchvision) or 5 (the paper)"
            )
        self.aux_logits = aux_logits
        self.transform_input = transform_input

        def block(name: str) -> Inception:
            return Inception(*GOOGLENET_BLOCKS[name], branch3_kernel_size=branch3_kernel_size)

        self.conv1 = BasicConv2d(3, 64, 7, 2, 3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = block("3a")
        self.inception3b = block("3b")
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = block("4a")
        self.inception4b = block("4b")
        self.inception4c = block("4c")
        self.inception4d = block("4d")
        self.inception4e = block("4e")
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)  # torchvision's 2x2 (the paper: 3x3/2)
        self.inception5a = block("5a")
        self.inception5b = block("5b")
        self.aux1 = GoogLeNetAux(512, num_classes, dropout_aux) if aux_logits else None
        self.aux2 = GoogLeNetAux(528, num_classes, dropout_aux) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)
        _truncated_normal_init(self, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:
        if self.transform_input:
            x = _transform_input(x)
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        x = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        if aux1 is not None and aux2 is not None:
            return GoogLeNetOutputs(x, aux2, aux1)
        return x


def googlenet(
    *,
    num_classes: int = 1000,
    aux_logits: bool = False,
    transform_input: bool = False,
    dropout: float = 0.2,
    branch3_kernel_size: int = 3,
) -> GoogLeNet:
    return GoogLeNet(
        num_classes=num_classes,
        aux_logits=aux_logits,
        transform_input=transform_input,
        dropout=dropout,
        branch3_kernel_size=branch3_kernel_size,
    )


# BN-Inception, Ioffe & Szegedy 2015 Fig. 5:
# name: (#1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool, pool proj (0: pass-through), stride)
# The figure's output-size column says 576 after 4c/4d and 1024 after 4e, but its branch widths add up to 608 and
# 1056; the widths are what the released models (and this table) use.
BN_INCEPTION_BLOCKS: dict[str, tuple[int, int, int, int, int, str, int, int]] = {
    "3a": (64, 64, 64, 64, 96, "avg", 32, 1),
    "3b": (64, 64, 96, 64, 96, "avg", 64, 1),
    "3c": (0, 128, 160, 64, 96, "max", 0, 2),
    "4a": (224, 64, 96, 96, 128, "avg", 128, 1),
    "4b": (192, 96, 128, 96, 128, "avg", 128, 1),
    "4c": (160, 128, 160, 128, 160, "avg", 128, 1),
    "4d": (96, 128, 192, 160, 192, "avg", 128, 1),
    "4e": (0, 128, 192, 192, 256, "max", 0, 2),
    "5a": (352, 192, 320, 160, 224, "avg", 128, 1),
    "5b": (352, 192, 320, 192, 224, "max", 128, 1),
}


class BNInception(nn.Module):
    """BN-Inception: GoogLeNet with BatchNorm, 5x5 convs replaced by two 3x3, three 28x28 modules, stride-2 modules."""

    def __init__(self, *, num_classes: int = 1000, dropout: float = 0.0) -> None:
        super().__init__()
        conv = partial(BasicConv2d, eps=1e-5)
        self.conv1 = conv(3, 64, 7, 2, 3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = conv(64, 64, 1)
        self.conv3 = conv(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        channels = 192
        for name, (ch1x1, red3, ch3, red_dbl, ch_dbl, pool, proj, stride) in BN_INCEPTION_BLOCKS.items():
            module = Inception(
                channels, ch1x1, red3, ch3, red_dbl, ch_dbl, proj, double_3x3=True, pool=pool, stride=stride, eps=1e-5
            )
            self.add_module(f"inception{name}", module)
            channels = module.out_channels
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)  # the paper removes GoogLeNet's dropout; kept for fine-tuning
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        for name in BN_INCEPTION_BLOCKS:
            x = getattr(self, f"inception{name}")(x)
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


def bn_inception(*, num_classes: int = 1000, dropout: float = 0.0) -> BNInception:
    return BNInception(num_classes=num_classes, dropout=dropout)


# --------------------------------------------------------------------------------------------------------------------
# Inception-v3, torchvision's layout (Szegedy et al. 2016, Fig. 5-7 modules as Mixed_5b ... Mixed_7c)


class InceptionA(nn.Module):
    """35x35 module (Fig. 5): 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg pool -> 1x1."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return _cat([self.branch1x1(x), branch5x5, branch3x3dbl, self.branch_pool(self.pool(x))])


class InceptionB(nn.Module):
    """35 -> 17 grid reduction: 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max pool /2."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return _cat([self.branch3x3(x), branch3x3dbl, self.pool(x)])


class InceptionC(nn.Module):
    """17x17 module (Fig. 6): 7x7 convs factorized into 1x7 and 7x1."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        dbl = self.branch7x7dbl_1(x)
        dbl = self.branch7x7dbl_5(self.branch7x7dbl_4(self.branch7x7dbl_3(self.branch7x7dbl_2(dbl))))
        return _cat([self.branch1x1(x), branch7x7, dbl, self.branch_pool(self.pool(x))])


class InceptionD(nn.Module):
    """17 -> 8 grid reduction: 1x1 -> 3x3/2 | 1x1 -> 1x7 -> 7x1 -> 3x3/2 | max pool /2."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return _cat([branch3x3, branch7x7x3, self.pool(x)])


class InceptionE(nn.Module):
    """8x8 module (Fig. 7): 3x3 split into parallel 1x3 and 3x1 outputs (expanded filter bank)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        branch3x3 = _cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)])
        dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = _cat([self.branch3x3dbl_3a(dbl), self.branch3x3dbl_3b(dbl)])
        return _cat([self.branch1x1(x), branch3x3, branch3x3dbl, self.branch_pool(self.pool(x))])


class InceptionV3Aux(nn.Module):
    """Inception-v3's auxiliary classifier on the 17x17 grid (torchvision's ``InceptionAux``)."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=3)
        self.conv0 = BasicConv2d(in_channels, 128, 1)
        self.conv1 = BasicConv2d(128, 768, 5)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.conv0(self.pool(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class InceptionV3(nn.Module):
    def __init__(
        self, *, num_classes: int = 1000, aux_logits: bool = False, transform_input: bool = False, dropout: float = 0.5
    ) -> None:
        super().__init__()
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.maxpool2 = nn.MaxPool2d(3, stride=2)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.AuxLogits = InceptionV3Aux(768, num_classes) if aux_logits else None
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280)
        self.Mixed_7c = InceptionE(2048)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(2048, num_classes)
        # PyTorch's default init, not torchvision's truncated normal (std 0.1): with untrained BatchNorm statistics
        # in eval mode that one grows activations ~x1.3 per layer (logits ~1e12, inf in fp16), useless for export
        # and quantization checks on random weights.

    def forward(self, x: torch.Tensor) -> torch.Tensor | InceptionOutputs:
        if self.transform_input:
            x = _transform_input(x)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.maxpool2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(self.maxpool1(x))))
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(self.Mixed_6a(x)))))
        aux = self.AuxLogits(x) if self.AuxLogits is not None and self.training else None
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        x = self.fc(torch.flatten(self.dropout(self.avgpool(x)), 1))
        if aux is not None:
            return InceptionOutputs(x, aux)
        return x


def inception_v3(
    *, num_classes: int = 1000, aux_logits: bool = False, transform_input: bool = False, dropout: float = 0.5
) -> InceptionV3:
    return InceptionV3(num_classes=num_classes, aux_logits=aux_logits, transform_input=transform_input, dropout=dropout)


# --------------------------------------------------------------------------------------------------------------------
# Inception-v4 and Inception-ResNet-v2 (Szegedy et al. 2017), timm's attribute names. Unpadded convs are the paper's
# "V" (valid) layers; timm's average pools exclude the padding.


class _Concat(nn.Module):
    """Runs the ``branch0``, ``branch1`` ... children on the same input and concatenates their outputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _cat([branch(x) for branch in self.children()])


def _avg_pool_3x3() -> nn.AvgPool2d:
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class Mixed3a(nn.Module):
    """Stem: 3x3/2 max pool | 3x3/2 conv 96 (Fig. 3 of the paper)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxpool = nn.MaxPool2d(3, stride=2)
        self.conv = BasicConv2d(64, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _cat([self.maxpool(x), self.conv(x)])


class Mixed4a(_Concat):
    def __init__(self) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(BasicConv2d(160, 64, 1), BasicConv2d(64, 96, 3))
        self.branch1 = nn.Sequential(
            BasicConv2d(160, 64, 1),
            BasicConv2d(64, 64, (1, 7), padding=(0, 3)),
            BasicConv2d(64, 64, (7, 1), padding=(3, 0)),
            BasicConv2d(64, 96, 3),
        )


class Mixed5a(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = BasicConv2d(192, 192, 3, stride=2)
        self.maxpool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _cat([self.conv(x), self.maxpool(x)])


class InceptionV4A(_Concat):
    """35x35 module (Fig. 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = BasicConv2d(384, 96, 1)
        self.branch1 = nn.Sequential(BasicConv2d(384, 64, 1), BasicConv2d(64, 96, 3, padding=1))
        self.branch2 = nn.Sequential(
            BasicConv2d(384, 64, 1), BasicConv2d(64, 96, 3, padding=1), BasicConv2d(96, 96, 3, padding=1)
        )
        self.branch3 = nn.Sequential(_avg_pool_3x3(), BasicConv2d(384, 96, 1))


class ReductionA(_Concat):
    """35 -> 17 reduction (Fig. 7 with k, l, m, n = 192, 224, 256, 384)."""

    def __init__(self, in_channels: int = 384, k: int = 192, l: int = 224, m: int = 256, n: int = 384) -> None:  # noqa: E741
        super().__init__()
        self.branch0 = BasicConv2d(in_channels, n, 3, stride=2)
        self.branch1 = nn.Sequential(
            BasicConv2d(in_channels, k, 1), BasicConv2d(k, l, 3, padding=1), BasicConv2d(l, m, 3, stride=2)
        )
        self.branch2 = nn.MaxPool2d(3, stride=2)


class InceptionV4B(_Concat):
    """17x17 module (Fig. 5)."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = BasicConv2d(1024, 384, 1)
        self.branch1 = nn.Sequential(
            BasicConv2d(1024, 192, 1),
            BasicConv2d(192, 224, (1, 7), padding=(0, 3)),
            BasicConv2d(224, 256, (7, 1), padding=(3, 0)),
        )
        self.branch2 = nn.Sequential(
            BasicConv2d(1024, 192, 1),
            BasicConv2d(192, 192, (7, 1), padding=(3, 0)),
            BasicConv2d(192, 224, (1, 7), padding=(0, 3)),
            BasicConv2d(224, 224, (7, 1), padding=(3, 0)),
            BasicConv2d(224, 256, (1, 7), padding=(0, 3)),
        )
        self.branch3 = nn.Sequential(_avg_pool_3x3(), BasicConv2d(1024, 128, 1))


class ReductionB(_Concat):
    """17 -> 8 reduction (Fig. 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(BasicConv2d(1024, 192, 1), BasicConv2d(192, 192, 3, stride=2))
        self.branch1 = nn.Sequential(
            BasicConv2d(1024, 256, 1),
            BasicConv2d(256, 256, (1, 7), padding=(0, 3)),
            BasicConv2d(256, 320, (7, 1), padding=(3, 0)),
            BasicConv2d(320, 320, 3, stride=2),
        )
        self.branch2 = nn.MaxPool2d(3, stride=2)


class InceptionV4C(nn.Module):
    """8x8 module (Fig. 6): two branches end in parallel 1x3 / 3x1 convs."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = BasicConv2d(1536, 256, 1)
        self.branch1_0 = BasicConv2d(1536, 384, 1)
        self.branch1_1a = BasicConv2d(384, 256, (1, 3), padding=(0, 1))
        self.branch1_1b = BasicConv2d(384, 256, (3, 1), padding=(1, 0))
        self.branch2_0 = BasicConv2d(1536, 384, 1)
        self.branch2_1 = BasicConv2d(384, 448, (3, 1), padding=(1, 0))
        self.branch2_2 = BasicConv2d(448, 512, (1, 3), padding=(0, 1))
        self.branch2_3a = BasicConv2d(512, 256, (1, 3), padding=(0, 1))
        self.branch2_3b = BasicConv2d(512, 256, (3, 1), padding=(1, 0))
        self.branch3 = nn.Sequential(_avg_pool_3x3(), BasicConv2d(1536, 256, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.branch1_0(x)
        x2 = self.branch2_2(self.branch2_1(self.branch2_0(x)))
        return _cat(
            [
                self.branch0(x),
                self.branch1_1a(x1),
                self.branch1_1b(x1),
                self.branch2_3a(x2),
                self.branch2_3b(x2),
                self.branch3(x),
            ]
        )


def _stem_convs() -> list[nn.Module]:
    """299 -> 149 -> 147 -> 147: the first three convs of both 2017 networks' stems."""
    return [BasicConv2d(3, 32, 3, stride=2), BasicConv2d(32, 32, 3), BasicConv2d(32, 64, 3, padding=1)]


class InceptionV4(nn.Module):
    """Stem, 4 x Inception-A, Reduction-A, 7 x Inception-B, Reduction-B, 3 x Inception-C (Fig. 9)."""

    def __init__(self, *, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_stem_convs(),
            Mixed3a(),
            Mixed4a(),
            Mixed5a(),
            *[InceptionV4A() for _ in range(4)],
            ReductionA(),
            *[InceptionV4B() for _ in range(7)],
            ReductionB(),
            *[InceptionV4C() for _ in range(3)],
        )
        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.head_drop = nn.Dropout(dropout)  # the paper: keep 0.8
        self.last_linear = nn.Linear(1536, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_linear(self.head_drop(self.global_pool(self.features(x))))


def inception_v4(*, num_classes: int = 1000, dropout: float = 0.2) -> InceptionV4:
    return InceptionV4(num_classes=num_classes, dropout=dropout)


class Mixed5b(_Concat):
    """Inception-ResNet-v2's last stem module (TF-slim's Mixed_5b, 35x35x320)."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = BasicConv2d(192, 96, 1)
        self.branch1 = nn.Sequential(BasicConv2d(192, 48, 1), BasicConv2d(48, 64, 5, padding=2))
        self.branch2 = nn.Sequential(
            BasicConv2d(192, 64, 1), BasicConv2d(64, 96, 3, padding=1), BasicConv2d(96, 96, 3, padding=1)
        )
        self.branch3 = nn.Sequential(_avg_pool_3x3(), BasicConv2d(192, 64, 1))


class ResidualInception(nn.Module):
    """Inception-ResNet block: concatenated branches -> linear 1x1 conv (with bias) -> ``x + scale * out`` -> ReLU.

    The residual scaling (0.17 / 0.10 / 0.20) is the paper's Sec. 3.3 remedy for instabilities with many filters.
    """

    def __init__(
        self, branches: list[nn.Module], concat_channels: int, channels: int, scale: float, relu: bool
    ) -> None:
        super().__init__()
        for index, branch in enumerate(branches):
            self.add_module(f"branch{index}", branch)
        self.num_branches = len(branches)
        self.scale = scale
        self.conv2d = nn.Conv2d(concat_channels, channels, 1)
        self.relu = nn.ReLU(inplace=True) if relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _cat([getattr(self, f"branch{i}")(x) for i in range(self.num_branches)])
        out = self.conv2d(out) * self.scale + x
        return self.relu(out) if self.relu is not None else out


def block35(scale: float = 0.17) -> ResidualInception:
    """Inception-ResNet-A (35x35, Fig. 16)."""
    branches: list[nn.Module] = [
        BasicConv2d(320, 32, 1),
        nn.Sequential(BasicConv2d(320, 32, 1), BasicConv2d(32, 32, 3, padding=1)),
        nn.Sequential(BasicConv2d(320, 32, 1), BasicConv2d(32, 48, 3, padding=1), BasicConv2d(48, 64, 3, padding=1)),
    ]
    return ResidualInception(branches, 128, 320, scale, relu=True)


def block17(scale: float = 0.10) -> ResidualInception:
    """Inception-ResNet-B (17x17, Fig. 17)."""
    branches: list[nn.Module] = [
        BasicConv2d(1088, 192, 1),
        nn.Sequential(
            BasicConv2d(1088, 128, 1),
            BasicConv2d(128, 160, (1, 7), padding=(0, 3)),
            BasicConv2d(160, 192, (7, 1), padding=(3, 0)),
        ),
    ]
    return ResidualInception(branches, 384, 1088, scale, relu=True)


def block8(scale: float = 0.20, relu: bool = True) -> ResidualInception:
    """Inception-ResNet-C (8x8, Fig. 19)."""
    branches: list[nn.Module] = [
        BasicConv2d(2080, 192, 1),
        nn.Sequential(
            BasicConv2d(2080, 192, 1),
            BasicConv2d(192, 224, (1, 3), padding=(0, 1)),
            BasicConv2d(224, 256, (3, 1), padding=(1, 0)),
        ),
    ]
    return ResidualInception(branches, 448, 2080, scale, relu=relu)


class Mixed7a(_Concat):
    """Inception-ResNet-v2's 17 -> 8 reduction (Fig. 18)."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(BasicConv2d(1088, 256, 1), BasicConv2d(256, 384, 3, stride=2))
        self.branch1 = nn.Sequential(BasicConv2d(1088, 256, 1), BasicConv2d(256, 288, 3, stride=2))
        self.branch2 = nn.Sequential(
            BasicConv2d(1088, 256, 1), BasicConv2d(256, 288, 3, padding=1), BasicConv2d(288, 320, 3, stride=2)
        )
        self.branch3 = nn.MaxPool2d(3, stride=2)


class InceptionResNetV2(nn.Module):
    """Stem, 10 x block35, Reduction-A (k, l, m, n = 256, 256, 384, 384), 20 x block17, Mixed_7a, 10 x block8."""

    def __init__(self, *, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self.conv2d_1a, self.conv2d_2a, self.conv2d_2b = _stem_convs()
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = BasicConv2d(64, 80, 1)
        self.conv2d_4a = BasicConv2d(80, 192, 3)
        self.maxpool_5a = nn.MaxPool2d(3, stride=2)
        self.mixed_5b = Mixed5b()
        self.repeat = nn.Sequential(*[block35(0.17) for _ in range(10)])
        self.mixed_6a = ReductionA(320, k=256, l=256, m=384, n=384)
        self.repeat_1 = nn.Sequential(*[block17(0.10) for _ in range(20)])
        self.mixed_7a = Mixed7a()
        self.repeat_2 = nn.Sequential(*[block8(0.20) for _ in range(9)])
        self.block8 = block8(1.0, relu=False)
        self.conv2d_7b = BasicConv2d(2080, 1536, 1)
        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.head_drop = nn.Dropout(dropout)  # the paper: keep 0.8
        self.classif = nn.Linear(1536, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))
        x = self.maxpool_5a(self.conv2d_4a(self.conv2d_3b(self.maxpool_3a(x))))
        x = self.repeat(self.mixed_5b(x))
        x = self.repeat_1(self.mixed_6a(x))
        x = self.block8(self.repeat_2(self.mixed_7a(x)))
        return self.classif(self.head_drop(self.global_pool(self.conv2d_7b(x))))


def inception_resnet_v2(*, num_classes: int = 1000, dropout: float = 0.2) -> InceptionResNetV2:
    return InceptionResNetV2(num_classes=num_classes, dropout=dropout)


# --------------------------------------------------------------------------------------------------------------------
# Registry entries

register_model(
    ModelSpec(
        name="googlenet",
        family="inception",
        paper=SZEGEDY_2015,
        builder=googlenet,
        kwargs={"aux_logits": False},
        figures=PaperFigures(
            params=6.8e6,
            macs=1.55e9,
            source="Howard et al. 2017 (MobileNet) Table 8 (6.8M, 1550M mult-adds; seed 000); per-layer rows: "
            "Szegedy et al. 2015 Table 1 (seed 004)",
            note="6,624,904 here (-2.6%), torchvision's count: its 'five by five' branch uses 3x3 kernels "
            "(pytorch/vision#906; -380,928 weights) and conv+BN instead of conv+bias (+7,280). With the paper's 5x5 "
            "(branch3_kernel_size=5): 7,005,832, i.e. 6,990,272 conv/fc weights, which the paper's table counts in "
            "units of K=1024 (its 3a row: 163,328 weights = '159K') and so totals '6.8M'. Mult-adds: 1.498G here, "
            "1.583G with the 5x5 kernels (paper text: 1.5G). The aux heads (aux_logits=True, training only) add "
            "6,379,984 params.",
        ),
        torchvision_name="googlenet",
        torchvision_kwargs={"aux_logits": False, "init_weights": True},
        description="GoogLeNet (Inception v1): 9 Inception modules, optional auxiliary classifiers (aux_logits=True).",
    )
)

register_model(
    ModelSpec(
        name="bn_inception",
        family="inception",
        paper=IOFFE_2015,
        builder=bn_inception,
        figures=PaperFigures(
            params=11.2e6,
            macs=2.03e9,
            source=f"params: {NASNET_TABLE} ('Inception V2 [29]': 11.2M); mult-adds: Hu et al. 2018 (SENet) Table 2 "
            "(2.03 GFLOPs, seed 002)",
            note="11,285,224 params here (+0.8%) and 2.033G mult-adds (SENet's 2.03G). Branch widths from the BN "
            "paper's Fig. 5 (its output-size column's 576/1024 after 4c-4e do not add up; the widths give 608/1056, as "
            "in the released Caffe model). The first conv is a plain 7x7: NASNet's 1.94B for the same network comes "
            "from TF-slim's separable 7x7 first conv (depth multiplier 8), 84M mult-adds cheaper.",
        ),
        description="BN-Inception (Inception v2): BatchNorm, 5x5 -> two 3x3, stride-2 Inception modules.",
    )
)

register_model(
    ModelSpec(
        name="inception_v3",
        family="inception",
        paper=SZEGEDY_2016,
        builder=inception_v3,
        input_size=(3, 299, 299),
        kwargs={"aux_logits": False},
        figures=PaperFigures(
            params=23.8e6,
            macs=5.72e9,
            source=f"{NASNET_TABLE} (23.8M, 5.72B mult-adds); EfficientNet Table 2: 24M, 5.7B",
            note="23,834,568 here, torchvision's count without the auxiliary head (aux_logits=True adds 3,326,696: "
            "torchvision's 27,161,264).",
        ),
        torchvision_name="inception_v3",
        torchvision_kwargs={"aux_logits": False, "init_weights": True},
        description="Inception-v3 at 299x299: factorized 7x7 (1x7, 7x1) modules, grid reductions, optional aux head.",
    )
)

register_model(
    ModelSpec(
        name="inception_v4",
        family="inception",
        paper=SZEGEDY_2017,
        builder=inception_v4,
        input_size=(3, 299, 299),
        mean=INCEPTION_MEAN,
        std=INCEPTION_STD,
        figures=PaperFigures(
            params=48e6,
            macs=13e9,
            source=f"{EFFICIENTNET_TABLE} (48M params, 13B FLOPs); Szegedy et al. 2017 give no count",
            note="42,679,816 here (-11%), exactly timm's / TF-slim's Inception-v4 (the paper's Fig. 9 layer widths); "
            "the 48M in EfficientNet's table does not follow from the architecture: even TF-slim's auxiliary head "
            "(~3.4M) and 1001 classes only reach ~46M, and the paper itself reports no parameter count. Mult-adds "
            "here: 12.25G (EfficientNet's table rounds to 13B).",
        ),
        description="Inception-v4 at 299x299: stem, 4 x A, reduction, 7 x B, reduction, 3 x C (timm layout).",
    )
)

register_model(
    ModelSpec(
        name="inception_resnet_v2",
        family="inception",
        paper=SZEGEDY_2017,
        builder=inception_resnet_v2,
        input_size=(3, 299, 299),
        mean=INCEPTION_MEAN,
        std=INCEPTION_STD,
        figures=PaperFigures(
            params=55.8e6,
            macs=13.2e9,
            source=f"{NASNET_TABLE} (55.8M, 13.2B mult-adds); EfficientNet Table 2: 56M, 13B",
            note="55,843,464 here (timm's / TF-slim's count, +0.08%).",
        ),
        description="Inception-ResNet-v2 at 299x299: scaled residual Inception blocks 10 x A, 20 x B, 10 x C (timm "
        "layout).",
    )
)
