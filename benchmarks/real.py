"""Real-data tables: both models trained and measured on real faces and real facial motion,
FP32 -> INT8, on this machine.

    python -m benchmarks.real --out runs/real [--root ../shared/real] [--jobs 2]

Data (read in place from ``--root``, never copied; see its README.md): the HTNet paper's own
MEGC2019 inputs (442 micro-expressions, 68 subjects) and CK+48 (327 posed sequences, 118
people). Weights trained here stay in ``--out``: they are never shipped.

1. MEGC2019: ``train.htnet`` leave-one-subject-out, ``htnet_light``; both protocols (honest
   selection, and the official script's best-epoch-on-the-test-subject).
2. CK+: ``train.stt`` 10 folds by subject: STT, the single-frame baseline, and STT
   quantization-aware fine-tuning (OpenVINO INT8 grid) from each fold's model; the
   single-frame baseline on the CK+48 repository's leaky frame split, for its 94.04 %.
3. INT8 per fold, pooled over folds: OpenVINO post-training INT8 calibrated on the fold's
   training data, the TensorRT-ready signed Q/DQ ONNX run by ONNX Runtime, and (STT) the QAT
   model in OpenVINO - each against the FP32 model of the same fold.
4. ``report.json`` and ``report.md`` (the README's real-data tables), with wall times.

Every stage is skipped when its result exists, so an interrupted run continues.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edge_fer.cli.args import Parser
from edge_fer.cli.main import run_tool
from edge_fer.errors import DatasetError

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = Path(os.environ.get("EDGE_FER_REAL_DATA") or REPO.parent / "shared" / "real")
CKPLUS_FOLDS = range(1, 11)


def _training_jobs(args) -> list[list[list[str]]]:
    """Queues of commands; queues run side by side (``--jobs``), commands in a queue in order."""
    out, threads = args.out, ["--threads", str(args.threads)]
    megc = [
        "train.htnet",
        "--dataset",
        "megc2019",
        "--root",
        str(args.root / "htnet-megc2019"),
        "--loso",
        "--preset",
        "htnet_light",
        "--epochs",
        str(args.htnet_epochs),
        "--keep-fold-models",
        "--out",
        str(out / "megc2019" / "htnet_light"),
        *threads,
    ]
    ck = ["--dataset", "ckplus", "--root", str(args.root / "ckplus48"), *threads]

    def fold_run(fold: int, name: str, *flags: str) -> list[str]:
        return ["train.stt", *ck, "--fold", str(fold), *flags, "--out", str(out / "ckplus" / name / f"fold{fold}")]

    frame = ["--single-frame", "--epochs", str(args.frame_epochs), "--lr", "2e-3"]
    stt = [fold_run(k, "stt", "--epochs", str(args.stt_epochs), "--lr", "2e-3") for k in CKPLUS_FOLDS]
    qat = [
        fold_run(k, "stt_qat", "--qat", "--from", str(out / "ckplus" / "stt" / f"fold{k}" / "best.pt"),
                 "--epochs", str(args.qat_epochs))
        for k in CKPLUS_FOLDS
    ]  # fmt: skip
    frames = [fold_run(k, "frame", *frame) for k in CKPLUS_FOLDS]
    leaky = [fold_run(k, "frame_leaky", "--protocol", "leaky", *frame) for k in CKPLUS_FOLDS]
    return [[megc, *leaky], stt + qat + frames]


def _out_dir(command: list[str]) -> Path:
    return Path(command[command.index("--out") + 1])


def _run_queue(queue: list[list[str]], log: Path) -> None:
    for command in queue:
        out = _out_dir(command)
        if (out / "metrics.json").exists():
            continue
        started = time.perf_counter()
        env = {**os.environ, "EDGE_FER_QAT_KERNELS": os.environ.get("EDGE_FER_QAT_KERNELS", "torch")}
        with open(log, "a") as handle:
            handle.write(f"+ python -m {' '.join(command)}\n")
            handle.flush()
            # An interrupted command continues where it stopped (finished LOSO folds, last epoch).
            resume = ["--resume"] if out.exists() and any(out.iterdir()) else []
            result = subprocess.run(
                [sys.executable, "-m", *command, *resume], stdout=handle, stderr=subprocess.STDOUT, env=env
            )
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"benchmarks.real: {command[0]} -> {out} failed ({result.returncode}); see {log}")
        print(f"  {out} ({seconds:.0f} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m benchmarks.real", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="the folder with ckplus48/, htnet-megc2019/")
    parser.add_argument("--jobs", type=int, default=2, help="training commands run side by side")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training command")
    parser.add_argument("--htnet-epochs", type=int, default=40)
    parser.add_argument("--stt-epochs", type=int, default=20)
    parser.add_argument("--frame-epochs", type=int, default=20)
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--train-only", action="store_true", help="stop after training (INT8 and report later)")
    args = parser.parse_args(argv)
    for name in ("ckplus48", "htnet-megc2019"):
        if not (args.root / name).is_dir():
            raise DatasetError(
                f"{args.root / name} is absent: --root must be the folder with ckplus48/ and htnet-megc2019/"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    queues = _training_jobs(args)
    print(f"benchmarks.real: training ({len(queues)} queues side by side; log in {args.out / 'train.log'})", flush=True)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(lambda q: _run_queue(q, args.out / "train.log"), queues))
    timings = _load_timings(args.out)
    timings["train_s"] = timings.get("train_s", 0.0) + time.perf_counter() - started
    _save_timings(args.out, timings)
    if args.train_only:
        return 0
    from benchmarks.real_int8 import run_int8, write_report

    started = time.perf_counter()
    run_int8(args.out, args.root)
    timings["int8_s"] = timings.get("int8_s", 0.0) + time.perf_counter() - started
    _save_timings(args.out, timings)
    started = time.perf_counter()
    _bench_ckplus(args.out, args.root, log=args.out / "bench.log")
    timings["bench_s"] = timings.get("bench_s", 0.0) + time.perf_counter() - started
    _save_timings(args.out, timings)
    write_report(args.out, timings)
    print(f"benchmarks.real: wrote {args.out / 'report.md'}")
    return 0


def _bench_ckplus(out: Path, root: Path, *, log: Path) -> None:
    """``edge-fer bench`` on real faces: CK+ fold 1's exports (FP32 ONNX, OpenVINO FP32, INT8
    post-training calibrated on fold 1's training people, the accuracy-controlled INT8 (UAR on
    training people, at most 1 point lost), INT8 QAT, the TensorRT Q/DQ ONNX), accuracy on
    fold 1's held-out people and latency on this CPU, with the Pareto plot."""
    if (out / "bench" / "results.json").exists():
        return
    print("benchmarks.real: edge-fer bench on CK+ fold 1", flush=True)
    data = ["--eval-dataset", "ckplus", "--eval-root", str(root / "ckplus48"), "--eval-fold", "1"]
    best, qat = out / "ckplus" / "stt" / "fold1" / "best.pt", out / "ckplus" / "stt_qat" / "fold1" / "best.pt"
    calib = f"dataset=ckplus,root={root / 'ckplus48'},fold=1,samples=64"
    models = out / "bench_models"
    exports = [
        ["export.onnx", "--checkpoint", str(best), "--out", str(models / "fp32" / "model.onnx"), *data],
        ["export.openvino", "--checkpoint", str(best), "--precision", "fp32", "--out", str(models / "ov_fp32"), *data],
        ["export.openvino", "--checkpoint", str(best), "--precision", "int8", "--calib", calib,
         "--out", str(models / "ov_int8_ptq"), *data],
        ["export.openvino", "--checkpoint", str(best), "--precision", "int8", "--calib", calib, "--max-drop", "0.01",
         "--val", calib.replace("samples=64", "samples=128,seed=1"), "--out", str(models / "ov_int8_ac"), *data],
        ["export.openvino", "--checkpoint", str(qat), "--precision", "int8", "--qat",
         "--out", str(models / "ov_int8_qat"), *data],
        ["export.trt", "--checkpoint", str(best), "--precision", "int8", "--calib", calib,
         "--out", str(models / "trt_int8_ptq" / "model.engine")],
    ]  # fmt: skip
    with open(log, "a") as handle:
        for command in exports:
            handle.write(f"+ python -m {' '.join(command)}\n")
            handle.flush()
            code = subprocess.run(
                [sys.executable, "-m", *command, "--force"], stdout=handle, stderr=subprocess.STDOUT
            ).returncode
            if code not in (0, 3):  # 3: export.trt without TensorRT wrote the engine-ready Q/DQ ONNX only
                raise SystemExit(f"benchmarks.real: {command[0]} failed ({code}); see {log}")
        artifacts = [
            models / "fp32" / "model.onnx",
            models / "ov_fp32" / "model.xml",
            models / "ov_int8_ptq" / "model.xml",
            models / "ov_int8_ac" / "model.xml",
            models / "ov_int8_qat" / "model.xml",
            *sorted((models / "trt_int8_ptq").glob("*.onnx")),
        ]
        bench = ["edge_fer", "bench", "--artifacts", *map(str, artifacts), "--eval-dataset", "ckplus"]
        bench += [
            "--root",
            str(root / "ckplus48"),
            "--fold",
            "1",
            "--out",
            str(out / "bench"),
            "--force",
            "--no-progress",
        ]
        handle.write(f"+ python -m {' '.join(bench)}\n")
        handle.flush()
        if subprocess.run([sys.executable, "-m", *bench], stdout=handle, stderr=subprocess.STDOUT).returncode:
            raise SystemExit(f"benchmarks.real: edge-fer bench failed; see {log}")


def _load_timings(out: Path) -> dict:
    path = out / "timings.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save_timings(out: Path, timings: dict) -> None:
    (out / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")


if __name__ == "__main__":
    run_tool(main, "benchmarks.real")
