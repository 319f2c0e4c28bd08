"""Triton on 127.0.0.1: head requests of 1, 2, 4, 8 client streams, and the batches Triton forms.

    python -m benchmarks.triton --out runs/triton [--model ARTIFACT] [--seconds 10] [--clients 1 2 4 8]

Exports the model to a Triton repository (``export.triton --flavour python``: the local server
is the ``nvidia-pytriton`` wheel's, which has only the Python backend; see
``benchmarks.triton_server``), starts a real ``tritonserver`` and, for each client count, runs
that many client streams at once - each a camera's head refreshes: one face's clip tokens per
request, sent again as soon as the answer is back, over its own HTTP connection (threads of
this process) - for ``--seconds``. Records requests per second, each request's round-trip
latency (p50/p99) and, from Triton's own statistics, how many requests it ran per model
execution (dynamic batching at work). Without ``--model``: ``stt_tiny`` OpenVINO INT8 from
untrained weights (speed does not depend on the weights). Writes ``triton.json``, ``triton.md``.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.common import untrained_int8
from benchmarks.triton_server import TritonServer
from edge_fer.bench import environment as suite_environment
from edge_fer.cli.args import Parser
from edge_fer.cli.main import run_tool

__all__ = ["main"]


def _counts(backend) -> tuple[int, int]:
    """Triton's request and batch counts of the model, read until two reads agree: the server
    counts a request only after sending its response, so the last answered ones may lag."""
    previous = None
    for _ in range(40):
        stats = backend.statistics()["model_stats"][0]
        counts = int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))
        if counts == previous:
            break
        previous = counts
        time.sleep(0.05)
    return counts


def _clients(model: Path, url: str, clients: int, seconds: float) -> dict:
    from edge_fer.runtime.streaming import ExpressionModel

    opened = [ExpressionModel(model, backend="triton", url=url) for _ in range(clients)]
    head = opened[0].head
    shape = [d or 1 for d in head.inputs[next(iter(head.inputs))]]
    tokens = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for client in opened:  # a first request each: connections made, the model warm
        client.head_logits(tokens)
    latencies: list[list[float]] = [[] for _ in opened]
    start_counts = _counts(head)
    stop = threading.Event()

    def stream(index: int) -> None:
        while not stop.is_set():
            began = time.perf_counter()
            opened[index].head_logits(tokens)
            latencies[index].append((time.perf_counter() - began) * 1000)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    inferences, executions = (b - a for a, b in zip(start_counts, _counts(head)))
    for client in opened:
        client.close()
    every = np.concatenate([np.array(x) for x in latencies])
    return {
        "clients": clients,
        "requests": int(len(every)),
        "requests_per_s": round(len(every) / elapsed, 1),
        "latency_ms_p50": round(float(np.percentile(every, 50)), 2),
        "latency_ms_p99": round(float(np.percentile(every, 99)), 2),
        "server_inferences": inferences,
        "server_executions": executions,
        "mean_batch": round(inferences / max(executions, 1), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m benchmarks.triton", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--model", type=Path, help="STT artifact (default: stt_tiny OpenVINO INT8, untrained)")
    parser.add_argument("--seconds", type=float, default=10.0, help="per client count (default 10)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.model is None:
        calib = out / "calib.mp4"
        if not calib.exists():
            from edge_fer.data.face_video import write_face_video

            write_face_video(calib, seconds=30, seed=1)
        model = untrained_int8("stt_tiny", out, calib, samples=64) / "model.xml"
    else:
        model = args.model
    from export.triton import export_triton

    repo = out / "repo"
    export_triton(model, repo, flavour="python", force=True)
    rows = []
    with TritonServer(repo) as server:
        for clients in args.clients:
            rows.append(_clients(model, server.http, clients, args.seconds))
            row = rows[-1]
            print(
                f"  {clients} client(s): {row['requests_per_s']:7.1f} req/s  p50 {row['latency_ms_p50']:.2f} ms  "
                f"p99 {row['latency_ms_p99']:.2f} ms  mean batch {row['mean_batch']}",
                flush=True,
            )
    full = suite_environment()
    environment = {"cpu": f"{full.get('cpu', '')} ({full['cpu_features']['summary']})", "cores": full["cores"]}
    lines = [
        f"Head requests (one face's clip tokens each) to a real tritonserver on 127.0.0.1 (Triton 2.51 of "
        f"nvidia-pytriton 0.7.0, Python backend running the artifact, dynamic batching, max queue delay 500 µs); "
        f"`{model}`; {environment['cpu']}, {environment['cores']} cores; server and clients share them; "
        f"{args.seconds:g} s per row.",
        "",
        "| client streams | requests/s | latency p50 ms | latency p99 ms | requests per execution (Triton stats) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['clients']} | {row['requests_per_s']:.1f} | {row['latency_ms_p50']:.2f} | "
            f"{row['latency_ms_p99']:.2f} | {row['mean_batch']:.2f} |"
        )
    (out / "triton.md").write_text("\n".join(lines) + "\n")
    (out / "triton.json").write_text(json.dumps({"environment": environment, "rows": rows}, indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    run_tool(main, "python -m benchmarks.triton")
