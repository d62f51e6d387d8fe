"""PyTorch eager backend (CPU / CUDA, optional ``torch.compile``): the baseline users would otherwise deploy."""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np

from edgeconv.backends.base import BackendRunner, import_optional
from edgeconv.errors import BackendUnavailableError, InvalidArgumentError

log = logging.getLogger(__name__)


class TorchRunner(BackendRunner):
    """Runs an ``nn.Module`` (eval mode, ``torch.inference_mode``).

    fp16 runs ``model.half()`` and is CUDA-only (CPU half convolutions are a slow reference path, not a deployment
    option). ``threads`` sets ``torch.set_num_threads`` while the runner is active and restores it afterwards.
    The module is copied, so the caller's model keeps its device and dtype.
    """

    backend = "torch"

    def __init__(
        self,
        model: Any,
        *,
        input_shape: tuple[int, ...] | None = None,
        device: str = "cpu",
        precision: str = "fp32",
        compile: bool = False,
        threads: int | None = None,
        label: str = "",
    ) -> None:
        super().__init__(device=device, precision=precision, label=label)
        if precision == "int8":
            raise InvalidArgumentError("the torch backend runs fp32 or fp16; int8 runs on onnxruntime or tensorrt")
        if precision == "fp16" and device != "cuda":
            raise InvalidArgumentError("torch fp16 needs --device cuda; on CPU use fp32")
        if threads is not None and threads < 1:
            raise InvalidArgumentError(f"threads {threads} must be >= 1")
        self._source = model
        self._declared_shape = input_shape
        self.compile = compile
        self.threads = threads
        self._model: Any = None
        self._torch: Any = None
        self._saved_threads: int | None = None

    def _activate(self) -> None:
        torch = import_optional("torch")
        self._torch = torch
        if self.device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"torch {torch.__version__} sees no CUDA device (torch.version.cuda={torch.version.cuda}); "
                "install a CUDA build of torch on a machine with an NVIDIA GPU and driver"
            )
        if self.threads is not None:
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)
        model = copy.deepcopy(self._source).eval().to(self.device)
        if self.precision == "fp16":
            model = model.half()
        if self.compile:
            model = torch.compile(model)
        self._model = model
        self.input_shape = self._declared_shape

    def _deactivate(self) -> None:
        self._model = None
        if self._saved_threads is not None:
            self._torch.set_num_threads(self._saved_threads)
            self._saved_threads = None
        if self.device == "cuda":
            self._torch.cuda.empty_cache()

    def _infer(self, inputs: np.ndarray) -> np.ndarray:
        torch = self._torch
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        with torch.inference_mode():
            x = torch.from_numpy(inputs).to(self.device, dtype=dtype, non_blocking=False)
            y = self._model(x)
            if isinstance(y, (tuple, list)):
                y = y[0]
            return y.float().cpu().numpy()

    def synchronize(self) -> None:
        if self.device == "cuda":
            self._torch.cuda.synchronize()
