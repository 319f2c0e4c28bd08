"""``edge-fer demo``: synthetic data -> training -> INT8 -> bench -> camera -> DIR/report.md."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole product offline on a bundled default and write DIR/report.md",
        description="Generate the synthetic benchmark, train stt_tiny and htnet_light on the CPU, export ONNX, "
        "OpenVINO FP32/INT8 (PTQ and a short QAT) and the TensorRT-ready INT8 ONNX, benchmark them, run the camera "
        "pipeline on a real-face video, and write DIR/report.md. 5 to 10 minutes on 2 CPU cores, by the CPU "
        "(--quick: 2 to 3); the expected time for this CPU is printed at the start, the measured one at the end.",
    )
    parser.add_argument("--out", type=Path, default=Path("edge-fer-demo"), help="output folder (default edge-fer-demo)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller data, fewer epochs: about 3 minutes (a smoke run: too short to learn)",
    )
    parser.add_argument("--force", action="store_true", help="replace a demo already in --out")
    parser.add_argument(
        "--ckplus",
        type=Path,
        help="a CK+ or CK+48 folder (real faces): report the model's zero-shot accuracy on it "
        "(default: $EDGE_FER_REAL_DATA/ckplus48 or ../shared/real/ckplus48 beside a clone, when present)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edge_fer.demo import run_demo

    report = run_demo(args.out, quick=args.quick, force=args.force, ckplus=args.ckplus)
    print(report)
    return 0
