"""Checks that commands run before any work: the plan can run here, and every output can be written without touching
what the command reads. A zoo name given to ``bench``, ``profile --latency`` or ``build`` is exported into
``models/`` on the fly, so everything that can be refused is refused before that export.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeconv.files import check_output_file, check_writable
from edgeconv.manifest import LABELS, MANIFEST


def reads_of(target: str, models_dir: Path) -> tuple[Path, ...]:
    """What a command reads for ``target``: the file and its artifact folder (a folder with manifest.json), the
    folder, or the zoo model's folder under ``models_dir``. Outputs must not land on or inside these."""
    path = Path(target)
    if not path.exists():
        return (models_dir / target,)
    if path.is_dir():
        return (path,)
    return (path, path.parent) if (path.parent / MANIFEST).is_file() else (path,)


def check_outputs(target: str, models_dir: Path, outputs: dict[str, Path | None]) -> None:
    """Each ``--option: path`` in ``outputs`` (None: not asked for) can be written and is not an input."""
    reads = reads_of(target, models_dir)
    for option, path in outputs.items():
        if path is not None:
            check_output_file(path, option=option, reads=reads)


def check_run_plan(
    target: str,
    *,
    backends: Sequence[str],
    precisions: Sequence[str],
    options: Any,
    models_dir: Path,
    outputs: dict[str, Path | None] | None = None,
) -> bool:
    """Everything ``bench`` / ``profile --latency`` can refuse without running: an unknown target, a backend or
    device this machine lacks, a plan of which nothing can run, an output that cannot be written. Returns whether
    ``target`` is a zoo name that will be exported into ``models_dir`` first."""
    from edgeconv.backends.artifacts import will_export
    from edgeconv.backends.availability import check_plan

    exporting = will_export(target, models_dir=models_dir)
    check_plan(backends, precisions, options, target=target, exported=["fp32"] if exporting else None)
    check_outputs(target, models_dir, outputs or {})
    if exporting:
        check_writable(models_dir / target, what="--models-dir")
    return exporting


def check_build_options(
    artifact: str,
    *,
    precision: str,
    batch: int,
    max_batch: int | None,
    dla_core: int | None,
    workspace: int | None,
    optimization_level: int,
    typing_mode: str,
    timing_cache: Path | None,
    models_dir: Path,
    local: bool = True,
) -> None:
    """``edgeconv build``'s options, checked before TensorRT is looked for and before a zoo name is exported: they
    are wrong whether or not this machine has TensorRT. ``local=False`` (a build on a board over SSH): the numbers
    only, since the artifact and the timing cache are the board's."""
    from edgeconv.backends.artifacts import will_export
    from edgeconv.backends.base import PRECISIONS, check_choice
    from edgeconv.errors import InvalidArgumentError

    check_choice("--precision", precision, PRECISIONS)
    check_choice("--typing", typing_mode, ("auto", "weak", "strong"))
    if not 1 <= batch <= 4096:
        raise InvalidArgumentError(f"--batch {batch} is not valid; use 1..4096")
    if max_batch is not None and not batch <= max_batch <= 4096:
        raise InvalidArgumentError(f"--max-batch {max_batch} is not valid; use --batch ({batch})..4096")
    if dla_core is not None and not 0 <= dla_core <= 15:
        raise InvalidArgumentError(f"--dla-core {dla_core} is not valid; use 0..15 (0 or 1 on Jetson Xavier and Orin)")
    if workspace is not None and not 1 <= workspace <= 1 << 20:
        raise InvalidArgumentError(f"--workspace {workspace} MB is not valid; use 1..{1 << 20}, e.g. 1024")
    if not 0 <= optimization_level <= 5:
        raise InvalidArgumentError(f"--opt-level {optimization_level} is not valid; use 0..5 (3 is TensorRT's default)")
    if not local:
        return
    will_export(artifact, models_dir=models_dir)  # an unknown name is named before TensorRT is looked for
    if timing_cache is not None:  # build writes its engine into the artifact; the cache may live there, but not on it
        path = Path(artifact)
        folder = path if path.is_dir() else path.parent if path.exists() else models_dir / artifact
        files = [*folder.glob("*.onnx"), folder / MANIFEST, folder / LABELS] if folder.is_dir() else []
        check_output_file(timing_cache, option="--timing-cache", reads=tuple(f for f in files if f.exists()))
