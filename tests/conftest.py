import importlib.util
import os
import signal
import threading
import warnings
from collections.abc import Iterator
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


_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _signal_state() -> tuple[object, object, bool]:
    blocked = bool(_SIGNALS & signal.pthread_sigmask(signal.SIG_BLOCK, set()))
    return signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), blocked


@pytest.fixture(autouse=True)
def _signals_as_a_shell_leaves_them(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test starts with SIGINT raising KeyboardInterrupt, SIGTERM at its default and neither blocked, as a
    user's shell starts a command: the fault tests send both to child processes, which inherit an ignored or blocked
    signal. A test that leaves them otherwise is named in a warning (a CI run once saw a worker where Ctrl-C was
    lost: children ignored it and an in-process SIGINT never arrived)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
    yield
    state = _signal_state()
    if state != (signal.default_int_handler, signal.SIG_DFL, False):
        warnings.warn(f"{request.node.nodeid} left SIGINT/SIGTERM as {state}", stacklevel=1)


def load_script(name: str) -> ModuleType:
    """A driver in bench/ (``run_bench``, ``guidelines``) as a module: they are scripts, not part of the package."""
    path = Path(__file__).resolve().parent.parent / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
