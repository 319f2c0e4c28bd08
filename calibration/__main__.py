"""Build a calibration set.

    python -m calibration --checkpoint RUN/best.pt --dataset dfew --root DFEW --fold 1 --samples 128 --out calib.npz
    python -m calibration --preset stt_tiny --videos a.mp4 b.mp4 --out calib.npz

From a dataset: the *training* split of the fold (never test data), stratified by class,
clips made as evaluation makes them. From videos: faces detected, aligned and windowed
exactly as the runtime does. An existing file built with the same settings is reused
(``--force`` rebuilds). The set's sha256 is printed and recorded in every artifact
quantized with it.
"""

from __future__ import annotations

import json
from pathlib import Path

from edge_fer.cli.args import Parser
from edge_fer.cli.main import run_tool
from edge_fer.errors import PresetError


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m calibration", description="Build an INT8 calibration set.")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", type=Path, help="the model to calibrate for (its preset and classes)")
    model.add_argument("--preset", help="a registered preset instead of a checkpoint")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="dataset name (its training split is used)")
    source.add_argument("--videos", nargs="+", type=Path, help="video files with faces")
    parser.add_argument("--root", type=Path, help="with --dataset: its folder")
    parser.add_argument("--fold", type=int, help="with --dataset: the fold (its training part is used)")
    parser.add_argument("--samples", type=int, default=128, help="clips (or images) in the set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stride", type=float, default=0.5, help="with --videos: seconds between clips")
    parser.add_argument("--out", required=True, type=Path, help="the .npz to write")
    parser.add_argument("--force", action="store_true", help="rebuild even if OUT matches")
    args = parser.parse_args(argv)
    if args.dataset and not args.root:
        parser.error("--dataset needs --root")
    if args.out.suffix != ".npz":
        parser.error(f"--out must end in .npz, got {args.out}")

    from calibration.sets import build_from_dataset, build_from_videos, load_calibration

    if args.checkpoint:
        from edge_fer.models.checkpoint import read_checkpoint
        from edge_fer.presets import ModelPreset

        preset = ModelPreset.from_dict(read_checkpoint(args.checkpoint)["preset"])
    else:
        from edge_fer.presets import get_preset

        preset = get_preset(args.preset)
    if args.dataset:
        wanted = {
            "kind": "dataset",
            "dataset": args.dataset,
            "root": str(args.root),
            "fold": args.fold,
            "samples": args.samples,
            "seed": args.seed,
        }
    else:
        if preset.family != "stt":
            raise PresetError("calibration from videos is for clip models (STT); use --dataset for HTNet")
        wanted = {
            "kind": "videos",
            "videos": [str(v) for v in args.videos],
            "stride": args.stride,
            "samples": args.samples,
        }
    if args.out.exists() and not args.force:
        existing = load_calibration(args.out)
        if existing.meta.get("source") == wanted and existing.meta.get("preset") == preset.name:
            print(f"{args.out}: up to date ({len(existing)} samples, sha256 {existing.sha256})")
            return 0
    if args.dataset:
        calib = build_from_dataset(
            preset,
            dataset=args.dataset,
            root=args.root,
            fold=args.fold,
            samples=args.samples,
            seed=args.seed,
            cache=args.out.parent / "flow-cache",
        )
    else:
        calib = build_from_videos(preset, args.videos, stride=args.stride, samples=args.samples)
    calib.save(args.out, force=True)
    counts = {int(c): int((calib.labels == c).sum()) for c in set(calib.labels.tolist())}
    print(json.dumps({"out": str(args.out), "samples": len(calib), "sha256": calib.sha256, "per_class": counts}))
    return 0


if __name__ == "__main__":
    run_tool(main, "python -m calibration")
