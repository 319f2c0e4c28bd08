"""Evaluate a trained model on a dataset split (``edge-fer eval``).

The data are prepared exactly as at training time (test-mode clip sampling and resize for
DFER; cached flow features for micro-expressions), and the metrics are the training
scripts' (``edge_fer.metrics``). Checkpoints need torch; this module imports it lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_fer.errors import DatasetError
from edge_fer.metrics import classification_report
from edge_fer.presets import MICRO_CLASSES

__all__ = ["evaluate_checkpoint"]

SYNTHETIC_MARKER = "SYNTHETIC.txt"


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    dataset: str,
    root: str | Path,
    fold: int | None = None,
    split: str = "test",
    subjects: Sequence[str] | None = None,
    cache: str | Path | None = None,
    batch_size: int = 16,
    device: str = "auto",
) -> dict[str, Any]:
    """Metrics (UAR, WAR, UF1, per-class recall, confusion matrix) of a checkpoint.

    DFER datasets: the ``split`` of ``fold``. Micro-expression datasets: every sample, or
    those of ``subjects`` (labels mapped to the composite classes when the model has them).
    """
    import torch
    from torch.utils.data import DataLoader

    from edge_fer.models.checkpoint import load_model
    from train.common import predict

    model, preset, payload = load_model(checkpoint)
    root = Path(root)
    torch_device = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    )
    data, targets_info = _dataset(
        preset, payload, dataset, root, fold, split, subjects, cache or Path(checkpoint).parent / "cache"
    )
    targets, predictions, _ = predict(model.to(torch_device), DataLoader(data, batch_size=batch_size), torch_device)
    report = classification_report(targets, predictions, preset.classes)
    return {
        "data": "synthetic" if (root / SYNTHETIC_MARKER).exists() else "real",
        "dataset": dataset,
        "checkpoint": str(checkpoint),
        "model": payload["model_kind"],
        "preset": preset.name,
        **targets_info,
        **report,
    }


def _dataset(
    preset,
    payload: dict,
    dataset: str,
    root: Path,
    fold: int | None,
    split: str,
    subjects: Sequence[str] | None,
    cache: str | Path,
):
    from edge_fer.data.dfer import DFER_DATASETS, read_dfer
    from edge_fer.data.micro import MICRO_DATASETS, composite_label, read_micro
    from edge_fer.data.torch_dataset import ClipDataset, FrameDataset, MicroDataset

    if dataset in DFER_DATASETS:
        if preset.family != "stt":
            raise DatasetError(
                f"{dataset} is a dynamic-expression dataset but the checkpoint is a {preset.family} model"
            )
        if tuple(DFER_DATASETS[dataset].classes) != tuple(preset.classes):
            raise DatasetError(
                f"the checkpoint predicts {preset.classes}, {dataset} has {DFER_DATASETS[dataset].classes}"
            )
        records = read_dfer(dataset, root, fold=fold, split=split)
        cls = FrameDataset if payload["model_kind"] == "frame_baseline" else ClipDataset
        return cls(records, preset.preprocessing, train=False), {"fold": fold, "split": split}
    if dataset in MICRO_DATASETS:
        from edge_fer.data.micro_features import MicroFeatureConfig, compute_micro_features

        if preset.family != "htnet":
            raise DatasetError(f"{dataset} is a micro-expression dataset but the checkpoint is a {preset.family} model")
        records = read_micro(dataset, root)
        if subjects:
            records = [r for r in records if r.subject in set(subjects)]
        composite = tuple(preset.classes) == MICRO_CLASSES
        labelled = [
            (
                r,
                composite_label(r)
                if composite
                else (preset.classes.index(r.emotion) if r.emotion in preset.classes else None),
            )
            for r in records
        ]
        labelled = [(r, y) for r, y in labelled if y is not None]
        trained_with = payload.get("features", {})  # the flow settings the model was trained on
        config = MicroFeatureConfig(
            method=trained_with.get("flow", "farneback"),
            convention=trained_with.get("patches", preset.preprocessing.patch_convention or "xy"),
        )
        features = compute_micro_features([r for r, _ in labelled], cache_dir=cache, config=config)
        labels = np.array([y for _, y in labelled], dtype=np.int64)
        return MicroDataset(features.images, labels, preset.preprocessing, train=False), {
            "subjects": sorted({r.subject for r, _ in labelled})
        }
    raise DatasetError(f"unknown dataset {dataset!r}; known: {', '.join(sorted({**DFER_DATASETS, **MICRO_DATASETS}))}")
