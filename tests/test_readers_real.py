"""CK+ and MEGC2019 (HTNet layout) readers: tiny fixtures in each on-disk layout, and the
real sets in ../shared/real where present (skipped with the reason elsewhere)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from realdata import CKPLUS48, MEGC2019, need

from edge_fer.data.ckplus import CKPLUS_CLASSES, read_ckplus, read_ckplus_sequences
from edge_fer.data.dfer import read_dfer
from edge_fer.data.megc2019 import MEGC2019_CSV, MEGC2019_FOLDS, megc2019_features, read_megc2019
from edge_fer.data.splits import loso_folds
from edge_fer.errors import DatasetError


def _image(path: Path, value: int, size: int = 48) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size, size), value, np.uint8))


# --------------------------------------------------------------------------------------
# CK+: original distribution and CK+48
# --------------------------------------------------------------------------------------

# (subject, sequence, CK+ emotion code 1-7, frames); S999/002 has no label file (unlabelled)
SEQUENCES = [(f"S{100 + s:03d}", f"{q:03d}", 1 + (s + q) % 7, 5 + q) for s in range(12) for q in (1, 2)]


def ckplus_original(root: Path) -> Path:
    for subject, sequence, code, frames in SEQUENCES:
        for n in range(1, frames + 1):
            _image(root / "cohn-kanade-images" / subject / sequence / f"{subject}_{sequence}_{n:08d}.png", n * 9)
        label = root / "Emotion" / subject / sequence / f"{subject}_{sequence}_{frames:08d}_emotion.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(f"   {code:.7e}\n")
    for n in range(1, 4):
        _image(root / "cohn-kanade-images" / "S999" / "002" / f"S999_002_{n:08d}.png", n)
    return root


def ckplus48(root: Path) -> Path:
    for subject, sequence, code, frames in SEQUENCES:
        for n in range(frames - 2, frames + 1):
            _image(root / "CK+48" / CKPLUS_CLASSES[code - 1] / f"{subject}_{sequence}_{n:08d}.png", n * 9)
    return root


@pytest.mark.parametrize("layout", [ckplus_original, ckplus48])
def test_ckplus_layouts_read_the_same_sequences(layout, tmp_path):
    records = read_ckplus_sequences(layout(tmp_path))
    assert [(r.subject, r.video_id.split("_")[1], r.label + 1) for r in records] == [s[:3] for s in SEQUENCES]
    expected_frames = [s[3] for s in SEQUENCES] if layout is ckplus_original else [3] * len(SEQUENCES)
    assert [len(r.frames) for r in records] == expected_frames
    for record in records:  # frames in order, neutral -> peak
        numbers = [int(p.stem.split("_")[-1]) for p in record.frames]
        assert numbers == sorted(numbers)


def test_ckplus48_root_may_be_the_ck48_folder_itself(tmp_path):
    assert len(read_ckplus_sequences(ckplus48(tmp_path) / "CK+48")) == len(SEQUENCES)


def test_ckplus_subject_folds_partition_sequences_and_never_split_a_person(tmp_path):
    root = ckplus_original(tmp_path)
    tested = []
    for fold in range(1, 11):
        train = read_dfer("ckplus", root, fold=fold, split="train")
        test = read_dfer("ckplus", root, fold=fold, split="test")
        assert len(train) + len(test) == len(SEQUENCES)
        assert not {r.subject for r in train} & {r.subject for r in test}
        tested += [r.video_id for r in test]
    assert sorted(tested) == sorted(f"{s}_{q}" for s, q, _, _ in SEQUENCES)


def test_ckplus_malformed_label_file_names_the_file(tmp_path):
    root = ckplus_original(tmp_path)
    bad = next((root / "Emotion").glob("*/*/*.txt"))
    bad.write_text("happy\n")
    with pytest.raises(DatasetError, match=str(bad).replace("+", r"\+")):
        read_ckplus_sequences(root)
    bad.write_text("9.0\n")
    with pytest.raises(DatasetError, match="not 1-7"):
        read_ckplus_sequences(root)


def test_ckplus_missing_frames_and_bad_names_are_one_line_errors(tmp_path):
    root = ckplus_original(tmp_path / "a")
    subject, sequence = SEQUENCES[0][:2]
    for frame in (root / "cohn-kanade-images" / subject / sequence).iterdir():
        frame.unlink()
    with pytest.raises(DatasetError, match="holds no images"):
        read_ckplus_sequences(root)
    root = ckplus48(tmp_path / "b")
    _image(root / "CK+48" / "happy" / "frame1.png", 1)
    with pytest.raises(DatasetError, match="frame1.png"):
        read_ckplus_sequences(root)
    with pytest.raises(DatasetError, match="not a CK\\+ folder"):
        read_ckplus_sequences(tmp_path / "c")
    with pytest.raises(DatasetError, match="1..10"):
        read_ckplus(root, fold=11, split="test")


def test_real_ckplus48_counts_and_folds():
    root = need(CKPLUS48)
    records = read_ckplus_sequences(root)
    assert (len(records), sum(len(r.frames) for r in records), len({r.subject for r in records})) == (327, 981, 118)
    counts = Counter(CKPLUS_CLASSES[r.label] for r in records)
    assert counts == dict(anger=45, contempt=18, disgust=59, fear=25, happy=69, sadness=28, surprise=83)
    for fold in (1, 10):
        train = read_ckplus(root, fold=fold, split="train")
        test = read_ckplus(root, fold=fold, split="test")
        assert len(train) + len(test) == 327 and not {r.subject for r in train} & {r.subject for r in test}
        # the repository's split: 99 test frames per fold, 882 for training, people on both sides
        leaky_train = read_ckplus(root, fold=fold, split="train", protocol="leaky")
        leaky_test = read_ckplus(root, fold=fold, split="test", protocol="leaky")
        assert (len(leaky_train), len(leaky_test)) == (882, 99)
        assert {r.subject for r in leaky_train} & {r.subject for r in leaky_test}


# --------------------------------------------------------------------------------------
# MEGC2019 in the HTNet repository's layout
# --------------------------------------------------------------------------------------

MEGC_ROWS = [("casme2", "sub01", "EP02_01f", 1), ("casme2", "sub02", "EP01_11f", 0), ("smic", "s1", "s1_sur_01", 2)]
MEGC_ROWS += [("samm", "006", "006_1_2", 0), ("samm", "007", "007_5_3", 1), ("smic", "s2", "s2_ne_01", 0)]


def megc_layout(root: Path, *, loso_copy: bool = False) -> Path:
    rows = []
    for source, subject, name, label in MEGC_ROWS:
        image = f"{subject}_{name}.jpg"
        rows.append({"dataset": source, "sub": subject, "filename_o": name, "label": label, "imagename": image})
        face = root / "datasets" / "combined_datasets_whole" / image
        face.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(face), np.full((224, 224, 3), 128, np.uint8))
        flow = np.random.default_rng(label).integers(0, 256, (28, 28, 3), dtype=np.uint8)
        folder = (
            root / "datasets" / "three_norm_u_v_os" / subject / "u_test" / str(label)
            if loso_copy
            else root / "datasets" / "STSNet_whole_norm_u_v_os"
        )
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{subject}_{name} .png"), flow)
    with open(root / MEGC2019_CSV, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["dataset", "sub", "filename_o", "label", "imagename"])
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.mark.parametrize("loso_copy", [False, True])
def test_megc2019_reads_the_htnet_layout_with_either_flow_folder(loso_copy, tmp_path):
    records = read_megc2019(megc_layout(tmp_path, loso_copy=loso_copy))
    assert [(r.source, r.subject, r.label) for r in records] == [(s, sub, y) for s, sub, _, y in MEGC_ROWS]
    assert all(r.flow.name.endswith(" .png") and r.flow.is_file() for r in records)


def test_megc2019_features_place_patches_from_landmarks(tmp_path):
    records = read_megc2019(megc_layout(tmp_path))
    official = megc2019_features(records, convention="official", cache_dir=tmp_path / "cache")
    xy = megc2019_features(records, convention="xy", cache_dir=tmp_path / "cache")
    assert official.images.shape == xy.images.shape == (len(records), 28, 28, 3)
    assert not official.face_found.any()  # grey squares: the official fallback landmarks are used
    flow = cv2.imread(str(records[0].flow))[..., ::-1]
    # fallback landmark 0 = (9.5, 11.1) -> centre (9, 11): xy takes rows 4..18, columns 2..16
    assert np.array_equal(xy.images[0][:14, :14], flow[4:18, 2:16])
    assert np.array_equal(official.images[0][:14, :14], flow[2:16, 4:18])  # the transposed crop
    assert list((tmp_path / "cache").glob("megc2019-landmarks-*.npz"))  # detected once, cached


def test_megc2019_malformed_rows_name_file_and_line(tmp_path):
    root = megc_layout(tmp_path)
    table = root / MEGC2019_CSV
    text = table.read_text().splitlines()
    table.write_text("\n".join([text[0], text[1].replace(",1,", ",7,"), *text[2:]]) + "\n")
    with pytest.raises(DatasetError, match=f"{MEGC2019_CSV} line 2: label 7"):
        read_megc2019(root)
    table.write_text("\n".join(text) + "\n")
    next((root / "datasets" / "STSNet_whole_norm_u_v_os").iterdir()).unlink()
    with pytest.raises(DatasetError, match="flow image .* does not exist"):
        read_megc2019(root)
    with pytest.raises(DatasetError, match=f"no {MEGC2019_CSV}"):
        read_megc2019(tmp_path / "elsewhere")


def test_real_megc2019_counts_and_loso_subjects():
    records = read_megc2019(need(MEGC2019))
    assert len(records) == 442 and len({r.subject for r in records}) == 68
    assert Counter(r.label for r in records) == {0: 250, 1: 109, 2: 83}
    assert Counter(r.source for r in records) == {"casme2": 145, "smic": 164, "samm": 133}
    subjects = [r.subject for r in records]
    for fold in loso_folds(subjects):
        assert {subjects[i] for i in fold.test} == {fold.name}
        assert fold.name not in {subjects[i] for i in fold.train}


def _megc_folds(root: Path) -> list[tuple[list, list]]:
    return [
        (read_megc2019(root, fold=k, split="train"), read_megc2019(root, fold=k, split="test"))
        for k in range(1, MEGC2019_FOLDS + 1)
    ]


def _check_subject_folds(every: list, folds: list[tuple[list, list]]) -> None:
    """The test sides partition the samples; no subject is on both sides of a fold."""
    ids = [r.sample_id for r in every]
    assert sorted(r.sample_id for _, test in folds for r in test) == sorted(ids)
    for train, test in folds:
        assert test and sorted(r.sample_id for r in train + test) == sorted(ids)
        assert not {r.subject for r in train} & {r.subject for r in test}
        assert [r.sample_id for r in train] == [i for i in ids if i in {r.sample_id for r in train}]  # CSV order


def test_megc2019_five_subject_folds(tmp_path):
    root = megc_layout(tmp_path)
    folds = _megc_folds(root)
    _check_subject_folds(read_megc2019(root), folds)
    assert folds == _megc_folds(root)  # deterministic
    assert read_megc2019(root, fold=None) == read_megc2019(root)


@pytest.mark.parametrize(
    "fold, split, message",
    [
        (0, "test", "pass fold 1..5, got 0"),
        (6, "train", "pass fold 1..5, got 6"),
        (1, "val", "split must be train or test"),
        (1, None, "split must be train or test"),
        (None, "test", "split 'test' needs a fold"),
    ],
)
def test_megc2019_bad_fold_or_split(tmp_path, fold, split, message):
    with pytest.raises(DatasetError, match=message):
        read_megc2019(megc_layout(tmp_path), fold=fold, split=split)


def test_real_megc2019_five_subject_folds():
    root = need(MEGC2019)
    every = read_megc2019(root)
    folds = _megc_folds(root)
    _check_subject_folds(every, folds)
    assert len(every) == 442 and sum(len(test) for _, test in folds) == 442
    for _, test in folds:  # stratified by label as far as whole subjects allow
        assert 88 <= len(test) <= 89 and Counter(r.label for r in test)[0] == 50
