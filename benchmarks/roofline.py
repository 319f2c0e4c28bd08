"""How fast can an STT stream on this CPU, at best? The head's work against the CPU's INT8 rate.

    python -m benchmarks.roofline --out runs/roofline [--preset stt_base] [--model DIR] [--stride 4]

The streaming runtime pays one backbone per new frame and one head per ``stride`` frames per
face, and the head dominates. This counts the head's multiply-accumulates (torch's flop
counter on the real module), measures the INT8 and FP32 matrix-multiply rates OpenVINO reaches
on this CPU (a stack of large quantized FullyConnected layers: the best case), times the
exported INT8 head (batch 1 and 4) and how much of it is FullyConnected work, and derives the
ceiling: even with the head running at the measured peak and *nothing else* in the loop, one
face cannot exceed ``stride / head_floor`` frames per second, four faces ``stride / (4 x
head_floor)``. Without ``--model`` the preset is exported untrained (speed does not depend on
the weights). Writes ``roofline.json`` and ``roofline.md``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.common import call_times_ms, untrained_int8
from edge_fer.bench import environment as suite_environment
from edge_fer.cli.args import Parser
from edge_fer.cli.main import run_tool
from edge_fer.runtime.streaming import find_pair

__all__ = ["main"]


def head_macs(preset_name: str) -> dict[str, float]:
    """GMAC of one clip through the head and of one frame through the backbone (batch 1)."""
    from torch.utils.flop_counter import FlopCounterMode

    from edge_fer.models import build_model

    model = build_model(preset_name).eval()
    counts = {}
    for part in ("head", "backbone"):
        with FlopCounterMode(display=False) as counter:  # counts the ops actually run (2 FLOP per MAC)
            model.part(part)(model.example_input(part, batch=1))
        counts[part] = counter.get_total_flops() / 2e9
    return counts


def _median_ms(request, feed, repeats: int = 30) -> float:
    return float(np.median(call_times_ms(lambda: request.infer(feed), warmup=3, iters=repeats)))


def gemm_rates(rows: int = 3136, width: int = 2048, layers: int = 4) -> dict[str, float]:
    """GMAC/s of ``layers`` chained rows x width x width FullyConnected layers in OpenVINO:
    INT8 (NNCF-quantized), FP32 (precision hint f32) and the CPU's default (bf16 where it has it)."""
    import nncf
    import openvino as ov
    import torch

    torch.manual_seed(0)
    stack = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(layers)]).eval()
    example = torch.randn(rows, width)
    network = ov.convert_model(stack, example_input=example)
    calib = nncf.Dataset([np.random.default_rng(0).standard_normal((rows, width), dtype=np.float32)])
    quantized = nncf.quantize(network, calib, subset_size=1, model_type=nncf.ModelType.TRANSFORMER)
    core = ov.Core()
    macs = rows * width * width * layers
    feed = [example.numpy()]
    rates = {}
    for name, model, hint in (("int8", quantized, None), ("fp32", network, "f32"), ("default", network, None)):
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if hint:
            config["INFERENCE_PRECISION_HINT"] = hint
        request = core.compile_model(model, "CPU", config).create_infer_request()
        rates[name] = round(macs / (_median_ms(request, feed, 10) / 1000) / 1e9, 1)
    return rates


def head_timing(head_xml: Path, batch: int) -> dict[str, float]:
    """Median ms of the exported head at a static batch, and the FullyConnected layers' share."""
    import openvino as ov

    core = ov.Core()
    network = core.read_model(str(head_xml))
    shape = [batch, *[d.get_length() for d in list(network.inputs[0].get_partial_shape())[1:]]]
    if any(d <= 0 for d in shape):  # a head exported fully dynamic: STT token layout
        raise SystemExit(f"{head_xml}: cannot read the head's token shape")
    network.reshape({network.inputs[0]: shape})
    request = core.compile_model(network, "CPU", {"PERF_COUNT": True, "PERFORMANCE_HINT": "LATENCY"})
    request = request.create_infer_request()
    feed = [np.random.default_rng(0).standard_normal(shape, dtype=np.float32)]
    total = _median_ms(request, feed)
    by_type: Counter = Counter()
    for layer in request.profiling_info:
        by_type[layer.node_type] += layer.real_time.total_seconds() * 1000
    fc = sum(ms for kind, ms in by_type.items() if kind.startswith("FullyConnected"))
    return {"ms": round(total, 2), "fully_connected_ms": round(fc, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m benchmarks.roofline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--preset", default="stt_base")
    parser.add_argument(
        "--model", type=Path, help="OpenVINO INT8 export folder with the backbone/head pair (default: export one)"
    )
    parser.add_argument("--stride", type=int, default=4)
    args = parser.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.model is None:
        calib_video = out / "calib.mp4"
        if not calib_video.exists():
            from edge_fer.data.face_video import write_face_video

            write_face_video(calib_video, seconds=30, seed=1)
        args.model = untrained_int8(args.preset, out, calib_video, samples=64)
    pair = find_pair(args.model / "model.xml")
    if pair is None:
        raise SystemExit(
            f"{args.model} has no backbone/head pair (export it with python -m export.openvino, which writes the pair)"
        )
    head_xml = pair[1]

    macs = head_macs(args.preset)
    rates = gemm_rates()
    heads = {batch: head_timing(head_xml, batch) for batch in (1, 4)}
    floor_ms = macs["head"] / rates["int8"] * 1000  # the head at the best INT8 rate measured
    result = {
        "preset": args.preset,
        "stride": args.stride,
        "head_gmac": round(macs["head"], 3),
        "backbone_gmac_per_frame": round(macs["backbone"], 3),
        "gemm_gmac_per_s": rates,
        "head_int8": {f"batch{b}": h for b, h in heads.items()},
        "head_fc_gmac_per_s": round(macs["head"] / (heads[1]["fully_connected_ms"] / 1000), 1),
        "head_floor_ms": round(floor_ms, 2),
        "fps_ceiling_1_face": round(1000 * args.stride / floor_ms, 1),
        "fps_ceiling_4_faces": round(1000 * args.stride / (4 * floor_ms), 1),
        "fps_at_measured_head_1_face": round(1000 * args.stride / heads[1]["ms"], 1),
        "fps_at_measured_head_4_faces": round(1000 * args.stride / heads[4]["ms"], 1),
    }
    full = suite_environment()
    result["environment"] = {
        "cpu": f"{full.get('cpu', '')} ({full['cpu_features']['summary']})",
        "cores": full["cores"],
    }
    lines = [
        f"{args.preset} head, OpenVINO INT8, {result['environment']['cpu']}, {result['environment']['cores']} cores, "
        f"stride {args.stride}:",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| head work per clip | {result['head_gmac']} GMAC "
        f"(backbone {result['backbone_gmac_per_frame']} GMAC/frame) |",
        f"| INT8 / FP32 / default GEMM rate (best case) | {rates['int8']} / {rates['fp32']} / "
        f"{rates['default']} GMAC/s |",
        f"| INT8 head, batch 1 / batch 4 | {heads[1]['ms']} / {heads[4]['ms']} ms "
        f"(FullyConnected {heads[1]['fully_connected_ms']} / {heads[4]['fully_connected_ms']} ms) |",
        f"| head floor at the INT8 GEMM rate | {result['head_floor_ms']} ms per clip |",
        f"| FPS ceiling, head only, 1 face / 4 faces | {result['fps_ceiling_1_face']} / "
        f"{result['fps_ceiling_4_faces']} (at the measured head: {result['fps_at_measured_head_1_face']} / "
        f"{result['fps_at_measured_head_4_faces']}) |",
    ]
    (out / "roofline.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "roofline.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    run_tool(main, "python -m benchmarks.roofline")
