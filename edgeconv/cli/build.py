"""``edgeconv build ARTIFACT --backend tensorrt``: build a TensorRT engine on the machine that will run it."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeconv.cli import remote as on_board
from edgeconv.cli.app import app, print_json
from edgeconv.errors import InvalidArgumentError


@app.command("build")
def build_command(
    artifact: str = typer.Argument(..., help="Artifact folder (from `edgeconv export`), .onnx file, or zoo name."),
    backend: str = typer.Option("tensorrt", "--backend", help="Only tensorrt builds engines."),
    precision: str = typer.Option("fp16", "--precision", "-p", help="fp32 | fp16 | int8 (int8: the QDQ artifact)."),
    batch: int = typer.Option(1, "--batch", help="Optimization batch (profile opt)."),
    max_batch: int | None = typer.Option(None, "--max-batch", help="Largest batch for a dynamic-batch ONNX."),
    dla_core: int | None = typer.Option(None, "--dla-core", help="Run on this DLA core (Jetson), GPU fallback on."),
    no_gpu_fallback: bool = typer.Option(False, "--no-gpu-fallback", help="With --dla-core: fail instead."),
    workspace: int | None = typer.Option(1024, "--workspace", help="Builder workspace limit in MB."),
    timing_cache: Path | None = typer.Option(None, "--timing-cache", help="Timing cache file (read and updated)."),
    optimization_level: int = typer.Option(3, "--opt-level", help="Builder optimization level 0..5 (8.6+)."),
    typing_mode: str = typer.Option("auto", "--typing", help="auto | weak | strong (10.x network typing)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if an up-to-date engine is recorded."),
    models_dir: Path = typer.Option(Path("models"), "--models-dir", help="Where zoo names are exported/cached."),
    json_output: bool = typer.Option(False, "--json", help="Print the engine's manifest entry as JSON."),
    on: list[str] = on_board.ON,
    accept_new_host_key: bool = on_board.ACCEPT_NEW_HOST_KEY,
    known_hosts: Path | None = on_board.KNOWN_HOSTS,
    remote_edgeconv: str | None = on_board.REMOTE_EDGECONV,
    remote_dir: str | None = on_board.REMOTE_DIR,
    remote_timeout: float = on_board.REMOTE_TIMEOUT,
    board_root: str = on_board.BOARD_ROOT,
) -> None:
    """Build a serialized TensorRT engine from an exported ONNX and record it in the artifact's manifest.json
    (TensorRT version, GPU, compute capability): engines only run on the TensorRT version and GPU that built them."""
    from edgeconv.backends.artifacts import resolve_target
    from edgeconv.backends.tensorrt import (
        BuildRequest,
        build_engine,
        engine_batch_range,
        engine_onnx,
        require_tensorrt,
    )
    from edgeconv.cli.preflight import check_build_options

    if backend != "tensorrt":
        raise InvalidArgumentError(f"--backend {backend!r}: only tensorrt builds engines (onnxruntime needs no build)")
    check_build_options(
        artifact, precision=precision, batch=batch, max_batch=max_batch, dla_core=dla_core, workspace=workspace,
        optimization_level=optimization_level, typing_mode=typing_mode, timing_cache=timing_cache,
        models_dir=models_dir, local=not on,
    )  # fmt: skip
    on_board.check_remote_only(on, accept_new_host_key=accept_new_host_key, remote_edgeconv=bool(remote_edgeconv),
                               remote_dir=bool(remote_dir), known_hosts=bool(known_hosts))  # fmt: skip
    if on:  # build on the boards over SSH (edgeconv.remote): the engine stays there, in the artifact's folder
        on_board.build_on(
            on, artifact, models_dir=models_dir, json_output=json_output, timing_cache=timing_cache,
            request=dict(precision=precision, batch=batch, max_batch=max_batch, dla_core=dla_core,
                         gpu_fallback=not no_gpu_fallback, workspace_mb=workspace,
                         optimization_level=optimization_level, typing=typing_mode, force=force),
            options=on_board.remote_options(known_hosts=known_hosts, accept_new_host_key=accept_new_host_key,
                                            remote_edgeconv=remote_edgeconv, remote_dir=remote_dir,
                                            timeout=remote_timeout, board_root=board_root),
        )  # fmt: skip
        return
    # A path is read (and a truncated file named) first; a zoo name is exported only once TensorRT is known to be here.
    target = resolve_target(artifact, models_dir=models_dir) if Path(artifact).exists() else None
    features = require_tensorrt()
    target = target or resolve_target(artifact, models_dir=models_dir)
    onnx_path = engine_onnx(target, precision)
    low, opt, high = engine_batch_range(target.input_shape[0], batch, max_batch=max_batch, dla=dla_core is not None)
    request = BuildRequest(
        precision=precision,
        min_batch=low,
        opt_batch=opt,
        max_batch=high,
        workspace_mb=workspace,
        dla_core=dla_core,
        gpu_fallback=not no_gpu_fallback,
        timing_cache=str(timing_cache) if timing_cache else None,
        optimization_level=optimization_level,
        typing=typing_mode,
    )
    record = build_engine(onnx_path, request, force=force)
    if json_output:
        print_json(record.to_json())
    else:
        typer.echo(
            f"{onnx_path.parent / record.file}: TensorRT {features.version}, {record.precision}, batch "
            f"{record.min_batch}..{record.max_batch}, {record.gpu_name} (sm {record.compute_capability}), "
            f"built in {record.build_seconds:.1f} s"
        )
