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
from edge_fer.runtime.backends import Pending
from edge_fer.runtime.detection import Detections, FaceDetector
from edge_fer.runtime.micro import MicroSpotter
from edge_fer.runtime.sources import Frame
from edge_fer.runtime.streaming import StreamingClassifier
from edge_fer.runtime.tracker import FaceTracker

__all__ = ["PipelineConfig", "Pipeline", "MultiPipeline", "FrameResult", "STAGES", "as_bgr8", "head_step"]

STAGES = ("decode", "detect", "track", "align", "infer", "micro", "post")


@dataclass
class PipelineConfig:
    """The frame loop's knobs (the label schedule - stride, first-label fill, smoothing - is
    the ``StreamingClassifier``'s)."""

    detect_every: int = 5  # run the detector every N frames; follow faces by flow in between
    max_faces: int = 8
    max_missed: int = 30  # frames a track survives unseen
    async_head: bool = False  # run the clip head in a worker thread beside the frame loop
    detect_ahead: bool = True  # start a file's next due detection a tick early (MultiPipeline)


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


@dataclass
class _Observed:
    """One frame after detection, tracking and alignment: what the head step and ``finish`` need."""

    frame: Frame
    gray: np.ndarray
    visible: list
    stage: dict[str, float]
    detected: bool


class Pipeline:
    """Everything between a decoded frame and its events, for one source.

    Args:
        detector: face detector.
        classifier: streaming expression classifier (None: track only).
        micro: micro-expression spotter (optional).
        config: runtime knobs.
        owns: what ``close()`` closes besides the classifier (``open_pipeline`` passes the
            models and the detector it opened).
        stream: this source's number: its tracks are ``(stream, track)`` in the classifier and
            the spotter, so several pipelines can share them (``MultiPipeline``).
        name: the source as shown to users; when given, every event carries it as ``source``.
    """

    def __init__(
        self,
        detector: FaceDetector,
        classifier: StreamingClassifier | None,
        *,
        micro: MicroSpotter | None = None,
        config: PipelineConfig | None = None,
        owns: tuple = (),
        stream: int = 0,
        name: str | None = None,
    ) -> None:
        self.config = config or PipelineConfig()
        self._owned = owns
        self.detector = detector
        self.classifier = classifier
        self.micro = micro
        self.stream, self.name = stream, name
        self.tracker = FaceTracker(max_faces=self.config.max_faces, max_missed=self.config.max_missed)
        self.labels: dict[int, tuple[str, float]] = {}
        self.labelled_at: dict[int, tuple[int, float]] = {}  # track -> (frame, time) of its label
        self.micro_labels: dict[int, str] = {}
        self.frames_per_track: dict[int, int] = {}
        self.tracks_opened = 0
        self.tracks_closed = 0

    def sibling(self, stream: int, name: str | None = None) -> Pipeline:
        """A pipeline for another source over the same detector and models (owning neither)."""
        return Pipeline(
            self.detector, self.classifier, micro=self.micro, config=self.config, stream=stream, name=name
        )

    def reset(self) -> None:
        """Start over on a new video: tracks, clips and labels are forgotten; counters stay."""
        self.tracker.reset()
        self.labels.clear()
        self.labelled_at.clear()
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
        began = time.perf_counter()
        seen = self.observe(frame)
        predictions, origin = [], frame
        if self.classifier is not None:
            clock = time.perf_counter()
            predictions, started = head_step(self.classifier, self.due(seen), frame, self.config.async_head)
            if predictions and started is not None:
                origin = started
            seen.stage["infer"] = _since(clock)
        result = self.finish(seen, predictions, origin)
        _loop_took(self.classifier, _since(began) - seen.stage["infer"])
        return result

    def observe(self, frame: Frame, started: Pending[Detections] | None = None) -> _Observed:
        """Detect (every ``detect_every`` frames), track, align, and push each face's crop to its
        clip. ``started``: this frame's detection, started earlier (``DetectionAhead``)."""
        stage = dict.fromkeys(STAGES, 0.0)
        stage["decode"] = frame.decode_ms
        image = as_bgr8(frame.image)
        detections: Detections | None = None
        detected = self.due_for_detection(frame)
        clock = time.perf_counter()
        if detected:
            detections = started.result() if started is not None else self.detector.detect(image)
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
                crop = align_face(image, track.landmarks, pre.input_size[0])
                self.classifier.push((self.stream, track.id), frame.time, crop)
        stage["align"] = _since(clock)
        return _Observed(frame, gray, visible, stage, detected)

    def due_for_detection(self, frame: Frame) -> bool:
        return frame.index % self.config.detect_every == 0

    def due(self, seen: _Observed) -> list[tuple[int, int]]:
        """Classifier keys of this frame's visible faces whose label is due."""
        return self.classifier.due([(self.stream, t.id) for t in seen.visible])

    def finish(self, seen: _Observed, predictions: list, origin: Frame) -> FrameResult:
        """Events from the head's predictions (those for faces still visible) and the micro
        spotter; ``origin`` is the frame the predictions' clips ended on."""
        frame, stage = seen.frame, seen.stage
        events: list[dict[str, Any]] = []
        event_origin: dict[int, Frame] = {}  # event -> the frame its clip ended on (async: an earlier one)
        boxes = {t.id: t.box for t in seen.visible}
        if self.classifier is not None:
            clock = time.perf_counter()
            for prediction in predictions:
                track = prediction.track[1]
                if track not in boxes:  # left while its head ran
                    continue
                score = float(prediction.probs[self.classifier.model.classes.index(prediction.label)])
                self.labels[track] = (prediction.label, score)
                event = self._event(frame, track, boxes[track], "expression", prediction.label) | {
                    "probs": _probs(self.classifier.model.classes, prediction.probs),
                    "clip_end": origin.index,
                }
                if track in self.labelled_at:  # how old the label it replaces had grown
                    last_frame, last_time = self.labelled_at[track]
                    event["label_age_frames"] = frame.index - last_frame
                    event["label_age_ms"] = (frame.time - last_time) * 1000
                self.labelled_at[track] = (frame.index, frame.time)
                events.append(event)
                event_origin[id(events[-1])] = origin
            stage["post"] = _since(clock)
        if self.micro is not None:
            clock = time.perf_counter()
            for track in seen.visible:
                self.micro.push((self.stream, track.id), frame.time, seen.gray, track.landmarks)
                found = self.micro.spot((self.stream, track.id), self.frames_per_track[track.id])
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
        for track in seen.visible:
            face = {"track": track.id, "box": _box(track.box)}
            if track.id in self.labels:
                face["label"], face["score"] = self.labels[track.id]
                labelled_frame, labelled_time = self.labelled_at[track.id]
                face["label_age_frames"] = frame.index - labelled_frame
                face["label_age_ms"] = (frame.time - labelled_time) * 1000
            if track.id in self.micro_labels:
                face["micro"] = self.micro_labels[track.id]
            faces.append(face)
        return FrameResult(frame.index, frame.time, faces, events, stage, seen.detected)

    def _event(self, frame: Frame, track: int, box: np.ndarray, kind: str, label: str) -> dict[str, Any]:
        event = {} if self.name is None else {"source": self.name}
        return event | {
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
        self.labelled_at.pop(track, None)
        self.micro_labels.pop(track, None)
        self.frames_per_track.pop(track, None)
        if self.classifier is not None:
            self.classifier.drop((self.stream, track))
        if self.micro is not None:
            self.micro.drop((self.stream, track))


def head_step(classifier: StreamingClassifier, due: list, context: Any, async_head: bool) -> tuple[list, Any]:
    """One tick of the head for the ``due`` clip keys: run it now (sync), or collect the one
    running in the background and start the next (async). Returns the predictions and the
    ``context`` they were started with (sync: this one; async: the earlier tick's, None
    while no head has finished)."""
    if not async_head:
        return classifier.classify(due), context
    predictions, started = classifier.collect()
    if not classifier.busy:
        classifier.submit(due, context)
    return predictions, started


class MultiPipeline:
    """Several sources in one process: a ``Pipeline`` (tracker, labels) per source over one
    detector and one classifier, whose backbone and head batch the due faces of every source
    together, as they batch the faces of one source.

    Args:
        first: the pipeline ``open_pipeline`` opened (it owns the models; ``close()`` closes it).
        names: the sources as shown to users, in stream order (``first`` becomes stream 0).
    """

    def __init__(self, first: Pipeline, names: list[str]) -> None:
        first.stream, first.name = 0, names[0]
        self.pipelines = [first] + [first.sibling(i, name) for i, name in enumerate(names[1:], 1)]
        self.classifier = first.classifier
        self.config = first.config
        self._held: dict[int, list] = {}  # async predictions for a source absent from the tick they came in
        self._held_origin: dict[int, Frame] = {}
        self.ahead = DetectionAhead(first.detector, first.due_for_detection) if self.config.detect_ahead else None

    def process(
        self, frames: dict[int, Frame], upcoming: dict[int, list[Frame]] | None = None
    ) -> dict[int, FrameResult]:
        """One tick: a frame from some (or all) sources -> each one's ``FrameResult``. The head's
        time is split evenly over the tick's sources. ``upcoming``: each file source's frames
        read but not yet taken (``SourceSet.peek``), whose next due detection is started now to
        run beside this tick's work."""
        began = time.perf_counter()
        detecting: dict[int, Pending[Detections] | None] = dict.fromkeys(frames)
        ahead_ms = 0.0
        if self.ahead is not None:
            detecting = {stream: self.ahead.take(stream, frame.index) for stream, frame in frames.items()}
            if upcoming:
                clock = time.perf_counter()
                self.ahead.start_next(upcoming, frames)
                ahead_ms = _since(clock)
        seen = {stream: self.pipelines[stream].observe(frame, detecting[stream]) for stream, frame in frames.items()}
        for observed in seen.values():
            observed.stage["detect"] += ahead_ms / len(seen)
        by_stream: dict[int, list] = {stream: self._held.pop(stream, []) for stream in frames}
        origins: dict[int, Frame] = {s: self._held_origin.pop(s, frame) for s, frame in frames.items()}
        if self.classifier is not None:
            clock = time.perf_counter()
            due = self.classifier.due(
                [(stream, track.id) for stream, observed in seen.items() for track in observed.visible]
            )
            predictions, started = head_step(self.classifier, due, dict(frames), self.config.async_head)
            for prediction in predictions:
                stream = prediction.track[0]
                if stream in by_stream:
                    by_stream[stream].append(prediction)
                    origins[stream] = started[stream]
                else:  # its source gave no frame this tick: deliver with its next one
                    self._held.setdefault(stream, []).append(prediction)
                    self._held_origin[stream] = started[stream]
            head_ms = _since(clock)
            for observed in seen.values():
                observed.stage["infer"] = head_ms / len(frames)
        results = {
            stream: self.pipelines[stream].finish(seen[stream], by_stream[stream], origins[stream])
            for stream in frames
        }
        if self.classifier is not None:
            _loop_took(self.classifier, _since(began) - head_ms)
        return results

    def close(self) -> None:
        self.pipelines[0].close()

    def __enter__(self) -> MultiPipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class DetectionAhead:
    """Detection started a tick before its frame is processed (``MultiPipeline``).

    Each tick starts the detector on the earliest due frame among those the file sources have
    read but the loop has not taken yet; OpenVINO runs it on its own threads, with no Python
    thread behind it, while the loop tracks, aligns and classifies this tick's frames. One
    detection in flight, on the detector's one request, started and collected only by the
    loop's thread: no second request, nothing shared between threads (a pool of requests started
    from the capture threads doubled the peak RSS and deadlocked in OpenVINO 2026.4;
    docs/benchmarks.md). Where the detector's backend runs inference in the caller (ONNX
    Runtime) this is the same work, moved a tick earlier.
    """

    def __init__(self, detector: FaceDetector, due) -> None:
        self.detector, self.due = detector, due
        self.started: dict[tuple[int, int], Pending[Detections]] = {}
        self.used = 0  # detections taken from here rather than run on their own frame's tick

    def take(self, stream: int, index: int) -> Pending[Detections] | None:
        """The detection started for this frame, if any; forgets the stream's older ones (a
        frame that never came)."""
        for key in [key for key in self.started if key[0] == stream and key[1] < index]:
            del self.started[key]
        found = self.started.pop((stream, index), None)
        self.used += found is not None
        return found

    def start_next(self, upcoming: dict[int, list[Frame]], taken: dict[int, Frame]) -> None:
        """Start the earliest due frame in ``upcoming`` not started yet (ties: lowest stream)."""
        candidates = [
            (frame.index, stream, frame)
            for stream, frames in upcoming.items()
            for frame in frames
            if self.due(frame)
            and (stream, frame.index) not in self.started
            and (stream not in taken or frame.index > taken[stream].index)
        ]
        if not candidates:
            return
        index, stream, frame = min(candidates, key=lambda c: (c[0], c[1]))
        try:
            image = as_bgr8(frame.image)
        except SourceError:
            return  # an unusable frame: the loop skips it when it comes
        self.started[(stream, index)] = self.detector.start(image)


def _loop_took(classifier: StreamingClassifier | None, ms: float) -> None:
    if classifier is not None and classifier.budget is not None:
        classifier.budget.loop_took(ms)


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
    # age of every label shown (a labelled face on a frame): frames and ms, most recent 10,000
    label_ages: np.ndarray = field(default_factory=lambda: np.zeros((10_000, 2), np.float32))
    labels_shown: int = 0

    def add(self, result: FrameResult, frame_ms: float) -> None:
        for face in result.faces:
            if "label_age_frames" in face:
                self.label_ages[self.labels_shown % len(self.label_ages)] = (
                    face["label_age_frames"],
                    face["label_age_ms"],
                )
                self.labels_shown += 1
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

    def label_age(self) -> dict[str, float] | None:
        """p50/p99/max age of the labels shown, in frames and ms (None before any label)."""
        if not self.labels_shown:
            return None
        ages = self.label_ages[: min(self.labels_shown, len(self.label_ages))]
        out = {}
        for column, unit in enumerate(("frames", "ms")):
            values = ages[:, column]
            for name, value in (("p50", np.percentile(values, 50)), ("p99", np.percentile(values, 99))):
                out[f"{unit}_{name}"] = round(float(value), 1)
            out[f"{unit}_max"] = round(float(values.max()), 1)
        return out

    def mean_ms(self) -> dict[str, float]:
        return {name: round(total / max(self.frames, 1), 3) for name, total in self.totals.items()}
