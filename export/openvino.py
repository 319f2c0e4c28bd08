"""Export a checkpoint to OpenVINO IR in FP32, FP16 or INT8.

    python -m export.openvino --checkpoint RUN/best.pt --precision fp32|fp16|int8 [--qat]
        [--calib SPEC] [--max-drop 0.01 --val SPEC] --out DIR [--force]

Writes ``DIR/model.xml`` + ``.bin`` (and for STT ``DIR/backbone.xml``, ``DIR/head.xml``, the
streaming pair), each with its metadata sidecar.

- fp32: the model as is. OpenVINO runs it in bf16 on CPUs that support bf16 unless told
  ``INFERENCE_PRECISION_HINT=f32``; edge-fer's runtime and eval say which they use.
- fp16: weights stored as float16 (half the size; GPUs and NPUs compute in fp16).
- int8 (post-training): NNCF on the FP32 IR, ``ModelType.TRANSFORMER`` (LayerNorm, Softmax
  and GELU stay in float), full bias correction, calibrated on ``--calib``. Each part is
  quantized with its own inputs (frames for the backbone, tokens for the head).
  ``--max-drop`` switches to NNCF's accuracy-controlled quantization: layers are returned to
  float until the metric on ``--val`` drops by at most that much - UAR on a labelled set
  (never the test split), or top-1 agreement with the float model on face clips from
  videos (what matters on real cameras). The STT parts are quantized without control.
- int8 from a QAT checkpoint (``python -m train.stt --qat``): the trained fake-quantizers
  become the IR's INT8 (``--qat`` asserts that the checkpoint is one).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np

from edge_fer.cli.args import Parser
from edge_fer.errors import ArtifactError
from edge_fer.fileio import check_writable

__all__ = ["main", "convert_part", "post_training_int8", "accuracy_controlled_int8"]


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
    GELU stay in float), full bias correction, every calibration sample used."""
    import nncf

    return nncf.quantize(
        ov_model,
        nncf.Dataset(samples),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(samples),
        fast_bias_correction=False,
    )


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


def main(argv: list[str] | None = None) -> int:
    from export.common import (
        add_eval_arguments,
        describe_and_evaluate,
        load_exportable,
        part_calibration,
        resolve_calibration,
    )

    parser = Parser(prog="python -m export.openvino", description="Export a checkpoint to OpenVINO IR.")
    parser.add_argument("--checkpoint", required=True, type=Path, help="RUN/best.pt (float, or QAT for int8)")
    parser.add_argument("--precision", required=True, choices=("fp32", "fp16", "int8"))
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
    add_eval_arguments(parser)
    args = parser.parse_args(argv)

    exportable = load_exportable(args.checkpoint)
    if args.qat and not exportable.qat:
        parser.error(f"--qat: {args.checkpoint} is not a QAT checkpoint (train one with python -m train.stt --qat)")
    if exportable.qat and args.precision != "int8":
        parser.error(f"{args.checkpoint} is quantization-aware-trained: export it with --precision int8")
    if args.max_drop is not None and not args.val:
        parser.error("--max-drop needs --val (a labelled validation set, never the test split)")
    ptq = args.precision == "int8" and not exportable.qat
    parts = exportable.parts
    paths = {p: args.out / ("model.xml" if p == "full" else f"{p}.xml") for p in parts}
    for path in paths.values():  # refuse before any work
        check_writable(path, force=args.force)
        check_writable(path.with_suffix(".bin"), force=args.force)
    calibration = resolve_calibration(args.calib, exportable.preset, cache_dir=args.out) if ptq else None
    val = resolve_calibration(args.val, exportable.preset, cache_dir=args.out) if args.max_drop is not None else None

    for part, path in paths.items():
        ov_model = convert_part(exportable, part)
        quantization = None
        if ptq:
            samples = part_calibration(exportable, calibration.images, part)
            validation = None
            if args.max_drop is not None and part == "full":
                ov_model, validation = _accuracy_controlled(ov_model, exportable, samples, val, args.max_drop)
                method = "nncf-ptq-accuracy-control"
            else:
                ov_model = post_training_int8(ov_model, samples)
                method = "nncf-ptq"
            quantization = {"method": method, "calibration": calibration.describe(), "model_type": "transformer"}
            if validation is not None:
                quantization.update(max_drop=args.max_drop, validation=validation)
        elif exportable.qat:
            quantization = {"method": "nncf-qat", "target": exportable.qat_target}
        _save(ov_model, path, compress_to_fp16=args.precision == "fp16")
        describe_and_evaluate(path, exportable, part, args.precision, quantization=quantization, args=args)
        print(f"wrote {path} ({part}, {args.precision}{', ' + quantization['method'] if quantization else ''})")
    return 0


if __name__ == "__main__":
    from edge_fer.cli.main import run_tool

    run_tool(main, "export.openvino")
