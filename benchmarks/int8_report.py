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
from pathlib import Path

from edge_fer.cli.args import Parser
from edge_fer.cli.main import run_tool

__all__ = ["main"]


def _run(*args: str) -> None:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)
    if result.returncode not in (0, 3):  # 3: export.trt without TensorRT wrote the engine-ready ONNX
        raise SystemExit(f"{' '.join(args[:1])} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    print(f"  {args[0]} ({time.perf_counter() - started:.0f} s)", flush=True)


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
    data, fold = out / "data", str(args.fold)
    stt = ["--dataset", "dfew", "--root", str(data), "--fold", fold]
    evaluation = ["--eval-dataset", "dfew", "--eval-root", str(data), "--eval-fold", fold]
    calib = f"dataset=dfew,root={data},fold={fold},samples=128"

    print("synthetic data, training, QAT:")
    if not (data / "SYNTHETIC.txt").exists():
        _run("edge_fer", "synth", "dfer", str(data), "--clips", str(args.clips))
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
    best, models = str(out / "stt" / "best.pt"), out / "models"
    if not args.reuse_exports:
        _run(
            "calibration",
            "--checkpoint",
            best,
            "--videos",
            str(videos["calib"]),
            "--stride",
            "0.4",
            "--out",
            str(models / "calib_video.npz"),
        )

        print("exports:")
        _run(
            "export.onnx",
            "--checkpoint",
            best,
            "--out",
            str(models / "fp32" / "model.onnx"),
            "--part",
            "all",
            "--force",
            *evaluation,
        )
        for precision in ("fp32", "fp16"):
            _run(
                "export.openvino",
                "--checkpoint",
                best,
                "--precision",
                precision,
                "--out",
                str(models / f"ov_{precision}"),
                "--force",
                *evaluation,
            )
        _run(
            "export.openvino",
            "--checkpoint",
            best,
            "--precision",
            "int8",
            "--calib",
            calib,
            "--out",
            str(models / "ov_int8_ptq"),
            "--force",
            *evaluation,
        )
        _run(
            "export.openvino",
            "--checkpoint",
            best,
            "--precision",
            "int8",
            "--calib",
            str(models / "calib_video.npz"),
            "--out",
            str(models / "ov_int8_ptq_video"),
            "--force",
            *evaluation,
        )
        _run(
            "export.openvino",
            "--checkpoint",
            best,
            "--precision",
            "int8",
            "--calib",
            str(models / "calib_video.npz"),
            "--max-drop",
            "0.01",
            "--val",
            f"videos={videos['val']},samples=300",
            "--out",
            str(models / "ov_int8_ac"),
            "--force",
            *evaluation,
        )
        _run(
            "export.openvino",
            "--checkpoint",
            str(out / "qat_openvino" / "best.pt"),
            "--precision",
            "int8",
            "--qat",
            "--out",
            str(models / "ov_int8_qat"),
            "--force",
            *evaluation,
        )
        _run(
            "export.trt",
            "--checkpoint",
            best,
            "--precision",
            "fp16",
            "--out",
            str(models / "trt_fp16" / "model.engine"),
            "--force",
        )
        _run(
            "export.trt",
            "--checkpoint",
            best,
            "--precision",
            "int8",
            "--calib",
            calib,
            "--out",
            str(models / "trt_int8_ptq" / "model.engine"),
            "--force",
        )
        _run(
            "export.trt",
            "--checkpoint",
            str(out / "qat_tensorrt" / "best.pt"),
            "--precision",
            "int8",
            "--out",
            str(models / "trt_int8_qat" / "model.engine"),
            "--force",
        )

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
