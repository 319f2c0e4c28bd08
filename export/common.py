"""What the exporters share: loading checkpoints, parts and their file names, part I/O,
calibration sets, sidecars and the evaluation after export."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from calibration.sets import CalibrationSet, build_from_dataset, build_from_videos, load_calibration
from edge_fer.artifacts import artifact_files, part_path, sha256_file, tool_versions, write_sidecar
from edge_fer.cli.args import add_data_arguments
from edge_fer.data.spec import DataSpec
from edge_fer.errors import ArtifactError, DatasetError
from edge_fer.fileio import check_writable
from edge_fer.models.checkpoint import load_model
from edge_fer.presets import ModelPreset
from export.settings import CalibrationSource, ExportRequestError, silent

__all__ = [
    "Exportable",
    "load_exportable",
    "select_parts",
    "part_outputs",
    "part_io",
    "tool_versions",
    "resolve_calibration",
    "part_calibration",
    "add_evaluation_arguments",
    "describe_and_evaluate",
]


class Exportable:
    """A checkpoint's model, ready to export: the float or QAT model, its preset and origin."""

    def __init__(self, checkpoint: str | os.PathLike) -> None:
        self.checkpoint = Path(checkpoint)
        self.model, self.preset, self.payload = load_model(checkpoint)
        if self.payload["model_kind"] == "frame_baseline":
            raise ArtifactError(f"{checkpoint} holds the single-frame baseline, which is not exported")
        self.sha256 = sha256_file(checkpoint)

    @property
    def kind(self) -> str:
        return self.payload["model_kind"]

    @property
    def qat(self) -> bool:
        return bool(self.payload.get("qat"))

    @property
    def qat_target(self) -> str | None:
        return self.payload.get("qat_target") if self.qat else None

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.model.parts)

    def module(self, part: str) -> nn.Module:
        return self.model.part(part).eval()

    def example(self, part: str, batch: int = 1) -> torch.Tensor:
        return self.model.example_input(part, batch=batch)

    def source(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint),
            "sha256": self.sha256,
            "val": self.payload.get("val"),
            "dataset": self.payload.get("dataset"),
        }


def load_exportable(checkpoint: str | os.PathLike) -> Exportable:
    return Exportable(checkpoint)


def select_parts(exportable: Exportable, parts: str | Sequence[str]) -> tuple[str, ...]:
    """``parts`` ("all", one part or several) checked against the model's parts.

    Raises:
        ExportRequestError: a part the model does not have.
    """
    chosen = exportable.parts if parts == "all" else (parts,) if isinstance(parts, str) else tuple(parts)
    missing = [p for p in chosen if p not in exportable.parts]
    if missing or not chosen:
        raise ExportRequestError(
            f"a {exportable.kind} model has parts {', '.join(exportable.parts)}, not {', '.join(missing) or 'none'}"
        )
    return chosen


def part_outputs(full: Path, parts: Sequence[str], *, force: bool) -> dict[str, Path]:
    """Each part's file beside the full model's (``edge_fer.artifacts.part_path``), every file of
    them (an IR's .bin too) checked writable before any work."""
    paths = {part: part_path(full, part) for part in parts}
    for path in paths.values():
        for file in artifact_files(path):
            check_writable(file, force=force)
    return paths


def part_io(model: nn.Module, part: str) -> tuple[dict[str, list], dict[str, list]]:
    """Input and output names with shapes (None = the dynamic batch axis)."""
    example = model.example_input(part, batch=1)
    with torch.no_grad():
        output = model.part(part).eval()(example)
    input_name, output_name = model.io_names[part]
    return ({input_name: [None, *example.shape[1:]]}, {output_name: [None, *output.shape[1:]]})


def resolve_calibration(spec: CalibrationSource | None, preset: ModelPreset, *, cache_dir: Path) -> CalibrationSet:
    """A calibration set: as given, or from ``--calib SPEC``.

    SPEC is a ``.npz`` written by ``python -m calibration``, or ``key=value`` pairs:
    ``dataset=dfew,root=DIR,fold=1[,samples=128][,seed=0]`` (HTNet: also
    ``dataset=megc2019,root=HTNET_CLONE,fold=1``, the fold's training subjects) or
    ``videos=a.mp4;b.mp4[,samples=128][,stride=0.25]``.
    A built set is cached in ``cache_dir``.

    Raises:
        DatasetError: no spec, a malformed one, or missing data.
    """
    if isinstance(spec, CalibrationSet):
        return spec
    if not spec:
        raise DatasetError(
            "INT8 needs calibration data: pass --calib CALIB.npz (from `python -m calibration`) "
            "or --calib dataset=NAME,root=DIR,fold=K"
        )
    if isinstance(spec, os.PathLike) or (spec.endswith(".npz") and "=" not in spec):
        return load_calibration(spec)
    try:
        fields = dict(item.split("=", 1) for item in spec.split(","))
    except ValueError:
        raise DatasetError(f"--calib {spec!r}: expected a .npz path or key=value pairs separated by commas") from None
    samples = int(fields.pop("samples", 128))
    if "videos" in fields:
        stride = float(fields.pop("stride", 0.25))
        return build_from_videos(preset, fields["videos"].split(";"), samples=samples, stride=stride)
    unknown = set(fields) - {"dataset", "root", "fold", "seed"}
    if unknown or not {"dataset", "root"} <= set(fields):
        raise DatasetError(
            f"--calib {spec!r}: needs dataset= and root= (optional fold=, samples=, seed=); "
            f"unknown keys {sorted(unknown)}"
        )
    fold = int(fields["fold"]) if "fold" in fields else None
    return build_from_dataset(
        preset,
        dataset=fields["dataset"],
        root=fields["root"],
        fold=fold,
        samples=samples,
        seed=int(fields.get("seed", 0)),
        cache=cache_dir / "flow",
    )


def part_calibration(
    exportable: Exportable, images: np.ndarray, part: str, *, max_frames: int = 512
) -> list[np.ndarray]:
    """Calibration inputs of one part: whole inputs, frames (backbone) or float tokens (head)."""
    from edge_fer.preprocessing.clips import to_model_input

    inputs = to_model_input(images, exportable.preset.preprocessing)
    if part == "full":
        return [inputs[i : i + 1] for i in range(len(inputs))]
    model = exportable.model
    frames = inputs.reshape(-1, *inputs.shape[2:])
    if part == "backbone":
        step = max(1, len(frames) // max_frames)
        chosen = frames[::step][:max_frames]
        return [chosen[i : i + 8] for i in range(0, len(chosen), 8)]
    float_backbone = load_model(exportable.checkpoint)[0].backbone if exportable.qat else model.backbone
    with torch.no_grad():
        tokens = float_backbone.eval()(torch.from_numpy(frames)).numpy()
    tokens = tokens.reshape(len(inputs), inputs.shape[1], *tokens.shape[1:])
    return [tokens[i : i + 1] for i in range(len(tokens))]


def add_evaluation_arguments(parser: argparse.ArgumentParser) -> None:
    """The exporters' ``--dataset/--root/--fold`` to evaluate the export on (old: ``--eval-*``)."""
    add_data_arguments(
        parser, what="evaluation after export (recorded in the sidecar)", old_prefix="eval-", split=False
    )


def describe_and_evaluate(
    path: Path,
    exportable: Exportable,
    part: str,
    precision: str,
    *,
    quantization: dict | None,
    evaluation: DataSpec | None = None,
    extra: dict | None = None,
    log: Callable[[str], None] = silent,
) -> None:
    """Write the sidecar; with ``evaluation``, evaluate the full-model artifact on that data and
    record the metrics in the sidecar too. ``log`` gets the metrics and a "wrote" line."""
    inputs, outputs = part_io(exportable.model, part)
    if "features" in exportable.payload:  # HTNet: how its flow input was made
        extra = {**(extra or {}), "features": exportable.payload["features"]}
    fields = dict(
        preset=exportable.preset,
        model_kind=exportable.kind,
        part=part,
        inputs=inputs,
        outputs=outputs,
        precision=precision,
        quantization=quantization,
        source=exportable.source(),
        tools=tool_versions(),
        extra=extra,
    )
    write_sidecar(path, **fields)
    if evaluation is not None and part == "full":
        from edge_fer.evaluation import evaluate_artifact

        report = evaluate_artifact(
            path, dataset=evaluation.dataset, root=evaluation.root, fold=evaluation.fold, split=evaluation.split
        )
        metrics = {
            k: report[k] for k in ("data", "dataset", "fold", "split", "uar", "war", "uf1", "samples") if k in report
        }
        write_sidecar(path, **fields, metrics=metrics)
        summary = f"{metrics['data']} {metrics['dataset']} UAR {metrics['uar']:.4f} WAR {metrics['war']:.4f}"
        log(f"  {path.name}: {summary}")
    method = f", {quantization['method']}" if quantization else ""
    log(f"wrote {path} ({part}, {precision}{method})")
