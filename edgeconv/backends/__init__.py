"""Backends behind one protocol (:class:`~edgeconv.backends.base.BackendRunner`): PyTorch eager, ONNX Runtime and
native TensorRT. Heavy imports happen when a runner is activated, never here."""

from edgeconv.backends.base import BACKENDS, DEVICES, PRECISIONS, BackendRunner, LayerProfile, LayerTime

__all__ = ["BACKENDS", "DEVICES", "PRECISIONS", "BackendRunner", "LayerProfile", "LayerTime"]
