"""TensorRT backend: runs a serialized engine (``.engine``) on an NVIDIA GPU or Jetson.

Uses TensorRT's name-based tensor API (``set_input_shape`` / ``set_tensor_address`` /
``execute_async_v3``), which TensorRT 8.6, 10.x and 11.x all have - the binding-index API
was removed in 10. Device memory, page-locked host memory and the stream come from
cuda-python (``cuda.bindings``, or ``cuda.cudart`` in older releases) or, failing that,
pycuda.

Batches: an engine takes batch sizes (axis 0 of every input) within its optimization
profile 0. Larger batches - many faces for the streaming backbone, many tracks for a full
model - are split into profile-sized runs; smaller ones than a fixed-batch (DLA) engine takes
are padded. Inputs and outputs must then be batch-first, as every edge-fer model is.

Threads: the ``--head async`` worker calls ``infer`` from another thread. With pycuda the
device's primary context (the one TensorRT's runtime uses) is pushed around every call;
cuda-python's runtime API makes it current on each thread by itself.

An engine can embed plugin code, so it is only ever opened after its sidecar's sha256
matched (``read_artifact``, done by every caller in edge-fer).

Not run against TensorRT in this project's CI (TensorRT cannot be installed there): batch
splitting and profile reading are tested against a test double of the engine interface,
and the engine-ready ONNX it is built from is tested with ONNX Runtime.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import sys
from collections.abc import Iterator, Mapping

import numpy as np

from edge_fer.errors import BackendError
from edge_fer.runtime.backends.base import Backend

__all__ = ["TensorRTBackend", "profile_batch_range", "batch_slices"]

# cuda-python 13 needs a CUDA 13 driver; JetPack 6 has CUDA 12.6 (docs/jetson.md).
CUDA_PYTHON_FOR_JETPACK6 = "cuda-python==12.6.*"


class _CudaPython:
    """Device buffers, page-locked host buffers and a stream through cuda-python's runtime API."""

    label = "cuda-python"

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart  # cuda-python 13 (12.6.2 has it too)
        except ImportError:
            from cuda import cudart  # older cuda-python
        self.cudart = cudart
        self.stream = self._check(cudart.cudaStreamCreate(), "cudaStreamCreate")

    def _check(self, result, call: str):
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            name = getattr(err, "name", str(err))
            hint = ""
            if name == "cudaErrorInsufficientDriver":
                hint = (
                    f": this cuda-python is newer than the CUDA driver; on JetPack 6 (CUDA 12) pip install "
                    f"'{CUDA_PYTHON_FOR_JETPACK6}'"
                )
            raise BackendError(f"cuda-python: {call} failed with {name}{hint}")
        return values[0] if len(values) == 1 else values

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        yield  # the runtime API binds the primary context to each calling thread itself

    def malloc(self, nbytes: int) -> int:
        return int(self._check(self.cudart.cudaMalloc(max(nbytes, 1)), "cudaMalloc"))

    def free(self, pointer: int) -> None:
        self.cudart.cudaFree(pointer)

    def host_alloc(self, nbytes: int) -> np.ndarray:
        """Page-locked host memory (copies overlap compute), as a uint8 array; free with host_free."""
        pointer = int(self._check(self.cudart.cudaMallocHost(max(nbytes, 1)), "cudaMallocHost"))
        return np.ctypeslib.as_array((ctypes.c_uint8 * max(nbytes, 1)).from_address(pointer))

    def host_free(self, array: np.ndarray) -> None:
        self.cudart.cudaFreeHost(array.ctypes.data)

    def to_device(self, pointer: int, array: np.ndarray) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        call = self.cudart.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes, kind, self.stream)
        self._check(call, "cudaMemcpyAsync")

    def to_host(self, array: np.ndarray, pointer: int) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        call = self.cudart.cudaMemcpyAsync(array.ctypes.data, pointer, array.nbytes, kind, self.stream)
        self._check(call, "cudaMemcpyAsync")

    @property
    def handle(self) -> int:
        return int(self.stream)

    def synchronize(self) -> None:
        self._check(self.cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def close(self) -> None:
        self.cudart.cudaStreamDestroy(self.stream)


class _PyCuda:
    """The same through pycuda, on the device's primary context.

    Not ``pycuda.autoinit``: its context is current only on the thread that imported it, and
    it is not the primary context that TensorRT's runtime calls use on other threads.
    """

    label = "pycuda"

    def __init__(self) -> None:
        import pycuda.driver as driver

        self.driver = driver
        try:
            driver.init()
            self.context = driver.Device(0).retain_primary_context()
        except driver.Error as exc:
            raise BackendError(f"pycuda: cannot open the GPU: {exc}") from None
        with self.current():
            self.stream_object = driver.Stream()
        self.allocations: dict[int, object] = {}

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        self.context.push()
        try:
            yield
        finally:
            self.driver.Context.pop()

    def malloc(self, nbytes: int) -> int:
        allocation = self.driver.mem_alloc(max(nbytes, 1))
        self.allocations[int(allocation)] = allocation
        return int(allocation)

    def free(self, pointer: int) -> None:
        allocation = self.allocations.pop(pointer, None)
        if allocation is not None:
            allocation.free()

    def host_alloc(self, nbytes: int) -> np.ndarray:
        return self.driver.pagelocked_empty(max(nbytes, 1), np.uint8)

    def host_free(self, array: np.ndarray) -> None:
        array.base.free()  # the PagelockedHostAllocation behind the array

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
        with self.current():
            self.stream_object = None
        self.context.detach()  # releases this retain of the primary context


def _cuda():
    """cuda-python, else pycuda; a binding that imports but cannot run (driver too old) counts as absent."""
    problems = []
    for make in (_CudaPython, _PyCuda):
        try:
            return make()
        except ImportError:
            problems.append(f"{make.label} is not installed")
        except BackendError as exc:
            problems.append(str(exc))
    raise BackendError(
        f"the TensorRT backend has no working CUDA binding ({'; '.join(problems)}): install cuda-python matching "
        f"the CUDA of your JetPack ('{CUDA_PYTHON_FOR_JETPACK6}' on JetPack 6, cuda-python 13 on JetPack 7) or "
        "pycuda; see docs/jetson.md"
    )


def profile_batch_range(engine, inputs: Mapping[str, tuple[int | None, ...]]) -> tuple[int, int]:
    """(smallest, largest) batch - axis 0 of every input - that the engine's profile 0 takes.

    Args:
        engine: a TensorRT ``ICudaEngine`` (anything with ``get_tensor_profile_shape``).
        inputs: input name -> shape, None for a dynamic axis.
    """
    smallest, largest = 1, sys.maxsize
    for name, shape in inputs.items():
        if not shape:
            continue  # a scalar has no batch axis
        if shape[0] is not None:
            low = high = shape[0]
        else:
            minimum, _, maximum = engine.get_tensor_profile_shape(name, 0)
            low, high = int(minimum[0]), int(maximum[0])
        smallest, largest = max(smallest, low), min(largest, high)
    if smallest > largest:
        raise BackendError(f"the engine's inputs admit no common batch size ({smallest} > {largest}): rebuild it")
    return smallest, largest


def batch_slices(batch: int, largest: int) -> list[slice]:
    """Consecutive slices of ``batch`` items, each at most ``largest`` long."""
    return [slice(start, min(start + largest, batch)) for start in range(0, batch, largest)]


def _pad_batch(array: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([array, np.repeat(array[-1:], size - len(array), axis=0)])


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
        self.cuda = _cuda()
        with self.cuda.current():
            logger = trt.Logger(trt.Logger.WARNING)
            trt.init_libnvinfer_plugins(logger, "")
            self.runtime = trt.Runtime(logger)
            with open(model, "rb") as handle:
                engine = self.runtime.deserialize_cuda_engine(handle.read())
            if engine is not None:
                names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
                self._bind(
                    engine,
                    input_names=[n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT],
                    dtypes={n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names},
                )
        if engine is None:
            self.cuda.close()
            raise BackendError(
                f"TensorRT {trt.__version__} cannot load {model}: engines are tied to the TensorRT version and GPU "
                "they were built with; rebuild it here with python -m export.trt --onnx"
            )

    @classmethod
    def _from_engine(cls, engine, cuda, *, input_names: list[str], dtypes: dict[str, np.dtype]) -> TensorRTBackend:
        """Around an already deserialized engine (what ``__init__`` does after its TensorRT-specific part)."""
        backend = cls.__new__(cls)
        backend.cuda = cuda
        backend._bind(engine, input_names=input_names, dtypes=dtypes)
        return backend

    def _bind(self, engine, *, input_names: list[str], dtypes: dict[str, np.dtype]) -> None:
        self.engine = engine
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = {n: tuple(None if d < 0 else int(d) for d in engine.get_tensor_shape(n)) for n in input_names}
        self.outputs = [n for n in names if n not in self.inputs]
        self.dtypes = dtypes
        self.batch_range = profile_batch_range(engine, self.inputs)
        self.device_buffers: dict[str, tuple[int, int]] = {}  # name -> (pointer, capacity in bytes)
        self.host_buffers: dict[str, np.ndarray] = {}  # name -> page-locked uint8 array

    def _run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = {name: np.ascontiguousarray(feed[name], dtype=self.dtypes[name]) for name in self.inputs}
        batches = {a.shape[0] for a in arrays.values() if a.ndim}
        batch = batches.pop() if len(batches) == 1 else None  # None: inputs disagree, TensorRT will say so
        smallest, largest = self.batch_range
        with self.cuda.current():
            if not batch or smallest <= batch <= largest:
                return self._run_once(arrays)
            parts = [self._run_part(arrays, part, batch) for part in batch_slices(batch, largest)]
        return {name: np.concatenate([part[name] for part in parts]) for name in self.outputs}

    def _run_part(self, arrays: dict[str, np.ndarray], part: slice, batch: int) -> dict[str, np.ndarray]:
        """One profile-sized run of a ``batch``; a part smaller than a fixed-batch engine takes is padded, then cut."""
        smallest, largest = self.batch_range
        size = part.stop - part.start
        chunk = {name: array[part] if array.ndim else array for name, array in arrays.items()}
        if size < smallest:  # pad with copies of the last item: real data, no NaN-prone zeros
            chunk = {n: _pad_batch(a, smallest) if a.ndim else a for n, a in chunk.items()}
        results = self._run_once(chunk)
        for name, result in results.items():
            if result.ndim == 0 or result.shape[0] != max(size, smallest):
                raise BackendError(
                    f"tensorrt: output {name!r} has shape {result.shape}, not batch-first, so a batch of {batch} "
                    f"cannot be split into runs of at most {largest}: rebuild the engine with --max-batch {batch}"
                )
        return {name: result[:size] for name, result in results.items()}

    def _run_once(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name, array in arrays.items():
            if not self.context.set_input_shape(name, array.shape):
                raise BackendError(self._refused(name, array.shape))
            staged = self._host_view(name, array.shape, array.dtype)
            staged[...] = array
            self.cuda.to_device(self._device_buffer(name, array.nbytes), staged)
        results = {}
        for name in self.outputs:
            shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise BackendError(f"tensorrt: output {name!r} has no shape for these inputs ({shape})")
            results[name] = self._host_view(name, shape, self.dtypes[name])
            self._device_buffer(name, results[name].nbytes)
        if not self.context.execute_async_v3(self.cuda.handle):
            raise BackendError("TensorRT execution failed (see the TensorRT log above)")
        for name, array in results.items():
            self.cuda.to_host(array, self.device_buffers[name][0])
        self.cuda.synchronize()
        # copies: the page-locked buffers are reused by the next run
        return {name: np.array(array, dtype=np.float32) for name, array in results.items()}

    def _refused(self, name: str, shape: tuple[int, ...]) -> str:
        allowed = ""
        if None in self.inputs[name]:
            minimum, _, maximum = self.engine.get_tensor_profile_shape(name, 0)
            allowed = f"; its profile takes {tuple(minimum)} to {tuple(maximum)}"
        return (
            f"tensorrt: the engine refuses shape {tuple(shape)} for input {name!r}{allowed}: rebuild it with python -m "
            "export.trt (--max-batch sets the largest batch)"
        )

    def _device_buffer(self, name: str, nbytes: int) -> int:
        pointer, capacity = self.device_buffers.get(name, (0, 0))
        if nbytes > capacity:
            if pointer:
                self.cuda.free(pointer)
            pointer = self.cuda.malloc(nbytes)
            self.device_buffers[name] = (pointer, nbytes)
        self.context.set_tensor_address(name, pointer)
        return pointer

    def _host_view(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A page-locked array of ``shape`` for tensor ``name``, grown when too small."""
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        buffer = self.host_buffers.get(name)
        if buffer is None or buffer.nbytes < nbytes:
            if buffer is not None:
                self.cuda.host_free(buffer)
            buffer = self.host_buffers[name] = self.cuda.host_alloc(nbytes)
        return buffer[:nbytes].view(dtype).reshape(shape)

    def close(self) -> None:
        if getattr(self, "engine", None) is None:
            return
        with self.cuda.current():
            for pointer, _ in self.device_buffers.values():
                self.cuda.free(pointer)
            for buffer in self.host_buffers.values():
                self.cuda.host_free(buffer)
            self.device_buffers.clear()
            self.host_buffers.clear()
            self.context = self.engine = None  # TensorRT frees their device memory in this context
        self.cuda.close()
