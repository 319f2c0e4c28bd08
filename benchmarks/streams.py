"""N cameras: one ``edge-fer camera`` process for N sources against N processes of one source.

    python -m benchmarks.streams --out runs/streams [--model ARTIFACT] [--streams 4] [--seconds 20]
        [--detector retinaface|DIR/retinaface.int8.xml]

Makes N 640x360 videos of one real face each, then runs, as a user would (fresh processes,
``--head sync`` so both do the same work on every frame):

- one process: ``edge-fer camera --source V1 ... --source VN``;
- N processes at once: ``edge-fer camera --source Vi`` each.

Records total frames per second (all frames of all videos / wall time from the first start
to the last exit, start-up included) and memory: the one process's peak RSS against the sum
of the N processes' peak RSS, each as the process itself reports it in ``--stats-json``
(``edge_fer.runtime.memory``: ``wait4``'s ``ru_maxrss`` would give each child at least this
benchmark's own peak, which exporting the model makes larger than a camera's). Runs the two ``--repeat``
times in turn and reports medians, the FPS ratio as the median of the pairs' ratios. Without
``--model`` it exports ``stt_tiny`` to OpenVINO INT8 from untrained weights (speed and memory
do not depend on the weights' values). Writes ``streams.json`` and ``streams.md``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import untrained_int8
from edge_fer.bench import environment as suite_environment
from edge_fer.cli.args import Parser
from edge_fer.cli.main import run_tool

__all__ = ["main"]


def _run_together(commands: list[list[str]]) -> float:
    """Start every command at once; the wall seconds until the last exits.

    Raises:
        SystemExit: a command failed (its stderr is shown).
    """
    started = time.perf_counter()
    processes = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for c in commands]
    failures = []
    for process in processes:
        _, stderr = process.communicate()
        if process.returncode != 0:
            failures.append(stderr[-2000:])
    wall = time.perf_counter() - started
    if failures:
        raise SystemExit("edge-fer camera failed:\n" + failures[0])
    return wall


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m benchmarks.streams", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--model", type=Path, help="STT artifact to run (default: stt_tiny OpenVINO INT8)")
    parser.add_argument("--streams", type=int, default=4, help="number of videos/sources (default 4)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each video (default 20)")
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, in turn; medians reported (default 3)")
    parser.add_argument(
        "--detector", default="retinaface", help="the camera's --detector (an INT8 one: python -m export.detector)"
    )
    args = parser.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    from edge_fer.data.face_video import write_crowd_video

    videos = []
    for index in range(args.streams):
        video = out / f"face{index}_{args.seconds:g}s.mp4"
        if not video.exists():
            write_crowd_video(video, faces=1, seconds=args.seconds, seed=10 + index)
        videos.append(video)
    if args.model is None:
        calib = out / "calib.mp4"
        if not calib.exists():
            from edge_fer.data.face_video import write_face_video

            write_face_video(calib, seconds=30, seed=1)
        model = untrained_int8("stt_tiny", out, calib, samples=64)
    else:
        model = args.model
    base = [sys.executable, "-m", "edge_fer", "camera", "--model", str(model), "--headless", "--stats-every", "0"]
    base += ["--head", "sync", "--stride", str(args.stride), "--detector", args.detector]

    # This machine is shared and its speed drifts: run the pair `--repeat` times, one then N in
    # turn, and take the median of the pair-by-pair ratios (one slow or lucky run moves nothing).
    pairs = []
    for _ in range(args.repeat):
        stats_one = out / "stats_one_process.json"
        one_wall = _run_together(
            [[*base, *(a for v in videos for a in ("--source", str(v))), "--stats-json", str(stats_one)]]
        )
        one = json.loads(stats_one.read_text())
        each = [out / f"stats_process{i}.json" for i in range(len(videos))]
        many_wall = _run_together([[*base, "--source", str(v), "--stats-json", str(s)] for v, s in zip(videos, each)])
        many = [json.loads(s.read_text()) for s in each]
        many_frames = sum(m["frames"] for m in many)
        many_steady = sum(m["fps_steady"] for m in many)
        if one["frames"] != many_frames:
            raise SystemExit(f"the runs read different frames: {one['frames']} in one process, {many_frames} in N")
        pairs.append({"one_wall_s": round(one_wall, 3), "n_wall_s": round(many_wall, 3),
                      "fps_ratio": round(many_wall / one_wall, 3), "one_rss_mib": round(one["peak_rss_mb"], 1),
                      "n_rss_mib_sum": round(sum(m["peak_rss_mb"] for m in many), 1),
                      "one_fps_steady": one["fps_steady"],
                      "n_fps_steady_sum": round(many_steady, 2),
                      "steady_ratio": round(one["fps_steady"] / many_steady, 3)})  # fmt: skip
    one_wall = statistics.median(p["one_wall_s"] for p in pairs)
    many_wall = statistics.median(p["n_wall_s"] for p in pairs)
    one_rss = max(p["one_rss_mib"] for p in pairs)
    many_rss = max(p["n_rss_mib_sum"] for p in pairs)
    result = {
        "streams": len(videos),
        "frames": many_frames,
        "model": one["model"],
        "detector": one["detector"],
        "repeat": args.repeat,
        "one_process": {"wall_s": one_wall, "fps": round(many_frames / one_wall, 2), "peak_rss_mib": one_rss,
                        "fps_steady": statistics.median(p["one_fps_steady"] for p in pairs)},
        "n_processes": {"wall_s": many_wall, "fps": round(many_frames / many_wall, 2),
                        "peak_rss_mib_sum": many_rss,
                        "fps_steady_sum": statistics.median(p["n_fps_steady_sum"] for p in pairs)},
        "fps_ratio": statistics.median(p["fps_ratio"] for p in pairs),
        "fps_ratio_range": [min(p["fps_ratio"] for p in pairs), max(p["fps_ratio"] for p in pairs)],
        # after start-up and warm-up: what a camera left running gets
        "steady_ratio": statistics.median(p["steady_ratio"] for p in pairs),
        "steady_ratio_range": [min(p["steady_ratio"] for p in pairs), max(p["steady_ratio"] for p in pairs)],
        "rss_ratio": round(one_rss / many_rss, 3),
        "pairs": pairs,
    }  # fmt: skip
    full = suite_environment()
    result["environment"] = {
        "cpu": f"{full.get('cpu', '')} ({full['cpu_features']['summary']})",
        "cores": full["cores"],
        "python": full["python"],
    }
    model_name = f"{one['model']['preset']} {one['model']['precision']} {one['model']['backend']}"
    lines = [
        f"{len(videos)} videos of one real face (640x360, {args.seconds:g} s, 25 fps, {many_frames} frames in all), "
        f"{model_name}, `--stride {args.stride} --head sync`, detector {one['detector']}; "
        f"{result['environment']['cpu']}, "
        f"{result['environment']['cores']} cores. FPS = all frames / wall time (start-up included); "
        f"medians of {args.repeat} runs of each, one and N in turn; the FPS ratio is the median of the "
        f"pair-by-pair ratios (range {result['fps_ratio_range'][0]:.2f}-{result['fps_ratio_range'][1]:.2f}x). "
        "Steady FPS: after start-up and warm-up, as each process reports it (N processes: their sum); "
        f"its ratio's range {result['steady_ratio_range'][0]:.2f}-{result['steady_ratio_range'][1]:.2f}x.",
        "",
        "| run | wall s | total FPS | steady FPS | peak RSS (MiB) |",
        "|---|---|---|---|---|",
        f"| one process, {len(videos)} sources | {one_wall:.1f} | {result['one_process']['fps']:.1f} | "
        f"{result['one_process']['fps_steady']:.1f} | {one_rss:.0f} |",
        f"| {len(videos)} processes, one source each | {many_wall:.1f} | {result['n_processes']['fps']:.1f} | "
        f"{result['n_processes']['fps_steady_sum']:.1f} (sum) | {many_rss:.0f} (sum) |",
        f"| ratio (one / N) | | **{result['fps_ratio']:.2f}x** | **{result['steady_ratio']:.2f}x** | "
        f"**{result['rss_ratio']:.2f}x** |",
    ]
    (out / "streams.md").write_text("\n".join(lines) + "\n")
    (out / "streams.json").write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    run_tool(main, "python -m benchmarks.streams")
