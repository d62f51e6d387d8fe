"""Command-line interface: ``edgeconv list | info | export | profile | tables | bench | build``."""

from edgeconv.cli.app import app

# Command modules register themselves on ``app``.
from edgeconv.cli import zoo, export, profile, tables, bench, build  # noqa: E402,F401  isort: skip


def main() -> None:
    app(prog_name="edgeconv")


__all__ = ["app", "main"]
