"""Writing and hashing artifacts: atomically, and with the permissions of an ordinary file.

``tempfile.mkstemp`` and ``mkdtemp`` create ``0600`` files and ``0700`` folders; renamed into place as they are, an
exported model or engine would be unreadable to the service account that runs it on the device. ``write_atomic`` and
``shareable`` give them the modes ``open`` and ``mkdir`` would (``0666`` / ``0777`` less the umask).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from edgeconv.errors import OutputError


@functools.cache
def _umask() -> int:
    mask = os.umask(0)  # the only way to read it; set back at once
    os.umask(mask)
    return mask


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for a step that must not be cut in two, then deliver them as if they arrived now: the
    renames that install an artifact (an interrupt lands before or after the install, never between the renames of a
    swap), and the ONNX exporter, whose process-wide stderr redirection an interrupt must not leave in place and
    whose garbage-collected objects would swallow a ``KeyboardInterrupt`` raised in their ``__del__``. Only the main
    thread can set handlers; other threads run the step alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    saved = {signum: signal.signal(signum, lambda signum, frame: pending.append(signum)) for signum in held}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        for arrived in dict.fromkeys(pending):
            signal.raise_signal(arrived)  # handled as if it had arrived now


def shareable(folder: Path) -> None:
    """Give a ``mkdtemp`` folder the mode an ordinary ``mkdir`` would have given it."""
    os.chmod(folder, 0o777 & ~_umask())


# What to do about a write that failed, by errno; the message names the path and the system's reason first.
_WRITE_FIXES = {
    errno.ENOSPC: "free space on that disk or write somewhere else",
    errno.EDQUOT: "free space within your disk quota or write somewhere else",
    errno.EFBIG: "the file size limit (ulimit -f) is too small for it; raise it or write somewhere else",
    errno.EROFS: "the file system is read-only; choose a writable location",
    errno.EACCES: "choose a location you may write to",
    errno.EPERM: "choose a location you may write to",
    errno.EISDIR: "that is a folder; give a file path",
    errno.ENOTDIR: "a part of that path is a file, not a folder; choose another path",
    errno.ENAMETOOLONG: "choose a shorter name",
}


def write_error(path: str | os.PathLike[str], exc: OSError, what: str = "") -> OutputError:
    """An ``OutputError`` for an ``OSError`` raised while writing ``path``: one line with the path, the reason and the
    fix. ``what``: the option or kind of file, e.g. ``--csv``."""
    code = getattr(exc, "write_errno", exc.errno)
    if isinstance(exc, OutputError) and (not what or code is None):
        return exc  # says which file and why already (re-said for ``what``, a whole artifact, when it has an errno)
    reason = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
    fix = _WRITE_FIXES.get(code or 0, "check that path and the disk, then try again")
    error = OutputError(f"cannot write {what + ' ' if what else ''}{os.fspath(path)}: {reason}; {fix}")
    error.write_errno, error.reason = code, reason  # not OSError's errno/strerror: those would change str()
    return error


def is_write_failure(exc: OSError, folder: Path | None = None) -> bool:
    """Whether ``exc`` is a failed write: an errno only writes get (full disk, quota, size limit, read-only file
    system, no permission), or any error on a path inside ``folder`` (the staging folder being written)."""
    if isinstance(exc, OutputError) or exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS):
        return True
    if exc.errno in (errno.EACCES, errno.EPERM):
        return True
    names = [name for name in (exc.filename, getattr(exc, "filename2", None)) if name]
    return folder is not None and any(Path(os.fsdecode(name)).is_relative_to(folder) for name in names)


def check_output_file(path: Path, *, option: str, reads: tuple[Path, ...] = ()) -> None:
    """Refuse, before any work, an output file path that cannot be written: a folder, a path that is, or lies inside,
    something the command reads (``reads``: input files and artifact folders), or a location where nothing can be
    created. Nothing is left on disk by the check."""
    target = path.expanduser().resolve()
    if target.is_dir():
        raise OutputError(f"{option} {path} is a folder; give a file path such as {path / 'results.csv'}")
    for source in reads:
        source = source.resolve()
        if target == source or (source.is_dir() and source in target.parents):
            raise OutputError(
                f"{option} {path} would write into {source}, which this command reads; choose a path outside it"
            )
    check_writable(target.parent, what=option, path=path)


def check_writable(folder: Path, *, what: str = "", path: Path | None = None) -> None:
    """Refuse a folder in which nothing can be created (read-only, a file in the way, no permission): probes the
    nearest existing ancestor with a temp folder that is removed at once. Root passes permission bits but not a
    read-only file system, which only a real attempt shows."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        label = f"{what} " if what else ""
        raise OutputError(f"cannot write {label}{folder}: {existing} is a file, not a folder; choose another path")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".edgeconv-probe.", dir=existing))
    except OSError as exc:
        raise write_error(path or folder, exc, what) from None


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file next to ``path``, then rename over it: readers never see a partial file.
    A failed write (full disk, read-only folder ...) leaves ``path`` as it was and raises ``OutputError``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), 0o666 & ~_umask())  # what open() would have given it
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from None
        raise


@contextlib.contextmanager
def scratch_cwd() -> Iterator[None]:
    """Run a step whose library writes into the working directory in a private one, deleted afterwards. ONNX Runtime's
    symbolic shape inference saves ``sym_shape_infer_temp.onnx`` and a uuid-named copy of the weights into the
    current directory when it cannot infer every shape (``quant_pre_process`` then fails, and edgeconv carries on
    without it): those files must not land in the user's folder. Paths handed to the step must be absolute. The
    working directory is the process's: call it from the main thread, with no other thread reading relative paths."""
    previous = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="edgeconv-cwd-") as folder:
        os.chdir(folder)  # contextlib.chdir is Python 3.11+
        try:
            yield
        finally:
            os.chdir(previous)


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
