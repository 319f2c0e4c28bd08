"""Evaluate a trained model - a checkpoint or an exported artifact - on a dataset split.

``edge-fer eval``. The data are prepared exactly as at training time (test-mode clip
sampling and resize for DFER; cached flow features for micro-expressions) and the metrics
are the training scripts' (``edge_fer.metrics``). Checkpoints need torch (imported lazily);
artifacts run through the runtime backends and need no torch, and are verified against
their sidecar before use.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_fer.artifacts import is_artifact
from edge_fer.data.spec import is_synthetic
from edge_fer.errors import ArtifactError, DatasetError
from edge_fer.metrics import classification_report
from edge_fer.presets import MICRO_CLASSES, ModelPreset, canonical_class

__all__ = ["evaluate", "evaluate_checkpoint", "evaluate_artifact", "eval_batches", "SharedClasses", "shared_classes"]


@dataclass(frozen=True)
class SharedClasses:
    """How a model's classes meet a dataset's: the classes both have, matched by name.

    Attributes:
        classes: the shared classes, in the model's order and with the model's names.
        columns: the model's output index of each shared class.
        labels: dataset label -> index into ``classes``; labels absent here are of classes
            the model lacks, and their samples are dropped.
        dropped: the dataset's classes the model lacks (dataset names).
        zero_shot: the model's classes are not the dataset's (it was not trained on it).
    """

    classes: tuple[str, ...]
    columns: tuple[int, ...]
    labels: dict[int, int]
    dropped: tuple[str, ...]
    zero_shot: bool

    def predict(self, scores: np.ndarray) -> np.ndarray:
        """(N,) indices into ``classes``: the argmax of (N, model classes) ``scores`` over the
        shared classes' columns only. A class the dataset never labels (neutral, for CK+ peak
        frames) cannot be predicted: a sample is scored on which shared class the model ranks
        highest, as zero-shot cross-dataset results are."""
        return np.asarray(scores)[:, list(self.columns)].argmax(1)


def shared_classes(model_classes: Sequence[str], dataset_classes: Sequence[str]) -> SharedClasses:
    """Match a model's classes to a dataset's by name (synonyms: ``presets.CLASS_SYNONYMS``).

    Identical class lists give the identity (``zero_shot`` False). Otherwise, e.g. a DFEW
    model (7 classes with neutral) on CK+ (7 classes with contempt, no neutral): the 6 shared
    classes angry, disgust, fear, happy, sad, surprise; CK+'s contempt is dropped.

    Raises:
        DatasetError: fewer than two shared classes (nothing to score).
    """
    if tuple(model_classes) == tuple(dataset_classes):
        n = len(model_classes)
        return SharedClasses(tuple(model_classes), tuple(range(n)), {i: i for i in range(n)}, (), False)
    model_names = [canonical_class(c) for c in model_classes]
    dataset_names = [canonical_class(c) for c in dataset_classes]
    columns = tuple(i for i, name in enumerate(model_names) if name in dataset_names)
    if len(columns) < 2:
        raise DatasetError(
            f"the model predicts {tuple(model_classes)}, the dataset has {tuple(dataset_classes)}: "
            f"{len(columns)} class(es) in common, at least 2 are needed to score it"
        )
    shared = [model_names[i] for i in columns]
    labels = {d: shared.index(name) for d, name in enumerate(dataset_names) if name in shared}
    dropped = tuple(c for d, c in enumerate(dataset_classes) if d not in labels)
    return SharedClasses(tuple(model_classes[i] for i in columns), columns, labels, dropped, True)


def evaluate(model_path: str | Path, **kwargs: Any) -> dict[str, Any]:
    """``evaluate_artifact`` for .onnx/.xml/.engine files, ``evaluate_checkpoint`` otherwise."""
    if is_artifact(model_path):
        return evaluate_artifact(model_path, **kwargs)
    kwargs.pop("backend", None)
    return evaluate_checkpoint(model_path, **kwargs)


def eval_batches(
    preset: ModelPreset,
    *,
    dataset: str,
    root: str | Path,
    fold: int | None = None,
    split: str = "test",
    subjects: Sequence[str] | None = None,
    cache: str | Path | None = None,
    flow: dict | None = None,
    single_frame: bool = False,
    batch_size: int = 16,
) -> tuple[Iterator[tuple[np.ndarray, np.ndarray]], dict[str, Any]]:
    """Batches of (float32 model inputs, labels) of a dataset split, and a description of it.

    DFER datasets whose classes are not the model's are evaluated zero-shot over the classes
    both have (``shared_classes``): samples of classes the model lacks are dropped, labels
    index the shared classes, and the description says ``classes`` (the shared ones, model
    names), ``zero_shot: true`` and ``dropped`` ({dataset class: samples}); score the
    model with ``shared_classes(preset.classes, info["classes"]).predict`` (argmax over the
    shared classes only). CK+ without ``fold`` (zero-shot only): every labelled sequence.
    Grey frames (CK+48) are read as 3-channel BGR like any other (``load_frames``).
    """
    from edge_fer.data.dfer import DFER_DATASETS, read_dfer
    from edge_fer.data.megc2019 import MEGC2019
    from edge_fer.data.micro import MICRO_DATASETS, composite_label, read_micro
    from edge_fer.preprocessing.clips import clip_indices, eval_transform, load_frames, to_model_input

    root = Path(root)
    info: dict[str, Any] = {"data": "synthetic" if is_synthetic(root) else "real", "dataset": dataset}
    pre = preset.preprocessing
    if dataset in DFER_DATASETS:
        if preset.family != "stt":
            raise DatasetError(f"{dataset} is a dynamic-expression dataset but the model is {preset.family}")
        mapping = shared_classes(preset.classes, DFER_DATASETS[dataset].classes)
        if dataset == "ckplus" and fold is None:
            if not mapping.zero_shot:
                raise DatasetError(
                    "ckplus: a model of CK+'s own classes was trained on CK+ folds; pass --fold 1..10 to "
                    "score its test fold (every sequence would include its training data)"
                )
            from edge_fer.data.ckplus import read_ckplus_sequences

            records = read_ckplus_sequences(root)  # zero-shot: every labelled sequence
            info.update(fold=None, split="all")
        else:
            records = read_dfer(dataset, root, fold=fold, split=split)
            info.update(fold=fold, split=split)
        if mapping.zero_shot:
            dataset_classes = DFER_DATASETS[dataset].classes
            dropped = Counter(dataset_classes[r.label] for r in records if r.label not in mapping.labels)
            records = [
                dataclasses.replace(r, label=mapping.labels[r.label]) for r in records if r.label in mapping.labels
            ]
            info.update(
                classes=list(mapping.classes),
                zero_shot=True,
                dropped={name: dropped[name] for name in mapping.dropped},
                rule="argmax over the shared classes only",
            )

        def clip(record) -> np.ndarray:
            count = len(record.frames)
            indices = np.array([count // 2]) if single_frame else clip_indices(count, pre, train=False)
            frames = eval_transform(load_frames(record.frames, indices, source=f"video {record.video_id}"), pre)
            return frames[0] if single_frame else frames

        def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for start in range(0, len(records), batch_size):
                chunk = records[start : start + batch_size]
                yield np.stack([clip(r) for r in chunk]), np.array([r.label for r in chunk])

        return batches(), info
    if dataset == MEGC2019:  # the HTNet repository's layout: flow images as shipped
        from edge_fer.data.megc2019 import megc2019_features, read_megc2019

        if preset.family != "htnet":
            raise DatasetError(f"{dataset} is a micro-expression dataset but the model is {preset.family}")
        # 5 folds by subject: with a fold, its ``split`` side; without, every sample.
        flow_records = read_megc2019(root, fold=fold, split=split if fold is not None else None)
        if fold is not None:
            info.update(fold=fold, split=split)
        if subjects:
            flow_records = [r for r in flow_records if r.subject in set(subjects)]
        features = megc2019_features(
            flow_records,
            convention=(flow or {}).get("patches", pre.patch_convention or "xy"),
            cache_dir=cache or tempfile.mkdtemp(prefix="edge-fer-landmarks-"),
        )
        inputs = to_model_input(features.images, pre)
        labels = np.array([r.label for r in flow_records], dtype=np.int64)
        info["subjects"] = sorted({r.subject for r in flow_records})
        return iter(
            [(inputs[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, len(labels), batch_size)]
        ), info
    if dataset in MICRO_DATASETS:
        from edge_fer.data.micro_features import MicroFeatureConfig, compute_micro_features

        if preset.family != "htnet":
            raise DatasetError(f"{dataset} is a micro-expression dataset but the model is {preset.family}")
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
        flow = flow or {}
        config = MicroFeatureConfig(
            method=flow.get("flow", "farneback"), convention=flow.get("patches", pre.patch_convention or "xy")
        )
        features = compute_micro_features(
            [r for r, _ in labelled], config=config, cache_dir=cache or tempfile.mkdtemp(prefix="edge-fer-flow-")
        )
        inputs = to_model_input(features.images, pre)
        labels = np.array([y for _, y in labelled], dtype=np.int64)
        info["subjects"] = sorted({r.subject for r, _ in labelled})
        return iter(
            [(inputs[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, len(labels), batch_size)]
        ), info
    known = ", ".join(sorted({**DFER_DATASETS, **MICRO_DATASETS, MEGC2019: None}))
    raise DatasetError(f"unknown dataset {dataset!r}; known: {known}")


def _scored_classes(preset: ModelPreset, info: dict[str, Any]) -> SharedClasses:
    """The model columns the labels of ``eval_batches`` index: its shared classes when it
    evaluated zero-shot (``info["classes"]``), all the model's classes otherwise."""
    return shared_classes(preset.classes, info.get("classes", preset.classes))


def _report(
    targets: list, predictions: list, classes: Sequence[str], info: dict, keep: bool = False, **extra: Any
) -> dict[str, Any]:
    predicted = np.concatenate(predictions) if predictions else np.zeros(0, np.int64)
    report = classification_report(np.concatenate(targets) if targets else [], predicted, classes)
    if keep:  # per-sample predictions, in dataset order (for agreement between models)
        report["predictions"] = [int(p) for p in predicted]
    return {**info, **extra, **report}


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
    keep_predictions: bool = False,
) -> dict[str, Any]:
    """Metrics (UAR, WAR, UF1, per-class recall, confusion matrix) of a checkpoint.

    DFER datasets: the ``split`` of ``fold``; a model of other classes (a DFEW model on CK+)
    is scored zero-shot over the shared classes, with CK+'s every sequence when no ``fold``
    is given (see ``eval_batches``). MEGC2019: the ``split`` of one of its 5 subject
    folds when ``fold`` is given. Micro-expression datasets (and MEGC2019 without a fold):
    every sample, or those of ``subjects`` (labels mapped to the composite classes when the
    model has them).
    """
    import torch

    from edge_fer.models.checkpoint import load_model

    model, preset, payload = load_model(checkpoint)
    torch_device = (
        torch.device("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else torch.device(device)
    )
    model = model.to(torch_device).eval()
    batches, info = eval_batches(
        preset,
        dataset=dataset,
        root=root,
        fold=fold,
        split=split,
        subjects=subjects,
        cache=cache or Path(checkpoint).parent / "cache",
        flow=payload.get("features"),
        single_frame=payload["model_kind"] == "frame_baseline",
        batch_size=batch_size,
    )
    scored = _scored_classes(preset, info)
    targets, predictions = [], []
    with torch.no_grad():
        for inputs, labels in batches:
            predictions.append(scored.predict(model(torch.from_numpy(inputs).to(torch_device)).cpu().numpy()))
            targets.append(labels)
    return _report(
        targets,
        predictions,
        scored.classes,
        info,
        keep_predictions,
        checkpoint=str(checkpoint),
        model=payload["model_kind"],
        preset=preset.name,
    )


def evaluate_artifact(
    artifact: str | Path,
    *,
    dataset: str,
    root: str | Path,
    fold: int | None = None,
    split: str = "test",
    subjects: Sequence[str] | None = None,
    cache: str | Path | None = None,
    batch_size: int = 16,
    backend: str = "auto",
    device: str | None = None,
    precision: str | None = None,
    keep_predictions: bool = False,
) -> dict[str, Any]:
    """Metrics of an exported full-model artifact, run by a runtime backend (no torch).

    The artifact is verified against its sidecar first. Zero-shot on a dataset of other
    classes as ``evaluate_checkpoint``. OpenVINO runs ``precision`` (None:
    f32 for FP32/INT8 artifacts - the device default would be bf16 on CPUs that have it).
    """
    from edge_fer.artifacts import read_artifact
    from edge_fer.runtime.backends import open_backend

    meta = read_artifact(artifact)
    if meta.part != "full":
        raise ArtifactError(f"{artifact} is the {meta.part} part of a model; evaluate the full model")
    if meta.model_kind not in ("stt", "htnet"):
        raise ArtifactError(f"{artifact} holds a {meta.model_kind} model")
    preset = meta.preset
    if precision is None and backend in ("auto", "openvino"):
        precision = "f32"
    with open_backend(artifact, backend=backend, device=device, precision=precision) as runner:
        input_name = next(iter(meta.inputs))
        output_name = next(iter(meta.outputs))
        batches, info = eval_batches(
            preset,
            dataset=dataset,
            root=root,
            fold=fold,
            split=split,
            subjects=subjects,
            cache=cache,
            flow=meta.meta.get("features"),
            batch_size=batch_size,
        )
        scored = _scored_classes(preset, info)
        targets, predictions = [], []
        for inputs, labels in batches:
            logits = runner.infer({input_name: inputs})[output_name]
            predictions.append(scored.predict(logits))
            targets.append(labels)
        backend_name = runner.name
    return _report(
        targets,
        predictions,
        scored.classes,
        info,
        keep_predictions,
        artifact=str(artifact),
        backend=backend_name,
        precision=meta.precision,
        quantization=meta.meta.get("quantization", {}).get("method"),
        preset=preset.name,
    )
