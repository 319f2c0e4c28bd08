"""The interface every backend implements."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

import numpy as np

from edge_fer.errors import BackendError

__all__ = ["Backend", "Pending"]

T = TypeVar("T")


class Pending(Generic[T]):
    """Work started earlier (``Backend.start``, ``FaceDetector.start``): ``result()`` finishes
    it the first time (waits, copies out) and gives the same value after."""

    def __init__(self, finish: Callable[[], T]) -> None:
        self._finish: Callable[[], T] | None = finish
        self._value: T | None = None

    def result(self) -> T:
        if self._finish is not None:
            self._value, self._finish = self._finish(), None
        return self._value


class Backend(abc.ABC):
    """One loaded model. Use as a context manager or call ``close()``.

    Attributes:
        name: backend name ("openvino", "onnxruntime", ...).
        inputs: input name -> shape, None for a dynamic axis.
        outputs: output names in the model's order.
    """

    name: str = ""
    inputs: dict[str, tuple[int | None, ...]]
    outputs: list[str]

    @abc.abstractmethod
    def _run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model; inputs are already checked."""

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on ``feed`` (every input, float32 arrays of matching rank/shape)."""
        self._check(feed)
        return self._run(feed)

    def start(self, feed: Mapping[str, np.ndarray]) -> Pending[dict[str, np.ndarray]]:
        """Start the model on ``feed`` and return at once where the backend can run it beside the
        caller (OpenVINO); the others run it now. One at a time: the caller collects a pending
        result before it starts or runs the next (a later call collects it first, if not)."""
        self._check(feed)
        outputs = self._run(feed)
        return Pending(lambda: outputs)

    def _check(self, feed: Mapping[str, np.ndarray]) -> None:
        missing = set(self.inputs) - set(feed)
        if missing:
            raise BackendError(
                f"{self.name}: missing input(s) {sorted(missing)}; the model takes {sorted(self.inputs)}"
            )
        for name, shape in self.inputs.items():
            array = feed[name]
            if array.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, array.shape)):
                raise BackendError(
                    f"{self.name}: input {name!r} expects shape "
                    f"({', '.join('?' if s is None else str(s) for s in shape)}), got {array.shape}"
                )

    def close(self) -> None:
        """Release the model (idempotent)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
