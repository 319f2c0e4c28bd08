"""Real-data tables: both models trained and measured on real faces and real facial motion,
FP32 -> INT8, on this machine.

    python -m benchmarks.real --out runs/real [--root ../shared/real] [--jobs 2]

Data (read in place from ``--root``, never copied; see its README.md): the HTNet paper's own
MEGC2019 inputs (442 micro-expressions, 68 subjects) and CK+48 (327 posed sequences, 118
people). Weights trained here stay in ``--out``: they are never shipped.

1. MEGC2019: ``train.htnet`` leave-one-subject-out, ``htnet_light``; both protocols (honest
   selection, and the official script's best-epoch-on-the-test-subject); then QAT (OpenVINO
   INT8 grid) of each fold's model, same subjects, same honest selection.
2. CK+: ``train.stt`` 10 folds by subject: the single-frame baseline, STT started from that
   fold's single-frame trunk (two-stage), STT quantization-aware fine-tuning (OpenVINO INT8
   grid) from each fold's STT, STT from scratch (the ablation); the single-frame baseline on
   the CK+48 repository's leaky frame split, for its 94.04 %.
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
from edge_fer.data.spec import real_data_root
from edge_fer.errors import DatasetError

__all__ = ["main"]

DEFAULT_ROOT = real_data_root()
CKPLUS_FOLDS = range(1, 11)


def _training_jobs(args) -> list[list[list[str]]]:
    """Queues of commands; queues run side by side (``--jobs``), commands in a queue in order."""
    out, threads = args.out, ["--threads", str(args.threads)]
    megc_root = ["--dataset", "megc2019", "--root", str(args.root / "htnet-megc2019")]

    def htnet(name: str, *flags: str) -> list[str]:
        return ["train.htnet", *megc_root, *flags, "--out", str(out / "megc2019" / name), *threads]

    def qat_of(name: str) -> list[str]:
        return ["--qat", "--from", str(out / "megc2019" / name), "--epochs", str(args.htnet_qat_epochs)]

    float_htnet = ["--preset", "htnet_light", "--epochs", str(args.htnet_epochs)]
    loso = ["--loso", "--keep-fold-models"]
    megc = htnet("htnet_light", *loso, *float_htnet)
    megc_qat = htnet("htnet_light_qat", *loso, *qat_of("htnet_light"))
    # One model on 4/5 of the MEGC2019 subjects (5 folds by subject), for edge-fer bench on the other fifth.
    megc_fold = htnet("htnet_light_fold1", "--fold", "1", *float_htnet)
    megc_fold_qat = htnet("htnet_light_fold1_qat", "--fold", "1", *qat_of("htnet_light_fold1"))
    ck = ["--dataset", "ckplus", "--root", str(args.root / "ckplus48"), *threads]

    def fold_run(fold: int, name: str, *flags: str) -> list[str]:
        return ["train.stt", *ck, "--fold", str(fold), *flags, "--out", str(out / "ckplus" / name / f"fold{fold}")]

    frame = ["--single-frame", "--epochs", str(args.frame_epochs), "--lr", "2e-3"]
    stt = ["--epochs", str(args.stt_epochs), "--lr", "2e-3"]

    def chain(fold: int) -> list[list[str]]:
        """One fold's chain: single-frame baseline -> STT starting from its trunk (two-stage, as
        the paper's STT starts from a face-trained ResNet-18) -> QAT of that STT."""
        frame_model = out / "ckplus" / "frame" / f"fold{fold}" / "best.pt"
        stt_model = out / "ckplus" / "stt" / f"fold{fold}" / "best.pt"
        return [
            fold_run(fold, "frame", *frame),
            fold_run(fold, "stt", *stt, "--pretrained", str(frame_model)),
            fold_run(fold, "stt_qat", "--qat", "--from", str(stt_model), "--epochs", str(args.qat_epochs)),
        ]

    leaky = [fold_run(k, "frame_leaky", "--protocol", "leaky", *frame) for k in CKPLUS_FOLDS]
    scratch = [fold_run(k, "stt_scratch", *stt) for k in CKPLUS_FOLDS]  # the ablation: no two-stage start
    odd = [command for k in CKPLUS_FOLDS if k % 2 for command in chain(k)]
    even = [command for k in CKPLUS_FOLDS if not k % 2 for command in chain(k)]
    return [[megc, megc_qat, *leaky], odd, even, [megc_fold, megc_fold_qat, *scratch]]


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
    parser.add_argument("--qat-epochs", type=int, default=1, help="STT quantization-aware fine-tuning")
    parser.add_argument("--htnet-qat-epochs", type=int, default=3)
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
    runs = args.out
    _bench(runs, "ckplus", checkpoint=runs / "ckplus" / "stt" / "fold1" / "best.pt",
           qat=runs / "ckplus" / "stt_qat" / "fold1" / "best.pt", dataset="ckplus", root=args.root / "ckplus48",
           log=runs / "bench.log")  # fmt: skip
    _bench(runs, "megc2019", checkpoint=runs / "megc2019" / "htnet_light_fold1" / "best.pt",
           qat=runs / "megc2019" / "htnet_light_fold1_qat" / "best.pt", dataset="megc2019",
           root=args.root / "htnet-megc2019", log=runs / "bench.log")  # fmt: skip
    timings["bench_s"] = timings.get("bench_s", 0.0) + time.perf_counter() - started
    _save_timings(args.out, timings)
    write_report(args.out, timings)
    print(f"benchmarks.real: wrote {args.out / 'report.md'}")
    return 0


def _bench(out: Path, name: str, *, checkpoint: Path, qat: Path, dataset: str, root: Path, log: Path) -> Path:
    """``edge-fer bench`` on real data: one held-out fold's exports (FP32 ONNX, OpenVINO FP32,
    INT8 post-training calibrated on that fold's training people, the accuracy-controlled INT8
    (metric on training people, at most 1 point lost), INT8 QAT, the TensorRT Q/DQ ONNX),
    accuracy on the fold's held-out people and latency on this CPU, with the Pareto plot."""
    results = out / "bench" / name
    if (results / "results.json").exists():
        return results
    print(f"benchmarks.real: edge-fer bench on {name}", flush=True)
    data = ["--dataset", dataset, "--root", str(root), "--fold", "1"]
    calib = f"dataset={dataset},root={root},fold=1,samples=64"
    models = out / "bench_models" / name
    exports = [
        ["export.onnx", "--checkpoint", str(checkpoint), "--out", str(models / "fp32" / "model.onnx"), *data],
        ["export.openvino", "--checkpoint", str(checkpoint), "--precision", "fp32", "--out", str(models / "ov_fp32"),
         *data],
        ["export.openvino", "--checkpoint", str(checkpoint), "--precision", "int8", "--calib", calib,
         "--out", str(models / "ov_int8_ptq"), *data],
        ["export.openvino", "--checkpoint", str(checkpoint), "--precision", "int8", "--calib", calib, "--max-drop",
         "0.01", "--val", calib.replace("samples=64", "samples=128,seed=1"), "--out", str(models / "ov_int8_ac"),
         *data],
        ["export.openvino", "--checkpoint", str(qat), "--precision", "int8", "--qat",
         "--out", str(models / "ov_int8_qat"), *data],
        ["export.trt", "--checkpoint", str(checkpoint), "--precision", "int8", "--calib", calib,
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
        bench = ["edge_fer", "bench", "--artifacts", *map(str, artifacts), "--dataset", dataset]
        bench += ["--root", str(root), "--fold", "1", "--out", str(results), "--force", "--no-progress"]
        handle.write(f"+ python -m {' '.join(bench)}\n")
        handle.flush()
        if subprocess.run([sys.executable, "-m", *bench], stdout=handle, stderr=subprocess.STDOUT).returncode:
            raise SystemExit(f"benchmarks.real: edge-fer bench failed; see {log}")
    return results


def _load_timings(out: Path) -> dict:
    path = out / "timings.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save_timings(out: Path, timings: dict) -> None:
    (out / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")


if __name__ == "__main__":
    run_tool(main, "benchmarks.real")
