"""Depthwise-input equalization (onnxruntime form): closer ranges for the channels of each depthwise conv's
ReLU6 input, so that one activation scale per tensor quantizes them about as finely as one per channel would
(``equalize_depthwise_inputs``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from edgeconv.quantize.prepare.cle import compatible_pair, find_equalization_pairs
from edgeconv.quantize.prepare.common import RELU6, batches, observe

logger = logging.getLogger(__name__)


class ChannelClip(nn.Module):
    """``min(relu(x), upper[c])``: a ReLU6 whose channel ``c`` was multiplied by ``k_c`` (its clip point moved to
    ``6 k_c``); exports as ONNX Relu + Min (``equalize_depthwise_inputs``)."""

    def __init__(self, upper: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("upper", upper.reshape(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.relu(x), self.upper)


# (cap on k_c, headroom h): the policies ``equalize_depthwise_inputs`` chooses from per layer, (1, 1) = unchanged.
DEPTHWISE_POLICIES = ((1.0, 1.0),) + tuple((cap, h) for cap in (2.0, 4.0, 8.0, 16.0, 32.0, 100.0) for h in (1.0, 2.0))


def _depthwise_scales(r: torch.Tensor, cap: float, headroom: float) -> torch.Tensor:
    """``k_c = R / (h r_c)`` in ``[1, cap]``, ``R = max r_c``: channel ``c``'s range ``r_c`` stretched towards ``R``."""
    top = r.max()
    return (top / (headroom * r.clamp_min(float(top) / (cap * headroom)))).clamp(1.0, cap)


@torch.no_grad()
def equalize_depthwise_inputs(
    model: nn.Module,
    samples: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    policy: tuple[float, float] = (100.0, 1.0),
    batch_size: int = 16,
) -> dict[str, float]:
    """Give the channels of a depthwise conv's ReLU6 input closer ranges, in place, so that one activation scale per
    tensor quantizes them as finely as one scale per channel would; returns ``{activation name: largest k_c}``.

    MobileNet's expansion conv -> ReLU6 -> depthwise conv pairs carry channels whose calibration maximum ``r_c`` runs
    from 6 (saturated) down to a few hundredths, and a per-tensor uint8 grid of step ``6 / 255`` gives the small ones a
    handful of levels. NNCF quantizes these inputs per channel (ORT's integer kernels cannot run that: its graph is
    2x slower than FP32); scaling instead gives each channel more of the grid at per-tensor cost: ``k_c = R / (h r_c)``
    (``R = max r_c``, ``k_c`` in ``[1, cap]``) multiplies output channel ``c`` of ``conv1`` (weights and bias), divides
    depthwise filter ``c`` of ``conv2``, and the ReLU6 becomes ``ChannelClip(6 k_c)``: exact in float. Both convs'
    weights are quantized per output channel, so their grids do not change. ``merge_channel_clips`` then turns the
    exported Relu + Min into one per-tensor ``Clip(0, min 6 k_c)`` for ORT's fused Conv + Clip kernel.

    The cost: channel ``c`` then saturates at ``R / k_c`` of its old units, which clips a channel that other photos
    excite more than the calibration ones did (efficientnet_lite0 lost 3.9 points of agreement with ``cap=100, h=1``
    on every layer). So with ``groups`` (the source photo of each sample) each layer gets its own ``(cap, h)`` from
    ``DEPTHWISE_POLICIES``: the one whose squared error at the depthwise conv's output (rounding ``step^2 / 12`` on
    the values inside the range, the excess on those above it, per channel times its filter's squared norm) is lowest
    when each photo is quantized with the ranges of the others (leave one photo out). Without ``groups``, ``policy``
    applies to every layer.
    """
    pairs: list[tuple[nn.Conv2d, str, nn.Module, nn.Conv2d]] = []
    for n1, na, n2 in find_equalization_pairs(model):
        conv1, act, conv2 = model.get_submodule(n1), model.get_submodule(na), model.get_submodule(n2)
        if not (isinstance(conv1, nn.Conv2d) and isinstance(act, RELU6) and isinstance(conv2, nn.Conv2d)):
            continue
        if conv2.groups == conv2.in_channels == conv2.out_channels > 1 and compatible_pair(conv1, conv2) is None:
            pairs.append((conv1, na, act, conv2))
    if not pairs:
        return {}
    acts = {na: act for _, na, act, _ in pairs}
    labels = np.zeros(len(samples), dtype=np.int64) if groups is None else np.asarray(groups)
    ranges: dict[object, dict[str, torch.Tensor]] = {g: {} for g in sorted(set(labels.tolist()))}  # photo -> act -> max

    for g in ranges:

        def record(name: str, output: torch.Tensor, seen: dict[str, torch.Tensor] = ranges[g]) -> None:
            top = output.detach().transpose(0, 1).flatten(1).amax(1).double()
            seen[name] = top if name not in seen else torch.maximum(seen[name], top)

        observe(model, batches(samples[labels == g], batch_size), acts, record)

    chosen = {na: policy for na in acts}
    if groups is not None and len(ranges) > 1:
        chosen = _choose_depthwise_policies(model, samples, labels, pairs, ranges, batch_size)
    done = {}
    for conv1, na, _, conv2 in pairs:
        r = _range_over(ranges, na)
        if r is None or float(r.max()) <= 0 or chosen[na] == (1.0, 1.0):
            continue
        k = _depthwise_scales(r, *chosen[na])
        conv1.weight.copy_((conv1.weight.double() * k.reshape(-1, 1, 1, 1)).to(conv1.weight.dtype))
        if conv1.bias is not None:
            conv1.bias.copy_((conv1.bias.double() * k).to(conv1.bias.dtype))
        conv2.weight.copy_((conv2.weight.double() / k.reshape(-1, 1, 1, 1)).to(conv2.weight.dtype))
        model.set_submodule(na, ChannelClip((6.0 * k).to(conv1.weight.dtype)))
        done[na] = float(k.max())
    logger.info(
        "equalized the ReLU6 inputs of %d of %d depthwise convs (cap, headroom): %s",
        len(done),
        len(pairs),
        ", ".join(f"{na} {chosen[na]}" for na in done),
    )
    return done


def _range_over(
    ranges: Mapping[object, Mapping[str, torch.Tensor]], name: str, without: object = None
) -> torch.Tensor | None:
    """Per-channel maximum of activation ``name`` over every photo of ``ranges`` (photo -> name -> maxima) but
    ``without``."""
    seen = [per_photo[name] for photo, per_photo in ranges.items() if photo != without and name in per_photo]
    return torch.stack(seen).amax(0) if seen else None


def _choose_depthwise_policies(
    model: nn.Module,
    samples: np.ndarray,
    labels: np.ndarray,
    pairs: list[tuple[nn.Conv2d, str, nn.Module, nn.Conv2d]],
    ranges: Mapping[object, Mapping[str, torch.Tensor]],
    batch_size: int,
) -> dict[str, tuple[float, float]]:
    """Each pair's ``DEPTHWISE_POLICIES`` entry of least leave-one-photo-out error (``equalize_depthwise_inputs``)."""
    acts = {na: act for _, na, act, _ in pairs}
    errors = {na: torch.zeros(len(DEPTHWISE_POLICIES), dtype=torch.float64) for na in acts}
    norms = {na: conv2.weight.double().flatten(1).square().sum(1) for _, na, _, conv2 in pairs}
    for photo in ranges:
        limits = {}  # activation -> (policies, channels) saturation point and grid step in old units
        for na in acts:
            r = _range_over(ranges, na, without=photo)
            if r is None or float(r.max()) <= 0:
                continue
            scales = torch.stack([_depthwise_scales(r, *p) for p in DEPTHWISE_POLICIES])
            top = float(r.max())
            limits[na] = ((top / scales).float(), (top / (255 * scales)).float())

        def record(name: str, output: torch.Tensor, limits: dict = limits) -> None:
            if name not in limits:
                return
            x = _thinned(output.detach(), 16384)  # (channels, values)
            positive = torch.count_nonzero(x > 0, dim=1)
            for i, (limit, step) in enumerate(zip(*limits[name], strict=True)):
                above = (x - limit[:, None]).clamp_min_(0)
                clipped = torch.count_nonzero(above, dim=1)
                per_channel = above.square_().sum(1).double() + step.double().square() / 12 * (positive - clipped)
                errors[name][i] += float((per_channel * norms[name]).sum())

        observe(model, batches(samples[labels == photo], batch_size), acts, record)
    return {na: DEPTHWISE_POLICIES[int(errors[na].argmin())] for na in errors}


def _thinned(output: torch.Tensor, values: int) -> torch.Tensor:
    """``output`` (N, C, ...) as (C, N * ...) thinned to every k-th value of each channel (k: about ``values`` left),
    gathered without first copying the whole transposed tensor."""
    n, c = output.shape[:2]
    flat = output.reshape(n, c, -1)
    per_sample = flat.shape[2]
    index = torch.arange(0, n * per_sample, max(1, n * per_sample // values))
    return flat[index // per_sample, :, index % per_sample].t()
