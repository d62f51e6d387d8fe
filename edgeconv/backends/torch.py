"""PyTorch backend (CPU / CUDA): eager, ``torch.compile`` and CUDA-graph replay, the baselines users would otherwise
deploy.

Options, each recorded in the benchmark row (:meth:`TorchRunner.variant`):

* ``compile``: ``torch.compile`` with inductor, in one of its modes (``default``, ``max-autotune`` ...). The first
  call compiles; the benchmark reports it as the cold run.
* ``cuda_graph`` (CUDA only): the forward pass is captured once into a CUDA graph at the declared input shape and each
  run replays it, so the CPU issues one launch instead of one per kernel (what trtexec's ``--useCudaGraph`` does for
  TensorRT). Works on the eager and the compiled module alike.
* ``channels_last``: NHWC memory layout for weights and input (cuDNN's tensor-core kernels prefer it in FP16).
* ``tf32`` (CUDA, fp32 only): PyTorch's own default lets cuDNN run FP32 convolutions in TF32 (10-bit mantissa) on
  Ampere and newer GPUs. edgeconv's fp32 means IEEE FP32 unless ``tf32=True`` asks for it.

On CUDA, cuDNN's benchmark mode is on (it times the convolution algorithms for each shape once and keeps the fastest,
as the ShuffleNet V2 paper's GPU figures were measured). PyTorch's flags are global, so they are set on every run
rather than once: several runners are active at once in an interleaved benchmark.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np

from edgeconv.backends.base import BackendRunner, check_threads, import_optional
from edgeconv.errors import BackendUnavailableError, InvalidArgumentError, first_line

log = logging.getLogger(__name__)

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_WARMUP = 3  # eager runs on a side stream before capture (cuDNN picks its algorithms, allocator settles)


def variant_name(*, compile: str | None = None, cuda_graph: bool = False, channels_last: bool = False,
                 tf32: bool = False) -> str:  # fmt: skip
    """Short name of a torch configuration for tables: ``eager``, ``compile``, ``compile(max-autotune)+cuda-graph``,
    ``eager+channels-last`` ..."""
    name = "eager" if compile is None else ("compile" if compile == "default" else f"compile({compile})")
    for flag, label in ((cuda_graph, "cuda-graph"), (channels_last, "channels-last"), (tf32, "tf32")):
        if flag:
            name += f"+{label}"
    return name


def require_cuda() -> None:
    """Raise ``BackendUnavailableError`` when torch sees no CUDA device."""
    torch = import_optional("torch")
    if not torch.cuda.is_available():
        raise BackendUnavailableError(
            f"--device cuda: torch {torch.__version__} sees no CUDA device here (torch.version.cuda="
            f"{torch.version.cuda}); use --device cpu, or a machine with an NVIDIA GPU, its driver and a CUDA build of "
            "torch (https://pytorch.org/get-started/locally/)"
        )


class TorchRunner(BackendRunner):
    """Runs an ``nn.Module`` (eval mode, ``torch.inference_mode``).

    fp16 runs ``model.half()`` and is CUDA-only (CPU half convolutions are a slow reference path, not a deployment
    option). ``threads`` sets ``torch.set_num_threads`` while the runner is active and restores it afterwards.
    The module is copied, so the caller's model keeps its device and dtype. ``compile`` is False/None (eager), True
    (inductor's default mode) or one of ``COMPILE_MODES``.
    """

    backend = "torch"

    def __init__(
        self,
        model: Any,
        *,
        input_shape: tuple[int, ...] | None = None,
        device: str = "cpu",
        precision: str = "fp32",
        compile: bool | str | None = False,
        cuda_graph: bool = False,
        channels_last: bool = False,
        tf32: bool = False,
        threads: int | None = None,
        label: str = "",
    ) -> None:
        super().__init__(device=device, precision=precision, label=label)
        if precision == "int8":
            raise InvalidArgumentError("the torch backend runs fp32 or fp16; int8 runs on onnxruntime or tensorrt")
        if precision == "fp16" and device != "cuda":
            raise InvalidArgumentError("torch fp16 needs --device cuda; on CPU use fp32")
        check_threads(threads, option="threads", allow_zero=False)
        mode = "default" if compile is True else (compile or None)
        if mode is not None and mode not in COMPILE_MODES:
            raise InvalidArgumentError(
                f"torch.compile mode {mode!r} is not valid; choose one of {', '.join(COMPILE_MODES)}"
            )
        if cuda_graph and device != "cuda":
            raise InvalidArgumentError("CUDA graphs need --device cuda; on CPU leave --cuda-graph off")
        if cuda_graph and (input_shape is None or any(d < 0 for d in input_shape)):
            raise InvalidArgumentError(f"a CUDA graph is captured at one fixed input shape; got {input_shape}")
        if tf32 and (device != "cuda" or precision != "fp32"):
            raise InvalidArgumentError("tf32 applies to fp32 on --device cuda only")
        self._source = model
        self._declared_shape = input_shape
        self.compile_mode = mode
        self.cuda_graph = cuda_graph
        self.channels_last = channels_last
        self.tf32 = tf32
        self.threads = threads
        self._model: Any = None
        self._torch: Any = None
        self._saved_threads: int | None = None
        self._graph: Any = None
        self._static_in: Any = None
        self._static_out: Any = None

    @property
    def compile(self) -> bool:
        return self.compile_mode is not None

    def variant(self) -> str:
        return variant_name(
            compile=self.compile_mode, cuda_graph=self.cuda_graph, channels_last=self.channels_last, tf32=self.tf32
        )

    def describe(self) -> str:
        return f"torch[{self.variant()}]/{self.device}/{self.precision}" + (f" ({self.label})" if self.label else "")

    def _activate(self) -> None:
        torch = import_optional("torch")
        self._torch = torch
        if self.device == "cuda":
            require_cuda()
        if self.threads is not None:
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)
        model = copy.deepcopy(self._source).eval().to(self.device)
        if self.precision == "fp16":
            model = model.half()
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.compile_mode is not None:
            model = torch.compile(model, mode=self.compile_mode)
        self._model = model
        self.input_shape = self._declared_shape
        if self.cuda_graph:
            self._capture()

    def _input(self, inputs: np.ndarray) -> Any:
        torch = self._torch
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        x = torch.from_numpy(inputs).to(self.device, dtype=dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def _forward(self, x: Any) -> Any:
        if self.device == "cuda":
            backends = self._torch.backends
            backends.cudnn.benchmark = True
            backends.cudnn.allow_tf32 = self.tf32
            backends.cuda.matmul.allow_tf32 = self.tf32
        y = self._model(x)
        return y[0] if isinstance(y, (tuple, list)) else y

    def _capture(self) -> None:
        """Capture the forward pass at the declared shape (PyTorch's recipe: warm up on a side stream, then capture)."""
        torch = self._torch
        assert self._declared_shape is not None  # checked in __init__
        static_in = self._input(np.zeros(self._declared_shape, dtype=np.float32))
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), torch.cuda.stream(stream):
            for _ in range(CUDA_GRAPH_WARMUP):
                self._forward(static_in)
        torch.cuda.current_stream().wait_stream(stream)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.inference_mode(), torch.cuda.graph(graph):
                static_out = self._forward(static_in)
        except RuntimeError as exc:
            raise BackendUnavailableError(
                f"{self.describe()}: CUDA graph capture failed ({first_line(exc, 200)}); run without --cuda-graph"
            ) from exc
        self._graph, self._static_in, self._static_out = graph, static_in, static_out

    def _deactivate(self) -> None:
        self._model = self._graph = self._static_in = self._static_out = None
        if self._saved_threads is not None:
            self._torch.set_num_threads(self._saved_threads)
            self._saved_threads = None
        if self.device == "cuda":
            self._torch.cuda.empty_cache()

    def _infer(self, inputs: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            if self._graph is not None:
                self._static_in.copy_(torch.from_numpy(inputs))  # host -> device, cast and layout in one copy
                self._graph.replay()
                y = self._static_out
            else:
                y = self._forward(self._input(inputs))
            return y.float().cpu().numpy()

    def synchronize(self) -> None:
        if self.device == "cuda":
            self._torch.cuda.synchronize()
