"""Export a model (or one of its streaming parts) to ONNX.

Uses torch's TorchScript-based exporter (``dynamo=False``): NNCF's quantizer modules export
their Q/DQ pairs through it, so float and quantized models take the same path. Every graph
gets a dynamic batch axis: the runtime batches frames across faces (STT backbone) and
clips across tracks (head).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from edge_fer.fileio import atomic_output

__all__ = ["DEFAULT_OPSET", "export_onnx"]

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
        model: an ``STT`` or ``HTNet`` (anything with ``part``, ``example_input``, ``io_names``).
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
    module = model.part(part).eval()
    example = model.example_input(part, batch=2)
    input_name, output_name = model.io_names[part]
    with atomic_output(out, force=force) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript exporter's notice
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
