"""Readers for the dynamic facial-expression (DFER) datasets in their on-disk layouts.

Every reader returns ``ClipRecord``s (paths only, no pixels) and checks, before returning,
that each referenced frame folder exists and holds images; any problem with the user's
data raises ``DatasetError`` naming the file (and line) or folder at fault.

Layouts (see DESIGN.md section 4; the sources of less obvious facts are noted inline):

- DFEW, layout A (the official download): ``EmoLabel_DataSplit/{train,test}(single-labeled)/set_{k}.csv``
  with frames in ``Clip/jpg_256/{video:05d}/``.
- DFEW, layout B (the DFEW authors' training code): ``label/single_{train,test}set_{k}.csv`` with
  frames in ``data/{video:05d}/{video:05d}_{frame:05d}.jpg``.
- AFEW: ``AFEW_Face/{train,val}/<Emotion>/<clip>/``.
- FERV39k: ``4_setups/All_scenes/{train_All,test_All}.csv`` and ``2_ClipsforFaceCrop/<scene>/<Emotion>/<clip>/``.
- MAFW: ``split/single/no_caption/set_{k}/{train,test}.txt`` and ``data/frames/<clip>/``.
- Former-DFER annotation lists: ``<frame_dir> <num_frames> <label>`` per line.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from edge_fer.data.ckplus import CKPLUS_INFO, read_ckplus
from edge_fer.data.records import ClipRecord, DatasetInfo, sorted_frames
from edge_fer.errors import DatasetError
from edge_fer.presets import CLASS_SYNONYMS, DFER_CLASSES

__all__ = [
    "MAFW_CLASSES",
    "DFER_DATASETS",
    "read_dfew",
    "read_annotation_list",
    "read_afew",
    "read_ferv39k",
    "read_mafw",
    "read_dfer",
    "dfer_frame_path",
]

PathLike = str | os.PathLike

MAFW_CLASSES = (
    "anger",
    "disgust",
    "fear",
    "happiness",
    "neutral",
    "sadness",
    "surprise",
    "contempt",
    "anxiety",
    "helplessness",
    "disappointment",
)

DFER_DATASETS: dict[str, DatasetInfo] = {
    "dfew": DatasetInfo(
        "dfew",
        "dfer",
        DFER_CLASSES,
        "DFEW: 16,372 movie clips, 7 classes, 5-fold cross-validation (labels 1-7 on disk)",
    ),
    "afew": DatasetInfo(
        "afew",
        "dfer",
        DFER_CLASSES,
        "AFEW 7.0 (EmotiW): movie clips, 7 classes, one fixed train/val split (val is the test set)",
    ),
    "ferv39k": DatasetInfo(
        "ferv39k", "dfer", DFER_CLASSES, "FERV39k: 38,935 clips in 22 scenes, 7 classes, one fixed train/test split"
    ),
    "mafw": DatasetInfo(
        "mafw", "dfer", MAFW_CLASSES, "MAFW: 10,045 clips, 11 single-label classes, 5-fold cross-validation"
    ),
    "ckplus": CKPLUS_INFO,
}

DFEW_FOLDS = (1, 2, 3, 4, 5)
MAFW_FOLDS = (1, 2, 3, 4, 5)

# Emotion names as written in folder names or label columns -> index in DFER_CLASSES.
# AFEW 7.0 uses Angry/Happy/Sad; the face-cropped AFEW_Face of Former-DFER uses
# Anger/Happiness/Sadness (github.com/zengqunzhao/Former-DFER, annotation/AFEW_*.txt).
_DFER_NAME_TO_LABEL = {
    **{name: label for label, name in enumerate(DFER_CLASSES)},
    **{name: DFER_CLASSES.index(same) for name, same in CLASS_SYNONYMS.items()},
}


# --------------------------------------------------------------------------------------
# Small shared checks
# --------------------------------------------------------------------------------------


def _check_choice(value: object, allowed: Sequence, what: str, dataset: str) -> None:
    if value not in allowed:
        raise DatasetError(f"{dataset}: {what} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"{what}: expected the file {path}, which does not exist")
    return path


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{what}: expected the folder {path}, which does not exist")
    return path


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines of a text file with their 1-based line numbers."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not a UTF-8 text file ({exc}); expected one annotation per line") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror})") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _read_csv(path: Path, columns: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV file with a header, as (line number, row) pairs.

    Raises:
        DatasetError: the file is unreadable or lacks one of ``columns``.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in (reader.fieldnames or [])]
            missing = [c for c in columns if c not in header]
            if missing:
                raise DatasetError(
                    f"{path}: missing column(s) {', '.join(missing)}; expected a header "
                    f"with {', '.join(columns)}, found {header or 'no header'}"
                )
            reader.fieldnames = header
            return [
                (reader.line_num, row) for row in reader if any(isinstance(v, str) and v.strip() for v in row.values())
            ]
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not a UTF-8 CSV file ({exc})") from None
    except csv.Error as exc:
        raise DatasetError(f"{path}: malformed CSV ({exc})") from None


def _clip(video_id: str, folder: Path, label: int, source: str) -> ClipRecord:
    return ClipRecord(video_id=video_id, frames=sorted_frames(folder, source=source), label=label)


# --------------------------------------------------------------------------------------
# DFEW
# --------------------------------------------------------------------------------------


def dfer_frame_path(root: str | Path, video: int, frame: int) -> Path:
    """Frame ``frame`` (1-based) of video ``video`` in DFEW's layout A (as ``edge-fer synth`` writes it)."""
    return Path(root) / "Clip" / "jpg_256" / f"{video:05d}" / f"{video:05d}_{frame:05d}.jpg"


def _dfew_layouts(root: Path, fold: int, split: str) -> dict[str, tuple[Path, Path]]:
    """Candidate layouts: name -> (label csv, frame folder root)."""
    return {
        "A": (root / "EmoLabel_DataSplit" / f"{split}(single-labeled)" / f"set_{fold}.csv", root / "Clip" / "jpg_256"),
        # Layout of the DFEW authors' own code (github.com/jiangxingxun/DFEW, README and
        # libs/DFEW_Dataset.py): same video_name,label columns, labels 1..7.
        "B": (root / "label" / f"single_{split}set_{fold}.csv", root / "data"),
    }


def _detect_dfew_layout(root: Path, fold: int, split: str) -> tuple[Path, Path]:
    layouts = _dfew_layouts(root, fold, split)
    markers = {"A": root / "EmoLabel_DataSplit", "B": root / "label"}
    found = [name for name, marker in markers.items() if marker.is_dir()]
    wanted = "; ".join(
        f"layout {name}: {csv_path.relative_to(root)} with frames in {frames.relative_to(root)}/<video:05d>/"
        for name, (csv_path, frames) in layouts.items()
    )
    if len(found) != 1:
        what = "both" if found else "neither"
        raise DatasetError(
            f"DFEW root {root}: found {what} of the two known layouts; expected exactly one of ({wanted})"
        )
    csv_path, frames_root = layouts[found[0]]
    _require_file(csv_path, f"DFEW fold {fold} {split} split")
    _require_dir(frames_root, f"DFEW (layout {found[0]}) frames")
    return csv_path, frames_root


def _dfew_row(path: Path, line: int, row: dict[str, str]) -> tuple[str, int]:
    """(5-digit video id, 0-based label) of one split-file row."""
    name, label = (row.get("video_name") or "").strip(), (row.get("label") or "").strip()
    if not name.isdigit():
        raise DatasetError(f"{path} line {line}: video_name must be a number such as 1 or 00001, got {name!r}")
    if not label.isdigit() or not 1 <= int(label) <= 7:
        raise DatasetError(
            f"{path} line {line}: label must be 1-7 (1 Happy, 2 Sad, 3 Neutral, 4 Angry, "
            f"5 Surprise, 6 Disgust, 7 Fear), got {label!r}"
        )
    return f"{int(name):05d}", int(label) - 1


def read_dfew(root: PathLike, *, fold: int, split: str) -> list[ClipRecord]:
    """Read one fold of DFEW's single-labelled 5-fold protocol.

    The layout is detected from the folders present: layout A (official download,
    ``EmoLabel_DataSplit/`` + ``Clip/jpg_256/``) or layout B (``label/`` + ``data/``).

    Args:
        root: the DFEW folder holding either layout.
        fold: 1..5.
        split: "train" or "test".

    Returns:
        One record per CSV row, in file order; labels 0..6 in ``DFER_CLASSES`` order.

    Raises:
        DatasetError: unknown fold/split, both or neither layout, a malformed row, a label
            outside 1-7, or a missing/empty frame folder.
    """
    root = Path(root)
    _check_choice(fold, DFEW_FOLDS, "fold", "DFEW")
    _check_choice(split, ("train", "test"), "split", "DFEW")
    csv_path, frames_root = _detect_dfew_layout(root, fold, split)
    records = []
    for line, row in _read_csv(csv_path, ("video_name", "label")):
        video_id, label = _dfew_row(csv_path, line, row)
        records.append(_clip(video_id, frames_root / video_id, label, f"{csv_path} line {line}"))
    return records


# --------------------------------------------------------------------------------------
# Former-DFER annotation lists
# --------------------------------------------------------------------------------------


def _parse_annotation_line(path: Path, n: int, line: str, num_classes: int | None) -> tuple[str, int]:
    parts = line.rsplit(maxsplit=2)  # rsplit: a frame folder may contain spaces
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        raise DatasetError(
            f"{path} line {n}: expected '<frame_dir> <num_frames> <label>' with integer "
            f"num_frames and 0-based label, got {line!r}"
        )
    label = int(parts[2])
    if num_classes is not None and label >= num_classes:
        raise DatasetError(f"{path} line {n}: label must be 0..{num_classes - 1}, got {label}")
    return parts[0], label


def read_annotation_list(path: PathLike, root: PathLike, *, num_classes: int | None = None) -> list[ClipRecord]:
    """Read a Former-DFER style list: one ``<frame_dir> <num_frames> <label>`` per line.

    ``num_frames`` is not trusted (the folder is listed instead); labels are 0-based.

    Args:
        path: the list file.
        root: folder that relative ``frame_dir`` entries are resolved against (absolute
            entries are used as they are).
        num_classes: if given, labels must be below it.

    Returns:
        One record per line; ``video_id`` is ``frame_dir`` as written in the file.

    Raises:
        DatasetError: the file is missing, a line is malformed, a label is out of range,
            or a frame folder is missing or empty.
    """
    path, root = Path(path), Path(root)
    _require_file(path, "annotation list")
    records = []
    for n, line in _read_lines(path):
        frame_dir, label = _parse_annotation_line(path, n, line, num_classes)
        records.append(_clip(frame_dir, root / frame_dir, label, f"{path} line {n}"))
    if not records:
        raise DatasetError(f"{path}: no annotation lines; expected '<frame_dir> <num_frames> <label>' per line")
    return records


# --------------------------------------------------------------------------------------
# AFEW
# --------------------------------------------------------------------------------------

# Folder names seen for each split (Former-DFER's AFEW_Face uses "validation").
_AFEW_SPLIT_DIRS = {"train": ("train",), "val": ("val", "validation")}


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


def _afew_split_dir(root: Path, split: str) -> Path:
    base = root / "AFEW_Face" if (root / "AFEW_Face").is_dir() else root
    _require_dir(base, "AFEW")
    for folder in _subdirs(base):
        if folder.name.lower() in _AFEW_SPLIT_DIRS[split]:
            return folder
    raise DatasetError(
        f"AFEW: no {split} folder in {base}; expected one of "
        f"{', '.join(_AFEW_SPLIT_DIRS[split])} (any case) holding <Emotion>/<clip>/ folders"
    )


def _afew_label(folder: Path) -> int:
    label = _DFER_NAME_TO_LABEL.get(folder.name.lower())
    if label is None:
        raise DatasetError(
            f"AFEW: unknown emotion folder {folder}; expected Angry, Disgust, Fear, Happy, "
            f"Neutral, Sad or Surprise (or Anger/Happiness/Sadness)"
        )
    return label


def read_afew(root: PathLike, *, split: str) -> list[ClipRecord]:
    """Read AFEW face clips from ``AFEW_Face/{train,val}/<Emotion>/<clip>/``.

    AFEW's test labels are not public, so its "val" split is used as the test set.

    Args:
        root: the folder holding ``AFEW_Face/`` (or ``AFEW_Face`` itself).
        split: "train" or "val"; split and emotion folder names may be in any case.

    Returns:
        Records sorted by class then clip name; ``video_id`` is the clip folder name.

    Raises:
        DatasetError: unknown split, missing split folder, unknown emotion folder,
            empty clip folder, or no clips at all.
    """
    root = Path(root)
    _check_choice(split, ("train", "val"), "split", "AFEW")
    split_dir = _afew_split_dir(root, split)
    emotion_dirs = sorted(_subdirs(split_dir), key=lambda d: (_afew_label(d), d.name))
    records = [
        _clip(clip.name, clip, _afew_label(emotion), "AFEW") for emotion in emotion_dirs for clip in _subdirs(emotion)
    ]
    if not records:
        raise DatasetError(f"AFEW: no clip folders under {split_dir}; expected <Emotion>/<clip>/ folders of frames")
    return records


# --------------------------------------------------------------------------------------
# FERV39k
# --------------------------------------------------------------------------------------

_HEADER_WORDS = {"label", "labels", "emotion", "class"}


def _ferv39k_frames_root(root: Path) -> Path:
    frames_root = _require_dir(root / "2_ClipsforFaceCrop", "FERV39k frames")
    nested = frames_root / "2_ClipsforFaceCrop"  # some unzip tools add one more level
    return nested if nested.is_dir() else frames_root


def _ferv39k_entries(path: Path) -> Iterable[tuple[int, str, int]]:
    """(line number, relative clip path, label) of a FERV39k setup file."""
    for n, line in _read_lines(path):
        parts = line.rsplit(maxsplit=1)
        if n == 1 and parts[-1].lower() in _HEADER_WORDS:
            continue  # tolerate a header line
        label = _DFER_NAME_TO_LABEL.get(parts[-1].lower()) if len(parts) == 2 else None
        if label is None:
            raise DatasetError(
                f"{path} line {n}: expected '<clip path> <Emotion>' with Emotion one of Happy, "
                f"Sad, Neutral, Angry, Surprise, Disgust, Fear; got {line!r}"
            )
        yield n, parts[0], label


def read_ferv39k(root: PathLike, *, split: str) -> list[ClipRecord]:
    """Read FERV39k's fixed All_scenes split.

    Setup lines are space-separated ``<scene>/<Emotion>/<clip> <Emotion>``, e.g.
    ``Action/Sad/0010 Sad`` (format as read by MAE-DFER preprocess/ferv39k.py).

    Args:
        root: the FERV39k folder holding ``4_setups/`` and ``2_ClipsforFaceCrop/``.
        split: "train" or "test".

    Returns:
        One record per line, in file order; ``video_id`` is the relative clip path.

    Raises:
        DatasetError: unknown split, missing files, an unknown emotion name, or a
            missing/empty frame folder.
    """
    root = Path(root)
    _check_choice(split, ("train", "test"), "split", "FERV39k")
    setup = _require_file(root / "4_setups" / "All_scenes" / f"{split}_All.csv", f"FERV39k {split} split")
    frames_root = _ferv39k_frames_root(root)
    return [_clip(rel, frames_root / rel, label, f"{setup} line {n}") for n, rel, label in _ferv39k_entries(setup)]


# --------------------------------------------------------------------------------------
# MAFW
# --------------------------------------------------------------------------------------

# The download names the split folder "Train & Test Set"; DESIGN.md (and re-packed copies)
# call it "split" (MAE-DFER preprocess/mafw.py reads 'Train & Test Set/single/no_caption').
_MAFW_SPLIT_DIRS = ("split", "Train & Test Set")


def _mafw_split_file(root: Path, fold: int, split: str) -> Path:
    candidates = [root / d / "single" / "no_caption" / f"set_{fold}" / f"{split}.txt" for d in _MAFW_SPLIT_DIRS]
    for path in candidates:
        if path.is_file():
            return path
    raise DatasetError(
        f"MAFW fold {fold} {split} split: expected one of {', '.join(map(str, candidates))}; none exists"
    )


def _mafw_entry(path: Path, n: int, line: str) -> tuple[str, int]:
    """(clip name without extension, label) of one line ``<clip>.mp4 <emotion>``."""
    parts = line.split()
    label = MAFW_CLASSES.index(parts[1].lower()) if len(parts) == 2 and parts[1].lower() in MAFW_CLASSES else None
    if label is None:
        raise DatasetError(
            f"{path} line {n}: expected '<clip>.mp4 <emotion>' with emotion one of "
            f"{', '.join(MAFW_CLASSES)}; got {line!r}"
        )
    return Path(parts[0]).stem, label


def read_mafw(root: PathLike, *, fold: int, split: str) -> list[ClipRecord]:
    """Read one fold of MAFW's single-label, no-caption 5-fold protocol.

    Split lines are ``<clip>.mp4 <emotion name>`` (e.g. ``00025.mp4 anger``, emotion in
    lower case as MAE-DFER preprocess/mafw.py maps them); frames are in ``data/frames/<clip>/``.

    Args:
        root: the MAFW folder.
        fold: 1..5.
        split: "train" or "test".

    Returns:
        One record per line, in file order; labels index ``MAFW_CLASSES``.

    Raises:
        DatasetError: unknown fold/split, a missing split file, an unknown emotion, or a
            missing/empty frame folder.
    """
    root = Path(root)
    _check_choice(fold, MAFW_FOLDS, "fold", "MAFW")
    _check_choice(split, ("train", "test"), "split", "MAFW")
    path = _mafw_split_file(root, fold, split)
    frames_root = _require_dir(root / "data" / "frames", "MAFW frames")
    records = []
    for n, line in _read_lines(path):
        clip, label = _mafw_entry(path, n, line)
        records.append(_clip(clip, frames_root / clip, label, f"{path} line {n}"))
    return records


# --------------------------------------------------------------------------------------
# Dispatcher
# --------------------------------------------------------------------------------------


def _single_split_fold(name: str, fold: int | None) -> None:
    if fold not in (None, 1):
        raise DatasetError(
            f"{name}: has one fixed train/test split and no folds; pass fold=None (or 1), got fold={fold}"
        )


def _needs_fold(name: str, fold: int | None, folds: int = 5) -> int:
    if fold is None:
        raise DatasetError(f"{name}: is evaluated by {folds}-fold cross-validation; pass fold=1..{folds}")
    return fold


def read_dfer(
    name: str, root: PathLike, *, fold: int | None, split: str, protocol: str | None = None
) -> list[ClipRecord]:
    """Read any registered DFER dataset by name.

    Args:
        name: a key of ``DFER_DATASETS``: "dfew", "afew", "ferv39k", "mafw" or "ckplus".
        root: the dataset's folder.
        fold: 1..5 for DFEW and MAFW, 1..10 for CK+; None (or 1) for AFEW and FERV39k,
            which have one fixed split.
        split: "train" or "test" ("val" is accepted for AFEW, whose val set is its test set).
        protocol: CK+ only: "subject" (default) or "leaky" (see ``edge_fer.data.ckplus``).

    Raises:
        DatasetError: unknown name, a fold the dataset does not have, or any reader error.
    """
    if name not in DFER_DATASETS:
        raise DatasetError(f"unknown DFER dataset {name!r}; known: {', '.join(sorted(DFER_DATASETS))}")
    if name == "ckplus":
        return read_ckplus(root, fold=_needs_fold("CK+", fold, 10), split=split, protocol=protocol or "subject")
    if protocol not in (None, "subject"):
        raise DatasetError(f"{name}: has no {protocol!r} protocol (only CK+ offers the leaky frame split)")
    if name == "dfew":
        return read_dfew(root, fold=_needs_fold("DFEW", fold), split=split)
    if name == "mafw":
        return read_mafw(root, fold=_needs_fold("MAFW", fold), split=split)
    _single_split_fold(name.upper(), fold)
    if name == "afew":
        return read_afew(root, split="val" if split == "test" else split)
    return read_ferv39k(root, split=split)
