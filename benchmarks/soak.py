"""Soak: ``edge-fer camera`` on a looping real-face video for a long run - does anything grow or drift?

    python -m benchmarks.soak --out runs/soak [--frames 100000] [--model DIR_OR_ARTIFACT]

The video (60 s, faces leaving, returning, two at once) loops, so tracks open and close all
the time. ``--stats-log`` gives one line every 5 s: RSS, mean and p99 frame time, tracks.
Reported: RSS at the start (after the first interval: models loaded, buffers filled) and at
the end, frames dropped, tracks opened/closed, and the frame time of the first and last
tenth of the run (drift). Without ``--model`` a ``stt_tiny`` with untrained weights is
exported to OpenVINO INT8 (memory and timing do not depend on weight values).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import untrained_int8
from edge_fer.cli.args import Parser
from edge_fer.cli.main import run_tool

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between stats lines")
    parser.add_argument("--analyze", action="store_true", help="only analyse the stats.jsonl already in --out")
    args = parser.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    video = out / "faces_60s.mp4"
    if not video.exists():
        from edge_fer.data.face_video import write_face_video

        write_face_video(video, seconds=60, seed=7)
    log = out / "stats.jsonl"
    wall = None
    if not args.analyze:
        wall = _run(args, out, video, log)
    return _analyze(out, log, wall)


def _run(args, out: Path, video: Path, log: Path) -> float:
    model = args.model or untrained_int8("stt_tiny", out, video, samples=32)
    log.unlink(missing_ok=True)
    command = [sys.executable, "-m", "edge_fer", "camera", "--model", str(model), "--source", str(video), "--loop"]
    command += ["--headless", "--max-frames", str(args.frames), "--stats-every", str(args.interval)]
    command += [
        "--stats-log",
        str(log),
        "--stats-json",
        str(out / "summary.json"),
        "--events",
        str(out / "events.jsonl"),
    ]
    command += ["--force"]
    print(f"soak: {args.frames} frames of {video.name} (looping) ...", flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"edge-fer camera failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return wall


def _analyze(out: Path, log: Path, wall: float | None) -> int:
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    if len(lines) < 3:
        raise SystemExit("too few stats intervals; run more frames")
    rss_start, rss_end = lines[0]["rss_mb"], lines[-1]["rss_mb"]
    tenth = max(1, len(lines) // 10)
    first = float(np.mean([line["frame_ms_mean"] for line in lines[:tenth]]))
    last = float(np.mean([line["frame_ms_mean"] for line in lines[-tenth:]]))
    means = np.array([line["frame_ms_mean"] for line in lines])
    slope = float(np.polyfit(np.arange(len(means)), means, 1)[0]) * len(means)  # fitted change over the run
    first_p99 = float(np.mean([line["frame_ms_p99"] for line in lines[:tenth]]))
    last_p99 = float(np.mean([line["frame_ms_p99"] for line in lines[-tenth:]]))
    report = {
        "frames": summary["frames"],
        "wall_s": None if wall is None else round(wall, 1),
        "fps": summary["fps"],
        "rss_mb_start": rss_start,
        "rss_mb_end": rss_end,
        "rss_growth": round(rss_end / rss_start - 1, 4),
        "rss_mb_max": max(line["rss_mb"] for line in lines),
        "frame_ms_first_tenth": round(first, 3),
        "frame_ms_last_tenth": round(last, 3),
        "frame_ms_p99_first_tenth": round(first_p99, 3),
        "frame_ms_p99_last_tenth": round(last_p99, 3),
        "frame_ms_trend_over_run": round(slope, 4),  # least-squares line through the interval means
        "frame_ms_median_first_half": round(float(np.median(means[: len(means) // 2])), 3),
        "frame_ms_median_second_half": round(float(np.median(means[len(means) // 2 :])), 3),
        "tracks_opened": lines[-1]["tracks_opened"],
        "tracks_closed": lines[-1]["tracks_closed"],
        "dropped_frames": summary["dropped_frames"],
        "events": summary["events"],
        "intervals": len(lines),
    }
    (out / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    run_tool(main, "python -m benchmarks.soak")
