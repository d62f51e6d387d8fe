"""SSH to a board with asyncssh: the user's keys, ``~/.ssh/config`` and agent; host keys checked against known_hosts.

- Authentication is by key only (the agent, ``IdentityFile`` in ``~/.ssh/config``, ``~/.ssh/id_*``): password and
  keyboard-interactive logins are switched off, so edgeconv never asks for, sends or stores a password.
- The host key must be in known_hosts (``~/.ssh/known_hosts`` or ``--known-hosts FILE``). An unknown key is refused
  with its fingerprint unless the user passed ``--accept-new-host-key``, which adds it (OpenSSH's
  ``StrictHostKeyChecking=accept-new``); a key that differs from the recorded one is refused even then.
- Every command is a string from :mod:`edgeconv.remote.commands`; every failure becomes one
  :class:`~edgeconv.errors.RemoteError` line ``board NAME: cause``.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeconv.errors import BackendUnavailableError, EdgeconvError, InvalidArgumentError, RemoteError
from edgeconv.remote.commands import Program, candidates, remote_command

log = logging.getLogger(__name__)

# A user name and a host as OpenSSH accepts them on the command line; IPv6 literals in brackets when a port follows.
_USER = r"[A-Za-z0-9._][A-Za-z0-9._-]*"
_HOST = r"[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?"
_ADDRESS = re.compile(rf"^(?:(?P<user>{_USER})@)?(?:(?P<host>{_HOST})|\[(?P<v6>[0-9A-Fa-f:.]+)\])(?::(?P<port>\d+))?$")
DEFAULT_REMOTE_DIR = ".cache/edgeconv/artifacts"


@dataclass(frozen=True)
class BoardAddress:
    """``user@host[:port]`` or a ``Host`` alias of ``~/.ssh/config``, as the user wrote it (``label``)."""

    label: str
    host: str
    user: str | None = None
    port: int | None = None


def parse_board(text: str) -> BoardAddress:
    """Check a ``--on`` value; InvalidArgumentError naming it and the accepted forms otherwise."""
    match = _ADDRESS.match(text or "")
    port = int(match.group("port")) if match and match.group("port") else None
    if match is None or (port is not None and not 1 <= port <= 65535):
        raise InvalidArgumentError(
            f"--on {text!r} is not a board address; use user@host, user@host:port, user@[v6addr]:port or a Host "
            "from ~/.ssh/config"
        )
    return BoardAddress(label=text, host=match.group("host") or match.group("v6"), user=match.group("user"), port=port)


@dataclass(frozen=True)
class SshOptions:
    known_hosts: Path | None = None  # default ~/.ssh/known_hosts
    accept_new_host_key: bool = False
    connect_timeout: float = 20.0


def require_asyncssh() -> Any:
    """asyncssh, or BackendUnavailableError with the install command (it is the ``remote`` extra)."""
    try:
        import asyncssh
    except ImportError as exc:
        raise BackendUnavailableError(
            f"--on needs asyncssh, which is not installed ({exc}); install it with: pip install 'edgeconv[remote]'"
        ) from None
    return asyncssh


def known_hosts_path(options: SshOptions) -> Path:
    return options.known_hosts or Path.home() / ".ssh" / "known_hosts"


@dataclass
class CommandResult:
    command: str
    exit_status: int
    stdout: str
    stderr: str

    def last_error_line(self) -> str:
        """The line that says what went wrong: edgeconv's own ``edgeconv: error:`` line, else the last stderr line."""
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        for line in reversed(lines):
            if line.startswith("edgeconv: error:"):
                return line.removeprefix("edgeconv: error:").strip()
        tail = lines[-1] if lines else (self.stdout.strip().splitlines() or [""])[-1]
        return tail[:300]


def one_line(text: object) -> str:
    """Exception text on one line (asyncssh and SFTP errors sometimes carry several)."""
    return " ".join(str(text).split())[:400] or type(text).__name__


class _HostKeyPolicy:
    """Decides on a host key that known_hosts does not list (asyncssh asks ``validate_host_public_key`` then)."""

    def __init__(self, known: Any, accept_new: bool) -> None:
        self.known = known
        self.accept_new = accept_new
        self.verdict: str | None = None  # "unknown", "changed" or "added"
        self.key: Any = None
        self.host = ""
        self.port = 22

    def decide(self, host: str, addr: str, port: int, key: Any) -> bool:
        self.key, self.host, self.port = key, host, port
        recorded = self.known.match(host, addr, port)[0] if self.known is not None else []
        if recorded:
            self.verdict = "changed"  # known_hosts lists other keys for this host: never accept silently
            return False
        self.verdict = "added" if self.accept_new else "unknown"
        return self.accept_new


def _client_class(policy: _HostKeyPolicy) -> Any:
    import asyncssh

    class _Client(asyncssh.SSHClient):
        def validate_host_public_key(self, host: str, addr: str, port: int, key: Any) -> bool:
            return policy.decide(host, addr, port, key)

    return _Client


def _host_pattern(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _remember_host_key(path: Path, host: str, port: int, key: Any) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    algorithm, blob = key.export_public_key("openssh").decode().split()[:2]
    line = f"{_host_pattern(host, port)} {algorithm} {blob}\n"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)


class BoardSession:
    """One SSH connection to a board: commands, streaming processes and SFTP, with errors named after the board."""

    def __init__(self, board: BoardAddress, connection: Any, system_root: str = "/") -> None:
        self.board = board
        self.connection = connection
        self.system_root = system_root
        self.stage = "connecting"
        self._sftp: Any = None
        self._home: str | None = None
        self._programs: dict[str, Program | None] = {}
        self.notes: list[str] = []

    @property
    def label(self) -> str:
        return self.board.label

    def error(self, cause: str) -> RemoteError:
        return RemoteError(f"board {self.label}: {cause}")

    async def sftp(self) -> Any:
        if self._sftp is None:
            self._sftp = await self.connection.start_sftp_client()
        return self._sftp

    async def home(self) -> str:
        """The login directory, absolute (where relative remote paths start, for SFTP and commands alike)."""
        if self._home is None:
            self._home = str(await (await self.sftp()).realpath("."))
        return self._home

    async def absolute(self, path: str) -> str:
        return path if path.startswith("/") else posixpath.join(await self.home(), path)

    def system_path(self, path: str) -> str:
        """A board system file (``/etc/nv_tegra_release``) under the board's system root."""
        return path if self.system_root == "/" else posixpath.join(self.system_root, path.lstrip("/"))

    async def run(self, command: str, *, timeout: float, stage: str) -> CommandResult:
        """Run one command to completion; a timeout is a RemoteError naming ``stage``."""
        self.stage = stage
        log.debug("%s: %s", self.label, command)
        try:
            result = await asyncio.wait_for(self.connection.run(command, check=False), timeout)
        except asyncio.TimeoutError:
            raise self.error(f"timed out after {timeout:.0f} s while {stage}") from None
        status = result.exit_status if result.exit_status is not None else 255
        return CommandResult(command, status, _text(result.stdout), _text(result.stderr))

    async def stream(
        self,
        command: str,
        *,
        timeout: float,
        stage: str,
        on_line: Callable[[str, str, float], None] | None = None,
    ) -> CommandResult:
        """Run one command, handing each output line to ``on_line("stdout" | "stderr", line, monotonic time)`` as it
        arrives (to line up the board's power samples with the phases of the run)."""
        self.stage = stage
        log.debug("%s: %s", self.label, command)
        process = await self.connection.create_process(command)
        lines: dict[str, list[str]] = {"stdout": [], "stderr": []}

        async def read(name: str, pipe: Any) -> None:
            async for line in pipe:
                lines[name].append(line)
                if on_line is not None:
                    on_line(name, line, time.monotonic())

        try:
            await asyncio.wait_for(
                asyncio.gather(read("stdout", process.stdout), read("stderr", process.stderr), process.wait()), timeout
            )
        except asyncio.TimeoutError:
            process.close()
            raise self.error(f"timed out after {timeout:.0f} s while {stage}") from None
        status = process.exit_status if process.exit_status is not None else 255
        return CommandResult(command, status, "".join(lines["stdout"]), "".join(lines["stderr"]))

    async def find(self, name: str, *, override: str | None = None) -> Program | None:
        """Where program ``name`` is on this board (``override``: the user's explicit path), or None."""
        key = f"{name}:{override}"
        if key in self._programs:
            return self._programs[key]
        found: Program | None = None
        options = [override] if override else candidates(name, self.system_root)
        for path in options:
            if "/" in path:
                try:
                    attrs = await (await self.sftp()).stat(await self.absolute(path))
                except Exception:  # noqa: BLE001  SFTPNoSuchFile and friends: not there
                    continue
                if attrs.permissions is not None and attrs.permissions & 0o111:
                    found = Program("remote-edgeconv" if override else name, path)
                    break
            else:
                # A bare name is looked up on the remote PATH by the login shell; 127 means "command not found".
                probe = await self.run(
                    remote_command(Program(name, path), "--help"), timeout=60, stage=f"looking for {path}"
                )
                if probe.exit_status not in (126, 127):
                    found = Program(name, path)
                    break
        self._programs[key] = found
        return found


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _cause(exc: BaseException, session: BoardSession | None) -> str:
    """One line saying what went wrong, for any exception raised while talking to a board."""
    import asyncssh

    stage = session.stage if session is not None else "connecting"
    if isinstance(exc, asyncssh.PermissionDenied):
        return (
            "the board refused every key (ssh-agent, IdentityFile in ~/.ssh/config, ~/.ssh/id_*); edgeconv logs in "
            "with keys only, never a password: install yours with ssh-copy-id"
        )
    if isinstance(exc, (asyncssh.ConnectionLost, asyncssh.SFTPConnectionLost, BrokenPipeError, ConnectionResetError)):
        return f"connection lost while {stage} ({one_line(exc)})"
    if isinstance(exc, asyncssh.DisconnectError):
        return f"disconnected while {stage}: {one_line(exc.reason or exc)}"
    if isinstance(exc, asyncssh.SFTPError):
        return f"file transfer failed while {stage}: {one_line(exc.reason or exc)}"
    if isinstance(exc, asyncio.TimeoutError):
        return f"timed out while {stage}"
    if isinstance(exc, OSError):
        return f"cannot reach it while {stage}: {one_line(exc.strerror or exc)}"
    return f"{type(exc).__name__} while {stage}: {one_line(exc)}"


@asynccontextmanager
async def open_board(
    board: BoardAddress, options: SshOptions, *, system_root: str = "/"
) -> AsyncIterator[BoardSession]:
    """Connect (keys, ~/.ssh/config, agent, known_hosts) and yield a session; any failure is one RemoteError."""
    asyncssh = require_asyncssh()

    path = known_hosts_path(options)
    try:
        known = asyncssh.read_known_hosts(str(path)) if path.is_file() else asyncssh.import_known_hosts("")
    except (OSError, ValueError) as exc:
        raise RemoteError(f"board {board.label}: cannot read known_hosts {path}: {one_line(exc)}") from None
    policy = _HostKeyPolicy(known, options.accept_new_host_key)
    session: BoardSession | None = None
    try:
        try:
            connection = await asyncio.wait_for(
                asyncssh.connect(
                    board.host,
                    port=board.port if board.port is not None else (),
                    username=board.user if board.user is not None else (),
                    known_hosts=known,
                    client_factory=_client_class(policy),
                    password_auth=False,
                    kbdint_auth=False,
                    connect_timeout=options.connect_timeout,
                    keepalive_interval=15,
                    keepalive_count_max=4,
                ),
                options.connect_timeout + 5,
            )
        except asyncssh.HostKeyNotVerifiable:
            raise RemoteError(f"board {board.label}: {_host_key_refusal(policy, path)}") from None
        except asyncio.TimeoutError:
            raise RemoteError(
                f"board {board.label}: no SSH answer within {options.connect_timeout:.0f} s (is it on and reachable?)"
            ) from None
        if policy.verdict == "added":
            _remember_host_key(path, policy.host, policy.port, policy.key)
            log.warning(
                "board %s: added its host key %s to %s", board.label, policy.key.get_fingerprint("sha256"), path
            )
        session = BoardSession(board, connection, system_root)
        async with connection:
            yield session
    except EdgeconvError:
        raise
    except (asyncssh.Error, OSError, asyncio.TimeoutError, EOFError) as exc:
        raise RemoteError(f"board {board.label}: {_cause(exc, session)}") from exc


def _host_key_refusal(policy: _HostKeyPolicy, path: Path) -> str:
    fingerprint = policy.key.get_fingerprint("sha256") if policy.key is not None else "unknown"
    where = _host_pattern(policy.host, policy.port) if policy.host else "the host"
    if policy.verdict == "changed":
        return (
            f"its host key changed (now {fingerprint}, not the one {path} records for {where}); refusing to connect. "
            f"If the board was re-flashed, check the new fingerprint on its console and run ssh-keygen -R '{where}'"
        )
    return (
        f"its host key {fingerprint} is not in {path}; check the fingerprint on the board "
        "(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) and pass --accept-new-host-key to add it, or ssh to it once"
    )


async def best_effort(coro: Any) -> None:
    """Cleanup that must not hide the error being reported (the connection may already be gone)."""
    with suppress(Exception):
        await asyncio.wait_for(coro, 15)
