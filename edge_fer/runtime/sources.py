"""Frame sources: camera index, /dev/videoN, file, RTSP/HTTP URL, GStreamer pipeline, Jetson CSI.

A capture thread reads frames so decoding overlaps inference. Live sources keep only the
newest frame (latest-frame-wins: a slow consumer sees fresh frames, never a growing
backlog) and count what they drop; files deliver every frame through a bounded queue.
A live source that stops delivering is reopened with exponential backoff until
``reconnect_timeout`` runs out. Credentials in URLs are masked in every message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np

from edge_fer.errors import SourceError

__all__ = ["SourceSpec", "parse_source", "mask_url", "csi_pipeline", "FrameSource", "Frame", "SourceSet"]

log = logging.getLogger(__name__)

_URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp")


def mask_url(text: str) -> str:
    """``rtsp://user:secret@host/x`` -> ``rtsp://***@host/x`` (also inside longer text)."""
    return re.sub(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@", r"\1***@", text)


def csi_pipeline(sensor: int, width: int = 1280, height: int = 720, fps: int = 30) -> str:
    """GStreamer pipeline for a Jetson CSI camera (nvarguscamerasrc), BGR frames for OpenCV."""
    return (
        f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM),width={width},height={height},"
        f"framerate={fps}/1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
        "appsink drop=1 max-buffers=1"
    )


@dataclass(frozen=True)
class SourceSpec:
    """What ``--source`` names. ``target`` is what OpenCV opens; ``shown`` is safe to print."""

    kind: str  # camera | device | file | url | gstreamer
    target: str | int
    api: int
    live: bool
    shown: str


def parse_source(text: str, *, width: int = 1280, height: int = 720, fps: int = 30) -> SourceSpec:
    """Interpret a ``--source`` string.

    Raises:
        SourceError: empty, or a file that does not exist.
    """
    text = text.strip()
    if not text:
        raise SourceError("--source is empty; give a camera index, /dev/videoN, a file, a URL or csi://N")
    if text.isdigit():
        return SourceSpec("camera", int(text), cv2.CAP_ANY, True, f"camera {text}")
    if text.startswith("csi://"):
        sensor = text[len("csi://") :] or "0"
        if not sensor.isdigit():
            raise SourceError(f"csi source must be csi://N with a sensor number, got {text!r}")
        return SourceSpec("gstreamer", csi_pipeline(int(sensor), width, height, fps), cv2.CAP_GSTREAMER, True, text)
    if " ! " in text:
        return SourceSpec("gstreamer", text, cv2.CAP_GSTREAMER, True, "gstreamer pipeline")
    scheme = urlsplit(text).scheme.lower()
    if scheme in _URL_SCHEMES:
        return SourceSpec("url", text, cv2.CAP_FFMPEG, True, mask_url(text))
    if re.fullmatch(r"/dev/video\d+", text):
        return SourceSpec("device", text, cv2.CAP_V4L2, True, text)
    path = Path(text)
    if not path.is_file():
        raise SourceError(f"video file {text} does not exist (or name a camera index, /dev/videoN, URL, csi://N)")
    return SourceSpec("file", str(path), cv2.CAP_ANY, False, str(path))


def quiet_video_logs() -> None:
    """Silence OpenCV's and FFmpeg's own warnings (a bad file prints "moov atom not found" on
    stderr); edge-fer reports every failure itself, in one line."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    with contextlib.suppress(AttributeError):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


@dataclass
class Frame:
    index: int  # frame number delivered (0, 1, 2, ...)
    time: float  # seconds: video time for files, since start for live sources
    image: np.ndarray  # BGR uint8
    captured: float  # time.perf_counter() when it was read (for latency)
    decode_ms: float = 0.0  # time the capture thread spent reading it


_END = object()


class FrameSource:
    """Iterate frames of a source from a capture thread; use as a context manager.

    Args:
        spec: from ``parse_source``.
        reconnect_timeout: seconds a lost live source is retried before the stream ends.
        queue_size: frames buffered for file sources.
    """

    def __init__(
        self,
        spec: SourceSpec,
        *,
        reconnect_timeout: float = 30.0,
        queue_size: int = 4,
        loop: bool = False,
        arrived: threading.Event | None = None,
    ) -> None:
        self.spec = spec
        self.ended = False  # the stream's end has been read (its reason, if not a file's end, in ``error``)
        self._arrived = arrived  # set whenever a frame (or the end) is queued: one event can watch many sources
        self.loop = loop and not spec.live  # replay a file from the start when it ends (soak runs, demos)
        self.reconnect_timeout = reconnect_timeout
        self.dropped = 0  # live frames replaced before they were consumed
        self.reconnects = 0
        self.fps = 0.0
        self.size = (0, 0)
        self.error: str | None = None
        quiet_video_logs()
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=1 if spec.live else queue_size)
        self._capture = self._open()
        if self._capture is None:
            raise SourceError(f"cannot open {spec.shown}" + (": no such camera" if spec.kind == "camera" else ""))
        self.fps = self._capture.get(cv2.CAP_PROP_FPS) or 0.0
        width, height = self._capture.get(cv2.CAP_PROP_FRAME_WIDTH), self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)
        self.size = (int(width), int(height))
        self._thread = threading.Thread(target=self._read_loop, name="edge-fer-capture", daemon=True)
        self._thread.start()

    def _open(self):
        params = []
        if self.spec.kind == "url":  # a dead server must not block a read (or an open) for long
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000]
        capture = cv2.VideoCapture(self.spec.target, self.spec.api, params)
        if not capture.isOpened():
            capture.release()
            return None
        if self.spec.live:
            capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return capture

    def _put(self, item) -> None:
        if self.spec.live:
            try:
                self._queue.get_nowait()
                if item is not _END:
                    self.dropped += 1
            except queue.Empty:
                pass
            self._queue.put(item)
        else:
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
        if self._arrived is not None:
            self._arrived.set()

    def _read_loop(self) -> None:
        index, start = 0, time.perf_counter()
        fps = self.fps if self.fps > 0 else 25.0
        try:
            while not self._stop.is_set():
                began = time.perf_counter()
                ok, image = self._capture.read()
                if not ok or image is None:
                    if self.loop and index > 0:
                        self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                        ok, image = self._capture.read()
                    if not ok or image is None:
                        if not self.spec.live or not self._reconnect():
                            break
                        continue
                now = time.perf_counter()
                stamp = index / fps if not self.spec.live else now - start
                self._put(Frame(index, stamp, image, now, (now - began) * 1000))
                index += 1
        except Exception as exc:  # the consumer reports it; a capture thread must not die silently
            self.error = f"{self.spec.shown}: {mask_url(str(exc))}"
        finally:
            self._capture.release()
            self._put(_END)

    def _reconnect(self) -> bool:
        """Reopen a lost live source with backoff; False when the timeout runs out or on stop."""
        self._capture.release()
        log.warning("lost %s; reconnecting (giving up after %g s)", self.spec.shown, self.reconnect_timeout)
        deadline = time.monotonic() + self.reconnect_timeout
        delay = 0.25
        while not self._stop.is_set() and time.monotonic() < deadline:
            self._stop.wait(min(delay, max(deadline - time.monotonic(), 0)))
            capture = self._open()
            if capture is not None:
                self._capture = capture
                self.reconnects += 1
                log.warning("reconnected to %s", self.spec.shown)
                return True
            delay = min(delay * 2, 5.0)
        self.error = f"{self.spec.shown}: lost and not back within {self.reconnect_timeout:g} s"
        return False

    def __iter__(self):
        while (frame := self.read()) is not None:
            yield frame

    def read(self, timeout: float | None = None) -> Frame | None:
        """The next frame (a file's next one, a live source's newest), waiting up to ``timeout``
        seconds (None: until one comes); None when none came in time or the stream has ended
        (then ``ended`` is True)."""
        if self.ended:
            return None
        try:
            item = self._queue.get(timeout=timeout) if timeout != 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        if item is _END:
            self.ended = True
            return None
        if not self.spec.live:  # a file's frame is available once the consumer asks for it
            item.captured = time.perf_counter()
        return item

    def peek(self) -> list[Frame]:
        """A file's frames read but not yet taken, oldest first (a live source: none - its
        queued frame may yet be replaced by a newer one)."""
        if self.spec.live:
            return []
        with self._queue.mutex:
            return [item for item in self._queue.queue if item is not _END]

    def close(self) -> None:
        self._stop.set()
        try:  # unblock a file reader waiting on a full queue
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(timeout=5)

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SourceSet:
    """Several sources read together, a tick at a time (``edge-fer camera --source A --source B``).

    Each source has its own capture thread (``FrameSource``). A tick takes the next frame of
    every file (files deliver every frame) and the newest frame of every live source that has
    one since the last tick; a tick of live sources only waits until any of them has a frame.
    A source that cannot be opened or that ends (a lost camera past its reconnect timeout, a
    file's end, a broken file) leaves the others running; ``errors`` says why.

    Args:
        specs: from ``parse_source``, in stream order.
        reconnect_timeout, loop, queue_size: as ``FrameSource``.
        required: raise if a source cannot be opened (one source: the user's mistake is
            reported at once) instead of noting it in ``errors`` and going on without it.

    Raises:
        SourceError: no source could be opened (or, with ``required``, any).
    """

    def __init__(
        self,
        specs: list[SourceSpec],
        *,
        reconnect_timeout: float = 30.0,
        loop: bool = False,
        required: bool = False,
        queue_size: int = 4,
    ) -> None:
        self.specs = specs
        self.sources: dict[int, FrameSource] = {}
        self.errors: dict[int, str] = {}
        self._arrived = threading.Event()
        for stream, spec in enumerate(specs):
            try:
                self.sources[stream] = FrameSource(
                    spec, reconnect_timeout=reconnect_timeout, queue_size=queue_size, loop=loop, arrived=self._arrived
                )
            except SourceError as exc:
                if required:
                    self.close()
                    raise
                self.errors[stream] = str(exc)
                log.warning("%s; going on without it", exc)
        if not self.sources:
            raise SourceError("no source could be opened: " + "; ".join(self.errors.values()))
        self.live = {stream for stream, spec in enumerate(specs) if spec.live}

    @property
    def running(self) -> list[int]:
        """Streams that have not ended."""
        return [stream for stream, source in self.sources.items() if not source.ended]

    def tick(self, timeout: float = 0.5) -> dict[int, Frame]:
        """The next frame of each running source that has one (see the class); empty when every
        source has ended, or when live sources gave nothing within ``timeout`` seconds (the
        caller checks for a stop request and asks again)."""
        deadline = time.monotonic() + timeout
        while True:
            frames: dict[int, Frame] = {}
            self._arrived.clear()  # before reading: a frame queued after a read sets it again
            for stream in self.running:
                source = self.sources[stream]
                frame = source.read(timeout=0 if stream in self.live else None)
                if frame is not None:
                    frames[stream] = frame
                elif source.ended and source.error:
                    self.errors.setdefault(stream, source.error)
            remaining = deadline - time.monotonic()
            if frames or not self.running or remaining <= 0:
                return frames
            self._arrived.wait(remaining)

    def peek(self) -> dict[int, list[Frame]]:
        """Each running file source's frames read but not yet taken (``FrameSource.peek``)."""
        return {stream: self.sources[stream].peek() for stream in self.running if stream not in self.live}

    def close(self) -> None:
        for source in self.sources.values():
            source.close()

    def __enter__(self) -> SourceSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
