"""What the exporters' Python API takes besides a checkpoint: INT8 settings, and the error it
raises when a request contradicts the checkpoint or itself; the output-name check and the
usage-error mapping their command lines share.

Torch-free: ``export.trt`` imports it on a Jetson that has no torch.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

from edge_fer.artifacts import ARTIFACT_KINDS
from edge_fer.errors import ArtifactError

if TYPE_CHECKING:
    from calibration.sets import CalibrationSet

__all__ = [
    "QUANTIZATION_METHODS",
    "CALIBRATION_METHODS",
    "CalibrationSource",
    "QuantizationSettings",
    "ExportRequestError",
    "check_artifact_suffix",
    "usage_errors",
    "silent",
]

QUANTIZATION_METHODS = ("ptq", "accuracy-controlled", "qat")
# How ONNX Runtime estimates activation ranges for TensorRT's Q/DQ (export.qdq).
CALIBRATION_METHODS = ("percentile", "minmax", "entropy")

# A calibration (or validation) set: built already, a ``.npz`` from ``python -m calibration``,
# or the ``--calib`` spec ``dataset=NAME,root=DIR[,fold=K][,samples=N]`` / ``videos=a.mp4;b.mp4``.
CalibrationSource = Union["CalibrationSet", str, os.PathLike]


class ExportRequestError(ArtifactError):
    """An export request that contradicts the checkpoint or itself (a QAT checkpoint asked for
    fp16, a part the model lacks, a file name of another artifact kind). The ``python -m
    export.*`` tools report it as a usage error (exit code 2)."""


@dataclass(frozen=True)
class QuantizationSettings:
    """How an INT8 export is made.

    Attributes:
        method: "ptq" (post-training, calibrated on ``calibration``), "accuracy-controlled"
            (OpenVINO only: post-training, then layers return to float until the metric on
            ``validation`` drops by at most ``max_drop``) or "qat" (the checkpoint's trained
            fake-quantizers; it must be a QAT checkpoint). None: "qat" for a QAT checkpoint,
            "ptq" otherwise.
        max_drop: accuracy-controlled: the largest drop of the metric allowed (0.01 = one
            point of UAR, or of top-1 agreement with the float model on unlabelled clips).
        validation: accuracy-controlled: held-out data, in any form a calibration set takes
            (never the test split); labelled -> UAR, videos -> agreement with the float model.
        calibration_method: TensorRT's Q/DQ (ONNX Runtime): how activation ranges are
            estimated, "percentile" (robust to outliers), "minmax" or "entropy".
    """

    method: str | None = None
    max_drop: float | None = None
    validation: CalibrationSource | None = None
    calibration_method: str = "percentile"

    def __post_init__(self) -> None:
        if self.method is not None and self.method not in QUANTIZATION_METHODS:
            raise ValueError(f"quantization method must be one of {QUANTIZATION_METHODS}, got {self.method!r}")
        if self.calibration_method not in CALIBRATION_METHODS:
            raise ValueError(
                f"calibration method must be one of {CALIBRATION_METHODS}, got {self.calibration_method!r}"
            )
        if self.method == "accuracy-controlled" and (self.max_drop is None or self.validation is None):
            raise ValueError(
                "accuracy-controlled quantization needs max_drop (--max-drop) and validation data (--val): "
                "a labelled validation set, never the test split"
            )
        if self.max_drop is not None and not 0 <= self.max_drop < 1:
            raise ValueError(
                f"max_drop is a fraction of the metric, from 0 to 1 (0.01 = one point); got {self.max_drop}"
            )

    def method_for(self, checkpoint: str | os.PathLike, *, qat: bool, precision: str) -> str | None:
        """The method an export at ``precision`` uses for a checkpoint that is (``qat``) or is
        not quantization-aware-trained; None for a float precision.

        Raises:
            ExportRequestError: "qat" for a float checkpoint; a QAT checkpoint at a float
                precision, or with a post-training method.
        """
        if self.method == "qat" and not qat:
            raise ExportRequestError(
                f"--qat: {checkpoint} is not a QAT checkpoint (train one with python -m train.stt --qat)"
            )
        if qat and precision != "int8":
            raise ExportRequestError(f"{checkpoint} is quantization-aware-trained: export it with --precision int8")
        if precision != "int8":
            return None
        if self.method is None:
            return "qat" if qat else "ptq"
        if self.method != "qat" and qat:
            raise ExportRequestError(
                f"{checkpoint} is quantization-aware-trained: its INT8 comes from training, not {self.method} "
                "(give the float checkpoint for post-training quantization)"
            )
        return self.method


def check_artifact_suffix(path: str | os.PathLike, kind: str) -> Path:
    """Refuse an output file name that is not of artifact ``kind`` (the ``edge_fer.artifacts`` table).

    Raises:
        ExportRequestError: naming the suffixes that kind takes.
    """
    path = Path(path)
    if ARTIFACT_KINDS.get(path.suffix.lower()) != kind:
        suffixes = " or ".join(s for s, k in ARTIFACT_KINDS.items() if k == kind)
        raise ExportRequestError(f"--out must end in {suffixes}, got {path}")
    return path


def silent(line: str) -> None:
    """The exporters' default ``log``: say nothing (the CLIs pass ``print``)."""


@contextmanager
def usage_errors(
    parser: argparse.ArgumentParser, errors: tuple[type[Exception], ...] = (ExportRequestError,)
) -> Iterator[None]:
    """Report ``errors`` raised inside as the command's usage error (one line, exit code 2):
    requests that contradict the checkpoint, or (with ``ValueError``) settings the flags made."""
    try:
        yield
    except errors as exc:
        parser.error(str(exc))
