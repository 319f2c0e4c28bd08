"""Build a calibration set.

    python -m calibration --checkpoint RUN/best.pt --dataset dfew --root DFEW --fold 1 --samples 128 --out calib.npz
    python -m calibration --preset stt_tiny --videos a.mp4 b.mp4 --out calib.npz

From a dataset: the *training* split of the fold (never test data), stratified by class,
clips made as evaluation makes them. From videos: faces detected, aligned and windowed
exactly as the runtime does. An existing file built with the same settings is reused
(``--force`` rebuilds). The set's sha256 is printed and recorded in every artifact
quantized with it. From Python: ``calibration.sets.calibration_file``.
"""

from __future__ import annotations

import json
from pathlib import Path

from edge_fer.cli.args import Parser, add_data_arguments
from edge_fer.cli.main import run_tool
from edge_fer.data.spec import DataSpec


def build_parser() -> Parser:
    parser = Parser(prog="python -m calibration", description="Build an INT8 calibration set.")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", type=Path, help="the model to calibrate for (its preset and classes)")
    model.add_argument("--preset", help="a registered preset instead of a checkpoint")
    add_data_arguments(parser, what="the dataset to calibrate on (the training part of --fold)", split=False)
    parser.add_argument("--videos", nargs="+", type=Path, help="or video files with faces (instead of --dataset)")
    parser.add_argument("--samples", type=int, default=128, help="clips (or images) in the set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stride", type=float, default=0.5, help="with --videos: seconds between clips")
    parser.add_argument("--out", required=True, type=Path, help="the .npz to write")
    parser.add_argument("--force", action="store_true", help="rebuild even if OUT matches")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.dataset) == bool(args.videos):
        parser.error("give --dataset (with --root) or --videos, one of them")
    if args.dataset and not args.root:
        parser.error("--dataset needs --root")
    if args.out.suffix != ".npz":
        parser.error(f"--out must end in .npz, got {args.out}")

    from calibration.sets import calibration_file

    if args.checkpoint:
        from edge_fer.models.checkpoint import read_checkpoint
        from edge_fer.presets import ModelPreset

        preset = ModelPreset.from_dict(read_checkpoint(args.checkpoint)["preset"])
    else:
        from edge_fer.presets import get_preset

        preset = get_preset(args.preset)
    calib, reused = calibration_file(
        args.out,
        preset,
        data=DataSpec.from_args(args),
        videos=args.videos or (),
        samples=args.samples,
        seed=args.seed,
        stride=args.stride,
        force=args.force,
    )
    if reused:
        print(f"{args.out}: up to date ({len(calib)} samples, sha256 {calib.sha256})")
        return 0
    counts = {int(c): int((calib.labels == c).sum()) for c in set(calib.labels.tolist())}
    print(json.dumps({"out": str(args.out), "samples": len(calib), "sha256": calib.sha256, "per_class": counts}))
    return 0


if __name__ == "__main__":
    run_tool(main, "python -m calibration")
