"""Streaming clip classification: per-track clip buffers, cached frame tokens, scheduled head.

STT splits into a per-frame backbone (face crop -> spatial tokens) and a clip head (16
frames of tokens -> logits). A video model that recomputed 16 frames for every label would
be 16x slower than it needs to be; here each face crop goes through the backbone at most
once (batched across faces, only for frames a clip actually samples) and its tokens are
cached in the track's buffer; the head runs every ``stride`` frames per face. Both parts
come from the same checkpoint, so head(backbone(frames)) is the full model (tested).

An artifact without its backbone/head pair still works: the full model then runs on the
buffered crops, which costs the whole clip per label.

Clips are made the way calibration and evaluation make them (``preprocessing.clips.window_clip``):
the last ``clip_len / fps`` seconds of the track, sampled to ``clip_len`` frames whatever
the camera's frame rate.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_fer.artifacts import Artifact, part_path, read_artifact
from edge_fer.errors import ArtifactError
from edge_fer.preprocessing.clips import clip_window, normalise, window_clip
from edge_fer.presets import ModelPreset
from edge_fer.runtime.backends import Backend, open_backend

__all__ = ["ExpressionModel", "ClipBuffer", "RefreshBudget", "Smoother", "StreamingClassifier", "find_pair", "softmax"]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def find_pair(artifact: Path) -> tuple[Path, Path] | None:
    """The backbone/head files exported beside a full model, if there are any.

    Naming, as the exporters write it (``artifacts.part_path``): ``X.onnx`` -> ``X.backbone.onnx``
    + ``X.head.onnx``, ``DIR/model.xml`` -> ``DIR/model.backbone.xml`` + ``DIR/model.head.xml``;
    OpenVINO folders exported before 0.2 hold ``DIR/backbone.xml`` + ``DIR/head.xml``.
    """
    candidates = (part_path(artifact, "backbone"), part_path(artifact, "head"))
    if artifact.suffix == ".xml" and not all(c.is_file() for c in candidates):
        candidates = (artifact.with_name("backbone.xml"), artifact.with_name("head.xml"))
    return candidates if all(c.is_file() for c in candidates) else None


def resolve_model_path(path: str | os.PathLike) -> Path:
    """An artifact path; a folder means its ``model.xml`` (OpenVINO export folder) or only .onnx."""
    path = Path(path)
    if path.is_dir():
        for name in ("model.xml", "model.onnx"):
            if (path / name).is_file():
                return path / name
        raise ArtifactError(f"{path} is a folder without model.xml or model.onnx; pass the artifact file")
    return path


class ExpressionModel:
    """An exported STT model run by a backend, as a streaming pair when the pair is there.

    Args:
        path: the full model's artifact (ONNX, OpenVINO IR or TensorRT engine) or its folder.
        backend, device, threads, precision, url: as ``open_backend``.
        streaming: use the backbone/head pair when present (default); False forces the full model.
        verify: check every file against its sidecar's sha256 (False only for ``--trust``).

    Raises:
        ArtifactError: not an STT artifact, corrupt, or a pair that does not match the model.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        backend: str = "auto",
        device: str | None = None,
        threads: int | None = None,
        precision: str | None = None,
        streaming: bool = True,
        verify: bool = True,
        url: str | None = None,
    ) -> None:
        self.path = resolve_model_path(path)
        self.artifact = read_artifact(self.path, verify=verify)
        if self.artifact.model_kind == "htnet":
            raise ArtifactError(
                f"{self.path} is an HTNet micro-expression model; pass it as --micro-model, and an STT model as --model"
            )
        if self.artifact.model_kind != "stt":
            raise ArtifactError(f"{self.path} holds a {self.artifact.model_kind} model, not an STT expression model")
        if self.artifact.part != "full":
            raise ArtifactError(f"{self.path} is the {self.artifact.part} part; pass the full model (model.xml/.onnx)")
        self.preset: ModelPreset = self.artifact.preset
        self.classes = list(self.preset.classes)
        options = dict(backend=backend, device=device, threads=threads, precision=precision, url=url)
        pair = find_pair(self.path) if streaming else None
        self.backbone = self.head = self.full = None
        if pair is not None:
            parts = [read_artifact(p, verify=verify) for p in pair]
            for part, expected in zip(parts, ("backbone", "head")):
                _check_same_model(self.artifact, part, expected)
            self.backbone = open_backend(pair[0], **options)
            # The head dominates the cost; compiled per batch size (= faces refreshed together)
            # it runs about 10% faster (OpenVINO). Not the backbone: its batch (new frames of
            # all faces) takes many sizes, each a 0.2-0.5 s compile.
            self.head = open_backend(pair[1], **options, static_shapes=True)
            self._backbone_io = _io_names(parts[0])
            self._head_io = _io_names(parts[1])
            for part, runner in zip(parts, (self.backbone, self.head)):
                check_model_matches_metadata(part, runner)
        else:
            self.full = open_backend(self.path, **options)
            self._full_io = _io_names(self.artifact)
            check_model_matches_metadata(self.artifact, self.full)
        self.backend_name = (self.full or self.backbone).name

    @property
    def streaming(self) -> bool:
        return self.backbone is not None

    def frame_tokens(self, crops: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 BGR aligned crops -> (N, ...) backbone tokens."""
        name_in, name_out = self._backbone_io
        return self.backbone.infer({name_in: normalise(crops, self.preset.preprocessing)})[name_out]

    def head_logits(self, tokens: np.ndarray) -> np.ndarray:
        """(B, T, ...) tokens -> (B, classes) logits."""
        name_in, name_out = self._head_io
        return self.head.infer({name_in: np.ascontiguousarray(tokens, dtype=np.float32)})[name_out]

    def clip_logits(self, clips: np.ndarray) -> np.ndarray:
        """(B, T, H, W, 3) uint8 BGR clips -> (B, classes) logits, by whichever path is loaded."""
        if self.streaming:
            b, t = clips.shape[:2]
            tokens = self.frame_tokens(clips.reshape(b * t, *clips.shape[2:]))
            return self.head_logits(tokens.reshape(b, t, *tokens.shape[1:]))
        name_in, name_out = self._full_io
        inputs = np.stack([normalise(clip, self.preset.preprocessing) for clip in clips])
        return self.full.infer({name_in: inputs})[name_out]

    def close(self) -> None:
        for runner in (self.backbone, self.head, self.full):
            if runner is not None:
                runner.close()


def check_model_matches_metadata(artifact: Artifact, runner: Backend) -> None:
    """The loaded model takes the inputs its sidecar describes (names, static sizes) and, for a
    full model, predicts as many classes as the preset names.

    Raises:
        ArtifactError: a sidecar that describes another model.
    """
    for name, described in artifact.inputs.items():
        actual = runner.inputs.get(name)
        if actual is None:
            raise ArtifactError(
                f"{artifact.path}: its sidecar describes input {name!r}, the model takes {sorted(runner.inputs)}; "
                "the sidecar belongs to another model - re-export"
            )
        if len(actual) != len(described) or any(
            a is not None and d is not None and a != d for a, d in zip(actual, described)
        ):
            shown = [("N" if d is None else d) for d in actual]
            raise ArtifactError(
                f"{artifact.path}: its sidecar describes input {name} as {described}, the model takes {shown}; "
                "the sidecar belongs to another model - re-export"
            )
    if artifact.part == "full":
        shape = next(iter(artifact.outputs.values()))
        if shape and shape[-1] is not None and shape[-1] != len(artifact.preset.classes):
            raise ArtifactError(
                f"{artifact.path}: {shape[-1]} outputs but the sidecar names {len(artifact.preset.classes)} classes"
            )


def _io_names(artifact: Artifact) -> tuple[str, str]:
    return next(iter(artifact.inputs)), next(iter(artifact.outputs))


def _check_same_model(full: Artifact, part: Artifact, expected: str) -> None:
    if part.part != expected:
        raise ArtifactError(f"{part.path} should be the {expected} part, its sidecar says {part.part}")
    same_source = full.meta.get("source", {}).get("sha256") == part.meta.get("source", {}).get("sha256")
    if not same_source or full.preset != part.preset or full.precision != part.precision:
        raise ArtifactError(
            f"{part.path} was not exported with {full.path} (different checkpoint, preset or precision); "
            "re-export them together"
        )


@dataclass
class ClipBuffer:
    """One track's recent frames: time, aligned crop, and backbone tokens once computed."""

    window: float  # seconds a clip spans
    times: deque = field(default_factory=deque)
    crops: deque = field(default_factory=deque)
    tokens: deque = field(default_factory=deque)
    frames_since_head: int = 0

    def push(self, time: float, crop: np.ndarray) -> None:
        self.times.append(time)
        self.crops.append(crop)
        self.tokens.append(None)
        self.frames_since_head += 1
        # keep one window (plus a frame) of history
        while len(self.times) > 1 and self.times[1] <= time - self.window:
            self.times.popleft()
            self.crops.popleft()
            self.tokens.popleft()

    def span(self) -> float:
        return self.times[-1] - self.times[0] if self.times else 0.0


class Smoother:
    """EMA of probabilities with label hysteresis: the label changes only when another class
    leads the current one by ``margin`` (no flicker between two close classes)."""

    def __init__(self, alpha: float = 0.6, margin: float = 0.1) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("smoothing alpha must be in (0, 1]")
        self.alpha, self.margin = alpha, margin
        self.probs: np.ndarray | None = None
        self.label: int | None = None

    def update(self, probs: np.ndarray) -> tuple[int, np.ndarray]:
        self.probs = probs if self.probs is None else self.alpha * probs + (1 - self.alpha) * self.probs
        best = int(np.argmax(self.probs))
        if self.label is None or self.probs[best] >= self.probs[self.label] + self.margin:
            self.label = best
        return self.label, self.probs


@dataclass
class Prediction:
    track: Hashable  # the key it was pushed with (a Pipeline uses (stream, track id))
    label: str
    probs: np.ndarray  # smoothed
    raw: np.ndarray  # this clip's own probabilities


class RefreshBudget:
    """``--stride auto``: how many faces' labels to refresh on a tick so the loop holds the
    cameras' frame rate.

    Every tick earns the time the frame budget leaves after the rest of the loop (detection,
    tracking, alignment: ``loop_ms``); refreshing a face costs its backbone frames and its
    share of the head (``face_ms``, both running means of what was measured). Refreshes are
    bought with what was earned - a token bucket holding at most ``burst`` frame budgets - so
    they spread evenly over ticks instead of arriving in bursts. A face whose label is
    ``max_age`` frames old is refreshed whatever the budget says: where even the loop alone
    cannot hold the frame rate, labels slow down to one a clip length, never stop.

    Args:
        frame_ms: the frame budget: 1000 / the fastest live source's frame rate.
        max_age: frames after which a face is refreshed regardless (default: a clip length).
        burst: frame budgets of unspent time kept.
    """

    def __init__(self, frame_ms: float, *, max_age: int = 16, burst: float = 2.0) -> None:
        if frame_ms <= 0 or max_age < 1:
            raise ValueError("the frame budget must be positive and max_age at least 1")
        self.frame_ms, self.max_age, self.burst = frame_ms, max_age, burst
        self.credit_ms = 0.0
        self.loop_ms: float | None = None
        self.face_ms: float | None = None

    def loop_took(self, ms: float) -> None:
        """A tick's time outside the head (and the backbone it needs)."""
        self.loop_ms = ms if self.loop_ms is None else 0.9 * self.loop_ms + 0.1 * ms
        self.credit_ms = min(self.credit_ms + max(self.frame_ms - self.loop_ms, 0.0), self.burst * self.frame_ms)

    def head_took(self, ms: float, faces: int) -> None:
        """A refresh of ``faces`` faces took ``ms`` (backbone frames included)."""
        if faces > 0:
            per_face = ms / faces
            self.face_ms = per_face if self.face_ms is None else 0.8 * self.face_ms + 0.2 * per_face
        self.credit_ms -= ms

    def allowance(self) -> int:
        """Faces that can be refreshed now (one while nothing has been measured yet)."""
        if self.face_ms is None:
            return 1
        return max(int(self.credit_ms // max(self.face_ms, 1e-3)), 0)


class StreamingClassifier:
    """Per-track clip buffers and the head schedule.

    Args:
        model: the expression model.
        stride: run the head for a track every this many of its frames (label refresh).
        budget: refresh by this budget instead (``--stride auto``): each tick as many faces as
            the time left over allows, oldest label first; ``stride`` is then ignored.
        min_fill: a track gets its first label once its buffer spans this fraction of the
            clip window (1.0: wait for a full clip).
        smoothing: EMA weight of the newest clip (1.0: no smoothing).
    """

    def __init__(
        self,
        model: ExpressionModel,
        *,
        stride: int = 4,
        min_fill: float = 0.5,
        smoothing: float = 0.6,
        budget: RefreshBudget | None = None,
    ) -> None:
        if stride < 1:
            raise ValueError("stride must be at least 1")
        self.model = model
        self.pre = model.preset.preprocessing
        self.window = clip_window(self.pre)
        self.stride, self.min_fill, self.smoothing = stride, min_fill, smoothing
        self.budget = budget
        self.buffers: dict[int, ClipBuffer] = {}
        self.smoothers: dict[int, Smoother] = {}
        self.backbone_frames = 0  # crops run through the backbone (for stats)
        self.nonfinite = 0  # head outputs dropped for NaN/Inf
        self._executor = None
        self._future = None
        self._pending: tuple[list[Hashable], object, float] | None = None

    def push(self, track: Hashable, time: float, crop: np.ndarray) -> None:
        self.buffers.setdefault(track, ClipBuffer(self.window)).push(time, crop)

    def drop(self, track: Hashable) -> None:
        self.buffers.pop(track, None)
        self.smoothers.pop(track, None)

    def reset(self) -> None:
        """Forget every track's clip and label (a head still running in the background is
        waited for and its result dropped)."""
        if self._future is not None:
            self._future.result()
        self._future, self._pending = None, None
        self.buffers.clear()
        self.smoothers.clear()

    def due(self, among: Iterable[Hashable] | None = None) -> list[Hashable]:
        """Tracks (of ``among``, default all) whose label is due: ``stride`` new frames and enough
        history - or, with a budget, as many as it allows this tick, oldest label first."""
        keys = self.buffers if among is None else [key for key in among if key in self.buffers]
        ready = [
            key
            for key in keys
            if self.buffers[key].frames_since_head >= (1 if self.budget else self.stride)
            and self.buffers[key].span() + 1e-9 >= self.min_fill * self.window * (1 - 1 / self.pre.clip_len)
        ]
        if self.budget is None:
            return ready
        ready.sort(key=lambda key: -self.buffers[key].frames_since_head)  # oldest label first (stable)
        allowed = self.budget.allowance()
        return [
            key
            for rank, key in enumerate(ready)
            if rank < allowed or self.buffers[key].frames_since_head >= self.budget.max_age
        ]

    def clip_positions(self, track: Hashable) -> np.ndarray:
        """Buffer positions of the clip that ends at the track's newest frame."""
        buffer = self.buffers[track]
        times = np.asarray(buffer.times)
        return window_clip(times, times[-1], self.pre)

    def classify(self, tracks: list[Hashable]) -> list[Prediction]:
        """Run the head (and the backbone for frames not yet seen) for ``tracks`` in one batch."""
        if not tracks:
            return []
        clock = time.perf_counter()
        inputs = self._clip_inputs(tracks)
        for track in tracks:
            self.buffers[track].frames_since_head = 0
        logits = self._head_or_full(inputs)
        if self.budget is not None:
            self.budget.head_took((time.perf_counter() - clock) * 1000, len(tracks))
        return self._predict(tracks, logits)

    # Asynchronous head: the frame loop hands the clip tokens to a worker thread and goes on
    # with the next frames; the backends release the GIL while they compute, so on a 2-core
    # CPU the head runs beside detection/tracking/backbone instead of stalling them.
    @property
    def busy(self) -> bool:
        return self._future is not None and not self._future.done()

    def submit(self, tracks: list[Hashable], context: object = None) -> bool:
        """Start the head for ``tracks`` in the background; False if one is still running."""
        if not tracks or self.busy or self._future is not None:
            return False
        from concurrent.futures import ThreadPoolExecutor

        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-fer-head")
        clock = time.perf_counter()
        inputs = self._clip_inputs(tracks)
        for track in tracks:
            self.buffers[track].frames_since_head = 0
        self._future = self._executor.submit(self._timed_head, inputs)
        self._pending = (tracks, context, (time.perf_counter() - clock) * 1000)
        return True

    def collect(self, wait: bool = False) -> tuple[list[Prediction], object]:
        """Predictions of the finished background head (empty while it runs), and its context."""
        if self._future is None or (not wait and not self._future.done()):
            return [], None
        logits, head_ms = self._future.result()
        tracks, context, inputs_ms = self._pending
        self._future, self._pending = None, None
        if self.budget is not None:
            self.budget.head_took(inputs_ms + head_ms, len(tracks))
        return self._predict([t for t in tracks if t in self.buffers], logits, tracks), context

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _clip_inputs(self, tracks: list[Hashable]) -> np.ndarray:
        """Tokens (streaming) or crops (full model) of each track's current clip, stacked."""
        positions = {track: self.clip_positions(track) for track in tracks}
        if self.model.streaming:
            pending = [
                (t, int(i)) for t in tracks for i in np.unique(positions[t]) if self.buffers[t].tokens[i] is None
            ]
            if pending:
                crops = np.stack([self.buffers[t].crops[i] for t, i in pending])
                tokens = self.model.frame_tokens(crops)
                self.backbone_frames += len(pending)
                for (t, i), token in zip(pending, tokens):
                    self.buffers[t].tokens[i] = token
            return np.stack([np.stack([self.buffers[t].tokens[i] for i in positions[t]]) for t in tracks])
        return np.stack([np.stack([self.buffers[t].crops[i] for i in positions[t]]) for t in tracks])

    def _timed_head(self, inputs: np.ndarray) -> tuple[np.ndarray, float]:
        clock = time.perf_counter()
        logits = self._head_or_full(inputs)
        return logits, (time.perf_counter() - clock) * 1000

    def _head_or_full(self, inputs: np.ndarray) -> np.ndarray:
        return self.model.head_logits(inputs) if self.model.streaming else self.model.clip_logits(inputs)

    def _predict(
        self, tracks: list[Hashable], logits: np.ndarray, order: list[Hashable] | None = None
    ) -> list[Prediction]:
        rows = dict(zip(order or tracks, softmax(logits.astype(np.float64))))
        predictions = []
        for track in tracks:
            row = rows[track]
            if not np.all(np.isfinite(row)):  # a broken model or input: no label rather than a wrong one
                self.nonfinite += 1
                continue
            smoother = self.smoothers.setdefault(track, Smoother(self.smoothing))
            label, probs = smoother.update(row)
            predictions.append(Prediction(track, self.model.classes[label], probs.copy(), row))
        return predictions
