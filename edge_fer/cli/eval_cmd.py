"""``edge-fer eval``: metrics of a checkpoint or an exported artifact on a dataset split, as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_fer.artifacts import is_artifact
from edge_fer.cli.args import BACKEND_CHOICES, add_data_arguments
from edge_fer.errors import DatasetError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a checkpoint or artifact on a dataset (JSON metrics)")
    parser.add_argument(
        "--checkpoint",
        "--model",
        dest="model",
        required=True,
        type=Path,
        help="RUN/best.pt, or an exported model.onnx / model.xml / model.engine",
    )
    add_data_arguments(parser, required=True)
    parser.add_argument("--subjects", nargs="*", help="micro-expressions: only these subjects (default all)")
    parser.add_argument("--cache", type=Path, help="micro-expressions: flow feature cache folder")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--backend", default="auto", choices=BACKEND_CHOICES, help="artifacts: default auto, by type")
    parser.add_argument("--device", default=None, help="torch device for checkpoints, backend device for artifacts")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edge_fer.evaluation import evaluate_artifact, evaluate_checkpoint

    common = dict(
        dataset=args.dataset,
        root=args.root,
        fold=args.fold,
        split=args.split,
        subjects=args.subjects,
        cache=args.cache,
        batch_size=args.batch_size,
    )
    if is_artifact(args.model):
        report = evaluate_artifact(args.model, backend=args.backend, device=args.device, **common)
    else:
        report = evaluate_checkpoint(args.model, device=args.device or "auto", **common)
    if report["samples"] == 0:
        raise DatasetError("no samples to evaluate")
    text = json.dumps(report, indent=2)
    if args.out:
        from edge_fer.fileio import atomic_output

        with atomic_output(args.out, force=True) as tmp:
            tmp.write_text(text + "\n")
    print(text)
    return 0
