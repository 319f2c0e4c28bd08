"""OpenVINO backend: CPU, GPU, NPU; reads ONNX or IR (.xml + .bin)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import openvino as ov

from edge_fer.errors import BackendError
from edge_fer.runtime.backends.base import Backend, Pending
from edge_fer.runtime.cpu import isa_cap

__all__ = ["OpenVINOBackend"]


class OpenVINOBackend(Backend):
    name = "openvino"
    # One camera has one frame size; a clip head meets batch sizes up to the faces refreshed
    # together (rounded up to a power of two: 1, 2, 4, 8 for --max-faces 8). Shapes past this
    # many run dynamic.
    STATIC_SHAPES_KEPT = 8

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
        if device == "CPU":
            # Pinned (the default), OpenVINO ties its threads, and the thread that calls it, to
            # cores: several camera processes on one box then crowd the same cores (four on a
            # 2-core Zen 4: 0.67x the wall time unpinned), and a detection started beside the
            # loop (DetectionAhead) lands on the loop's own core. Unpinned cost nothing measured
            # on one process (0.96-0.98x the wall time; Zen 4, Zen 5, Xeon): docs/benchmarks.md.
            config["ENABLE_CPU_PINNING"] = "NO"
        if precision:
            # Without a hint, an "FP32" model runs in bf16 on CPUs with bf16 support.
            config["INFERENCE_PRECISION_HINT"] = precision
        elif device == "CPU" and isa_cap():
            # OpenVINO picks bf16 by CPUID, not by oneDNN's ISA cap, and then cannot compile
            # ("object is not initialized"); under the cap the CPU is an AVX2 one: f32, as there.
            config["INFERENCE_PRECISION_HINT"] = "f32"
        # Static shapes: the CPU plugin runs a model compiled for one input shape faster than a
        # dynamic one (measured here: the face detector about 2x, the STT head about 1.1x), so
        # compile once per input shape (0.2-0.5 s each), for up to STATIC_SHAPES_KEPT shapes.
        self._static = {} if static_shapes else None
        self._pad_batch = False
        self._compiling: dict[tuple, Future] = {}  # batch sizes compiling in the background
        self._compiler: ThreadPoolExecutor | None = None
        self._core, self._device, self._config = core, device, config
        self._started: Pending | None = None  # the request ``start`` left running, until collected
        try:
            network = core.read_model(model, b"") if isinstance(model, bytes) else core.read_model(os.fspath(model))
            self.inputs = {
                _port_name(port): tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
                for port in network.inputs
            }
            self.outputs = [_port_name(port) for port in network.outputs]
            self._network = network
            cap = isa_cap() if device == "CPU" else None
            if cap and _is_qdq_onnx(model, network):
                raise BackendError(
                    f"OpenVINO cannot run an INT8 Q/DQ ONNX model faithfully under ONEDNN_MAX_CPU_ISA={cap} "
                    "(its plugin picks INT8 kernels by the real CPU while oneDNN's are capped: wrong logits or a "
                    "failed primitive); run it without the cap, or with --backend onnxruntime"
                )
            self.request = None
            first = _batch_of_one(self.inputs)
            if static_shapes and first is not None:
                # only the batch is open (a clip model): compile batch 1, the shape met first.
                # Batches are padded to a power of two, so 4 sources' faces refreshed 1-4 at a
                # time need 3 compiles, not 4, each made beside the loop (_run_batched); the
                # dynamic model only if ever needed.
                self._pad_batch = any(shape[0] is None for shape in self.inputs.values())
                self._request_for({name: np.empty(shape, np.float32) for name, shape in first.items()})
            elif not static_shapes:
                self.request = self._compile(network)
            # else (an image model, e.g. the detector): compiled for the first frame's size when
            # it comes; a dynamic compile now would be thrown away (0.2 s of every start)
        except RuntimeError as exc:
            raise _cannot_load(device, exc) from None

    def _request_for(self, feed: Mapping[str, np.ndarray]):
        if self._static is None:
            return self.request
        key = _shapes(feed, self.inputs)
        request = self._static.get(key)
        if request is None:
            if len(self._static) >= self.STATIC_SHAPES_KEPT:
                return self._dynamic()
            request = self._static[key] = self._compile_static(key)
        return request

    def _dynamic(self):
        """More shapes than a camera meets: one dynamic model for the rest, rather than evicting
        and recompiling over and over."""
        if self.request is None:
            self.request = self._compile(self._network)
        return self.request

    def _compile_static(self, key: tuple):
        network = self._network.clone()
        network.reshape({name: list(shape) for name, shape in key})
        return self._compile(network)

    def _compile(self, network: ov.Model):
        try:
            return self._core.compile_model(network, self._device, self._config).create_infer_request()
        except RuntimeError as exc:
            raise _cannot_load(self._device, exc) from None

    def _run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._collect_started()
        if self._pad_batch:
            return self._run_batched(feed)
        return _infer(self._request_for(feed), feed)

    def start(self, feed: Mapping[str, np.ndarray]) -> Pending[dict[str, np.ndarray]]:
        """Start the request on ``feed`` and return: OpenVINO's own threads run it while the
        caller (and Python) go on. The same request ``infer`` uses, so no second request's buffers; a call
        before this one is collected collects it first. Clip models (padded batches) run now."""
        if self._pad_batch:
            return super().start(feed)
        self._check(feed)
        self._collect_started()
        request = self._request_for(feed)
        request.start_async({k: np.ascontiguousarray(v) for k, v in feed.items()})
        self._started = Pending(lambda: _finish(request))
        return self._started

    def _collect_started(self) -> None:
        """Copy out a started request's outputs before the request is reused."""
        if self._started is not None:
            self._started.result()
            self._started = None

    def _run_batched(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A clip model's batch, padded to a power of two (rows are independent: the last one
        repeated, the copies dropped after). A size met for the first time compiles in a
        background thread (0.27-0.4 s on a 2-core Xeon: up to ten frames of a 25 fps camera,
        if made on the loop); meanwhile the batch runs as chunks of the largest size compiled."""
        batch = len(next(iter(feed.values())))
        padded = 1 << (batch - 1).bit_length()
        key = tuple((name, (padded, *feed[name].shape[1:])) for name in self.inputs)
        request = self._static.get(key)
        if request is None:
            request = self._compiled_in_background(key)
            if request is None:  # compiling: chunks of the largest size compiled (batch 1 always is)
                ready = max(k[0][1][0] for k in self._static if k[0][1][0] < padded)
                chunks = [{k: v[i : i + ready] for k, v in feed.items()} for i in range(0, batch, ready)]
                parts = [self._run_batched(chunk) for chunk in chunks]
                return {k: np.concatenate([p[k] for p in parts]) if parts[0][k].ndim else parts[0][k] for k in parts[0]}
            if request is self.request:  # the dynamic model (past STATIC_SHAPES_KEPT): no padding
                return _infer(request, feed)
        if padded != batch:
            feed = {k: np.concatenate([v, np.repeat(v[-1:], padded - batch, axis=0)]) for k, v in feed.items()}
        outputs = _infer(request, feed)
        return {k: v[:batch] if v.ndim and len(v) == padded else v for k, v in outputs.items()}

    def _compiled_in_background(self, key: tuple):
        """The request for ``key`` once its background compile is done, None while it runs (the
        first call starts it); past STATIC_SHAPES_KEPT sizes, the dynamic model."""
        pending = self._compiling.get(key)
        if pending is None:
            if len(self._static) + len(self._compiling) >= self.STATIC_SHAPES_KEPT:
                return self._dynamic()
            if self._compiler is None:
                self._compiler = ThreadPoolExecutor(1, thread_name_prefix="edge-fer-compile")
            self._compiling[key] = self._compiler.submit(self._compile_static, key)
            return None
        if not pending.done():
            return None
        del self._compiling[key]
        self._static[key] = pending.result()  # raises the compile's BackendError, if any
        return self._static[key]

    def wait_compiled(self) -> None:
        """Wait for the background compiles started so far (tests; a warm-up before timing)."""
        for key, pending in list(self._compiling.items()):
            pending.result()
            self._compiled_in_background(key)

    def close(self) -> None:
        self._collect_started()
        if self._compiler is not None:
            self._compiler.shutdown(wait=True, cancel_futures=True)
            self._compiler, self._compiling = None, {}
        self.request = None
        self._static = {} if self._static is not None else None
        self._network = None


def _finish(request) -> dict[str, np.ndarray]:
    """A started request's outputs, once it is done."""
    request.wait()
    # copy: the request reuses its output buffers on the next call
    return {_port_name(port): np.array(value) for port, value in request.results.items()}


def _infer(request, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    result = request.infer({k: np.ascontiguousarray(v) for k, v in feed.items()})
    # copy: the request reuses its output buffers on the next call
    return {_port_name(port): np.array(value) for port, value in result.items()}


def _shapes(feed: Mapping[str, np.ndarray], inputs: Mapping[str, tuple]) -> tuple:
    return tuple((name, feed[name].shape) for name in inputs)


def _cannot_load(device: str, exc: RuntimeError) -> BackendError:
    # OpenVINO puts "Exception from <file>:<line>:" lines before the reason: keep the reason
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = " ".join(line for line in lines if not line.startswith("Exception from ")) or " ".join(lines)
    return BackendError(f"openvino cannot load the model on {device}: {reason[:200]}")


def _batch_of_one(inputs: Mapping[str, tuple]) -> dict[str, tuple[int, ...]] | None:
    """Input shapes with batch 1 (or the fixed batch), when the batch is the only open dimension."""
    if any(not shape or None in shape[1:] for shape in inputs.values()):
        return None
    return {name: (shape[0] or 1, *shape[1:]) for name, shape in inputs.items()}


def _is_qdq_onnx(model: str | os.PathLike | bytes, network: ov.Model) -> bool:
    """An explicitly quantized ONNX model (TensorRT's Q/DQ input), as opposed to an INT8 IR: under an
    ISA cap OpenVINO's IR runs as on an AVX2 CPU (checked: within 0.03 of uncapped on a logit
    spread of 8.5), but a Q/DQ ONNX does not - on a Zen 4 capped to AVX2 (OpenVINO 2026.4)
    htnet_light's gave logits 0.33 off ONNX Runtime's (spread 1.3), stt_tiny's failed its first
    inference; uncapped, both within 0.7 % of the spread (tests/test_export.py)."""
    is_onnx = isinstance(model, bytes) or os.fspath(model).lower().endswith(".onnx")
    return is_onnx and any(op.get_type_name() == "FakeQuantize" for op in network.get_ops())


def _port_name(port) -> str:
    """The model's own name for a port: a tensor can carry several (an FP16 ONNX output is also
    "/head/fc/Gemm_cast_to_logits"); prefer the plain graph name."""
    return min(port.get_names(), key=lambda n: ("/" in n or "_cast_to_" in n, len(n), n))
