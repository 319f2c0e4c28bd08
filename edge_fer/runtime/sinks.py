"""Where results go: a JSONL events file, an annotated MP4, an overlay window.

The events file is written one whole line at a time and flushed, so it is valid JSONL at
any moment a run is stopped. The MP4 is written under a temporary name and renamed when
the run ends, so the named file is never a half-written video.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_fer.errors import BackendError
from edge_fer.fileio import check_writable

__all__ = ["EventLog", "Recorder", "Display", "draw_overlay", "format_event"]


# Decimals kept per event field in JSON: ~1 ms, a tenth of a pixel, 4 digits of probability.
_DECIMALS = {"t": 3, "onset_t": 3, "apex_t": 3, "latency_ms": 2, "label_age_ms": 1, "motion": 2, "box": 1, "probs": 4}


def format_event(event: dict[str, Any]) -> dict[str, Any]:
    """An event as written to JSON: times, boxes and probabilities rounded to what they mean."""
    out = {}
    for key, value in event.items():
        places = _DECIMALS.get(key)
        if places is None:
            out[key] = value
        elif isinstance(value, dict):
            out[key] = {k: round(float(v), places) for k, v in value.items()}
        elif isinstance(value, (list, tuple)):
            out[key] = [round(float(v), places) for v in value]
        else:
            out[key] = round(float(value), places)
    return out


class EventLog:
    """Append events as JSON lines. ``write`` never raises for a full/unwritable disk: it
    warns once (``failed`` holds the reason) and the run goes on."""

    def __init__(self, path: str | os.PathLike, *, force: bool = False) -> None:
        self.path = Path(path)
        check_writable(self.path, force=force)
        self.file = open(self.path, "w", encoding="utf-8")
        self.count = 0
        self.failed: str | None = None

    def write(self, event: dict[str, Any]) -> None:
        if self.failed:
            return
        try:
            self.file.write(json.dumps(format_event(event), separators=(",", ":")) + "\n")
            self.file.flush()
            self.count += 1
        except OSError as exc:
            self.failed = f"events file {self.path}: {exc.strerror or exc}"

    def close(self) -> None:
        if self.file.closed:
            return
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
        except OSError as exc:
            self.failed = self.failed or f"events file {self.path}: {exc.strerror or exc}"
        finally:
            try:
                self.file.close()
            except OSError as exc:  # what the buffer still held could not be written
                self.failed = self.failed or f"events file {self.path}: {exc.strerror or exc}"


class Recorder:
    """Annotated MP4 (mp4v), opened on the first frame; renamed into place on ``close``.

    OpenCV's writer reports no errors - a full disk or a file-size limit silently yields a
    video without its index. So the recorder watches the room left for the file (free disk
    space, and the process's file-size limit) and stops *before* it runs out, leaving room
    to finish the file: what was recorded stays a playable video. ``close`` opens the result
    to check it before renaming it into place.
    """

    CHECK_EVERY = 10  # frames between checks of the room left (a statvfs call: microseconds)

    def __init__(self, path: str | os.PathLike, fps: float, *, force: bool = False) -> None:
        self.path = Path(path)
        check_writable(self.path, force=force)
        self.partial = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mp4'}")
        self.fps = fps if fps > 0 else 25.0
        self.writer: cv2.VideoWriter | None = None
        self.frames = 0
        self.finished = False  # no more frames once the file is finalised
        self.failed: str | None = None
        self.size_limit = _file_size_limit()  # a process property: read once

    def write(self, frame: np.ndarray) -> None:
        if self.failed or self.finished:
            return
        if self.writer is None:
            height, width = frame.shape[:2]
            self.writer = cv2.VideoWriter(str(self.partial), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
            if not self.writer.isOpened():
                self.failed = f"cannot write video {self.path} (no mp4v encoder or unwritable folder)"
                return
        self.writer.write(frame)
        self.frames += 1
        if self.frames % self.CHECK_EVERY == 0:
            size = _size(self.partial)
            room, what = self._room_left(size)
            if room < self._room_needed(size):
                self.failed = f"video {self.path}: {what}; recording stopped after {self.frames} frames (kept)"
                self._finish()

    def _room_left(self, size: int) -> tuple[int, str]:
        """Bytes the file (now ``size`` bytes) can still grow by, and what limits it."""
        room, what = _free_bytes(self.partial.parent), "disk nearly full"
        if self.size_limit is not None and self.size_limit - size < room:
            room, what = self.size_limit - size, f"file-size limit ({self.size_limit} bytes) nearly reached"
        return room, what

    def _room_needed(self, size: int) -> int:
        """Room to keep going for a while and still finish the file: the muxer's buffer and
        the index (about 16 bytes a frame), plus 50 frames at the rate so far."""
        per_frame = size / self.frames if size else 0.0
        return 2 * 2**20 + 16 * self.frames + int(50 * per_frame)

    def _finish(self) -> None:
        """Finalise the video and rename it into place if it plays back; else remove it."""
        if self.finished or self.writer is None:
            return
        self.finished = True
        self.writer.release()
        try:
            readable = self.frames and _video_frames(self.partial) > 0
            if readable:
                os.replace(self.partial, self.path)
            else:
                self.partial.unlink(missing_ok=True)
                if self.frames:
                    self.failed = self.failed or f"video {self.path}: could not be finalised (disk full?); removed"
        except OSError as exc:
            self.failed = self.failed or f"video {self.path}: {exc.strerror or exc}"

    def close(self) -> None:
        self._finish()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _free_bytes(folder: Path) -> int:
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):  # no statvfs (Windows): assume space
        return 2**62
    return stats.f_bavail * stats.f_frsize


def _file_size_limit() -> int | None:
    """The soft RLIMIT_FSIZE in bytes, None when unlimited (or on Windows)."""
    try:
        import resource
    except ImportError:
        return None
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def _video_frames(path: Path) -> int:
    """Frames a video file says it holds (0 when it cannot be opened: no index written)."""
    capture = cv2.VideoCapture(str(path))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()


class Display:
    """An OpenCV window; needs the GUI build of OpenCV (the headless one has no windows)."""

    def __init__(self, title: str = "edge-fer") -> None:
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise BackendError(
                "--display needs OpenCV with GUI support (pip install 'opencv-python<5' instead of the headless "
                "build, or JetPack's OpenCV); use --headless"
            ) from None

    def show(self, frame: np.ndarray) -> bool:
        """Show a frame; False when the user pressed q or Esc."""
        cv2.imshow(self.title, frame)
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    def close(self) -> None:
        cv2.destroyWindow(self.title)


_COLOURS = [(86, 180, 233), (230, 159, 0), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0), (204, 121, 167)]


def draw_overlay(frame: np.ndarray, faces: list[dict[str, Any]], status: str = "") -> np.ndarray:
    """Boxes, track IDs and labels drawn on a copy of the frame.

    ``faces``: dicts with ``track``, ``box`` and optionally ``label``, ``score``, ``micro``.
    """
    out = frame.copy()
    for face in faces:
        colour = _COLOURS[face["track"] % len(_COLOURS)]
        x1, y1, x2, y2 = (int(round(v)) for v in face["box"])
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        text = f"#{face['track']}"
        if face.get("label"):
            text += f" {face['label']} {face.get('score', 0.0):.2f}"
        if face.get("micro"):
            text += f" | micro: {face['micro']}"
        cv2.putText(out, text, (x1, max(y1 - 6, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    if status:
        cv2.putText(out, status, (8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out
