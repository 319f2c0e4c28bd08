"""Triton: the exported repository as Triton reads it, and the camera against a real tritonserver.

The server is the one in the ``nvidia-pytriton`` wheel, built by ``python -m
benchmarks.triton_server --setup`` (``scripts/install.sh dev`` runs it); where it cannot be
set up or start, the server tests skip with the reason. No mock stands in for Triton.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_fer.data.face_video import write_face_video
from edge_fer.models import build_model
from edge_fer.models.checkpoint import save_checkpoint
from edge_fer.presets import get_preset

ROOT = Path(__file__).resolve().parents[1]
NO_TORCH = "import sys; sys.modules['torch'] = None; "


def run(*args, timeout=600):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def camera(*args):
    return run("-c", NO_TORCH + "from edge_fer.cli.main import main; sys.exit(main(sys.argv[1:]))", "camera", *args)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """An stt_tiny (untrained, seeded) exported to ONNX with its backbone/head pair."""
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    preset = get_preset("stt_tiny")
    save_checkpoint(folder / "stt_tiny.pt", model=build_model(preset), preset=preset, kind="stt")
    result = run("-m", "export.onnx", "--checkpoint", str(folder / "stt_tiny.pt"), "--out", str(folder / "model.onnx"),
                 "--part", "all")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return folder / "model.onnx"


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    from benchmarks.triton_server import ServerUnavailable, TritonServer, server_unavailable

    reason = server_unavailable()
    if reason:
        pytest.skip(f"no local Triton server: {reason}")
    from export.triton import export_triton

    repo = tmp_path_factory.mktemp("triton") / "repo"
    export_triton(model, repo, flavour="python")
    try:
        with TritonServer(repo) as started:
            yield started
    except ServerUnavailable as exc:
        pytest.skip(f"tritonserver cannot start here: {str(exc).splitlines()[0]}")


def test_export_writes_a_repository_that_triton_reads_back(model, tmp_path):
    from export.triton import read_repository

    repo = tmp_path / "repo"
    result = run("-m", "export.triton", "--model", str(model), "--out", str(repo), "--max-batch", "16")
    assert result.returncode == 0, result.stderr[-2000:]
    models = read_repository(repo)
    names = {f"stt_tiny_fp32_onnx_{part}" for part in ("full", "backbone", "head")}
    assert set(models) == names
    backbone = models["stt_tiny_fp32_onnx_backbone"]
    sidecar = json.loads((model.with_name("model.backbone.onnx.json")).read_text())["io"]
    assert backbone["backend"] == "onnxruntime_onnx" and backbone["max_batch_size"] == 16
    assert backbone["dynamic_batching"] and "model.onnx" in backbone["files"]
    assert backbone["inputs"] == {name: shape[1:] for name, shape in sidecar["inputs"].items()}
    assert backbone["outputs"] == {name: shape[1:] for name, shape in sidecar["outputs"].items()}
    # the files Triton serves are the artifact's, byte for byte
    copied = repo / "stt_tiny_fp32_onnx_head" / "1" / "model.onnx"
    assert copied.read_bytes() == model.with_name("model.head.onnx").read_bytes()

    # never replaced without --force; with it, replaced whole
    again = run("-m", "export.triton", "--model", str(model), "--out", str(repo))
    assert again.returncode == 1 and "already exists" in again.stderr and "Traceback" not in again.stderr
    forced = run("-m", "export.triton", "--model", str(model), "--out", str(repo), "--flavour", "python", "--force")
    assert forced.returncode == 0, forced.stderr[-2000:]
    head = read_repository(repo)["stt_tiny_fp32_onnx_head"]
    assert head["backend"] == "python" and {"model.py", "model.head.onnx"} <= set(head["files"])
    assert not list(repo.glob(".*"))  # no staging or old folders left

    # a config Triton's schema rejects is caught when read back
    config = repo / "stt_tiny_fp32_onnx_full" / "config.pbtxt"
    config.write_text(config.read_text().replace("max_batch_size", "max_batch"))
    bad = run("-c", f"from export.triton import read_repository; read_repository({str(repo)!r})")
    assert bad.returncode != 0 and "Triton cannot parse it" in bad.stderr


def test_deepstream_configs_describe_the_exported_backbone(model, tmp_path):
    """Written for DeepStream, not run (no DeepStream here): checked against the artifact."""
    import configparser

    repo, configs = tmp_path / "repo", tmp_path / "deepstream"
    result = run("-m", "export.triton", "--model", str(model), "--out", str(repo), "--deepstream", str(configs))
    assert result.returncode == 0, result.stderr[-2000:]
    parser = configparser.ConfigParser()
    parser.read(configs / "nvinfer_backbone.txt")
    prop = parser["property"]
    pre = get_preset("stt_tiny").preprocessing
    assert Path(prop["onnx-file"]).read_bytes() == model.with_name("model.backbone.onnx").read_bytes()
    assert prop["infer-dims"] == f"3;{pre.input_size[0]};{pre.input_size[1]}"
    offsets = [float(v) for v in prop["offsets"].split(";")]
    np.testing.assert_allclose(offsets, np.array(pre.mean) * pre.value_scale, atol=1e-3)
    scale = float(prop["net-scale-factor"])
    assert abs(scale * pre.value_scale * np.array(pre.std) - 1).max() < 0.02  # per-channel std averaged
    assert prop["output-tensor-meta"] == "1" and prop["process-mode"] == "2"
    server_config = (configs / "nvinferserver_backbone.txt").read_text()
    assert 'model_name: "stt_tiny_fp32_onnx_backbone"' in server_config
    assert (repo / "stt_tiny_fp32_onnx_backbone" / "config.pbtxt").is_file()


def _inference_count_reaches(head, count: int, timeout_s: float = 10.0) -> bool:
    """Triton counts a request after it has sent the response (seen in CI: 0 read back right
    after three answered requests), so the count is read until it arrives or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        stats = head.statistics()["model_stats"][0]  # gRPC's dict leaves out fields still at 0
        if int(stats.get("inference_count", 0)) >= count:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_triton_backend_gives_the_local_backend_outputs(model, server):
    from edge_fer.runtime.streaming import ExpressionModel

    local = ExpressionModel(model, backend="onnxruntime")
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 255, (3, 16, *local.preset.preprocessing.input_size, 3), dtype=np.uint8)
    expected = local.clip_logits(clips)
    for url in (server.http, f"grpc://{server.grpc}"):
        remote = ExpressionModel(model, backend="triton", url=url)
        assert remote.streaming and remote.backend_name == "triton"
        np.testing.assert_allclose(remote.clip_logits(clips), expected, atol=1e-4)
        # Triton's own statistics show it ran the requests
        assert _inference_count_reaches(remote.head, 3)
        remote.close()
    local.close()


def test_camera_through_triton_gives_the_local_labels(model, server, tmp_path):
    video = tmp_path / "faces.mp4"
    write_face_video(video, seconds=8, fps=25)
    common = ["--model", str(model), "--source", str(video), "--stride", "4", "--head", "sync"]
    local = camera(*common, "--backend", "onnxruntime", "--events", str(tmp_path / "local.jsonl"))
    assert local.returncode == 0, local.stderr[-2000:]
    stats = tmp_path / "stats.json"
    remote = camera(*common, "--backend", "triton", "--url", server.http, "--events", str(tmp_path / "triton.jsonl"),
                    "--stats-json", str(stats))  # fmt: skip
    assert remote.returncode == 0, remote.stderr[-2000:]
    assert json.loads(stats.read_text())["model"]["backend"] == "triton"

    def read(name):
        return [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]

    got, want = read("triton.jsonl"), read("local.jsonl")
    assert len(want) >= 10
    assert [(e["frame"], e["track"], e["label"]) for e in got] == [(e["frame"], e["track"], e["label"]) for e in want]
    for a, b in zip(got, want):
        np.testing.assert_allclose(list(a["probs"].values()), list(b["probs"].values()), atol=1e-3)
    # the head in a worker thread (live sources' default) talks to Triton from that thread
    threaded = camera(*common[:-2], "--head", "async", "--backend", "triton", "--url", server.http,
                      "--events", str(tmp_path / "async.jsonl"))  # fmt: skip
    assert threaded.returncode == 0, threaded.stderr[-2000:]
    threaded_events = read("async.jsonl")
    assert len(threaded_events) >= len(want) // 2 and all(e["clip_end"] <= e["frame"] for e in threaded_events)


def test_triton_user_errors_are_one_line(model, tmp_path):
    video = tmp_path / "faces.mp4"
    write_face_video(video, seconds=1, fps=25)
    for args, message in (
        (("--backend", "triton", "--url", "127.0.0.1:1"), "no Triton at http://127.0.0.1:1"),
        (("--backend", "triton"), "needs --url"),
        (("--backend", "triton", "--url", "ftp://x:1"), "use HOST:PORT"),
        (("--url", "127.0.0.1:8000"), "--url is for --backend triton"),
    ):
        result = camera("--model", str(model), "--source", str(video), *args)
        assert result.returncode == 1, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
