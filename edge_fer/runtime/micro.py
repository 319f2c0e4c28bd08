"""Micro-expressions in a stream: spot a brief facial motion per track, then classify it with HTNet.

A micro-expression is a small facial movement that rises and falls within about half a
second. Per track we keep the last ``window`` seconds of grey frames and landmarks. Every
few frames the window is checked, all of it warped with the *first* frame's landmarks (as
training aligns onset and apex with the onset's: per-frame landmarks jitter by a pixel or
two, which would itself look like facial motion). Its
motion profile against the first frame (``flow.motion_profile``, detrended as in
``flow.spot_apex``) must peak above ``threshold`` grey levels and fall back to below half
the peak by the window's end - a movement that comes and goes, not a head turn or a held
expression. Then onset = the window's first frame, apex = the peak, and HTNet classifies
the optical flow between them (the same flow image and 4 patches as training).
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_fer.artifacts import read_artifact
from edge_fer.errors import ArtifactError
from edge_fer.preprocessing.align import align_face, canonical_landmarks
from edge_fer.preprocessing.clips import to_model_input
from edge_fer.preprocessing.flow import ALIGN_SIZE, flow_image, motion_profile, optical_flow
from edge_fer.preprocessing.micro_input import GRID, four_patch_image
from edge_fer.runtime.backends import open_backend
from edge_fer.runtime.streaming import check_model_matches_metadata, resolve_model_path, softmax

__all__ = ["MicroModel", "MicroSpotter", "MicroEvent"]


class MicroModel:
    """An exported HTNet artifact run by a backend."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        backend: str = "auto",
        device: str | None = None,
        threads: int | None = None,
        precision: str | None = None,
        verify: bool = True,
    ) -> None:
        self.path = resolve_model_path(path)
        self.artifact = read_artifact(self.path, verify=verify)
        if self.artifact.model_kind != "htnet":
            raise ArtifactError(
                f"{self.path} holds a {self.artifact.model_kind} model; --micro-model takes an HTNet artifact"
            )
        self.preset = self.artifact.preset
        self.classes = list(self.preset.classes)
        features = self.artifact.meta.get("features") or {}
        self.flow_method = features.get("flow", "farneback")
        self.convention = self.preset.preprocessing.patch_convention or "xy"
        self.backend = open_backend(self.path, backend=backend, device=device, threads=threads, precision=precision)
        self._io = next(iter(self.artifact.inputs)), next(iter(self.artifact.outputs))
        try:
            check_model_matches_metadata(self.artifact, self.backend)
        except ArtifactError:
            self.backend.close()
            raise

    def image(self, onset_gray: np.ndarray, apex_gray: np.ndarray) -> np.ndarray:
        """HTNet's (28, 28, 3) uint8 input from two aligned grey faces."""
        picture = flow_image(optical_flow(onset_gray, apex_gray, self.flow_method))
        return four_patch_image(picture, canonical_landmarks(GRID), convention=self.convention)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        x = to_model_input(images, self.preset.preprocessing)
        logits = self.backend.infer({self._io[0]: x})[self._io[1]]
        return softmax(logits.astype(np.float64))

    def close(self) -> None:
        self.backend.close()


@dataclass
class MicroEvent:
    track: int
    label: str
    probs: np.ndarray
    onset_time: float
    apex_time: float
    motion: float  # detrended peak motion, grey levels


@dataclass
class _History:
    times: deque = field(default_factory=deque)
    frames: deque = field(default_factory=deque)  # grey frames
    landmarks: deque = field(default_factory=deque)
    quiet_until: float = -np.inf


class MicroSpotter:
    """Per-track spotting of brief facial motions.

    Args:
        model: the HTNet model.
        window: seconds of history checked (onset to offset).
        threshold: minimum detrended motion peak (mean absolute grey-level change) that counts.
        check_every: check a track's window every this many of its frames.
    """

    def __init__(self, model: MicroModel, *, window: float = 0.6, threshold: float = 2.0, check_every: int = 4) -> None:
        self.model = model
        self.window, self.threshold, self.check_every = window, threshold, check_every
        self.histories: dict[int, _History] = {}

    def push(self, track: int, time: float, frame: np.ndarray, landmarks: np.ndarray) -> None:
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        history = self.histories.setdefault(track, _History())
        history.times.append(time)
        history.frames.append(gray)
        history.landmarks.append(np.asarray(landmarks, np.float32).copy())
        while len(history.times) > 1 and history.times[0] < time - self.window:
            history.times.popleft()
            history.frames.popleft()
            history.landmarks.popleft()

    def drop(self, track: int) -> None:
        self.histories.pop(track, None)

    def reset(self) -> None:
        """Forget every track's history."""
        self.histories.clear()

    def spot(self, track: int, frame_count: int) -> MicroEvent | None:
        """Check a track's window (every ``check_every`` frames); an event if a micro-movement ended in it."""
        history = self.histories.get(track)
        if history is None or frame_count % self.check_every or len(history.times) < 5:
            return None
        times = np.asarray(history.times)
        if times[-1] - times[0] < 0.8 * self.window or times[0] < history.quiet_until:
            return None
        faces = [align_face(frame, history.landmarks[0], ALIGN_SIZE) for frame in history.frames]
        raw = motion_profile(faces)
        profile = raw - raw[-1] * np.linspace(0.0, 1.0, len(raw))  # drift, as spot_apex
        smooth = np.convolve(profile, np.ones(3) / 3, mode="same")
        apex = int(np.argmax(smooth))
        peak = float(smooth[apex])
        returned = raw[-1] <= 0.5 * max(raw[apex], 1e-6)
        if peak < self.threshold or not returned or apex in (0, len(times) - 1):
            return None
        probs = self.model.probabilities(self.model.image(faces[0], faces[apex])[None])[0]
        history.quiet_until = times[-1]  # one event per movement
        label = self.model.classes[int(np.argmax(probs))]
        return MicroEvent(track, label, probs, float(times[0]), float(times[apex]), peak)
