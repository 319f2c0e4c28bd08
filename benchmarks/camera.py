"""End-to-end speed of ``edge-fer camera`` on this machine: whole process, steady state, per stage.

    python -m benchmarks.camera --out runs/camera [--model DIR_OR_ARTIFACT ...] [--stride 4]

Makes two 20-second 640x360 videos of real faces (one face; four faces), then runs
``edge-fer camera --headless`` on them as a user would - a fresh process each time - and
records the process wall time (start-up included), the steady-state FPS the command reports
(frames after its first 50), frames between label refreshes and the per-stage ms.

Without ``--model`` it exports ``stt_base`` to OpenVINO INT8 (streaming backbone/head pair)
from *untrained* weights, calibrated on runtime clips of a third face video: speed does not
depend on the weights' values, and no trained ``stt_base`` can be made on this CPU in
reasonable time. Also timed: the detector alone on every frame (the per-frame part of a
single-frame pipeline) for scale. Writes ``camera.json`` and ``camera.md``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import untrained_int8
from edge_fer.bench import environment as suite_environment
from edge_fer.cli.args import Parser
from edge_fer.cli.main import run_tool

__all__ = ["main"]


def _default_model(out: Path) -> Path:
    calib_video = out / "calib.mp4"
    if not calib_video.exists():
        from edge_fer.data.face_video import write_face_video

        write_face_video(calib_video, seconds=30, seed=1)
    return untrained_int8("stt_base", out, calib_video, samples=64)


def _camera(model: Path | None, video: Path, stats: Path, extra: list[str]) -> dict:
    command = [sys.executable, "-m", "edge_fer", "camera", "--source", str(video), "--headless", "--stats-every", "0"]
    command += ["--stats-json", str(stats), *extra]
    if model is not None:
        command += ["--model", str(model)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"edge-fer camera failed:\n{result.stderr[-2000:]}")
    summary = json.loads(stats.read_text())
    summary["process_wall_s"] = round(wall, 3)
    summary["fps_process"] = round(summary["frames"] / wall, 2)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m benchmarks.camera", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--model", type=Path, action="append", help="artifact(s) to time (default: stt_base INT8)")
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    from edge_fer.data.face_video import write_crowd_video

    videos = {}
    for faces in (1, 4):
        videos[faces] = out / f"faces{faces}_{args.seconds:g}s.mp4"
        if not videos[faces].exists():
            write_crowd_video(videos[faces], faces=faces, seconds=args.seconds, seed=faces)
    models = args.model or [_default_model(out)]
    stride = ["--stride", str(args.stride)]
    runs = []
    configs = [(None, 1, ["--detect-every", "1"], "detector on every frame, no classifier")]
    for model in models:
        configs += [
            (model, 1, [*stride, "--head", "sync"], "1 face, head in the loop"),
            (model, 1, [*stride, "--head", "async"], "1 face, head in a worker thread"),
            (model, 4, [*stride, "--head", "sync"], "4 faces, head in the loop"),
            (model, 4, [*stride, "--head", "async"], "4 faces, head in a worker thread"),
            # the refresh budget of a 25 fps camera: as many labels as 40 ms a frame leave room for
            (model, 4, ["--stride", "auto", "--head", "sync"], "4 faces, --stride auto (25 fps budget)"),
        ]
    for index, (model, faces, extra, label) in enumerate(configs):
        events = out / f"events_{index}.jsonl"
        summary = _camera(
            model, videos[faces], out / f"stats_{index}.json", [*extra, "--events", str(events), "--force"]
        )
        labels = [json.loads(line) for line in events.read_text().splitlines()]
        per_track: dict[int, list[int]] = {}
        for event in labels:
            per_track.setdefault(event["track"], []).append(event["frame"])
        gaps = [b - a for frames in per_track.values() for a, b in zip(frames, frames[1:])]
        summary["frames_between_labels"] = round(sum(gaps) / len(gaps), 2) if gaps else None
        summary["label"] = label
        summary["faces"] = faces
        summary["artifact"] = None if model is None else str(model)
        runs.append(summary)
        print(
            f"  {label:<40} {summary['fps_steady'] or 0:7.1f} fps steady  {summary['fps_process']:7.1f} fps process"
            f"  refresh every {summary['frames_between_labels']} frames",
            flush=True,
        )
    full = suite_environment()
    environment = {
        "cpu": f"{full.get('cpu', '')} ({full['cpu_features']['summary']})",
        "cores": full["cores"],
        "python": full["python"],
    }
    lines = [
        f"`edge-fer camera --headless` on 640x360 real-face videos ({args.seconds:g} s, 25 fps, "
        f"{runs[0]['frames']} frames); {environment['cpu']}, {environment['cores']} cores. "
        "Process FPS = frames / wall time of the whole process (start-up included); "
        "steady = after the first 50 frames.",
        "",
        "| model | run | steady FPS | process FPS | frames between labels | label age p50/p99 (frames) | detect | "
        "track | align | infer | decode (thread) | ms/frame p50 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        stage = run["stage_ms"]
        model = run["model"]
        name = "—" if model is None else f"{model['preset']} {model['precision']} {model['backend']}"
        age = run.get("label_age")
        age_text = "—" if not age else f"{age['frames_p50']:g} / {age['frames_p99']:g}"
        lines.append(
            f"| {name} | {run['label']} | {run['fps_steady'] or 0:.1f} | {run['fps_process']:.1f} | "
            f"{run['frames_between_labels'] if run['frames_between_labels'] is not None else '—'} | "
            f"{age_text} | "
            f"{stage['detect']:.2f} | {stage['track']:.2f} | {stage['align']:.2f} | {stage['infer']:.2f} | "
            f"{stage['decode']:.2f} | {run['frame_ms_p50']:.2f} |"
        )
    (out / "camera.md").write_text("\n".join(lines) + "\n")
    (out / "camera.json").write_text(json.dumps({"environment": environment, "runs": runs}, indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    run_tool(main, "python -m benchmarks.camera")
