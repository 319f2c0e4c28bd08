"""TensorRT backend: runs a serialized engine (``.engine``) on an NVIDIA GPU or Jetson.

Uses TensorRT's name-based tensor API (``set_input_shape`` / ``set_tensor_address`` /
``execute_async_v3``), which TensorRT 8.6, 10.x and 11.x all have - the binding-index API
was removed in 10. Device memory and the stream come from cuda-python (``cuda.bindings``
in 12.8+/13, ``cuda.cudart`` before) or, failing that, pycuda: JetPack ships either.

An engine can embed plugin code, so it is only ever opened after its sidecar's sha256
matched (``read_artifact``, done by every caller in edge-fer).

Not exercised in this project's CI (TensorRT cannot be installed there); the engine-ready
ONNX it is built from is tested with ONNX Runtime.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from edge_fer.errors import BackendError
from edge_fer.runtime.backends.base import Backend

__all__ = ["TensorRTBackend"]


class _CudaPython:
    """Device buffers and a stream through cuda-python's runtime API."""

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.8
        except ImportError:
            from cuda import cudart  # older cuda-python
        self.cudart = cudart
        self.stream = self._check(cudart.cudaStreamCreate())

    def _check(self, result):
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise BackendError(f"CUDA error {err}")
        return values[0] if len(values) == 1 else values

    def malloc(self, nbytes: int) -> int:
        return int(self._check(self.cudart.cudaMalloc(max(nbytes, 1))))

    def free(self, pointer: int) -> None:
        self.cudart.cudaFree(pointer)

    def to_device(self, pointer: int, array: np.ndarray) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.cudart.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes, kind, self.stream))

    def to_host(self, array: np.ndarray, pointer: int) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.cudart.cudaMemcpyAsync(array.ctypes.data, pointer, array.nbytes, kind, self.stream))

    @property
    def handle(self) -> int:
        return int(self.stream)

    def synchronize(self) -> None:
        self._check(self.cudart.cudaStreamSynchronize(self.stream))

    def close(self) -> None:
        self.cudart.cudaStreamDestroy(self.stream)


class _PyCuda:
    """The same through pycuda (JetPack's python3-pycuda)."""

    def __init__(self) -> None:
        import pycuda.autoinit  # noqa: F401  (creates the context)
        import pycuda.driver as driver

        self.driver = driver
        self.stream_object = driver.Stream()
        self.allocations: dict[int, object] = {}

    def malloc(self, nbytes: int) -> int:
        allocation = self.driver.mem_alloc(max(nbytes, 1))
        self.allocations[int(allocation)] = allocation
        return int(allocation)

    def free(self, pointer: int) -> None:
        allocation = self.allocations.pop(pointer, None)
        if allocation is not None:
            allocation.free()

    def to_device(self, pointer: int, array: np.ndarray) -> None:
        self.driver.memcpy_htod_async(pointer, array, self.stream_object)

    def to_host(self, array: np.ndarray, pointer: int) -> None:
        self.driver.memcpy_dtoh_async(array, pointer, self.stream_object)

    @property
    def handle(self) -> int:
        return self.stream_object.handle

    def synchronize(self) -> None:
        self.stream_object.synchronize()

    def close(self) -> None:
        pass


def _cuda():
    errors = []
    for make in (_CudaPython, _PyCuda):
        try:
            return make()
        except ImportError as exc:
            errors.append(str(exc))
    raise BackendError(
        "the TensorRT backend needs cuda-python (pip install cuda-python) or pycuda (JetPack: apt install "
        "python3-pycuda)"
    )


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(
        self,
        model: str | os.PathLike | bytes,
        *,
        device: str | None = None,
        threads: int | None = None,
        precision: str | None = None,
    ) -> None:
        import tensorrt as trt

        if isinstance(model, bytes):
            raise BackendError("the TensorRT backend loads engine files; build one with python -m export.trt")
        self.trt = trt
        self.cuda = _cuda()
        logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(logger, "")
        self.runtime = trt.Runtime(logger)
        with open(model, "rb") as handle:
            self.engine = self.runtime.deserialize_cuda_engine(handle.read())
        if self.engine is None:
            raise BackendError(
                f"TensorRT {trt.__version__} cannot load {model}: engines are tied to the TensorRT version and GPU "
                "they were built with; rebuild it here with python -m export.trt --onnx"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.inputs = {
            n: tuple(None if d < 0 else int(d) for d in self.engine.get_tensor_shape(n)) for n in names if is_input[n]
        }
        self.outputs = [n for n in names if not is_input[n]]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.buffers: dict[str, tuple[int, int]] = {}  # name -> (pointer, capacity in bytes)

    def _buffer(self, name: str, nbytes: int) -> int:
        pointer, capacity = self.buffers.get(name, (0, 0))
        if nbytes > capacity:
            if pointer:
                self.cuda.free(pointer)
            pointer = self.cuda.malloc(nbytes)
            self.buffers[name] = (pointer, nbytes)
        self.context.set_tensor_address(name, pointer)
        return pointer

    def _run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name in self.inputs:
            array = np.ascontiguousarray(feed[name], dtype=self.dtypes[name])
            self.context.set_input_shape(name, array.shape)
            self.cuda.to_device(self._buffer(name, array.nbytes), array)
        results = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            results[name] = np.empty(shape, self.dtypes[name])
            self._buffer(name, results[name].nbytes)
        if not self.context.execute_async_v3(self.cuda.handle):
            raise BackendError("TensorRT execution failed (see the TensorRT log above)")
        for name, array in results.items():
            self.cuda.to_host(array, self.buffers[name][0])
        self.cuda.synchronize()
        return {name: array.astype(np.float32, copy=False) for name, array in results.items()}

    def close(self) -> None:
        for pointer, _ in self.buffers.values():
            self.cuda.free(pointer)
        self.buffers.clear()
        self.context = self.engine = None
        self.cuda.close()
