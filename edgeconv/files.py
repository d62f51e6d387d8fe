"""Writing and hashing artifacts: atomically, and with the permissions of an ordinary file.

``tempfile.mkstemp`` and ``mkdtemp`` create ``0600`` files and ``0700`` folders; renamed into place as they are, an
exported model or engine would be unreadable to the service account that runs it on the device. ``write_atomic`` and
``shareable`` give them the modes ``open`` and ``mkdir`` would (``0666`` / ``0777`` less the umask).
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path


@functools.cache
def _umask() -> int:
    mask = os.umask(0)  # the only way to read it; set back at once
    os.umask(mask)
    return mask


def shareable(folder: Path) -> None:
    """Give a ``mkdtemp`` folder the mode an ordinary ``mkdir`` would have given it."""
    os.chmod(folder, 0o777 & ~_umask())


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file next to ``path``, then rename over it: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), 0o666 & ~_umask())  # what open() would have given it
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
