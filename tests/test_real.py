"""Training on the real-data layouts: LOSO with both protocols on a fixture, short smoke runs on
the real sets (skipped where ../shared/real is absent), and the real-data report's arithmetic."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cli
import pytest
from realdata import CKPLUS48, MEGC2019, need
from test_readers_real import MEGC_ROWS, megc_layout

from benchmarks.real_int8 import write_report

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_htnet_megc2019_loso_reports_both_protocols_per_source(tmp_path):
    root = megc_layout(tmp_path / "megc")
    out = tmp_path / "run"
    cli.ran("train.htnet", "--dataset", "megc2019", "--root", str(root), "--loso", "--epochs", "2", "--threads", "1",
         "--out", str(out))  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"] == "loso-honest" and metrics["folds"] == len(MEGC_ROWS)
    assert metrics["samples"] == len(MEGC_ROWS)
    for protocol in ("honest", "official"):
        figures = metrics["protocols"][protocol]
        assert {"uf1", "uar", "casme2", "samm", "smic"} <= set(figures)
        assert sum(figures[s]["samples"] for s in ("casme2", "samm", "smic")) == len(MEGC_ROWS)
    assert metrics["protocols"]["honest"]["uf1"] == metrics["uf1"]
    assert metrics["paper"]["all"] == {"uf1": 0.8603, "uar": 0.8475}
    folds = sorted((out / "folds").iterdir())
    assert len(folds) == len(MEGC_ROWS) and not list((out / "folds").glob("*/best.pt"))  # fold models removed
    for fold in folds:
        result = json.loads((fold / "predictions.json").read_text())
        assert 1 <= result["official_epoch"] <= 2 and len(result["official_predictions"]) == len(result["targets"])
    # the final model evaluates on the same layout
    evaluated = _run(
        "edge_fer", "eval", "--checkpoint", str(out / "best.pt"), "--dataset", "megc2019", "--root", str(root)
    )
    assert json.loads(evaluated.stdout)["samples"] == len(MEGC_ROWS)


def test_real_megc2019_and_ckplus_train_smoke(tmp_path):
    megc, ck = need(MEGC2019), need(CKPLUS48)
    cli.ran("train.htnet", "--dataset", "megc2019", "--root", str(megc), "--epochs", "1", "--threads", "2",
         "--out", str(tmp_path / "htnet"))  # fmt: skip
    metrics = json.loads((tmp_path / "htnet" / "metrics.json").read_text())
    assert metrics["data"] == "real" and metrics["dataset"] == "megc2019"
    cli.ran("train.stt", "--dataset", "ckplus", "--root", str(ck), "--fold", "1", "--epochs", "1", "--threads", "2",
         "--workers", "0", "--out", str(tmp_path / "stt"))  # fmt: skip
    metrics = json.loads((tmp_path / "stt" / "metrics.json").read_text())
    assert (metrics["data"], metrics["dataset"], metrics["protocol"]) == ("real", "ckplus", "subject")
    assert sum(metrics["support"].values()) == metrics["samples"] > 20  # fold 1's held-out sequences
    assert metrics["classes"] == ["anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"]


def test_real_report_pools_folds_and_measures_drops_against_fp32(tmp_path):
    folder = tmp_path / "int8" / "ckplus"
    folder.mkdir(parents=True)
    # two folds, 4 + 2 samples; the INT8 engine gets one of the six wrong that FP32 got right
    # "int8 qat" exists in fold 1 only (a QAT run not finished): never pooled over fewer samples
    control = {"val_samples": 30, "float": 0.8, "int8": 0.8, "reached": True, "metric": "uar"}
    (folder / "fold1.json").write_text(
        json.dumps(
            {
                "targets": [0, 1, 2, 3],
                "predictions": {"fp32 torch": [0, 1, 2, 3], "int8 x": [0, 1, 2, 0], "int8 qat": [0, 1, 2, 3]},
                "accuracy_control": control,
            }
        )
    )
    (folder / "fold2.json").write_text(
        json.dumps(
            {
                "targets": [4, 5],
                "predictions": {"fp32 torch": [4, 4], "int8 x": [4, 4]},
                "accuracy_control": {**control, "val_samples": 34, "int8": 0.7, "reached": False},
            }
        )
    )
    write_report(tmp_path, {"train_s": 60.0, "int8_s": 30.0})
    report = json.loads((tmp_path / "report.json").read_text())
    rows = {r["engine"]: r for r in report["int8"]["ckplus"]["rows"]}
    assert report["int8"]["ckplus"]["samples"] == 6
    assert rows["fp32 torch"]["war"] == pytest.approx(5 / 6) and rows["int8 x"]["war"] == pytest.approx(4 / 6)
    assert rows["int8 x"]["drop_points"]["war"] == pytest.approx(100 / 6)
    assert rows["int8 x"]["top1_agreement_with_fp32"] == pytest.approx(5 / 6)
    assert "int8 qat" not in rows
    markdown = (tmp_path / "report.md").read_text()
    assert "| int8 x | 0.6667 (-16.7)" in markdown
    assert "30-34 samples" in markdown and "reached in 1 of 2 folds" in markdown


@pytest.mark.slow
def test_htnet_qat_fine_tunes_every_loso_fold_model(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_FER_QAT_KERNELS", "torch")  # nothing compiled
    root = megc_layout(tmp_path / "megc")
    common = ["--dataset", "megc2019", "--root", str(root), "--loso", "--epochs", "1", "--threads", "1"]
    missing = subprocess.run(
        [sys.executable, "-m", "train.htnet", *common, "--qat", "--from", str(tmp_path / "none"), "--out",
         str(tmp_path / "x")], capture_output=True, text=True, cwd=ROOT
    )  # fmt: skip
    assert missing.returncode != 0 and "best.pt is absent" in missing.stderr and "Traceback" not in missing.stderr
    cli.ran("train.htnet", *common, "--out", str(tmp_path / "float"))  # fold models not kept
    refused = subprocess.run(
        [sys.executable, "-m", "train.htnet", *common, "--qat", "--from", str(tmp_path / "float"), "--out",
         str(tmp_path / "x")], capture_output=True, text=True, cwd=ROOT
    )  # fmt: skip
    assert refused.returncode != 0 and "--keep-fold-models" in refused.stderr
    cli.ran("train.htnet", *common, "--keep-fold-models", "--out", str(tmp_path / "float"), "--force")
    cli.ran("train.htnet", *common, "--qat", "--from", str(tmp_path / "float"), "--calib-samples", "4",
         "--keep-fold-models", "--out", str(tmp_path / "qat"))  # fmt: skip
    metrics = json.loads((tmp_path / "qat" / "metrics.json").read_text())
    assert metrics["model"].startswith("htnet QAT") and metrics["folds"] == len(MEGC_ROWS)
    from edge_fer.models.checkpoint import read_checkpoint

    for fold in sorted((tmp_path / "qat" / "folds").iterdir()):
        payload = read_checkpoint(fold / "best.pt")
        assert payload["qat"] and payload["qat_from"] == str(tmp_path / "float" / "folds" / fold.name / "best.pt")
