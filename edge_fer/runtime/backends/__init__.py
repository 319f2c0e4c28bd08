"""Inference backends behind one small interface.

A backend loads one model and runs it: ``infer({input_name: array}) -> {output_name: array}``.
Each lives in its own module and imports its library only when opened, so an edge device
needs just the one it uses; a missing library is a ``BackendError`` that says what to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Union

from edge_fer.artifacts import ARTIFACT_KINDS, RUNS_ON
from edge_fer.errors import BackendError
from edge_fer.runtime.backends.base import Backend, Pending

__all__ = ["Backend", "BACKENDS", "Pending", "available_backends", "open_backend"]

ModelSource = Union[str, os.PathLike, bytes]

# name -> (module, class, the Python package it needs, pip hint)
BACKENDS = {
    "openvino": ("edge_fer.runtime.backends.openvino_backend", "OpenVINOBackend", "openvino", "pip install openvino"),
    "onnxruntime": (
        "edge_fer.runtime.backends.onnxruntime_backend",
        "OnnxRuntimeBackend",
        "onnxruntime",
        "pip install onnxruntime",
    ),
    "triton": (
        "edge_fer.runtime.backends.triton_backend",
        "TritonBackend",
        "tritonclient",
        "pip install 'tritonclient[http,grpc]' (the model runs on a Triton server: give --url)",
    ),
    "tensorrt": (
        "edge_fer.runtime.backends.tensorrt_backend",
        "TensorRTBackend",
        "tensorrt",
        "TensorRT comes with JetPack on a Jetson (python3-libnvinfer); on x86 GPUs pip install tensorrt",
    ),
}
# "auto" picks by file type: an engine needs TensorRT, IR needs OpenVINO; ONNX tries these in
# order (OpenVINO is the faster CPU runtime where both are installed).
AUTO_ORDER = ("openvino", "onnxruntime")


def available_backends() -> list[str]:
    """Backends whose library is importable here."""
    return [name for name, (_, _, package, _) in BACKENDS.items() if importlib.util.find_spec(package) is not None]


def open_backend(
    model: ModelSource,
    *,
    backend: str = "auto",
    device: str | None = None,
    threads: int | None = None,
    precision: str | None = None,
    static_shapes: bool = False,
    url: str | None = None,
) -> Backend:
    """Load ``model`` (a path, or ONNX bytes) with a backend.

    Args:
        model: .onnx / .xml path or ONNX bytes.
        backend: "auto" (by file type), "openvino", "onnxruntime" or "tensorrt".
        device: backend device (OpenVINO "CPU", "GPU", "NPU"; ONNX Runtime an execution
            provider such as "CPUExecutionProvider"); None picks the CPU.
        threads: inference threads (None: the backend's default).
        precision: OpenVINO inference precision hint ("f32", "f16", "bf16"); None keeps the
            device default (bf16 on CPUs that have it; f32 under an ``ONEDNN_MAX_CPU_ISA`` cap below AVX-512).
        static_shapes: OpenVINO compiles the model for each input shape it meets (faster
            where shapes rarely change, such as a detector on one camera); others ignore it.
        url: with backend "triton", the server (the artifact's sidecar names the model there).

    Raises:
        BackendError: unknown or uninstalled backend, or the model does not load.
    """
    if isinstance(model, (str, os.PathLike)) and not Path(model).is_file():
        raise BackendError(f"model file {model} does not exist")
    if backend == "auto":
        suffix = "" if isinstance(model, bytes) else Path(model).suffix.lower()
        wanted = RUNS_ON[ARTIFACT_KINDS[suffix]] if suffix in ARTIFACT_KINDS else AUTO_ORDER
        names = [name for name in wanted if name in available_backends()]
        if not names:
            hint = BACKENDS[wanted[0]][3] if len(wanted) == 1 else "pip install openvino (or onnxruntime)"
            raise BackendError(f"no backend that runs {suffix or 'this model'} is installed: {hint}")
        backend = names[0]
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose from auto, {', '.join(BACKENDS)}")
    module_name, class_name, package, hint = BACKENDS[backend]
    if importlib.util.find_spec(package) is None:
        raise BackendError(f"backend {backend!r} is not installed: {hint}")
    cls = getattr(importlib.import_module(module_name), class_name)
    if backend == "triton":
        if not url:
            raise BackendError("--backend triton needs --url HOST:PORT (the Triton server)")
        if isinstance(model, bytes):
            raise BackendError("--backend triton serves exported artifacts, not ONNX bytes")
        from edge_fer.artifacts import read_artifact, triton_model_name

        return cls(triton_model_name(read_artifact(model, verify=False)), url)
    if backend == "openvino":
        return cls(model, device=device, threads=threads, precision=precision, static_shapes=static_shapes)
    return cls(model, device=device, threads=threads, precision=precision)
