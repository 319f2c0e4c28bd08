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
        static_shapes: bool = False,
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
        # Static shapes: the CPU plugin runs a model compiled for one input shape about twice as
        # fast as a dynamic one (measured on the face detector), so recompile per input shape.
        self._static = {} if static_shapes else None
        self._core, self._network, self._device, self._config = core, network, device, config
        self.inputs = {
            _port_name(port): tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
            for port in self.compiled.inputs
        }
        self.outputs = [_port_name(port) for port in self.compiled.outputs]
        self.request = self.compiled.create_infer_request()

    def _request_for(self, feed: Mapping[str, np.ndarray]):
        if self._static is None:
            return self.request
        key = tuple((name, feed[name].shape) for name in self.inputs)
        if key not in self._static:
            if len(self._static) >= 4:  # a camera has one frame size; do not grow without bound
                self._static.pop(next(iter(self._static)))
            network = self._network.clone()
            network.reshape({name: list(shape) for name, shape in key})
            self._static[key] = self._core.compile_model(network, self._device, self._config).create_infer_request()
        return self._static[key]

    def _run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        request = self._request_for(feed)
        result = request.infer({k: np.ascontiguousarray(v) for k, v in feed.items()})
        # copy: the request reuses its output buffers on the next call
        return {_port_name(port): np.array(value) for port, value in result.items()}

    def close(self) -> None:
        self.request = None
        self.compiled = None
        self._static = {} if self._static is not None else None
        self._network = None


def _port_name(port) -> str:
    """The model's own name for a port: a tensor can carry several (an FP16 ONNX output is also
    "/head/fc/Gemm_cast_to_logits"); prefer the plain graph name."""
    return min(port.get_names(), key=lambda n: ("/" in n or "_cast_to_" in n, len(n), n))
