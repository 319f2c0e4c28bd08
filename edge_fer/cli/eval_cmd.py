"""``edge-fer eval``: metrics of a checkpoint or an exported artifact on a dataset split, as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_fer.artifacts import is_artifact
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
    parser.add_argument(
        "--dataset", required=True, help="dfew, afew, ferv39k, mafw, casme2, samm, smic, casme3a, composite"
    )
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--fold", type=int, default=None, help="DFER (DFEW/MAFW) or megc2019 (1..5) fold")
    parser.add_argument("--split", default="test", help="split of --fold to evaluate (default test)")
    parser.add_argument("--subjects", nargs="*", help="micro-expressions: only these subjects (default all)")
    parser.add_argument("--cache", type=Path, help="micro-expressions: flow feature cache folder")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--backend", default="auto", help="artifacts: auto, openvino, onnxruntime")
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
