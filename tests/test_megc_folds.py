"""MEGC2019's 5 folds by subject end to end on the fixture: ``train.htnet --fold`` trains on
a fold's training subjects and scores its test subjects, ``edge-fer eval --fold`` scores the
same samples, and INT8 calibration reads the fold's training subjects only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_readers_real import megc_layout

from edge_fer.data.megc2019 import read_megc2019
from edge_fer.errors import DatasetError
from edge_fer.presets import get_preset

ROOT = Path(__file__).resolve().parents[1]


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, timeout=600)


def _ok(*args: str) -> subprocess.CompletedProcess:
    result = _python(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def fold_run(tmp_path_factory) -> tuple[Path, Path]:
    """(fixture root, a train.htnet --fold 1 run folder on it)."""
    base = tmp_path_factory.mktemp("megc-folds")
    root, out = megc_layout(base / "megc"), base / "run"
    _ok("train.htnet", "--dataset", "megc2019", "--root", str(root), "--fold", "1", "--epochs", "1",
        "--threads", "1", "--out", str(out))  # fmt: skip
    return root, out


def test_train_fold_scores_the_held_out_subjects(fold_run):
    root, out = fold_run
    test, train = read_megc2019(root, fold=1, split="test"), read_megc2019(root, fold=1, split="train")
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["protocol"], metrics["split"], metrics["fold"]) == ("subject-5fold", "test", 1)
    assert metrics["samples"] == len(test) and metrics["train_samples"] == len(train)
    assert metrics["test_subjects"] == sorted({r.subject for r in test})
    assert not set(metrics["test_subjects"]) & set(metrics["train_subjects"])
    assert {"uf1", "uar", "war", "confusion_matrix"} <= set(metrics)
    assert sum(v["samples"] for k, v in metrics["sources"].items() if isinstance(v, dict)) == len(test)
    from edge_fer.models.checkpoint import read_checkpoint

    assert read_checkpoint(out / "best.pt")["dataset"]["fold"] == 1
    # edge-fer eval --fold 1 scores the same test samples, with the same result
    command = ["edge_fer", "eval", "--checkpoint", str(out / "best.pt"), "--dataset", "megc2019", "--root", str(root)]
    evaluated = json.loads(_ok(*command, "--fold", "1").stdout)
    assert (evaluated["fold"], evaluated["split"], evaluated["samples"]) == (1, "test", len(test))
    assert evaluated["subjects"] == sorted({r.subject for r in test})
    assert evaluated["confusion_matrix"] == metrics["confusion_matrix"]


def test_qat_fold_needs_a_run_of_the_same_fold(fold_run, tmp_path):
    root, out = fold_run
    refused = _python("train.htnet", "--dataset", "megc2019", "--root", str(root), "--fold", "2", "--qat",
                      "--from", str(out), "--out", str(tmp_path / "qat"))  # fmt: skip
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "trained on fold 1" in refused.stderr and "--fold 2" in refused.stderr


@pytest.mark.parametrize(
    "dataset, extra, message",
    [
        ("megc2019", ["--loso"], "--fold and --loso are two protocols"),
        ("megc2019", ["--fold", "6"], "--fold must be 1..5, got 6"),
        ("casme2", [], "--fold is for --dataset megc2019"),
    ],
)
def test_train_fold_usage_errors(dataset, extra, message, tmp_path, capsys):
    from train.htnet import parse_args

    with pytest.raises(SystemExit) as exited:
        parse_args(["--dataset", dataset, "--root", str(tmp_path), "--out", str(tmp_path / "o"), "--fold", "1", *extra])
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_calibration_reads_the_fold_training_subjects(tmp_path):
    from calibration.sets import build_from_dataset
    from export.common import resolve_calibration

    root = megc_layout(tmp_path / "megc")
    preset = get_preset("htnet_light")
    train = read_megc2019(root, fold=1, split="train")
    calib = build_from_dataset(preset, dataset="megc2019", root=root, fold=1, samples=64, cache=tmp_path / "cache")
    assert calib.images.shape == (len(train), 28, 28, 3) and calib.images.dtype == "uint8"
    assert sorted(calib.labels.tolist()) == sorted(r.label for r in train)
    assert calib.meta["source"]["fold"] == 1 and calib.meta["source"]["dataset"] == "megc2019"
    every = build_from_dataset(preset, dataset="megc2019", root=root, samples=2, cache=tmp_path / "cache")
    assert len(every) == 2  # no fold: every sample is a candidate, stratified down to `samples`
    spec = f"dataset=megc2019,root={root},fold=1,samples=3"
    assert len(resolve_calibration(spec, preset, cache_dir=tmp_path)) == 3
    with pytest.raises(DatasetError, match="megc2019"):  # the valid datasets are listed
        build_from_dataset(preset, dataset="dfew", root=root)
    with pytest.raises(DatasetError, match="pass fold 1..5"):
        build_from_dataset(preset, dataset="megc2019", root=root, fold=7)


def test_gpu_script_shards_loso_folds_then_pools_them(tmp_path):
    """scripts/gpu_htnet_official.sh on the CPU (its flags overridden for a dry run): two
    shards train disjoint folds side by side in one folder, the pooling pass trains none
    again and reports every subject; each fold model records its validation split, which
    benchmarks.real_int8 then reproduces."""
    root, out = megc_layout(tmp_path / "megc"), tmp_path / "run"
    extra = ["--preset", "htnet_light", "--epochs", "1", "--batch-size", "8", "--device", "cpu"]
    extra += ["--val-fraction", "0.3", "--keep-fold-models"]
    result = subprocess.run(
        ["bash", "scripts/gpu_htnet_official.sh", str(root), str(out), "2", *extra],
        capture_output=True, text=True, cwd=ROOT, timeout=600, env={**os.environ, "PYTHON": sys.executable},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-2000:]
    records = read_megc2019(root)
    subjects = sorted({r.subject for r in records})
    logs = [(out / f"shard{k}.log").read_text() for k in (1, 2)]
    assert all("folds done" in log for log in logs)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["folds"] == len(subjects) and metrics["samples"] == len(records)
    assert metrics["protocol"] == "loso-honest" and set(metrics["protocols"]) == {"honest", "official"}
    folds = sorted((out / "folds").iterdir())
    assert len(folds) == len(subjects) and not list((out / "folds").glob("*/last.pt"))

    import numpy as np

    from benchmarks.real_int8 import _training_split
    from edge_fer.data.splits import loso_folds, train_val_split
    from edge_fer.models.checkpoint import read_checkpoint

    fold = loso_folds([r.subject for r in records])[0]
    checkpoint = out / "folds" / fold.name / "best.pt"
    assert read_checkpoint(checkpoint)["validation"] == {"fraction": 0.3, "seed": 0, "groups": "subject"}
    labels = [records[i].label for i in fold.train]
    groups = [records[i].subject for i in fold.train]
    recorded = _training_split(checkpoint, labels, groups)
    expected = train_val_split(labels, val_fraction=0.3, seed=0, groups=groups)
    assert all(np.array_equal(a, b) for a, b in zip(recorded, expected))


def test_shard_usage_errors(tmp_path, capsys):
    from train import htnet

    base = ["--dataset", "megc2019", "--root", str(tmp_path), "--out", str(tmp_path / "o")]
    for extra, message in (
        (["--shard", "1/2"], "add --loso"),
        (["--loso", "--shard", "3/2"], "1 <= K <= N"),
        (["--loso", "--shard", "1/2", "--force"], "empty --out first"),
        (["--loso", "--checkpoint-every", "-1"], "0 or more"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            htnet.parse_args(base + extra)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
