"""Artifact metadata sidecars: what an exported model is, and proof that it is intact.

Every exported model file (``model.onnx``, ``model.xml`` + ``.bin``, ``model.engine``) gets
a JSON sidecar beside it, ``<file>.json``, holding the preset (family, classes in order,
input layout and preprocessing), the part (full / backbone / head), the input and output
names and shapes, precision and quantization (method, calibration-set hash), the source
checkpoint's hash, the sha256 of every file of the artifact, metrics measured after
export, and tool versions. The runtime and ``edge-fer eval`` load an artifact only through
``read_artifact``, which refuses a missing, mismatched or corrupted one.

Torch-free: the edge runtime uses this module.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_fer.errors import ArtifactError
from edge_fer.fileio import atomic_output
from edge_fer.presets import ModelPreset

__all__ = [
    "ARTIFACT_FORMAT",
    "ARTIFACT_KINDS",
    "ARTIFACT_SUFFIXES",
    "RUNS_ON",
    "is_artifact",
    "part_path",
    "artifact_files",
    "triton_model_name",
    "PRECISIONS",
    "Artifact",
    "sidecar_path",
    "sha256_file",
    "artifact_kind",
    "write_sidecar",
    "read_artifact",
    "tool_versions",
]

ARTIFACT_FORMAT = "edge-fer-artifact/1"
# The one table of artifact files: suffix -> kind, and the backends that run each kind
# (the first is what "auto" prefers where it is installed). ``.plan`` is TensorRT's other
# common engine suffix (trtexec, Triton).
ARTIFACT_KINDS = {".onnx": "onnx", ".xml": "openvino", ".engine": "tensorrt", ".plan": "tensorrt"}
ARTIFACT_SUFFIXES = tuple(ARTIFACT_KINDS)
RUNS_ON = {"onnx": ("openvino", "onnxruntime"), "openvino": ("openvino",), "tensorrt": ("tensorrt",)}
PRECISIONS = ("fp32", "fp16", "int8")


TOOLS = (
    "torch",
    "onnx",
    "onnxruntime",
    "openvino",
    "nncf",
    "onnxconverter-common",
    "tensorrt",
    "numpy",
    "opencv-python-headless",
)


def tool_versions() -> dict[str, str]:
    """Versions of edge-fer and the installed tools an artifact was made with."""
    import importlib.metadata
    import sys

    from edge_fer import __version__

    versions = {"edge_fer": __version__, "python": sys.version.split()[0]}
    for name in TOOLS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def sidecar_path(path: str | os.PathLike) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_artifact(path: str | os.PathLike) -> bool:
    """Whether the file name is an exported model's (by suffix; nothing is read)."""
    return Path(path).suffix.lower() in ARTIFACT_KINDS


def artifact_kind(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in ARTIFACT_KINDS:
        raise ArtifactError(
            f"{path}: unknown artifact type {suffix!r}; expected .onnx, .xml (OpenVINO IR) or .engine/.plan (TensorRT)"
        )
    return ARTIFACT_KINDS[suffix]


def part_path(artifact: str | os.PathLike, part: str) -> Path:
    """Where an export part lives beside the full model, for every kind:
    ``DIR/model.xml`` -> ``DIR/model.backbone.xml``; ``X.onnx`` -> ``X.head.onnx``."""
    artifact = Path(artifact)
    return artifact if part == "full" else artifact.with_name(f"{artifact.stem}.{part}{artifact.suffix}")


def triton_model_name(artifact: Artifact) -> str:
    """The model's name in a Triton model repository (``python -m export.triton`` writes it, the
    runtime's Triton backend asks for it): preset, precision, artifact kind and part, e.g.
    ``stt_tiny_int8_openvino_head``."""
    return f"{artifact.preset.name}_{artifact.precision}_{artifact.kind}_{artifact.part}"


def artifact_files(path: Path) -> list[Path]:
    """The files an artifact consists of (an IR is .xml + .bin)."""
    return [path, path.with_suffix(".bin")] if path.suffix.lower() == ".xml" else [path]


@dataclass(frozen=True)
class Artifact:
    """A verified artifact and its metadata."""

    path: Path
    meta: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.meta["artifact"]["kind"]

    @property
    def preset(self) -> ModelPreset:
        return ModelPreset.from_dict(self.meta["model"]["preset"])

    @property
    def part(self) -> str:
        return self.meta["model"]["part"]

    @property
    def model_kind(self) -> str:
        return self.meta["model"]["kind"]

    @property
    def precision(self) -> str:
        return self.meta["precision"]

    @property
    def inputs(self) -> dict[str, list]:
        return self.meta["io"]["inputs"]

    @property
    def outputs(self) -> dict[str, list]:
        return self.meta["io"]["outputs"]


def write_sidecar(
    path: str | os.PathLike,
    *,
    preset: ModelPreset,
    model_kind: str,
    part: str,
    inputs: dict[str, list],
    outputs: dict[str, list],
    precision: str,
    quantization: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    tools: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Hash the artifact's files and write ``<path>.json`` atomically (replacing an old one)."""
    path = Path(path)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    files = artifact_files(path)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ArtifactError(f"cannot describe {path}: missing {', '.join(missing)}")
    meta = {
        "format": ARTIFACT_FORMAT,
        "artifact": {
            "kind": artifact_kind(path),
            "file": path.name,
            "sha256": {f.name: sha256_file(f) for f in files},
        },
        "model": {"kind": model_kind, "family": preset.family, "part": part, "preset": preset.to_dict()},
        "io": {"inputs": inputs, "outputs": outputs},
        "precision": precision,
        "quantization": quantization or {"method": "none"},
        "source": source or {},
        "metrics": metrics or {},
        "tools": tools or {},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    target = sidecar_path(path)
    with atomic_output(target, force=True) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    return target


def read_artifact(path: str | os.PathLike, *, verify: bool = True) -> Artifact:
    """Load an artifact's sidecar and (by default) check every file against its sha256.

    Raises:
        ArtifactError: missing file or sidecar, unreadable or foreign sidecar, or a file
            whose content no longer matches (truncated, corrupted, replaced).
    """
    path = Path(path)
    kind = artifact_kind(path)
    if not path.is_file():
        raise ArtifactError(f"artifact {path} does not exist")
    meta_path = sidecar_path(path)
    if not meta_path.is_file():
        raise ArtifactError(
            f"{path} has no metadata sidecar {meta_path.name}; re-export it with edge-fer's export tools"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{meta_path} is not readable JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{meta_path} is not an edge-fer artifact sidecar (expected format {ARTIFACT_FORMAT})")
    try:
        recorded = meta["artifact"]["sha256"]
        if meta["artifact"]["kind"] != kind:
            raise ArtifactError(f"{meta_path} describes a {meta['artifact']['kind']} artifact, not {kind}")
        ModelPreset.from_dict(meta["model"]["preset"])
        _ = meta["io"]["inputs"], meta["io"]["outputs"], meta["precision"], meta["model"]["part"]
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"{meta_path} lacks field {exc}; re-export the artifact") from None
    if verify:
        for file in artifact_files(path):
            if not file.is_file():
                raise ArtifactError(f"{path}: its file {file.name} is missing")
            expected = recorded.get(file.name)
            if expected is None:
                raise ArtifactError(f"{meta_path} has no hash for {file.name}")
            if sha256_file(file) != expected:
                raise ArtifactError(
                    f"{file} does not match its sidecar (sha256 differs): corrupted, truncated or replaced; "
                    "re-export it"
                )
    return Artifact(path, meta)
