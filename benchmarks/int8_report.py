"""The INT8 report: every precision and backend of one trained model, on the synthetic benchmark.

    python -m benchmarks.int8_report --out runs/int8 [--epochs 40]

Runs the whole chain on this machine - synthetic DFER set, ``stt_tiny`` training, QAT
(OpenVINO and TensorRT grids), calibration sets (training split; runtime-made clips from a
real-face video), every export (FP32 ONNX; OpenVINO FP32/FP16/INT8-PTQ/INT8-QAT and the
accuracy-controlled INT8; TensorRT-ready FP16 and INT8 Q/DQ ONNX via ONNX Runtime), then
evaluates all of them on the same test fold, measures FP32<->INT8 top-1 agreement on
clips of a held-out real-face video, and times them. Writes ``report.json`` and
``report.md`` (the table in docs/benchmarks.md). All accuracy numbers are on SYNTHETIC data.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge_fer.cli.args import Parser
from edge_fer.cli.main import run_tool
from edge_fer.data.spec import DataSpec, is_synthetic

__all__ = ["main"]


@contextmanager
def _timed(label: str) -> Iterator[None]:
    """A step, timed; the libraries' warnings (fp16 rounding of tiny weights ...) are not shown."""
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    print(f"  {label} ({time.perf_counter() - started:.0f} s)", flush=True)


def _run(*args: str) -> None:
    """A ``python -m`` step (data, training) in its own process."""
    with _timed(args[0]):
        result = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(args[:1])} failed ({result.returncode}):\n{result.stderr[-2000:]}")


def _exports(best: Path, qat: dict[str, Path], models: Path, videos: dict[str, Path], data: DataSpec) -> None:
    """Every artifact of the report, into ``models``, through the exporters' Python API."""
    from calibration.sets import calibration_file
    from edge_fer.models.checkpoint import read_checkpoint
    from edge_fer.presets import ModelPreset
    from export.onnx import export_checkpoint_onnx
    from export.openvino import export_openvino
    from export.settings import QuantizationSettings
    from export.trt import export_tensorrt

    video_calib = models / "calib_video.npz"
    with _timed("calibration"):
        preset = ModelPreset.from_dict(read_checkpoint(best)["preset"])
        calibration_file(video_calib, preset, videos=[videos["calib"]], stride=0.4)
    calib = f"dataset=dfew,root={data.root},fold={data.fold},samples=128"
    int8 = dict(precision="int8", evaluation=data, force=True)

    print("exports:")
    with _timed("export.onnx"):
        export_checkpoint_onnx(best, models / "fp32" / "model.onnx", parts="all", evaluation=data, force=True)
    for precision in ("fp32", "fp16"):
        with _timed(f"export.openvino {precision}"):
            export_openvino(best, models / f"ov_{precision}", precision=precision, evaluation=data, force=True)
    with _timed("export.openvino int8 ptq"):
        export_openvino(best, models / "ov_int8_ptq", calibration=calib, **int8)
    with _timed("export.openvino int8 ptq (video calibration)"):
        export_openvino(best, models / "ov_int8_ptq_video", calibration=video_calib, **int8)
    with _timed("export.openvino int8 accuracy-controlled"):
        validation = f"videos={videos['val']},samples=300"
        controlled = QuantizationSettings(method="accuracy-controlled", max_drop=0.01, validation=validation)
        export_openvino(best, models / "ov_int8_ac", calibration=video_calib, quantization=controlled, **int8)
    with _timed("export.openvino int8 qat"):
        export_openvino(qat["openvino"], models / "ov_int8_qat", quantization=QuantizationSettings("qat"), **int8)
    # Without TensorRT these write the engine-ready ONNX (what the report measures) and no engine.
    with _timed("export.trt fp16"):
        export_tensorrt(best, models / "trt_fp16" / "model.engine", precision="fp16", force=True)
    with _timed("export.trt int8 ptq"):
        export_tensorrt(best, models / "trt_int8_ptq" / "model.engine", precision="int8", calibration=calib, force=True)
    with _timed("export.trt int8 qat"):
        export_tensorrt(qat["tensorrt"], models / "trt_int8_qat" / "model.engine", precision="int8", force=True)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m benchmarks.int8_report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--clips", type=int, default=700)
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument(
        "--reuse-exports", action="store_true", help="measure the artifacts already in OUT/models (no re-export)"
    )
    args = parser.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    stt = ["--dataset", "dfew", "--root", str(data), "--fold", str(args.fold)]

    print("synthetic data, training, QAT:")
    if not is_synthetic(data):
        _run("edge_fer", "synth", "dfer", str(data), "--clips", str(args.clips), "--style", "motion")  # its recorded figures
    videos = {}
    for seed, role in ((1, "calib"), (2, "val"), (0, "eval")):
        videos[role] = out / f"faces_{role}.mp4"
        if not videos[role].exists():
            from edge_fer.data.face_video import write_face_video

            write_face_video(videos[role], seconds=60, seed=seed)
    if not (out / "stt" / "metrics.json").exists():
        _run("train.stt", *stt, "--epochs", str(args.epochs), "--out", str(out / "stt"), "--force")
    for target in ("openvino", "tensorrt"):
        if not (out / f"qat_{target}" / "metrics.json").exists():
            _run(
                "train.stt",
                *stt,
                "--epochs",
                "3",
                "--qat",
                "--qat-target",
                target,
                "--from",
                str(out / "stt" / "best.pt"),
                "--out",
                str(out / f"qat_{target}"),
                "--force",
            )
    best, models = out / "stt" / "best.pt", out / "models"
    qat = {target: out / f"qat_{target}" / "best.pt" for target in ("openvino", "tensorrt")}
    if not args.reuse_exports:
        _exports(best, qat, models, videos, DataSpec("dfew", data, fold=args.fold))

    rows = [
        ("FP32 ONNX", "fp32/model.onnx", "onnxruntime"),
        ("OpenVINO FP32 IR", "ov_fp32/model.xml", "openvino"),
        ("OpenVINO FP32 IR, bf16 compute (the CPU plugin's default here)", "ov_fp32/model.xml", "openvino:bf16"),
        ("OpenVINO FP16 IR (fp16 weights, f32 compute)", "ov_fp16/model.xml", "openvino"),
        ("OpenVINO INT8 PTQ (calibrated on training clips)", "ov_int8_ptq/model.xml", "openvino"),
        (
            "OpenVINO INT8 PTQ (calibrated on runtime clips of a real-face video)",
            "ov_int8_ptq_video/model.xml",
            "openvino",
        ),
        (
            "OpenVINO INT8 PTQ, accuracy-controlled (max 1% agreement drop on a 2nd video)",
            "ov_int8_ac/model.xml",
            "openvino",
        ),
        ("OpenVINO INT8 QAT (3 epochs)", "ov_int8_qat/model.xml", "openvino"),
        ("TensorRT-ready FP16 ONNX (run by ONNX Runtime)", "trt_fp16/model.fp16.onnx", "onnxruntime"),
        ("TensorRT-ready INT8 Q/DQ ONNX, PTQ (ONNX Runtime)", "trt_int8_ptq/model.int8.onnx", "onnxruntime"),
        (
            "TensorRT-ready INT8 Q/DQ ONNX, QAT signed grid (ONNX Runtime)",
            "trt_int8_qat/model.int8.onnx",
            "onnxruntime",
        ),
    ]
    from benchmarks.agreement import predictions
    from benchmarks.latency import time_artifact
    from edge_fer.artifacts import read_artifact
    from edge_fer.evaluation import evaluate_artifact
    from edge_fer.preprocessing.clips import to_model_input
    from edge_fer.runtime.clips import clips_from_video
    from edge_fer.runtime.detection import open_face_detector

    print("evaluation, agreement, latency:")
    import numpy as np

    pre = read_artifact(models / "fp32" / "model.onnx").preset.preprocessing
    clips = clips_from_video(videos["eval"], pre, open_face_detector(), stride=0.25)
    real = to_model_input(np.stack(clips), pre)
    reference = predictions(models / "fp32" / "model.onnx", real, backend="onnxruntime").argmax(1)
    results = []
    for label, relative, spec in rows:
        path = models / relative
        backend, _, hint = spec.partition(":")  # "openvino:bf16": a compute precision other than f32
        hint = hint or None
        report = evaluate_artifact(path, dataset="dfew", root=data, fold=args.fold, backend=backend, precision=hint)
        agree = float((predictions(path, real, backend=backend, precision=hint).argmax(1) == reference).mean())
        timing = time_artifact(path, backend=backend, batch=1, iters=50, warmup=10, threads=None, ov_precision=hint)
        results.append(
            {
                "label": label,
                "artifact": relative,
                "backend": backend,
                "precision": report["precision"],
                "uar": report["uar"],
                "war": report["war"],
                "agreement": agree,
                "clips": len(clips),
                "p50_ms": timing["p50_ms"],
                "p90_ms": timing["p90_ms"],
                "size_mb": timing["size_mb"],
            }
        )
        print(f"  {label}: UAR {report['uar']:.4f}, agreement {agree:.2%}, p50 {timing['p50_ms']:.2f} ms", flush=True)
    fp32_uar = results[0]["uar"]
    lines = [
        f"SYNTHETIC DFER benchmark ({args.clips} videos), fold {args.fold} test ({results[0]['clips']} real-face clips "
        "for agreement), stt_tiny; this machine; latency = one clip (16x3x64x64), batch 1, 50 runs after warm-up.",
        "",
        "| artifact | backend | UAR | ΔUAR (points) | agreement with FP32 on real-face clips | p50 ms | p90 ms | MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        delta = 100 * (r["uar"] - fp32_uar)
        lines.append(
            f"| {r['label']} | {r['backend']} | {r['uar']:.4f} | {delta:+.1f} | {r['agreement']:.1%} | "
            f"{r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['size_mb']:.2f} |"
        )
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "report.json").write_text(json.dumps({"fold": args.fold, "clips": len(clips), "rows": results}, indent=2))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    run_tool(main, "python -m benchmarks.int8_report")
