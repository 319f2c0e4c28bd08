"""ONNX Runtime backend: any execution provider (CPU by default)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import onnxruntime as ort

from edge_fer.errors import BackendError
from edge_fer.runtime.backends.base import Backend

__all__ = ["OnnxRuntimeBackend"]


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(
        self,
        model: str | os.PathLike | bytes,
        *,
        device: str | None = None,
        threads: int | None = None,
        precision: str | None = None,
    ) -> None:
        provider = device or "CPUExecutionProvider"
        if provider not in ort.get_available_providers():
            raise BackendError(
                f"onnxruntime: execution provider {provider!r} is not available here; "
                f"available: {', '.join(ort.get_available_providers())}"
            )
        if precision not in (None, "f32"):
            raise BackendError(
                "onnxruntime runs the precision stored in the model; "
                "export an FP16 or INT8 model instead of passing a precision"
            )
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        source = model if isinstance(model, bytes) else os.fspath(model)
        try:
            self.session = ort.InferenceSession(source, options, providers=[provider])
        except Exception as exc:  # ORT raises its own exception types for bad models
            raise BackendError(f"onnxruntime cannot load the model: {str(exc).splitlines()[0][:200]}") from None
        self.inputs = {
            i.name: tuple(d if isinstance(d, int) else None for d in i.shape) for i in self.session.get_inputs()
        }
        self.outputs = [o.name for o in self.session.get_outputs()]

    def _run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self.outputs, {k: np.ascontiguousarray(v) for k, v in feed.items()})
        return dict(zip(self.outputs, values))

    def close(self) -> None:
        self.session = None
