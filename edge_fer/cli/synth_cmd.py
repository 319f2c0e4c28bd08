"""``edge-fer synth``: write the synthetic benchmark (SYNTHETIC data) in real dataset layouts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("synth", help="write the synthetic benchmark (DFEW or CASME II layout)")
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    dfer = kinds.add_parser("dfer", help="7-class dynamic expressions in DFEW's layout (5 folds)")
    dfer.add_argument("out", type=Path)
    dfer.add_argument("--clips", type=int, default=700, help="number of videos (default 700)")
    dfer.add_argument(
        "--style",
        choices=("au", "motion"),
        default="au",
        help="au (default): face crops showing each emotion's action units; motion: the older benchmark "
        "whose classes only the order of frames tells apart",
    )
    dfer.add_argument(
        "--teacher-picks",
        type=int,
        default=1,
        metavar="K",
        help="au style: each clip's expression is the one of K draws the FER2013 teacher reads as the "
        "intended class most surely (needs the 'teacher' extra; default 1: no picking)",
    )
    dfer.add_argument(
        "--realism",
        choices=("auto", "on", "off"),
        default="auto",
        help="score the apex frames with the FER2013 teacher (the 'teacher' extra): auto = when installed",
    )
    me = kinds.add_parser("me", help="3-class micro-expressions in CASME II's layout")
    me.add_argument("out", type=Path)
    me.add_argument("--subjects", type=int, default=16, help="number of subjects (default 16)")
    me.add_argument("--clips-per-subject", type=int, default=9)
    for sub in (dfer, me):
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument(
            "--frame-size", type=int, default=None, help="frame side in pixels (default 96 for au, else 160)"
        )
        sub.add_argument("--workers", type=int, default=2, help="processes rendering videos")
        sub.add_argument("--force", action="store_true", help="replace a synthetic set already in OUT")
        sub.set_defaults(handler=run)


def _progress(done: int, total: int) -> None:
    if sys.stderr.isatty():
        print(f"\rrendering videos: {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from edge_fer.data.synth import write_dfer, write_micro

    if args.kind == "dfer":
        out = write_dfer(
            args.out,
            clips=args.clips,
            seed=args.seed,
            frame_size=args.frame_size,
            workers=args.workers,
            force=args.force,
            progress=_progress,
            style=args.style,
            teacher_picks=args.teacher_picks,
        )
        picks = f", expressions the teacher's best of {args.teacher_picks}" if args.teacher_picks > 1 else ""
        print(f"wrote a SYNTHETIC DFER set ({args.clips} videos, style {args.style}{picks}, DFEW layout, 5 folds) to "
              f"{out}")
        if args.realism != "off":
            _report_realism(out, required=args.realism == "on")
    else:
        out = write_micro(
            args.out,
            subjects=args.subjects,
            clips_per_subject=args.clips_per_subject,
            seed=args.seed,
            frame_size=args.frame_size or 160,
            workers=args.workers,
            force=args.force,
            progress=_progress,
        )
        print(f"wrote a SYNTHETIC micro-expression set ({args.subjects} subjects, CASME II layout) to {out}")
    return 0


def _report_realism(out: Path, *, required: bool) -> None:
    """Print (and keep in OUT/realism.json) how often the FER2013 teacher agrees with the labels."""
    from edge_fer.data.realism import TeacherUnavailable, synthetic_realism

    try:
        report = synthetic_realism(out)
    except TeacherUnavailable as error:
        if required:
            raise
        print(f"realism: not measured ({error})")
        return
    per_class = ", ".join(f"{name} {value:.2f}" for name, value in report["per_class"].items())
    print(
        f"realism: the FER2013 teacher agrees with the intended class on {report['agreement']:.1%} of "
        f"{report['count']} apex frames ({per_class}); written to {out / 'realism.json'}"
    )
    if "first_draws" in report:
        print(
            f"realism: the teacher picked each clip's expression; on the first draws, unpicked, it agrees on "
            f"{report['first_draws']['agreement']:.1%}"
        )
