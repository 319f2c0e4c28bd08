"""Export a model (or one of its streaming parts) to ONNX.

    python -m export.onnx --checkpoint RUN/best.pt --out model.onnx [--part full|backbone|head|all]
        [--dataset D --root DIR --fold K] [--force]

From Python: ``export_checkpoint_onnx(checkpoint, out, parts="all")`` (sidecars, parts, the
evaluation after export), or ``export_onnx(model, out)`` for a bare ``nn.Module``.

Uses torch's TorchScript-based exporter (``dynamo=False``): NNCF's quantizer modules export
their Q/DQ pairs through it, so float and quantization-aware-trained models take the same
path (a QAT checkpoint gives a Q/DQ INT8 ONNX). Every graph gets a dynamic batch axis: the
runtime batches frames across faces (STT backbone) and clips across tracks (head). Each
file gets its metadata sidecar (``model.onnx.json``); the parts sit beside the full model
(``model.backbone.onnx``, ``model.head.onnx``: ``edge_fer.artifacts.part_path``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from edge_fer.cli.args import Parser
from edge_fer.data.spec import DataSpec
from edge_fer.fileio import atomic_output
from export.settings import check_artifact_suffix, silent, usage_errors

__all__ = ["DEFAULT_OPSET", "export_onnx", "export_checkpoint_onnx", "build_parser", "main"]

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


def export_checkpoint_onnx(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    parts: str | Sequence[str] = "full",
    opset: int = DEFAULT_OPSET,
    evaluation: DataSpec | None = None,
    force: bool = False,
    log: Callable[[str], None] = silent,
) -> list[Path]:
    """Export a checkpoint's model to ONNX, each file with its metadata sidecar.

    A float checkpoint gives FP32 ONNX; a QAT checkpoint INT8 Q/DQ ONNX.

    Args:
        checkpoint: ``RUN/best.pt`` (float or QAT).
        out: the full model's ``.onnx``; the other parts go beside it (``X.backbone.onnx``).
        parts: "full", "backbone", "head" (STT), several of them, or "all".
        opset: ONNX opset (17 or newer).
        evaluation: data to evaluate the exported full model on; the metrics go in its sidecar.
        force: overwrite existing files (without it nothing is written if one exists).
        log: called with a line per written file (and the evaluation's metrics).

    Returns:
        The written files, in the model's part order.

    Raises:
        ExportRequestError: ``out`` not ending in .onnx, or a part the model lacks.
    """
    from export.common import describe_and_evaluate, load_exportable, part_outputs, select_parts

    out = check_artifact_suffix(out, "onnx")
    exportable = load_exportable(checkpoint)
    paths = part_outputs(out, select_parts(exportable, parts), force=force)  # refuse before writing anything
    precision = "int8" if exportable.qat else "fp32"
    quantization = {"method": "nncf-qat", "target": exportable.qat_target, "format": "qdq"} if exportable.qat else None
    for part, path in paths.items():
        export_onnx(exportable.model, path, part=part, opset=opset, force=force)
        describe_and_evaluate(
            path, exportable, part, precision, quantization=quantization, evaluation=evaluation, log=log
        )
    return list(paths.values())


def build_parser() -> Parser:
    from export.common import add_evaluation_arguments

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
    add_evaluation_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with usage_errors(parser):
        export_checkpoint_onnx(
            args.checkpoint,
            args.out,
            parts=args.part,
            opset=args.opset,
            evaluation=DataSpec.from_args(args),
            force=args.force,
            log=print,
        )
    return 0


if __name__ == "__main__":
    from edge_fer.cli.main import run_tool

    run_tool(main, "export.onnx")
