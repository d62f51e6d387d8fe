"""``edgeconv export MODEL``: fuse, export to ONNX, validate on ONNX Runtime, write ``models/<name>/``.

The command only parses and prints; ``edgeconv.artifact.export_artifact`` does the work. Options of other stages
(INT8: ``--target``, ``--calib`` ...) plug in through ``int8_options``: build it from the new options and pass it on.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from edgeconv.cli.app import app, model_kwargs, parse_input_size, print_json
from edgeconv.errors import InvalidArgumentError


class _Steps:
    """Rich progress on stderr (stdout stays clean for --json): one line per finished step with its duration."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self.console = console
        self.enabled = enabled
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not (enabled and console.is_terminal),  # a spinner in a pipe or log is only a stray blank line
        )
        self.task: Any = None
        self.label: str | None = None
        self.started = 0.0

    def __enter__(self) -> _Steps:
        self.progress.__enter__()
        return self

    def _finish(self) -> None:
        if self.label is not None and self.enabled:
            self.console.print(
                f"[green]done[/green] {self.label} [dim]({time.perf_counter() - self.started:.1f} s)[/dim]"
            )

    def __call__(self, label: str) -> None:
        self._finish()
        self.label, self.started = label, time.perf_counter()
        if self.task is None:
            self.task = self.progress.add_task(label, total=None)
        else:
            self.progress.update(self.task, description=label)

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            self._finish()
        self.progress.__exit__(exc_type, *rest)


def _agreement(figures: dict[str, Any]) -> str:
    """An export check's agreement: per image for class scores, per pixel for a label map."""
    if figures.get("unit") == "pixel":
        return f"{figures['top1_agreement']:.2%} of {figures['units']:,} px"
    return f"{figures['top1_agreement']:.0%} of {figures['images']}"


def _summary_table(manifest: dict[str, Any], folder: Path) -> Table:
    table = Table(title=f"{manifest['model']} -> {folder}", title_justify="left")
    for column in ("precision", "file", "size", "max abs diff", "max rel error", "top-1 agreement", "check"):
        table.add_column(column, justify="left" if column in ("precision", "file", "check") else "right")
    for precision, entry in manifest["files"].items():
        figures = (manifest.get("validation") or {}).get(precision)
        if precision == "int8" and manifest.get("int8"):
            fidelity = manifest["int8"].get("fidelity", {})
            agreement = fidelity.get("top1_agreement")
            row = [
                "-",
                "-",
                f"{agreement:.1%}" if isinstance(agreement, float) else "-",
                "gate passed" if manifest["int8"].get("gate", {}).get("passed") else "below gate (--force)",
            ]
        elif figures:
            row = [
                f"{figures['max_abs_diff']:.2e}",
                f"{figures['max_rel_error']:.2e}",
                _agreement(figures),
                f"[green]pass[/green] (rel <= {figures['tolerance']:g})" if figures["passed"] else "[red]fail[/red]",
            ]
        else:
            row = ["-", "-", "-", "not validated"]
        table.add_row(precision, entry["path"], f"{entry['bytes'] / 1e6:.1f} MB", *row)
    return table


def _detector_form(model: str, target: str) -> str | None:
    """A detector's export form from ``--target`` (no --int8 needed: the TensorRT form is a graph, not a precision;
    ``edgeconv.detection.check_form`` checks it); None for other models."""
    from edgeconv.zoo import get_spec

    return target if get_spec(model).is_detector else None


def _detector_table(manifest: dict[str, Any], folder: Path) -> Table:
    """A detector's export check: per photo, PyTorch's and ONNX's detection counts, matched pairs, least IoU."""
    table = Table(title=f"{manifest['model']} -> {folder}", title_justify="left")
    fp32 = manifest["validation"]["fp32"]
    if "photos" not in fp32:  # Fast R-CNN: per-RoI scores and boxes
        for column in ("file", "max abs diff (scores)", "max rel diff (boxes)", "check"):
            table.add_column(column)
        table.add_row(
            manifest["files"]["fp32"]["path"], f"{fp32['max_abs_diff_scores']:.2e}",
            f"{fp32['max_rel_diff_boxes']:.2e}", "[green]pass[/green]" if fp32["passed"] else "[red]fail[/red]",
        )  # fmt: skip
        return table
    for column in ("photo", "PyTorch boxes", "ONNX boxes", "matched", "least IoU", "max score diff", "check"):
        table.add_column(column, justify="left" if column in ("photo", "check") else "right")
    for photo, result in fp32["photos"].items():
        table.add_row(
            photo, str(result["reference"]), str(result["actual"]), str(result["matched"]), f"{result['min_iou']:.4f}",
            f"{result['max_score_diff']:.1e}", "[green]pass[/green]" if result["passed"] else "[red]fail[/red]",
        )  # fmt: skip
    return table


def _detector_precisions(manifest: dict[str, Any]) -> list[str]:
    """One line per low-precision file of a detector: its box F1 against FP32 and the gate."""
    lines = []
    fp16 = (manifest.get("validation") or {}).get("fp16")
    if fp16 and "photos" not in fp16:  # Fast R-CNN: per-RoI scores and boxes
        lines.append(
            f"fp16: {manifest['files']['fp16']['path']}, max abs diff {fp16['max_abs_diff_scores']:.2e} (scores), "
            f"{fp16['max_rel_diff_boxes']:.2e} (boxes) against PyTorch FP32 (tolerance {fp16['tolerance']}): pass"
        )
    elif fp16:
        lines.append(
            f"fp16: {manifest['files']['fp16']['path']}, box F1 against PyTorch FP32 {fp16['mean_f1']:.3f} on "
            f"{len(fp16['photos'])} photos (gate {fp16['min_f1']}): pass"
        )
    fidelity = (manifest.get("int8") or {}).get("fidelity")
    if fidelity:
        verdict = "gate passed" if fidelity["passed"] else "[yellow]below the gate, written with --force[/yellow]"
        lines.append(
            f"int8: {manifest['files']['int8']['path']}, box F1 against FP32 {fidelity['mean_f1']:.3f} on "
            f"{fidelity['samples']} held-out samples (gate {fidelity['gate']}): {verdict}"
        )
    return lines


@app.command("export")
def export_command(
    model: str = typer.Argument(..., help="Zoo model name (see `edgeconv list`)."),
    weights: str = typer.Option(
        None, "--weights", help="'imagenet' (catalog) or a state_dict file; default: seeded random init."
    ),
    fp16: bool = typer.Option(
        False,
        "--fp16",
        help="Also write model_fp16.onnx (FP16 compute, FP32 input/output), validated. A detector: its network in "
        "FP16, box work in FP32, gated by box F1 against PyTorch.",
    ),
    int8: bool = typer.Option(
        False,
        "--int8",
        help="Also write model_int8.onnx (QDQ INT8, calibrated), validated. A detector: its network "
        "in INT8, box work in FP32, gated by the F1 of its boxes against FP32 on held-out photos.",
    ),
    target: str = typer.Option(
        "onnxruntime",
        "--target",
        help="INT8 form: onnxruntime (fast on ORT CPU) or tensorrt (TensorRT QDQ rules). For a detector, the graph's "
        "form: onnxruntime (the whole detector, any input size) or tensorrt (fixed --input-size, constant shapes, "
        "NonMaxSuppression and RoiAlign, outputs padded with a count).",
    ),
    calib: Path = typer.Option(
        None, "--calib", help="INT8 calibration photo folder (default: the repository's calibration/)."
    ),
    calib_method: str = typer.Option(
        "mse",  # edgeconv.quantize.options.DEFAULT_CALIBRATION_METHOD (not imported here: --help stays fast)
        "--calib-method",
        help="INT8 calibration: minmax, entropy, percentile (the 99.999th of |x|) or mse (per tensor, the clipping "
        "point between that percentile and the maximum with the least expected quantization error on the form's grid).",
    ),
    calib_samples: int = typer.Option(
        None,
        "--calib-samples",
        help="INT8: random crops of the calibration photos (default 128; a detector: 32, whole photos first).",
    ),
    eval_samples: int = typer.Option(
        None,
        "--eval-samples",
        help="INT8: held-out crops of other photos that the fidelity gate scores (default 300; a detector: 16).",
    ),
    seed: int = typer.Option(
        None,
        "--seed",
        help="INT8: seed of the calibration and held-out crops and of adaptive rounding's batch order (default 0). "
        "Another seed shows how much the INT8 result depends on the draw.",
    ),
    no_equalize: bool = typer.Option(
        False, "--no-equalize", help="INT8: skip cross-layer equalization (conv pairs and residual streams)."
    ),
    equalize_depthwise: bool | None = typer.Option(
        None,
        "--equalize-depthwise/--no-equalize-depthwise",
        help="INT8, onnxruntime target: closer ranges for the channels of each depthwise conv's ReLU6 input, chosen "
        "per layer by leaving one calibration photo out (on by default; mobilenet_v2 mean KL 0.042 -> 0.034, see "
        "bench/results/int8.md).",
        show_default=False,
    ),
    bias_correction: bool = typer.Option(
        False,
        "--bias-correction/--no-bias-correction",
        help="INT8: empirical bias correction (Nagel et al. 2019); off by default, see bench/results/int8.md.",
    ),
    adaround: bool = typer.Option(
        True,
        "--adaround/--no-adaround",
        help="INT8: learn each weight's rounding (up or down) so that layer outputs match FP32 on the calibration "
        "crops (AdaRound, Nagel et al. 2020), block by block; most of the INT8 time (about a minute for "
        "mobilenet_v2 on 2 cores).",
    ),
    cpu_kernels: str = typer.Option(
        "auto",
        "--cpu-kernels",
        help="INT8, --target onnxruntime: the CPU that will run the model. avx2 (x86 without VNNI: ORT's int8 kernel "
        "saturates, so weights use a saturation-safe grid), vnni (x86 with AVX512-VNNI / AVX-VNNI / AMX) or arm "
        "(dot product): full 8-bit weights; auto: this machine's CPU. Recorded in the manifest.",
    ),
    center: bool = typer.Option(
        True,
        "--center/--no-center",
        help="INT8, --target tensorrt: shift ReLU/ReLU6 outputs between two convs to be centred on 0, so that "
        "TensorRT's symmetric int8 grid uses its negative half (exact in float: biases re-derived, a padded reader "
        "pads with the shift).",
    ),
    split_identity: bool = typer.Option(
        True,
        "--split-identity/--no-split-identity",
        help="INT8, RepVGG-style models: compute each re-parameterized kernel's identity centre taps as a separate "
        "depthwise 1x1 conv, so they no longer set the 3x3 weights' int8 range (exact in float).",
    ),
    fallback: str = typer.Option(
        "auto",
        "--fallback",
        help="INT8: auto (most sensitive layers/tensors to high precision until the gate holds, within 0.7x FP32 "
        "latency), none, or PyTorch module names kept in float (a,b).",
    ),
    min_agreement: float = typer.Option(
        None,
        "--min-agreement",
        help="INT8 gate: least top-1 agreement with FP32 (a detector: mean box F1; default 0.65).",
    ),
    min_confident_agreement: float = typer.Option(
        None,
        "--min-confident-agreement",
        help="INT8 gate: least top-1 agreement on the held-out crops FP32 is sure about (top-1 probability > 0.5), "
        "e.g. 0.99 (default: no such gate).",
    ),
    opset: int = typer.Option(
        None,
        "--opset",
        help="ONNX opset (default 17: TensorRT 8.6+ and ONNX Runtime; a model with a newer op defaults to that op's "
        "opset: deform_resnet50's DeformConv, 19).",
    ),
    batch: int = typer.Option(None, "--batch", help="Static batch size (default 1)."),
    dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="Make the batch axis dynamic."),
    dynamic_size: bool = typer.Option(
        False,
        "--dynamic-size",
        help="Make the height and width dynamic (segmentation networks: a label map of any input the model takes); "
        "validated at the export size and at a second, larger, non-square size.",
    ),
    deform_conv: str = typer.Option(
        "native",
        "--deform-conv",
        metavar="[native|grid-sample]",
        help="Deformable convs (deform_resnet50): native ONNX DeformConv (opset 19: ONNX Runtime, TensorRT 10.1+) or "
        "grid-sample, their exact decomposition into GridSample + Conv (opset 16: also OpenVINO, TensorRT 8.6).",
    ),
    fully_convolutional: bool = typer.Option(
        False,
        "--fully-convolutional",
        help="Export a classifier with a Linear head (alexnet, vgg*, zfnet) convolutionized: its Linear layers as "
        "convs, a dense map of class scores at any larger input (implies --dynamic-size).",
    ),
    input_size: str = typer.Option(None, "--input-size", help="Input H or H,W (default: the model's)."),
    width_mult: float = typer.Option(None, "--width-mult", help="Width multiplier, for models that take one."),
    num_classes: int = typer.Option(
        None, "--num-classes", help="Classes of the head (default: the model's), e.g. for your own trained weights."
    ),
    no_fuse: bool = typer.Option(False, "--no-fuse", help="Export without BatchNorm folding / re-parameterization."),
    exporter: str = typer.Option(
        "auto",
        "--exporter",
        metavar="[auto|dynamo|torchscript]",
        help="ONNX exporter: auto (default) uses the torch.export-based one (dynamo) where its graph validates at the "
        "opset asked, else the TorchScript one, and the manifest says which and why; dynamo or torchscript forces "
        "one (dynamo keeps opset 18 with a warning where the version converter cannot go lower).",
    ),
    out: Path = typer.Option(None, "--out", help="Output folder (default: models/MODEL)."),
    force: bool = typer.Option(
        False,
        "--force",
        help="Replace an existing, different artifact in the output folder; "
        "with --int8 also write INT8 below its fidelity gate.",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the manifest as JSON instead of tables."),
) -> None:
    """Fuse, export to ONNX, validate against PyTorch on ONNX Runtime, and write an artifact folder.

    Example: [bold]edgeconv export mobilenet_v2 --weights imagenet --fp16[/bold]
    """
    from edgeconv.artifact import export_artifact

    if dynamic_batch and batch is not None:
        raise InvalidArgumentError("--batch and --dynamic-batch exclude each other; give one")
    detector_form = _detector_form(model, target)
    console = Console(stderr=True)
    with _Steps(console, enabled=not json_output) as steps:
        int8_options = None
        if int8:
            from edgeconv.detector_precision import detector_int8_options
            from edgeconv.quantize.fidelity import DEFAULT_MIN_AGREEMENT
            from edgeconv.quantize.options import Int8Options, parse_fallback

            defaults = detector_int8_options() if detector_form else Int8Options()  # sample counts left unset

            def int8_progress(done: int, total: int) -> None:  # samples done in the current stage
                if steps.task is not None:
                    steps.progress.update(steps.task, description=f"{steps.label or 'quantize to INT8'} {done}/{total}")

            def rounding_progress(done: int, total: int) -> None:
                if steps.task is not None:
                    steps.progress.update(
                        steps.task, description=f"quantize to INT8: adaptive rounding, layer {done}/{total}"
                    )

            int8_options = Int8Options(
                target=target,  # type: ignore[arg-type]  # validated below
                calib_dir=calib,
                calib_method=calib_method,
                calib_samples=defaults.calib_samples if calib_samples is None else calib_samples,
                eval_samples=defaults.eval_samples if eval_samples is None else eval_samples,
                seed=defaults.seed if seed is None else seed,
                equalize=not no_equalize,
                equalize_depthwise=equalize_depthwise is not False,
                bias_correction=bias_correction,
                adaround=adaround,
                center_activations=center,
                split_identity=split_identity,
                fallback=parse_fallback(fallback),
                min_agreement=DEFAULT_MIN_AGREEMENT if min_agreement is None else min_agreement,
                min_confident_agreement=min_confident_agreement or 0.0,
                force=force,
                progress=int8_progress,
                rounding_progress=rounding_progress,
                on_stage=lambda label: steps(f"quantize to INT8: {label}"),
                cpu_kernels=cpu_kernels,
            )
            int8_options.validate()
        elif (
            any(v is not None for v in (calib, min_agreement, min_confident_agreement, seed))
            or (target != "onnxruntime" and detector_form is None)
            or fallback != "auto"
            or cpu_kernels != "auto"
            or equalize_depthwise is not None
        ):
            raise InvalidArgumentError(
                "--target, --calib, --seed, --fallback, --cpu-kernels, --[no-]equalize-depthwise, --min-agreement and "
                "--min-confident-agreement configure INT8; add --int8"
            )
        manifest = export_artifact(
            model,
            out,
            weights=weights,
            fp16=fp16,
            int8=int8,
            int8_options=int8_options,
            opset=opset,
            batch=1 if batch is None else batch,  # --batch 0 is an error, not 1
            dynamic_batch=dynamic_batch,
            input_size=parse_input_size(input_size),
            fuse=not no_fuse,
            force=force,
            model_kwargs=model_kwargs(width_mult, num_classes),
            on_step=steps,
            exporter=exporter,
            dynamic_size=dynamic_size,
            fully_convolutional=fully_convolutional,
            deform_conv=deform_conv,
            detector_form=detector_form,
        )
    if json_output:
        print_json({"folder": str(manifest.folder), "unchanged": manifest.unchanged, **manifest.data})
        return
    stdout = Console()
    if manifest.unchanged:
        stdout.print(f"{manifest.folder} already holds this artifact: nothing written")
    fusion = manifest.data.get("fusion", {})
    if manifest.data.get("fused"):
        line = (
            f"fused: {fusion.get('folded', 0)} BatchNorms folded, {fusion.get('reparameterized', 0)} blocks "
            f"re-parameterized, params {fusion.get('params_before', 0):,} -> {fusion.get('params_after', 0):,}"
        )
        if fusion.get("unfoldable"):
            line += f"; {len(fusion['unfoldable'])} BatchNorms not foldable (e.g. {fusion['unfoldable'][0]})"
        stdout.print(line)
    if (manifest.data.get("output") or {}).get("kind") in ("detections", "roi_detections"):
        stdout.print(_detector_table(manifest.data, manifest.folder))
        for line in _detector_precisions(manifest.data):
            stdout.print(line)
        return
    stdout.print(_summary_table(manifest.data, manifest.folder))
    resized = (manifest.data.get("validation") or {}).get("fp32_resized")
    if resized:
        height, width = resized["input_size"]
        stdout.print(
            f"dynamic size: fp32 also checked at {height}x{width}: max rel error {resized['max_rel_error']:.2e}, "
            f"agreement {_agreement(resized)}, " + ("pass" if resized["passed"] else "fail")
        )
    for note in manifest.data.get("runtime_notes") or []:
        stdout.print(f"[yellow]note:[/yellow] {note}")
