"""edge-fer bench: every output, honest rows, skipped backends, Pareto marks, compare."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_fer.artifacts import write_sidecar
from edge_fer.bench import pareto_front
from edge_fer.presets import get_preset

ROOT = Path(__file__).resolve().parents[1]


def run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=900)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, dfer_data, trained_stt, openvino_export):
    """The session's trained stt_tiny (tests/conftest.py): its checkpoint, FP32 ONNX, and a copy
    of its OpenVINO INT8 export; and an engine whose backend is absent."""
    folder = tmp_path_factory.mktemp("bench")
    data = dfer_data
    preset = get_preset("stt_tiny")
    checkpoint = folder / "run" / "best.pt"
    checkpoint.parent.mkdir()
    shutil.copyfile(trained_stt, checkpoint)
    models = folder / "models"
    result = run("-m", "export.onnx", "--checkpoint", str(checkpoint), "--out", str(models / "fp32" / "model.onnx"))
    assert result.returncode == 0, result.stderr[-2000:]
    shutil.copytree(openvino_export("int8"), models / "ov_int8")
    # An engine whose backend is not installed here: its row must be skipped, with the reason.
    engine = models / "trt" / "model.engine"
    engine.parent.mkdir()
    engine.write_bytes(b"not a real engine: TensorRT is absent here and the row is skipped before loading")
    write_sidecar(
        engine,
        preset=preset,
        model_kind="stt",
        part="full",
        inputs={"clip": [None, 16, 3, 64, 64]},
        outputs={"logits": [None, 7]},
        precision="int8",
    )
    return folder, data, models


def test_bench_writes_every_output_with_honest_rows(setup):
    folder, data, models = setup
    out = folder / "out"
    result = run(
        "-m",
        "edge_fer",
        "bench",
        "--run",
        str(models),
        "--artifacts",
        str(folder / "run" / "best.pt"),
        "--eval-dataset",
        "dfew",
        "--root",
        str(data),
        "--fold",
        "1",
        "--batch",
        "1,2",
        "--min-iters",
        "5",
        "--min-time",
        "0.2",
        "--out",
        str(out),
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["schema"] == "edge-fer-bench/1"
    assert results["settings"]["eval_data"] == "synthetic" and results["settings"]["min_iters"] == 5
    assert results["environment"]["cores"] >= 1 and "openvino" in results["environment"]["tools"]
    rows = results["rows"]
    measured = [r for r in rows if not r["config"]["skip"]]
    # fp32 ONNX on OpenVINO and ORT, INT8 IR on OpenVINO, the torch checkpoint; each at batch 1 and 2
    assert len(measured) == 8
    for row in measured:
        assert row["iters"] >= 5 and row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert 0 <= row["metrics"]["uar"] <= 1 and row["agreement"] is not None
        assert row["size_mb"] > 0 and row["peak_rss_mb"] > 0 and row["load_s"] > 0
    reference = results["settings"]["reference"]
    assert reference["backend"] == "torch"  # the checkpoint is the FP32 reference
    fp32_onnx = [r for r in measured if r["label"].startswith("stt_tiny fp32 (fp32/") and r["config"]["batch"] == 1]
    assert all(r["agreement"] > 0.99 for r in fp32_onnx)  # the same FP32 function
    stream = [r for r in measured if r["config"]["backend"] != "torch" and r["config"]["batch"] == 1]
    assert any(r["stream_frame_ms"] for r in stream if "ov_int8" in r["label"])
    skipped = [r for r in rows if r["config"]["skip"]]
    assert [r["config"]["backend"] for r in skipped] == ["tensorrt"]
    assert "not installed" in skipped[0]["config"]["skip"]
    assert any(r["pareto"] for r in measured)
    table = (out / "results.md").read_text()
    assert "SYNTHETIC" in table and "★" in table and "tensorrt is not installed" in table
    latencies = [
        float(line.split("|")[7]) for line in table.splitlines() if line.startswith("| ") and "stt_tiny" in line
    ]
    assert latencies == sorted(latencies)  # sorted by p50
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((out / "results.csv").read_text().splitlines()) == len(rows) + 1

    # compare: identical runs have no regressions; a doubled p50 is one
    same = run("-m", "edge_fer", "bench", "compare", str(out), str(out / "results.json"))
    assert same.returncode == 0 and "no regressions" in same.stdout
    slower = json.loads((out / "results.json").read_text())
    first = slower["rows"][0]
    # Beyond the row's own noise (its p90/p50 spread, large on a busy machine) by far.
    first["p50_ms"] = max(first["p50_ms"] * 10, first["p90_ms"] * 3) if first["p50_ms"] else None
    (folder / "slower.json").write_text(json.dumps(slower))
    worse = run("-m", "edge_fer", "bench", "compare", str(out / "results.json"), str(folder / "slower.json"))
    assert worse.returncode == 1 and "slower:" in worse.stdout and "1 regression" in worse.stdout

    # refuses to overwrite; bad input is one line
    again = run("-m", "edge_fer", "bench", "--artifacts", str(models / "fp32" / "model.onnx"), "--out", str(out))
    assert again.returncode == 1 and "--force" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    missing = run("-m", "benchmarks", "--artifacts", str(folder / "nope.onnx"), "--out", str(folder / "x"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_pareto_front():
    # (latency, accuracy): faster-and-as-good dominates; equal points both stay
    points = [(1.0, 0.90), (2.0, 0.95), (3.0, 0.94), (1.5, 0.90), (4.0, 0.99), (2.0, 0.95)]
    assert pareto_front(points) == [True, True, False, False, True, True]


def test_pareto_front_treats_float_noise_as_a_tie():
    # the demo's case: the same 140 clips classified alike, UARs one float ulp apart
    qat_openvino, fp32_ort = (5.46, 0.942857142857143), (5.26, 0.9428571428571428)
    assert qat_openvino[1] > fp32_ort[1]  # the float comparison alone would keep both
    assert pareto_front([qat_openvino, fp32_ort]) == [False, True]
    # a real difference (one clip of 140 in one class of 7) still counts
    assert pareto_front([(5.46, 0.9428571 + 1 / 980), fp32_ort]) == [True, True]
