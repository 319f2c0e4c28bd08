"""Calibration sets: the inputs INT8 ranges are measured on.

A set holds model inputs *before* normalisation, as uint8 images (compact, and exactly what
the preprocessing sees): DFER clips (N, T, H, W, 3) BGR face crops, or micro-expression
flow images (N, 28, 28, 3). From a dataset the clips are made the way evaluation makes them
(centred sampling, resize), from the training split only and stratified by class; from
videos they are made the way the runtime makes them (detect, align, window). The set is
saved as ``.npz`` with its description and a sha256 of its content, which every quantized
artifact records. ``calibration_file`` builds one into a file, or reuses the file when it
was built the same way (``python -m calibration``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_fer.data.spec import DataSpec
from edge_fer.errors import DatasetError
from edge_fer.fileio import atomic_output
from edge_fer.presets import ModelPreset, Preprocessing

__all__ = [
    "CalibrationSet",
    "load_calibration",
    "build_from_dataset",
    "build_from_videos",
    "calibration_file",
    "model_inputs",
]


@dataclass
class CalibrationSet:
    """Calibration inputs and where they came from.

    Attributes:
        images: uint8 inputs before normalisation (see the module docstring for layouts).
        labels: (N,) class index, -1 where unknown (videos).
        meta: source description (dataset/videos, preset, sampling settings).
    """

    images: np.ndarray
    labels: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        digest.update(str(self.images.shape).encode())
        digest.update(np.ascontiguousarray(self.images).tobytes())
        digest.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        return digest.hexdigest()

    def __len__(self) -> int:
        return len(self.images)

    def describe(self) -> dict[str, Any]:
        """What an artifact records about its calibration data."""
        return {"sha256": self.sha256, "samples": len(self), **{k: self.meta[k] for k in ("source",) if k in self.meta}}

    def save(self, path: str | os.PathLike, *, force: bool = False) -> Path:
        with atomic_output(path, force=force) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(
                    handle,
                    images=self.images,
                    labels=self.labels,
                    meta=np.array(json.dumps({**self.meta, "sha256": self.sha256})),
                )
        return Path(path)


def load_calibration(path: str | os.PathLike) -> CalibrationSet:
    """Read a calibration set and check its content hash.

    Raises:
        DatasetError: missing, unreadable or modified file.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"calibration set {path} does not exist; build one with `python -m calibration`")
    try:
        with np.load(path, allow_pickle=False) as data:
            images, labels, meta = data["images"], data["labels"], json.loads(str(data["meta"]))
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path} is not a calibration set ({type(exc).__name__}: {exc})") from None
    calib = CalibrationSet(images, labels, meta)
    if meta.get("sha256") != calib.sha256:
        raise DatasetError(f"{path}: content does not match its recorded hash (modified or corrupted); rebuild it")
    if len(calib) == 0:
        raise DatasetError(f"{path} holds no samples")
    return calib


def model_inputs(images: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """uint8 calibration images -> float32 model inputs, normalised as the preset says."""
    from edge_fer.preprocessing.clips import to_model_input

    return to_model_input(images, pre)


def _stratified(labels: Sequence[int], samples: int, seed: int) -> list[int]:
    """Up to ``samples`` indices with classes as balanced as the data allow."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    pools = {c: list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)}
    chosen: list[int] = []
    while len(chosen) < samples and any(pools.values()):
        for c in sorted(pools):
            if pools[c] and len(chosen) < samples:
                chosen.append(int(pools[c].pop()))
    return sorted(chosen)


def build_from_dataset(
    preset: ModelPreset,
    *,
    dataset: str,
    root: str | os.PathLike,
    fold: int | None = None,
    samples: int = 128,
    seed: int = 0,
    cache: str | os.PathLike | None = None,
) -> CalibrationSet:
    """A calibration set from a dataset's *training* split, stratified by class.

    STT: a DFER dataset's ``fold`` training split. HTNet: a micro-expression dataset (every
    sample), or ``megc2019`` (the training subjects of its subject ``fold`` 1..5; every
    sample when ``fold`` is None).
    """
    root = Path(root)
    source = _dataset_source(dataset, root, fold, samples, seed)
    if preset.family == "stt":
        from edge_fer.data.dfer import DFER_DATASETS, read_dfer
        from edge_fer.preprocessing.clips import clip_indices, load_frames, resize_frame

        if dataset not in DFER_DATASETS:
            raise DatasetError(
                f"{dataset!r} is not a dynamic-expression dataset; STT needs one of {sorted(DFER_DATASETS)}"
            )
        records = read_dfer(dataset, root, fold=fold, split="train")
        chosen = [records[i] for i in _stratified([r.label for r in records], samples, seed)]
        pre = preset.preprocessing
        clips = []
        for record in chosen:
            indices = clip_indices(len(record.frames), pre, train=False)
            frames = load_frames(record.frames, indices, source=f"video {record.video_id}")
            clips.append(np.stack([resize_frame(f, pre) for f in frames]))
        images, labels = np.stack(clips), np.array([r.label for r in chosen])
    else:
        from edge_fer.data.megc2019 import MEGC2019, megc2019_features, read_megc2019
        from edge_fer.data.micro import MICRO_DATASETS, composite_label, read_micro
        from edge_fer.data.micro_features import MicroFeatureConfig, compute_micro_features

        if dataset == MEGC2019:  # the HTNet repository's flow images; a fold's training subjects
            flow_records = read_megc2019(root, fold=fold, split="train" if fold is not None else None)
            chosen = [flow_records[i] for i in _stratified([r.label for r in flow_records], samples, seed)]
            if not chosen:
                raise DatasetError(f"no calibration samples chosen from {root} (samples={samples})")
            features = megc2019_features(
                chosen,
                convention=preset.preprocessing.patch_convention or "xy",
                cache_dir=cache or tempfile.mkdtemp(prefix="edge-fer-landmarks-"),
            )
            images, labels = features.images, np.array([r.label for r in chosen])
            return _checked(images, labels, root, source, preset)
        if dataset not in MICRO_DATASETS:
            raise DatasetError(
                f"{dataset!r} is not a micro-expression dataset; HTNet needs one of "
                f"{sorted([*MICRO_DATASETS, MEGC2019])}"
            )
        records = [r for r in read_micro(dataset, root) if composite_label(r) is not None]
        chosen = [records[i] for i in _stratified([composite_label(r) for r in records], samples, seed)]
        config = MicroFeatureConfig(convention=preset.preprocessing.patch_convention or "xy")
        features = compute_micro_features(
            chosen, cache_dir=cache or tempfile.mkdtemp(prefix="edge-fer-flow-"), config=config
        )
        images, labels = features.images, np.array([composite_label(r) for r in chosen])
    return _checked(images, labels, root, source, preset)


def _checked(images: np.ndarray, labels: np.ndarray, root: Path, source: dict, preset: ModelPreset) -> CalibrationSet:
    if len(images) == 0:
        raise DatasetError(f"no calibration samples found in {root}")
    return CalibrationSet(images, labels, {"source": source, "preset": preset.name})


def build_from_videos(
    preset: ModelPreset, videos: Sequence[str | os.PathLike], *, stride: float = 0.5, samples: int = 128, detector=None
) -> CalibrationSet:
    """A calibration set of face clips from videos, made exactly as the runtime makes them."""
    if preset.family != "stt":
        raise DatasetError("calibration from videos is for clip models (STT); use a dataset for HTNet")
    from edge_fer.runtime.clips import clips_from_video

    if detector is None:
        from edge_fer.runtime.detection import open_face_detector

        detector = open_face_detector()
    clips: list[np.ndarray] = []
    for video in videos:
        clips += clips_from_video(video, preset.preprocessing, detector, stride=stride)
    if not clips:
        raise DatasetError(f"no face clips found in {', '.join(map(str, videos))}")
    chosen = np.linspace(0, len(clips) - 1, min(samples, len(clips))).round().astype(int)
    images = np.stack([clips[i] for i in chosen])
    source = _videos_source(videos, stride, samples)
    return CalibrationSet(images, np.full(len(images), -1), {"source": source, "preset": preset.name})


def _dataset_source(dataset: str, root: str | os.PathLike, fold: int | None, samples: int, seed: int) -> dict:
    """How a set from a dataset was made, as its ``meta["source"]`` records it."""
    return {"kind": "dataset", "dataset": dataset, "root": str(root), "fold": fold, "samples": samples, "seed": seed}


def _videos_source(videos: Sequence[str | os.PathLike], stride: float, samples: int) -> dict:
    """How a set from videos was made, as its ``meta["source"]`` records it."""
    return {"kind": "videos", "videos": [str(v) for v in videos], "stride": stride, "samples": samples}


def calibration_file(
    out: str | os.PathLike,
    preset: ModelPreset,
    *,
    data: DataSpec | None = None,
    videos: Sequence[str | os.PathLike] = (),
    samples: int = 128,
    seed: int = 0,
    stride: float = 0.5,
    force: bool = False,
) -> tuple[CalibrationSet, bool]:
    """Build a calibration set for ``preset`` and save it to ``out`` (.npz); a file already
    there that was built the same way for the same preset is reused unless ``force``.

    Args:
        out: the ``.npz`` to write.
        preset: the model's preset (clip layout, preprocessing).
        data: build from this dataset: the *training* part of its fold (its split is not read:
            calibration never uses test data); HTNet: see ``build_from_dataset``.
        videos: or from face clips of these videos (clip models).
        samples: clips (or images) in the set; seed: the stratified draw (datasets);
            stride: seconds between clips (videos).
        force: rebuild even when the file matches.

    Returns:
        The set and whether the existing file was reused.
    """
    if (data is None) == (not videos):
        raise ValueError("calibration_file takes data (a DataSpec) or videos, one of them")
    if data is not None:
        wanted = _dataset_source(data.dataset, data.root, data.fold, samples, seed)
    else:
        wanted = _videos_source(videos, stride, samples)
    out = Path(out)
    if out.exists() and not force:
        existing = load_calibration(out)
        if existing.meta.get("source") == wanted and existing.meta.get("preset") == preset.name:
            return existing, True
    if data is not None:
        calib = build_from_dataset(
            preset,
            dataset=data.dataset,
            root=data.root,
            fold=data.fold,
            samples=samples,
            seed=seed,
            cache=out.parent / "flow-cache",
        )
    else:
        calib = build_from_videos(preset, videos, stride=stride, samples=samples)
    calib.save(out, force=True)
    return calib, False
