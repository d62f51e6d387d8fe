"""Family-specific checks for the classic zoo: AlexNet/ZFNet, VGG, NIN, All-CNN, the Inception family, Xception.

The registry-wide tests (forward at the default input, params vs paper) live in test_zoo.py and the torchvision
state_dict checks in test_torchvision_compat.py; these pin what is particular to each family: the paper's layer
geometry, auxiliary heads, LRN, grouping, and GoogLeNet's per-module table (seed 004). Checks of shapes and layer
geometry run on the meta device (no weights, no arithmetic); the numeric ones on the CPU.
"""

from __future__ import annotations

import pytest
import torch
from conftest import meta_model
from torch import nn

from edgeconv.errors import InvalidArgumentError
from edgeconv.zoo import create_model, get_spec, list_models
from edgeconv.zoo.registry import count_params

CLASSIC = {
    "alexnet": "alexnet",
    "alexnet_lrn": "alexnet",
    "zfnet": "alexnet",
    **{f"vgg{depth}{bn}": "vgg" for depth in (11, 13, 16, 19) for bn in ("", "_bn")},
    "nin": "nin",
    "allcnn_c": "allcnn",
    "allcnn_imagenet": "allcnn",
    "googlenet": "inception",
    "bn_inception": "inception",
    "inception_v3": "inception",
    "inception_v4": "inception",
    "inception_resnet_v2": "inception",
    "xception": "xception",
}


def _meta(*shape: int) -> torch.Tensor:
    return torch.empty(shape, device="meta")


def _output_sizes(model: nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, tuple[int, ...]]:
    """Output shape (without batch) of each named submodule for input ``x``."""
    sizes: dict[str, tuple[int, ...]] = {}
    modules = dict(model.named_modules())
    handles = [
        modules[name].register_forward_hook(
            lambda _m, _i, out, name=name: sizes.__setitem__(name, tuple(out.shape[1:]))
        )
        for name in names
    ]
    with torch.inference_mode():
        model(x)
    for handle in handles:
        handle.remove()
    return sizes


def test_every_classic_name_is_registered_with_its_family() -> None:
    registered = set(list_models())
    assert set(CLASSIC) <= registered, sorted(set(CLASSIC) - registered)
    for name, family in CLASSIC.items():
        spec = get_spec(name)
        assert spec.family == family
        assert spec.figures.source, f"{name}: paper figures need a source"


@pytest.mark.parametrize("name", [n for n in CLASSIC if not n.startswith("vgg")])
def test_num_classes_kwarg_sets_output_width(name: str) -> None:
    channels, height, _ = get_spec(name).input_size
    size = min(height, 96)  # adaptive pooling heads: any input size the features accept
    model = meta_model(name, num_classes=7)
    with torch.inference_mode():
        assert model(torch.empty(1, channels, size, size, device="meta")).shape == (1, 7)


def test_alexnet_lrn_is_the_papers_network() -> None:
    model = meta_model("alexnet_lrn")
    lrns = [m for m in model.modules() if isinstance(m, nn.LocalResponseNorm)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(lrns) == 2
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]  # the two GPU towers
    assert count_params("alexnet_lrn") == 60_965_224  # Caffe's bvlc_alexnet count: the paper's "60 million"
    assert count_params("alexnet_lrn", groups=1) == 62_378_344
    sizes = _output_sizes(model, _meta(1, 3, 224, 224), ["features.0", "features.3", "features.7", "features.14"])
    assert [s[1] for s in sizes.values()] == [55, 27, 13, 6]
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in meta_model("alexnet").modules())


def test_lrn_matches_the_papers_formula() -> None:
    """b_i = a_i / (k + alpha * sum_{|j-i|<=n/2} a_j^2)^beta with k=2, n=5, alpha=1e-4, beta=0.75 (no alpha/n)."""
    lrn = next(m for m in create_model("alexnet_lrn").modules() if isinstance(m, nn.LocalResponseNorm))
    a = torch.rand(1, 12, 3, 3) * 30
    squares = torch.nn.functional.pad(a.pow(2), (0, 0, 0, 0, 2, 2))
    window = torch.stack([squares[:, j : j + 12] for j in range(5)]).sum(0)
    expected = a / (2 + 1e-4 * window).pow(0.75)
    torch.testing.assert_close(lrn(a), expected)


def test_zfnet_geometry() -> None:
    model = meta_model("zfnet")
    first = model.get_submodule("features.0")
    assert (first.kernel_size, first.stride) == ((7, 7), (2, 2))
    sizes = _output_sizes(model, _meta(1, 3, 224, 224), ["features.0", "features.2", "features.4", "features.6"])
    assert [s[1] for s in sizes.values()] == [110, 55, 26, 13]  # Zeiler & Fergus Fig. 3
    assert model.get_submodule("features")(_meta(1, 3, 224, 224)).shape[1:] == (256, 6, 6)
    wide = meta_model("zfnet", wide=True)
    assert [c.out_channels for c in wide.modules() if isinstance(c, nn.Conv2d)][2:] == [512, 1024, 512]


@pytest.mark.parametrize("depth", [11, 13, 16, 19])
def test_vgg_depth_counts_weight_layers(depth: int) -> None:
    for bn in (False, True):
        with torch.device("meta"):
            model = get_spec(f"vgg{depth}{'_bn' if bn else ''}").builder()
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        assert len(convs) + len(linears) == depth
        assert all(c.kernel_size == (3, 3) for c in convs)
        assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == (len(convs) if bn else 0)


@pytest.mark.parametrize(("name", "size", "final_map"), [("nin", 32, (10, 8, 8)), ("allcnn_c", 32, (10, 6, 6))])
def test_cifar_nets_end_in_class_maps_and_global_average(name: str, size: int, final_map: tuple[int, ...]) -> None:
    model = create_model(name)
    assert not any(isinstance(m, nn.Linear) for m in model.modules())  # no fully connected layers
    x = torch.randn(2, 3, size, size)
    with torch.inference_mode():
        maps = model.get_submodule("features")(x)
        assert maps.shape[1:] == final_map
        torch.testing.assert_close(model(x), maps.mean((2, 3)))


def test_allcnn_has_no_pooling_and_follows_the_imagenet_table() -> None:
    model = meta_model("allcnn_imagenet")
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.Linear)) for m in model.modules())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    table = [(96, 11, 4), (96, 1, 1), (96, 3, 2), (256, 5, 1), (256, 1, 1), (256, 3, 2),
             (384, 3, 1), (384, 1, 1), (384, 3, 2), (1024, 3, 1), (1024, 1, 1), (1000, 1, 1)]  # fmt: skip
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == table
    with torch.inference_mode():
        assert model.get_submodule("features")(_meta(1, 3, 224, 224)).shape[1:] == (
            1000,
            6,
            6,
        )  # the table's 6x6 global pool


def test_googlenet_aux_heads_only_in_training() -> None:
    plain = create_model("googlenet")
    assert plain.aux1 is None and plain.aux2 is None
    model = create_model("googlenet", aux_logits=True, num_classes=5)
    x = torch.randn(2, 3, 64, 64)
    model.train()
    out = model(x)
    assert isinstance(out, tuple) and len(out) == 3
    assert all(t.shape == (2, 5) for t in out)
    model.eval()
    with torch.inference_mode():
        logits = model(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 5)
    assert count_params("googlenet", aux_logits=True) - count_params("googlenet") == 6_379_984


def test_aux_heads_load_torchvision_checkpoints() -> None:
    """torchvision's pretrained GoogLeNet / Inception-v3 files carry the aux heads and expect transform_input."""
    import torchvision  # a dev dependency (cross-checks only)

    reference = torchvision.models.googlenet(weights=None, aux_logits=True, transform_input=True, init_weights=True)
    ours = create_model("googlenet", aux_logits=True, transform_input=True)
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 96, 96)
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), reference.eval()(x), rtol=1e-5, atol=1e-5)
    with torch.device("meta"):
        v3_reference = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
        v3 = get_spec("inception_v3").builder(aux_logits=True)
    expected = {k: v.shape for k, v in v3_reference.state_dict().items()}
    assert {k: v.shape for k, v in v3.state_dict().items()} == expected


def test_googlenet_reproduces_the_papers_ops_column() -> None:
    """Seed 004 (Szegedy et al. 2015, Table 1): each Inception row's ops = conv weights x output pixels.

    With the paper's 5x5 kernels every row matches to the table's rounding except 5a, whose printed 54M (and 1072K
    params) disagree with its own widths (51.1M); the profiler work should expect the same.
    """
    model = meta_model("googlenet", branch3_kernel_size=5)
    table_ops = {"3a": 128, "3b": 304, "4a": 73, "4b": 88, "4c": 100, "4d": 119, "4e": 170, "5b": 71}
    names = [f"inception{row}" for row in table_ops]
    sizes = _output_sizes(model, _meta(1, 3, 224, 224), names)
    for row, ops in table_ops.items():
        block = getattr(model, f"inception{row}")
        weights = sum(m.weight.numel() for m in block.modules() if isinstance(m, nn.Conv2d))
        _, height, width = sizes[f"inception{row}"]
        assert abs(weights * height * width / 1e6 - ops) <= 1.0, row
    assert [sizes[n][0] for n in names] == [256, 480, 512, 512, 512, 528, 832, 1024]  # the table's output depths
    with pytest.raises(InvalidArgumentError, match="branch3_kernel_size"):
        create_model("googlenet", branch3_kernel_size=7)


def test_bn_inception_module_widths_and_reductions() -> None:
    model = meta_model("bn_inception")
    names = ["inception3a", "inception3b", "inception3c", "inception4a", "inception4d", "inception4e", "inception5b"]
    sizes = _output_sizes(model, _meta(1, 3, 224, 224), names)
    assert list(sizes.values()) == [
        (256, 28, 28),
        (320, 28, 28),
        (576, 14, 14),
        (576, 14, 14),
        (608, 14, 14),
        (1056, 7, 7),
        (1024, 7, 7),
    ]
    assert all(m.kernel_size != (5, 5) for m in model.modules() if isinstance(m, nn.Conv2d))  # 5x5 -> two 3x3
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == sum(
        isinstance(m, nn.Conv2d) for m in model.modules()
    )


def test_inception_v3_aux_head_only_in_training() -> None:
    model = meta_model("inception_v3", aux_logits=True, num_classes=4)
    model.train()
    out = model(_meta(2, 3, 299, 299))
    assert isinstance(out, tuple) and [t.shape for t in out] == [(2, 4), (2, 4)]
    assert count_params("inception_v3", aux_logits=True) == 27_161_264  # torchvision's num_params with the aux head


def test_inception_2017_checkpoint_layout() -> None:
    """timm / TF-slim key names, so their Inception-v4 and Inception-ResNet-v2 checkpoints load unchanged."""
    with torch.device("meta"):
        v4 = get_spec("inception_v4").builder().state_dict()
        irv2 = get_spec("inception_resnet_v2").builder()
    for key in ("features.0.conv.weight", "features.3.conv.conv.weight", "features.21.branch2_3b.bn.running_var"):
        assert key in v4
    assert "last_linear.weight" in v4
    keys = irv2.state_dict()
    for key in (
        "conv2d_1a.conv.weight",
        "repeat.9.branch2.2.bn.weight",
        "repeat_1.19.conv2d.bias",
        "block8.conv2d.weight",
    ):
        assert key in keys
    assert "classif.weight" in keys
    assert [block.scale for block in irv2.get_submodule("repeat").children()] == [0.17] * 10
    assert irv2.block8.relu is None  # the last Inception-ResNet-C block is linear


def test_xception_matches_the_paper_exactly_and_keeps_its_input() -> None:
    assert count_params("xception") == 22_855_952  # Chollet 2017, Table 3
    model = create_model("xception")
    separable = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1]
    assert len(separable) == 34  # 36 conv layers = 2 plain convs + 34 separable
    block = model.get_submodule("block5")
    x = torch.randn(1, 728, 19, 19)
    before = x.clone()
    with torch.inference_mode():
        block(x)
    torch.testing.assert_close(x, before)  # the shortcut reads x: the first ReLU must not overwrite it


def test_bad_kwargs_raise() -> None:
    with pytest.raises(InvalidArgumentError, match="groups"):
        create_model("alexnet_lrn", groups=3)
    with pytest.raises(InvalidArgumentError, match="accepts"):
        create_model("vgg16", width_mult=0.5)
