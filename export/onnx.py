"""Export a model (or one of its streaming parts) to ONNX.

    python -m export.onnx --checkpoint RUN/best.pt --out model.onnx [--part full|backbone|head|all]

Uses torch's TorchScript-based exporter (``dynamo=False``): NNCF's quantizer modules export
their Q/DQ pairs through it, so float and quantization-aware-trained models take the same
path (a QAT checkpoint gives a Q/DQ INT8 ONNX). Every graph gets a dynamic batch axis: the
runtime batches frames across faces (STT backbone) and clips across tracks (head). Each
file gets its metadata sidecar (``model.onnx.json``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from edge_fer.cli.args import Parser
from edge_fer.fileio import atomic_output, check_writable

__all__ = ["DEFAULT_OPSET", "export_onnx", "main"]

DEFAULT_OPSET = 17


def export_onnx(
    model: nn.Module,
    out: str | os.PathLike,
    *,
    part: str = "full",
    opset: int = DEFAULT_OPSET,
    force: bool = False,
) -> Path:
    """Write ``model.part(part)`` to ``out`` as ONNX with a dynamic batch axis.

    Args:
        model: an ``STT`` or ``HTNet`` (anything with ``part``, ``example_input``, ``io_names``),
            float or with NNCF quantizers (exported as QuantizeLinear/DequantizeLinear pairs).
        out: the .onnx file to write (atomically; an existing file needs ``force``).
        part: "full", or for STT "backbone" / "head".
        opset: ONNX opset (17 or newer).
        force: overwrite an existing file.

    Returns:
        The written path.
    """
    if part not in model.parts:
        raise ValueError(f"{type(model).__name__} has parts {model.parts}, not {part!r}")
    if opset < 17:
        raise ValueError(f"opset {opset} is too old: LayerNormalization needs opset 17 or newer")
    _qdq_export_mode(model)
    module = model.part(part).eval()
    example = model.example_input(part, batch=2)
    input_name, output_name = model.io_names[part]
    with atomic_output(out, force=force) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript exporter's notice
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            (example,),
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
            do_constant_folding=True,
        )
    return Path(out)


def _qdq_export_mode(model: nn.Module) -> None:
    """Standard QuantizeLinear/DequantizeLinear for NNCF quantizers (not FakeQuantize)."""
    try:
        from nncf.torch.quantization.layers import BaseQuantizer
    except ImportError:
        return
    if any(isinstance(m, BaseQuantizer) for m in model.modules()):
        from edge_fer.models.qat import set_qdq_export

        set_qdq_export(model)


def part_paths(out: Path, parts: tuple[str, ...]) -> dict[str, Path]:
    """``model.onnx`` + parts -> ``model.onnx`` (full), ``model.backbone.onnx``, ``model.head.onnx``."""
    return {part: out if part == "full" else out.with_name(f"{out.stem}.{part}{out.suffix}") for part in parts}


def main(argv: list[str] | None = None) -> int:
    from export.common import add_eval_arguments, describe_and_evaluate, load_exportable

    parser = Parser(prog="python -m export.onnx", description="Export a checkpoint to ONNX (with metadata sidecar).")
    parser.add_argument("--checkpoint", required=True, type=Path, help="RUN/best.pt (float or QAT)")
    parser.add_argument("--out", required=True, type=Path, help="the .onnx file")
    parser.add_argument(
        "--part",
        default="full",
        choices=("full", "backbone", "head", "all"),
        help="STT: the backbone (frame -> tokens) and head (tokens -> logits) parts, or all three",
    )
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    add_eval_arguments(parser)
    args = parser.parse_args(argv)
    if args.out.suffix != ".onnx":
        parser.error(f"--out must end in .onnx, got {args.out}")
    exportable = load_exportable(args.checkpoint)
    parts = exportable.parts if args.part == "all" else (args.part,)
    if any(p not in exportable.parts for p in parts):
        parser.error(f"a {exportable.kind} model has parts {', '.join(exportable.parts)}, not {args.part}")
    paths = part_paths(args.out, parts)
    for path in paths.values():
        check_writable(path, force=args.force)  # refuse before writing anything
    precision = "int8" if exportable.qat else "fp32"
    quantization = {"method": "nncf-qat", "target": exportable.qat_target, "format": "qdq"} if exportable.qat else None
    for part, path in paths.items():
        export_onnx(exportable.model, path, part=part, opset=args.opset, force=args.force)
        describe_and_evaluate(path, exportable, part, precision, quantization=quantization, args=args)
        print(f"wrote {path} ({part}, {precision})")
    return 0


if __name__ == "__main__":
    from edge_fer.cli.main import run_tool

    run_tool(main, "export.onnx")
