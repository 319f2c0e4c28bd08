"""Micro-expression readers on tiny fixtures built in the real on-disk layouts."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import openpyxl
import pytest

from edge_fer.data.micro import (
    COMPOSITE_MAPPING,
    MICRO_DATASETS,
    composite_label,
    read_casme2,
    read_casme3_part_a,
    read_composite,
    read_micro,
    read_samm,
    read_smic,
)
from edge_fer.data.records import MicroRecord
from edge_fer.errors import DatasetError
from edge_fer.presets import MICRO_CLASSES


def write_frames(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        cv2.imwrite(str(folder / name), np.full((8, 8, 3), i * 10, dtype=np.uint8))


def write_xlsx(
    path: Path,
    rows: list[list],
    *,
    first_row: int = 1,
    sheets: tuple[str, ...] = ("Sheet1",),
    data_sheet: str | None = None,
) -> Path:
    """A workbook whose ``data_sheet`` (default: the first) holds ``rows`` from ``first_row`` on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook = openpyxl.Workbook()
    workbook.active.title = sheets[0]
    for name in sheets[1:]:
        workbook.create_sheet(name)
    sheet = workbook[data_sheet or sheets[0]]
    for r, row in enumerate(rows, start=first_row):
        for c, value in enumerate(row, start=1):
            sheet.cell(row=r, column=c, value=value)
    workbook.save(path)
    return path


# --------------------------------------------------------------------------------------
# CASME II
# --------------------------------------------------------------------------------------

# The real sheet has unnamed columns between the named ones.
CASME2_HEADER = [
    "Subject",
    "Filename",
    None,
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    None,
    "Action Units",
    "Estimated Emotion",
]


def casme2(root: Path, rows: list[list] | None = None) -> Path:
    rows = (
        rows
        if rows is not None
        else [
            ["01", "EP02_01f", None, 8, 9, 11, None, "12", "happiness"],
            [2, "EP03_02", None, 20, "/", 21, None, "4", "Repression"],
        ]
    )
    xlsx = write_xlsx(root / "CASME2-coding-20140508.xlsx", [CASME2_HEADER, *rows])
    write_frames(root / "CASME2_RAW_selected" / "sub01" / "EP02_01f", [f"img{n}.jpg" for n in (10, 8, 11, 9)])
    write_frames(root / "CASME2_RAW_selected" / "sub02" / "EP03_02", ["img20.jpg", "img21.jpg"])
    return xlsx


def test_casme2_subjects_natural_frame_order_and_missing_apex(tmp_path):
    casme2(tmp_path)
    first, second = read_casme2(tmp_path)
    assert (first.sample_id, first.subject, first.dataset) == ("sub01/EP02_01f", "sub01", "casme2")
    assert [p.name for p in first.frames] == ["img8.jpg", "img9.jpg", "img10.jpg", "img11.jpg"]
    assert first.frame_numbers == (8, 9, 10, 11)
    assert (first.onset, first.apex, first.offset, first.emotion) == (8, 9, 11, "happiness")
    assert first.frame_path(10).name == "img10.jpg"
    assert (second.subject, second.apex, second.emotion) == ("sub02", None, "repression")


def test_casme2_corrupt_xlsx_names_file(tmp_path):
    xlsx = casme2(tmp_path)
    xlsx.write_bytes(b"PK\x03\x04 this is not a workbook")
    with pytest.raises(DatasetError, match="cannot be read as an .xlsx") as info:
        read_casme2(tmp_path)
    assert str(xlsx) in str(info.value)


def test_casme2_missing_column_names_file_and_column(tmp_path):
    xlsx = write_xlsx(
        tmp_path / "CASME2-coding-20140508.xlsx", [CASME2_HEADER[:-1], ["01", "EP02_01f", None, 8, 9, 11, None, "12"]]
    )
    (tmp_path / "CASME2_RAW_selected").mkdir()
    with pytest.raises(DatasetError, match="lacks column.*Estimated Emotion") as info:
        read_casme2(tmp_path)
    assert str(xlsx) in str(info.value)


def test_casme2_non_numeric_onset_names_excel_row(tmp_path):
    xlsx = casme2(
        tmp_path,
        [
            ["01", "EP02_01f", None, 8, 9, 11, None, "12", "happiness"],
            ["02", "EP03_02", None, "n/a", 20, 21, None, "4", "others"],
        ],
    )
    with pytest.raises(DatasetError, match="OnsetFrame must be a frame number") as info:
        read_casme2(tmp_path)
    assert f"{xlsx} row 3" in str(info.value)


def test_casme2_missing_and_empty_frame_folders(tmp_path):
    xlsx = casme2(tmp_path, [["03", "EP01_2", None, 1, 2, 3, None, "4", "others"]])
    with pytest.raises(DatasetError, match="does not exist") as info:
        read_casme2(tmp_path)
    assert f"{xlsx} row 2" in str(info.value)
    assert str(tmp_path / "CASME2_RAW_selected" / "sub03" / "EP01_2") in str(info.value)
    (tmp_path / "CASME2_RAW_selected" / "sub03" / "EP01_2").mkdir(parents=True)
    with pytest.raises(DatasetError, match="holds no images"):
        read_casme2(tmp_path)


def test_casme2_unknown_emotion_and_missing_workbook(tmp_path):
    with pytest.raises(DatasetError, match="CASME2-coding-20140508.xlsx"):
        read_casme2(tmp_path)
    casme2(tmp_path, [["01", "EP02_01f", None, 8, 9, 11, None, "12", "joy"]])
    with pytest.raises(DatasetError, match="row 2: Estimated Emotion must be one of"):
        read_casme2(tmp_path)


def test_missing_openpyxl_says_how_to_install(tmp_path, monkeypatch):
    casme2(tmp_path)
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # makes `import openpyxl` fail
    with pytest.raises(DatasetError, match="pip install openpyxl"):
        read_casme2(tmp_path)


# --------------------------------------------------------------------------------------
# SAMM
# --------------------------------------------------------------------------------------

SAMM_HEADER = [
    "Subject",
    "Filename",
    "Inducement Code",
    "Onset Frame",
    "Apex Frame",
    "Offset Frame",
    "Duration",
    "Micro",
    "Objective Classes",
    "Action Units",
    "Notes",
    "Estimated Emotion",
]


def samm(root: Path, rows: list[list]) -> Path:
    """The real sheet: a title block on rows 1-13, the header on Excel row 14."""
    xlsx = write_xlsx(
        root / "SAMM_Micro_FACS_Codes_v2.xlsx",
        [["SAMM - Spontaneous Micro-Facial Movement Dataset"], [], ["FACS coding"]] + [[]] * 10 + [SAMM_HEADER, *rows],
    )
    write_frames(root / "006" / "006_1_2", [f"006_{n:05d}.jpg" for n in (5562, 5563, 5588, 5632)])
    write_frames(root / "032" / "032_3_1", [f"032_{n:05d}.jpg" for n in (10, 11, 12)])
    return xlsx


def test_samm_header_below_title_block(tmp_path):
    samm(
        tmp_path,
        [
            [6, "006_1_2", 1, 5562, 5588, 5632, 71, "Micro", "I", "R20+R21", "", "Anger"],
            ["032", "032_3_1", 3, 10, 99, 12, 3, "Micro", "VII", "2", "", "Other"],
        ],
    )
    first, second = read_samm(tmp_path)
    assert (first.sample_id, first.subject, first.dataset) == ("006/006_1_2", "006", "samm")
    assert first.frame_numbers == (5562, 5563, 5588, 5632)
    assert (first.onset, first.apex, first.offset, first.emotion) == (5562, 5588, 5632, "anger")
    # An apex outside onset..offset (as in the real 032_3_1) counts as not annotated.
    assert (second.subject, second.apex, second.emotion) == ("032", None, "other")


def test_samm_errors_name_the_excel_row(tmp_path):
    xlsx = samm(
        tmp_path,
        [
            [6, "006_1_2", 1, 5562, 5588, 5632, 71, "Micro", "I", "R20", "", "Anger"],
            [7, "007_6_1", 6, 1, 2, 3, 3, "Micro", "I", "R20", "", "Anger"],
        ],
    )
    with pytest.raises(DatasetError, match="does not exist") as info:
        read_samm(tmp_path)
    assert f"{xlsx} row 16" in str(info.value)
    write_xlsx(xlsx, [["SAMM title"], [], ["Subject", "Name"]])
    with pytest.raises(DatasetError, match="no header row with Subject and Filename") as info:
        read_samm(tmp_path)
    assert str(xlsx) in str(info.value) and "row 14" in str(info.value)


# --------------------------------------------------------------------------------------
# SMIC-HS
# --------------------------------------------------------------------------------------


def smic(root: Path) -> Path:
    hs = root / "HS"
    write_frames(hs / "s1" / "micro" / "negative" / "s1_ne_01", [f"image{n}.bmp" for n in (559741, 559740, 559742)])
    write_frames(hs / "s1" / "micro" / "surprise" / "s1_sur_01", ["image100.bmp", "image101.bmp"])
    write_frames(hs / "s10" / "micro" / "positive" / "s10_po_02", ["image7.bmp", "image8.bmp"])
    write_frames(hs / "s2" / "micro" / "negative" / "s2_ne_01", ["image9.bmp", "image10.bmp"])
    (hs / "s7" / "non_micro").mkdir(parents=True)  # a subject without micro-expressions
    return hs


def test_smic_layout_onset_offset_and_no_apex(tmp_path):
    smic(tmp_path)
    records = read_smic(tmp_path)
    assert [r.sample_id for r in records] == ["s1/s1_ne_01", "s1/s1_sur_01", "s2/s2_ne_01", "s10/s10_po_02"]
    first = records[0]
    assert (first.subject, first.emotion, first.dataset) == ("s1", "ne", "smic")
    assert (first.onset, first.apex, first.offset) == (559740, None, 559742)
    assert [p.name for p in records[2].frames] == ["image9.bmp", "image10.bmp"]
    assert read_smic(tmp_path / "HS") == records


def test_smic_misnamed_clip_and_unknown_folder(tmp_path):
    hs = smic(tmp_path)
    write_frames(hs / "s2" / "micro" / "positive" / "s2_ne_02", ["image1.bmp"])
    with pytest.raises(DatasetError, match="does not match its place") as info:
        read_smic(tmp_path)
    assert "s2_ne_02" in str(info.value)
    with pytest.raises(DatasetError, match="HS"):
        read_smic(tmp_path / "nothing")


# --------------------------------------------------------------------------------------
# CAS(ME)^3 part A
# --------------------------------------------------------------------------------------

CASME3_HEADER = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"]


def casme3(root: Path, rows: list[list]) -> Path:
    xlsx = write_xlsx(
        root / "annotation" / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",
        [CASME3_HEADER, *rows],
        sheets=("Sheet1", "label"),
        data_sheet="label",
    )
    write_frames(root / "data" / "part_A" / "spNO.1" / "b" / "color", [f"{n}.jpg" for n in range(160, 182)])
    return xlsx


def test_casme3_part_a_keeps_onset_to_offset(tmp_path):
    casme3(
        tmp_path,
        [
            ["spNO.1", "b", "166", "175", "179", "4", "III", "disgust"],
            ["spNO.1", "b", "170", "172", "0", "4", "III", "Others"],
        ],
    )
    first, second = read_casme3_part_a(tmp_path)
    assert (first.sample_id, first.subject, first.dataset) == ("spNO.1/b/166", "spNO.1", "casme3a")
    assert first.frame_numbers == tuple(range(166, 180))
    assert (first.onset, first.apex, first.offset, first.emotion) == (166, 175, 179, "disgust")
    assert composite_label(first) == 0
    # Offset 0 (as in the real sheet) is "not annotated": the sample runs to its apex.
    assert (second.offset, second.frame_numbers, second.emotion) == (None, (170, 171, 172), "others")
    assert composite_label(second) is None


def test_casme3_part_a_errors(tmp_path):
    xlsx = casme3(tmp_path, [["spNO.1", "b", "300", "305", "310", "4", "III", "fear"]])
    with pytest.raises(DatasetError, match=r"row 2: no frames 300\.\.310"):
        read_casme3_part_a(tmp_path)
    casme3(tmp_path, [["spNO.1", "c", "1", "2", "3", "4", "III", "fear"]])
    with pytest.raises(DatasetError, match="does not exist") as info:
        read_casme3_part_a(tmp_path)
    assert str(xlsx) in str(info.value)


# --------------------------------------------------------------------------------------
# MEGC2019 composite
# --------------------------------------------------------------------------------------


def composite_tree(root: Path) -> Path:
    casme2(
        root / "casme2",
        [
            ["01", "EP02_01f", None, 8, 9, 11, None, "12", "happiness"],  # positive
            ["02", "EP03_02", None, 20, 21, 21, None, "4", "others"],  # excluded
        ],
    )
    samm(
        root / "samm",
        [
            [6, "006_1_2", 1, 5562, 5588, 5632, 71, "Micro", "I", "R20", "", "Contempt"],
            [32, "032_3_1", 3, 10, 11, 12, 3, "Micro", "VII", "2", "", "Other"],
        ],
    )
    smic(root / "smic")
    return root


def test_composite_prefixes_filters_and_keeps_native_emotions(tmp_path):
    root = composite_tree(tmp_path)
    records = read_micro("composite", root)
    assert [r.sample_id for r in records] == [
        "casme2/sub01/EP02_01f",
        "samm/006/006_1_2",
        "smic/s1/s1_ne_01",
        "smic/s1/s1_sur_01",
        "smic/s2/s2_ne_01",
        "smic/s10/s10_po_02",
    ]
    assert [r.subject for r in records][:3] == ["casme2/sub01", "samm/006", "smic/s1"]
    assert [r.emotion for r in records][:3] == ["happiness", "contempt", "ne"]
    assert [composite_label(r) for r in records] == [1, 0, 0, 2, 0, 1]
    assert read_composite({"smic": root / "smic"}) == records[2:]
    assert MICRO_DATASETS["composite"].classes == MICRO_CLASSES


def test_composite_mapping_follows_megc2019():
    negative, positive, surprise = (MICRO_CLASSES.index(c) for c in ("negative", "positive", "surprise"))
    assert COMPOSITE_MAPPING["casme2"] == {
        "disgust": negative,
        "repression": negative,
        "happiness": positive,
        "surprise": surprise,
    }
    assert {e for e, c in COMPOSITE_MAPPING["samm"].items() if c == negative} == {
        "anger",
        "contempt",
        "disgust",
        "fear",
        "sadness",
    }
    for dataset, mapping in COMPOSITE_MAPPING.items():
        assert set(mapping) <= set(MICRO_DATASETS[dataset].classes)
    assert "others" not in COMPOSITE_MAPPING["casme2"] and "other" not in COMPOSITE_MAPPING["samm"]


def test_composite_leaves_out_the_samples_the_official_list_omits(tmp_path):
    def record(sample_id: str) -> MicroRecord:
        return MicroRecord(
            sample_id=sample_id,
            subject=sample_id.rsplit("/", 1)[0],
            frames=(tmp_path / "1.jpg",),
            frame_numbers=(1,),
            onset=1,
            apex=None,
            offset=None,
            emotion="disgust",
            dataset="casme2",
        )

    assert composite_label(record("sub04/EP12_02f")) == 0
    assert composite_label(record("sub04/EP12_01f")) is None
    assert composite_label(record("casme2/sub04/EP12_01f")) is None  # prefixed by read_composite


def test_composite_and_dispatch_errors(tmp_path):
    with pytest.raises(DatasetError, match="casme2, samm, smic"):
        read_micro("composite", tmp_path)
    with pytest.raises(DatasetError, match="casme2, samm, smic"):
        read_composite({})
    with pytest.raises(DatasetError, match="casme2, samm, smic"):
        read_composite({"casme3a": tmp_path})
    with pytest.raises(DatasetError, match="casme2, casme3a, composite, samm, smic"):
        read_micro("mmew", tmp_path)
