"""Triton Inference Server as a backend: the model runs on a server, this side sends requests.

Where one machine's accelerator serves several edge nodes, ``edge-fer camera --backend triton
--url HOST:PORT`` keeps detection, tracking and clip buffers local and sends the backbone and
head batches to Triton (``python -m export.triton`` wrote the repository; the model's name is
``edge_fer.artifacts.triton_model_name`` of the local artifact, whose sidecar still gives the
preset and preprocessing). Triton's dynamic batching then runs the requests of many cameras
and nodes together.

``--url`` is ``HOST:PORT`` or ``http://HOST:PORT`` (HTTP, Triton's port 8000) or
``grpc://HOST:PORT`` (gRPC, 8001). Requests time out after ``timeout`` seconds and are retried
``retries`` times with a short backoff (a server restarting, a dropped connection); what still
fails is a ``BackendError`` in one line. Needs ``tritonclient`` (``pip install
'edge-fer[triton]'``), nothing else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

import numpy as np

from edge_fer.errors import BackendError
from edge_fer.runtime.backends.base import Backend

__all__ = ["TritonBackend", "parse_url"]


def parse_url(url: str) -> tuple[str, str]:
    """``grpc://h:p`` -> ("grpc", "h:p"); ``http://h:p`` or ``h:p`` -> ("http", "h:p").

    Raises:
        BackendError: empty, another scheme, or no port.
    """
    text = (url or "").strip()
    protocol, _, address = text.rpartition("://") if "://" in text else ("http", "", text)
    protocol = protocol.lower()
    if protocol not in ("http", "grpc"):
        raise BackendError(f"--url {url!r}: use HOST:PORT, http://HOST:PORT or grpc://HOST:PORT")
    host, _, port = address.rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise BackendError(f"--url {url!r}: give the server's host and port, e.g. 127.0.0.1:8000")
    return protocol, f"{host}:{port}"


class TritonBackend(Backend):
    """One model on a Triton server.

    Args:
        model_name: the model's name in the server's repository.
        url: see the module docstring.
        timeout: seconds a connection or a request may take.
        retries: further attempts after a failed request.

    Raises:
        BackendError: tritonclient missing, no server at ``url``, or the model is not ready there.
    """

    name = "triton"

    def __init__(self, model_name: str, url: str, *, timeout: float = 10.0, retries: int = 2) -> None:
        self.protocol, self.address = parse_url(url)
        self.model_name, self.timeout, self.retries = model_name, timeout, retries
        try:
            if self.protocol == "grpc":
                import tritonclient.grpc as client
            else:
                import tritonclient.http as client
            from tritonclient.utils import InferenceServerException
        except ImportError:
            raise BackendError(
                f"--backend triton needs tritonclient: pip install 'tritonclient[{self.protocol}]'"
            ) from None
        self._client_module = client
        self._server_error = InferenceServerException
        # tritonclient's HTTP client runs on gevent, whose sockets belong to the thread that
        # made them: each thread that infers (the camera's async head runs in a worker) gets
        # its own; the gRPC client is thread-safe and shared.
        self._local = threading.local()
        self._clients: list = []
        self._lock = threading.Lock()
        self._client = self._thread_client()
        where = f"Triton at {self.protocol}://{self.address}"
        try:
            live = self._client.is_server_live()
        except Exception as exc:  # connection refused, DNS, timeout: all mean "no server there"
            raise BackendError(f"no {where}: {_reason(exc)}; start the server or check --url") from None
        if not live:
            raise BackendError(f"{where} is not live yet; try again when it is")
        try:
            ready = self._client.is_model_ready(model_name)
        except InferenceServerException as exc:
            raise BackendError(f"{where}: {_reason(exc)}") from None
        if not ready:
            raise BackendError(
                f"{where} has no ready model {model_name!r}; write it with python -m export.triton --model "
                "THIS_ARTIFACT and load that repository"
            )
        metadata = self._client.get_model_metadata(model_name)
        if self.protocol == "http":
            tensors_in, tensors_out = metadata["inputs"], metadata["outputs"]
            shapes = {t["name"]: t["shape"] for t in tensors_in}
            self.outputs = [t["name"] for t in tensors_out]
        else:
            shapes = {t.name: list(t.shape) for t in metadata.inputs}
            self.outputs = [t.name for t in metadata.outputs]
        self.inputs = {name: tuple(None if int(d) < 0 else int(d) for d in shape) for name, shape in shapes.items()}
        self._requested = [client.InferRequestedOutput(name) for name in self.outputs]
        config = self._client.get_model_config(model_name)
        config = config if self.protocol == "http" else config.config
        largest = config["max_batch_size"] if self.protocol == "http" else config.max_batch_size
        self.max_batch = int(largest) or None  # larger batches go as several requests

    def _thread_client(self):
        if self.protocol == "grpc" and self._clients:
            return self._clients[0]
        made = getattr(self._local, "client", None)
        if made is None:
            module = self._client_module
            if self.protocol == "grpc":
                made = module.InferenceServerClient(self.address)
            else:
                made = module.InferenceServerClient(
                    self.address, connection_timeout=self.timeout, network_timeout=self.timeout
                )
            self._local.client = made
            with self._lock:
                self._clients.append(made)
        return made

    def _run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        size = len(next(iter(feed.values())))
        step = self.max_batch or size
        if size <= step:
            return self._request(feed)
        parts = [self._request({k: v[i : i + step] for k, v in feed.items()}) for i in range(0, size, step)]
        return {name: np.concatenate([p[name] for p in parts]) for name in self.outputs}

    def _request(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        client = self._client_module
        inputs = []
        for name in self.inputs:
            array = np.ascontiguousarray(feed[name], dtype=np.float32)
            tensor = client.InferInput(name, list(array.shape), "FP32")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        options = {"client_timeout": self.timeout} if self.protocol == "grpc" else {}
        for attempt in range(self.retries + 1):
            try:
                result = self._thread_client().infer(self.model_name, inputs, outputs=self._requested, **options)
                return {name: result.as_numpy(name) for name in self.outputs}
            except Exception as exc:  # the server's error, or the connection's
                if attempt == self.retries or not self._transient(exc):
                    tries = f" ({attempt + 1} tries)" if attempt else ""
                    raise BackendError(
                        f"Triton at {self.protocol}://{self.address}: {self.model_name} failed{tries}: {_reason(exc)}"
                    ) from None
                time.sleep(0.2 * 2**attempt)
        raise AssertionError("the loop returns or raises")

    def _transient(self, exc: BaseException) -> bool:
        """Worth retrying: the connection failed, or the server is busy/restarting/timed out;
        not a request the server rejected (it would reject it again)."""
        if not isinstance(exc, self._server_error):
            return True
        status = str(exc.status() or "")
        return status in ("", "408", "429", "500", "502", "503", "504") or status.endswith(
            ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "INTERNAL")
        )

    def statistics(self) -> dict:
        """The server's inference statistics of this model (counts, batch executions, queue and
        compute times), as Triton reports them."""
        statistics = self._thread_client().get_inference_statistics(self.model_name)
        if self.protocol == "http":
            return statistics
        from google.protobuf.json_format import MessageToDict

        return MessageToDict(statistics, preserving_proto_field_name=True)

    def close(self) -> None:
        """Close this backend's connections. An HTTP client belongs to the thread that made it:
        one made by another thread is left for the garbage collector rather than closed here."""
        with self._lock:
            clients, self._clients = self._clients, []
        mine = getattr(self._local, "client", None)
        for client in clients:
            if self.protocol == "grpc" or client is mine:
                client.close()
        self._local.client = None


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "message", None)
    text = text() if callable(text) else text
    return " ".join(str(text or exc or exc.__class__.__name__).split())[:300]
