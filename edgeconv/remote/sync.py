"""Copy an artifact folder to a board: only what changed, and never a half-copied folder in use.

The board keeps ``<remote dir>/<folder name>/``. A sync compares the sha256 of every local file (checked against the
one its manifest records) with ``sha256sum`` of the board's copy, then assembles the new folder in a hidden staging
folder next to it: unchanged files are hard links to the board's current copies (nothing is sent), changed ones are
uploaded over SFTP and verified by their sha256 on the board, and the engines and build logs the board made are
carried over with their manifest entries. Only then is the staging folder renamed into place (the old one is renamed
away first and deleted after), so a dropped connection, a full disk or a crash leaves the folder in use as it was;
leftover staging folders are removed by the next sync. The local folder is only ever read.
"""

from __future__ import annotations

import logging
import posixpath
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeconv.errors import ArtifactError, RemoteError
from edgeconv.files import sha256_file
from edgeconv.manifest import MANIFEST, Manifest, ManifestError
from edgeconv.remote.commands import Program, remote_command
from edgeconv.remote.ssh import BoardSession, best_effort, one_line

log = logging.getLogger(__name__)

# What a board makes in its copy of the folder and a sync keeps: engines and their build logs.
BOARD_MADE = (".engine", ".build.log")
# Local files that are never sent: engines built for this machine's GPU, build logs, timing caches.
NOT_SENT = (".engine", ".build.log", ".cache", ".tmp")


@dataclass
class LocalArtifact:
    """The files of a local artifact to send: name -> (path, sha256, size), and its manifest."""

    name: str
    files: dict[str, tuple[Path, str, int]]
    manifest: dict[str, Any] | None
    target_file: str | None = None  # a single .onnx target: the remote target is that file in the folder


def local_artifact(target: str | Path) -> LocalArtifact:
    """Read (only read) the artifact folder or .onnx file ``target``; each file's sha256 must match the manifest's."""
    path = Path(target)
    folder = path.parent if path.is_file() else path
    if path.is_file():
        names = [path.name] + ([MANIFEST] if (folder / MANIFEST).is_file() else [])
    else:
        names = sorted(
            entry.name
            for entry in folder.iterdir()
            if entry.is_file() and not entry.name.startswith(".") and not entry.name.endswith(NOT_SENT)
        )
    loaded = Manifest.read(folder, required=False)  # {} without one
    manifest = loaded.data if MANIFEST in names else None
    recorded = loaded.recorded_hashes()
    files: dict[str, tuple[Path, str, int]] = {}
    for name in names:
        file = folder / name
        digest = sha256_file(file)
        if name in recorded and recorded[name] != digest:
            raise ArtifactError(
                f"{file} does not match the sha256 its manifest records ({recorded[name][:12]}..., file "
                f"{digest[:12]}...): the artifact changed after export; re-export it with `edgeconv export`"
            )
        files[name] = (file, digest, file.stat().st_size)
    name = folder.resolve().name or "artifact"
    return LocalArtifact(name=name, files=files, manifest=manifest, target_file=path.name if path.is_file() else None)


@dataclass
class SyncResult:
    folder: str  # the board's artifact folder, absolute
    sent: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # engines and build logs the board made, carried over
    bytes_sent: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "sent": self.sent,
            "unchanged": self.unchanged,
            "kept": self.kept,
            "bytes_sent": self.bytes_sent,
        }


async def read_remote_manifest(session: BoardSession, folder: str) -> Manifest:
    """The manifest.json of the board's copy ``folder``, parsed by :class:`Manifest`'s one policy. The board's copy
    is edgeconv's own (each sync writes it whole): a missing or unreadable one is an empty manifest, and a malformed
    one is logged and read as empty too, so that the next sync replaces it instead of the board staying stuck."""
    sftp = await session.sftp()
    path = posixpath.join(folder, MANIFEST)
    try:
        async with sftp.open(path, "rb") as handle:
            raw = await handle.read()
    except Exception:  # noqa: BLE001  missing or unreadable: an empty manifest
        return Manifest(Path(folder), {}, required=False)
    try:
        return Manifest.parse(raw, folder=folder, required=False)
    except ManifestError as exc:  # without the fix it suggests, which is for a local artifact, not this copy
        log.warning("%s: %s; the board's copy is rewritten from the local artifact", session.label, exc.problem)
        return Manifest(Path(folder), {}, required=False)


async def replace_remote(sftp: Any, source: str, destination: str) -> None:
    """Rename ``source`` over ``destination`` on the board (a server without posix-rename: remove, then rename)."""
    try:
        await sftp.posix_rename(source, destination)
    except Exception:  # noqa: BLE001
        await best_effort(sftp.remove(destination))
        await sftp.rename(source, destination)


async def remote_sha256(session: BoardSession, path: str) -> str | None:
    result = await session.run(
        remote_command(Program("sha256sum", "sha256sum"), "--", path), timeout=300, stage="checking sha256 on it"
    )
    line = result.stdout.strip()
    # GNU sha256sum prefixes the line with a backslash when it escapes a file name holding a newline or backslash.
    digest = line.lstrip("\\")[:64]
    return digest if result.exit_status == 0 and len(digest) == 64 else None


async def _free_bytes(session: BoardSession, folder: str) -> int | None:
    result = await session.run(
        remote_command(Program("df", "df"), "-P", "-k", "--", folder), timeout=60, stage="checking free disk space"
    )
    lines = result.stdout.strip().splitlines()
    try:
        return int(lines[-1].split()[-3]) * 1024 if result.exit_status == 0 and len(lines) >= 2 else None
    except (ValueError, IndexError):
        return None


def merged_manifest(
    local: dict[str, Any] | None, remote: dict[str, Any] | None, kept: set[str]
) -> dict[str, Any] | None:
    """The board's manifest: the local one, with the board's TensorRT engines (those whose files are kept) instead
    of the local machine's (whose engine files are never sent)."""
    engines = [
        entry
        for entry in ((remote or {}).get("tensorrt") or {}).get("engines", [])
        if isinstance(entry, dict) and entry.get("file") in kept
    ]
    if local is None and not engines:
        return None
    manifest = {key: value for key, value in (local or {}).items() if key != "tensorrt"}
    if engines:
        manifest["tensorrt"] = {"engines": engines}
    return manifest


async def sync_artifact(session: BoardSession, artifact: LocalArtifact, remote_dir: str) -> SyncResult:
    """Bring the board's copy of ``artifact`` up to date under ``remote_dir`` (see the module docstring)."""
    sftp = await session.sftp()
    root = await session.absolute(remote_dir)
    live = posixpath.join(root, artifact.name)
    session.stage = f"preparing {root}"
    await sftp.makedirs(root, exist_ok=True)
    for leftover in await sftp.listdir(root):
        if leftover.startswith((f".{artifact.name}.staging-", f".{artifact.name}.old-")):
            await best_effort(sftp.rmtree(posixpath.join(root, leftover)))
    existing: set[str] = set()
    if await sftp.isdir(live):
        existing = {name for name in await sftp.listdir(live) if name not in (".", "..")}
    result = SyncResult(folder=live)
    sendable = {name: entry for name, entry in artifact.files.items() if name != MANIFEST}
    for name, (_path, digest, _size) in sendable.items():
        if name in existing and await remote_sha256(session, posixpath.join(live, name)) == digest:
            result.unchanged.append(name)
        else:
            result.sent.append(name)
    result.kept = sorted(name for name in existing if name.endswith(BOARD_MADE) and name not in sendable)
    remote_manifest = (await read_remote_manifest(session, live)).data if MANIFEST in existing else None
    manifest = merged_manifest(artifact.manifest, remote_manifest, set(result.kept))
    stale = existing - set(sendable) - set(result.kept) - {MANIFEST}
    if existing and not result.sent and not stale and manifest == remote_manifest:
        log.info("%s: %s is up to date", session.label, live)
        return result

    need = sum(sendable[name][2] for name in result.sent)
    free = await _free_bytes(session, root)
    if free is not None and free < need + (1 << 20):
        raise session.error(
            f"remote disk full: copying {artifact.name} needs {need / 2**20:.1f} MB in {root}, "
            f"{free / 2**20:.1f} MB are free; free space on the board or pass --remote-dir on a larger disk"
        )
    staging = posixpath.join(root, f".{artifact.name}.staging-{secrets.token_hex(4)}")
    await sftp.mkdir(staging)
    try:
        for name in result.unchanged + result.kept:
            session.stage = f"linking {name} into {staging}"
            try:
                await sftp.link(posixpath.join(live, name), posixpath.join(staging, name))
            except Exception:  # noqa: BLE001  no hard links on that file system: copy on the board instead
                command = remote_command(
                    Program("cp", "cp"), "-p", "--", posixpath.join(live, name), posixpath.join(staging, name)
                )
                copied = await session.run(command, timeout=600, stage=f"copying {name} on the board")
                if copied.exit_status != 0:
                    raise session.error(f"cannot copy {name} on the board: {copied.last_error_line()}") from None
        for name in result.sent:
            path, digest, size = sendable[name]
            session.stage = f"copying {name} ({size / 2**20:.1f} MB) to {staging}"
            try:
                await sftp.put(str(path), posixpath.join(staging, name))
            except Exception as exc:  # noqa: BLE001  decide between a full disk and any other failure, then re-raise
                await _explain_failed_write(session, exc, name, root, size)
                raise
            result.bytes_sent += size
            if await remote_sha256(session, posixpath.join(staging, name)) != digest:
                raise session.error(f"the copy of {name} on the board does not match its sha256; copy again")
        if manifest is not None:
            session.stage = f"writing {MANIFEST} to {staging}"
            async with sftp.open(posixpath.join(staging, MANIFEST), "wb") as handle:
                await handle.write(Manifest(Path(live), manifest).to_bytes())
        session.stage = f"moving {staging} into place as {live}"
        if existing or await sftp.exists(live):
            old = posixpath.join(root, f".{artifact.name}.old-{secrets.token_hex(4)}")
            await sftp.rename(live, old)
            try:
                await sftp.rename(staging, live)
            except BaseException:
                await best_effort(sftp.rename(old, live))
                raise
            await best_effort(sftp.rmtree(old))
        else:
            await sftp.rename(staging, live)
    except BaseException:
        await best_effort(sftp.rmtree(staging))
        raise
    log.info("%s: %s sent (%d bytes), %s unchanged", session.label, result.sent, result.bytes_sent, result.unchanged)
    return result


async def _explain_failed_write(session: BoardSession, exc: BaseException, name: str, root: str, size: int) -> None:
    """A failed SFTP write is a full disk when the server says so (SFTP v6, asyncssh) or when ``df`` shows too little
    room (OpenSSH's sftp-server reports ENOSPC only as "Failure")."""
    import asyncssh

    if isinstance(exc, (asyncssh.ConnectionLost, asyncssh.SFTPConnectionLost, ConnectionError)):
        return  # the caller reports the lost connection
    text = one_line(getattr(exc, "reason", "") or exc)
    full = "space" in text.lower() or isinstance(exc, getattr(asyncssh, "SFTPNoSpaceOnFilesystem", ()))
    if not full:
        free = await _free_bytes(session, root)
        full = free is not None and free < size
    if full:
        raise RemoteError(
            f"board {session.label}: remote disk full while copying {name} to {root} ({text}); free space on the "
            "board or pass --remote-dir on a larger disk"
        ) from None
