"""Time exported artifacts on this machine: p50/p90 latency and throughput.

    python -m benchmarks.latency A.onnx B.xml ... [--backend auto] [--batch 1] [--iters 100] [--threads N]

Every artifact gets the same input (seeded random data of its input shape), a warm-up that
is not timed, then ``--iters`` timed runs; ratios are only meaningful within one run on
one machine. OpenVINO runs FP32/INT8 IRs with ``INFERENCE_PRECISION_HINT=f32`` unless
``--ov-precision`` says otherwise (bf16 is its default on CPUs that have it: its own row).
The full benchmark suite (accuracy, Pareto front, end-to-end) is ``edge-fer bench``.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

from benchmarks.common import call_times_ms
from edge_fer.artifacts import read_artifact
from edge_fer.cli.args import Parser
from edge_fer.cli.main import run_tool
from edge_fer.runtime.backends import open_backend

__all__ = ["time_artifact", "main"]


def time_artifact(
    path: Path, *, backend: str, batch: int, iters: int, warmup: int, threads: int | None, ov_precision: str | None
) -> dict:
    artifact = read_artifact(path)
    name, shape = next(iter(artifact.inputs.items()))
    rng = np.random.default_rng(0)
    feed = {name: rng.standard_normal((batch, *shape[1:])).astype(np.float32)}
    precision = ov_precision if ov_precision is not None else "f32"
    load_start = time.perf_counter()
    with open_backend(
        path, backend=backend, threads=threads, precision=precision if backend in ("auto", "openvino") else None
    ) as runner:
        load_s = time.perf_counter() - load_start
        ms = call_times_ms(lambda: runner.infer(feed), warmup=warmup, iters=iters)
        used = runner.name
    frames = batch * (artifact.preset.preprocessing.clip_len if artifact.part == "full" else 1)
    return {
        "artifact": str(path),
        "part": artifact.part,
        "precision": artifact.precision,
        "backend": used,
        "compute": precision if used == "openvino" else "as stored",
        "quantization": artifact.meta.get("quantization", {}).get("method", "none"),
        "batch": batch,
        "iters": iters,
        "warmup": warmup,
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "throughput_per_s": float(1000 * batch / np.median(ms)),
        "frames_per_s": float(1000 * frames / np.median(ms)),
        "load_s": load_s,
        "size_mb": sum(f.stat().st_size for f in [path, path.with_suffix(".bin")] if f.exists()) / 2**20,
    }


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m benchmarks.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("artifacts", nargs="+", type=Path)
    parser.add_argument("--backend", default="auto", help="auto, openvino, onnxruntime")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--ov-precision", default=None, help="OpenVINO inference precision hint (default f32)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    rows = [
        time_artifact(
            p,
            backend=args.backend,
            batch=args.batch,
            iters=args.iters,
            warmup=args.warmup,
            threads=args.threads,
            ov_precision=args.ov_precision,
        )
        for p in args.artifacts
    ]
    print(
        f"{platform.processor() or platform.machine()}, batch {args.batch}, {args.iters} timed runs after "
        f"{args.warmup} warm-up (ratios within this run only)"
    )
    print(f"{'artifact':<44}{'prec':<6}{'backend':<12}{'p50 ms':>9}{'p90 ms':>9}{'per s':>9}{'MB':>8}")
    for row in sorted(rows, key=lambda r: r["p50_ms"]):
        label = (
            str(Path(row["artifact"]).relative_to(Path.cwd()))
            if Path(row["artifact"]).is_relative_to(Path.cwd())
            else row["artifact"]
        )
        print(
            f"{label[-43:]:<44}{row['precision']:<6}{row['backend']:<12}{row['p50_ms']:>9.2f}{row['p90_ms']:>9.2f}"
            f"{row['throughput_per_s']:>9.1f}{row['size_mb']:>8.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    run_tool(main, "python -m benchmarks.latency")
