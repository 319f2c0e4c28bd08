"""The TensorRT backend's own logic: profile reading, batch splitting/padding, CUDA binding choice.

TensorRT cannot be installed here, so these run against test doubles of the TensorRT engine
interface and of the CUDA bindings (``FakeEngine``, ``FakeCuda``, ``FakePyCudaDriver``): they
check edge-fer's code around TensorRT, not TensorRT. The last test runs a real engine and is
skipped where TensorRT is absent.
"""

import contextlib
import sys
import threading
import types

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edge_fer.errors import BackendError
from edge_fer.runtime.backends.tensorrt_backend import (
    TensorRTBackend,
    _cuda,
    _PyCuda,
    batch_slices,
    profile_batch_range,
)


class DeviceMemory(dict):
    """Pointer -> bytearray: the "device" both CUDA test doubles and FakeEngine share."""

    def allocate(self, nbytes: int) -> int:
        pointer = 0x1000 * (len(self) + 1)
        self[pointer] = bytearray(nbytes)
        return pointer


class FakeEngine:
    """Test double of the TensorRT engine interface (ICudaEngine and its IExecutionContext); not a TensorRT run.

    One input "x" with optimization profile 0 from ``minimum`` to ``maximum`` and one output
    "y" = 2 * x, computed from and into the test double's device memory. With
    ``batch_first=False`` the output is (3, batch) instead. ``runs`` records each run's batch.
    """

    def __init__(self, memory: DeviceMemory, minimum=(1, 3), maximum=(8, 3), *, batch_first: bool = True):
        self.memory, self.minimum, self.maximum, self.batch_first = memory, minimum, maximum, batch_first
        self.runs: list[int] = []
        self.is_current = lambda: True  # replaced when a CUDA context must be current during a run
        self.num_io_tensors = 2

    def get_tensor_name(self, index: int) -> str:
        return ["x", "y"][index]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (-1, -1 if self.minimum[1] != self.maximum[1] else self.minimum[1])

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
        assert name == "x" and profile_index == 0
        return [self.minimum, self.minimum, self.maximum]

    def create_execution_context(self) -> "FakeContext":
        return FakeContext(self)


class FakeContext:
    """Test double of TensorRT's IExecutionContext (see FakeEngine)."""

    def __init__(self, engine: FakeEngine):
        self.engine, self.shape, self.addresses = engine, None, {}

    def set_input_shape(self, name: str, shape) -> bool:
        inside = all(low <= d <= high for low, d, high in zip(self.engine.minimum, shape, self.engine.maximum))
        if inside:
            self.shape = tuple(shape)
        return inside

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if self.shape is None:
            return (-1, -1)
        return self.shape if self.engine.batch_first else self.shape[::-1]

    def set_tensor_address(self, name: str, pointer: int) -> None:
        self.addresses[name] = pointer

    def execute_async_v3(self, stream_handle: int) -> bool:
        assert self.engine.is_current(), "a run outside the CUDA context"
        count = int(np.prod(self.shape))
        x = np.frombuffer(self.engine.memory[self.addresses["x"]], np.float32, count).reshape(self.shape)
        y = 2 * x if self.engine.batch_first else (2 * x).T
        self.engine.memory[self.addresses["y"]][: y.nbytes] = np.ascontiguousarray(y).tobytes()
        self.engine.runs.append(self.shape[0])
        return True


class FakeCuda:
    """Test double of the backend's CUDA binding (_CudaPython/_PyCuda interface); copies are synchronous."""

    def __init__(self, memory: DeviceMemory):
        self.memory, self.freed, self.host_freed, self.closed = memory, [], [], False
        self.current_threads: list[str] = []

    @contextlib.contextmanager
    def current(self):
        self.current_threads.append(threading.current_thread().name)
        yield

    def malloc(self, nbytes: int) -> int:
        return self.memory.allocate(nbytes)

    def free(self, pointer: int) -> None:
        self.freed.append(pointer)

    def host_alloc(self, nbytes: int) -> np.ndarray:
        return np.zeros(nbytes, np.uint8)

    def host_free(self, array: np.ndarray) -> None:
        self.host_freed.append(array)

    def to_device(self, pointer: int, array: np.ndarray) -> None:
        self.memory[pointer][: array.nbytes] = array.tobytes()

    def to_host(self, array: np.ndarray, pointer: int) -> None:
        array[...] = np.frombuffer(self.memory[pointer], array.dtype, array.size).reshape(array.shape)

    handle = 0

    def synchronize(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def backend_on(engine: FakeEngine, cuda) -> TensorRTBackend:
    float32 = np.dtype(np.float32)
    return TensorRTBackend._from_engine(engine, cuda, input_names=["x"], dtypes={"x": float32, "y": float32})


def test_profile_batch_range_reads_profile_0_and_static_batches():
    memory = DeviceMemory()
    assert profile_batch_range(FakeEngine(memory, (2, 3), (16, 3)), {"x": (None, 3)}) == (2, 16)
    assert profile_batch_range(FakeEngine(memory), {"x": (None, 3), "mask": (4, 3)}) == (4, 4)
    with pytest.raises(BackendError, match="no common batch size"):
        profile_batch_range(FakeEngine(memory, (1, 3), (8, 3)), {"x": (None, 3), "mask": (9, 3)})
    assert batch_slices(19, 8) == [slice(0, 8), slice(8, 16), slice(16, 19)]


@pytest.mark.parametrize("batch, runs", [(5, [5]), (8, [8]), (19, [8, 8, 3]), (16, [8, 8])])
def test_batches_larger_than_the_profile_are_split_in_order(batch, runs):
    memory = DeviceMemory()
    engine = FakeEngine(memory, (1, 3), (8, 3))
    backend = backend_on(engine, FakeCuda(memory))
    x = np.arange(batch * 3, dtype=np.float32).reshape(batch, 3)
    y = backend.infer({"x": x})["y"]
    assert engine.runs == runs
    np.testing.assert_array_equal(y, 2 * x)


@pytest.mark.parametrize("batch, runs", [(1, [4]), (4, [4]), (6, [4, 4])])
def test_fixed_batch_engine_pads_smaller_batches(batch, runs):
    """A DLA engine's profile is min = opt = max: smaller batches are padded, the padding cut off."""
    memory = DeviceMemory()
    engine = FakeEngine(memory, (4, 3), (4, 3))
    y = backend_on(engine, FakeCuda(memory)).infer({"x": np.ones((batch, 3), np.float32)})["y"]
    assert engine.runs == runs
    np.testing.assert_array_equal(y, np.full((batch, 3), 2, np.float32))


def test_results_are_copies_of_the_reused_page_locked_buffers():
    memory = DeviceMemory()
    backend = backend_on(FakeEngine(memory), FakeCuda(memory))
    first = backend.infer({"x": np.ones((2, 3), np.float32)})["y"]
    backend.infer({"x": np.zeros((2, 3), np.float32)})
    np.testing.assert_array_equal(first, np.full((2, 3), 2, np.float32))


def test_refused_shape_is_a_one_line_backend_error():
    memory = DeviceMemory()
    backend = backend_on(FakeEngine(memory, (1, 1), (8, 4)), FakeCuda(memory))
    with pytest.raises(BackendError) as raised:
        backend.infer({"x": np.ones((2, 6), np.float32)})
    message = str(raised.value)
    assert "refuses shape (2, 6) for input 'x'; its profile takes (1, 1) to (8, 4)" in message
    assert "\n" not in message


def test_output_that_is_not_batch_first_cannot_be_split():
    memory = DeviceMemory()
    backend = backend_on(FakeEngine(memory, batch_first=False), FakeCuda(memory))
    assert backend.infer({"x": np.ones((3, 3), np.float32)})["y"].shape == (3, 3)  # one run: nothing to split
    with pytest.raises(BackendError, match="not batch-first, so a batch of 12 cannot be split"):
        backend.infer({"x": np.ones((12, 3), np.float32)})


def test_every_run_is_inside_the_cuda_context_even_from_a_worker_thread():
    memory = DeviceMemory()
    cuda = FakeCuda(memory)
    backend = backend_on(FakeEngine(memory), cuda)
    worker = threading.Thread(target=backend.infer, args=({"x": np.ones((20, 3), np.float32)},), name="head")
    worker.start()
    worker.join()
    assert cuda.current_threads == ["head"]


def test_close_frees_device_and_host_buffers_once():
    memory = DeviceMemory()
    cuda = FakeCuda(memory)
    backend = backend_on(FakeEngine(memory), cuda)
    backend.infer({"x": np.ones((2, 3), np.float32)})
    backend.infer({"x": np.ones((6, 3), np.float32)})  # grows both buffers
    backend.close()
    backend.close()
    assert sorted(cuda.freed) == sorted(memory)  # every allocation, the outgrown ones too
    assert len(cuda.host_freed) == 4 and cuda.closed


# --- CUDA binding choice -------------------------------------------------------------------------


class FakeCudaError(int):
    """Test double of cuda-python's cudaError_t enum member."""

    name = "cudaErrorInsufficientDriver"


def install_cuda_python_with_old_driver(monkeypatch):
    """Test double of cuda-python 13 on a CUDA 12 driver: every runtime call fails as the real one does."""
    runtime = types.ModuleType("cuda.bindings.runtime")
    runtime.cudaStreamCreate = lambda: (FakeCudaError(35), None)
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = runtime
    cuda = types.ModuleType("cuda")
    cuda.bindings = bindings
    for name, module in (("cuda", cuda), ("cuda.bindings", bindings), ("cuda.bindings.runtime", runtime)):
        monkeypatch.setitem(sys.modules, name, module)


class FakePyCudaDriver(types.ModuleType):
    """Test double of ``pycuda.driver``: a per-thread context stack, memory in DeviceMemory."""

    class Error(Exception):
        pass

    def __init__(self, memory: DeviceMemory):
        super().__init__("pycuda.driver")
        self.memory, self.stacks, self.retained, self.released = memory, {}, 0, 0
        self.initialised, self.host_allocations = False, []
        driver = self

        class PrimaryContext:
            def push(self):
                driver.stack().append(self)

            def detach(self):
                driver.released += 1

        class Context:
            @staticmethod
            def pop():
                driver.stack().pop()

        class Device:
            def __init__(self, ordinal: int):
                assert driver.initialised and ordinal == 0

            def retain_primary_context(self):
                driver.retained += 1
                return driver.primary

        class Stream:
            handle = 7

            def __init__(self):
                assert driver.stack() == [driver.primary], "stream made outside the primary context"

            def synchronize(self):
                pass

        self.primary, self.Context, self.Device, self.Stream = PrimaryContext(), Context, Device, Stream

    def stack(self) -> list:
        return self.stacks.setdefault(threading.get_ident(), [])

    def init(self):
        self.initialised = True

    def mem_alloc(self, nbytes: int) -> "Allocation":
        return Allocation(self.memory.allocate(nbytes))

    def pagelocked_empty(self, size: int, dtype) -> np.ndarray:
        allocation = PagelockedHostAllocation(size, dtype)
        self.host_allocations.append(allocation)
        return np.asarray(allocation)  # like pycuda's: .base is the allocation

    def memcpy_htod_async(self, pointer: int, array: np.ndarray, stream) -> None:
        FakeCuda(self.memory).to_device(pointer, array)

    def memcpy_dtoh_async(self, array: np.ndarray, pointer: int, stream) -> None:
        FakeCuda(self.memory).to_host(array, pointer)


class PagelockedHostAllocation:
    """Test double of pycuda's PagelockedHostAllocation: the ``.base`` of a pagelocked array."""

    def __init__(self, size: int, dtype):
        self.array, self.freed = np.zeros(size, dtype), False
        self.__array_interface__ = self.array.__array_interface__

    def free(self):
        self.freed = True


class Allocation(int):
    """What pycuda's mem_alloc returns, as far as the backend uses it (int() and free())."""

    def free(self):
        pass


def install_pycuda(monkeypatch, memory: DeviceMemory) -> FakePyCudaDriver:
    driver = FakePyCudaDriver(memory)
    package = types.ModuleType("pycuda")
    package.driver = driver
    monkeypatch.setitem(sys.modules, "pycuda", package)
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    return driver


def test_cuda_python_on_an_insufficient_driver_falls_back_to_pycuda(monkeypatch):
    install_cuda_python_with_old_driver(monkeypatch)
    driver = install_pycuda(monkeypatch, DeviceMemory())
    cuda = _cuda()
    assert isinstance(cuda, _PyCuda) and driver.retained == 1 and driver.stack() == []


def test_no_working_cuda_binding_is_a_one_line_error_naming_the_fix(monkeypatch):
    install_cuda_python_with_old_driver(monkeypatch)
    monkeypatch.setitem(sys.modules, "pycuda", None)  # import pycuda raises ImportError
    with pytest.raises(BackendError) as raised:
        _cuda()
    message = str(raised.value)
    assert "cudaStreamCreate failed with cudaErrorInsufficientDriver" in message
    assert "pycuda is not installed" in message and "cuda-python==12.6.*" in message and "\n" not in message


def test_pycuda_runs_on_the_primary_context_pushed_in_the_calling_thread(monkeypatch):
    """--head async: the worker thread must run with the same (primary) context current."""
    memory = DeviceMemory()
    driver = install_pycuda(monkeypatch, memory)
    engine = FakeEngine(memory)
    engine.is_current = lambda: driver.stack()[-1:] == [driver.primary]
    backend = backend_on(engine, _PyCuda())
    results = []
    worker = threading.Thread(target=lambda: results.append(backend.infer({"x": np.ones((10, 3), np.float32)})))
    worker.start()
    worker.join()
    np.testing.assert_array_equal(results[0]["y"], np.full((10, 3), 2, np.float32))
    assert engine.runs == [8, 2] and driver.stack() == []
    backend.close()
    assert driver.released == 1 and driver.stack() == []
    assert driver.host_allocations and all(a.freed for a in driver.host_allocations)


# --- a real engine, where TensorRT is installed ---------------------------------------------------


def test_real_engine_splits_a_batch_beyond_its_profile(tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed here (it comes with JetPack / NVIDIA GPUs)")
    from export.trt import build_engine

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    model = helper.make_model(
        helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "double", [x], [y], [two]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 9
    onnx.save(model, str(tmp_path / "double.onnx"))
    engine = tmp_path / "double.engine"
    build_engine(
        tmp_path / "double.onnx",
        engine,
        precision="fp16",
        inputs={"x": [None, 3]},
        max_batch=2,
        workspace=64,
        timing_cache=None,
        dla_core=None,
        force=True,
    )
    with TensorRTBackend(engine) as backend:
        assert backend.batch_range == (1, 2)
        batch = np.arange(15, dtype=np.float32).reshape(5, 3)
        np.testing.assert_allclose(backend.infer({"x": batch})["y"], 2 * batch, rtol=1e-3)
