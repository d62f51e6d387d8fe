"""Run by tests/test_tensorrt_cuda_bindings.py in a subprocess: ``python -I cuda_bindings_probe.py FOLDER``, where
FOLDER holds one cuda-python release installed with ``pip install --target``. Calls every method of
edgeconv's CudaRuntime on that release, as the TensorRT runner calls them, and prints one JSON line.

Without a GPU a call that cuda-python accepts fails inside CUDA (CudaCallError: an error code, or cuda-python 11.8's
"Failed to dlopen libcuda.so.1"); arguments it does not accept raise TypeError before CUDA is reached. The
outcomes are reported, not judged here: the test asserts on them.
"""

from __future__ import annotations

import inspect
import json
import sys
import traceback
from typing import Any

folder = sys.argv[1]
sys.path.insert(0, folder)  # the release under test shadows any cuda-python of the running environment

import numpy as np  # noqa: E402

from edgeconv.backends.tensorrt import CudaCallError, CudaRuntime, cuda_gpu_info, load_cudart  # noqa: E402


class Recorder:
    """The real runtime module, noting which of its names are looked up (to prove every name edgeconv uses ran)."""

    def __init__(self, module: Any) -> None:
        self._module = module
        self.names: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        self.names.add(name)
        return getattr(self._module, name)


def outcome(call: Any, *args: Any) -> str:
    try:
        result = call(*args)
    except CudaCallError as exc:
        return f"CudaCallError: {exc}"
    except Exception as exc:  # TypeError, AttributeError ...: what the test must never see
        return f"{type(exc).__name__}: {exc} | {traceback.format_exc(limit=-2).splitlines()[-3].strip()}"
    return f"ok: {result!r}"[:200]


cudart = load_cudart()
version = None
try:
    from cuda.bindings import __version__ as version  # type: ignore[no-redef]
except ImportError:
    import cuda

    version = getattr(cuda, "__version__", None)

# What the runner passes: streams, graphs and graph execs as returned by cuda-python, pointers as ints.
stream, graph, graph_exec = cudart.cudaStream_t(), cudart.cudaGraph_t(), cudart.cudaGraphExec_t()
host = np.zeros(4, np.float32)
arguments: dict[str, tuple[Any, ...]] = {
    "handle": (stream,),
    "device_count": (),
    "device_properties": (0,),
    "driver_version": (),
    "runtime_version": (),
    "clear_error": (),
    "stream_create": (),
    "stream_synchronize": (stream,),
    "stream_destroy": (stream,),
    "malloc": (16,),
    "free": (0,),
    "copy_to_device_async": (0, host, stream),
    "copy_to_host_async": (host, 0, stream),
    "begin_capture": (stream,),
    "end_capture": (stream,),
    "abandon_capture": (stream,),
    "graph_instantiate": (graph,),
    "graph_launch": (graph_exec, stream),
    "graph_destroy": (graph,),
    "graph_exec_destroy": (graph_exec,),
}
recorder = Recorder(cudart)
runtime = CudaRuntime(recorder)
methods = sorted(name for name, _ in inspect.getmembers(CudaRuntime, inspect.isfunction) if not name.startswith("_"))
calls = {
    name: outcome(getattr(runtime, name), *arguments[name]) if name in arguments else "untested" for name in methods
}
try:
    info = f"ok: {cuda_gpu_info(0, CudaRuntime(cudart))}"
except Exception as exc:
    info = f"{type(exc).__name__}: {exc}"
print(
    json.dumps(
        {
            "module": cudart.__name__,
            "file": cudart.__file__,
            "version": version,
            "calls": calls,
            "names": sorted(recorder.names),
            "gpu_info": info,
            # The call edgeconv made before (defect 4): its argument count differs between 11.8 and 12+.
            "control_cudaGraphInstantiate_2_args": outcome(cudart.cudaGraphInstantiate, graph, 0),
        }
    )
)
