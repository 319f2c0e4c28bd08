"""TensorRT engines - built on the target device - and the engine-ready ONNX they come from.

    python -m export.trt (--onnx model.onnx | --checkpoint RUN/best.pt) --precision fp16|int8
        --out model.engine [--calib SPEC] [--part full|backbone|head]
        [--workspace MB] [--timing-cache FILE] [--dla-core N] [--max-batch N] [--force]

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

import shutil
import sys
import tempfile
from pathlib import Path

from edge_fer.artifacts import read_artifact, tool_versions, write_sidecar
from edge_fer.cli.args import Parser
from edge_fer.errors import ArtifactError, BackendError
from edge_fer.fileio import atomic_output, check_writable
from edge_fer.presets import ModelPreset

__all__ = ["EXIT_NO_TENSORRT", "main", "build_parser", "build_engine", "trtexec_commands", "engine_ready_onnx"]

EXIT_NO_TENSORRT = 3


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


def engine_ready_onnx(args, exportable, target: Path) -> dict:
    """Write the FP16 or INT8 Q/DQ ONNX for TensorRT to ``target``; return its quantization record."""
    from export.fp16 import convert_to_fp16
    from export.onnx import export_onnx
    from export.qdq import tensorrt_qdq_violations

    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.stem}.") as tmp:
        staged = Path(tmp) / "engine-ready.onnx"
        quantization: dict = {"method": "none"}
        if args.precision == "int8" and exportable.qat:
            if exportable.qat_target != "tensorrt":
                raise ArtifactError(
                    f"{args.checkpoint} was quantization-aware-trained for {exportable.qat_target} (unsigned "
                    "activations); TensorRT needs signed INT8: retrain with --qat --qat-target tensorrt, or give the "
                    "float checkpoint and --calib for post-training quantization"
                )
            export_onnx(exportable.model, staged, part=args.part)
            quantization = {"method": "nncf-qat", "target": "tensorrt", "format": "qdq"}
        else:
            float_onnx = Path(tmp) / "float.onnx"
            export_onnx(exportable.model, float_onnx, part=args.part)
            if args.precision == "fp16":
                convert_to_fp16(float_onnx, staged)
            else:
                quantization = _post_training(args, exportable, float_onnx, staged, Path(tmp))
        if args.precision == "int8":
            problems = tensorrt_qdq_violations(staged)
            if problems:
                raise ArtifactError(f"the INT8 ONNX breaks TensorRT's Q/DQ rules: {'; '.join(problems[:3])}")
        shutil.copyfile(staged, target)
    return quantization


def _post_training(args, exportable, float_onnx: Path, staged: Path, tmp: Path) -> dict:
    from export.common import part_calibration, resolve_calibration
    from export.qdq import quantize_for_tensorrt

    calibration = resolve_calibration(args.calib, exportable.preset, cache_dir=args.out.parent)
    input_name = exportable.model.io_names[args.part][0]
    feeds = [{input_name: x} for x in part_calibration(exportable, calibration.images, args.part)]
    quantize_for_tensorrt(float_onnx, staged, feeds, method=args.calib_method)
    return {
        "method": "ort-ptq",
        "format": "qdq",
        "symmetric": True,
        "per_channel": True,
        "calibration": {**calibration.describe(), "method": args.calib_method},
    }


def build_parser() -> Parser:
    parser = Parser(prog="python -m export.trt", description="Build a TensorRT engine (on the target device).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="RUN/best.pt (float, or QAT with --qat-target tensorrt)")
    source.add_argument(
        "--onnx", type=Path, help="an ONNX from export.onnx (FP32: fp16 only) or an engine-ready model.fp16/int8.onnx"
    )
    parser.add_argument("--precision", required=True, choices=("fp16", "int8"))
    parser.add_argument("--out", required=True, type=Path, help="the .engine file")
    parser.add_argument("--part", default="full", choices=("full", "backbone", "head"))
    parser.add_argument("--calib", help="int8 post-training: CALIB.npz or dataset=NAME,root=DIR,fold=K[,samples=N]")
    parser.add_argument("--calib-method", default="percentile", choices=("percentile", "minmax", "entropy"))
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
    if args.out.suffix != ".engine":
        parser.error(f"--out must end in .engine, got {args.out}")
    if args.max_batch < 1:
        parser.error(f"--max-batch must be at least 1, got {args.max_batch}")
    if args.dla_core is not None and args.dla_core < 0:
        parser.error(f"--dla-core is a DLA core number (0, 1, ...), got {args.dla_core}")
    check_writable(args.out, force=args.force)
    if args.onnx:
        ready, meta = _from_onnx(args, parser)  # no torch: this is what runs on a Jetson
    else:
        ready, meta = _from_checkpoint(args, parser)
    print(f"engine-ready {args.precision} ONNX: {ready}")
    inputs = meta["io"]["inputs"]
    if not tensorrt_available():
        commands = trtexec_commands(
            ready,
            args.out,
            inputs,
            args.precision,
            max_batch=args.max_batch,
            workspace=args.workspace,
            dla_core=args.dla_core,
        )
        print(
            "TensorRT is not installed here. Build the engine on the target (it is tied to that GPU and "
            "TensorRT version), there:",
            file=sys.stderr,
        )
        dla = "" if args.dla_core is None else f" --dla-core {args.dla_core}"
        print(
            f"  python3 -m export.trt --onnx {ready} --precision {args.precision} --out {args.out} "
            f"--max-batch {args.max_batch}{dla}",
            file=sys.stderr,
        )
        print(f"  or TensorRT 8.6/10.x:  {commands['tensorrt<11']}", file=sys.stderr)
        print(f"  or TensorRT 11+:       {commands['tensorrt>=11']}", file=sys.stderr)
        return EXIT_NO_TENSORRT
    info = build_engine(
        ready,
        args.out,
        precision=args.precision,
        inputs=inputs,
        max_batch=args.max_batch,
        workspace=args.workspace,
        timing_cache=args.timing_cache,
        dla_core=args.dla_core,
        force=args.force,
    )
    write_sidecar(
        args.out,
        preset=ModelPreset.from_dict(meta["model"]["preset"]),
        model_kind=meta["model"]["kind"],
        part=meta["model"]["part"],
        inputs=inputs,
        outputs=meta["io"]["outputs"],
        precision=args.precision,
        quantization=meta.get("quantization"),
        source=meta.get("source"),
        tools=tool_versions(),
        extra={"tensorrt": info, "engine_ready_onnx": ready.name},
    )
    print(f"wrote {args.out} (TensorRT {info['tensorrt']}, {args.precision})")
    return 0


def _from_onnx(args, parser) -> tuple[Path, dict]:
    """An engine-ready ONNX as given, or an FP32 one converted to FP16 (torch-free)."""
    artifact = read_artifact(args.onnx)
    if artifact.precision == args.precision:
        if args.precision == "int8":
            from export.qdq import tensorrt_qdq_violations

            problems = tensorrt_qdq_violations(args.onnx)
            if problems:
                raise ArtifactError(f"{args.onnx} breaks TensorRT's Q/DQ rules: {'; '.join(problems[:3])}")
        return args.onnx, artifact.meta
    if artifact.precision == "fp32" and args.precision == "fp16":
        from export.fp16 import convert_to_fp16

        ready = args.out.with_suffix(".fp16.onnx")
        check_writable(ready, force=args.force)
        with tempfile.TemporaryDirectory(dir=ready.parent, prefix=f".{ready.stem}.") as tmp:
            convert_to_fp16(args.onnx, Path(tmp) / "fp16.onnx")
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
            extra={"converted_from": args.onnx.name},
        )
        return ready, read_artifact(ready).meta
    parser.error(
        f"{args.onnx} is {artifact.precision}; --onnx takes an FP32 ONNX (for fp16) or an engine-ready "
        f"{args.precision} ONNX; for int8 from a float model use --checkpoint with --calib"
    )


def _from_checkpoint(args, parser) -> tuple[Path, dict]:
    from export.common import describe_and_evaluate, load_exportable

    exportable = load_exportable(args.checkpoint)
    if args.part not in exportable.parts:
        parser.error(f"a {exportable.kind} model has parts {', '.join(exportable.parts)}, not {args.part}")
    ready = args.out.with_suffix(f".{args.precision}.onnx")
    check_writable(ready, force=args.force)
    quantization = engine_ready_onnx(args, exportable, ready)
    describe_and_evaluate(
        ready,
        exportable,
        args.part,
        args.precision,
        quantization=quantization,
        args=args,
        extra={"tensorrt": {"engine": args.out.name, "max_batch": args.max_batch}},
    )
    return ready, read_artifact(ready).meta


if __name__ == "__main__":
    from edge_fer.cli.main import run_tool

    run_tool(main, "export.trt")
