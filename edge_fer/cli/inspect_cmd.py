"""``edge-fer inspect``: what an artifact (or checkpoint) is, after checking it is intact."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_fer.artifacts import is_artifact


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("inspect", help="print an artifact's verified metadata (or a checkpoint's)")
    parser.add_argument("path", type=Path, help="model.onnx / model.xml / model.engine, or RUN/best.pt")
    parser.add_argument("--json", action="store_true", help="the whole metadata as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if _is_exported_detector(args.path):
        return _inspect_detector(args.path, as_json=args.json)
    if is_artifact(args.path):
        from edge_fer.artifacts import read_artifact

        artifact = read_artifact(args.path)  # verifies every file's sha256
        meta = artifact.meta
        if args.json:
            print(json.dumps(meta, indent=2))
            return 0
        preset = artifact.preset
        pre = preset.preprocessing
        quant = meta.get("quantization", {})
        print(f"{args.path}  [{artifact.kind}, verified]")
        print(f"  model      {artifact.model_kind} {preset.name}, part {artifact.part}")
        print(
            f"  precision  {artifact.precision}" + (f"  ({quant['method']})" if quant.get("method") != "none" else "")
        )
        if quant.get("calibration"):
            cal = quant["calibration"]
            print(f"  calibration {cal.get('samples')} samples, sha256 {cal.get('sha256', '')[:16]}")
        for name, shape in artifact.inputs.items():
            print(f"  input      {name} {['N' if d is None else d for d in shape]}")
        for name, shape in artifact.outputs.items():
            print(f"  output     {name} {['N' if d is None else d for d in shape]}")
        print(f"  classes    {', '.join(preset.classes)}")
        print(
            f"  preprocess {pre.input_size[0]}x{pre.input_size[1]} {''.join(pre.channels)}, /{pre.value_scale:g}, "
            f"mean {pre.mean}, std {pre.std}"
            + (f", {pre.clip_len} frames at {pre.fps:g} fps" if pre.clip_len > 1 else "")
        )
        if meta.get("metrics"):
            m = meta["metrics"]
            print(
                f"  metrics    {m.get('data')} {m.get('dataset')} fold {m.get('fold')}: UAR {m.get('uar'):.4f} "
                f"WAR {m.get('war'):.4f}"
            )
        print(f"  source     {meta['source'].get('checkpoint')} (sha256 {str(meta['source'].get('sha256'))[:16]})")
        print(f"  tools      {', '.join(f'{k} {v}' for k, v in meta.get('tools', {}).items())}")
        return 0
    from edge_fer.models.checkpoint import read_checkpoint

    payload = read_checkpoint(args.path)
    summary = {k: payload.get(k) for k in ("format", "model_kind", "preset", "dataset", "epoch", "val", "qat_target")}
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _is_exported_detector(path: Path) -> bool:
    from edge_fer.artifacts import sidecar_path
    from edge_fer.runtime.detection import DETECTOR_FORMAT

    try:
        return json.loads(sidecar_path(path).read_text()).get("format") == DETECTOR_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _inspect_detector(path: Path, *, as_json: bool) -> int:
    """A face detector from ``python -m export.detector``: its calibration and check."""
    from edge_fer.runtime.detection import read_detector_model

    meta = read_detector_model(path)  # verifies every file's sha256
    if as_json:
        print(json.dumps(meta, indent=2))
        return 0
    quant, check = meta.get("quantization", {}), meta.get("check", {})
    print(f"{path}  [face detector, openvino, verified]")
    print(f"  model      {meta.get('weights')}")
    print(f"  precision  {meta.get('precision')}  ({quant.get('method')}, {quant.get('frames')} calibration frames)")
    if check:
        print(
            f"  check      {check.get('matched')} of {check.get('float_faces')} float faces found on "
            f"{check.get('frames')} frames, box IoU median {check.get('iou_median', 0):.3f}"
        )
    print(f"  tools      {', '.join(f'{k} {v}' for k, v in meta.get('tools', {}).items())}")
    return 0
