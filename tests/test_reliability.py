"""Faults and bad input, with real components: a network stream that drops, full disks, odd
frames, too many faces, corrupt metadata and annotation files (property-based)."""

import json
import shlex
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_fer.artifacts import read_artifact, write_sidecar
from edge_fer.data.dfer import read_annotation_list, read_dfew
from edge_fer.data.face_video import write_face_video
from edge_fer.errors import ArtifactError, DatasetError, SourceError
from edge_fer.models import build_model
from edge_fer.models.checkpoint import save_checkpoint
from edge_fer.presets import get_preset
from edge_fer.runtime.detection import Detections, open_face_detector
from edge_fer.runtime.pipeline import Pipeline, as_bgr8
from edge_fer.runtime.sources import Frame
from edge_fer.runtime.tracker import FaceTracker

ROOT = Path(__file__).resolve().parents[1]
NO_TORCH = "import sys; sys.modules['torch'] = None; "


class MJPEGServer:
    """A video file's frames as an MJPEG stream on 127.0.0.1 - a network camera that can fail."""

    def __init__(self, video: Path, fps: float = 25.0) -> None:
        capture = cv2.VideoCapture(str(video))
        self.frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            self.frames.append(cv2.imencode(".jpg", frame)[1].tobytes())
        self.fps, self.port, self.server = fps, 0, None

    def start(self) -> None:
        frames, fps = self.frames, self.fps
        stop = self.stopped = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                index = 0
                try:
                    while not stop.is_set():
                        jpeg = frames[index % len(frames)]
                        index += 1
                        header = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                        self.wfile.write(header.encode() + jpeg + b"\r\n")
                        time.sleep(1 / fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    preset = get_preset("stt_tiny")
    save_checkpoint(folder / "best.pt", model=build_model(preset), preset=preset, kind="stt")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "export.onnx",
            "--checkpoint",
            str(folder / "best.pt"),
            "--out",
            str(folder / "model.onnx"),
            "--part",
            "all",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return folder / "model.onnx"


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "faces.mp4"
    write_face_video(path, seconds=6, fps=25, seed=5)
    return path


def _camera(*args):
    code = NO_TORCH + "from edge_fer.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, "camera", *args]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_network_stream_that_drops_is_reconnected_then_given_up(model, video, tmp_path):
    server = MJPEGServer(video)
    server.start()
    events, stats = tmp_path / "events.jsonl", tmp_path / "stats.json"
    url = f"http://viewer:s3cret@127.0.0.1:{server.port}/stream.mjpg"
    process = subprocess.Popen(
        _camera(
            "--model",
            str(model),
            "--source",
            url,
            "--reconnect-timeout",
            "4",
            "--stride",
            "2",
            "--events",
            str(events),
            "--stats-json",
            str(stats),
        ),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(_lines(events)) < 5:
            time.sleep(0.1)
        assert len(_lines(events)) >= 5, "no events from the live stream"
        server.stop()  # the camera goes away ...
        time.sleep(1.5)
        before = len(_lines(events))
        server.start()  # ... and comes back on the same address
        deadline = time.time() + 60
        while time.time() < deadline and len(_lines(events)) < before + 5:
            time.sleep(0.1)
        assert len(_lines(events)) >= before + 5, "the event stream did not resume after the reconnect"
        server.stop()  # gone for good: the run ends after --reconnect-timeout
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-2000:]
    summary = json.loads(stats.read_text())
    assert summary["reconnects"] >= 1
    assert "reconnecting" in stderr and "reconnected" in stderr and "not back within 4 s" in stderr
    assert "s3cret" not in stderr and "***@127.0.0.1" in stderr
    times = [e["t"] for e in _lines(events)]
    assert times == sorted(times)


def test_unwritable_events_warn_once_and_keep_classifying(model, video, tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    stats = tmp_path / "stats.json"
    result = subprocess.run(
        _camera(
            "--model",
            str(model),
            "--source",
            str(video),
            "--events",
            "/dev/full",
            "--force",
            "--stats-json",
            str(stats),
        ),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 4, result.stderr[-2000:]  # 4: outputs incomplete
    assert result.stderr.count("warning: output incomplete, continuing") == 1
    assert "No space left on device" in result.stderr
    summary = json.loads(stats.read_text())
    assert summary["frames"] == 150 and summary["events"] > 0  # classified to the end


def _file_size_limit(limit: int):
    """preexec_fn: cap the size of any file the child writes, as a quota would (EFBIG, not a signal)."""

    def apply() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def _check_kept_recording(path: Path, total: int) -> int:
    assert path.exists() and not list(path.parent.glob(".*partial*"))
    capture = cv2.VideoCapture(str(path))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert 0 < frames < total  # what was recorded plays back, to its end
    return frames


def _recording_run(model, video, tmp_path, record: Path, **popen) -> tuple[subprocess.CompletedProcess, dict]:
    events, stats = tmp_path / "events.jsonl", tmp_path / "stats.json"
    args = ["--model", str(model), "--source", str(video), "--loop", "--max-frames", "1200"]
    args += ["--record", str(record), "--events", str(events), "--stats-json", str(stats)]
    result = subprocess.run(_camera(*args), capture_output=True, text=True, cwd=ROOT, timeout=600, **popen)
    assert result.returncode == 4, result.stderr[-2000:]  # 4: outputs incomplete
    assert result.stderr.count("warning: output incomplete, continuing") == 1 and "Traceback" not in result.stderr
    summary = json.loads(stats.read_text())
    assert summary["frames"] == 1200 and _lines(events)[-1]["frame"] > 1100  # classified to the end
    return result, summary


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_recording_that_reaches_a_file_size_limit_stops_and_keeps_a_playable_video(model, video, tmp_path):
    # 1200 frames of this video record to about 3 MB; the limit lets about half of that through.
    limit = 3 * 2**20 + 2**19
    result, _ = _recording_run(model, video, tmp_path, tmp_path / "out.mp4", preexec_fn=_file_size_limit(limit))
    assert "file-size limit" in result.stderr and "recording stopped after" in result.stderr
    _check_kept_recording(tmp_path / "out.mp4", 1200)


def test_recording_onto_a_disk_that_fills_stops_and_keeps_a_playable_video(model, video, tmp_path):
    """A real full disk: a 4 MB tmpfs mounted in a private mount namespace (needs user
    namespaces; skipped where the kernel refuses them)."""
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no user/mount namespaces here to mount a small disk: {probe.stderr.decode().strip()}")
    disk, kept = tmp_path / "disk", tmp_path / "kept.mp4"
    disk.mkdir()
    inner = " ".join(map(shlex.quote, _camera()))  # camera args follow via "$@"
    script = (
        f"mount -t tmpfs -o size=4m tmpfs {shlex.quote(str(disk))} || exit 99; "
        f'{inner} "$@"; code=$?; df -k {shlex.quote(str(disk))} >&2; '
        f"cp {shlex.quote(str(disk / 'out.mp4'))} {shlex.quote(str(kept))}; exit $code"
    )
    events, stats = tmp_path / "events.jsonl", tmp_path / "stats.json"
    args = ["--model", str(model), "--source", str(video), "--loop", "--max-frames", "1200"]
    args += ["--record", str(disk / "out.mp4"), "--events", str(events), "--stats-json", str(stats)]
    command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", *args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    if result.returncode == 99:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {result.stderr.strip()}")
    assert result.returncode == 4, result.stderr[-2000:]
    assert result.stderr.count("warning: output incomplete, continuing") == 1 and "Traceback" not in result.stderr
    assert "disk nearly full" in result.stderr and "recording stopped after" in result.stderr
    assert json.loads(stats.read_text())["frames"] == 1200 and _lines(events)[-1]["frame"] > 1100
    _check_kept_recording(kept, 1200)


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_recording_cut_short_before_it_can_be_finished_is_removed_not_left_broken(tmp_path):
    """When the limit is hit between checks, the MP4 has no index: it must not be renamed into
    place as if it were a video, nor left behind."""
    code = """
import sys, numpy as np
from edge_fer.runtime.sinks import Recorder
recorder = Recorder(sys.argv[1], 25.0)
recorder.CHECK_EVERY = 10**9  # never look: the limit hits mid-write
rng = np.random.default_rng(0)
for _ in range(60):
    recorder.write(rng.integers(0, 255, (360, 640, 3), dtype=np.uint8))
recorder.close()
print(recorder.failed)
"""
    out = tmp_path / "out.mp4"
    result = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        preexec_fn=_file_size_limit(2**20),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "could not be finalised" in result.stdout
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_unwritable_output_paths_are_refused_before_the_run(model, video, tmp_path):
    for target in ("/dev/full/out.mp4", str(tmp_path / "file.txt" / "out.mp4")):
        (tmp_path / "file.txt").write_text("a file, not a folder")
        result = subprocess.run(
            _camera("--model", str(model), "--source", str(video), "--record", target),
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=300,
        )
        assert result.returncode == 1, result.stderr[-2000:]
        assert "cannot write" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def face_frame(video):
    capture = cv2.VideoCapture(str(video))
    ok, frame = capture.read()
    assert ok
    return frame


@pytest.mark.parametrize(
    "kind",
    ["gray", "gray3d", "bgra", "uint16", "float", "odd", "4k", "tiny"],
)
def test_odd_frames_are_handled(face_frame, kind):
    frame = {
        "gray": lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2GRAY),
        "gray3d": lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)[..., None],
        "bgra": lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2BGRA),
        "uint16": lambda f: f.astype(np.uint16) * 257,
        "float": lambda f: np.where(np.random.default_rng(0).random(f.shape) < 0.01, np.nan, f.astype(np.float32)),
        "odd": lambda f: cv2.resize(f, (641, 359)),
        "4k": lambda f: cv2.resize(f, (3840, 2160)),
        "tiny": lambda f: cv2.resize(f, (17, 9)),
    }[kind](face_frame)
    image = as_bgr8(frame)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    pipeline = Pipeline(open_face_detector(), None)
    result = pipeline.process(Frame(0, 0.0, frame, time.perf_counter()))
    assert len(result.faces) == (0 if kind == "tiny" else 1)
    for box in (f["box"] for f in result.faces):
        assert np.all(np.isfinite(box))


def test_empty_or_non_image_frames_are_refused():
    for bad in (np.zeros((0, 0, 3), np.uint8), np.zeros((4, 4, 5), np.uint8), np.zeros(10, np.uint8)):
        with pytest.raises(SourceError):
            as_bgr8(bad)


def test_fifty_faces_are_capped_and_counted():
    boxes = np.array([[x * 60, y * 60, x * 60 + 50, y * 60 + 50] for y in range(5) for x in range(10)], np.float32)
    marks = np.stack(
        [
            boxes[:, :2] + [[10, 15]],
            boxes[:, :2] + [[40, 15]],
            boxes[:, :2] + [[25, 25]],
            boxes[:, :2] + [[15, 38]],
            boxes[:, :2] + [[35, 38]],
        ],
        axis=1,
    )
    detections = Detections(boxes, np.linspace(1, 0.5, 50).astype(np.float32), marks.astype(np.float32))
    tracker = FaceTracker(max_faces=8)
    visible = tracker.update(0, np.zeros((320, 620), np.uint8), detections)
    assert len(visible) == 8 and tracker.capped == 42
    assert sorted(t.score for t in visible)[0] >= sorted(detections.scores)[-8]  # the most confident kept


def test_boxes_at_and_beyond_the_frame_edge_align_without_error(face_frame):
    from edge_fer.preprocessing.align import align_face

    height, width = face_frame.shape[:2]
    for shift in (-200, -60, 0, width - 60, width + 100):
        marks = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], np.float32) + [shift, 0]
        crop = align_face(face_frame, marks, 112)
        assert crop.shape == (112, 112, 3)


# ---------------------------------------------------------------- property-based: readers


def _artifact(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"onnx bytes")
    write_sidecar(
        path,
        preset=get_preset("stt_tiny"),
        model_kind="stt",
        part="full",
        inputs={"clip": [None, 16, 3, 64, 64]},
        outputs={"logits": [None, 7]},
        precision="fp32",
    )
    return path


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edit=st.dictionaries(
        st.sampled_from(["format", "artifact", "model", "io", "precision", "quantization", "source"]),
        json_values,
        min_size=1,
        max_size=3,
    )
)
def test_sidecar_reader_never_crashes_on_wrong_metadata(tmp_path, edit):
    path = _artifact(tmp_path)
    sidecar = path.with_name(path.name + ".json")
    meta = json.loads(sidecar.read_text())
    meta.update(edit)
    sidecar.write_text(json.dumps(meta))
    try:
        read_artifact(path)
    except ArtifactError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=400))
def test_sidecar_reader_never_crashes_on_garbage_bytes(tmp_path, content):
    path = _artifact(tmp_path)
    path.with_name(path.name + ".json").write_bytes(content)
    with pytest.raises(ArtifactError):
        read_artifact(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.text(alphabet=st.sampled_from(list("0123456789,;\t \n\"'abcxyz_-./\\\r")), max_size=300)
    | st.binary(max_size=200).map(lambda b: b.decode("latin-1"))
)
def test_annotation_readers_raise_only_dataset_errors(tmp_path, text):
    root = tmp_path / "dfew"
    split = root / "EmoLabel_DataSplit" / "test(single-labeled)"
    split.mkdir(parents=True, exist_ok=True)
    (root / "Clip" / "jpg_256" / "00001").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "Clip" / "jpg_256" / "00001" / "00001_00001.jpg"), np.zeros((8, 8, 3), np.uint8))
    (split / "set_1.csv").write_text("video_name,label\n" + text, encoding="utf-8", errors="surrogateescape")
    try:
        read_dfew(root, fold=1, split="test")
    except DatasetError as exc:
        assert str(exc)
    listing = tmp_path / "list.txt"
    listing.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        read_annotation_list(listing, root / "Clip" / "jpg_256")
    except DatasetError as exc:
        assert str(exc)


@settings(max_examples=100, deadline=None)
@given(names=st.lists(st.text(min_size=1, max_size=30), min_size=3, max_size=3))
def test_names_from_datasets_cannot_place_cache_files_outside_the_cache(names):
    """Sample and subject names come from annotation files; the feature cache hashes them."""
    import tempfile

    from edge_fer.data.micro_features import MicroFeatureConfig, _cache_path
    from edge_fer.data.records import MicroRecord

    cache = Path(tempfile.gettempdir()) / "edge-fer-cache-root"
    frame = cache.parent / "edge-fer-frame.jpg"
    frame.write_bytes(b"jpg")
    sample, subject, emotion = (f"../../{n}/../{n}" for n in names)
    record = MicroRecord(
        sample_id=sample,
        subject=subject,
        frames=(frame,),
        frame_numbers=(0,),
        onset=0,
        apex=None,
        offset=None,
        emotion=emotion,
        dataset="casme2",
    )
    path = _cache_path(cache, record, MicroFeatureConfig())
    assert path.resolve().is_relative_to(cache.resolve()) and ".." not in path.parts


def test_killed_while_saving_never_leaves_a_broken_checkpoint(tmp_path):
    """SIGKILL a process in the middle of rewriting a checkpoint, many times: the file on disk is
    always a whole checkpoint (the previous or the new one), loadable with weights_only."""
    import signal

    from edge_fer.models.checkpoint import load_model

    path = tmp_path / "best.pt"
    writer = tmp_path / "writer.py"
    writer.write_text(
        "import sys, torch\n"
        "from edge_fer.models import build_model\n"
        "from edge_fer.models.checkpoint import save_checkpoint\n"
        "from edge_fer.presets import get_preset\n"
        "preset = get_preset('stt_base')\n"
        "model = build_model(preset)\n"
        "value = int(sys.argv[2])\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    value += 1\n"
        "    with torch.no_grad():\n"
        "        for p in model.parameters():\n"
        "            p.fill_(value)\n"
        "    save_checkpoint(sys.argv[1], model=model, preset=preset, kind='stt')\n"
    )
    rng = np.random.default_rng(0)
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    for round_ in range(5):
        process = subprocess.Popen(
            [sys.executable, str(writer), str(path), str(round_ * 1000)], stdout=subprocess.PIPE, text=True, env=env
        )
        assert process.stdout.readline().strip() == "ready"
        time.sleep(0.5 + float(rng.uniform(0, 1.5)))  # somewhere inside a (~80 MB) write
        process.send_signal(signal.SIGKILL)
        process.wait()
        if not path.exists():  # killed before the first write finished: nothing, not a partial file
            continue
        model, _, _ = load_model(path)  # weights_only=True inside
        values = {float(p.detach().flatten()[0]) for p in model.parameters()}
        assert len(values) == 1, "parameters from two different saves"
    assert path.exists()
    # temporaries of killed writers are cleared by the next write: at most the last one is left
    assert len(list(tmp_path.glob(".best.pt.*.tmp"))) <= 1


def test_changed_model_needs_trust(model, video, tmp_path):
    """A model file that no longer matches its sidecar (an engine rebuilt by trtexec, say) is
    refused; --trust loads it anyway, for files the user built themselves."""
    import shutil

    folder = tmp_path / "changed"
    folder.mkdir()
    for path in model.parent.glob("model*"):
        shutil.copy(path, folder / path.name)
    with open(folder / "model.onnx", "ab") as handle:
        handle.write(b"\0")  # trailing bytes: still a loadable ONNX, no longer the hashed file
    args = ("--model", str(folder / "model.onnx"), "--source", str(video), "--max-frames", "20")
    refused = subprocess.run(_camera(*args), capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert refused.returncode == 1 and "sha256" in refused.stderr
    trusted = subprocess.run(_camera(*args, "--trust"), capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert trusted.returncode == 0, trusted.stderr[-2000:]


def test_second_signal_exits_at_once(model, video, tmp_path):
    import signal

    process = subprocess.Popen(  # the video replayed until the signals come
        _camera("--model", str(model), "--source", str(video), "--loop", "--events", str(tmp_path / "e.jsonl")),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "e.jsonl").exists():
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)
    assert process.returncode in (0, 128 + signal.SIGINT)  # stopped cleanly, or the 2nd signal won the race
    for line in (tmp_path / "e.jsonl").read_text().splitlines():
        json.loads(line)  # whole lines only, either way


def test_ir_without_or_with_a_changed_bin_is_refused(model, video, tmp_path):
    out = tmp_path / "ir"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "export.openvino",
            "--checkpoint",
            str(model.parent / "best.pt"),
            "--precision",
            "fp32",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    args = ("--model", str(out), "--source", str(video), "--max-frames", "5")
    with open(out / "model.bin", "r+b") as handle:
        handle.truncate(100)
    truncated = subprocess.run(_camera(*args), capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert truncated.returncode == 1 and "sha256" in truncated.stderr
    (out / "model.bin").unlink()
    missing = subprocess.run(_camera(*args), capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert missing.returncode == 1 and "model.bin is missing" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
