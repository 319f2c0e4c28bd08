"""CK+ (Extended Cohn-Kanade): posed expressions of real people, in two on-disk layouts.

- The original distribution: ``cohn-kanade-images/S005/001/S005_001_00000001.png`` (one
  folder per sequence, neutral -> peak) and ``Emotion/S005/001/S005_001_00000011_emotion.txt``
  holding one float, the code of the peak's emotion (0 neutral, 1 anger, 2 contempt,
  3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise). 327 of the 593 sequences have one;
  the others are unlabelled and skipped.
- CK+48 (as github.com/WuJie1010/Facial-Expression-Recognition.Pytorch ships it):
  ``CK+48/<class>/S<subject>_<sequence>_<frame>.png``, the last three (peak) frames of each
  labelled sequence as 48x48 grey crops. ``root`` may be the ``CK+48`` folder or its parent.

A record is one sequence (its frames in order; the subject is kept for subject-independent
folds). Protocols:

- "subject": 10-fold cross-validation with folds by subject (no person on both sides),
  stratified by class as far as whole subjects allow; the honest protocol.
- "leaky": the frame-index split of the repository CK+48 comes from - every frame is a
  sample, and each fold tests 12/18/9/21/9/24/6 frames of anger/disgust/fear/happy/sadness/
  surprise/contempt taken by position in a class-sorted list. A sequence's three frames
  stay together, but people do not: in every fold 36-87 of the 99 test frames show a
  person whose other sequences are in training. Only for comparison with its published
  94.04 % (ResNet-18); never a measure of generalisation to new people.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

from edge_fer.data.records import IMAGE_SUFFIXES, ClipRecord, DatasetInfo, sorted_frames
from edge_fer.data.splits import kfold
from edge_fer.errors import DatasetError

__all__ = ["CKPLUS_CLASSES", "CKPLUS_INFO", "CKPLUS_FOLDS", "PROTOCOLS", "read_ckplus_sequences", "read_ckplus"]

PathLike = str | os.PathLike

# Label order = CK+'s emotion codes 1..7 (0, neutral, never labels a sequence).
CKPLUS_CLASSES = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
CKPLUS_INFO = DatasetInfo(
    "ckplus", "dfer", CKPLUS_CLASSES, "CK+: 327 labelled posed sequences of 118 people, 7 classes (no neutral)"
)
CKPLUS_FOLDS = 10
PROTOCOLS = ("subject", "leaky")

_FRAME_NAME = re.compile(r"^(S\d+)_(\d+)_(\d+)$")
_EMOTION_NAME = re.compile(r"^(S\d+)_(\d+)_(\d+)_emotion$")
# The leaky split, as CK.py of the CK+48 repository writes it: class order of its h5 file
# and test frames per class and fold.
_LEAKY_CLASS_ORDER = ("anger", "disgust", "fear", "happy", "sadness", "surprise", "contempt")
_LEAKY_TEST_PER_CLASS = (12, 18, 9, 21, 9, 24, 6)


def _layout(root: Path) -> tuple[str, Path]:
    if (root / "cohn-kanade-images").is_dir() and (root / "Emotion").is_dir():
        return "original", root
    for folder in (root / "CK+48", root):
        if folder.is_dir() and any((folder / name).is_dir() for name in CKPLUS_CLASSES):
            return "ck48", folder
    raise DatasetError(
        f"{root}: not a CK+ folder; expected cohn-kanade-images/ and Emotion/ (the original "
        f"distribution) or CK+48/<class>/S<subject>_<sequence>_<frame>.png (CK+48)"
    )


def _emotion_code(path: Path) -> int:
    try:
        text = path.read_text().strip()
        value = float(text)
    except (OSError, UnicodeDecodeError, ValueError):
        raise DatasetError(f"{path}: expected one number, the CK+ emotion code 1-7") from None
    if value != int(value) or not 1 <= int(value) <= len(CKPLUS_CLASSES):
        raise DatasetError(f"{path}: emotion code {text!r} is not 1-7 (1 anger ... 7 surprise; 0 never labels a peak)")
    return int(value) - 1


def _read_original(root: Path) -> list[ClipRecord]:
    records = []
    for label_file in sorted((root / "Emotion").glob("*/*/*.txt")):
        match = _EMOTION_NAME.match(label_file.stem)
        if not match:
            raise DatasetError(f"{label_file}: expected a name like S005_001_00000011_emotion.txt")
        subject, sequence, _ = match.groups()
        frames = sorted_frames(root / "cohn-kanade-images" / subject / sequence, source=str(label_file))
        records.append(ClipRecord(f"{subject}_{sequence}", frames, _emotion_code(label_file), subject=subject))
    if not records:
        raise DatasetError(f"{root / 'Emotion'}: no emotion label files (Emotion/S005/001/S005_001_*_emotion.txt)")
    return records


def _read_ck48(folder: Path) -> list[ClipRecord]:
    sequences: dict[tuple[str, str], list[Path]] = defaultdict(list)
    labels: dict[tuple[str, str], int] = {}
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        if class_dir.name not in CKPLUS_CLASSES:
            raise DatasetError(f"{class_dir}: unknown class folder; CK+48 has {', '.join(CKPLUS_CLASSES)}")
        for image in sorted(class_dir.iterdir()):
            if image.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            match = _FRAME_NAME.match(image.stem)
            if not match:
                raise DatasetError(f"{image}: expected a name like S010_006_00000013.png")
            key = match.group(1), match.group(2)
            label = CKPLUS_CLASSES.index(class_dir.name)
            if labels.setdefault(key, label) != label:
                raise DatasetError(f"{image}: sequence {key[0]}_{key[1]} also appears under another class")
            sequences[key].append(image)
    if not sequences:
        raise DatasetError(f"{folder}: no CK+48 frames (<class>/S<subject>_<sequence>_<frame>.png)")
    return [
        ClipRecord(f"{subject}_{sequence}", tuple(sorted(frames)), labels[(subject, sequence)], subject=subject)
        for (subject, sequence), frames in sorted(sequences.items())
    ]


def read_ckplus_sequences(root: PathLike) -> list[ClipRecord]:
    """Every labelled CK+ sequence under ``root`` (either layout), sorted by subject and sequence.

    Raises:
        DatasetError: not a CK+ folder, or a file that breaks the layout (named in the message).
    """
    layout, folder = _layout(Path(root))
    return _read_original(folder) if layout == "original" else _read_ck48(folder)


def _peak_frames(record: ClipRecord) -> list[ClipRecord]:
    """The last three frames of a sequence, each its own one-frame record (as CK+48 cuts them)."""
    return [
        ClipRecord(f"{record.video_id}/{path.stem}", (path,), record.label, subject=record.subject)
        for path in record.frames[-3:]
    ]


def _leaky_test(frames: list[ClipRecord], fold: int) -> set[int]:
    """Indices of the repository's test frames of ``fold`` in its class-sorted frame list.

    Positions are global, as in its CK.py: for a small class (fear: 75 frames, 9 per fold)
    the later folds run on into the next class's frames; kept, so the split is the same.
    """
    test = set()
    start = 0
    for name, per_fold in zip(_LEAKY_CLASS_ORDER, _LEAKY_TEST_PER_CLASS):
        count = sum(1 for f in frames if CKPLUS_CLASSES[f.label] == name)
        if fold < CKPLUS_FOLDS:
            test.update(start + (fold - 1) * per_fold + k for k in range(per_fold))
        else:  # the repository's last fold counts back from the class's last frame
            test.update(start + count - 1 - k for k in range(per_fold))
        start += count
    if max(test) >= len(frames):
        raise DatasetError(f"leaky split: needs more than the {len(frames)} frames found (CK+48 has 981)")
    return test


def read_ckplus(root: PathLike, *, fold: int, split: str, protocol: str = "subject", seed: int = 0) -> list[ClipRecord]:
    """One side of one CK+ fold.

    Args:
        root: the CK+ folder (either layout).
        fold: 1..10.
        split: "train" or "test".
        protocol: "subject" (sequences, folds by subject) or "leaky" (frames, the CK+48
            repository's frame-index folds).
        seed: seed of the subject folds.

    Raises:
        DatasetError: a fold outside 1..10, an unknown split or protocol, or a reader error.
    """
    if not 1 <= fold <= CKPLUS_FOLDS:
        raise DatasetError(f"CK+: is evaluated by 10-fold cross-validation; pass fold 1..10, got {fold}")
    if split not in ("train", "test"):
        raise DatasetError(f"CK+: split must be train or test, got {split!r}")
    if protocol not in PROTOCOLS:
        raise DatasetError(f"CK+: protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    sequences = read_ckplus_sequences(root)
    if protocol == "subject":
        folds = kfold([r.label for r in sequences], CKPLUS_FOLDS, seed=seed, groups=[r.subject for r in sequences])
        chosen = set(folds[fold - 1].test)
        return [r for i, r in enumerate(sequences) if (i in chosen) == (split == "test")]
    frames = [f for r in sequences for f in _peak_frames(r)]
    frames.sort(key=lambda f: (_LEAKY_CLASS_ORDER.index(CKPLUS_CLASSES[f.label]), f.frames[0].name))
    test = _leaky_test(frames, fold)
    return [f for i, f in enumerate(frames) if (i in test) == (split == "test")]
