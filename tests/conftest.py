import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest
import torch

# Under pytest-xdist each worker gets its share of the cores: two workers with two OpenMP threads each on a 2-core
# machine would spin against each other.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, 2 // _WORKERS))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def load_script(name: str) -> ModuleType:
    """A driver in bench/ (``run_bench``, ``guidelines``) as a module: they are scripts, not part of the package."""
    path = Path(__file__).resolve().parent.parent / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
