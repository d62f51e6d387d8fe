"""EfficientNet B0-B7 (Tan & Le 2019) and EfficientNet-Lite0-4 (the TF team's 2020 edge variants).

B0-B7 keep torchvision's layout (``features.0`` stem, ``features.1-7`` stages of ``MBConv`` with ``block`` children,
``features.8`` head, ``classifier.1``) so torchvision checkpoints load strictly. Lite models share the layout, minus
squeeze-excite, with ReLU6, an unscaled stem (32) / head (1280) and unscaled first / last stage depths.

Lite models pad their strided convs the TensorFlow 'SAME' way (asymmetric: the extra row/column goes bottom/right
for even inputs), because the only Lite weights there are were trained in TF; symmetric padding would shift every
strided conv's sampling grid by one pixel against those weights.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from edgeconv.zoo.layers import ConvBNAct, SqueezeExcitation, make_divisible
from edgeconv.zoo.registry import ModelSpec, Paper, PaperFigures, register_model
from edgeconv.zoo.weights import EFFICIENTNET_LITE0_IMAGENET, register_key_map

TAN_2019 = Paper("M. Tan, Q. V. Le", 2019, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks")

# The TF-Lite family's inputs are scaled with mean 127 / std 128 ('inception-style', chosen for post-training
# quantization; tensorflow/tpu models/official/efficientnet/lite/efficientnet_lite_builder.py MEAN_RGB / STDDEV_RGB).
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


def static_hw(x: torch.Tensor) -> tuple[int, int]:
    """``x``'s height and width as Python ints, also while ``torch.jit.trace`` / the TorchScript ONNX exporter runs.

    Under tracing ``x.shape`` yields 0-d tensors, so padding computed from it becomes a Shape -> arithmetic -> Pad
    subgraph (plus Python-bool branches baked in from the trace). Exports are static in H, W (only the batch is
    dynamic), so the pads are deliberately recorded as constants: the graph gets a plain constant Pad that no
    simplifier can mis-fold (onnxslim folded the shape subgraph wrongly, shifting every strided conv's grid).
    """
    if not torch.jit.is_tracing():
        return int(x.shape[-2]), int(x.shape[-1])
    with warnings.catch_warnings():  # the constant is intended: H, W are fixed in every export
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return int(x.shape[-2]), int(x.shape[-1])


def same_pads(hw: tuple[int, int], kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]) -> list[int]:
    """TF 'SAME' padding for an (H, W) input, in ``F.pad`` order (left, right, top, bottom): extra goes right/bottom."""
    pads: list[int] = []
    for size, k, s, d in zip(reversed(hw), reversed(kernel), reversed(stride), reversed(dilation), strict=True):
        total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        pads += [total // 2, total - total // 2]
    return pads


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow 'SAME' padding computed from the input size (same ``state_dict`` as Conv2d)."""

    # The forward is zero padding + the standard convolution with this module's weight and bias, so a following BN
    # folds into it exactly as into nn.Conv2d (edgeconv.fuse may check this marker for overridden forwards).
    bn_foldable = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = same_pads(static_hw(x), self.kernel_size, self.stride, self.dilation)
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


@dataclass(frozen=True)
class Stage:
    """One row of Table 1 of Tan & Le 2019 (B0 channels, before width / depth scaling)."""

    expand_ratio: int
    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    layers: int


B0_STAGES: tuple[Stage, ...] = (
    Stage(1, 3, 1, 32, 16, 1),
    Stage(6, 3, 2, 16, 24, 2),
    Stage(6, 5, 2, 24, 40, 2),
    Stage(6, 3, 2, 40, 80, 3),
    Stage(6, 5, 1, 80, 112, 3),
    Stage(6, 5, 2, 112, 192, 4),
    Stage(6, 3, 1, 192, 320, 1),
)


@dataclass(frozen=True)
class Variant:
    width_mult: float
    depth_mult: float
    resolution: int
    dropout: float
    params: float  # paper figures
    macs: float
    bn_eps: float = 1e-5


# name: (width, depth, resolution, dropout, paper params, paper FLOPs). BN eps follows torchvision (1e-3 from B5 on,
# where its checkpoints were ported from TF) so that its state_dicts give identical outputs.
B_VARIANTS: dict[str, Variant] = {
    "efficientnet_b0": Variant(1.0, 1.0, 224, 0.2, 5.3e6, 0.39e9),
    "efficientnet_b1": Variant(1.0, 1.1, 240, 0.2, 7.8e6, 0.70e9),
    "efficientnet_b2": Variant(1.1, 1.2, 260, 0.3, 9.2e6, 1.0e9),
    "efficientnet_b3": Variant(1.2, 1.4, 300, 0.3, 12e6, 1.8e9),
    "efficientnet_b4": Variant(1.4, 1.8, 380, 0.4, 19e6, 4.2e9),
    "efficientnet_b5": Variant(1.6, 2.2, 456, 0.4, 30e6, 9.9e9, bn_eps=1e-3),
    "efficientnet_b6": Variant(1.8, 2.6, 528, 0.5, 43e6, 19e9, bn_eps=1e-3),
    "efficientnet_b7": Variant(2.0, 3.1, 600, 0.5, 66e6, 37e9, bn_eps=1e-3),
}
# tensorflow/tpu efficientnet_lite_builder.py: (width, depth, resolution, dropout); README: params / MAdds.
LITE_VARIANTS: dict[str, Variant] = {
    "efficientnet_lite0": Variant(1.0, 1.0, 224, 0.2, 4.7e6, 407e6, bn_eps=1e-3),
    "efficientnet_lite1": Variant(1.0, 1.1, 240, 0.2, 5.4e6, 631e6, bn_eps=1e-3),
    "efficientnet_lite2": Variant(1.1, 1.2, 260, 0.3, 6.1e6, 899e6, bn_eps=1e-3),
    "efficientnet_lite3": Variant(1.2, 1.4, 280, 0.3, 8.2e6, 1.44e9, bn_eps=1e-3),
    "efficientnet_lite4": Variant(1.4, 1.8, 300, 0.3, 13.0e6, 2.64e9, bn_eps=1e-3),
}


def _conv_bn_act(
    in_channels: int,
    out_channels: int,
    kernel: int,
    stride: int,
    groups: int,
    norm: Callable[..., nn.Module],
    act: type[nn.Module] | None,
    tf_same: bool,
) -> ConvBNAct:
    layer = ConvBNAct(
        in_channels, out_channels, kernel, stride=stride, groups=groups, norm_layer=norm, activation_layer=act
    )
    if tf_same and stride > 1:  # stride 1 with an odd kernel: TF 'SAME' is the symmetric padding ConvBNAct already has
        layer[0] = Conv2dSame(in_channels, out_channels, kernel, stride, groups=groups, bias=False)
    return layer


class MBConv(nn.Module):
    """Mobile inverted bottleneck: [expand 1x1] -> depthwise kxk -> [squeeze-excite] -> linear 1x1, residual."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expand_ratio: int,
        kernel: int,
        stride: int,
        norm: Callable[..., nn.Module],
        act: type[nn.Module],
        use_se: bool,
        tf_same: bool,
    ) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and in_channels == out_channels
        hidden = make_divisible(in_channels * expand_ratio)
        layers: list[nn.Module] = []
        if hidden != in_channels:
            layers.append(_conv_bn_act(in_channels, hidden, 1, 1, 1, norm, act, tf_same))
        layers.append(_conv_bn_act(hidden, hidden, kernel, stride, hidden, norm, act, tf_same))
        if use_se:  # squeeze to a quarter of the block *input* channels (se_ratio 0.25 in the paper's code)
            layers.append(
                SqueezeExcitation(hidden, max(1, in_channels // 4), activation=partial(nn.SiLU, inplace=True))
            )
        layers.append(_conv_bn_act(hidden, out_channels, 1, 1, 1, norm, None, tf_same))
        self.block = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Stochastic depth is a training regulariser (identity in eval); edgeconv's models are for inference.
        y = self.block(x)
        return y + x if self.use_res_connect else y


class EfficientNet(nn.Module):
    def __init__(
        self,
        *,
        width_mult: float,
        depth_mult: float,
        dropout: float,
        num_classes: int = 1000,
        bn_eps: float = 1e-5,
        lite: bool = False,
        tf_same_padding: bool = False,
    ) -> None:
        super().__init__()
        norm = partial(nn.BatchNorm2d, eps=bn_eps)
        act: type[nn.Module] = nn.ReLU6 if lite else nn.SiLU
        stages = B0_STAGES
        stem = 32 if lite else make_divisible(stages[0].in_channels * width_mult)
        layers: list[nn.Module] = [_conv_bn_act(3, stem, 3, 2, 1, norm, act, tf_same_padding)]
        channels = stem
        for i, st in enumerate(stages):
            out = make_divisible(st.out_channels * width_mult)
            fixed = lite and i in (0, len(stages) - 1)  # Lite keeps the first and last stage depth unscaled
            repeats = st.layers if fixed else int(math.ceil(st.layers * depth_mult))
            blocks: list[nn.Module] = []
            for j in range(repeats):
                blocks.append(
                    MBConv(
                        channels,
                        out,
                        st.expand_ratio,
                        st.kernel,
                        st.stride if j == 0 else 1,
                        norm,
                        act,
                        not lite,
                        tf_same_padding,
                    )
                )
                channels = out
            layers.append(nn.Sequential(*blocks))
        head = 1280 if lite else 4 * channels
        layers.append(_conv_bn_act(channels, head, 1, 1, 1, norm, act, tf_same_padding))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(head, num_classes))
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _b_builder(name: str):  # noqa: ANN202  (a family of keyword-only builders, one per table row)
    v = B_VARIANTS[name]

    def build(*, num_classes: int = 1000, dropout: float = v.dropout) -> EfficientNet:
        return EfficientNet(
            width_mult=v.width_mult, depth_mult=v.depth_mult, dropout=dropout, num_classes=num_classes, bn_eps=v.bn_eps
        )

    build.__name__ = build.__qualname__ = name
    return build


def _lite_builder(name: str):  # noqa: ANN202
    v = LITE_VARIANTS[name]

    def build(*, num_classes: int = 1000, dropout: float = v.dropout, tf_same_padding: bool = True) -> EfficientNet:
        return EfficientNet(
            width_mult=v.width_mult,
            depth_mult=v.depth_mult,
            dropout=dropout,
            num_classes=num_classes,
            bn_eps=v.bn_eps,
            lite=True,
            tf_same_padding=tf_same_padding,
        )

    build.__name__ = build.__qualname__ = name
    return build


def _stage_depths(name: str) -> list[int]:
    v = LITE_VARIANTS[name]
    last = len(B0_STAGES) - 1
    return [st.layers if i in (0, last) else int(math.ceil(st.layers * v.depth_mult)) for i, st in enumerate(B0_STAGES)]


@register_key_map("efficientnet_lite0_ml_illustrated")
def lite0_from_ml_illustrated(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """lukemelas-style keys (``_blocks.N._expand_conv``, ``_bn0`` ...) of ml-illustrated's TF port -> ours."""
    # Flat block index -> (stage, index in stage), stages numbered from features.1.
    where = [(s + 1, j) for s, depth in enumerate(_stage_depths("efficientnet_lite0")) for j in range(depth)]
    head = len(B0_STAGES) + 1
    top = {"_conv_stem.": "features.0.0.", "_bn0.": "features.0.1.", "_conv_head.": f"features.{head}.0.",
           "_bn1.": f"features.{head}.1.", "_fc.": "classifier.1."}  # fmt: skip
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("_blocks."):
            _, index, layer, param = key.split(".", 3)
            stage, j = where[int(index)]
            expands = f"_blocks.{index}._expand_conv.weight" in state
            slot = {"_expand_conv": (0, 0), "_bn0": (0, 1), "_depthwise_conv": (0, 0), "_bn1": (0, 1),
                    "_project_conv": (1, 0), "_bn2": (1, 1)}[layer]  # fmt: skip
            position = slot[0] + (1 if expands and layer not in ("_expand_conv", "_bn0") else 0)
            out[f"features.{stage}.{j}.block.{position}.{slot[1]}.{param}"] = value
        else:
            prefix = next((p for p in top if key.startswith(p)), None)
            out[(top[prefix] + key[len(prefix) :]) if prefix else key] = value
    return out


LITE_MACS_NOTE = (
    "Params within 1% of the README. Conv + FC mult-adds counted here are 3-5% below its MAdds (lite0 385.2 M vs "
    "407 M, lite4 2,553 M vs 2,640 M): the README's figures come from TF's graph profiler, which presumably also "
    "counts per-element ops (BN, ReLU6, residual adds) that are not conv / FC multiply-accumulates."
)
B_SOURCE = "Tan & Le 2019, Table 2 (seeds 002 / 004)"
B_MACS_NOTE = (
    "Conv + FC mult-adds counted here equal the GFLOPS torchvision publishes for its same-architecture weights "
    "(EfficientNet_B*_Weights.meta['_ops']: B4 4.394, B5 10.266, B6 19.068, B7 37.746). The paper's B4 4.2 B and "
    "B5 9.9 B are 4.6% and 3.6% lower, and the paper does not say how it counted them."
)
LITE_SOURCE = "tensorflow/tpu models/official/efficientnet/lite README (params / MAdds of the released checkpoints)"

for _name, _v in B_VARIANTS.items():
    register_model(
        ModelSpec(
            name=_name,
            family="efficientnet",
            paper=TAN_2019,
            builder=_b_builder(_name),
            input_size=(3, _v.resolution, _v.resolution),
            figures=PaperFigures(params=_v.params, macs=_v.macs, source=B_SOURCE, note=B_MACS_NOTE),
            torchvision_name=_name,
            description=f"Compound scaling of B0: width x{_v.width_mult}, depth x{_v.depth_mult}, {_v.resolution}px; "
            "torchvision layout.",
        )
    )

for _name, _v in LITE_VARIANTS.items():
    register_model(
        ModelSpec(
            name=_name,
            family="efficientnet",
            paper=TAN_2019,
            builder=_lite_builder(_name),
            input_size=(3, _v.resolution, _v.resolution),
            mean=LITE_MEAN,
            std=LITE_STD,
            kwargs={"tf_same_padding": True},
            figures=PaperFigures(params=_v.params, macs=_v.macs, source=LITE_SOURCE, note=LITE_MACS_NOTE),
            weights=(EFFICIENTNET_LITE0_IMAGENET,) if _name == "efficientnet_lite0" else (),
            description=f"Edge EfficientNet: no SE, ReLU6, fixed stem/head, width x{_v.width_mult}, depth "
            f"x{_v.depth_mult}, {_v.resolution}px, TF 'SAME' padding, inputs scaled (x - 127) / 128.",
        )
    )
