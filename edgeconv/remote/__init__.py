"""On-device benchmarking over SSH: ``edgeconv bench TARGET --on user@host`` and ``edgeconv build ARTIFACT --on ...``.

:mod:`~edgeconv.remote.ssh` connects (keys, ``~/.ssh/config``, agent, known_hosts), :mod:`~edgeconv.remote.commands`
builds every remote command from a fixed program list with quoted arguments, :mod:`~edgeconv.remote.sync` copies the
artifact (only what changed, atomically), :mod:`~edgeconv.remote.board` reads the board record and its power,
:mod:`~edgeconv.remote.trtexec` drives trtexec where edgeconv is not installed, and :mod:`~edgeconv.remote.runner`
runs the loop. asyncssh is imported only when a board is contacted.
"""

from edgeconv.remote.runner import (
    BenchRequest,
    BoardOutcome,
    BuildRequest,
    RemoteOptions,
    bench_on_boards,
    build_on_board,
)
from edgeconv.remote.ssh import BoardAddress, parse_board

__all__ = [
    "BenchRequest",
    "BoardAddress",
    "BoardOutcome",
    "BuildRequest",
    "RemoteOptions",
    "bench_on_boards",
    "build_on_board",
    "parse_board",
]
