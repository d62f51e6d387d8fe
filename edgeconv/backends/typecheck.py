"""Type-check the TensorRT backend against the ``tensorrt-stubs`` wheel: ``python -m edgeconv.backends.typecheck``.

Why not plain ``mypy edgeconv/backends/tensorrt.py``: tensorrt-stubs 10.13 installs ``tensorrt/__init__.pyi`` without a
``py.typed`` marker, so mypy skips it and (with ``ignore_missing_imports``) types every TensorRT name as ``Any`` --
the check passes without checking anything. Pointing MYPYPATH at the stubs instead exposes two syntax errors in them
(plugin methods with a parameter named ``in``; ``add_scale_nd`` with a non-default parameter after defaults). This
copies the stubs into a temp folder, repairs those two things, and runs mypy with that folder on MYPYPATH.
Errors inside the stubs themselves (they shadow ``bool``, use ``capsule`` ...) are silenced by a generated config
that otherwise mirrors ``[tool.mypy]`` of pyproject.toml. Exit status is mypy's.
Developer tool: nothing in edgeconv imports it.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

TARGETS = ["edgeconv/backends/tensorrt.py"]
CONFIG = """[mypy]
python_version = 3.11
ignore_missing_imports = True
warn_unused_ignores = False

[mypy-tensorrt,tensorrt.*,tensorrt_bindings,tensorrt_bindings.*]
ignore_errors = True
"""


def copy_repaired_stubs(destination: Path) -> list[Path]:
    """Copy the .pyi files of the tensorrt-stubs distribution into ``destination``, repaired; returns them."""
    try:
        dist = importlib.metadata.distribution("tensorrt-stubs")
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit("tensorrt-stubs is not installed: pip install tensorrt-stubs") from None
    written = []
    for file in dist.files or []:
        if not str(file).endswith(".pyi"):
            continue
        text = Path(str(file.locate())).read_text(encoding="utf-8")
        text = re.sub(r"\bin: ", "in_: ", text)  # `in` is a keyword: not a valid parameter name
        text = re.sub(r"(power: Weights = None, channel_axis: int)\)", r"\1 = ...)", text)
        target = destination / str(file)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    targets = (argv if argv is not None else sys.argv[1:]) or TARGETS
    with tempfile.TemporaryDirectory(prefix="edgeconv-trt-stubs-") as tmp:
        copy_repaired_stubs(Path(tmp))
        config = Path(tmp) / "mypy.ini"
        config.write_text(CONFIG, encoding="utf-8")
        env = {**os.environ, "MYPYPATH": tmp}
        command = [sys.executable, "-m", "mypy", "--config-file", str(config), "--no-incremental", *targets]
        return subprocess.run(command, env=env, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
