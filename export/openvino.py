"""Export a checkpoint to OpenVINO IR in FP32, FP16 or INT8.

    python -m export.openvino --checkpoint RUN/best.pt --precision fp32|fp16|int8 [--qat]
        [--calib SPEC] [--max-drop 0.01 --val SPEC] --out DIR [--dataset D --root DIR --fold K] [--force]

Writes ``DIR/model.xml`` + ``.bin`` (and for STT ``DIR/model.backbone.xml``,
``DIR/model.head.xml``, the streaming pair: ``edge_fer.artifacts.part_path``), each with its
metadata sidecar. From Python: ``export_openvino(checkpoint, out, precision=...)``.

- fp32: the model as is. OpenVINO runs it in bf16 on CPUs that support bf16 unless told
  ``INFERENCE_PRECISION_HINT=f32``; edge-fer's runtime and eval say which they use.
- fp16: weights stored as float16 (half the size; GPUs and NPUs compute in fp16).
- int8 (post-training): NNCF on the FP32 IR, ``ModelType.TRANSFORMER`` (LayerNorm, Softmax
  and GELU stay in float), full bias correction, calibrated on ``--calib``; an STT's frame
  path (``--frame-path``) stays in float (``FLOAT_SCOPE``). Each part is
  quantized with its own inputs (frames for the backbone, tokens for the head).
  ``--max-drop`` switches to NNCF's accuracy-controlled quantization: layers are returned to
  float until the metric on ``--val`` drops by at most that much - UAR on a labelled set
  (never the test split), or top-1 agreement with the float model on face clips from
  videos (what matters on real cameras). The STT parts are quantized without control.
- int8 from a QAT checkpoint (``python -m train.stt --qat``): the trained fake-quantizers
  become the IR's INT8 (``--qat`` asserts that the checkpoint is one).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edge_fer.cli.args import PRECISION_CHOICES, Parser
from edge_fer.data.spec import DataSpec
from edge_fer.errors import ArtifactError
from export.settings import CalibrationSource, QuantizationSettings, silent, usage_errors

__all__ = [
    "export_openvino",
    "build_parser",
    "main",
    "convert_part",
    "post_training_int8",
    "accuracy_controlled_int8",
]


def convert_part(exportable, part: str):
    """The part as an OpenVINO model (traced from torch)."""
    import openvino as ov
    import torch

    example = exportable.example(part, batch=1)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ov.convert_model(exportable.module(part), example_input=example)
    # Traced models have unnamed tensors; use the ONNX names so every artifact has the same I/O.
    input_name, output_name = exportable.model.io_names[part]
    model.inputs[0].get_tensor().set_names({input_name})
    model.outputs[0].get_tensor().set_names({output_name})
    # Tracing leaves every axis open; only the batch is, as in the ONNX (static axes also let
    # the runtime compile the head for a fixed shape, which runs faster).
    batch_free = [ov.Dimension.dynamic(), *example.shape[1:]]
    model.reshape({model.inputs[0]: ov.PartialShape(batch_free)})
    return model


def post_training_int8(ov_model, samples: list[np.ndarray]):
    """NNCF post-training INT8 of an OpenVINO model: transformer mode (LayerNorm, Softmax and
    GELU stay in float), full bias correction, every calibration sample used; an STT's frame
    path stays in float (``FLOAT_SCOPE``)."""
    import nncf

    return nncf.quantize(
        ov_model,
        nncf.Dataset(samples),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(samples),
        fast_bias_correction=False,
        ignored_scope=_float_scope(),
    )


# Layers post-training INT8 leaves in float. An STT's frame path (``STTHead.frame_fc``: the
# frame model's classifier on the clip's mean token, 96x7 multiply-adds for stt_tiny) reads
# class margins that NNCF's scales for that MatMul's input (SmoothQuant's and the INT8 grid's)
# erased: the demo's STT kept 52 % of its FP32 labels on the synthetic test fold (95 % with the
# path in float) and read CK+ at 0.347 UAR against 0.563 (0.529 in float; 2-core Intel Xeon).
FLOAT_SCOPE = (".*frame_fc.*",)


def _float_scope():
    import nncf

    return nncf.IgnoredScope(patterns=list(FLOAT_SCOPE), validate=False)  # models without the path: nothing to skip


def _save(model, path: Path, *, compress_to_fp16: bool) -> None:
    """Save atomically: .bin and .xml go to temporary names first."""
    import openvino as ov

    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.stem}.") as tmp:
        staged = Path(tmp) / path.name
        ov.save_model(model, str(staged), compress_to_fp16=compress_to_fp16)
        staged.with_suffix(".bin").replace(path.with_suffix(".bin"))
        staged.replace(path)


def accuracy_controlled_int8(ov_model, calibration: list[np.ndarray], items: list, score, max_drop: float):
    """NNCF accuracy-controlled INT8: layers go back to float until ``score`` on ``items``
    ((input, target) pairs) drops by at most ``max_drop``.

    ``score(targets, predictions) -> float`` (higher is better). Returns the quantized model
    and the float and INT8 scores measured here: when NNCF cannot reach the target it still
    returns a model (seen: one far worse than plain PTQ), so the caller checks.
    """
    import nncf
    import openvino as ov

    core = ov.Core()

    def validate(model, pairs) -> float:
        # NNCF passes a compiled model (an ov.Model in some versions)
        compiled = (
            model
            if isinstance(model, ov.CompiledModel)
            else core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        )
        predictions = [int(np.argmax(compiled(x)[0])) for x, _ in pairs]
        return score([int(y) for _, y in pairs], predictions)

    quantized = nncf.quantize_with_accuracy_control(
        ov_model,
        nncf.Dataset(calibration),
        nncf.Dataset(items),
        validation_fn=validate,
        max_drop=max_drop,
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(calibration),
        ignored_scope=_float_scope(),
    )
    return quantized, validate(ov_model, items), validate(quantized, items)


def _accuracy_controlled(ov_model, exportable, calibration, val, max_drop: float):
    """Accuracy-controlled INT8 for the exporter, written only when it reaches its target.

    A labelled ``val`` (from a dataset) is scored by UAR; an unlabelled one (face clips from
    videos) by top-1 agreement with the float model - the quantity a deployment cares about.
    """
    import openvino as ov

    from edge_fer.metrics import classification_report
    from edge_fer.preprocessing.clips import to_model_input

    inputs = to_model_input(val.images, exportable.preset.preprocessing)
    labelled = bool(np.all(val.labels >= 0))
    if labelled:
        targets = val.labels
    else:
        reference = ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        targets = np.array([int(np.argmax(reference(inputs[i : i + 1])[0])) for i in range(len(inputs))])
    classes = exportable.preset.classes

    def score(truth: list[int], predictions: list[int]) -> float:
        if labelled:
            return classification_report(truth, predictions, classes)["uar"]
        return float(np.mean(np.array(predictions) == np.array(truth)))

    items = [(inputs[i : i + 1], targets[i]) for i in range(len(inputs))]
    quantized, before, after = accuracy_controlled_int8(ov_model, calibration, items, score, max_drop)
    metric = "uar" if labelled else "top-1 agreement with fp32"
    if before - after > max_drop + 1e-9:
        raise ArtifactError(
            f"accuracy-controlled INT8 missed its target: {metric} {after:.4f} vs {before:.4f} float on {len(items)} "
            f"validation samples (max drop {max_drop}); give more validation data (--val) or use plain PTQ/QAT"
        )
    return quantized, {**val.describe(), "metric": metric, "float": before, "int8": after}


def export_openvino(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    precision: str,
    parts: str | Sequence[str] = "all",
    calibration: CalibrationSource | None = None,
    quantization: QuantizationSettings | None = None,
    evaluation: DataSpec | None = None,
    force: bool = False,
    log: Callable[[str], None] = silent,
) -> list[Path]:
    """Export a checkpoint to OpenVINO IR, each part with its metadata sidecar.

    Args:
        checkpoint: ``RUN/best.pt`` (float; for int8 also a QAT checkpoint).
        out: the output folder: ``model.xml`` + ``.bin``, the parts beside it (``model.head.xml``).
        precision: "fp32", "fp16" (weights) or "int8".
        parts: "all" (the default: STT's streaming pair too), one part, or several.
        calibration: int8 post-training: a ``CalibrationSet``, a ``.npz`` from ``python -m
            calibration`` or a ``--calib`` spec (``dataset=NAME,root=DIR,fold=K[,samples=N]``).
            Sets built from a spec are cached in ``out``.
        quantization: int8: the method (default: post-training, or the trained INT8 of a QAT
            checkpoint) and its settings. Calibration and quantization are for int8 only.
        evaluation: data to evaluate the exported full model on; the metrics go in its sidecar.
        force: overwrite existing files (without it nothing is written if one exists).
        log: called with a line per written file (and the evaluation's metrics).

    Returns:
        The written ``.xml`` files, in the model's part order.

    Raises:
        ExportRequestError: a precision or method the checkpoint does not allow, a part it lacks.
        ArtifactError: accuracy-controlled INT8 that missed its target (nothing written for it).
        DatasetError: int8 post-training without calibration data.
    """
    from export.common import describe_and_evaluate, load_exportable, part_outputs, resolve_calibration, select_parts

    if precision not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {PRECISION_CHOICES}, got {precision!r}")
    out = Path(out)
    settings = quantization or QuantizationSettings()
    exportable = load_exportable(checkpoint)
    method = settings.method_for(checkpoint, qat=exportable.qat, precision=precision)
    paths = part_outputs(out / "model.xml", select_parts(exportable, parts), force=force)  # refuse before any work
    calibration_set = val = None
    if method in ("ptq", "accuracy-controlled"):
        calibration_set = resolve_calibration(calibration, exportable.preset, cache_dir=out)
    if method == "accuracy-controlled":
        val = resolve_calibration(settings.validation, exportable.preset, cache_dir=out)
    for part, path in paths.items():
        ov_model, record = _quantized_part(exportable, part, method, calibration_set, val, settings.max_drop)
        _save(ov_model, path, compress_to_fp16=precision == "fp16")
        describe_and_evaluate(path, exportable, part, precision, quantization=record, evaluation=evaluation, log=log)
    return list(paths.values())


def _quantized_part(exportable, part: str, method: str | None, calibration, val, max_drop: float | None):
    """The part as an OpenVINO model, quantized by ``method``, and its quantization record."""
    from export.common import part_calibration

    ov_model = convert_part(exportable, part)
    if method == "qat":
        return ov_model, {"method": "nncf-qat", "target": exportable.qat_target}
    if method is None:
        return ov_model, None
    samples = part_calibration(exportable, calibration.images, part)
    record = {"method": "nncf-ptq", "calibration": calibration.describe(), "model_type": "transformer"}
    if method == "accuracy-controlled" and part == "full":  # the STT parts are quantized without control
        ov_model, validation = _accuracy_controlled(ov_model, exportable, samples, val, max_drop)
        record.update(method="nncf-ptq-accuracy-control", max_drop=max_drop, validation=validation)
    else:
        ov_model = post_training_int8(ov_model, samples)
    return ov_model, record


def build_parser() -> Parser:
    from export.common import add_evaluation_arguments

    parser = Parser(prog="python -m export.openvino", description="Export a checkpoint to OpenVINO IR.")
    parser.add_argument("--checkpoint", required=True, type=Path, help="RUN/best.pt (float, or QAT for int8)")
    parser.add_argument("--precision", required=True, choices=PRECISION_CHOICES)
    parser.add_argument("--qat", action="store_true", help="int8 from a QAT checkpoint (python -m train.stt --qat)")
    parser.add_argument("--calib", help="int8 post-training: CALIB.npz or dataset=NAME,root=DIR,fold=K[,samples=N]")
    parser.add_argument("--max-drop", type=float, help="int8: accuracy-controlled quantization, largest drop (0.01)")
    parser.add_argument(
        "--val",
        help="with --max-drop: validation set (same forms as --calib; never test data): "
        "labelled -> UAR, videos -> agreement with the float model",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    add_evaluation_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_drop is not None and not args.val:
        parser.error("--max-drop needs --val (a labelled validation set, never the test split)")
    method = "qat" if args.qat else "accuracy-controlled" if args.max_drop is not None else None
    with usage_errors(parser, (ValueError,)):
        quantization = QuantizationSettings(method=method, max_drop=args.max_drop, validation=args.val)
    with usage_errors(parser):
        export_openvino(
            args.checkpoint,
            args.out,
            precision=args.precision,
            calibration=args.calib,
            quantization=quantization,
            evaluation=DataSpec.from_args(args),
            force=args.force,
            log=print,
        )
    return 0


if __name__ == "__main__":
    from edge_fer.cli.main import run_tool

    run_tool(main, "export.openvino")
