"""Training end to end on small synthetic sets: run files, exact resume, eval, LOSO."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cli
import pytest
import torch

from edge_fer.data.synth import write_dfer, write_micro
from edge_fer.models.checkpoint import load_model, read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def train_stt(*args):
    return subprocess.run(
        [sys.executable, "-m", "train.stt", *args], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=600
    )


@pytest.fixture(scope="module")
def dfer(tmp_path_factory):
    return write_dfer(tmp_path_factory.mktemp("dfer"), clips=35, seed=1, workers=2)


STT_ARGS = ["--dataset", "dfew", "--fold", "2", "--epochs", "3", "--batch-size", "4", "--workers", "0"]
# A fixed thread count: a float sum split over another number of threads rounds otherwise.
EXACT = [*STT_ARGS, "--threads", "2"]


@pytest.fixture(scope="module")
def stt_run(dfer, tmp_path_factory):
    """One finished ``EXACT`` run, read by several tests (each run costs ~10 s); not written to."""
    run = tmp_path_factory.mktemp("stt_run") / "run"
    result = train_stt(*EXACT, "--root", str(dfer), "--out", str(run))
    assert result.returncode == 0, result.stderr
    return run


def test_stt_run_folder(dfer, stt_run):
    run = stt_run
    assert {"best.pt", "last.pt", "metrics.json", "log.jsonl", "confusion.png"} <= {p.name for p in run.iterdir()}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["data"] == "synthetic" and metrics["split"] == "test" and metrics["fold"] == 2
    assert {"uar", "war", "per_class_recall", "confusion_matrix"} <= set(metrics)
    assert sum(map(sum, metrics["confusion_matrix"])) == 7  # fold 2's test videos
    assert len((run / "log.jsonl").read_text().splitlines()) == 3
    model, preset, payload = load_model(run / "best.pt")  # weights_only loading
    assert preset.name == "stt_tiny" and payload["dataset"]["fold"] == 2
    assert model(model.example_input("full", 1)).shape == (1, 7)
    # A second run into the same folder needs --resume or --force (a real process: one line, exit code 1).
    again = train_stt(*EXACT, "--root", str(dfer), "--out", str(run))
    assert again.returncode == 1 and "--resume" in again.stderr and "Traceback" not in again.stderr


def test_killed_run_resumes_to_the_same_result(dfer, stt_run, tmp_path):
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "train.stt", *EXACT, "--root", str(dfer), "--out", str(killed)],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = killed / "log.jsonl"
    deadline = time.time() + 300
    while not (log.exists() and log.read_text().count("\n") >= 1) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # into the second epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "metrics.json").exists(), "the run finished before it could be killed"

    resumed = train_stt(*EXACT, "--root", str(dfer), "--out", str(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    ours = json.loads((killed / "metrics.json").read_text())
    theirs = json.loads((stt_run / "metrics.json").read_text())
    assert ours == theirs
    a, b = read_checkpoint(killed / "best.pt")["state_dict"], read_checkpoint(stt_run / "best.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_eval_cli_reproduces_the_training_metrics(dfer, stt_run, tmp_path):
    run = stt_run
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_fer",
            "eval",
            "--checkpoint",
            str(run / "best.pt"),
            "--dataset",
            "dfew",
            "--root",
            str(dfer),
            "--fold",
            "2",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    metrics = json.loads((run / "metrics.json").read_text())
    assert report["uar"] == metrics["uar"] and report["confusion_matrix"] == metrics["confusion_matrix"]
    assert report["data"] == "synthetic"
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_fer",
            "eval",
            "--checkpoint",
            str(tmp_path / "nope.pt"),
            "--dataset",
            "dfew",
            "--root",
            str(dfer),
            "--fold",
            "2",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
    )
    assert bad.returncode == 1 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr


def test_single_frame_baseline_trains(dfer, tmp_path):
    run = tmp_path / "frame"  # one epoch: what is checked is how its trunk is carried, not how good it is
    cli.ran("train.stt", *STT_ARGS, "--root", str(dfer), "--out", str(run), "--single-frame", "--epochs", "1")
    frame_model, _, payload = load_model(run / "best.pt")
    assert payload["model_kind"] == "frame_baseline"

    # Two-stage training with the frame model's trunk frozen: the STT's trunk comes out exactly
    # as loaded (weights and BatchNorm statistics), while the rest of the model learns.
    stt = tmp_path / "stt"
    frozen = ["--pretrained", str(run / "best.pt"), "--freeze-trunk", "--epochs", "2", "--threads", "1"]
    cli.ran("train.stt", *STT_ARGS, "--root", str(dfer), "--out", str(stt), *frozen)
    model, _, _ = load_model(stt / "best.pt")
    expected = frame_model.trunk.state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in model.backbone.trunk.state_dict().items())
    last = read_checkpoint(stt / "last.pt")
    assert last["optimizer"]["state"]  # something else was trained
    bare = [*STT_ARGS, "--root", str(dfer), "--out", str(tmp_path / "x"), "--freeze-trunk"]
    assert "--pretrained" in cli.refused("train.stt", *bare)

    # The frozen trunk's features computed once per view: with a view for every epoch, the run
    # the uncached one made (same samples in the same order; only the trunk's batches differ).
    cached = tmp_path / "cached"
    result = cli.ran("train.stt", *STT_ARGS, "--root", str(dfer), "--out", str(cached), *frozen, "--trunk-views", "2")
    assert "features computed for 2 view(s)" in result
    weights, reference = read_checkpoint(cached / "last.pt"), read_checkpoint(stt / "last.pt")
    assert weights["trunk_views"] == 2 and reference["trunk_views"] is None
    for key, value in reference["state_dict"].items():
        assert torch.allclose(weights["state_dict"][key], value, atol=1e-4), key
    # One view for two epochs: the second epoch sees the first one's views again, so it learns otherwise.
    once = tmp_path / "once"
    cli.ran("train.stt", *STT_ARGS, "--root", str(dfer), "--out", str(once), *frozen, "--trunk-views", "1")
    head = read_checkpoint(once / "last.pt")["state_dict"]
    assert any(not torch.allclose(head[key], value, atol=1e-4) for key, value in reference["state_dict"].items())
    assert all(torch.equal(head[key], value) for key, value in reference["state_dict"].items() if ".trunk." in key)
    for flags in (["--trunk-views", "1"], [*frozen, "--trunk-views", "1", "--single-frame"]):
        bad = [*STT_ARGS, "--root", str(dfer), "--out", str(tmp_path / "bad"), *flags]
        assert "--trunk-views" in cli.refused("train.stt", *bad)


def test_frame_path_keeps_the_frame_models_reading(dfer, tmp_path):
    """--frame-path: the STT carries the single-frame model's classifier as a fixed reading of
    the mean token. After training, with the transformer's own classifier zeroed, the STT reads
    a clip exactly as the frame model's mean over its frames; the transformer has learnt."""
    frame = tmp_path / "frame"
    cli.ran("train.stt", *STT_ARGS, "--root", str(dfer), "--out", str(frame), "--single-frame", "--epochs", "1")
    carried = ["--pretrained", str(frame / "best.pt"), "--freeze-trunk", "--trunk-views", "1", "--frame-path"]
    stt = tmp_path / "stt"
    cli.ran("train.stt", *STT_ARGS, "--root", str(dfer), "--out", str(stt), *carried, "--epochs", "2", "--threads", "1")
    model, preset, payload = load_model(stt / "best.pt")
    assert preset.arch["frame_path"] is True and payload["frame_path"] == str(frame / "best.pt")
    assert json.loads((stt / "metrics.json").read_text())["frame_path"] == str(frame / "best.pt")
    frame_model, _, _ = load_model(frame / "best.pt")
    clip = model.example_input("full", batch=2)
    with torch.no_grad():
        frames_mean = torch.stack([frame_model(clip[:, t]) for t in range(clip.shape[1])]).mean(0)
        learnt = model(clip)
        model.head.fc.weight.zero_()
        model.head.fc.bias.zero_()
        assert torch.allclose(model(clip), frames_mean, atol=1e-4)
        assert not torch.allclose(learnt, frames_mean, atol=1e-3)
    assert read_checkpoint(stt / "last.pt")["optimizer"]["state"]
    again = [*STT_ARGS, "--root", str(dfer), "--out", str(stt), *carried[:-1], "--epochs", "2", "--resume"]
    # resumed without --frame-path: another model
    assert "resume with the same flags" in cli.refused("train.stt", *again)

    # Refused with one line: no frame model, a clip model as the source, a frame model as the target.
    stt_source = ["--pretrained", str(stt / "best.pt"), "--frame-path"]
    for flags, message in (
        (["--frame-path"], "--pretrained FRAME/best.pt"),
        (stt_source, "needs a --single-frame checkpoint"),
        ([*carried[:2], "--frame-path", "--single-frame"], "without --single-frame"),
    ):
        bad = [*STT_ARGS, "--root", str(dfer), "--out", str(tmp_path / "bad"), *flags]
        assert message in cli.refused("train.stt", *bad)


def test_trunk_feature_cache_refuses_to_outgrow_memory(dfer, monkeypatch):
    """The cache is sized before it is built; past half the free memory the user is told what to change."""
    from edge_fer.data.dfer import read_dfer
    from edge_fer.data.torch_dataset import ClipDataset
    from edge_fer.errors import PresetError
    from edge_fer.models import build_model
    from edge_fer.presets import get_preset
    from train import frozen_trunk

    preset = get_preset("stt_tiny")
    clips = ClipDataset(read_dfer("dfew", dfer, fold=2, split="train")[:3], preset.preprocessing, train=True)
    trunk = build_model(preset).backbone.trunk
    cache = frozen_trunk.TrunkFeatures(clips, trunk, views=2)
    assert len(cache) == 3 and cache[0][0].shape == (16, trunk.out_channels, 4, 4)
    assert trunk.training  # left as it was found
    monkeypatch.setattr(frozen_trunk, "MEMORY_SHARE", 1e-9)
    with pytest.raises(PresetError, match="fewer --trunk-views"):
        frozen_trunk.TrunkFeatures(clips, trunk, views=2)


def test_steps_per_epoch_caps_each_epoch_and_the_schedule(dfer, tmp_path, monkeypatch):
    """--steps-per-epoch: each epoch reads at most N batches of training clips (a fresh subset),
    and the learning-rate schedule ends at 0 after the steps that ran, not those that would have."""
    from edge_fer.data.torch_dataset import ClipDataset
    from train import stt

    reads = []
    read = ClipDataset.__getitem__

    def counted(self, index):
        if self.train:
            reads.append((self.epoch, index))
        return read(self, index)

    monkeypatch.setattr(ClipDataset, "__getitem__", counted)
    run = tmp_path / "run"
    assert stt.main([*STT_ARGS, "--root", str(dfer), "--out", str(run), "--steps-per-epoch", "2"]) == 0
    per_epoch = [[i for e, i in reads if e == epoch] for epoch in range(3)]
    assert [len(indices) for indices in per_epoch] == [8, 8, 8]  # 2 batches of 4, of more than 8 clips
    assert len({tuple(indices) for indices in per_epoch}) == 3  # each epoch its own subset
    last = read_checkpoint(run / "last.pt")
    assert {state["step"].item() for state in last["optimizer"]["state"].values()} == {6.0}
    history = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert history[-1]["lr"] == 0.0 and history[0]["lr"] > 0
    zero = ("--steps-per-epoch", "0")
    bad = [*STT_ARGS, "--root", str(dfer), "--out", str(tmp_path / "bad"), *zero]
    assert "--steps-per-epoch" in cli.refused("train.stt", *bad)


def test_htnet_loso_run(tmp_path):
    root = write_micro(tmp_path / "me", subjects=3, clips_per_subject=6, seed=2, workers=2)
    run = tmp_path / "run"
    cli.ran("train.htnet", "--dataset", "casme2", "--root", str(root), "--loso", "--epochs", "3", "--out", str(run))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["protocol"] == "loso-honest" and metrics["folds"] == 3 and metrics["samples"] == 18
    assert {"uf1", "uar"} <= set(metrics)
    assert sorted(p.name for p in (run / "folds").iterdir()) == ["sub01", "sub02", "sub03"]
    assert not list((run / "folds").rglob("*.pt"))  # fold models are not kept
    model, preset, _ = load_model(run / "best.pt")
    assert preset.classes == ("negative", "positive", "surprise")


@pytest.mark.slow
def test_two_process_ddp_run(dfer, tmp_path):
    """torchrun with two CPU processes (gloo): the same script, one run folder."""
    run = tmp_path / "ddp"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29531",
            "-m",
            "train.stt",
            *STT_ARGS,
            "--root",
            str(dfer),
            "--out",
            str(run),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert {"best.pt", "last.pt", "metrics.json"} <= {p.name for p in run.iterdir()}
    assert len((run / "log.jsonl").read_text().splitlines()) == 3
