"""``edge-fer presets``: list the model presets and what each expects as input."""

from __future__ import annotations

import argparse
import json

from edge_fer.presets import PRESETS, get_preset


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("presets", help="list model presets (architecture, input, classes)")
    parser.add_argument("name", nargs="?", help="show one preset in full")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    presets = [get_preset(args.name)] if args.name else [PRESETS[name] for name in sorted(PRESETS)]
    if args.json or args.name:
        records = [p.to_dict() for p in presets]
        print(json.dumps(records[0] if args.name else records, indent=2))
        return 0
    print(f"{'preset':<16}{'family':<8}{'input':<18}{'classes':<9}description")
    for p in presets:
        pre = p.preprocessing
        frames = f"{pre.clip_len}x" if pre.clip_len > 1 else ""
        shape = f"{frames}{len(pre.channels)}x{pre.input_size[0]}x{pre.input_size[1]}"
        print(f"{p.name:<16}{p.family:<8}{shape:<18}{p.num_classes:<9}{p.description}")
    return 0
