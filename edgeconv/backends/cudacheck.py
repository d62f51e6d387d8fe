"""The cuda-python releases the TensorRT backend's CUDA calls are tested against, and their download:
``python -m edgeconv.backends.cudacheck download [FOLDER]``.

No machine this project is developed on has a GPU, but cuda-python imports without one: a call with the arguments
its release expects fails with a CUDA error (no driver), wrong arguments raise TypeError before CUDA is reached.
``tests/test_tensorrt_cuda_bindings.py`` installs each release below from FOLDER into a throwaway folder (offline,
``pip install --no-index``) and calls every :class:`edgeconv.backends.tensorrt.CudaRuntime` method against it. The
README's install command (so CI too) downloads them into ``.cache/cuda-wheels`` (``$EDGECONV_CUDA_WHEELS``
overrides it); without that folder the test skips and says how to get it. A release published for no wheel of this
Python (the ``cuda.cudart``-only 11.8.3 and 12.6.0 stop at 3.12: ``max_python``) is recorded as unavailable, and its
test skips with that reason; any other failure to download (no network: pip then also says "No matching
distribution") stops the download with an error. Developer tool: nothing in edgeconv imports it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ENV = "EDGECONV_CUDA_WHEELS"
DEFAULT_FOLDER = Path(".cache") / "cuda-wheels"
INDEX = "releases.json"  # requirement -> "ok" | why it is unavailable, written by download()


@dataclass(frozen=True)
class CudaRelease:
    requirement: str  # what pip downloads and installs
    module: str  # the runtime module edgeconv's load_cudart() must pick from it
    cuda_major: int  # the CUDA major version it is built for
    max_python: tuple[int, int] = (99, 0)  # the newest Python it has wheels for


RELEASES = (
    CudaRelease("cuda-bindings==11.8.*", "cuda.bindings.runtime", 11),  # CUDA 11 drivers, JetPack 5
    CudaRelease("cuda-bindings==12.*", "cuda.bindings.runtime", 12),  # CUDA 12 drivers, JetPack 6
    CudaRelease("cuda-bindings==13.*", "cuda.bindings.runtime", 13),  # CUDA 13 drivers (580+)
    CudaRelease("cuda-python==11.8.3", "cuda.cudart", 11, (3, 12)),  # before cuda.bindings: the cuda.cudart layout
    CudaRelease("cuda-python==12.6.0", "cuda.cudart", 12, (3, 12)),  # the last 12.x of that layout
)


def wheel_folder(root: Path | None = None) -> Path:
    """``$EDGECONV_CUDA_WHEELS``, else ``.cache/cuda-wheels`` under ``root`` (default: the working directory)."""
    env = os.environ.get(ENV)
    return Path(env) if env else (root if root is not None else Path.cwd()) / DEFAULT_FOLDER


def read_index(folder: Path) -> dict[str, str]:
    path = folder / INDEX
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def download(folder: Path) -> dict[str, str]:
    """Download every release with its dependencies (cuda-pathfinder) into ``folder``; returns and records the
    outcome per requirement. A release with no wheels for this Python (``max_python``) is recorded as unavailable;
    any pip failure stops the download (one line naming the release and pip's last line)."""
    if folder.exists() and not folder.is_dir():
        raise SystemExit(f"cudacheck: {folder} is a file; give a folder for the wheels")
    folder.mkdir(parents=True, exist_ok=True)
    outcome: dict[str, str] = {}
    python = sys.version_info[:2]
    for release in RELEASES:
        if python > release.max_python:
            outcome[release.requirement] = f"no wheel for Python {python[0]}.{python[1]}"
            continue
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(folder)]
        done = subprocess.run([*command, release.requirement], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise SystemExit(f"cudacheck: pip download {release.requirement} failed ({last}); check the network")
        outcome[release.requirement] = "ok"
    (folder / INDEX).write_text(json.dumps(outcome, indent=2) + "\n", encoding="utf-8")
    return outcome


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "download" or len(args) > 2:
        print("usage: python -m edgeconv.backends.cudacheck download [FOLDER]", file=sys.stderr)
        return 2
    folder = Path(args[1]) if len(args) == 2 else wheel_folder()
    for requirement, state in download(folder).items():
        print(f"{requirement}: {state}")
    print(f"wheels in {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
