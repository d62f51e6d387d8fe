"""3D convolutional networks for action recognition on video clips (seed 004): the network of Ji, Xu, Yang & Yu
(2013) that the lecture notes show (Fig. 3), C3D (Tran et al. 2015), and the 18-layer video ResNets of Tran et al.
(2018) in torchvision's form: R3D (3x3x3 convs throughout), MC3 (3D convs in conv2_x, 2D 1x3x3 convs above: "mixed
convolutions") and R(2+1)D (every 3x3x3 conv factored into a 1x3x3 spatial and a 3x1x1 temporal conv).

A clip is a tensor (N, C, T, H, W): T frames of C x H x W. The specs' ``input_size`` is (C, T, H, W) and
``inputs="clip"``; Conv3d mult-adds are ``out_c x in_c / groups x kT x kH x kW x T' x H' x W'``
(``edgeconv.profile.count``).

The video ResNets keep torchvision's module names (``stem.0``, ``layer2.0.conv1.0.3``, ``layer2.0.downsample.0``,
``fc``), so torchvision's Kinetics-400 checkpoints load strictly; C3D keeps the names of the reference PyTorch port of
the Caffe model (``conv1`` .. ``conv5b``, ``fc6`` .. ``fc8``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from edgeconv.zoo.layers import init_resnet_style
from edgeconv.zoo.registry import ModelSpec, Paper, PaperFigures, register_model

TRAN_2018 = Paper(
    "D. Tran, H. Wang, L. Torresani, J. Ray, Y. LeCun, M. Paluri",
    2018,
    "A Closer Look at Spatiotemporal Convolutions for Action Recognition",
)
TRAN_2015 = Paper(
    "D. Tran, L. Bourdev, R. Fergus, L. Torresani, M. Paluri",
    2015,
    "Learning Spatiotemporal Features with 3D Convolutional Networks",
)
JI_2013 = Paper("S. Ji, W. Xu, M. Yang, K. Yu", 2013, "3D Convolutional Neural Networks for Human Action Recognition")

# torchvision's normalization for its video checkpoints (Kinetics-400 frames scaled to [0, 1]).
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
KINETICS400_CLASSES = 400
SPORTS1M_CLASSES = 487
TRECVID_CLASSES = 3  # CellToEar, ObjectPut, Pointing (TRECVID 2008 airport surveillance video)


# ---------------------------------------------------------------------------------------------------------------------
# Video ResNets (Tran et al. 2018): R3D-18, MC3-18, R(2+1)D-18, torchvision layout
# ---------------------------------------------------------------------------------------------------------------------
# The three kinds of 3x3x3-like conv a block can use; ``temporal_stride``: whether the block's stride (and its
# shortcut's) also halves the frames.
@dataclass(frozen=True)
class ConvKind:
    name: str
    temporal_stride: bool


CONV_3D = ConvKind("3d", temporal_stride=True)  # 3x3x3
CONV_2D = ConvKind("2d", temporal_stride=False)  # 1x3x3: MC3's upper stages see each frame on its own
CONV_2PLUS1D = ConvKind("2+1d", temporal_stride=True)  # 1x3x3 (midplanes) -> BN -> ReLU -> 3x1x1


def midplanes(in_channels: int, out_channels: int) -> int:
    """R(2+1)D's width between the spatial and the temporal conv: the paper's M_i = floor(t d^2 N_(i-1) N_i /
    (d^2 N_(i-1) + t N_i)) with t = d = 3, which gives the factored conv the parameters of the 3x3x3 conv it replaces.
    torchvision computes it once per block from the block's input and output widths and uses it for both convs (the
    second conv of a downsampling block gets the first's width): so do we, or its checkpoints would not load."""
    return (in_channels * out_channels * 3 * 3 * 3) // (in_channels * 3 * 3 + 3 * out_channels)


def spatiotemporal_conv(kind: ConvKind, in_channels: int, out_channels: int, mid: int, stride: int = 1) -> nn.Module:
    """A block's conv of ``kind``, bias-free (a BatchNorm follows): ``nn.Conv3d`` or, for (2+1)D, an
    ``nn.Sequential`` (spatial conv, BN, ReLU, temporal conv) with torchvision's child indices 0, 1, 3."""
    if kind is CONV_3D:
        return nn.Conv3d(in_channels, out_channels, 3, stride, 1, bias=False)
    if kind is CONV_2D:
        return nn.Conv3d(in_channels, out_channels, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False)
    return nn.Sequential(
        nn.Conv3d(in_channels, mid, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False),
        nn.BatchNorm3d(mid),
        nn.ReLU(inplace=True),
        nn.Conv3d(mid, out_channels, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False),
    )


class VideoBasicBlock(nn.Module):
    """Two convs of one kind, each followed by BN (ReLU after the first), plus the shortcut; torchvision's names:
    ``conv1 = Sequential(conv, bn, relu)``, ``conv2 = Sequential(conv, bn)``, ``downsample = Sequential(conv, bn)``."""

    def __init__(
        self, in_channels: int, out_channels: int, kind: ConvKind, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        mid = midplanes(in_channels, out_channels)
        self.conv1 = nn.Sequential(
            spatiotemporal_conv(kind, in_channels, out_channels, mid, stride),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True),
        )
        self.conv2 = nn.Sequential(
            spatiotemporal_conv(kind, out_channels, out_channels, mid), nn.BatchNorm3d(out_channels)
        )
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + identity)


def basic_stem() -> nn.Sequential:
    """R3D / MC3: a 3x7x7 conv, stride 1x2x2 (the frames are kept), BN, ReLU."""
    return nn.Sequential(
        nn.Conv3d(3, 64, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False), nn.BatchNorm3d(64), nn.ReLU(inplace=True)
    )


def r2plus1d_stem() -> nn.Sequential:
    """R(2+1)D: the 3x7x7 stem factored into 1x7x7 (45 maps) and 3x1x1, each with BN and ReLU."""
    return nn.Sequential(
        nn.Conv3d(3, 45, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False),
        nn.BatchNorm3d(45),
        nn.ReLU(inplace=True),
        nn.Conv3d(45, 64, (3, 1, 1), (1, 1, 1), (1, 0, 0), bias=False),
        nn.BatchNorm3d(64),
        nn.ReLU(inplace=True),
    )


@dataclass(frozen=True)
class VideoResNetConfig:
    stem: Callable[[], nn.Sequential]
    convs: tuple[ConvKind, ConvKind, ConvKind, ConvKind]  # conv kind of conv2_x .. conv5_x
    layers: tuple[int, int, int, int] = (2, 2, 2, 2)  # blocks per stage


VIDEO_RESNET_CONFIGS: dict[str, VideoResNetConfig] = {
    "r3d_18": VideoResNetConfig(basic_stem, (CONV_3D,) * 4),
    "mc3_18": VideoResNetConfig(basic_stem, (CONV_3D, CONV_2D, CONV_2D, CONV_2D)),
    "r2plus1d_18": VideoResNetConfig(r2plus1d_stem, (CONV_2PLUS1D,) * 4),
}


class VideoResNet(nn.Module):
    """Stem, four stages of basic blocks (64, 128, 256, 512 maps; stages 3-5 halve H and W, and T unless their conv
    is 2D), global average pool over T x H x W, FC. Input (N, 3, T, H, W)."""

    def __init__(self, config: VideoResNetConfig, *, num_classes: int = KINETICS400_CLASSES) -> None:
        super().__init__()
        self.inplanes = 64
        self.stem = config.stem()
        widths, strides = (64, 128, 256, 512), (1, 2, 2, 2)
        stages = [
            self._make_layer(kind, width, blocks, stride)
            for kind, width, blocks, stride in zip(config.convs, widths, config.layers, strides, strict=True)
        ]
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(512, num_classes)
        init_resnet_style(self, zero_linear_bias=True)
        nn.init.normal_(self.fc.weight, 0, 0.01)  # torchvision's video ResNets: N(0, 0.01) for the FC

    def _make_layer(self, kind: ConvKind, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            shortcut_stride = (stride if kind.temporal_stride else 1, stride, stride)
            downsample = nn.Sequential(
                nn.Conv3d(self.inplanes, planes, 1, shortcut_stride, bias=False), nn.BatchNorm3d(planes)
            )
        layers = [VideoBasicBlock(self.inplanes, planes, kind, stride, downsample)]
        self.inplanes = planes
        layers += [VideoBasicBlock(planes, planes, kind) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def r3d_18(*, num_classes: int = KINETICS400_CLASSES) -> VideoResNet:
    return VideoResNet(VIDEO_RESNET_CONFIGS["r3d_18"], num_classes=num_classes)


def mc3_18(*, num_classes: int = KINETICS400_CLASSES) -> VideoResNet:
    return VideoResNet(VIDEO_RESNET_CONFIGS["mc3_18"], num_classes=num_classes)


def r2plus1d_18(*, num_classes: int = KINETICS400_CLASSES) -> VideoResNet:
    return VideoResNet(VIDEO_RESNET_CONFIGS["r2plus1d_18"], num_classes=num_classes)


# ---------------------------------------------------------------------------------------------------------------------
# C3D (Tran et al. 2015)
# ---------------------------------------------------------------------------------------------------------------------
class C3D(nn.Module):
    """Eight 3x3x3 convs (stride 1, padding 1, ReLU) in five groups, each group closed by a max pool: pool1 is 1x2x2
    (the frames are kept early, the paper's choice), pool2..pool5 are 2x2x2; then fc6, fc7 (4096, ReLU, dropout 0.5)
    and fc8. On a 16 x 112 x 112 clip conv5b's map is 512 x 2 x 7 x 7; pool5 pads H and W by one (as the Caffe model
    and its PyTorch ports do, so that the odd 7 rounds up) to 512 x 1 x 4 x 4 = 8192, fc6's input. The head is fixed:
    the clip must be 16..31 frames of 96..127 pixels a side (both reduce to that 1 x 4 x 4 map)."""

    def __init__(self, *, num_classes: int = SPORTS1M_CLASSES, dropout: float = 0.5) -> None:
        super().__init__()

        def conv(in_channels: int, out_channels: int) -> nn.Conv3d:
            return nn.Conv3d(in_channels, out_channels, 3, 1, 1)

        self.conv1 = conv(3, 64)
        self.pool1 = nn.MaxPool3d((1, 2, 2), (1, 2, 2))
        self.conv2 = conv(64, 128)
        self.pool2 = nn.MaxPool3d(2, 2)
        self.conv3a, self.conv3b = conv(128, 256), conv(256, 256)
        self.pool3 = nn.MaxPool3d(2, 2)
        self.conv4a, self.conv4b = conv(256, 512), conv(512, 512)
        self.pool4 = nn.MaxPool3d(2, 2)
        self.conv5a, self.conv5b = conv(512, 512), conv(512, 512)
        self.pool5 = nn.MaxPool3d(2, 2, padding=(0, 1, 1))
        self.fc6 = nn.Linear(8192, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, num_classes)
        self.dropout = nn.Dropout(dropout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        relu = self.relu
        x = self.pool1(relu(self.conv1(x)))
        x = self.pool2(relu(self.conv2(x)))
        x = self.pool3(relu(self.conv3b(relu(self.conv3a(x)))))
        x = self.pool4(relu(self.conv4b(relu(self.conv4a(x)))))
        x = self.pool5(relu(self.conv5b(relu(self.conv5a(x)))))
        x = self.dropout(relu(self.fc6(torch.flatten(x, 1))))
        x = self.dropout(relu(self.fc7(x)))
        return self.fc8(x)


def c3d(*, num_classes: int = SPORTS1M_CLASSES, dropout: float = 0.5) -> C3D:
    return C3D(num_classes=num_classes, dropout=dropout)


# ---------------------------------------------------------------------------------------------------------------------
# The 3D CNN of Ji, Xu, Yang & Yu (2013), Fig. 3
# ---------------------------------------------------------------------------------------------------------------------
class Hardwired(nn.Module):
    """H1: the five hardwired channels from 7 frames: gray (7 maps), gradient-x (7), gradient-y (7), optflow-x (6),
    optflow-y (6), 33 maps.

    Gray and its gradients come from the clip's channel 0 with fixed kernels (buffers, not parameters): central
    differences [-1, 0, 1] / 2 along W (x) and H (y), zero-padded so the maps stay 60 x 40; the paper does not name
    its gradient operator. Optical flow is not a convolution: it is computed outside the network (any dense flow
    between frames t and t+1) and given as the clip's channels 1 (x) and 2 (y); of their 7 frames the first 6 are
    used (the 6 flows between 7 frames; frame 7 of those channels is ignored, pad it with zeros).

    Returns ``(appearance, motion)``: (N, 3, 7, H, W) gray / gradient-x / gradient-y and (N, 2, 6, H, W) flow."""

    kernels: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        derivative = torch.tensor([-0.5, 0.0, 0.5])
        kernels = torch.zeros(3, 1, 1, 3, 3)
        kernels[0, 0, 0, 1, 1] = 1.0  # gray: identity
        kernels[1, 0, 0, 1, :] = derivative  # d/dx, along W
        kernels[2, 0, 0, :, 1] = derivative  # d/dy, along H
        # Not persistent: fixed by design, so checkpoints hold only what is learned.
        self.register_buffer("kernels", kernels, persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        appearance = F.conv3d(x[:, :1], self.kernels, padding=(0, 1, 1))
        motion = x[:, 1:3, :-1]
        return appearance, motion


class Subsampling(nn.Module):
    """LeNet-style subsampling of every feature map: the average of each k x k window, times a trainable coefficient
    plus a trainable bias, one pair per map (per channel and frame: the paper's S3 has 2 x 23 maps and 92 parameters,
    S5 78 maps and 156)."""

    def __init__(self, channels: int, frames: int, window: int) -> None:
        super().__init__()
        self.window = window
        self.weight = nn.Parameter(torch.ones(channels, frames, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels, frames, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool3d(x, (1, self.window, self.window))
        return pooled * self.weight + self.bias


class JiStream(nn.Module):
    """C2 -> S3 -> C4 -> S5 over some of H1's channels, each channel on its own (grouped convs): C2 applies two 3x7x7
    kernels to each channel (two sets of maps), C4 three 3x7x6 kernels to each map stack of C2 (six sets)."""

    def __init__(self, channels: int, frames: int) -> None:
        super().__init__()
        self.c2 = nn.Conv3d(channels, 2 * channels, (3, 7, 7), groups=channels)
        self.s3 = Subsampling(2 * channels, frames - 2, 2)
        self.c4 = nn.Conv3d(2 * channels, 6 * channels, (3, 7, 6), groups=2 * channels)
        self.s5 = Subsampling(6 * channels, frames - 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.s3(torch.tanh(self.c2(x)))
        return self.s5(torch.tanh(self.c4(x)))


class Ji3DCNN(nn.Module):
    """Ji et al. (2013), Fig. 3: 7 frames of 60 x 40 (H x W) around the current frame, of a person found by a detector.

    ======  ====================================================  ===================================================
    layer   operation                                             maps (per set: gray, grad-x, grad-y, flow-x, flow-y)
    ======  ====================================================  ===================================================
    input   clip (3, 7, 60, 40): gray, flow-x, flow-y             see ``Hardwired``
    H1      hardwired                                             33 of 60 x 40 (7 + 7 + 7 + 6 + 6)
    C2      3x7x7 conv, each channel alone, 2 sets                2 x 23 of 54 x 34 (5 + 5 + 5 + 4 + 4)
    S3      2x2 subsampling                                       2 x 23 of 27 x 17
    C4      3x7x6 conv, each map stack alone, 3 each: 6 sets      6 x 13 of 21 x 12 (3 + 3 + 3 + 2 + 2)
    S5      3x3 subsampling                                       78 of 7 x 4
    C6      7x4 conv over all 78 maps (2D: one map per frame)     128 of 1 x 1
    output  fully connected                                       num_classes (3: CellToEar, ObjectPut, Pointing)
    ======  ====================================================  ===================================================

    The lecture notes show Fig. 3 and its caption only; the map counts and sizes are from the paper's text on it, and
    so are the parameters of C2 (1,480), S3 (92), C4 (3,810) and S5 (156), which this network has exactly. Where the
    paper is silent or ambiguous, chosen here:

    - tanh after C2, C4 and C6 (the paper's unit: tanh of the bias plus the weighted sum); the subsampling layers are
      linear (the paper gives them no nonlinearity).
    - C6 has 279,680 parameters: 128 kernels of 78 x 7 x 4 and a bias per output map. The paper states 289,536,
      which is 128 x 78 x (7 x 4 + 1): a bias per connection that a convolution does not have.
    - The output layer has a bias (387 parameters; the paper's total of 295,458 implies 384, none).
    - The gradient operator (central differences) and the optical flow input (see ``Hardwired``).
    """

    def __init__(self, *, num_classes: int = TRECVID_CLASSES, frames: int = 7) -> None:
        super().__init__()
        self.hardwired = Hardwired()
        self.appearance = JiStream(3, frames)  # gray, gradient-x, gradient-y: 7 frames
        self.motion = JiStream(2, frames - 1)  # optflow-x, optflow-y: 6 frames
        maps = 6 * 3 * (frames - 4) + 6 * 2 * (frames - 5)  # 78 for 7 frames
        self.c6 = nn.Conv2d(maps, 128, (7, 4))
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        appearance, motion = self.hardwired(x)
        # S5's maps, one input channel of C6 per (set, channel, frame).
        maps = torch.cat((self.appearance(appearance).flatten(1, 2), self.motion(motion).flatten(1, 2)), dim=1)
        return self.fc(torch.flatten(torch.tanh(self.c6(maps)), 1))


def ji2013_3dcnn(*, num_classes: int = TRECVID_CLASSES) -> Ji3DCNN:
    return Ji3DCNN(num_classes=num_classes)


# ---------------------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------------------
_TORCHVISION_VIDEO = dict(
    paper=TRAN_2018,
    family="video_resnet",
    inputs="clip",
    input_size=(3, 16, 112, 112),  # torchvision's: 16 frames, resized to 128 x 171 and centre-cropped to 112
    num_classes=KINETICS400_CLASSES,
    mean=KINETICS_MEAN,
    std=KINETICS_STD,
    crop_pct=112 / 128,
    dataset="kinetics400",
)
for _builder, _what in (
    (r3d_18, "R3D-18: 3x3x3 convs in every block; 3x7x7 stem."),
    (mc3_18, "MC3-18: 3x3x3 convs in conv2_x, 1x3x3 (per-frame 2D) convs in conv3_x..conv5_x."),
    (r2plus1d_18, "R(2+1)D-18: every 3x3x3 conv factored into 1x3x3 and 3x1x1 with BN + ReLU between."),
):
    register_model(
        ModelSpec(
            name=_builder.__name__,
            builder=_builder,
            torchvision_name=_builder.__name__,
            description=f"{_what} Kinetics-400 clip classifier (torchvision layout).",
            **_TORCHVISION_VIDEO,  # type: ignore[arg-type]
        )
    )

register_model(
    ModelSpec(
        name="c3d",
        family="3dcnn",
        paper=TRAN_2015,
        builder=c3d,
        inputs="clip",
        input_size=(3, 16, 112, 112),
        num_classes=SPORTS1M_CLASSES,
        # The Caffe model subtracted a mean clip from 0-255 pixels; with no catalogued weights, the zoo's video
        # normalization stands in.
        mean=KINETICS_MEAN,
        std=KINETICS_STD,
        crop_pct=112 / 128,  # the paper: frames resized to 128 x 171, crops of 112 x 112
        dataset="sports1m",
        description="C3D: 8 3x3x3 convs, 5 max pools (pool1 1x2x2), fc6/fc7 4096; Sports-1M's 487 classes.",
    )
)

register_model(
    ModelSpec(
        name="ji2013_3dcnn",
        family="3dcnn",
        paper=JI_2013,
        builder=ji2013_3dcnn,
        inputs="clip",
        input_size=(3, 7, 60, 40),  # gray, optflow-x, optflow-y; 7 frames of 60 x 40 (H x W)
        clip_format="gray_flow",
        num_classes=TRECVID_CLASSES,
        # The paper gives no normalization; gray in [0, 1] and flow in pixels per frame are taken as they are.
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        crop_pct=1.0,  # whole person boxes, resized to 60 x 40
        dataset="trecvid2008",
        figures=PaperFigures(
            params=295_458,
            source="Ji et al. 2013, text on Fig. 3: C2 1,480, S3 92, C4 3,810, S5 156, C6 289,536 trainable parameters "
            "(the total with a 128 x 3 output layer)",
            note="285,605 here (-3.3%): C6 is a convolution with one bias per output map, 279,680 parameters (the "
            "paper counts 289,536 = 128 x 78 x 29, a bias per connection); the output layer has a bias (387).",
        ),
        description="Ji et al. 2013 (seed 004, Fig. 3): hardwired gray / gradients / optical flow of 7 frames of "
        "60x40, C2-S3-C4-S5-C6, 3 TRECVID actions. Input: gray, optflow-x, optflow-y (flow computed outside).",
    )
)
