"""DFER readers on tiny fixtures built in the real on-disk layouts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_fer.data.dfer import (
    DFER_DATASETS,
    MAFW_CLASSES,
    read_afew,
    read_annotation_list,
    read_dfer,
    read_dfew,
    read_ferv39k,
    read_mafw,
)
from edge_fer.errors import DatasetError
from edge_fer.presets import DFER_CLASSES


def write_frames(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        cv2.imwrite(str(folder / name), np.full((8, 8, 3), i * 10, dtype=np.uint8))


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------
# DFEW
# --------------------------------------------------------------------------------------


def dfew_layout_a(root: Path, rows: str = "video_name,label\n1,1\n12,7\n") -> Path:
    csv_path = write_text(root / "EmoLabel_DataSplit" / "train(single-labeled)" / "set_2.csv", rows)
    for video in ("00001", "00012"):
        write_frames(root / "Clip" / "jpg_256" / video, [f"{n}.jpg" for n in (1, 2, 10)])
    return csv_path


def dfew_layout_b(root: Path) -> Path:
    csv_path = write_text(root / "label" / "single_testset_3.csv", "video_name,label\n7,3\n")
    write_frames(root / "data" / "00007", [f"00007_{n:05d}.jpg" for n in (1, 2, 3)])
    return csv_path


def test_dfew_layout_a_labels_ids_and_frame_order(tmp_path):
    dfew_layout_a(tmp_path)
    records = read_dfew(tmp_path, fold=2, split="train")
    assert [(r.video_id, r.label) for r in records] == [("00001", 0), ("00012", 6)]
    assert [DFER_CLASSES[r.label] for r in records] == ["happy", "fear"]
    assert [p.name for p in records[0].frames] == ["1.jpg", "2.jpg", "10.jpg"]
    assert records[0].frames[0].parent == tmp_path / "Clip" / "jpg_256" / "00001"


def test_dfew_layout_b(tmp_path):
    dfew_layout_b(tmp_path)
    (record,) = read_dfew(tmp_path, fold=3, split="test")
    assert (record.video_id, record.label) == ("00007", 2)
    assert [p.name for p in record.frames] == ["00007_00001.jpg", "00007_00002.jpg", "00007_00003.jpg"]


def test_dfew_both_or_neither_layout_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="neither.*EmoLabel_DataSplit.*single_trainset_1"):
        read_dfew(tmp_path, fold=1, split="train")
    dfew_layout_a(tmp_path)
    dfew_layout_b(tmp_path)
    with pytest.raises(DatasetError, match="both"):
        read_dfew(tmp_path, fold=2, split="train")


@pytest.mark.parametrize("label", ["0", "8", "x", ""])
def test_dfew_label_outside_1_to_7_names_file_and_line(tmp_path, label):
    csv_path = dfew_layout_a(tmp_path, f"video_name,label\n1,1\n12,{label}\n")
    with pytest.raises(DatasetError, match="label must be 1-7") as info:
        read_dfew(tmp_path, fold=2, split="train")
    assert f"{csv_path} line 3" in str(info.value)


def test_dfew_missing_and_empty_frame_folders(tmp_path):
    csv_path = dfew_layout_a(tmp_path, "video_name,label\n1,1\n5,2\n")
    with pytest.raises(DatasetError, match="does not exist") as info:
        read_dfew(tmp_path, fold=2, split="train")
    assert str(tmp_path / "Clip" / "jpg_256" / "00005") in str(info.value)
    assert f"{csv_path} line 3" in str(info.value)
    (tmp_path / "Clip" / "jpg_256" / "00005").mkdir()
    with pytest.raises(DatasetError, match="holds no images"):
        read_dfew(tmp_path, fold=2, split="train")


def test_dfew_missing_column_fold_and_split(tmp_path):
    csv_path = dfew_layout_a(tmp_path, "name,emotion\n1,1\n")
    with pytest.raises(DatasetError, match="missing column.*video_name") as info:
        read_dfew(tmp_path, fold=2, split="train")
    assert str(csv_path) in str(info.value)
    with pytest.raises(DatasetError, match="fold"):
        read_dfew(tmp_path, fold=6, split="train")
    with pytest.raises(DatasetError, match="split"):
        read_dfew(tmp_path, fold=1, split="val")
    with pytest.raises(DatasetError, match="set_1.csv"):
        read_dfew(tmp_path, fold=1, split="train")  # layout A found, but not this fold's file


# --------------------------------------------------------------------------------------
# Former-DFER annotation lists
# --------------------------------------------------------------------------------------


def test_annotation_list_relative_and_absolute_paths(tmp_path):
    write_frames(tmp_path / "data" / "DFEW_Face" / "02522", ["1.jpg", "2.jpg"])
    absolute = tmp_path / "elsewhere" / "clip 7"  # a space in the folder name
    write_frames(absolute, ["a.png"])
    listing = write_text(tmp_path / "set_1_train.txt", f"DFEW_Face/02522 66 5\n\n{absolute} 1 0\n")
    records = read_annotation_list(listing, tmp_path / "data")
    assert [(r.video_id, r.label, len(r.frames)) for r in records] == [("DFEW_Face/02522", 5, 2), (str(absolute), 0, 1)]


def test_annotation_list_malformed_line_and_label_range(tmp_path):
    write_frames(tmp_path / "a", ["1.jpg"])
    listing = write_text(tmp_path / "list.txt", "a 3 1\na three 1\n")
    with pytest.raises(DatasetError, match="line 2") as info:
        read_annotation_list(listing, tmp_path)
    assert str(listing) in str(info.value)
    write_text(listing, "a 3 7\n")
    with pytest.raises(DatasetError, match=r"line 1: label must be 0\.\.6"):
        read_annotation_list(listing, tmp_path, num_classes=7)
    with pytest.raises(DatasetError, match="does not exist"):
        read_annotation_list(tmp_path / "nope.txt", tmp_path)


# --------------------------------------------------------------------------------------
# AFEW
# --------------------------------------------------------------------------------------


def test_afew_case_variants_and_emotion_names(tmp_path):
    base = tmp_path / "AFEW_Face"
    write_frames(base / "Train" / "Angry" / "000046280", ["1.jpg", "2.jpg"])
    write_frames(base / "Train" / "Happy" / "000147120", ["1.jpg"])
    write_frames(base / "validation" / "Sadness" / "1_1_001", ["1.jpg"])
    write_frames(base / "validation" / "Happiness" / "1_0_002", ["1.jpg"])
    train = read_afew(tmp_path, split="train")
    assert [(r.video_id, DFER_CLASSES[r.label]) for r in train] == [("000147120", "happy"), ("000046280", "angry")]
    val = read_afew(base, split="val")
    assert [(r.video_id, DFER_CLASSES[r.label]) for r in val] == [("1_0_002", "happy"), ("1_1_001", "sad")]
    assert read_dfer("afew", tmp_path, fold=None, split="test") == val


def test_afew_unknown_emotion_and_empty_clip(tmp_path):
    base = tmp_path / "AFEW_Face"
    write_frames(base / "val" / "Contempt" / "c1", ["1.jpg"])
    with pytest.raises(DatasetError, match="unknown emotion folder") as info:
        read_afew(tmp_path, split="val")
    assert str(base / "val" / "Contempt") in str(info.value)
    (base / "train" / "Fear" / "empty").mkdir(parents=True)
    with pytest.raises(DatasetError, match="holds no images") as info:
        read_afew(tmp_path, split="train")
    assert "empty" in str(info.value)


# --------------------------------------------------------------------------------------
# FERV39k
# --------------------------------------------------------------------------------------


def ferv39k(root: Path, lines: str) -> Path:
    setup = write_text(root / "4_setups" / "All_scenes" / "test_All.csv", lines)
    write_frames(root / "2_ClipsforFaceCrop" / "Action" / "Sad" / "0010", ["0.jpg", "1.jpg"])
    write_frames(root / "2_ClipsforFaceCrop" / "Argue" / "Fear" / "0001", ["0.jpg"])
    return setup


def test_ferv39k_reads_rel_paths_and_label_names(tmp_path):
    ferv39k(tmp_path, "Action/Sad/0010 Sad\nArgue/Fear/0001 Fear\n")
    records = read_ferv39k(tmp_path, split="test")
    assert [(r.video_id, DFER_CLASSES[r.label], len(r.frames)) for r in records] == [
        ("Action/Sad/0010", "sad", 2),
        ("Argue/Fear/0001", "fear", 1),
    ]
    assert read_dfer("ferv39k", tmp_path, fold=1, split="test") == records


def test_ferv39k_bad_label_and_missing_clip(tmp_path):
    setup = ferv39k(tmp_path, "Action/Sad/0010 Sad\nArgue/Fear/0001 Contempt\n")
    with pytest.raises(DatasetError, match="line 2") as info:
        read_ferv39k(tmp_path, split="test")
    assert str(setup) in str(info.value)
    ferv39k(tmp_path, "Action/Sad/0099 Sad\n")
    with pytest.raises(DatasetError, match="0099.*does not exist"):
        read_ferv39k(tmp_path, split="test")


# --------------------------------------------------------------------------------------
# MAFW
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("split_dir", ["split", "Train & Test Set"])
def test_mafw_reads_both_split_folder_names(tmp_path, split_dir):
    write_text(
        tmp_path / split_dir / "single" / "no_caption" / "set_4" / "train.txt",
        "00025.mp4 anger\n01234.mp4 disappointment\n",
    )
    write_frames(tmp_path / "data" / "frames" / "00025", ["00025_1.png", "00025_2.png"])
    write_frames(tmp_path / "data" / "frames" / "01234", ["01234_1.png"])
    records = read_mafw(tmp_path, fold=4, split="train")
    assert [(r.video_id, MAFW_CLASSES[r.label]) for r in records] == [("00025", "anger"), ("01234", "disappointment")]
    assert DFER_DATASETS["mafw"].num_classes == 11


def test_mafw_unknown_emotion_names_file_and_line(tmp_path):
    path = write_text(tmp_path / "split" / "single" / "no_caption" / "set_1" / "test.txt", "00025.mp4 joy\n")
    (tmp_path / "data" / "frames").mkdir(parents=True)
    with pytest.raises(DatasetError, match="line 1") as info:
        read_mafw(tmp_path, fold=1, split="test")
    assert str(path) in str(info.value)
    with pytest.raises(DatasetError, match="set_2"):
        read_mafw(tmp_path, fold=2, split="test")


# --------------------------------------------------------------------------------------
# Dispatcher
# --------------------------------------------------------------------------------------


def test_read_dfer_dispatch_errors(tmp_path):
    with pytest.raises(DatasetError, match="afew, ckplus, dfew, ferv39k, mafw"):
        read_dfer("kinetics", tmp_path, fold=None, split="train")
    with pytest.raises(DatasetError, match="one fixed train/test split"):
        read_dfer("afew", tmp_path, fold=2, split="train")
    with pytest.raises(DatasetError, match="5-fold"):
        read_dfer("dfew", tmp_path, fold=None, split="train")
    dfew_layout_b(tmp_path)
    assert read_dfer("dfew", tmp_path, fold=3, split="test")[0].video_id == "00007"
    assert DFER_DATASETS["dfew"].classes == DFER_CLASSES
