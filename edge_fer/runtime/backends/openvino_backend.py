"""OpenVINO backend: CPU, GPU, NPU; reads ONNX or IR (.xml + .bin)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import openvino as ov

from edge_fer.errors import BackendError
from edge_fer.runtime.backends.base import Backend

__all__ = ["OpenVINOBackend"]


class OpenVINOBackend(Backend):
    name = "openvino"

    def __init__(
        self,
        model: str | os.PathLike | bytes,
        *,
        device: str | None = None,
        threads: int | None = None,
        precision: str | None = None,
    ) -> None:
        core = ov.Core()
        device = device or "CPU"
        config: dict[str, str] = {}
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        if precision:
            # Without a hint, an "FP32" model runs in bf16 on CPUs with bf16 support.
            config["INFERENCE_PRECISION_HINT"] = precision
        try:
            network = core.read_model(model, b"") if isinstance(model, bytes) else core.read_model(os.fspath(model))
            self.compiled = core.compile_model(network, device, config)
        except RuntimeError as exc:
            raise BackendError(
                f"openvino cannot load the model on {device}: {str(exc).strip().splitlines()[0][:200]}"
            ) from None
        self.inputs = {
            port.get_any_name(): tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
            for port in self.compiled.inputs
        }
        self.outputs = [port.get_any_name() for port in self.compiled.outputs]
        self.request = self.compiled.create_infer_request()

    def _run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.request.infer({k: np.ascontiguousarray(v) for k, v in feed.items()})
        # copy: the request reuses its output buffers on the next call
        return {port.get_any_name(): np.array(value) for port, value in result.items()}

    def close(self) -> None:
        self.request = None
        self.compiled = None
