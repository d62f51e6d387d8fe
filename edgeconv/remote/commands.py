"""Every command edgeconv runs on a board: a program from one fixed table, each argument quoted for the remote shell.

An SSH ``exec`` request is a single string that the board's login shell parses, so a model or folder name such as
``a b; rm -rf ~`` or ``$(reboot)`` would run as code if it were pasted in. :func:`remote_command` is the only way this
package builds that string: the program must be one of :data:`PROGRAMS` (or the remote edgeconv the user named, an
explicit path), and every word goes through :func:`shlex.quote`, which yields one literal word in any POSIX shell
whatever it contains (spaces, ``;``, ``$(...)``, quotes, newlines). Nothing here ever calls a local shell.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from edgeconv.errors import InvalidArgumentError

# name -> where to look on the board, in order. Absolute paths are taken under the board's system root (``/`` on a real
# board); a bare name is looked up on the remote PATH. The Jetson tools live where JetPack installs them: trtexec is not
# on PATH on a Jetson (/usr/src/tensorrt/bin), nvpmodel is in /usr/sbin.
PROGRAMS: dict[str, tuple[str, ...]] = {
    "cp": ("cp",),
    "df": ("df",),
    "dpkg-query": ("/usr/bin/dpkg-query", "dpkg-query"),
    "edgeconv": ("edgeconv", ".local/bin/edgeconv"),
    "grep": ("grep",),
    "jetson_clocks": ("/usr/bin/jetson_clocks",),
    "nproc": ("nproc",),
    "nvidia-smi": ("/usr/bin/nvidia-smi", "nvidia-smi"),
    "nvpmodel": ("/usr/sbin/nvpmodel", "/usr/bin/nvpmodel"),
    "rm": ("rm",),
    "sha256sum": ("sha256sum",),
    "sudo": ("sudo",),
    "tegrastats": ("/usr/bin/tegrastats",),
    "timeout": ("timeout",),
    "trtexec": ("/usr/src/tensorrt/bin/trtexec", "trtexec"),
    "uname": ("uname",),
}


@dataclass(frozen=True)
class Program:
    """A program as the board will run it: its table name and the path (or bare name) that was found."""

    name: str
    path: str

    def __post_init__(self) -> None:
        if self.name not in PROGRAMS and self.name != "remote-edgeconv":
            raise InvalidArgumentError(f"{self.name!r} is not one of the programs edgeconv runs on a board")
        _check_word(self.path, f"path of {self.name}")


def _check_word(word: str, what: str) -> str:
    if not isinstance(word, str):
        raise InvalidArgumentError(f"{what} must be text, got {type(word).__name__}")
    if "\x00" in word:
        raise InvalidArgumentError(f"{what} {word!r} contains a NUL byte, which no remote command can carry")
    return word


def remote_command(program: Program, *args: str | int | float) -> str:
    """The one string an SSH exec request carries: the program and its arguments, each quoted as a single word."""
    words = [program.path] + [_check_word(str(arg), f"argument of {program.name}") for arg in args]
    return " ".join(shlex.quote(word) for word in words)


def wrapped(prefix: Sequence[str | int | float], program: Program, *args: str | int | float) -> str:
    """``timeout 600 trtexec ...`` or ``sudo -n jetson_clocks``: a fixed wrapper program (``timeout`` or ``sudo``)
    whose first words are ours, then the wrapped program and its quoted arguments."""
    head, *rest = [str(word) for word in prefix]
    if head not in ("timeout", "sudo"):
        raise InvalidArgumentError(f"{head!r} is not a wrapper edgeconv uses (timeout, sudo)")
    return remote_command(Program(head, head), *rest, program.path, *args)


def candidates(name: str, system_root: str = "/") -> list[str]:
    """Where to look for program ``name`` on a board whose system files are under ``system_root``."""
    found = []
    for candidate in PROGRAMS[name]:
        if candidate.startswith("/"):
            found.append(posixpath.join(system_root, candidate.lstrip("/")) if system_root != "/" else candidate)
        else:
            found.append(candidate)
    return found
