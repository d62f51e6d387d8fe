"""The PyTorch preparation before INT8 export, on a BatchNorm-folded model, in the order ``quantize.int8`` runs it:

1. ``split_shared_activations``: one activation module per call site (ResNet's shared ``self.relu``), so that the
   passes below find their pairs;
2. ``equalize_model``: cross-layer equalization of conv -> activation -> conv pairs (Nagel et al. 2019);
3. ``equalize_residual_streams``: the same for the channels of a whole residual stream;
4. ``equalize_depthwise_inputs`` (onnxruntime form): closer ranges for each depthwise conv's ReLU6 input channels;
5. ``center_unsigned_activations`` (tensorrt form): ReLU6 outputs shifted onto the symmetric int8 grid;
6. ``split_identity_taps`` (RepVGG): the identity branch's centre taps moved out of the fused 3x3 kernel;
7. ``correct_bias`` (opt-in): the expected output shift of the quantized weights removed from the biases.

Every step but bias correction keeps the float function exactly; ``quantize.int8`` checks that on every export.
"""

from edgeconv.quantize.prepare.bias_correction import WeightQuantScheme, correct_bias
from edgeconv.quantize.prepare.centring import PaddedConv2d, ShiftedClip, center_unsigned_activations
from edgeconv.quantize.prepare.cle import EqualizationReport, equalize_model, find_equalization_pairs
from edgeconv.quantize.prepare.common import batches
from edgeconv.quantize.prepare.depthwise import DEPTHWISE_POLICIES, ChannelClip, equalize_depthwise_inputs
from edgeconv.quantize.prepare.identity_split import IdentitySplitConv, split_identity_taps
from edgeconv.quantize.prepare.residual import equalize_residual_streams, find_residual_streams
from edgeconv.quantize.prepare.shared_activations import split_shared_activations

__all__ = [
    "DEPTHWISE_POLICIES",
    "ChannelClip",
    "EqualizationReport",
    "IdentitySplitConv",
    "PaddedConv2d",
    "ShiftedClip",
    "WeightQuantScheme",
    "batches",
    "center_unsigned_activations",
    "correct_bias",
    "equalize_depthwise_inputs",
    "equalize_model",
    "equalize_residual_streams",
    "find_equalization_pairs",
    "find_residual_streams",
    "split_identity_taps",
    "split_shared_activations",
]
