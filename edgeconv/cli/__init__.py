"""Command-line interface: ``edgeconv list | info | export | profile | tables | bench | build | guidelines``."""

from edgeconv.cli.app import app

# Command modules register themselves on ``app``.
from edgeconv.cli import zoo, export, profile, tables, bench, build, guidelines  # noqa: E402,F401  isort: skip


def main() -> None:
    """Run the CLI. The console script is ``edgeconv.__main__:main``, which takes over SIGINT and SIGTERM first."""
    app(prog_name="edgeconv")


__all__ = ["app", "main"]
