"""The camera loop as a library: ``open_pipeline`` and ``open_source`` for a few lines of
Python, ``run_camera(CameraConfig(...))`` for the whole ``edge-fer camera`` run (sinks,
stats, signals) that the CLI only parses flags into.

    from edge_fer.runtime import open_pipeline, open_source

    with open_pipeline("exports/stt_tiny") as pipeline:
        for frame in open_source("clip.mp4"):
            for event in pipeline.process(frame).events:
                print(event["track"], event["label"], round(event["probs"][event["label"]], 2))

Runs without torch: numpy, OpenCV and one backend. Ctrl-C or SIGTERM stops ``run_camera``
cleanly (the events file stays valid JSONL, the recording is finalised); a second signal
exits at once.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_fer.errors import SourceError
from edge_fer.runtime.detection import open_face_detector
from edge_fer.runtime.memory import peak_rss_mib, rss_mib
from edge_fer.runtime.micro import MicroModel, MicroSpotter
from edge_fer.runtime.pipeline import MultiPipeline, Pipeline, PipelineConfig, StageStats, as_bgr8
from edge_fer.runtime.sinks import Display, EventLog, Recorder, draw_overlay
from edge_fer.runtime.sources import FrameSource, SourceSet, parse_source
from edge_fer.runtime.streaming import RefreshBudget, StreamingClassifier

__all__ = ["CameraConfig", "open_model", "open_pipeline", "open_source", "run_camera"]

WARMUP_FRAMES = 50  # "steady" FPS counts frames after these (first detections, first heads, allocations)


def _say(line: str) -> None:
    print(f"edge-fer camera: {line}", file=sys.stderr, flush=True)


class _Stopper:
    """First SIGINT/SIGTERM asks the loop to stop; a second one exits at once."""

    def __init__(self, install: bool = True) -> None:
        self.signal: str | None = None
        self._previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM) if install else ():
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:
            os._exit(128 + signum)
        self.signal = signal.Signals(signum).name

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def open_model(
    path: str | os.PathLike,
    *,
    precision: str = "auto",
    backend: str = "auto",
    device: str | None = None,
    threads: int | None = None,
    infer_precision: str | None = None,
    max_drop: float = 0.01,
    stride: int = 4,
    streaming: bool = True,
    verify: bool = True,
    url: str | None = None,
    log: Callable[[str], None] = _say,
):
    """The STT expression model: the artifact given, or - for a folder of several exports -
    the one chosen for this device (the fastest whose recorded accuracy is within
    ``max_drop`` of FP32, for label refreshes every ``stride`` frames; ``precision`` fixes
    the precision instead).

    Raises:
        ArtifactError: no usable model, or the artifact is not of the asked precision.
    """
    from edge_fer.errors import ArtifactError
    from edge_fer.runtime.choose import choose_model
    from edge_fer.runtime.streaming import ExpressionModel

    path = Path(path)
    options = dict(backend=backend, device=device, threads=threads, precision=infer_precision)
    single = not path.is_dir() or any((path / name).is_file() for name in ("model.xml", "model.onnx"))
    if backend == "triton" and not single:
        raise ArtifactError(
            f"{path} holds several exports; with --backend triton pass the one exported to the server (its model.xml)"
        )
    if single:
        model = ExpressionModel(path, streaming=streaming, verify=verify, url=url, **options)
        if precision not in ("auto", model.artifact.precision):
            model.close()
            raise ArtifactError(
                f"{model.path} is {model.artifact.precision}, not {precision}; pass a folder of several "
                "precisions to choose among them"
            )
        return model
    choice = choose_model(
        path,
        stride=stride,
        backend=backend,
        device=device,
        threads=threads,
        precision=None if precision == "auto" else precision,
        infer_precision=infer_precision,
        max_drop=max_drop,
        streaming=streaming,
        verify=verify,
    )
    for line in choice.report(path):
        log(line)
    return choice.model


def open_pipeline(
    model: str | os.PathLike | None = None,
    *,
    micro_model: str | os.PathLike | None = None,
    detector: str = "retinaface",
    backend: str = "auto",
    device: str | None = None,
    threads: int | None = None,
    precision: str = "auto",
    infer_precision: str | None = None,
    max_drop: float = 0.01,
    streaming: bool = True,
    verify: bool = True,
    stride: int = 4,
    smoothing: float = 0.6,
    micro_threshold: float = 2.0,
    detect_every: int = 5,
    max_faces: int = 8,
    async_head: bool = False,
    url: str | None = None,
    log: Callable[[str], None] = _say,
) -> Pipeline:
    """A ready ``Pipeline``: face detector, tracker and the models, which it owns
    (``pipeline.close()`` or ``with`` closes them). ``model`` None tracks faces only.

    Raises:
        EdgeFerError: a knob out of range, or a model or detector that cannot be opened
            (whatever was opened by then is closed again).
    """
    for name, value in (("stride", stride), ("detect_every", detect_every), ("max_faces", max_faces)):
        if value < 1:
            raise SourceError(f"--{name.replace('_', '-')} must be at least 1")
    opened: list = []
    try:
        classifier = micro = None
        if model is not None:
            expression = open_model(
                model,
                precision=precision,
                backend=backend,
                device=device,
                threads=threads,
                infer_precision=infer_precision,
                max_drop=max_drop,
                stride=stride,
                streaming=streaming,
                verify=verify,
                url=url,
                log=log,
            )
            opened.append(expression)
            classifier = StreamingClassifier(expression, stride=stride, smoothing=smoothing)
        local = backend if backend not in ("tensorrt", "triton") else "auto"  # the server holds only the STT
        if micro_model is not None:
            micro_backend = backend if backend != "triton" else "auto"
            options = dict(backend=micro_backend, device=device, threads=threads, precision=infer_precision)
            spotter_model = MicroModel(micro_model, verify=verify, **options)
            opened.append(spotter_model)
            micro = MicroSpotter(spotter_model, threshold=micro_threshold)
        face_detector = open_face_detector(detector=detector, backend=local, verify=verify)
        opened.append(face_detector)
    except BaseException:
        for thing in reversed(opened):
            thing.close()
        raise
    config = PipelineConfig(detect_every=detect_every, max_faces=max_faces, async_head=async_head)
    return Pipeline(face_detector, classifier, micro=micro, config=config, owns=tuple(opened))


def open_source(source: str, *, reconnect_timeout: float = 30.0, loop: bool = False) -> FrameSource:
    """Frames of a camera index, /dev/videoN, video file or stream URL (iterate it; ``close()``)."""
    return FrameSource(parse_source(source), reconnect_timeout=reconnect_timeout, loop=loop)


@dataclass
class CameraConfig:
    """Everything ``run_camera`` needs: the flags of ``edge-fer camera``, typed."""

    source: str | list[str]  # one source, or several read in one process (one --source each)
    model: Path | None = None  # STT artifact or a folder of several (None: track faces only)
    micro_model: Path | None = None  # HTNet artifact for micro-expression events
    backend: str = "auto"
    url: str | None = None  # --backend triton: the server
    device: str | None = None
    threads: int | None = None
    precision: str = "auto"  # the model's precision in a folder of several: auto, fp32, fp16, int8
    max_drop: float = 0.01
    infer_precision: str | None = None  # OpenVINO compute hint: f32, f16, bf16
    streaming: bool = True  # backbone/head pair where exported
    verify: bool = True  # False: --trust
    detector: str = "retinaface"
    stride: int | str | None = None  # label refresh: every N frames, "auto" (hold the frame rate), None:
    # auto when a source is live, else 4
    detect_every: int = 5
    max_faces: int = 8  # per source
    head: str = "auto"  # sync, async, auto (async when any source is live)
    smoothing: float = 0.6
    micro_threshold: float = 2.0
    reconnect_timeout: float = 30.0
    loop: bool = False
    max_frames: int | None = None  # per source
    events: Path | None = None
    record: Path | None = None
    display: bool = False
    force: bool = False
    stats_every: float = 5.0
    stats_json: Path | None = None
    stats_log: Path | None = None

    @property
    def sources(self) -> list[str]:
        return [self.source] if isinstance(self.source, str) else list(self.source)


@dataclass
class _SourceStats:
    """One source's share of a run (the summary's ``sources`` rows)."""

    frames: int = 0
    events: int = 0
    bad_frames: int = 0
    ended: str | None = None  # why it stopped before the run did


def run_camera(config: CameraConfig, *, handle_signals: bool = True) -> dict[str, Any]:
    """Run the camera loop until every source ends, ``max_frames``, Ctrl-C/SIGTERM or the window
    closes; return the run's summary (what ``--stats-json`` writes). Progress and warnings go
    to stderr. ``summary["outputs_incomplete"]`` lists sinks that could not be written fully.

    Several sources run in this one process: a tracker per source, one detector and one
    model whose backbone and head batch the faces of every source; a source that fails or
    ends leaves the others running. Events carry their ``source``; the summary has a row per
    source under ``sources``, its totals are over all of them.

    Raises:
        EdgeFerError: bad source, model or knob; no source gave a frame at all.
    """
    started = time.perf_counter()
    logging.basicConfig(level=logging.WARNING, format="edge-fer camera: %(message)s", stream=sys.stderr)
    names = config.sources
    if not names:
        raise SourceError("no --source given")
    if config.url and config.backend != "triton":
        from edge_fer.errors import BackendError

        raise BackendError("--url is for --backend triton (the model then runs on that Triton server)")
    specs = [parse_source(name) for name in names]
    if len(specs) > 1 and (config.record or config.display):
        raise SourceError(f"--record and --display show one source; got {len(specs)} (drop them, or run one source)")
    live = any(spec.live for spec in specs)
    async_head = config.head == "async" or (config.head == "auto" and live)
    stride = config.stride if config.stride is not None else ("auto" if live else 4)
    if stride != "auto" and not (isinstance(stride, int) and stride >= 1):
        raise SourceError(f"--stride must be a whole number of frames (at least 1) or auto, not {stride!r}")
    pipeline = open_pipeline(
        config.model,
        micro_model=config.micro_model,
        detector=config.detector,
        backend=config.backend,
        device=config.device,
        threads=config.threads,
        precision=config.precision,
        infer_precision=config.infer_precision,
        max_drop=config.max_drop,
        streaming=config.streaming,
        verify=config.verify,
        stride=4 if stride == "auto" else stride,  # auto: the model is chosen as for a stride of 4
        smoothing=config.smoothing,
        micro_threshold=config.micro_threshold,
        detect_every=config.detect_every,
        max_faces=config.max_faces,
        async_head=async_head,
        url=config.url,
    )
    multi = MultiPipeline(pipeline, [spec.shown for spec in specs])
    closers = [multi.close]
    classifier, detector = pipeline.classifier, pipeline.detector
    try:
        events = EventLog(config.events, force=config.force) if config.events else None
        if events:
            closers.append(events.close)
        sources = SourceSet(
            specs,
            reconnect_timeout=config.reconnect_timeout,
            loop=config.loop,
            required=len(specs) == 1,
            # a file's due frame is read this many frames early, so its detection can start ahead
            queue_size=max(4, config.detect_every + 3),
        )
        closers.append(sources.close)
        first = next(iter(sources.sources.values()))
        if stride == "auto" and classifier is not None:
            # the budget of a tick: the fastest live source's frame interval (files: their own rate)
            rates = [s.fps for s in sources.sources.values() if s.spec.live] or [
                s.fps for s in sources.sources.values()
            ]
            fps = max(rates) if max(rates) > 0 else 30.0
            classifier.budget = RefreshBudget(1000.0 / fps)
        recorder = Recorder(config.record, first.fps, force=config.force) if config.record else None
        if recorder:
            closers.append(recorder.close)
        display = Display() if config.display else None
        if display:
            closers.append(display.close)
        what = "no expression model (faces are tracked, not classified)"
        if classifier:
            model = classifier.model
            what = f"{model.preset.name} {model.artifact.precision} on {model.backend_name}"
            what += " (streaming backbone/head)" if classifier.model.streaming else " (full model per label)"
        shown = ", ".join(spec.shown for spec in specs)
        _say(f"{shown} -> {what}, detector {detector.name}")
        stats = StageStats()
        per_source = {stream: _SourceStats() for stream in range(len(specs))}
        for stream, reason in sources.errors.items():
            per_source[stream].ended = reason
        stopper = _Stopper(handle_signals)
        loop_start = time.perf_counter()
        startup_s = loop_start - started
        last_stats = loop_start
        warm_frames, warm_clock = 0, None
        warned: set[str] = set()
        stats_log = open(config.stats_log, "a") if config.stats_log else None  # noqa: SIM115 - closed below
        if stats_log is not None:
            closers.append(stats_log.close)
        try:
            while not stopper.signal:
                running = [s for s in sources.running if not _reached(per_source[s], config.max_frames)]
                if not running:
                    break
                frames = {s: f for s, f in sources.tick().items() if s in running}
                for stream, reason in sources.errors.items():
                    if per_source[stream].ended is None:
                        per_source[stream].ended = reason
                        if len(specs) > 1:
                            _say(f"warning: {reason}; the other sources go on")
                if not frames:
                    continue
                began = time.perf_counter()
                for stream, frame in list(frames.items()):
                    try:
                        frame.image = as_bgr8(frame.image)
                    except SourceError as exc:  # one bad frame from a camera must not end the run
                        per_source[stream].bad_frames += 1
                        _warn_once(warned, f"skipping unusable frames ({exc})")
                        del frames[stream]
                if not frames:
                    continue
                results = multi.process(frames, sources.peek())
                for stream, result in results.items():
                    per_source[stream].frames += 1
                    per_source[stream].events += len(result.events)
                    if events:
                        for event in result.events:
                            events.write(event)
                if recorder or display:
                    result = results[0]
                    status = f"{len(result.faces)} face(s)  {stats.frames / max(began - loop_start, 1e-9):.0f} fps"
                    annotated = draw_overlay(frames[0].image, result.faces, status)
                    if recorder:
                        recorder.write(annotated)
                    if display and not display.show(annotated):
                        break
                for sink in (events, recorder):
                    if sink is not None and sink.failed:  # warn once, keep classifying
                        _warn_once(warned, f"output incomplete, continuing without it: {sink.failed}")
                # a tick's time is shared by its frames (one source: the frame's own time)
                tick_ms = (time.perf_counter() - began) * 1000
                for stream, result in results.items():
                    stats.add(result, tick_ms / len(results) + frames[stream].decode_ms)
                now = time.perf_counter()
                if warm_clock is None and stats.frames >= WARMUP_FRAMES * len(specs):  # after warm-up
                    warm_frames, warm_clock = stats.frames, now
                if config.stats_every and now - last_stats >= config.stats_every:
                    if stats_log is not None:
                        stats_log.write(_interval(stats, now - loop_start, multi, sources) + "\n")
                        stats_log.flush()
                    stats.interval_ms.clear()
                    last_stats = now
                    print(_stats_line(stats, now - loop_start), file=sys.stderr)
        finally:
            stopper.restore()
        elapsed = time.perf_counter() - loop_start
    finally:
        for close in reversed(closers):
            close()
    if stats.frames == 0 and any(row.ended for row in per_source.values()):
        raise SourceError("; ".join(row.ended for row in per_source.values() if row.ended))
    steady = None
    if warm_clock is not None and stats.frames > warm_frames:
        steady = (stats.frames - warm_frames) / max(loop_start + elapsed - warm_clock, 1e-9)
    pipelines = multi.pipelines
    opened = sources.sources
    summary = {
        "source": shown,
        "frames": stats.frames,
        "seconds": round(elapsed, 3),
        "startup_s": round(startup_s, 3),
        "fps": round(stats.frames / max(elapsed, 1e-9), 2),
        "fps_with_startup": round(stats.frames / max(elapsed + startup_s, 1e-9), 2),
        "fps_steady": None if steady is None else round(steady, 2),
        "stage_ms": stats.mean_ms(),
        "frame_ms_p50": round(float(_percentile(stats.frame_ms, 50)), 3),
        "frame_ms_p99": round(float(_percentile(stats.frame_ms, 99)), 3),
        "faces_per_frame": round(stats.faces / max(stats.frames, 1), 3),
        "events": stats.events,
        "tracks_opened": sum(p.tracks_opened for p in pipelines),
        "faces_capped": sum(p.tracker.capped for p in pipelines),
        "max_faces": config.max_faces,
        "bad_frames": sum(row.bad_frames for row in per_source.values()),
        "nonfinite_outputs": 0 if classifier is None else classifier.nonfinite,
        "dropped_frames": sum(source.dropped for source in opened.values()),
        "reconnects": sum(source.reconnects for source in opened.values()),
        "stopped_by": stopper.signal,
        "sources": [
            {
                "source": spec.shown,
                "frames": row.frames,
                "fps": round(row.frames / max(elapsed, 1e-9), 2),
                "events": row.events,
                "tracks_opened": pipelines[stream].tracks_opened,
                "bad_frames": row.bad_frames,
                "dropped_frames": opened[stream].dropped if stream in opened else 0,
                "reconnects": opened[stream].reconnects if stream in opened else 0,
                "ended": row.ended,
            }
            for (stream, row), spec in zip(per_source.items(), specs)
        ],
        "detector": detector.name,
        # due detections started a tick before their frame (files; MultiPipeline's DetectionAhead)
        "detections_ahead": multi.ahead.used if multi.ahead is not None else 0,
        "model": None
        if classifier is None
        else {
            "artifact": str(classifier.model.path),
            "preset": classifier.model.preset.name,
            "precision": classifier.model.artifact.precision,
            "quantization": classifier.model.artifact.meta.get("quantization", {}).get("method", "none"),
            "backend": classifier.model.backend_name,
            "streaming": classifier.model.streaming,
            "head": "async" if async_head else "sync",
            "stride": stride,
            "backbone_frames": classifier.backbone_frames,
        },
        "label_age": stats.label_age(),
        "peak_rss_mb": peak_rss_mib(),  # this process's own peak (memory.py: not ru_maxrss)
    }
    print(_stats_line(stats, elapsed, final=summary), file=sys.stderr)
    if config.stats_json:
        from edge_fer.fileio import atomic_output

        with atomic_output(config.stats_json, force=True) as tmp:
            tmp.write_text(json.dumps(summary, indent=2) + "\n")
    for row in per_source.values():
        if row.ended:
            print(f"edge-fer camera: source ended: {row.ended}", file=sys.stderr)
    capped = summary["faces_capped"]
    if capped:
        print(
            f"edge-fer camera: {capped} face detection(s) beyond --max-faces {config.max_faces} were not tracked",
            file=sys.stderr,
        )
    summary["outputs_incomplete"] = [s.failed for s in (events, recorder) if s is not None and s.failed]
    for reason in summary["outputs_incomplete"]:
        _say(f"warning: output incomplete: {reason}")
    return summary


def _reached(row: _SourceStats, max_frames: int | None) -> bool:
    return bool(max_frames) and row.frames >= max_frames


def _interval(stats, elapsed: float, multi, sources) -> str:
    """One --stats-log line: this interval's frame times, RSS, tracks, drops."""
    import numpy as np

    recent = np.array(stats.interval_ms) if stats.interval_ms else np.zeros(1)
    return json.dumps(
        {
            "t": round(elapsed, 2),
            "frames": stats.frames,
            "frame_ms_mean": round(float(recent.mean()), 3),
            "frame_ms_p99": round(float(np.percentile(recent, 99)), 3),
            "rss_mb": rss_mib(),
            "tracks_open": sum(len(p.tracker.tracks) for p in multi.pipelines),
            "tracks_opened": sum(p.tracks_opened for p in multi.pipelines),
            "tracks_closed": sum(p.tracks_closed for p in multi.pipelines),
            "dropped_frames": sum(source.dropped for source in sources.sources.values()),
        }
    )


def _warn_once(warned: set[str], message: str) -> None:
    key = message.split(":")[0]
    if key not in warned:
        warned.add(key)
        print(f"edge-fer camera: warning: {message}", file=sys.stderr, flush=True)


def _percentile(values, q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if len(values) else 0.0


def _stats_line(stats, elapsed: float, final: dict | None = None) -> str:
    stages = "  ".join(f"{name} {ms:.2f}" for name, ms in stats.mean_ms().items())
    head = f"{stats.frames} frames  {stats.frames / max(elapsed, 1e-9):.1f} fps"
    if final is not None:
        steady = final["fps_steady"]
        head = (
            f"done: {stats.frames} frames in {elapsed:.1f} s  {final['fps']:.1f} fps"
            + (f" (steady {steady:.1f})" if steady else "")
            + f"  start-up {final['startup_s']:.1f} s  events {stats.events}"
        )
    return f"edge-fer camera: {head}  faces/frame {stats.faces / max(stats.frames, 1):.2f}  ms/frame: {stages}"
