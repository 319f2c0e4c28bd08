"""The per-frame pipeline: detect (every N frames) -> track -> align -> buffer -> classify -> events.

``Pipeline.process(frame)`` does one frame and returns what it found, with the time each
stage took; ``runtime.camera.run_camera`` (``edge-fer camera``) and the benchmarks drive it.
Results hold plain values at full precision; rounding for JSON is the events sink's
(``sinks.format_event``). No torch, no threads of its own (the source decodes in its own
thread).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from edge_fer.errors import SourceError
from edge_fer.preprocessing.align import align_face
from edge_fer.runtime.detection import FaceDetector
from edge_fer.runtime.micro import MicroSpotter
from edge_fer.runtime.sources import Frame
from edge_fer.runtime.streaming import StreamingClassifier
from edge_fer.runtime.tracker import FaceTracker

__all__ = ["PipelineConfig", "Pipeline", "FrameResult", "STAGES", "as_bgr8"]

STAGES = ("decode", "detect", "track", "align", "infer", "micro", "post")


@dataclass
class PipelineConfig:
    """The frame loop's knobs (the label schedule - stride, first-label fill, smoothing - is
    the ``StreamingClassifier``'s)."""

    detect_every: int = 5  # run the detector every N frames; follow faces by flow in between
    max_faces: int = 8
    max_missed: int = 30  # frames a track survives unseen
    async_head: bool = False  # run the clip head in a worker thread beside the frame loop


@dataclass
class FrameResult:
    frame: int
    time: float
    faces: list[dict[str, Any]]  # visible tracks: track, box, label/score when known
    events: list[dict[str, Any]]
    stage_ms: dict[str, float]
    detected: bool


def as_bgr8(image: np.ndarray) -> np.ndarray:
    """Any frame a source can give (grey, BGRA, 16-bit) as (H, W, 3) uint8 BGR.

    Raises:
        SourceError: empty or not an image.
    """
    if image is None or image.size == 0 or image.ndim not in (2, 3):
        raise SourceError(f"frame is not an image (shape {getattr(image, 'shape', None)})")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(np.nan_to_num(image.astype(np.float32)), 0, 255).astype(np.uint8)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.shape[2] != 3:
        raise SourceError(f"frame has {image.shape[2]} channels; expected 1, 3 or 4")
    return image


def _box(box: np.ndarray) -> list[float]:
    return [float(v) for v in box]


class Pipeline:
    """Everything between a decoded frame and its events.

    Args:
        detector: face detector.
        classifier: streaming expression classifier (None: track only).
        micro: micro-expression spotter (optional).
        config: runtime knobs.
        owns: what ``close()`` closes besides the classifier (``open_pipeline`` passes the
            models and the detector it opened).
    """

    def __init__(
        self,
        detector: FaceDetector,
        classifier: StreamingClassifier | None,
        *,
        micro: MicroSpotter | None = None,
        config: PipelineConfig | None = None,
        owns: tuple = (),
    ) -> None:
        self.config = config or PipelineConfig()
        self._owned = owns
        self.detector = detector
        self.classifier = classifier
        self.micro = micro
        self.tracker = FaceTracker(max_faces=self.config.max_faces, max_missed=self.config.max_missed)
        self.labels: dict[int, tuple[str, float]] = {}
        self.micro_labels: dict[int, str] = {}
        self.frames_per_track: dict[int, int] = {}
        self.tracks_opened = 0
        self.tracks_closed = 0

    def reset(self) -> None:
        """Start over on a new video: tracks, clips and labels are forgotten; counters stay."""
        self.tracker.reset()
        self.labels.clear()
        self.micro_labels.clear()
        self.frames_per_track.clear()
        for part in (self.classifier, self.micro):
            if part is not None:
                part.reset()

    def close(self) -> None:
        """Stop the background head and close what this pipeline owns (models, detector)."""
        if self.classifier is not None:
            self.classifier.close()
        for thing in reversed(self._owned):
            thing.close()
        self._owned = ()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def process(self, frame: Frame) -> FrameResult:
        stage = dict.fromkeys(STAGES, 0.0)
        stage["decode"] = frame.decode_ms
        image = as_bgr8(frame.image)
        detections = None
        detected = frame.index % self.config.detect_every == 0
        clock = time.perf_counter()
        if detected:
            detections = self.detector.detect(image)
            stage["detect"] = _since(clock)
        clock = time.perf_counter()
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        visible = self.tracker.update(frame.index, gray, detections)
        for track in self.tracker.drain_closed():
            self._forget(track.id)
        stage["track"] = _since(clock)

        pre = self.classifier.pre if self.classifier else None
        clock = time.perf_counter()
        for track in visible:
            if track.id not in self.frames_per_track:
                self.tracks_opened += 1
            self.frames_per_track[track.id] = self.frames_per_track.get(track.id, 0) + 1
            if self.classifier is not None:
                self.classifier.push(track.id, frame.time, align_face(image, track.landmarks, pre.input_size[0]))
        stage["align"] = _since(clock)

        events: list[dict[str, Any]] = []
        event_origin: dict[int, Frame] = {}  # event -> the frame its clip ended on (async: an earlier one)
        boxes = {t.id: t.box for t in visible}
        if self.classifier is not None:
            clock = time.perf_counter()
            origin = frame
            if self.config.async_head:
                # results of the head started on an earlier frame; then start the next one
                predictions, started = self.classifier.collect()
                if predictions:
                    origin = started
                if not self.classifier.busy:
                    self.classifier.submit([t for t in self.classifier.due() if t in boxes], frame)
            else:
                predictions = self.classifier.classify([t for t in self.classifier.due() if t in boxes])
            stage["infer"] = _since(clock)
            clock = time.perf_counter()
            for prediction in predictions:
                if prediction.track not in boxes:  # left while its head ran
                    continue
                score = float(prediction.probs[self.classifier.model.classes.index(prediction.label)])
                self.labels[prediction.track] = (prediction.label, score)
                events.append(
                    self._event(frame, prediction.track, boxes[prediction.track], "expression", prediction.label)
                    | {"probs": _probs(self.classifier.model.classes, prediction.probs), "clip_end": origin.index}
                )
                event_origin[id(events[-1])] = origin
            stage["post"] = _since(clock)
        if self.micro is not None:
            clock = time.perf_counter()
            for track in visible:
                self.micro.push(track.id, frame.time, gray, track.landmarks)
                found = self.micro.spot(track.id, self.frames_per_track[track.id])
                if found is not None:
                    self.micro_labels[track.id] = found.label
                    events.append(
                        self._event(frame, track.id, track.box, "micro", found.label)
                        | {
                            "probs": _probs(self.micro.model.classes, found.probs),
                            "onset_t": float(found.onset_time),
                            "apex_t": float(found.apex_time),
                            "motion": float(found.motion),
                        }
                    )
            stage["micro"] = _since(clock)
        now = time.perf_counter()
        for event in events:
            # from the moment the clip's newest frame was available to this event
            event["latency_ms"] = (now - event_origin.get(id(event), frame).captured) * 1000
        faces = []
        for track in visible:
            face = {"track": track.id, "box": _box(track.box)}
            if track.id in self.labels:
                face["label"], face["score"] = self.labels[track.id]
            if track.id in self.micro_labels:
                face["micro"] = self.micro_labels[track.id]
            faces.append(face)
        return FrameResult(frame.index, frame.time, faces, events, stage, detected)

    def _event(self, frame: Frame, track: int, box: np.ndarray, kind: str, label: str) -> dict[str, Any]:
        return {
            "t": float(frame.time),
            "frame": frame.index,
            "track": track,
            "box": _box(box),
            "kind": kind,
            "label": label,
        }

    def _forget(self, track: int) -> None:
        self.tracks_closed += 1
        self.labels.pop(track, None)
        self.micro_labels.pop(track, None)
        self.frames_per_track.pop(track, None)
        if self.classifier is not None:
            self.classifier.drop(track)
        if self.micro is not None:
            self.micro.drop(track)


def _since(clock: float) -> float:
    return (time.perf_counter() - clock) * 1000


def _probs(classes: list[str], probs: np.ndarray) -> dict[str, float]:
    return {name: float(p) for name, p in zip(classes, probs)}


@dataclass
class StageStats:
    """Running per-stage timing and frame counts for the stats line and the summary."""

    frames: int = 0
    faces: int = 0
    events: int = 0
    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    # A camera runs for weeks: frame times go into a fixed ring (percentiles over the most
    # recent 10,000 frames), never a growing list.
    ring: np.ndarray = field(default_factory=lambda: np.zeros(10_000, np.float32))
    interval_ms: list[float] = field(default_factory=list)  # since the caller last cleared it

    def add(self, result: FrameResult, frame_ms: float) -> None:
        self.frames += 1
        self.faces += len(result.faces)
        self.events += len(result.events)
        for name, value in result.stage_ms.items():
            self.totals[name] += value
        self.ring[(self.frames - 1) % len(self.ring)] = frame_ms
        self.interval_ms.append(frame_ms)

    @property
    def frame_ms(self) -> np.ndarray:
        """Frame times of the most recent frames (up to 10,000)."""
        return self.ring[: min(self.frames, len(self.ring))]

    def mean_ms(self) -> dict[str, float]:
        return {name: round(total / max(self.frames, 1), 3) for name, total in self.totals.items()}
