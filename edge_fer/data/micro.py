"""Readers for the micro-expression datasets (CASME II, SAMM, SMIC-HS, CAS(ME)^3 part A) and
the MEGC2019 composite built from the first three.

Readers return ``MicroRecord``s (paths and annotated frame numbers, no pixels). They check
the annotation file and that every referenced frame folder exists and holds images, and
raise ``DatasetError`` naming the file and the row (as Excel numbers it) or the folder at
fault. ``emotion`` is always the dataset's own label in lower case; ``composite_label``
maps it to the MEGC2019 three classes.

Layouts (DESIGN.md section 4; less obvious facts are sourced inline):

- CASME II: ``CASME2-coding-20140508.xlsx`` + ``CASME2_RAW_selected/subXX/<Filename>/img<N>.jpg``.
- SAMM: ``SAMM_Micro_FACS_Codes_v2.xlsx`` (title block, header on Excel row 14) +
  ``<sss>/<Filename>/<sss>_<NNNNN>.jpg``.
- SMIC-HS: ``HS/s<k>/micro/{negative,positive,surprise}/s<k>_{ne,po,sur}_<nn>/image<N>.bmp``
  (frame names as SLSTT's preprocess/data_init.py builds them: ``image`` + 6-digit number).
- CAS(ME)^3 part A: ``annotation/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx`` (sheet ``label``) +
  ``data/part_A/spNO.<k>/<seq>/color/<N>.jpg`` (whole sequences; a sample is onset..offset).
"""

from __future__ import annotations

import dataclasses
import os
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from edge_fer.data.records import DatasetInfo, MicroRecord, sorted_frames
from edge_fer.errors import DatasetError
from edge_fer.presets import MICRO_CLASSES

__all__ = [
    "CASME2_CLASSES",
    "SAMM_CLASSES",
    "SMIC_CLASSES",
    "CASME3A_CLASSES",
    "MICRO_DATASETS",
    "COMPOSITE_MAPPING",
    "COMPOSITE_EXCLUDED",
    "composite_label",
    "read_casme2",
    "read_samm",
    "read_smic",
    "read_casme3_part_a",
    "read_composite",
    "read_micro",
]

PathLike = str | os.PathLike

CASME2_CLASSES = ("happiness", "surprise", "disgust", "repression", "sadness", "fear", "others")
SAMM_CLASSES = ("anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise", "other")
SMIC_CLASSES = ("ne", "po", "sur")
# Index order of HTNet's label_for_7 column (cas(me)3_part_A_edited.csv), "others" = 0.
CASME3A_CLASSES = ("others", "happy", "surprise", "sad", "disgust", "fear", "anger")

MICRO_DATASETS: dict[str, DatasetInfo] = {
    "casme2": DatasetInfo(
        "casme2", "micro", CASME2_CLASSES, "CASME II: 255 samples, 26 subjects, 200 fps, onset/apex/offset annotated"
    ),
    "samm": DatasetInfo(
        "samm", "micro", SAMM_CLASSES, "SAMM: 159 samples, 32 subjects, 200 fps, onset/apex/offset annotated"
    ),
    "smic": DatasetInfo(
        "smic", "micro", SMIC_CLASSES, "SMIC-HS: 164 samples, 16 subjects, 100 fps, no apex annotation"
    ),
    "casme3a": DatasetInfo(
        "casme3a", "micro", CASME3A_CLASSES, "CAS(ME)^3 part A: 860 micro-expressions, 94 subjects, 30 fps"
    ),
    "composite": DatasetInfo(
        "composite",
        "micro",
        MICRO_CLASSES,
        "MEGC2019 composite (SMIC + CASME II + SAMM): 442 samples, 68 subjects, 3 classes",
    ),
}

CASME2_XLSX = "CASME2-coding-20140508.xlsx"
SAMM_XLSX = "SAMM_Micro_FACS_Codes_v2.xlsx"
CASME3A_XLSX = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"

_CASME2_COLUMNS = ("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Estimated Emotion")
_SAMM_COLUMNS = ("Subject", "Filename", "Onset Frame", "Apex Frame", "Offset Frame", "Estimated Emotion")
_CASME3A_COLUMNS = ("Subject", "Filename", "Onset", "Apex", "Offset", "emotion")
_HEADER_SEARCH_ROWS = 30
_MISSING = ("", "/", "-")


# --------------------------------------------------------------------------------------
# Spreadsheet access
# --------------------------------------------------------------------------------------


def _norm(name: object) -> str:
    """Column-name key: lower case, letters and digits only ("Onset Frame" == "OnsetFrame")."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower()) if name is not None else ""


def _load_sheet(path: Path, sheet: str | None) -> list[tuple]:
    """All rows of one worksheet as value tuples (index 0 is Excel row 1)."""
    try:
        import openpyxl
        from openpyxl.utils.exceptions import InvalidFileException
    except ImportError:
        raise DatasetError(f"reading {path} needs openpyxl, which is not installed: pip install openpyxl") from None
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError) as exc:
        raise DatasetError(
            f"{path}: cannot be read as an .xlsx workbook ({type(exc).__name__}: {exc}); "
            f"expected the dataset's original Excel annotation file"
        ) from None
    try:
        worksheet = workbook[sheet] if sheet in workbook.sheetnames else workbook.worksheets[0]
        worksheet.reset_dimensions()  # read every row even where the file's size tag is wrong
        return list(worksheet.iter_rows(values_only=True))
    finally:
        workbook.close()


def _find_header(path: Path, rows: list[tuple], columns: Sequence[str], hint: str) -> tuple[int, dict[str, int]]:
    """(0-based header row index, column key -> position) of the first row naming ``columns[:2]``."""
    keys = [_norm(c) for c in columns[:2]]
    for index, row in enumerate(rows[:_HEADER_SEARCH_ROWS]):
        positions = {_norm(cell): i for i, cell in reversed(list(enumerate(row))) if _norm(cell)}
        if all(k in positions for k in keys):
            return index, positions
    raise DatasetError(
        f"{path}: no header row with {' and '.join(columns[:2])} in the first {_HEADER_SEARCH_ROWS} rows ({hint})"
    )


def _read_xlsx(
    path: Path,
    columns: Sequence[str],
    *,
    hint: str,
    sheet: str | None = None,
) -> list[tuple[int, dict[str, object]]]:
    """Data rows of an annotation workbook as (Excel row number, column name -> value).

    Raises:
        DatasetError: openpyxl missing, unreadable/corrupt file, no header, missing column.
    """
    rows = _load_sheet(path, sheet)
    header_index, positions = _find_header(path, rows, columns, hint)
    missing = [c for c in columns if _norm(c) not in positions]
    if missing:
        found = [str(c) for c in rows[header_index] if c is not None]
        raise DatasetError(
            f"{path}: header (row {header_index + 1}) lacks column(s) {', '.join(missing)}; "
            f"expected {', '.join(columns)}, found {', '.join(found)}"
        )
    wanted = {c: positions[_norm(c)] for c in columns}
    records = []
    for index in range(header_index + 1, len(rows)):
        row = rows[index]
        if all(v is None or str(v).strip() == "" for v in row):
            continue
        records.append((index + 1, {c: (row[i] if i < len(row) else None) for c, i in wanted.items()}))
    return records


def _int_cell(value: object, where: str, column: str, *, optional: bool = False) -> int | None:
    """A frame number from a cell; "/", "-" or empty give None when ``optional``."""
    if value is None or (isinstance(value, str) and value.strip() in _MISSING):
        if optional:
            return None
        raise DatasetError(f"{where}: {column} is empty; expected a frame number")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise DatasetError(f"{where}: {column} must be a frame number, found {value!r}")


def _text_cell(value: object, where: str, column: str) -> str:
    text = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value or "").strip()
    if not text:
        raise DatasetError(f"{where}: {column} is empty")
    return text


def _emotion_cell(value: object, classes: Sequence[str], where: str, column: str) -> str:
    emotion = _text_cell(value, where, column).lower()
    if emotion not in classes:
        raise DatasetError(f"{where}: {column} must be one of {', '.join(classes)}, found {value!r}")
    return emotion


# --------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------

_LAST_NUMBER = re.compile(r"(\d+)\D*$")


def _numbered_frames(folder: Path, source: str) -> tuple[tuple[Path, ...], tuple[int, ...]]:
    """Images of ``folder`` sorted by the frame number at the end of their names."""
    numbered = []
    for path in sorted_frames(folder, source=source):
        match = _LAST_NUMBER.search(path.stem)
        if match is None:
            raise DatasetError(
                f"{source}: frame {path} has no frame number in its name; "
                f"expected names such as img46.jpg or 006_05562.jpg"
            )
        numbered.append((int(match.group(1)), path))
    numbered.sort(key=lambda item: item[0])
    numbers = [n for n, _ in numbered]
    for a, b in zip(numbered, numbered[1:]):
        if a[0] == b[0]:
            raise DatasetError(f"{source}: frames {a[1].name} and {b[1].name} in {folder} share frame number {a[0]}")
    return tuple(p for _, p in numbered), tuple(numbers)


@dataclasses.dataclass(frozen=True)
class _Annotation:
    """One annotated sample before its frames are listed."""

    subject: str
    name: str
    onset: int
    apex: int | None
    offset: int | None
    emotion: str
    where: str


def _record(dataset: str, ann: _Annotation, folder: Path) -> MicroRecord:
    frames, numbers = _numbered_frames(folder, ann.where)
    return MicroRecord(
        sample_id=f"{ann.subject}/{ann.name}",
        subject=ann.subject,
        frames=frames,
        frame_numbers=numbers,
        onset=ann.onset,
        apex=ann.apex,
        offset=ann.offset,
        emotion=ann.emotion,
        dataset=dataset,
    )


def _consistent(onset: int, apex: int | None, offset: int | None) -> tuple[int | None, int | None]:
    """(apex, offset) with impossible values dropped to None ("not annotated").

    The official sheets hold a few: CAS(ME)^3 offsets of 0 and one onset after its offset,
    apexes outside onset..offset (CAS(ME)^3 spNO.149/d; SAMM 028_4_1 and 032_3_1). An
    offset before the onset is dropped; then an apex outside onset..offset is dropped, so
    pre-processing spots it from motion as for SMIC.
    """
    if offset is not None and offset < onset:
        offset = None
    if apex is not None and not onset <= apex <= (apex if offset is None else offset):
        apex = None
    return apex, offset


def _annotation(
    row: Mapping[str, object], where: str, columns: Sequence[str], subject: str, classes: Sequence[str]
) -> _Annotation:
    """Fields common to the spreadsheet datasets; ``columns`` = filename, onset, apex, offset, emotion."""
    name_col, onset_col, apex_col, offset_col, emotion_col = columns
    onset = _int_cell(row[onset_col], where, onset_col)
    apex, offset = _consistent(
        onset,
        _int_cell(row[apex_col], where, apex_col, optional=True),
        _int_cell(row[offset_col], where, offset_col, optional=True),
    )
    return _Annotation(
        subject=subject,
        name=_text_cell(row[name_col], where, name_col),
        onset=onset,
        apex=apex,
        offset=offset,
        emotion=_emotion_cell(row[emotion_col], classes, where, emotion_col),
        where=where,
    )


def _subject_number(value: object, where: str, prefix: str) -> int:
    """The number in a Subject cell such as 1, 1.0, "01", "sub01" (``prefix`` "sub") or "006"."""
    text = _text_cell(value, where, "Subject")
    digits = text[len(prefix) :] if prefix and text.lower().startswith(prefix) else text
    if not digits.isdigit():
        raise DatasetError(f"{where}: Subject must be a number such as 1 or {prefix or ''}01, found {value!r}")
    return int(digits)


# --------------------------------------------------------------------------------------
# CASME II
# --------------------------------------------------------------------------------------


def read_casme2(root: PathLike) -> list[MicroRecord]:
    """Read CASME II from ``CASME2-coding-20140508.xlsx`` and ``CASME2_RAW_selected/``.

    Subjects are written ``sub01``..``sub26`` (the Subject cell may say 1, "01" or
    "sub01"); ApexFrame "/" or empty gives ``apex=None``, as does an apex outside
    onset..offset (an offset before the onset gives ``offset=None``); emotions are
    lower-cased.

    Args:
        root: the CASME II folder.

    Returns:
        One record per annotation row, in row order; ``sample_id`` is "subXX/<Filename>".

    Raises:
        DatasetError: missing/corrupt workbook, missing column, non-numeric onset, unknown
            emotion, or a missing/empty frame folder (naming the Excel row).
    """
    root = Path(root)
    xlsx = root / CASME2_XLSX
    if not xlsx.is_file():
        raise DatasetError(f"CASME II: expected the annotation workbook {xlsx}, which does not exist")
    frames_root = root / "CASME2_RAW_selected"
    if not frames_root.is_dir():
        raise DatasetError(f"CASME II: expected the frame folder {frames_root} (subXX/<Filename>/img<N>.jpg)")
    records = []
    for row_number, row in _read_xlsx(xlsx, _CASME2_COLUMNS, hint="CASME II: header on row 1"):
        where = f"{xlsx} row {row_number}"
        subject = f"sub{_subject_number(row['Subject'], where, 'sub'):02d}"
        ann = _annotation(row, where, _CASME2_COLUMNS[1:], subject, CASME2_CLASSES)
        records.append(_record("casme2", ann, frames_root / subject / ann.name))
    return records


# --------------------------------------------------------------------------------------
# SAMM
# --------------------------------------------------------------------------------------


def _samm_workbook(root: Path) -> Path:
    exact = root / SAMM_XLSX
    if exact.is_file():
        return exact
    # A dated release name also circulates: SAMM_20181215_Micro_FACS_Codes_v2.xlsx.
    others = sorted(root.glob("SAMM*Micro_FACS_Codes*.xlsx"))
    if len(others) == 1:
        return others[0]
    raise DatasetError(
        f"SAMM: expected the annotation workbook {exact}; found "
        f"{', '.join(p.name for p in others) or 'no SAMM*Micro_FACS_Codes*.xlsx'}"
    )


def read_samm(root: PathLike) -> list[MicroRecord]:
    """Read SAMM from ``SAMM_Micro_FACS_Codes_v2.xlsx`` and ``<sss>/<Filename>/``.

    The workbook has a title block above its header: the header is on Excel row 14, i.e.
    ``header=13`` 0-based as pandas loaders read it (also ``skiprows=range(13)``, and
    MATLAB ``xlsraw(15:end, ...)`` for the data). This reader finds the header row by its
    Subject and Filename cells instead of trusting a fixed row. Frames are
    ``<sss>_<NNNNN>.jpg`` with ``sss`` the zero-padded subject.

    Args:
        root: the SAMM folder (holding the workbook and the ``006/``... subject folders).

    Returns:
        One record per annotation row; ``subject`` "006", ``sample_id`` "006/006_1_2",
        emotions lower-cased ("anger", ..., "other").

    Raises:
        DatasetError: as ``read_casme2``.
    """
    root = Path(root)
    xlsx = _samm_workbook(root)
    hint = "SAMM: header on Excel row 14 (header=13 0-based), below a title block"
    records = []
    for row_number, row in _read_xlsx(xlsx, _SAMM_COLUMNS, hint=hint):
        where = f"{xlsx} row {row_number}"
        subject = f"{_subject_number(row['Subject'], where, ''):03d}"
        ann = _annotation(row, where, _SAMM_COLUMNS[1:], subject, SAMM_CLASSES)
        records.append(_record("samm", ann, root / subject / ann.name))
    return records


# --------------------------------------------------------------------------------------
# SMIC-HS
# --------------------------------------------------------------------------------------

_SMIC_FOLDERS = {"negative": "ne", "positive": "po", "surprise": "sur"}
_SMIC_SUBJECT = re.compile(r"^s(\d+)$", re.IGNORECASE)
_SMIC_CLIP = re.compile(r"^s(\d+)_(ne|po|sur)_(\d+)$", re.IGNORECASE)


def _smic_base(root: Path) -> Path:
    if (root / "HS").is_dir():
        return root / "HS"
    if root.is_dir() and any(_SMIC_SUBJECT.match(p.name) for p in root.iterdir() if p.is_dir()):
        return root
    raise DatasetError(
        f"SMIC: expected {root / 'HS'} (or a folder of s1, s2, ... subject folders) holding "
        f"s<k>/micro/{{negative,positive,surprise}}/s<k>_<ne|po|sur>_<nn>/ frame folders"
    )


def _smic_clip(emotion_dir: Path, clip: Path, subject_dir: Path) -> MicroRecord:
    match = _SMIC_CLIP.match(clip.name)
    code = _SMIC_FOLDERS[emotion_dir.name.lower()]
    subject_number = int(_SMIC_SUBJECT.match(subject_dir.name).group(1))
    if match is None or int(match.group(1)) != subject_number or match.group(2).lower() != code:
        raise DatasetError(
            f"SMIC: clip folder {clip} does not match its place; expected a name like {subject_dir.name}_{code}_01"
        )
    frames, numbers = _numbered_frames(clip, "SMIC")
    return MicroRecord(
        sample_id=f"{subject_dir.name}/{clip.name}",
        subject=subject_dir.name,
        frames=frames,
        frame_numbers=numbers,
        onset=numbers[0],
        apex=None,
        offset=numbers[-1],
        emotion=code,
        dataset="smic",
    )


def _smic_subject(subject_dir: Path) -> list[MicroRecord]:
    micro = subject_dir / "micro"
    if not micro.is_dir():
        return []  # SMIC-HS records 20 people; only 16 show micro-expressions
    records = []
    for emotion_dir in sorted(p for p in micro.iterdir() if p.is_dir()):
        if emotion_dir.name.lower() not in _SMIC_FOLDERS:
            raise DatasetError(f"SMIC: unknown emotion folder {emotion_dir}; expected negative, positive or surprise")
        records += [
            _smic_clip(emotion_dir, clip, subject_dir)
            for clip in sorted(p for p in emotion_dir.iterdir() if p.is_dir())
        ]
    return records


def read_smic(root: PathLike) -> list[MicroRecord]:
    """Read SMIC-HS from ``HS/s<k>/micro/<emotion>/s<k>_<code>_<nn>/``.

    The class comes from the clip name (``ne``, ``po``, ``sur``) and must agree with its
    folder. SMIC annotates no apex: ``apex`` is None, onset/offset are the first/last frame
    (the numbers in the frame names, e.g. ``image559740.bmp``).

    Args:
        root: the SMIC folder holding ``HS/`` (or the ``HS`` folder itself).

    Returns:
        Records sorted by subject number, then emotion and clip; ``subject`` is the folder
        name ("s1"), ``sample_id`` "s1/s1_ne_01".

    Raises:
        DatasetError: no HS folder, an unknown emotion folder, a misnamed clip folder, an
            empty clip folder, or no samples at all.
    """
    base = _smic_base(Path(root))
    subjects = sorted(
        (p for p in base.iterdir() if p.is_dir() and _SMIC_SUBJECT.match(p.name)),
        key=lambda p: int(_SMIC_SUBJECT.match(p.name).group(1)),
    )
    records = [record for subject in subjects for record in _smic_subject(subject)]
    if not records:
        raise DatasetError(
            f"SMIC: no micro-expression clips under {base}; expected "
            f"s<k>/micro/{{negative,positive,surprise}}/<clip>/ folders of frames"
        )
    return records


# --------------------------------------------------------------------------------------
# CAS(ME)^3 part A
# --------------------------------------------------------------------------------------

# Frame roots seen in public loaders: data/part_A (HTNet-style paths spNO.1/b/color/175.jpg),
# data/part_A_split/part_A and part_A_split/part_A (the split archive as unpacked).
_CASME3A_FRAME_ROOTS = ("data/part_A", "data/part_A_split/part_A", "part_A_split/part_A", "part_A", "data")


def _casme3a_workbook(root: Path) -> Path:
    for folder in (root / "annotation", root):
        if (folder / CASME3A_XLSX).is_file():
            return folder / CASME3A_XLSX
    found = sorted(root.glob("cas(me)3_part_A_ME_label_JpgIndex*.xlsx")) + sorted(
        root.glob("annotation/cas(me)3_part_A_ME_label_JpgIndex*.xlsx")
    )
    if found:
        return found[-1]
    raise DatasetError(
        f"CAS(ME)^3 part A: expected {root / 'annotation' / CASME3A_XLSX} (the official "
        f".xlsx; the v1 .xls cannot be read - save it as .xlsx)"
    )


def _casme3a_frame_root(root: Path) -> Path:
    for rel in _CASME3A_FRAME_ROOTS:
        folder = root / rel
        if folder.is_dir() and any(p.name.startswith("spNO.") for p in folder.iterdir() if p.is_dir()):
            return folder
    raise DatasetError(
        f"CAS(ME)^3 part A: no folder of spNO.<k> subjects under {root}; looked in "
        f"{', '.join(_CASME3A_FRAME_ROOTS)} for spNO.<k>/<seq>/color/<N>.jpg"
    )


def _casme3a_color_dir(frame_root: Path, ann: _Annotation) -> Path:
    folder = frame_root / ann.subject / ann.name / "color"
    if not folder.is_dir():
        # The sheet writes one sequence "J" where the folders are lower case.
        other_case = frame_root / ann.subject / ann.name.swapcase() / "color"
        folder = other_case if other_case.is_dir() else folder
    return folder


class _FolderCache:
    """Lists each sequence folder once: part A sequences hold thousands of frames and
    several samples each."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[tuple[Path, ...], tuple[int, ...]]] = {}

    def frames(self, folder: Path, source: str) -> tuple[tuple[Path, ...], tuple[int, ...]]:
        if folder not in self._cache:
            self._cache[folder] = _numbered_frames(folder, source)
        return self._cache[folder]


def _casme3a_record(ann: _Annotation, folder: Path, cache: _FolderCache) -> MicroRecord:
    frames, numbers = cache.frames(folder, ann.where)
    last = next(n for n in (ann.offset, ann.apex, ann.onset) if n is not None)
    keep = [i for i, n in enumerate(numbers) if ann.onset <= n <= last]
    if not keep:
        raise DatasetError(
            f"{ann.where}: no frames {ann.onset}..{last} in {folder} (it holds {numbers[0]}..{numbers[-1]})"
        )
    return MicroRecord(
        sample_id=f"{ann.subject}/{ann.name}/{ann.onset}",
        subject=ann.subject,
        frames=tuple(frames[i] for i in keep),
        frame_numbers=tuple(numbers[i] for i in keep),
        onset=ann.onset,
        apex=ann.apex,
        offset=ann.offset,
        emotion=ann.emotion,
        dataset="casme3a",
    )


def read_casme3_part_a(root: PathLike) -> list[MicroRecord]:
    """Read the micro-expressions of CAS(ME)^3 part A.

    Annotation: ``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx`` (github.com/jingtingEmmaLi/CAS-ME-3,
    annotation/partA), sheet ``label``, columns Subject (``spNO.1``), Filename (sequence
    letter ``a``..``m``), Onset, Apex, Offset, AU, Objective class, emotion; numbers are
    stored as text. Frames: ``<frame root>/spNO.<k>/<seq>/color/<N>.jpg`` with ``N``
    unpadded; one sequence holds several samples, so each record keeps only the frames
    ``onset..offset`` (``onset..apex`` where the sheet's offset is 0 or before the onset).

    Args:
        root: the part A folder (holding ``annotation/`` and ``data/``).

    Returns:
        One record per annotation row; ``sample_id`` "spNO.1/b/166" (subject/sequence/onset).

    Raises:
        DatasetError: as ``read_casme2``, or no frames within onset..offset.
    """
    root = Path(root)
    xlsx = _casme3a_workbook(root)
    frame_root = _casme3a_frame_root(root)
    cache = _FolderCache()
    records = []
    for row_number, row in _read_xlsx(xlsx, _CASME3A_COLUMNS, sheet="label", hint="CAS(ME)^3: sheet 'label', row 1"):
        where = f"{xlsx} row {row_number}"
        subject = _text_cell(row["Subject"], where, "Subject")
        ann = _annotation(row, where, _CASME3A_COLUMNS[1:], subject, CASME3A_CLASSES)
        records.append(_casme3a_record(ann, _casme3a_color_dir(frame_root, ann), cache))
    return records


# --------------------------------------------------------------------------------------
# MEGC2019 composite
# --------------------------------------------------------------------------------------

COMPOSITE_MAPPING: dict[str, dict[str, int]] = {
    "smic": {"ne": 0, "po": 1, "sur": 2},
    "casme2": {"disgust": 0, "repression": 0, "happiness": 1, "surprise": 2},
    "samm": {"anger": 0, "contempt": 0, "disgust": 0, "fear": 0, "sadness": 0, "happiness": 1, "surprise": 2},
    # Not part of MEGC2019; HTNet's cas(me)3_part_A_edited.csv (label_for_3) groups it so.
    "casme3a": {"disgust": 0, "fear": 0, "anger": 0, "sad": 0, "happy": 1, "surprise": 2},
}
"""Native emotion -> MEGC2019 composite class (0 negative, 1 positive, 2 surprise), per dataset."""

COMPOSITE_EXCLUDED: frozenset[tuple[str, str]] = frozenset(
    {
        ("casme2", "sub04/EP12_01f"),
        ("casme2", "sub05/EP09_05f"),
        ("casme2", "sub24/EP07_01"),
        ("casme2", "sub24/EP07_04f"),
        ("casme2", "sub24/EP10_03"),
    }
)
"""(dataset, native sample id) left out of the official MEGC2019 ground truth although their
emotion maps to a class (two disgust, three surprise samples of CASME II)."""


def composite_label(record: MicroRecord) -> int | None:
    """The MEGC2019 composite class of a record: 0 negative, 1 positive, 2 surprise, or None.

    Mapping (``COMPOSITE_MAPPING``), checked against the official composite ground truth
    ``combined_3class_gt.csv`` (442 samples: SMIC 164, CASME II 145, SAMM 133; shipped with
    github.com/Vision-Intelligence-and-Robots-Group/SLSTT, preprocess/databases/, and as
    combined_3_class2_for_optical_flow.csv in github.com/wangzhifengharrison/HTNet) joined
    with each dataset's coding file:

    - positive: CASME II happiness, SAMM happiness, SMIC po;
    - surprise: CASME II surprise, SAMM surprise, SMIC sur;
    - negative: SMIC ne; CASME II disgust and repression; SAMM anger, contempt, disgust,
      fear and sadness;
    - excluded (None): CASME II others, sadness and fear (MEGC2019 left them out, although
      its summary lists sadness and fear as negative), SAMM other, and the five CASME II
      samples in ``COMPOSITE_EXCLUDED`` that the official list omits.

    CAS(ME)^3 part A records are mapped as HTNet groups them (others excluded).

    Works on native records and on ``read_composite``'s prefixed ones.
    """
    native_id = record.sample_id.removeprefix(f"{record.dataset}/")
    if (record.dataset, native_id) in COMPOSITE_EXCLUDED:
        return None
    return COMPOSITE_MAPPING.get(record.dataset, {}).get(record.emotion)


_COMPOSITE_PARTS = ("casme2", "samm", "smic")


def _prefixed(record: MicroRecord, name: str) -> MicroRecord:
    return dataclasses.replace(record, sample_id=f"{name}/{record.sample_id}", subject=f"{name}/{record.subject}")


def read_composite(roots: Mapping[str, PathLike]) -> list[MicroRecord]:
    """Read the MEGC2019 composite from whichever of CASME II, SAMM and SMIC are given.

    Only records with a ``composite_label`` are kept. Sample ids and subjects are prefixed
    with the dataset ("casme2/sub01", "samm/006", "smic/s1"), so subjects of different
    datasets never collide in leave-one-subject-out; ``emotion`` stays native.

    Args:
        roots: dataset name ("casme2", "samm", "smic") -> its folder; at least one.

    Returns:
        Records of CASME II, then SAMM, then SMIC (those given).

    Raises:
        DatasetError: no roots, an unknown name, or any reader error.
    """
    unknown = sorted(set(roots) - set(_COMPOSITE_PARTS))
    if unknown or not roots:
        raise DatasetError(
            f"composite: expected roots for one or more of {', '.join(_COMPOSITE_PARTS)}, got {sorted(roots) or 'none'}"
        )
    records = []
    for name in _COMPOSITE_PARTS:
        if name in roots:
            records += [_prefixed(r, name) for r in _READERS[name](Path(roots[name])) if composite_label(r) is not None]
    return records


_READERS = {"casme2": read_casme2, "samm": read_samm, "smic": read_smic, "casme3a": read_casme3_part_a}


def read_micro(name: str, root: PathLike) -> list[MicroRecord]:
    """Read any registered micro-expression dataset by name.

    Args:
        name: a key of ``MICRO_DATASETS``.
        root: the dataset's folder; for "composite" a folder with any of ``casme2/``,
            ``samm/`` and ``smic/`` subfolders.

    Raises:
        DatasetError: unknown name, no composite subfolder, or any reader error.
    """
    if name not in MICRO_DATASETS:
        raise DatasetError(f"unknown micro-expression dataset {name!r}; known: {', '.join(sorted(MICRO_DATASETS))}")
    root = Path(root)
    if name != "composite":
        return _READERS[name](root)
    roots = {part: root / part for part in _COMPOSITE_PARTS if (root / part).is_dir()}
    if not roots:
        raise DatasetError(
            f"composite: {root} has none of the subfolders {', '.join(_COMPOSITE_PARTS)}; expected at least one"
        )
    return read_composite(roots)
