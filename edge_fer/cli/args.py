"""Argument parsing shared by every edge-fer command: one-line usage errors and one vocabulary.

Each flag means one thing wherever it appears:

- ``--dataset/--root/--fold/--split``: the data a command reads (what a trainer trains on,
  what eval, bench and an exporter's check score); calibration data is ``--calib`` in the
  exporters.
- ``--backend``: the inference library, one of ``BACKEND_CHOICES``; ``--threads`` the number of
  inference threads (``edge-fer bench`` takes it more than once to compare counts).
- ``--device``: where the model runs, named as its runner names it: torch ``cpu``/``cuda:0``
  for checkpoints (training, eval of ``best.pt``), OpenVINO ``CPU``/``GPU``/``NPU`` or an ONNX
  Runtime execution provider for exported models.
- ``--precision``: the numeric precision of an exported model (fp32, fp16, int8); the
  OpenVINO compute hint is ``--infer-precision``.

Old spellings keep working for one release and print a line saying what replaces them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "Parser",
    "BACKEND_CHOICES",
    "PRECISION_CHOICES",
    "deprecated",
    "add_data_arguments",
    "add_backend_arguments",
    "flatten_counts",
]

BACKEND_CHOICES = ("auto", "openvino", "onnxruntime", "tensorrt")
PRECISION_CHOICES = ("fp32", "fp16", "int8")


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are one line (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def deprecated(new: str) -> type[argparse.Action]:
    """An action for an old spelling: stores into the new flag's destination and says so once."""

    class _Deprecated(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None) -> None:
            print(
                f"{parser.prog}: {option_string} is deprecated and goes in the next release; use {new}",
                file=sys.stderr,
            )
            setattr(namespace, self.dest, values)

    return _Deprecated


def _counts(text: str) -> int | list[int]:
    """One count; the old comma-separated list of them still reads, with a deprecation line."""
    if "," not in text:
        return int(text)
    print(f"--threads {text}: comma-separated counts are deprecated; repeat --threads instead", file=sys.stderr)
    return [int(v) for v in text.split(",") if v.strip()]


def flatten_counts(values: list | None) -> list[int]:
    """``--threads`` given several times (some perhaps in the old comma form) as one list."""
    return [n for v in values or () for n in (v if isinstance(v, list) else [v])]


def add_data_arguments(
    parser: argparse.ArgumentParser,
    *,
    required: bool = False,
    what: str = "the data to evaluate on",
    old_prefix: str | None = None,
    split: bool = True,
) -> argparse._ArgumentGroup:
    """``--dataset``, ``--root``, ``--fold`` (and ``--split``) as one group.

    ``old_prefix`` ("eval-") keeps the spellings this command used before (``--eval-dataset``
    ...) working for one release.
    """
    group = parser.add_argument_group(what)
    group.add_argument(
        "--dataset",
        required=required,
        help="dfew, afew, ferv39k, mafw, ckplus (DFER); casme2, samm, smic, casme3a, composite, megc2019 (micro)",
    )
    group.add_argument("--root", type=Path, required=required, help="the dataset's folder")
    group.add_argument("--fold", type=int, help="fold (DFEW/MAFW, CK+ 1..10, megc2019 1..5)")
    if split:
        group.add_argument("--split", default="test", help="split of --fold (default test)")
    if old_prefix:
        for name in ("dataset", "root", "fold"):
            group.add_argument(
                f"--{old_prefix}{name}",
                dest=name,
                type={"root": Path, "fold": int}.get(name, str),
                action=deprecated(f"--{name}"),
                help=argparse.SUPPRESS,
            )
    return group


def add_backend_arguments(
    parser: argparse.ArgumentParser, *, several: bool = False, served: bool = False, **defaults: Any
) -> None:
    """``--backend``, ``--device``, ``--threads`` (``several``: each may be given more than once;
    ``served``: also ``--backend triton`` with ``--url``)."""
    group = parser.add_argument_group("inference backend")
    if several:
        group.add_argument(
            "--backend",
            dest="backend",
            action="append",
            choices=BACKEND_CHOICES[1:] + ("torch",),
            help="backend to measure; repeat for several (default: every one installed)",
        )
        group.add_argument(
            "--threads", type=_counts, action="append", help="inference threads; repeat to compare (default: backend's)"
        )
    else:
        choices = BACKEND_CHOICES + (("triton",) if served else ())
        group.add_argument(
            "--backend",
            default="auto",
            choices=choices,
            help="default auto: by file type" + ("; triton: the model runs on a Triton server (--url)" if served else ""),
        )
        if served:
            group.add_argument(
                "--url",
                help="--backend triton: the server, HOST:PORT or http://HOST:PORT (HTTP) or grpc://HOST:PORT",
            )
        group.add_argument("--threads", type=int, help="inference threads (default: the backend's)")
    group.add_argument(
        "--device", help="the backend's device: OpenVINO CPU/GPU/NPU, an ONNX Runtime execution provider"
    )
    parser.set_defaults(**defaults)
