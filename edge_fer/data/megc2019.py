"""The MEGC2019 composite as the HTNet repository ships it: optical flow already computed.

Layout (github.com/wangzhifengharrison/HTNet; a clone of it reads as is):

- ``combined_3_class2_for_optical_flow.csv``: one row per sample with ``dataset`` (casme2,
  smic, samm), ``sub``, ``filename_o``, ``label`` (0 negative, 1 positive, 2 surprise) and
  ``imagename``.
- ``datasets/STSNet_whole_norm_u_v_os/<sub>_<filename_o> .png`` (a space before ``.png``):
  the 28x28 onset->apex flow image, R/G/B = u, v, optical strain, each min-max scaled to
  0..255. Where that folder is absent the same images are read from the per-subject LOSO
  copy ``datasets/three_norm_u_v_os/<sub>/u_test/<label>/``.
- ``datasets/combined_datasets_whole/<imagename>``: the 224x224 apex face, on which our
  face detector finds the 5 landmarks that place HTNet's four 14x14 patches.

Subjects are kept as the CSV writes them ("sub01", "s1", "006"): the three source datasets
name them differently, so they never collide in leave-one-subject-out.

Besides leave-one-subject-out, the composite splits into 5 folds by subject (as CK+ into
10): no person on both sides, classes stratified as far as whole subjects allow (seed 0).
One model trained on a fold's training subjects can then be exported, calibrated on them
and benchmarked on the held-out fifth: ``read_megc2019(root, fold=1, split="test")``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_fer.data.micro_features import MicroFeatures
from edge_fer.data.splits import Fold, kfold
from edge_fer.errors import DatasetError
from edge_fer.fileio import atomic_output
from edge_fer.preprocessing.micro_input import OFFICIAL_FALLBACK_LANDMARKS_28, four_patch_image, landmarks_to_grid

__all__ = [
    "MEGC2019",
    "MEGC2019_CSV",
    "MEGC2019_FOLDS",
    "MEGC2019_SOURCES",
    "FlowRecord",
    "read_megc2019",
    "megc2019_folds",
    "megc2019_features",
]

PathLike = str | os.PathLike

MEGC2019 = "megc2019"  # the dataset name on the command lines
MEGC2019_CSV = "combined_3_class2_for_optical_flow.csv"
MEGC2019_SOURCES = ("casme2", "smic", "samm")
MEGC2019_FOLDS = 5  # subject-grouped folds (seed 0) for one held-out model
FLOW_DIR = Path("datasets/STSNet_whole_norm_u_v_os")
LOSO_DIR = Path("datasets/three_norm_u_v_os")
FACE_DIR = Path("datasets/combined_datasets_whole")
_COLUMNS = ("dataset", "sub", "filename_o", "label", "imagename")
_NUM_CLASSES = 3


@dataclass(frozen=True)
class FlowRecord:
    """One micro-expression whose onset->apex flow image is already on disk.

    Attributes:
        sample_id: "<sub>_<filename_o>", unique in the composite.
        subject: the subject as the CSV writes it (the unit of leave-one-subject-out).
        source: the database the sample comes from: "casme2", "smic" or "samm".
        label: 0 negative, 1 positive, 2 surprise.
        flow: the 28x28 flow image (R, G, B = u, v, strain).
        apex_face: the apex face image the landmarks are found on.
    """

    sample_id: str
    subject: str
    source: str
    label: int
    flow: Path
    apex_face: Path


def _flow_path(root: Path, subject: str, name: str, label: int, where: str) -> Path:
    if (root / FLOW_DIR).is_dir():
        path = root / FLOW_DIR / name
    elif (root / LOSO_DIR).is_dir():
        path = root / LOSO_DIR / subject / "u_test" / str(label) / name
    else:
        raise DatasetError(f"{root}: has neither {FLOW_DIR} nor {LOSO_DIR} (the HTNet repository's flow images)")
    if not path.is_file():
        raise DatasetError(f"{where}: flow image {path} does not exist")
    return path


def megc2019_folds(records: Sequence[FlowRecord], *, seed: int = 0) -> list[Fold]:
    """The 5 subject-grouped folds of ``records`` (indices into it), stratified by label."""
    return kfold([r.label for r in records], MEGC2019_FOLDS, seed=seed, groups=[r.subject for r in records])


def read_megc2019(root: PathLike, fold: int | None = None, split: str | None = None) -> list[FlowRecord]:
    """Every sample of the composite in CSV order, or one side of one subject fold.

    Args:
        root: the HTNet repository clone (or a folder in its layout).
        fold: 1..5 (``MEGC2019_FOLDS``): keep one side of that fold only; None: every sample.
        split: with ``fold``, "train" (the other four fifths of the subjects) or "test".

    Raises:
        DatasetError: a fold outside 1..5, a split other than train/test (or one without a
            fold, or a fold without one); no CSV, a missing column, a malformed row or a
            missing image (the message names the file and the CSV line).
    """
    if fold is None:
        if split is not None:
            raise DatasetError(f"MEGC2019: split {split!r} needs a fold (1..{MEGC2019_FOLDS})")
    else:
        if isinstance(fold, bool) or not isinstance(fold, int) or not 1 <= fold <= MEGC2019_FOLDS:
            raise DatasetError(
                f"MEGC2019: folds are {MEGC2019_FOLDS} groups of subjects; pass fold 1..{MEGC2019_FOLDS}, got {fold!r}"
            )
        if split not in ("train", "test"):
            raise DatasetError(f"MEGC2019: split must be train or test with fold {fold}, got {split!r}")
    records = _read_all(Path(root))
    if fold is None:
        return records
    chosen = set(megc2019_folds(records)[fold - 1].test)
    return [r for i, r in enumerate(records) if (i in chosen) == (split == "test")]


def _read_all(root: Path) -> list[FlowRecord]:
    table = root / MEGC2019_CSV
    if not table.is_file():
        raise DatasetError(f"{root}: no {MEGC2019_CSV}; expected the HTNet repository's layout (a clone of it)")
    try:
        with open(table, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{table}: cannot be read as CSV ({exc})") from None
    missing = [c for c in _COLUMNS if not rows or c not in rows[0]]
    if missing:
        raise DatasetError(f"{table}: missing column(s) {', '.join(missing)}; expected {', '.join(_COLUMNS)}")
    records, seen = [], set()
    for line, row in enumerate(rows, start=2):
        where = f"{table} line {line}"
        source, subject, name = row["dataset"].strip(), row["sub"].strip(), row["filename_o"].strip()
        if source not in MEGC2019_SOURCES:
            raise DatasetError(f"{where}: dataset {source!r} is not one of {', '.join(MEGC2019_SOURCES)}")
        try:
            label = int(row["label"])
        except ValueError:
            raise DatasetError(f"{where}: label {row['label']!r} is not 0, 1 or 2") from None
        if not 0 <= label < _NUM_CLASSES:
            raise DatasetError(f"{where}: label {label} is not 0 (negative), 1 (positive) or 2 (surprise)")
        if not subject or not name:
            raise DatasetError(f"{where}: empty sub or filename_o")
        sample_id = f"{subject}_{name}"
        if sample_id in seen:
            raise DatasetError(f"{where}: sample {sample_id} appears twice")
        seen.add(sample_id)
        face = root / FACE_DIR / row["imagename"].strip()
        if not face.is_file():
            raise DatasetError(f"{where}: apex face {face} does not exist")
        flow = _flow_path(root, subject, f"{sample_id} .png", label, where)
        records.append(FlowRecord(sample_id, subject, source, label, flow, face))
    if not records:
        raise DatasetError(f"{table}: no samples")
    return records


def _read_image(path: Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise DatasetError(f"{path}: cannot be read as an image")
    return image


def _face_landmarks(detector, face: np.ndarray) -> tuple[np.ndarray, bool]:
    """(5, 2) landmarks on the 28x28 grid of the apex face, and whether a face was found."""
    found = detector.detect(face)
    if len(found):
        return landmarks_to_grid(found.top(1).landmarks[0], face.shape[:2]), True
    return OFFICIAL_FALLBACK_LANDMARKS_28.copy(), False  # what the official code substitutes


def megc2019_features(
    records: Sequence[FlowRecord],
    *,
    convention: str,
    cache_dir: PathLike,
    detector=None,
    progress: Callable[[int, int], None] | None = None,
) -> MicroFeatures:
    """HTNet four-patch inputs of ``records``: the stored flow, patches placed by our detector.

    Landmarks are found once per apex face and cached in ``cache_dir`` (keyed by the face
    file and the detector), so every run and every fold reuses them.
    """
    detector_name = "default" if detector is None else type(detector).__name__
    blob = json.dumps(
        [[str(r.apex_face), r.apex_face.stat().st_size] for r in records] + [detector_name, "megc2019-v1"]
    )
    cache = Path(cache_dir) / f"megc2019-landmarks-{hashlib.sha1(blob.encode()).hexdigest()[:16]}.npz"
    if cache.exists():
        with np.load(cache) as stored:
            landmarks, found = stored["landmarks"], stored["found"]
    else:
        if detector is None:
            from edge_fer.runtime.detection import open_face_detector

            detector = open_face_detector()
        pairs = []
        for index, record in enumerate(records, start=1):
            pairs.append(_face_landmarks(detector, _read_image(record.apex_face)))
            if progress:
                progress(index, len(records))
        landmarks = np.stack([p[0] for p in pairs]).astype(np.float32)
        found = np.array([p[1] for p in pairs], dtype=bool)
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(cache, force=True) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, landmarks=landmarks, found=found)
    images = []
    for record, points in zip(records, landmarks):
        flow = _read_image(record.flow)[..., ::-1]  # BGR on disk order -> R, G, B = u, v, strain
        if flow.shape[:2] != (28, 28):
            raise DatasetError(f"{record.flow}: expected a 28x28 flow image, got {flow.shape[1]}x{flow.shape[0]}")
        images.append(four_patch_image(np.ascontiguousarray(flow), points, convention=convention))
    return MicroFeatures(
        images=np.stack(images).astype(np.uint8),
        apex=np.full(len(records), -1, np.int64),
        apex_spotted=np.zeros(len(records), bool),
        face_found=found,
    )
