import copy
import importlib.util
import math
import os
import signal
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from torch import nn

from edgeconv.zoo import create_model, get_spec, list_specs

# Under pytest-xdist each worker gets its share of the cores: two workers with two OpenMP threads each on a 2-core
# machine would spin against each other.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, 2 // _WORKERS))


def _share_cores_in_onnxruntime() -> None:
    """ONNX Runtime sessions likewise: a session left at ORT's default takes a thread per core, and its threads spin
    while they wait, so two workers' sessions on two cores take the cores from each other (and from torch)."""
    import onnxruntime as ort

    base = ort.InferenceSession

    class SharedCoresSession(base):  # type: ignore[misc,valid-type]
        def __init__(self, path_or_bytes: Any, sess_options: Any = None, *args: Any, **kwargs: Any) -> None:
            options = sess_options if sess_options is not None else ort.SessionOptions()
            if options.intra_op_num_threads == 0:
                options.intra_op_num_threads = max(1, (os.cpu_count() or 2) // _WORKERS)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            super().__init__(path_or_bytes, options, *args, **kwargs)

    ort.InferenceSession = SharedCoresSession


if _WORKERS > 1:  # ORT-heavy test files ran 10-16% faster with it on 2 cores
    _share_cores_in_onnxruntime()


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


# ---- the zoo in the tests: one model per family by default, the rest under -m slow -----------------------------------
def image_and_clip_models() -> list[str]:
    """The registry less its detectors: the models with one input tensor and one output (class scores or a label
    map) that the registry-wide sweeps treat alike. Detectors (boxes out) have their own tests: test_detection.py."""
    return [spec.name for spec in list_specs() if not spec.is_detector]


def family_representatives(names: list[str] | None = None) -> dict[str, str]:
    """One model per ``ModelSpec.family`` among ``names`` (default: the whole registry): the one with the smallest
    paper parameter count (models without a figure last, ties by name), i.e. the cheapest member to build, run and
    export."""
    chosen: dict[str, tuple[float, str]] = {}
    for spec in [get_spec(n) for n in (image_and_clip_models() if names is None else names)]:
        key = (spec.figures.params or math.inf, spec.name)
        chosen[spec.family] = min(chosen.get(spec.family, key), key)
    return {family: name for family, (_, name) in sorted(chosen.items())}


def registry_sweep(names: list[str] | None = None) -> list[Any]:
    """Parameters for a registry-wide test over ``names`` (default: the whole registry): one model per family in the
    default run, every other one marked ``slow`` (deselected by addopts; ``python -m pytest -m slow`` runs them)."""
    names = image_and_clip_models() if names is None else names
    representatives = set(family_representatives(names).values())
    return [pytest.param(n, marks=() if n in representatives else pytest.mark.slow) for n in names]


def meta_model(name: str, **kwargs: Any) -> nn.Module:
    """Zoo model ``name`` on the meta device, for structure and shape checks that need no numbers (no init, no
    arithmetic). A builder that needs real tensors (``torch.linspace(...).tolist()``) is built on the CPU and moved."""
    try:
        with torch.device("meta"):
            return create_model(name, **kwargs)
    except (NotImplementedError, RuntimeError, TypeError, ValueError):
        return create_model(name, **kwargs).to("meta")


_CACHE_BYTES = 1 << 30  # per worker: the largest zoo model (repvgg_b3, 0.5 GB) plus a few others


@pytest.fixture(scope="session")
def zoo_model() -> Iterator[Callable[..., nn.Module]]:
    """``create_model(name, **kwargs)`` built once per worker session and handed out as a deep copy, so a test may
    change its copy (BatchNorm statistics, ``.double()``, ``load_state_dict``) without affecting the next test.

    Each model is built under seed 0 in a forked RNG: its weights do not depend on which test asked first, and the
    caller's random stream is not consumed (a test that draws inputs after asking gets the same inputs on a hit and a
    miss). Least recently used models are dropped above 1 GiB of parameters and buffers per worker.
    """
    cache: OrderedDict[tuple[str, tuple[tuple[str, Any], ...]], nn.Module] = OrderedDict()

    def size(model: nn.Module) -> int:
        return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])

    def build(name: str, **kwargs: Any) -> nn.Module:
        key = (name, tuple(sorted(kwargs.items())))
        if key not in cache:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                cache[key] = create_model(name, **kwargs)
            while len(cache) > 1 and sum(size(m) for m in cache.values()) > _CACHE_BYTES:
                cache.popitem(last=False)
        cache.move_to_end(key)
        return copy.deepcopy(cache[key])

    yield build
    cache.clear()


def fvcore_count(name: str, input_shape: tuple[int, ...]) -> dict[str, int]:
    """fvcore's count per operator of zoo model ``name`` on zeros of ``input_shape`` (one "flop" per mult-add for
    conv / linear), its warnings about ops it has no handler for silenced."""
    from fvcore.nn import FlopCountAnalysis

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = FlopCountAnalysis(create_model(name), torch.zeros(input_shape))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        return dict(analysis.by_operator())


def save_custom_op_model(path: Path) -> Path:
    """conv -> an op of an unknown domain -> conv, saved to ``path``, with the custom op's output declared with an
    unknown batch: ONNX Runtime's symbolic shape inference cannot finish it, and then saves its partial model (the
    weights, 3.5 kB, as a uuid-named external data file) into the working directory before it raises."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = [
        numpy_helper.from_array(np.ones((32, 3, 3, 3), np.float32), "w"),
        numpy_helper.from_array(np.ones((8, 32, 1, 1), np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Mystery", ["c"], ["m"], domain="example.custom"),
        helper.make_node("Conv", ["m", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "custom_op",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        weights,
        value_info=[helper.make_tensor_value_info("m", TensorProto.FLOAT, ["n", 32, 6, 6])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("example.custom", 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))
    return path
