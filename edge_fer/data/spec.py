"""Which data a command reads, as one value: ``DataSpec(dataset, root, fold, split)``.

Evaluation, ``edge-fer bench``, the exporters' check after export and calibration all take
one; the CLIs only parse ``--dataset/--root/--fold/--split`` into it. A data folder written by
``edge-fer synth`` carries ``SYNTHETIC_MARKER``, so every figure measured on it can say so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edge_fer.errors import DatasetError

__all__ = ["REAL_DATA_ENV", "SYNTHETIC_MARKER", "DataSpec", "is_synthetic", "real_data_root"]

SYNTHETIC_MARKER = "SYNTHETIC.txt"
REAL_DATA_ENV = "EDGE_FER_REAL_DATA"


def real_data_root() -> Path:
    """The folder of the project's small real sets (``ckplus48/``, ``htnet-megc2019/``):
    ``$EDGE_FER_REAL_DATA``, else ``../shared/real`` beside a clone of the repository.
    It may not exist (an installed wheel, a fresh machine): callers check and say so."""
    base = os.environ.get(REAL_DATA_ENV)
    return Path(base) if base else Path(__file__).resolve().parents[3] / "shared" / "real"


def is_synthetic(root: str | os.PathLike) -> bool:
    """Whether ``root`` was written by ``edge-fer synth`` (it holds the marker file)."""
    return (Path(root) / SYNTHETIC_MARKER).exists()


@dataclass(frozen=True)
class DataSpec:
    """A dataset, its folder, and the part of it to read."""

    dataset: str
    root: Path
    fold: int | None = None
    split: str = "test"

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def from_args(cls, args, *, required: bool = False) -> DataSpec | None:
        """From parsed ``--dataset/--root/--fold/--split`` (``cli.args.add_data_arguments``);
        None when no dataset was given.

        Raises:
            DatasetError: a dataset without its folder (or, ``required``, no dataset).
        """
        if not getattr(args, "dataset", None):
            if required:
                raise DatasetError("no dataset given; pass --dataset NAME --root FOLDER")
            return None
        if getattr(args, "root", None) is None:
            raise DatasetError(f"--dataset {args.dataset} needs --root, the folder that holds it")
        return cls(args.dataset, args.root, getattr(args, "fold", None), getattr(args, "split", None) or "test")

    def as_json(self) -> dict:
        """Plain JSON values (for results files and worker processes)."""
        return {"dataset": self.dataset, "root": str(self.root), "fold": self.fold, "split": self.split}

    @property
    def data(self) -> str:
        """ "synthetic" or "real": what every figure measured on it is labelled."""
        return "synthetic" if is_synthetic(self.root) else "real"
