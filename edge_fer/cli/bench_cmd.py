"""``edge-fer bench``: accuracy against latency of exported models on this device.

edge-fer bench --artifacts A [B ...] | --run DIR  [--dataset D --root R --fold K]
               [--backends openvino,onnxruntime,tensorrt,torch] [--batch 1,4] [--threads 2]
               [--video V] --out DIR
edge-fer bench compare OLD/results.json NEW/results.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_fer.cli.args import add_backend_arguments, add_data_arguments, flatten_counts


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="accuracy vs latency of artifacts x backends x batch sizes (results.md, pareto.png); or compare two runs",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("compare", nargs="*", metavar="compare OLD NEW", help="compare two results.json files")
    parser.add_argument("--artifacts", nargs="+", type=Path, default=[], help=".onnx / .xml / .engine / best.pt")
    parser.add_argument("--run", type=Path, help="benchmark every full-model artifact (and best.pt) under this folder")
    add_data_arguments(parser, what="the data accuracy is measured on (none: latency only)", old_prefix="eval-")
    add_backend_arguments(parser, several=True)
    parser.add_argument(
        "--backends", type=_deprecated_list("--backend NAME (repeated)"), dest="backend", help=argparse.SUPPRESS
    )
    parser.add_argument("--batch", default="1", help="comma-separated batch sizes (default 1)")
    parser.add_argument("--video", type=Path, help="also time the edge-fer camera pipeline on this video")
    parser.add_argument(
        "--video-frames", type=int, help="time the camera on the first N frames of --video (default: all)"
    )
    parser.add_argument("--stride", type=int, default=4, help="head stride for streaming costs (default 4)")
    parser.add_argument("--min-iters", type=int, default=30, help="timed runs at least (default 30)")
    parser.add_argument("--min-time", type=float, default=2.0, help="timed seconds at least (default 2)")
    parser.add_argument("--out", type=Path, help="output folder")
    parser.add_argument("--force", action="store_true", help="replace results already in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def _deprecated_list(new: str):
    """The old comma-separated spelling of a repeated flag: still read, with a line saying so."""

    def parse(text: str) -> list[str]:
        print(f"edge-fer bench: comma-separated lists are deprecated and go in the next release; use {new}",
              file=sys.stderr)  # fmt: skip
        return [v.strip() for v in text.split(",") if v.strip()]

    return parse


def _ints(text: str, name: str) -> list[int]:
    from edge_fer.errors import EdgeFerError

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise EdgeFerError(f"--{name} takes comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise EdgeFerError(f"--{name} values must be at least 1")
    return values


def run(args: argparse.Namespace) -> int:
    from edge_fer.bench import RUNS_ON, compare, discover, run_bench
    from edge_fer.data.spec import DataSpec
    from edge_fer.errors import ArtifactError, DatasetError, EdgeFerError, OutputExistsError

    if args.compare:
        if len(args.compare) != 3 or args.compare[0] != "compare":
            raise EdgeFerError("usage: edge-fer bench compare OLD/results.json NEW/results.json")
        old, new = (Path(p) / "results.json" if Path(p).is_dir() else Path(p) for p in args.compare[1:])
        problems = compare(old, new)
        for line in problems:
            print(line)
        print(f"{len(problems)} regression(s) beyond noise" if problems else "no regressions beyond noise")
        return 1 if problems else 0
    if args.out is None:
        raise EdgeFerError("--out is required")
    if (args.out / "results.json").exists() and not args.force:
        raise OutputExistsError(f"{args.out / 'results.json'} exists; pass --force to replace it")
    artifacts = list(args.artifacts)
    if args.run is not None:
        if not args.run.is_dir():
            raise ArtifactError(f"--run {args.run} is not a folder")
        artifacts += discover(args.run)
    if not artifacts:
        raise ArtifactError("nothing to benchmark: give --artifacts or a --run folder with exported models")
    backends = args.backend or ["openvino", "onnxruntime", "tensorrt", "torch"]
    unknown = sorted(set(backends) - {b for v in RUNS_ON.values() for b in v})
    if unknown:
        raise EdgeFerError(
            f"unknown backend(s) {', '.join(unknown)}; choose from openvino, onnxruntime, tensorrt, torch"
        )
    eval_spec = DataSpec.from_args(args)
    if eval_spec is not None and not eval_spec.root.is_dir():
        raise DatasetError(f"--root {eval_spec.root} is not a folder (the --dataset's data)")
    threads = flatten_counts(args.threads)
    if any(t < 1 for t in threads):
        raise EdgeFerError("--threads must be at least 1")
    if args.video is not None and not args.video.is_file():
        raise EdgeFerError(f"--video {args.video} does not exist")
    results = run_bench(
        artifacts,
        out=args.out,
        backends=backends,
        batches=_ints(args.batch, "batch"),
        threads=threads or [None],
        eval_spec=eval_spec,
        video=args.video,
        video_frames=args.video_frames,
        min_iters=args.min_iters,
        min_time=args.min_time,
        stride=args.stride,
        progress=not args.no_progress,
    )
    print((args.out / "results.md").read_text())
    measured = sum(1 for r in results["rows"] if not r["config"]["skip"])
    print(f"{measured} configuration(s) measured -> {args.out}/results.{{json,csv,md}}, pareto.png", file=sys.stderr)
    return 0
