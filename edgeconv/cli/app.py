"""The typer application. Command modules register on ``app``; this module owns error handling and logging."""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from edgeconv.errors import EdgeconvError, InvalidArgumentError, interruption, received_signals

try:  # typer >= 0.24 vendors click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older typer on click
    from click.exceptions import UsageError  # type: ignore[no-redef]


def one_line(text: str) -> str:
    """``text`` as one line: a newline or carriage return (in a hostile file name, say) is shown escaped, as ``repr``
    would, so that stderr stays one line per error."""
    return text.strip().replace("\r", "\\r").replace("\n", "\\n")


def _usage_error(exc: UsageError) -> typer.Exit:
    """click's usage errors (an option that is not an integer, an unknown option, a missing argument) as one line
    with the help command, instead of a multi-line panel."""
    command = exc.ctx.command_path if exc.ctx is not None else "edgeconv"
    message = exc.format_message().strip().rstrip(".")
    errors = getattr(exc.__cause__, "errors", None)  # typer >= 0.24 converts through pydantic, which keeps the input
    if callable(errors):
        try:
            message += f" (got {errors()[0]['input']!r})"
        except (IndexError, KeyError, TypeError):
            pass
    typer.echo(f"edgeconv: error: {one_line(message)}; see `{command} --help`", err=True)
    return typer.Exit(2)


class _Group(TyperGroup):
    """Turns an ``EdgeconvError`` into one line on stderr and its exit code (tracebacks only with ``--debug``)."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except UsageError as exc:  # `edgeconv --no-such-option`
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `edgeconv`: click prints the help
                raise
            raise _usage_error(exc) from None
        except KeyboardInterrupt as exc:  # while the command line is parsed (typer would exit 130 saying nothing)
            raise _interrupted(getattr(exc, "signum", signal.SIGINT)) from None

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except EdgeconvError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            if received_signals:  # an interrupt that a library swallowed, then failed on: report the interrupt
                raise _interrupted(received_signals[0]) from None
            typer.echo(f"edgeconv: error: {one_line(str(exc))}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except UsageError as exc:  # a subcommand's options and arguments are parsed here
            if (ctx.obj and ctx.obj.get("debug")) or type(exc).__name__ == "NoArgsIsHelpError":
                raise
            raise _usage_error(exc) from None
        except KeyboardInterrupt as exc:
            raise _interrupted(getattr(exc, "signum", signal.SIGINT)) from None


def _interrupted(signum: int) -> typer.Exit:
    """Says on stderr that the command was interrupted by ``signum``; the ``typer.Exit`` to raise."""
    line, status = interruption(signum)
    typer.echo(line, err=True)
    return typer.Exit(status)


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


def _finite(obj: Any) -> Any:
    """NaN and the infinities as null: JSON has no such numbers, and strict parsers refuse Python's ``NaN``."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {key: _finite(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(value) for value in obj]
    return obj


def print_json(obj: Any) -> None:
    """The one way commands write ``--json`` output: a single JSON document on stdout (NaN and inf as null)."""
    typer.echo(json.dumps(_finite(obj), indent=2, default=str, allow_nan=False))


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
        if not 1 <= num_classes <= 100_000:
            raise InvalidArgumentError(
                f"--num-classes {num_classes} is not valid; give the number of classes of your head, 1..100000"
            )
        kwargs["num_classes"] = num_classes
    return kwargs
