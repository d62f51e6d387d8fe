"""The profiler: hand-computed counts on tiny models, PyTorch vs ONNX, fvcore cross-check, the CLI."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import fvcore_count
from torch import nn
from typer.testing import CliRunner

from edgeconv.cli import app
from edgeconv.profile import classify_conv, profile_model, profile_onnx
from edgeconv.profile.onnx_count import module_name, reconcile
from edgeconv.zoo import create_model, get_spec

runner = CliRunner()


def _sample(name: str, size: int | None) -> tuple[int, ...]:
    channels, height, width = get_spec(name).input_size
    return (channels, size, size) if size else (channels, height, width)


def _one(module: nn.Module, shape: tuple[int, ...]):
    report = profile_model(module, shape[1:], batch=shape[0])
    rows = [r for r in report.layers if r.op_type != "other"]
    assert len(rows) == 1
    return report, rows[0]


def test_dense_conv_exact() -> None:
    report, row = _one(nn.Conv2d(3, 8, 3, padding=1), (1, 3, 10, 10))
    assert row.macs == 10 * 10 * 8 * 3 * 9  # 21,600 multiply-accumulates
    assert row.params == 8 * 3 * 9 + 8
    assert row.type == "conv_kxk 3x3"
    assert row.other_ops == 800  # one bias add per output element, not a mult-add
    assert row.output_shape == (1, 8, 10, 10)
    assert row.memory_bytes == 4 * (224 + 300 + 800)  # weights + input + output, float32
    assert row.activation_bytes == 4 * 800
    assert report.params == 224 and report.macs == 21_600


def test_strided_conv_and_batch() -> None:
    _, row = _one(nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False), (2, 3, 8, 8))
    assert row.output_shape == (2, 4, 4, 4)
    assert row.macs == 2 * 4 * 4 * 4 * 27


def test_depthwise_conv_exact() -> None:
    _, row = _one(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), (1, 8, 10, 10))
    assert row.type == "conv_dw" and row.macs == 8 * 100 * 9 and row.params == 72
    _, row = _one(nn.Conv2d(4, 8, 5, padding=2, groups=4, bias=False), (1, 4, 6, 6))  # channel multiplier 2
    assert row.type == "conv_dw" and row.macs == 8 * 36 * 25


def test_grouped_conv_exact() -> None:
    _, row = _one(nn.Conv2d(8, 16, 1, groups=4), (1, 8, 10, 10))
    assert row.type == "conv_group"
    assert row.macs == 16 * 100 * 2  # each output sees in_channels / groups = 2 inputs
    assert row.params == 16 * 2 + 16


def test_linear_and_pointwise_exact() -> None:
    _, row = _one(nn.Linear(20, 5), (3, 20))
    assert row.type == "fc" and row.macs == 3 * 5 * 20 and row.params == 105
    _, row = _one(nn.Conv2d(16, 4, 1), (1, 16, 1, 1))  # 1x1 conv on a 1x1 map is a fully connected layer
    assert row.type == "fc" and row.macs == 64
    _, row = _one(nn.Conv2d(16, 4, 1), (1, 16, 7, 7))
    assert row.type == "conv1x1" and row.macs == 49 * 64


def test_transposed_conv_exact() -> None:
    _, row = _one(nn.ConvTranspose2d(4, 2, 2, stride=2, bias=False), (1, 4, 5, 5))
    assert row.output_shape == (1, 2, 10, 10)
    assert row.macs == 100 * 2 * 4  # every input element meets out_channels x kernel area weights


def test_classify_conv_rules() -> None:
    assert classify_conv(1, 6, 1, (5, 5), (28, 28)) == ("conv_kxk", "5x5")  # single input channel: dense
    assert classify_conv(32, 32, 32, (3, 3), (7, 7)) == ("conv_dw", "3x3")
    assert classify_conv(64, 64, 8, (3, 3), (7, 7)) == ("conv_group", "3x3")
    assert classify_conv(64, 64, 1, (1, 7), (17, 17)) == ("conv_kxk", "1x7")


def test_other_ops_are_separate() -> None:
    model = nn.Sequential(nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1))
    report = profile_model(model.eval(), (4, 8, 8))
    bn, relu, pool, gap = report.layers
    assert report.macs == 0
    assert bn.other_ops == 2 * 256 and bn.params == 8
    assert relu.other_ops == 256
    assert pool.other_ops == 64 * 4  # 2x2 window per output
    assert gap.other_ops == 64


class _Custom(nn.Module):
    """Functional ops with own parameters, a residual add and a matmul: what leaf hooks alone would miss."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 4, 3, 3))
        self.proj = nn.Parameter(torch.randn(4, 6))
        self.shared = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight, padding=1) + x
        z = y.mean((2, 3)) @ self.proj
        return self.shared(self.shared(z))  # one module, two calls


def test_functional_ops_and_shared_modules() -> None:
    report = profile_model(_Custom(), (4, 5, 5))
    by_name = {r.name: r for r in report.layers}
    assert by_name["conv2d"].macs == 4 * 25 * 4 * 9 and by_name["conv2d"].type == "conv_kxk 3x3"
    assert by_name["add"].other_ops == 100 and by_name["add"].macs == 0
    assert by_name["matmul"].macs == 4 * 6
    assert by_name["shared"].macs == 36 and by_name["shared#2"].macs == 36
    assert by_name["shared"].params == 42 and by_name["shared#2"].params == 0
    assert report.params == 144 + 24 + 42 == sum(r.params for r in report.layers)


def test_lenet5_hand_count_and_meta_equals_cpu() -> None:
    report = profile_model("lenet5")
    # C1 28x28x6x25, C3 10x10x16x150, C5 120x400, F6 84x120, output 10x84
    assert report.macs == 117_600 + 240_000 + 48_000 + 10_080 + 840
    assert report.params == 61_706 == sum(r.params for r in report.layers)
    real = profile_model(create_model("lenet5"), (1, 32, 32))
    assert [r.to_dict() for r in real.layers] == [r.to_dict() for r in report.layers]


def test_report_schema_and_by_type() -> None:
    report = profile_model("mobilenet_v1", 128)
    data = report.to_dict()
    assert {"model", "input_shape", "params", "macs", "layers", "by_type"} <= set(data)
    assert data["input_shape"] == [1, 3, 128, 128]
    assert {"name", "type", "output_shape", "params", "macs", "memory_bytes"} <= set(data["layers"][0])
    by_type = data["by_type"]
    assert list(by_type) == ["conv1x1", "conv_dw", "conv_kxk 3x3", "fc", "other"]
    assert sum(v["macs"] for v in by_type.values()) == data["macs"]
    assert sum(v["params"] for v in by_type.values()) == data["params"] == 4_231_976
    assert abs(sum(v["macs_pct"] for v in by_type.values()) - 100) < 1e-9


def test_mobilenet_v2_figures() -> None:
    report = profile_model("mobilenet_v2")
    assert abs(report.macs - 300e6) / 300e6 < 0.01  # 300,774,272
    weights = sum(r.params for r in report.layers if r.op_type != "other")
    assert 3.4e6 <= weights <= 3.5e6  # 3,470,760 conv + fc; the paper's 3.4 M
    assert round(report.params / 1e5) / 10 == 3.5  # 3,504,872 with BatchNorm


def test_width_mult_and_input_size_scale() -> None:
    full = profile_model("mobilenet_v1")
    assert abs(profile_model("mobilenet_v1", 160).macs / full.macs - (160 / 224) ** 2) < 0.01
    assert profile_model("mobilenet_v1", width_mult=0.5).params < full.params / 3


# ---- PyTorch vs ONNX ---------------------------------------------------------------------------------------------
ONNX_MODELS = [
    ("lenet5", None),
    ("mobilenet_v2", 96),
    ("resnet18", 64),
    ("shufflenet_v2_x0_5", 64),
    ("googlenet", 96),
    ("efficientnet_b0", 96),
]


@pytest.mark.parametrize(("name", "size"), ONNX_MODELS)
def test_pytorch_and_onnx_counts_agree(name: str, size: int | None, tmp_path: Path) -> None:
    model = create_model(name)
    pt = profile_model(model, _sample(name, size))
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(pt.input_shape), str(path), dynamo=False, opset_version=17)
    ox = profile_onnx(path)
    result = reconcile(pt, ox)
    assert result, result.lines()  # every conv / fc layer joins by module name with equal mult-adds
    assert result.matched_layers == sum(1 for r in pt.layers if r.op_type != "other")
    assert ox.macs == pt.macs
    # params differ exactly by the BatchNorm folding the exporter does: BN weight+bias out, one conv bias per channel in
    bn = sum(r.params for r in pt.layers if r.op.startswith("BatchNorm"))
    new_bias = sum(r.output_shape[1] for r in pt.layers if r.op == "Conv2d" and not r.other_ops) if bn else 0
    assert ox.params == pt.params - bn + new_bias - ox.shared_params
    if bn:
        assert any("BatchNorm" in note for note in ox.notes)


def test_module_name_from_onnx_node() -> None:
    assert module_name("/features/features.1/conv/conv.0/conv.0.0/Conv") == "features.1.conv.0.0"
    assert module_name("/layer1/layer1.0/Add") == "layer1.0"
    assert module_name("/Add") == ""


# ---- independent counter: fvcore ---------------------------------------------------------------------------------
# fvcore counts one "flop" per multiply-accumulate of conv / linear / matmul, like edgeconv; it also counts
# batch_norm, adaptive_avg_pool2d, upsample ... by its own rules, which edgeconv reports as other ops instead. The
# comparison is therefore: fvcore's conv + linear + matmul subtotal == edgeconv's mult-adds exactly, and every other
# fvcore operator is one edgeconv leaves out of mult-adds by convention.
FVCORE_MODELS = [
    ("lenet5", None),
    ("allcnn_c", None),
    ("nin", 64),
    ("mobilenet_v1", 64),
    ("mobilenet_v2", 64),
    ("mobilenet_v3_small", 64),
    ("shufflenet_v2_x0_5", 64),
    ("resnet18", 64),
    ("se_resnet50", 64),
    ("cbam_resnet50", 64),
    ("efficientnet_b0", 64),
    ("densenet_bc_100_12", None),
    ("convnext_tiny", 64),
    # label maps: transposed convs (U-Net's up-convolutions, FCN's bilinear upsampling), dilated convs (ASPP)
    ("unet", 188),
    ("unet_padded", 64),
    ("fcn8s", 64),
    ("deeplabv3_mobilenet_v3_large", 64),
    ("lraspp_mobilenet_v3_large", 64),
]
FVCORE_MAC_OPS = {"conv", "linear", "matmul", "addmm", "bmm", "einsum"}
FVCORE_OTHER_OPS = {
    "batch_norm",
    "group_norm",
    "layer_norm",
    "instance_norm",
    "adaptive_avg_pool2d",
    "upsample_nearest2d",
    "upsample_bilinear2d",
}


@pytest.mark.parametrize(("name", "size"), FVCORE_MODELS)
def test_matches_fvcore(name: str, size: int | None) -> None:
    report = profile_model(name, size)  # meta device, shapes only (test_lenet5_... shows meta == CPU counts)
    by_operator = fvcore_count(name, report.input_shape)
    macs = sum(v for k, v in by_operator.items() if k in FVCORE_MAC_OPS)
    assert macs == report.macs, by_operator
    unexplained = set(by_operator) - FVCORE_MAC_OPS - FVCORE_OTHER_OPS
    assert not unexplained, f"fvcore counted {unexplained}; explain them before accepting"


# ---- CLI ---------------------------------------------------------------------------------------------------------
def test_cli_profile_json_schema() -> None:
    result = runner.invoke(app, ["profile", "lenet5", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"] == "lenet5" and data["input_shape"] == [1, 1, 32, 32]
    assert data["params"] == 61_706 and data["macs"] == 416_520
    for layer in data["layers"]:
        assert {"name", "type", "output_shape", "params", "macs", "memory_bytes"} <= set(layer)
    for totals in data["by_type"].values():
        assert {"params", "macs", "params_pct", "macs_pct"} <= set(totals)


def test_cli_profile_by_type_csv_and_options(tmp_path: Path) -> None:
    csv_path = tmp_path / "out" / "layers.csv"
    result = runner.invoke(
        app,
        ["profile", "mobilenet_v1", "--by-type", "--input-size", "128", "--width-mult", "0.5", "--csv", str(csv_path)],
    )
    assert result.exit_code == 0, result.output
    assert "conv_dw" in result.stdout and "1x3x128x128" in result.stdout
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("name,type,op,output_shape,params,macs")
    assert len(lines) == 1 + len(profile_model("mobilenet_v1", 128, width_mult=0.5).layers)
    batched = json.loads(runner.invoke(app, ["profile", "lenet5", "--batch", "4", "--json"]).stdout)
    assert batched["macs"] == 4 * 416_520 and batched["input_shape"][0] == 4


def test_cli_profile_onnx_target(tmp_path: Path) -> None:
    path = tmp_path / "lenet5.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(create_model("lenet5"), torch.zeros(1, 1, 32, 32), str(path), dynamo=False, opset_version=17)
    result = runner.invoke(app, ["profile", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["source"] == "onnx" and data["macs"] == 416_520 and data["params"] == 61_706
    bad = runner.invoke(app, ["profile", str(path), "--input-size", "64"])
    assert bad.exit_code == 2 and "--input-size" in bad.stderr
    # inside an artifact folder (manifest.json names the zoo model) the output reconciles with the PyTorch count
    manifest = {"model": "lenet5", "model_kwargs": {}, "input": {"shape": [1, 1, 32, 32]}, "fused": False}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    notes = json.loads(runner.invoke(app, ["profile", str(path), "--json"]).stdout)["notes"]
    assert any(n.startswith("vs PyTorch lenet5: mult-adds: pytorch 416,520 / onnx 416,520") for n in notes), notes
    # read by the one manifest policy: a hand-written manifest naming no model adds nothing, a malformed one is an error
    (tmp_path / "manifest.json").write_text(json.dumps({"engines": []}))
    notes = json.loads(runner.invoke(app, ["profile", str(path), "--json"]).stdout)["notes"]
    assert not any(n.startswith("vs PyTorch") for n in notes), notes
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "input": [1, 1, 32, 32]}))
    broken = runner.invoke(app, ["profile", str(path)])
    assert broken.exit_code != 0 and "manifest.json: input is not a JSON object" in broken.stderr, broken.output


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["profile", "mobilenet_v9"], 2, "unknown model 'mobilenet_v9'"),
        (["profile", "missing.onnx"], 1, "does not exist"),
        (["profile", "lenet5", "--input-size", "abc"], 2, "--input-size 'abc'"),
        (["profile", "lenet5", "--batch", "0"], 2, "batch 0"),
    ],
)
def test_cli_profile_bad_target_one_line(args: list[str], code: int, needle: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == code
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_not_an_onnx_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    result = runner.invoke(app, ["profile", str(junk)])
    assert result.exit_code == 1 and "not a readable ONNX model" in result.stderr


# ---- every zoo model ---------------------------------------------------------------------------------------------
def _registry() -> list[str]:
    from edgeconv.zoo import list_models

    return [name for name in list_models() if not get_spec(name).is_detector]  # test_detection.py


@pytest.mark.parametrize("name", _registry())
def test_every_zoo_model_profiles_at_default_input(name: str) -> None:
    """Counts add up, params equal the registry's count, and totals match the paper within 2% or are explained."""
    from edgeconv.profile.tables import explanation_for
    from edgeconv.zoo.registry import count_params

    spec = get_spec(name)
    report = profile_model(name)
    assert report.input_shape == (1, *spec.input_size)
    assert report.params == sum(r.params for r in report.layers) == count_params(name)
    assert report.macs == sum(t.macs for t in report.by_type().values()) > 0
    for metric, ours, paper in (
        ("params", report.params, spec.figures.params),
        ("macs", report.macs, spec.figures.macs),
    ):
        if paper and abs(ours - paper) / paper > 0.02:
            assert spec.figures.note or explanation_for(name, metric), (
                f"{name} {metric}: {ours:,} vs paper {paper:,.0f}"
            )


def test_profile_of_a_graph_symbolic_inference_cannot_finish_leaves_no_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import save_custom_op_model

    from edgeconv.profile.onnx_count import profile_onnx

    source = save_custom_op_model(tmp_path / "custom.onnx")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    report = profile_onnx(source)
    conv = report.layers[0]
    assert (conv.op, conv.macs) == ("Conv", 32 * 27 * 6 * 6)  # profiled from onnx's own shapes all the same
    assert list(cwd.iterdir()) == []
