"""TensorRT engines - built on the target device - and the engine-ready ONNX they come from.

    python -m export.trt (--onnx model.onnx | --checkpoint RUN/best.pt) --precision fp16|int8
        --out model.engine|model.plan [--calib SPEC] [--part full|backbone|head]
        [--workspace MB] [--timing-cache FILE] [--dla-core N] [--max-batch N] [--force]

From Python: ``export_tensorrt(source, out, precision=..., engine=EngineSettings(...))``.

Engines are specific to the GPU and the TensorRT version, so run this on the Jetson (or
the GPU) that will use the engine. Supports TensorRT 8.6, 10.x and 11.x, with explicit
quantization only (Q/DQ in the ONNX; the implicit-calibration INT8 path was removed in
TensorRT 11):

- the engine-ready ONNX is written first, beside ``--out``: ``model.fp16.onnx`` (float16
  graph, LayerNorm/Softmax in float32) or ``model.int8.onnx`` (signed INT8 Q/DQ, zero-point
  0, per-channel weights - from a TensorRT-target QAT checkpoint, or post-training with
  ``--calib``), checked against TensorRT's Q/DQ rules, with its metadata sidecar;
- TensorRT < 11 builds "weakly typed" with the FP16 (+INT8) builder flags; TensorRT >= 11
  is always strongly typed: precision comes from the graph itself;
- the optimization profile takes batches 1..``--max-batch`` (the runtime splits larger ones);
  with ``--dla-core`` it is fixed at ``--max-batch`` (DLA needs min = opt = max; the runtime
  pads smaller batches), and the layers that fall back to the GPU are listed;
- a ``--timing-cache`` made on another GPU or TensorRT version is not used (said on stderr)
  and is replaced by this build's;
- the engine gets a sidecar too (TensorRT version, GPU name), and the runtime loads only
  engines whose sha256 matches it.

Exit codes: 0 engine built; 1 error (one line on stderr); 2 usage error; 3 TensorRT is not
installed here - the engine-ready ONNX and its sidecar were written and the ``trtexec``
command that builds the engine on the target is printed.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edge_fer.artifacts import ARTIFACT_KINDS, read_artifact, tool_versions, write_sidecar
from edge_fer.cli.args import PRECISION_CHOICES, Parser
from edge_fer.errors import ArtifactError, BackendError
from edge_fer.fileio import atomic_output, check_writable
from edge_fer.presets import ModelPreset
from export.settings import (
    CALIBRATION_METHODS,
    CalibrationSource,
    ExportRequestError,
    QuantizationSettings,
    check_artifact_suffix,
    silent,
    usage_errors,
)

__all__ = [
    "EXIT_NO_TENSORRT",
    "PRECISIONS",
    "EngineSettings",
    "TensorRTExport",
    "export_tensorrt",
    "main",
    "build_parser",
    "build_engine",
    "trtexec_commands",
    "engine_ready_onnx",
]

EXIT_NO_TENSORRT = 3
PRECISIONS = PRECISION_CHOICES[1:]  # fp16, int8: an FP32 engine is not worth building


@dataclass(frozen=True)
class EngineSettings:
    """How TensorRT builds an engine.

    Attributes:
        max_batch: the largest batch (faces or tracks) in one run; the runtime splits larger
            ones. With ``dla_core`` the only batch (DLA needs min = opt = max).
        workspace: the builder's workspace in MiB.
        timing_cache: a timing cache to reuse and update (faster rebuilds); one made on
            another GPU or TensorRT version is replaced.
        dla_core: build for this DLA core (AGX Orin, Orin NX), GPU fallback on.
    """

    max_batch: int = 8
    workspace: int = 1024
    timing_cache: Path | None = None
    dla_core: int | None = None

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch (--max-batch) must be at least 1, got {self.max_batch}")
        if self.dla_core is not None and self.dla_core < 0:
            raise ValueError(f"dla_core (--dla-core) is a DLA core number (0, 1, ...), got {self.dla_core}")


@dataclass(frozen=True)
class TensorRTExport:
    """What ``export_tensorrt`` wrote.

    Attributes:
        engine_ready: the FP16 or INT8 Q/DQ ONNX the engine is built from (with its sidecar).
        engine: the engine, or None where TensorRT is not installed.
        commands: then, the ``trtexec`` lines that build it on the target ("tensorrt<11",
            "tensorrt>=11").
    """

    engine_ready: Path
    engine: Path | None
    commands: dict[str, str] = field(default_factory=dict)


def tensorrt_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorrt") is not None


def profile_batches(max_batch: int, *, fixed: bool) -> tuple[int, int, int]:
    """(min, opt, max) batch of the optimization profile; ``fixed`` (DLA) makes all three ``max_batch``."""
    if fixed:
        return max_batch, max_batch, max_batch
    return 1, max(1, max_batch // 2), max_batch


def trtexec_commands(
    onnx_path: Path,
    engine: Path,
    inputs: dict[str, list],
    precision: str,
    *,
    max_batch: int,
    workspace: int,
    dla_core: int | None = None,
) -> dict[str, str]:
    """The trtexec command lines for TensorRT < 11 (weakly typed) and >= 11 (strongly typed).

    TensorRT 11's trtexec has no --fp16/--int8 (precision comes from the graph's casts and Q/DQ).
    """
    shapes = []
    batches = profile_batches(max_batch, fixed=dla_core is not None)
    for flag, batch in zip(("--minShapes", "--optShapes", "--maxShapes"), batches):
        spec = ",".join(
            f"{name}:{'x'.join(str(batch if d is None else d) for d in shape)}" for name, shape in inputs.items()
        )
        shapes.append(f"{flag}={spec}")
    base = f"trtexec --onnx={onnx_path} --saveEngine={engine} {' '.join(shapes)} --memPoolSize=workspace:{workspace}M"
    if dla_core is not None:
        base += f" --useDLACore={dla_core} --allowGPUFallback"
    flags = "--fp16" if precision == "fp16" else "--int8 --fp16"
    return {"tensorrt<11": f"{base} {flags}", "tensorrt>=11": base}


def check_dla_core(builder, dla_core: int, tensorrt_version: str) -> None:
    """Refuse a DLA core the device does not have (``builder.num_DLA_cores``)."""
    cores = builder.num_DLA_cores
    if cores == 0:
        raise BackendError(
            f"--dla-core {dla_core}: TensorRT {tensorrt_version} sees no DLA on this device (Orin Nano and Thor "
            "have none; TensorRT 11.0-11.3 support none, 11.4.1 only on AGX Orin with JetPack 7.2.2+): drop --dla-core"
        )
    if not 0 <= dla_core < cores:
        raise BackendError(f"--dla-core {dla_core}: this device has {cores} DLA core(s), numbered 0 to {cores - 1}")


def layers_off_dla(network, config) -> list[str]:
    """Names of the layers TensorRT cannot place on the DLA (they run on the GPU with GPU_FALLBACK)."""
    layers = (network.get_layer(i) for i in range(network.num_layers))
    return [layer.name for layer in layers if not config.can_run_on_DLA(layer)]


def attach_timing_cache(config, path: Path | None) -> tuple[object | None, str]:
    """Attach the timing cache at ``path`` to ``config``; a mismatched or damaged one is replaced.

    Returns the cache object (to serialize after the build) and what happened to the file:
    "none", "new", "reused" or "replaced".
    """
    if path is None:
        return None, "none"
    if not path.is_file():
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
        return cache, "new"
    cache = config.create_timing_cache(path.read_bytes())
    # False (or no cache) when it was made on another GPU or TensorRT version: TensorRT would build without it
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return cache, "reused"
    print(
        f"timing cache {path} was made on another GPU or TensorRT version (or is damaged): not used; this build "
        "replaces it",
        file=sys.stderr,
    )
    cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache, "replaced"


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    *,
    precision: str,
    inputs: dict[str, list],
    max_batch: int,
    workspace: int,
    timing_cache: Path | None,
    dla_core: int | None,
    force: bool,
) -> dict:
    """Build and atomically write a serialized engine with the TensorRT Python API.

    Returns what the sidecar records (TensorRT version, typing mode, device).
    """
    import tensorrt as trt

    major = int(trt.__version__.split(".")[0])
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if dla_core is not None:
        check_dla_core(builder, dla_core, trt.__version__)
    flags = 0
    if major < 10:  # explicit batch was opt-in before TensorRT 10
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    strongly_typed = major >= 11
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ArtifactError(f"TensorRT cannot parse {onnx_path}: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace << 20)
    if not strongly_typed:  # weakly typed: precisions are builder flags
        config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # honours the Q/DQ nodes (explicit quantization)
    profile = builder.create_optimization_profile()
    batches = profile_batches(max_batch, fixed=dla_core is not None)
    for name, shape in inputs.items():
        smallest, typical, largest = (tuple(b if d is None else d for d in shape) for b in batches)
        profile.set_shape(name, smallest, typical, largest)
    config.add_optimization_profile(profile)
    on_gpu: list[str] = []
    if dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        on_gpu = layers_off_dla(network, config)
        if on_gpu:
            print(
                f"DLA core {dla_core}: {len(on_gpu)} of {network.num_layers} layers cannot run on the DLA and run on "
                f"the GPU: {', '.join(on_gpu[:8])}{' ...' if len(on_gpu) > 8 else ''}",
                file=sys.stderr,
            )
    cache, cache_status = attach_timing_cache(config, timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ArtifactError(f"TensorRT could not build an engine from {onnx_path} (see the log above)")
    with atomic_output(engine_path, force=force) as tmp:
        tmp.write_bytes(bytes(serialized))
    if cache is not None:
        with atomic_output(timing_cache, force=True) as tmp:
            tmp.write_bytes(bytes(cache.serialize()))
    info = {
        "tensorrt": trt.__version__,
        "strongly_typed": strongly_typed,
        "profile_batches": list(batches),
        "dla_core": dla_core,
        "timing_cache": cache_status,
    }
    if dla_core is not None:
        info["dla_gpu_fallback_layers"] = len(on_gpu)
    return {**info, **_device_properties()}


def _device_properties() -> dict:
    """GPU name and compute capability through cuda-python, if it is installed and works."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python 13 (12.6.2 has it too)
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            return {}
    err, props = cudart.cudaGetDeviceProperties(0)
    if int(err) != 0:  # e.g. cuda-python 13 on a CUDA 12 driver: the sidecar just lacks the GPU name
        return {}
    return {"gpu": props.name.decode(errors="replace").strip("\x00"), "sm": f"{props.major}.{props.minor}"}


def export_tensorrt(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    precision: str,
    part: str = "full",
    calibration: CalibrationSource | None = None,
    quantization: QuantizationSettings | None = None,
    engine: EngineSettings = EngineSettings(),
    force: bool = False,
    log: Callable[[str], None] = silent,
) -> TensorRTExport:
    """Write the engine-ready ONNX for TensorRT, then (where TensorRT is installed) build the engine.

    Args:
        source: a checkpoint (``RUN/best.pt``: float, or QAT for TensorRT), or an ONNX: an FP32
            one from ``export.onnx`` (for fp16) or an engine-ready ``model.fp16/int8.onnx``; an
            ONNX needs no torch, so this runs on a Jetson.
        out: the ``.engine`` (or ``.plan``); the engine-ready ONNX goes beside it
            (``model.int8.onnx``).
        precision: "fp16" or "int8".
        part: from a checkpoint: "full", "backbone" or "head" (an ONNX is one part already).
        calibration: int8 post-training from a float checkpoint: a ``CalibrationSet``, a ``.npz``
            or a ``--calib`` spec (a set built from a spec is cached beside ``out``).
        quantization: int8 from a checkpoint: "ptq" (ONNX Runtime, signed symmetric Q/DQ) or
            "qat" and the range estimator; default: as the checkpoint says.
        engine: the builder's settings.
        force: overwrite existing files.
        log: called with a line per written file.

    Returns:
        The engine-ready ONNX and the engine (None without TensorRT, with the commands that
        build it on the target).

    Raises:
        ExportRequestError: ``out`` not a TensorRT file name, a precision or part the source
            does not allow.
        ArtifactError: a QAT checkpoint trained for another target, an INT8 graph that breaks
            TensorRT's Q/DQ rules, a failed build.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    out = check_writable(check_artifact_suffix(out, "tensorrt"), force=force)
    if ARTIFACT_KINDS.get(Path(source).suffix.lower()) == "onnx":
        ready, meta = _from_onnx(Path(source), out, precision, force=force)  # no torch: what runs on a Jetson
    else:
        ready, meta = _from_checkpoint(
            Path(source),
            out,
            precision,
            part=part,
            calibration=calibration,
            quantization=quantization or QuantizationSettings(),
            max_batch=engine.max_batch,
            force=force,
        )
    log(f"engine-ready {precision} ONNX: {ready}")
    inputs = meta["io"]["inputs"]
    if not tensorrt_available():
        commands = trtexec_commands(
            ready,
            out,
            inputs,
            precision,
            max_batch=engine.max_batch,
            workspace=engine.workspace,
            dla_core=engine.dla_core,
        )
        return TensorRTExport(ready, None, commands)
    info = build_engine(
        ready,
        out,
        precision=precision,
        inputs=inputs,
        max_batch=engine.max_batch,
        workspace=engine.workspace,
        timing_cache=engine.timing_cache,
        dla_core=engine.dla_core,
        force=force,
    )
    write_sidecar(
        out,
        preset=ModelPreset.from_dict(meta["model"]["preset"]),
        model_kind=meta["model"]["kind"],
        part=meta["model"]["part"],
        inputs=inputs,
        outputs=meta["io"]["outputs"],
        precision=precision,
        quantization=meta.get("quantization"),
        source=meta.get("source"),
        tools=tool_versions(),
        extra={"tensorrt": info, "engine_ready_onnx": ready.name},
    )
    log(f"wrote {out} (TensorRT {info['tensorrt']}, {precision})")
    return TensorRTExport(ready, out)


def engine_ready_onnx(
    exportable,
    target: Path,
    *,
    precision: str,
    part: str,
    calibration: CalibrationSource | None,
    quantization: QuantizationSettings,
    cache_dir: Path,
) -> dict:
    """Write the FP16 or INT8 Q/DQ ONNX of a checkpoint's ``part`` for TensorRT to ``target``;
    return its quantization record. Calibration sets built from a spec are cached in ``cache_dir``."""
    from export.fp16 import convert_to_fp16
    from export.onnx import export_onnx
    from export.qdq import tensorrt_qdq_violations

    method = quantization.method_for(exportable.checkpoint, qat=exportable.qat, precision=precision)
    if method == "accuracy-controlled":
        raise ExportRequestError(
            "accuracy-controlled INT8 is OpenVINO's (export.openvino --max-drop); TensorRT's "
            "INT8 is post-training (ptq) or from a QAT checkpoint"
        )
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.stem}.") as tmp:
        staged = Path(tmp) / "engine-ready.onnx"
        record: dict = {"method": "none"}
        if method == "qat":
            if exportable.qat_target != "tensorrt":
                raise ArtifactError(
                    f"{exportable.checkpoint} was quantization-aware-trained for {exportable.qat_target} (unsigned "
                    "activations); TensorRT needs signed INT8: retrain with --qat --qat-target tensorrt, or give the "
                    "float checkpoint and --calib for post-training quantization"
                )
            export_onnx(exportable.model, staged, part=part)
            record = {"method": "nncf-qat", "target": "tensorrt", "format": "qdq"}
        else:
            float_onnx = Path(tmp) / "float.onnx"
            export_onnx(exportable.model, float_onnx, part=part)
            if precision == "fp16":
                convert_to_fp16(float_onnx, staged)
            else:
                record = _post_training(
                    exportable, part, float_onnx, staged, calibration, quantization.calibration_method, cache_dir
                )
        if precision == "int8":
            problems = tensorrt_qdq_violations(staged)
            if problems:
                raise ArtifactError(f"the INT8 ONNX breaks TensorRT's Q/DQ rules: {'; '.join(problems[:3])}")
        shutil.copyfile(staged, target)
    return record


def _post_training(
    exportable, part: str, float_onnx: Path, staged: Path, calibration, calibration_method: str, cache_dir: Path
) -> dict:
    from export.common import part_calibration, resolve_calibration
    from export.qdq import quantize_for_tensorrt

    calibration_set = resolve_calibration(calibration, exportable.preset, cache_dir=cache_dir)
    input_name = exportable.model.io_names[part][0]
    feeds = [{input_name: x} for x in part_calibration(exportable, calibration_set.images, part)]
    quantize_for_tensorrt(float_onnx, staged, feeds, method=calibration_method)
    return {
        "method": "ort-ptq",
        "format": "qdq",
        "symmetric": True,
        "per_channel": True,
        "calibration": {**calibration_set.describe(), "method": calibration_method},
    }


def build_parser() -> Parser:
    parser = Parser(prog="python -m export.trt", description="Build a TensorRT engine (on the target device).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="RUN/best.pt (float, or QAT with --qat-target tensorrt)")
    source.add_argument(
        "--onnx", type=Path, help="an ONNX from export.onnx (FP32: fp16 only) or an engine-ready model.fp16/int8.onnx"
    )
    parser.add_argument("--precision", required=True, choices=PRECISIONS)
    parser.add_argument("--out", required=True, type=Path, help="the .engine (or .plan) file")
    parser.add_argument("--part", default="full", choices=("full", "backbone", "head"))
    parser.add_argument("--calib", help="int8 post-training: CALIB.npz or dataset=NAME,root=DIR,fold=K[,samples=N]")
    parser.add_argument("--calib-method", default="percentile", choices=CALIBRATION_METHODS)
    parser.add_argument("--workspace", type=int, default=1024, help="builder workspace in MiB")
    parser.add_argument("--timing-cache", type=Path, help="reuse/update a timing cache (faster rebuilds)")
    parser.add_argument(
        "--dla-core", type=int, help="build for this DLA core (AGX Orin, Orin NX), GPU fallback on; fixes the batch"
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=8,
        help="largest batch (faces or tracks) in one run; larger ones are split (with --dla-core: the only batch)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with usage_errors(parser, (ValueError,)):
        engine = EngineSettings(
            max_batch=args.max_batch, workspace=args.workspace, timing_cache=args.timing_cache, dla_core=args.dla_core
        )
    with usage_errors(parser):
        result = export_tensorrt(
            args.onnx or args.checkpoint,
            args.out,
            precision=args.precision,
            part=args.part,
            calibration=args.calib,
            quantization=QuantizationSettings(calibration_method=args.calib_method),
            engine=engine,
            force=args.force,
            log=print,
        )
    if result.engine is None:
        _print_target_commands(result, args.out, args.precision, engine)
        return EXIT_NO_TENSORRT
    return 0


def _print_target_commands(result: TensorRTExport, out: Path, precision: str, engine: EngineSettings) -> None:
    print(
        "TensorRT is not installed here. Build the engine on the target (it is tied to that GPU and "
        "TensorRT version), there:",
        file=sys.stderr,
    )
    dla = "" if engine.dla_core is None else f" --dla-core {engine.dla_core}"
    print(
        f"  python3 -m export.trt --onnx {result.engine_ready} --precision {precision} --out {out} "
        f"--max-batch {engine.max_batch}{dla}",
        file=sys.stderr,
    )
    print(f"  or TensorRT 8.6/10.x:  {result.commands['tensorrt<11']}", file=sys.stderr)
    print(f"  or TensorRT 11+:       {result.commands['tensorrt>=11']}", file=sys.stderr)


def _from_onnx(onnx_path: Path, out: Path, precision: str, *, force: bool) -> tuple[Path, dict]:
    """An engine-ready ONNX as given, or an FP32 one converted to FP16 (torch-free)."""
    artifact = read_artifact(onnx_path)
    if artifact.precision == precision:
        if precision == "int8":
            from export.qdq import tensorrt_qdq_violations

            problems = tensorrt_qdq_violations(onnx_path)
            if problems:
                raise ArtifactError(f"{onnx_path} breaks TensorRT's Q/DQ rules: {'; '.join(problems[:3])}")
        return onnx_path, artifact.meta
    if artifact.precision == "fp32" and precision == "fp16":
        from export.fp16 import convert_to_fp16

        ready = out.with_suffix(".fp16.onnx")
        check_writable(ready, force=force)
        with tempfile.TemporaryDirectory(dir=ready.parent, prefix=f".{ready.stem}.") as tmp:
            convert_to_fp16(onnx_path, Path(tmp) / "fp16.onnx")
            shutil.copyfile(Path(tmp) / "fp16.onnx", ready)
        meta = artifact.meta
        write_sidecar(
            ready,
            preset=artifact.preset,
            model_kind=artifact.model_kind,
            part=artifact.part,
            inputs=artifact.inputs,
            outputs=artifact.outputs,
            precision="fp16",
            source=meta.get("source"),
            tools=tool_versions(),
            extra={"converted_from": onnx_path.name},
        )
        return ready, read_artifact(ready).meta
    raise ExportRequestError(
        f"{onnx_path} is {artifact.precision}; --onnx takes an FP32 ONNX (for fp16) or an engine-ready "
        f"{precision} ONNX; for int8 from a float model use --checkpoint with --calib"
    )


def _from_checkpoint(
    checkpoint: Path,
    out: Path,
    precision: str,
    *,
    part: str,
    calibration: CalibrationSource | None,
    quantization: QuantizationSettings,
    max_batch: int,
    force: bool,
) -> tuple[Path, dict]:
    from export.common import describe_and_evaluate, load_exportable, select_parts

    exportable = load_exportable(checkpoint)
    (part,) = select_parts(exportable, [part])  # one part per engine
    ready = out.with_suffix(f".{precision}.onnx")
    check_writable(ready, force=force)
    record = engine_ready_onnx(
        exportable,
        ready,
        precision=precision,
        part=part,
        calibration=calibration,
        quantization=quantization,
        cache_dir=out.parent,
    )
    extra = {"tensorrt": {"engine": out.name, "max_batch": max_batch}}
    describe_and_evaluate(ready, exportable, part, precision, quantization=record, extra=extra)
    return ready, read_artifact(ready).meta


if __name__ == "__main__":
    from edge_fer.cli.main import run_tool

    run_tool(main, "export.trt")
