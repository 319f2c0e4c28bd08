#!/usr/bin/env python3
"""Run the CUDA parts of the TensorRT backend that need no TensorRT, on a real GPU.

    python scripts/gpu_cuda_check.py [--json OUT.json]

``edge_fer/runtime/backends/tensorrt_backend.py`` moves data through cuda-python or pycuda:
device buffers, page-locked host buffers, a stream, host->device->host copies and, with
pycuda, the device's primary context pushed around every call - also from the ``--head
async`` worker thread. ``tests/test_tensorrt_backend.py`` runs that code against test
doubles; this script runs it on the GPU:

- each installed binding class of the backend (``_PyCuda``, ``_CudaPython``), called as the
  backend calls it, from the main thread and from a worker thread;
- ``TensorRTBackend``'s own staging, buffer growth, batch splitting, copies and ``close()``,
  through ``TensorRTBackend._from_engine`` with a stand-in engine (below), from the main
  thread, from a worker, and two backends at once (backbone on the main thread, head on the
  worker, as ``--head async`` runs them);
- ``_cuda()``, the backend's choice of binding, as it is, and with cuda-python answering
  ``cudaErrorInsufficientDriver`` (a stand-in module; pycuda is real) to see the fallback.

No TensorRT is run. The stand-in engine implements the part of the engine interface the
backend calls and computes on the GPU with two driver calls on the backend's stream: output
``y`` is input ``x`` shifted by one element along each run, its last element set to
``MARK``. The script checks against the CUDA driver itself, through ctypes (libcuda): which
context is current on which thread, which context owns a pointer, whether host memory is
page-locked, whether a buffer was freed, whether the primary context was released.

Each part runs in a process of its own (``--only PART``), so a crash or a hang in one is
reported and the others still run. Every check prints one line ``PASS|FAIL|SKIP name:
detail``; the exit code is 1 if any check failed, else 0 - also where there is no CUDA
device: every part is then a SKIP line with the reason.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.metadata
import importlib.util
import json
import math
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's edge_fer, installed or not

import numpy as np  # noqa: E402

from edge_fer.errors import BackendError  # noqa: E402
from edge_fer.runtime.backends import tensorrt_backend  # noqa: E402
from edge_fer.runtime.backends.tensorrt_backend import TensorRTBackend, batch_slices  # noqa: E402

PARTS = ("pycuda", "cuda-python", "fallback", "choice")
BINDING_CHECKS = ("open", "copy.main", "copy.worker", "backend.main", "backend.worker", "backend.concurrent", "close")
PART_TIMEOUT_S = 60
WORKER_TIMEOUT_S = 30
COPY_SIZES = (1, 4 * 37 * 19 + 3, 64 << 20)  # bytes: one, odd, 64 MiB
BATCHES = (5, 19, 1, 8, 16, 3)  # the stand-in's profile takes 1..8: 19 and 16 are split, 19 grows the buffers
WIDTH, HEAD_WIDTH, MAX_BATCH = 37, 29, 8
MARK = np.float32(-1234.5)
F32 = np.dtype(np.float32)
NOT_TENSORRT = "no TensorRT was run: the engine is a stand-in computing with CUDA driver calls"
LINE = re.compile(r"^(PASS|FAIL|SKIP) (\S+): (.*)$")
INFO = re.compile(r"^INFO (\S+): (.*)$")


# --- results -------------------------------------------------------------------------------------


class Failed(Exception):
    """A check found something wrong; the message says what."""


class Skipped(Exception):
    """A check cannot run here; the message says why."""


class NoDevice(Exception):
    """No CUDA driver or device; the message says which."""


@dataclass
class Result:
    status: str  # PASS, FAIL or SKIP
    name: str
    detail: str

    @property
    def line(self) -> str:
        return f"{self.status} {self.name}: {self.detail}"


def run_check(name: str, check: Callable[..., str], *args, **kwargs) -> Result:
    """Run one check, print its line and return it. A check returns its PASS detail or raises."""
    try:
        result = Result("PASS", name, check(*args, **kwargs))
    except Skipped as exc:
        result = Result("SKIP", name, str(exc))
    except Failed as exc:
        result = Result("FAIL", name, str(exc))
    except Exception as exc:  # an error of the code under test (or of this script): reported, never hidden
        where = traceback.extract_tb(exc.__traceback__)[-1]
        result = Result("FAIL", name, f"{type(exc).__name__}: {exc} (at {Path(where.filename).name}:{where.lineno})")
    print(result.line, flush=True)
    return result


def expect(problems: list[str]) -> None:
    if problems:
        raise Failed("; ".join(problems))


# --- the CUDA driver, through ctypes: the script's observer ----------------------------------------

CU_POINTER_ATTRIBUTE_CONTEXT, CU_POINTER_ATTRIBUTE_MEMORY_TYPE = 1, 2
MEMORY_TYPES = {1: "host", 2: "device", 3: "array", 4: "unified"}
_c = ctypes
SIGNATURES = {  # name -> (symbol in libcuda, argument types)
    "cuInit": ("cuInit", [_c.c_uint]),
    "cuDriverGetVersion": ("cuDriverGetVersion", [_c.POINTER(_c.c_int)]),
    "cuDeviceGetCount": ("cuDeviceGetCount", [_c.POINTER(_c.c_int)]),
    "cuDeviceGet": ("cuDeviceGet", [_c.POINTER(_c.c_int), _c.c_int]),
    "cuDeviceGetName": ("cuDeviceGetName", [_c.c_char_p, _c.c_int, _c.c_int]),
    "cuCtxGetCurrent": ("cuCtxGetCurrent", [_c.POINTER(_c.c_void_p)]),
    "cuCtxPushCurrent": ("cuCtxPushCurrent_v2", [_c.c_void_p]),
    "cuCtxPopCurrent": ("cuCtxPopCurrent_v2", [_c.POINTER(_c.c_void_p)]),
    "cuDevicePrimaryCtxRetain": ("cuDevicePrimaryCtxRetain", [_c.POINTER(_c.c_void_p), _c.c_int]),
    "cuDevicePrimaryCtxRelease": ("cuDevicePrimaryCtxRelease_v2", [_c.c_int]),
    "cuDevicePrimaryCtxGetState": (
        "cuDevicePrimaryCtxGetState",
        [_c.c_int, _c.POINTER(_c.c_uint), _c.POINTER(_c.c_int)],
    ),
    "cuPointerGetAttribute": ("cuPointerGetAttribute", [_c.c_void_p, _c.c_int, _c.c_uint64]),
    "cuMemcpyDtoDAsync": ("cuMemcpyDtoDAsync_v2", [_c.c_uint64, _c.c_uint64, _c.c_size_t, _c.c_void_p]),
    "cuMemsetD32Async": ("cuMemsetD32Async", [_c.c_uint64, _c.c_uint, _c.c_size_t, _c.c_void_p]),
    "cuGetErrorName": ("cuGetErrorName", [_c.c_int, _c.POINTER(_c.c_char_p)]),
}


class DriverError(RuntimeError):
    def __init__(self, call: str, code: int, name: str) -> None:
        super().__init__(f"{call} failed with {name} ({code})")
        self.code, self.name = code, name


class Driver:
    """The CUDA driver API of device 0 through ctypes, independent of both bindings under test."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self.lib = library
        self.functions: dict[str, ctypes._CFuncPtr] = {}

    @classmethod
    def load(cls) -> Driver:
        """The driver, initialised; raises NoDevice with the reason where there is none."""
        try:
            library = ctypes.CDLL("libcuda.so.1")
        except OSError as exc:
            raise NoDevice(f"no CUDA driver: libcuda.so.1 cannot be loaded ({exc})") from None
        driver = cls(library)
        try:
            driver.call("cuInit", 0)
        except DriverError as exc:
            raise NoDevice(f"the CUDA driver has no usable device: {exc}") from None
        if driver.device_count() == 0:
            raise NoDevice("the CUDA driver sees no device")
        driver.device = driver.out("cuDeviceGet", _c.c_int, 0)
        return driver

    def call(self, name: str, *args) -> None:
        if name not in self.functions:
            symbol, argtypes = SIGNATURES[name]
            function = getattr(self.lib, symbol)
            function.argtypes, function.restype = argtypes, _c.c_int
            self.functions[name] = function
        code = self.functions[name](*args)
        if code != 0:
            raise DriverError(name, code, self.error_name(code) if name != "cuGetErrorName" else "?")

    def out(self, name: str, kind, *args):
        """Call ``name(&value, *args)`` (the out-argument first) and return value."""
        value = kind()
        self.call(name, _c.byref(value), *args)
        return value.value

    def error_name(self, code: int) -> str:
        name = _c.c_char_p()
        try:
            self.call("cuGetErrorName", code, _c.byref(name))  # (error, &name): the out-argument comes second
        except DriverError:
            return f"CUresult {code}"
        return name.value.decode() if name.value else f"CUresult {code}"

    def version(self) -> str:
        number = self.out("cuDriverGetVersion", _c.c_int)
        return f"{number // 1000}.{number % 1000 // 10}"

    def device_count(self) -> int:
        return self.out("cuDeviceGetCount", _c.c_int)

    def device_name(self) -> str:
        name = _c.create_string_buffer(256)
        self.call("cuDeviceGetName", name, 256, self.device)
        return name.value.decode()

    def current_context(self) -> int:
        """The context current on the calling thread (0: none)."""
        return self.out("cuCtxGetCurrent", _c.c_void_p) or 0

    def primary_context(self) -> int:
        """The device's primary context (retained and released again: call while someone holds it)."""
        context = self.out("cuDevicePrimaryCtxRetain", _c.c_void_p, self.device) or 0
        self.call("cuDevicePrimaryCtxRelease", self.device)
        return context

    def primary_active(self) -> bool:
        flags, active = _c.c_uint(), _c.c_int()
        self.call("cuDevicePrimaryCtxGetState", self.device, _c.byref(flags), _c.byref(active))
        return bool(active.value)

    @contextmanager
    def primary_held(self) -> Iterator[int]:
        """One more retain of the primary context while inside; yields the context."""
        context = self.out("cuDevicePrimaryCtxRetain", _c.c_void_p, self.device)
        try:
            yield context
        finally:
            self.call("cuDevicePrimaryCtxRelease", self.device)

    @contextmanager
    def primary_pushed(self) -> Iterator[None]:
        """The primary context retained and current on this thread while inside."""
        with self.primary_held() as context:
            self.call("cuCtxPushCurrent", context)
            try:
                yield
            finally:
                self.out("cuCtxPopCurrent", _c.c_void_p)

    def memory_type(self, pointer: int) -> str:
        """"host" (page-locked), "device", ... or why the driver does not know the pointer."""
        try:
            kind = self.out("cuPointerGetAttribute", _c.c_uint, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, pointer)
        except DriverError as exc:
            return f"unknown ({exc.name})"
        return MEMORY_TYPES.get(kind, f"memory type {kind}")

    def pointer_context(self, pointer: int) -> int:
        try:
            return self.out("cuPointerGetAttribute", _c.c_void_p, CU_POINTER_ATTRIBUTE_CONTEXT, pointer) or 0
        except DriverError:
            return 0

    def shift(self, dst: int, src: int, nbytes: int, stream: int) -> None:
        """The stand-in engine's computation, queued on ``stream``: dst = src[4:] + MARK (float32 bytes)."""
        if nbytes > 4:
            self.call("cuMemcpyDtoDAsync", dst, src + 4, nbytes - 4, stream)
        self.call("cuMemsetD32Async", dst + nbytes - 4, int(MARK.view(np.uint32)), 1, stream)


def hexes(*values: int) -> str:
    return "/".join(f"{v:#x}" for v in values)


# --- the stand-in engine -------------------------------------------------------------------------


@dataclass
class Run:
    thread: str
    context: int  # current on the thread when the backend called execute_async_v3
    stream: int
    batch: int


class StandInEngine:
    """The part of TensorRT's engine interface the backend calls, computing on the GPU without TensorRT.

    Not TensorRT, and not a test of it: one input "x" (batch, width) float32 whose profile 0
    takes batch 1..max_batch, one output "y" of the same shape, ``y`` = ``x`` shifted by one
    element along the run's flattened data, last element ``MARK`` (``expected_y``), computed
    by ``driver.shift`` on the stream the backend passes. ``runs`` records each run.
    """

    num_io_tensors = 2

    def __init__(self, driver, *, width: int = WIDTH, max_batch: int = MAX_BATCH) -> None:
        self.driver, self.width, self.max_batch = driver, width, max_batch
        self.runs: list[Run] = []

    def get_tensor_name(self, index: int) -> str:
        return ("x", "y")[index]

    def get_tensor_shape(self, name: str) -> tuple[int, int]:
        return (-1, self.width)

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, int]]:
        return [(1, self.width), (max(1, self.max_batch // 2), self.width), (self.max_batch, self.width)]

    def create_execution_context(self) -> StandInContext:
        return StandInContext(self)


class StandInContext:
    """The execution-context half of StandInEngine."""

    def __init__(self, engine: StandInEngine) -> None:
        self.engine, self.shape, self.addresses = engine, None, {}

    def set_input_shape(self, name: str, shape) -> bool:
        fits = len(shape) == 2 and 1 <= shape[0] <= self.engine.max_batch and shape[1] == self.engine.width
        if fits:
            self.shape = tuple(int(d) for d in shape)
        return fits

    def get_tensor_shape(self, name: str) -> tuple[int, int]:
        return self.shape or (-1, self.engine.width)

    def set_tensor_address(self, name: str, pointer: int) -> None:
        self.addresses[name] = int(pointer)

    def execute_async_v3(self, stream_handle: int) -> bool:
        driver = self.engine.driver
        run = Run(threading.current_thread().name, driver.current_context(), int(stream_handle), self.shape[0])
        self.engine.runs.append(run)
        driver.shift(self.addresses["y"], self.addresses["x"], math.prod(self.shape) * F32.itemsize, stream_handle)
        return True


def expected_y(x: np.ndarray, largest: int) -> np.ndarray:
    """What the stand-in engine returns for ``x`` when the backend splits it into runs of at most ``largest``."""
    parts = [np.append(x[part].ravel()[1:], MARK).reshape(x[part].shape) for part in batch_slices(len(x), largest)]
    return np.concatenate(parts)


def stand_in_backend(cuda, driver, *, width: int = WIDTH) -> tuple[TensorRTBackend, StandInEngine]:
    engine = StandInEngine(driver, width=width)
    backend = TensorRTBackend._from_engine(engine, cuda, input_names=["x"], dtypes={"x": F32, "y": F32})
    return backend, engine


# --- checks on one binding -----------------------------------------------------------------------


def in_worker(function: Callable, *args, name: str = "edge-fer-head"):
    """``function(*args)`` in a ThreadPoolExecutor worker, as StreamingClassifier.submit runs the head."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
    try:
        return pool.submit(function, *args).result(timeout=WORKER_TIMEOUT_S)
    except FutureTimeout:
        raise Failed(f"the worker thread did not finish in {WORKER_TIMEOUT_S} s (a deadlock?)") from None
    finally:
        pool.shutdown(wait=False)


def pushes(cuda) -> bool:
    """Whether the binding pushes a context around calls (pycuda) or the runtime binds it (cuda-python)."""
    return isinstance(cuda, tensorrt_backend._PyCuda)


def check_open(make: Callable, driver) -> str:
    """Open the binding as the backend does; its stream and context."""
    before = driver.current_context()
    try:
        cuda = make()
    except ImportError as exc:
        raise Skipped(f"not installed here ({exc})") from None
    except BackendError as exc:
        if "cudaErrorInsufficientDriver" in str(exc):
            raise Skipped(f"cannot run on this driver, the backend would fall back to pycuda: {exc}") from None
        raise
    try:
        after, primary = driver.current_context(), driver.primary_context()
        problems = []
        if not cuda.handle:
            problems.append("stream handle is 0 (the default stream), expected a stream of its own")
        if pushes(cuda):
            if cuda.context.handle != primary:
                given = cuda.context.handle
                problems.append(f"retain_primary_context gave {hexes(given)}, the primary is {hexes(primary)}")
            if after != before:
                problems.append(f"opening left context {hexes(after)} current on the main thread (was {hexes(before)})")
        elif after != primary:
            problems.append(f"after opening, {hexes(after)} is current on the main thread, not the primary")
        expect(problems)
        return f"{type(cuda).__name__}: stream {hexes(cuda.handle)}, primary context {hexes(primary)}"
    finally:
        cuda.close()


def round_trip(cuda, driver, nbytes: int, primary: int) -> list[str]:
    """One host->device->host copy of ``nbytes`` random bytes through page-locked buffers; problems found."""
    source, target = cuda.host_alloc(nbytes), cuda.host_alloc(nbytes)
    pointer = cuda.malloc(nbytes)
    try:
        source[:nbytes] = np.random.default_rng(nbytes).integers(0, 256, nbytes, dtype=np.uint8)
        target[:nbytes] = ~source[:nbytes]  # anything but the data
        cuda.to_device(pointer, source[:nbytes])
        cuda.to_host(target[:nbytes], pointer)
        cuda.synchronize()
        problems = []
        if not np.array_equal(source[:nbytes], target[:nbytes]):
            problems.append(f"{nbytes} bytes came back with {int(np.sum(source[:nbytes] != target[:nbytes]))} changed")
        kinds = {"host buffer": (source.ctypes.data, "host"), "device buffer": (pointer, "device")}
        for what, (address, kind) in kinds.items():
            if driver.memory_type(address) != kind:
                problems.append(f"{what} of {nbytes} bytes is {driver.memory_type(address)}, not {kind} memory")
            if driver.pointer_context(address) != primary:
                problems.append(f"{what} belongs to context {hexes(driver.pointer_context(address))}, not the primary")
        return problems
    finally:
        cuda.free(pointer)
        cuda.host_free(source)
        cuda.host_free(target)


def copies_here(cuda, driver, primary: int) -> tuple[list[str], str]:
    """Round trips of COPY_SIZES inside ``cuda.current()`` on this thread; problems, and the contexts seen."""
    before = driver.current_context()
    problems = []
    with cuda.current():
        first = driver.current_context()
        for nbytes in COPY_SIZES:
            problems += round_trip(cuda, driver, nbytes, primary)
        last = driver.current_context()
    after = driver.current_context()
    if last != primary:
        problems.append(f"during the copies {hexes(last)} was current, not the primary {hexes(primary)}")
    if pushes(cuda) and (first != primary or after != before):
        seen = hexes(before, first, after)
        problems.append(f"contexts before/in/after current(): {seen}; expected the primary pushed, then popped")
    return problems, f"contexts before/in/after current() {hexes(before, first, after)}"


def check_copies(make: Callable, driver, *, worker: bool) -> str:
    """The binding's own copies, on the main thread or (stream and binding from the main thread) on a worker."""
    cuda = make()
    try:
        primary = driver.primary_context()
        if worker:
            problems, contexts = in_worker(copies_here, cuda, driver, primary)
        else:
            problems, contexts = copies_here(cuda, driver, primary)
        expect(problems)
        sizes = ", ".join(str(n) for n in COPY_SIZES)
        return f"{sizes} bytes host->device->host equal; page-locked host and device memory of the primary; {contexts}"
    finally:
        cuda.close()


def infer_batches(backend: TensorRTBackend, seed: int, batches=BATCHES) -> int:
    """Run each batch through the backend, compare with expected_y; the number of elements checked."""
    rng = np.random.default_rng(seed)
    width, largest = backend.engine.width, backend.batch_range[1]
    checked = 0
    for batch in batches:
        x = rng.standard_normal((batch, width)).astype(np.float32)
        y, expected = backend.infer({"x": x})["y"], expected_y(x, largest)
        if y.shape != expected.shape:
            raise Failed(f"batch {batch} of width {width}: output shape {y.shape}, expected {expected.shape}")
        if not np.array_equal(y, expected):
            first = np.argwhere(y != expected)[0].tolist()
            raise Failed(f"batch {batch} of width {width}: wrong output (first wrong at {first})")
        checked += y.size
    return checked


def run_problems(engine: StandInEngine, cuda, primary: int, threads: tuple[str, ...]) -> list[str]:
    """Were all of the engine's runs on the backend's stream, with the primary context current, on ``threads``?"""
    problems = []
    for run in engine.runs:
        if run.context != primary:
            problems.append(f"a run on {run.thread} had context {hexes(run.context)} current, not the primary")
        if run.stream != cuda.handle:
            problems.append(f"a run was given stream {hexes(run.stream)}, not the binding's {hexes(cuda.handle)}")
        if not run.thread.startswith(threads):
            problems.append(f"a run was on thread {run.thread}, expected {threads}")
    return sorted(set(problems))


def check_backend(make: Callable, driver, *, worker: bool) -> str:
    """TensorRTBackend's staging, buffers, splitting and copies around the stand-in engine."""
    cuda = make()
    backend, engine = stand_in_backend(cuda, driver)
    try:
        primary = driver.primary_context()
        checked = in_worker(infer_batches, backend, 1) if worker else infer_batches(backend, 1)
        expect(run_problems(engine, cuda, primary, ("edge-fer-head",) if worker else ("MainThread",)))
        runs = [run.batch for run in engine.runs]
        where = "an edge-fer-head worker" if worker else "the main thread"
        return f"batches {list(BATCHES)} as runs {runs} from {where}, {checked} values exact; {NOT_TENSORRT}"
    finally:
        backend.close()


def check_concurrent(make: Callable, driver, *, rounds: int = 40) -> str:
    """Two backends at once, as --head async runs them: backbone on the main thread, head on a worker."""
    backbone, backbone_engine = stand_in_backend(make(), driver)
    head = None
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-fer-head")
    try:
        head, head_engine = stand_in_backend(make(), driver, width=HEAD_WIDTH)
        primary = driver.primary_context()
        for index in range(rounds):
            pending = pool.submit(infer_batches, head, index, (index % 19 + 1, 3))
            infer_batches(backbone, 1000 + index, (index % 11 + 1,))
            try:
                pending.result(timeout=WORKER_TIMEOUT_S)
            except FutureTimeout:
                raise Failed(f"round {index}: the head did not finish in {WORKER_TIMEOUT_S} s") from None
        expect(
            run_problems(backbone_engine, backbone.cuda, primary, ("MainThread",))
            + run_problems(head_engine, head.cuda, primary, ("edge-fer-head",))
        )
        return (
            f"{rounds} rounds, {len(backbone_engine.runs)} backbone runs (main thread) beside {len(head_engine.runs)} "
            f"head runs (worker), each on its own stream, outputs exact; {NOT_TENSORRT}"
        )
    finally:
        pool.shutdown(wait=True)
        backbone.close()
        if head is not None:
            head.close()


def close_here(make: Callable, driver) -> tuple[list[str], str]:
    """On a fresh thread: open a backend, run it here and on a worker, close it; what close() left behind."""
    before = driver.current_context()
    cuda = make()
    backend, _ = stand_in_backend(cuda, driver)
    infer_batches(backend, 2, (1,))
    in_worker(infer_batches, backend, 3)  # the buffers grow - are allocated again - on the worker
    pointers = [pointer for pointer, _ in backend.device_buffers.values()]
    pointers += [buffer.ctypes.data for buffer in backend.host_buffers.values()]
    with driver.primary_held():  # the context outlives close(): a freed buffer is freed by close(), not by its end
        backend.close()
        after = driver.current_context()
        with driver.primary_pushed():
            kinds = {pointer: driver.memory_type(pointer) for pointer in pointers}
    alive = [f"{hexes(p)} ({kind})" for p, kind in kinds.items() if not kind.startswith("unknown")]
    problems = []
    if alive:
        problems.append(f"{len(alive)} of {len(pointers)} buffers still allocated after close(): {', '.join(alive)}")
    if pushes(cuda):
        if after != before:
            problems.append(
                f"close() left context {hexes(after)} current on its thread (was {hexes(before)}): pycuda's "
                "Context.detach() pushes a primary context and cuDevicePrimaryCtxRelease does not pop it"
            )
        if driver.primary_active():
            problems.append("the primary context is still active after every _PyCuda was closed: a retain leaked")
    released = ", primary context released" if pushes(cuda) else ""
    return problems, f"{len(pointers)} device and page-locked host buffers freed{released}"


def check_close(make: Callable, driver) -> str:
    problems, detail = in_worker(close_here, make, driver, name="closer")
    expect(problems)
    return detail


def part_binding(label: str, driver) -> list[Result]:
    """Every check on one binding class of the backend; ``label`` is its ``label``."""
    make = {"pycuda": lambda: tensorrt_backend._PyCuda(), "cuda-python": lambda: tensorrt_backend._CudaPython()}[label]
    opened = run_check(f"{label}.open", check_open, make, driver)
    if opened.status == "SKIP":
        skipped = [Result("SKIP", f"{label}.{name}", f"not run: {opened.detail}") for name in BINDING_CHECKS[1:]]
        for result in skipped:
            print(result.line, flush=True)
        return [opened, *skipped]
    print_binding_versions(label)
    return [
        opened,
        run_check(f"{label}.copy.main", check_copies, make, driver, worker=False),
        run_check(f"{label}.copy.worker", check_copies, make, driver, worker=True),
        run_check(f"{label}.backend.main", check_backend, make, driver, worker=False),
        run_check(f"{label}.backend.worker", check_backend, make, driver, worker=True),
        run_check(f"{label}.backend.concurrent", check_concurrent, make, driver),
        run_check(f"{label}.close", check_close, make, driver),  # last: pycuda's release is checked process-wide
    ]


def print_binding_versions(label: str) -> None:
    """INFO lines: the CUDA pycuda was built for, or the CUDA runtime cuda-python loads."""
    try:
        if label == "pycuda":
            import pycuda
            import pycuda.driver as pycuda_driver

            built = ".".join(str(n) for n in pycuda_driver.get_version())
            print(f"INFO pycuda.build: {pycuda.VERSION_TEXT}, built for CUDA {built}", flush=True)
        else:
            try:
                from cuda.bindings import runtime as cudart  # the backend's import order
            except ImportError:
                from cuda import cudart
            _, number = cudart.cudaRuntimeGetVersion()
            version = f"{number // 1000}.{number % 1000 // 10}"
            print(f"INFO cuda-python.runtime: {cudart.__name__}, CUDA runtime {version}", flush=True)
    except Exception as exc:  # versions are information: a failure here is reported, not a check
        print(f"INFO {label}.version: not read ({type(exc).__name__}: {exc})", flush=True)


# --- the backend's choice of binding ---------------------------------------------------------------


class _StandInCudaError(int):
    """cuda-python's cudaError_t member, where cuda-python is not installed."""

    name = "cudaErrorInsufficientDriver"


@contextmanager
def cuda_python_on_an_old_driver() -> Iterator[str]:
    """Replace cuda-python's runtime module by a stand-in whose cudaStreamCreate fails as on a too-old driver."""
    try:
        from cuda.bindings import runtime

        error, where = runtime.cudaError_t.cudaErrorInsufficientDriver, "cuda-python's own error value"
    except ImportError:
        error, where = _StandInCudaError(35), "a stand-in error value (no cuda.bindings here)"
    module = types.ModuleType("cuda.bindings.runtime")
    module.cudaStreamCreate = lambda: (error, None)
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = module
    package = types.ModuleType("cuda")
    package.bindings = bindings
    names = {"cuda": package, "cuda.bindings": bindings, "cuda.bindings.runtime": module}
    saved = {name: sys.modules.get(name) for name in names}
    sys.modules.update(names)
    try:
        yield where
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def check_fallback(driver) -> str:
    """cuda-python reporting cudaErrorInsufficientDriver: the backend must use pycuda, on the primary context."""
    with cuda_python_on_an_old_driver() as where:
        try:
            cuda = tensorrt_backend._cuda()
        except BackendError as exc:
            message = str(exc)
            if importlib.util.find_spec("pycuda") is not None:
                raise Failed(f"pycuda is installed but the backend gave up: {message}") from None
            causes = ("cudaErrorInsufficientDriver", "pycuda is not installed")
            problems = [f"the error does not say {word!r}: {message}" for word in causes if word not in message]
            expect(problems + (["the error is more than one line"] if "\n" in message else []))
            raise Skipped(f"pycuda is not installed; only the error was checked (it names both causes): {message}")
    backend, engine = stand_in_backend(cuda, driver)
    try:
        if not pushes(cuda):
            raise Failed(f"the backend chose {type(cuda).__name__}, not _PyCuda")
        primary = driver.primary_context()
        infer_batches(backend, 4)
        in_worker(infer_batches, backend, 5)
        expect(run_problems(engine, cuda, primary, ("MainThread", "edge-fer-head")))
        return (
            f"simulated with {where}: the backend fell back to pycuda, which ran the stand-in engine exactly from "
            f"the main thread and a worker; {NOT_TENSORRT}"
        )
    finally:
        backend.close()


def check_choice(driver) -> str:
    """``_cuda()`` as the backend calls it, on this machine's libraries."""
    try:
        cuda = tensorrt_backend._cuda()
    except BackendError as exc:
        raise Skipped(f"no working CUDA binding here: {exc}") from None
    backend, engine = stand_in_backend(cuda, driver)
    try:
        infer_batches(backend, 6)
        expect(run_problems(engine, cuda, driver.primary_context(), ("MainThread",)))
        return f"the backend picks {cuda.label} here (it tries cuda-python, then pycuda); it ran the stand-in exactly"
    finally:
        backend.close()


PART_CHECKS: dict[str, Callable[[Driver], list[Result]]] = {
    "pycuda": lambda driver: part_binding("pycuda", driver),
    "cuda-python": lambda driver: part_binding("cuda-python", driver),
    "fallback": lambda driver: [run_check("fallback.insufficient-driver", check_fallback, driver)],
    "choice": lambda driver: [run_check("choice", check_choice, driver)],
}


# --- the whole run ---------------------------------------------------------------------------------


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("numpy", "cuda-python", "cuda-bindings", "pycuda", "tensorrt"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def device_info(driver: Driver) -> dict[str, str]:
    info = {"name": driver.device_name(), "devices": str(driver.device_count()), "cuda_driver": driver.version()}
    if shutil.which("nvidia-smi"):
        try:
            query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "--id=0"]
            info["nvidia_driver"] = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            info["nvidia_driver"] = f"not read ({exc})"
    return info


def part_in_process(part: str) -> list[Result]:
    """``--only PART``: one part in this process."""
    try:
        driver = Driver.load()
    except NoDevice as exc:
        result = Result("SKIP", part, f"not run, no CUDA device here: {exc}")
        print(result.line, flush=True)
        return [result]
    return PART_CHECKS[part](driver)


def part_in_child(part: str, info: dict[str, str]) -> list[Result]:
    """One part in a process of its own; its lines are printed and parsed; a crash or hang is a FAIL."""
    command = [sys.executable, str(Path(__file__).resolve()), "--only", part]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PART_TIMEOUT_S, cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        results = parse_lines(stdout, info)
        killed = Result("FAIL", part, f"did not finish in {PART_TIMEOUT_S} s (killed); see the lines above")
        return results + [emit(killed)]
    results = parse_lines(done.stdout, info)
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-6:])
        results.append(emit(Result("FAIL", part, f"the part's process ended with code {done.returncode}: {tail}")))
    return results


def emit(result: Result) -> Result:
    print(result.line, flush=True)
    return result


def parse_lines(stdout: str, info: dict[str, str]) -> list[Result]:
    results = []
    for text in stdout.splitlines():
        if match := LINE.match(text):
            results.append(emit(Result(*match.groups())))
        elif match := INFO.match(text):
            info[match.group(1)] = match.group(2)
            print(text, flush=True)
        elif text.strip():
            print(f"  | {text}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the versions and every check's result here")
    parser.add_argument("--only", choices=PARTS, help="run one part in this process (what the full run does per part)")
    args = parser.parse_args(argv)
    if args.only:
        part_in_process(args.only)
        return 0  # the parent reads the lines; a non-zero code from here means the process crashed
    started = time.monotonic()
    report = {"script": "scripts/gpu_cuda_check.py", "tensorrt": NOT_TENSORRT, "versions": library_versions()}
    for name, version in report["versions"].items():
        print(f"INFO {name}: {version}", flush=True)
    try:
        driver = Driver.load()
    except NoDevice as exc:
        report["device"], report["no_device"] = None, str(exc)
        results = [emit(Result("SKIP", part, f"not run, no CUDA device here: {exc}")) for part in PARTS]
    else:
        report["device"] = device_info(driver)
        for name, value in report["device"].items():
            print(f"INFO device.{name}: {value}", flush=True)
        results = []
        for part in PARTS:
            results += part_in_child(part, report["versions"])
    failed = sum(result.status == "FAIL" for result in results)
    counts = {status: sum(r.status == status for r in results) for status in ("PASS", "FAIL", "SKIP")}
    print(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped ({NOT_TENSORRT})", flush=True)
    report |= {"checks": [asdict(r) for r in results], "counts": counts}
    report["seconds"] = round(time.monotonic() - started, 1)
    report["exit_code"] = 1 if failed else 0
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
