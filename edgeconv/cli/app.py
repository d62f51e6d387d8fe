"""The typer application. Command modules register on ``app``; this module owns error handling and logging."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from edgeconv.errors import EdgeconvError


class _Group(TyperGroup):
    """Turns an ``EdgeconvError`` into one line on stderr and its exit code (tracebacks only with ``--debug``)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except EdgeconvError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            typer.echo(f"edgeconv: error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("edgeconv: interrupted", err=True)
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=_Group,
    name="edgeconv",
    help="CNNs from PyTorch to fast, trustworthy edge inference: zoo, fuse, export, quantize, profile, benchmark.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
)


@app.callback()
def _root(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks and debug logs."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show info logs from the library."),
) -> None:
    ctx.obj = {"debug": debug}
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def print_json(obj: Any) -> None:
    """The one way commands write ``--json`` output: a single JSON document on stdout."""
    typer.echo(json.dumps(obj, indent=2, default=str))


def parse_input_size(text: str | None) -> tuple[int, int] | None:
    """``224`` or ``224,192`` -> (H, W)."""
    from edgeconv.errors import InvalidArgumentError

    if text is None:
        return None
    try:
        parts = [int(p) for p in text.replace("x", ",").split(",") if p.strip()]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 8 or max(parts) > 4096:
        raise InvalidArgumentError(
            f"--input-size {text!r} is not valid; use H or H,W with 8 <= H,W <= 4096, e.g. 224 or 224,192"
        )
    return parts[0], parts[1]


def model_kwargs(width_mult: float | None = None, num_classes: int | None = None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if width_mult is not None:
        kwargs["width_mult"] = width_mult
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    return kwargs
