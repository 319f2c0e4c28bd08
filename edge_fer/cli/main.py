"""``edge-fer``: entry point and subcommand dispatch.

Each subcommand is registered by a ``register(subparsers)`` function that adds its parser
and sets ``handler``. Handlers import their heavy dependencies lazily, so ``--help`` and
``--version`` work on an edge device without torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from edge_fer import __version__
from edge_fer.cli import bench_cmd, camera_cmd, demo_cmd, eval_cmd, inspect_cmd, presets_cmd, synth_cmd
from edge_fer.cli.args import Parser
from edge_fer.errors import EdgeFerError

__all__ = ["build_parser", "main", "run_tool"]

SUBCOMMANDS = (demo_cmd, synth_cmd, eval_cmd, inspect_cmd, presets_cmd, camera_cmd, bench_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="edge-fer",
        description="Video facial-expression recognition from workstation training to INT8 on the edge.",
    )
    parser.add_argument("--version", action="version", version=f"edge-fer {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except EdgeFerError as exc:
        print(f"edge-fer {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"edge-fer {args.command}: interrupted", file=sys.stderr)
        return 130


def run_tool(entry: Callable[[], int], prog: str) -> None:
    """Run a ``python -m`` tool's entry point: user errors become one line and exit code 1."""
    try:
        sys.exit(entry())
    except EdgeFerError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    sys.exit(main())
