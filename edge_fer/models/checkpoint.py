"""Self-describing checkpoints: weights plus everything needed to rebuild and feed the model.

A checkpoint is a dict saved with ``torch.save`` and loaded with ``weights_only=True`` (no
pickled code runs on load). It holds the preset (architecture, classes in order,
preprocessing), the model kind, the state dict, the dataset and training settings, and the
validation metrics it was selected on. Training state (optimizer, RNG, history) rides
along in ``last.pt`` for ``--resume``. Files are written atomically.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edge_fer.errors import ArtifactError
from edge_fer.fileio import atomic_output
from edge_fer.models.baseline import FrameBaseline
from edge_fer.presets import ModelPreset

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "read_checkpoint", "load_model", "build_for_kind", "file_sha256"]

CHECKPOINT_FORMAT = "edge-fer-checkpoint/1"
MODEL_KINDS = ("stt", "htnet", "frame_baseline")


def build_for_kind(kind: str, preset: ModelPreset) -> nn.Module:
    """Build the model of a checkpoint's ``model_kind`` from its preset."""
    from edge_fer.models import build_model

    if kind == "frame_baseline":
        return FrameBaseline.from_preset(preset)
    if kind != preset.family:
        raise ArtifactError(f"checkpoint model kind {kind!r} does not match its preset family {preset.family!r}")
    return build_model(preset)


def save_checkpoint(
    path: str | os.PathLike, *, model: nn.Module, preset: ModelPreset, kind: str, extra: dict[str, Any] | None = None
) -> Path:
    """Write a checkpoint atomically (replacing an existing file: training owns its run folder)."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"model kind must be one of {MODEL_KINDS}, got {kind!r}")
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_kind": kind,
        "preset": preset.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **(extra or {}),
    }
    with atomic_output(path, force=True) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint dict safely (``weights_only=True``) and check its format.

    Raises:
        ArtifactError: missing, truncated/corrupt, or not an edge-fer checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise ArtifactError(
            f"{path} is not a readable checkpoint ({type(exc).__name__}: {str(exc).strip().splitlines()[0][:120]})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ArtifactError(
            f"{path} is not an edge-fer checkpoint (expected format {CHECKPOINT_FORMAT}); "
            "official HTNet weights load with HTNet.from_official"
        )
    return payload


def load_model(path: str | os.PathLike) -> tuple[nn.Module, ModelPreset, dict[str, Any]]:
    """Rebuild the model of a checkpoint in eval mode: (model, preset, checkpoint dict)."""
    payload = read_checkpoint(path)
    preset = ModelPreset.from_dict(payload["preset"])
    model = build_for_kind(payload["model_kind"], preset)
    if payload.get("qat"):  # a quantization-aware-trained model: re-insert its quantizers first
        from edge_fer.models.qat import restore_qat

        model = restore_qat(model, payload["qat"], preset)
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        raise ArtifactError(
            f"{path}: weights do not fit the {preset.name} architecture it declares: "
            f"{str(exc).strip().splitlines()[0][:200]}"
        ) from None
    return model.eval(), preset, payload


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
