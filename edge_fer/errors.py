"""The one exception hierarchy of edge-fer.

Every error a user can cause (a wrong path, a corrupt artifact, a missing backend) is an
``EdgeFerError`` whose message says what was expected, what was found and what to do.
The CLI prints such errors as one line and exits non-zero; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "EdgeFerError",
    "PresetError",
    "ArtifactError",
    "OutputError",
    "OutputExistsError",
    "DatasetError",
    "SourceError",
    "BackendError",
    "ToolchainError",
]


class EdgeFerError(Exception):
    """Base class of all user-facing errors."""


class PresetError(EdgeFerError):
    """Unknown model preset, or a preset that contradicts the weights or options given."""


class ArtifactError(EdgeFerError):
    """A checkpoint, ONNX model, OpenVINO IR, engine or metadata sidecar is missing,
    corrupt or does not match the model it claims to be."""


class OutputError(EdgeFerError):
    """An output path cannot be written (its folder cannot be made, no permission, not a folder)."""


class OutputExistsError(OutputError):
    """Refusing to overwrite an existing output without ``--force``."""


class DatasetError(EdgeFerError):
    """A dataset folder, annotation file or frame is missing or malformed."""


class SourceError(EdgeFerError):
    """A camera, video file or stream cannot be opened or read."""


class BackendError(EdgeFerError):
    """An inference backend is not installed or cannot run the artifact."""


class ToolchainError(EdgeFerError):
    """A first-use build (NNCF's C++ kernels) cannot finish: a tool is missing, or it hangs."""
