"""Top-1 agreement between an FP32 artifact and quantized ones on real face video clips.

    python -m benchmarks.agreement --reference model.onnx --compare int8/model.xml ... [--video V] [--seconds 60]

Without ``--video`` a video of real faces is made from photos shipped in installed packages
(``edge_fer.data.face_video``: Eileen Collins and Grace Hopper, moving, with expression
motion). Clips are made exactly as the runtime makes them (detect, align, window) and run
through every artifact; the share of clips on which each one predicts the reference's
class is reported, with the number of clips.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from edge_fer.artifacts import read_artifact
from edge_fer.cli.args import Parser
from edge_fer.cli.main import run_tool
from edge_fer.errors import ArtifactError
from edge_fer.preprocessing.clips import to_model_input
from edge_fer.runtime.backends import open_backend

__all__ = ["predictions", "main"]


def predictions(
    path: Path, inputs: np.ndarray, *, backend: str = "auto", batch: int = 8, precision: str | None = None
) -> np.ndarray:
    """Logits of an artifact; OpenVINO computes in ``precision`` (default f32)."""
    artifact = read_artifact(path)
    name, output = next(iter(artifact.inputs)), next(iter(artifact.outputs))
    if backend in ("auto", "openvino"):
        precision = precision or "f32"
    with open_backend(path, backend=backend, precision=precision) as runner:
        return np.concatenate(
            [runner.infer({name: inputs[i : i + batch]})[output] for i in range(0, len(inputs), batch)]
        )


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m benchmarks.agreement", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", required=True, type=Path, help="the FP32 full-model artifact")
    parser.add_argument("--compare", required=True, nargs="+", type=Path, help="quantized full-model artifacts")
    parser.add_argument("--video", type=Path, help="a video with faces (default: made from shipped photos)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the made video")
    parser.add_argument("--stride", type=float, default=0.25, help="seconds between clips")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--json", type=Path, help="also write the result as JSON")
    args = parser.parse_args(argv)

    from edge_fer.runtime.clips import clips_from_video
    from edge_fer.runtime.detection import open_face_detector

    reference = read_artifact(args.reference)
    if reference.part != "full" or reference.preset.family != "stt":
        raise ArtifactError(f"{args.reference}: agreement on video clips needs a full STT model")
    pre = reference.preset.preprocessing
    with tempfile.TemporaryDirectory() as tmp:
        video = args.video
        if video is None:
            from edge_fer.data.face_video import write_face_video

            video = Path(tmp) / "faces.mp4"
            write_face_video(video, seconds=args.seconds)
        clips = clips_from_video(video, pre, open_face_detector(), stride=args.stride)
    if not clips:
        raise ArtifactError("no face clips in the video")
    inputs = to_model_input(np.stack(clips), pre)
    base = predictions(args.reference, inputs, backend=args.backend).argmax(1)
    result = {
        "video": str(args.video or "generated from shipped photos"),
        "clips": len(clips),
        "reference": str(args.reference),
        "agreement": {},
    }
    for path in args.compare:
        other = read_artifact(path)
        if other.preset.classes != reference.preset.classes:
            raise ArtifactError(f"{path} predicts other classes than {args.reference}")
        agree = float((predictions(path, inputs, backend=args.backend).argmax(1) == base).mean())
        result["agreement"][str(path)] = agree
        print(f"{path}: top-1 agreement with {args.reference.name} on {len(clips)} real-face clips: {agree:.2%}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    run_tool(main, "python -m benchmarks.agreement")
