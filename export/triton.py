"""Write a Triton Inference Server model repository from an exported STT model.

    python -m export.triton --model ARTIFACT_OR_DIR --out REPO [--flavour native|python]
        [--max-batch 32] [--queue-delay-us 500] [--instances 1] [--deepstream DIR] [--force]

One Triton model per part found: the backbone and the head (the streaming pair the camera
batches across faces and sources) and the full model, each ``REPO/<name>/config.pbtxt`` +
``REPO/<name>/1/<files>``, named by ``edge_fer.artifacts.triton_model_name`` (e.g.
``stt_tiny_int8_openvino_head``) - the names ``edge-fer camera --backend triton`` asks for.
Inputs, outputs and shapes come from each artifact's sidecar; the batch axis becomes Triton's
``max_batch_size`` with dynamic batching, so requests of many clients (cameras) are run as
one batch.

- ``--flavour native`` (default): Triton's own backend per artifact - ``onnxruntime_onnx``
  for ONNX, ``openvino`` for IR, ``tensorrt_plan`` for a TensorRT engine (the NGC
  ``tritonserver`` images carry all three).
- ``--flavour python``: Triton's Python backend running the artifact with OpenVINO or ONNX
  Runtime (``export/triton_python_model.py``), for servers that have only that backend,
  such as the one in the ``nvidia-pytriton`` wheel (``scripts/triton_server.py``).

``--deepstream DIR`` also writes the DeepStream configs of docs/deepstream.md (the backbone as
a secondary GIE on tracked faces: ``nvinfer`` from an ONNX/engine file, ``nvinferserver``
through this repository) - written, not run here (no DeepStream).

Every ``config.pbtxt`` is read back with Triton's own schema (``tritonclient``'s
``model_config_pb2``) and checked against the sidecar before the command succeeds. A model
folder appears whole or not at all; an existing one is replaced only with ``--force``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from edge_fer.artifacts import Artifact, artifact_files, read_artifact, sidecar_path, triton_model_name
from edge_fer.cli.args import Parser
from edge_fer.errors import ArtifactError, OutputExistsError
from edge_fer.runtime.streaming import find_pair, resolve_model_path

__all__ = ["export_triton", "read_repository", "deepstream_configs", "main"]

FLAVOURS = ("native", "python")
# artifact kind -> (config line naming Triton's backend, file name Triton loads, instance kind)
NATIVE = {
    "onnx": ('platform: "onnxruntime_onnx"', "model.onnx", "KIND_CPU"),
    "openvino": ('backend: "openvino"', "model.xml", "KIND_CPU"),
    "tensorrt": ('platform: "tensorrt_plan"', "model.plan", "KIND_GPU"),
}
PYTHON_MODEL = Path(__file__).with_name("triton_python_model.py")


def export_triton(
    model: str | os.PathLike,
    out: str | os.PathLike,
    *,
    flavour: str = "native",
    max_batch: int = 32,
    queue_delay_us: int = 500,
    instances: int = 1,
    force: bool = False,
    log=lambda line: None,
) -> list[str]:
    """Write the repository; return the Triton model names written.

    Raises:
        ArtifactError: not an exported STT model, or a flavour that cannot serve it.
        OutputExistsError: a model folder exists and ``force`` is False.
        ValueError: a setting out of range or an unknown flavour.
    """
    if flavour not in FLAVOURS:
        raise ValueError(f"--flavour must be one of {', '.join(FLAVOURS)}, not {flavour!r}")
    if max_batch < 1 or queue_delay_us < 0 or instances < 1:
        raise ValueError("--max-batch and --instances must be at least 1, --queue-delay-us at least 0")
    path = resolve_model_path(model)
    full = read_artifact(path)
    if full.model_kind != "stt" or full.part != "full":
        raise ArtifactError(f"{path} is not a full STT model (its sidecar says {full.model_kind} {full.part})")
    if flavour == "python" and full.kind == "tensorrt":
        raise ArtifactError("a TensorRT engine is served by Triton's own TensorRT backend: use --flavour native")
    artifacts = [full] + [read_artifact(p) for p in (find_pair(path) or ())]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = [triton_model_name(a) for a in artifacts]
    if not force:
        for name in names:
            if (out / name).exists():
                raise OutputExistsError(f"{out / name} already exists; pass --force to replace it")
    for artifact, name in zip(artifacts, names):
        _write_model(artifact, out / name, flavour, max_batch, queue_delay_us, instances)
        log(f"wrote {out / name} ({artifact.part}, {flavour})")
    read_repository(out, expected=artifacts)
    return names


def deepstream_configs(
    repo: Path, out: str | os.PathLike, *, url: str = "localhost:8001", force: bool = False
) -> list[Path]:
    """DeepStream configs for the backbone of the STT exported to ``repo`` as a secondary GIE
    on the faces a primary detector found and ``nvtracker`` follows; its per-face tokens go
    out as tensor meta for the probe that buffers them per object and calls the head
    (docs/deepstream.md). Not run here.

    nvinfer normalises ``net-scale-factor * (pixel - offset[c])``: one scale for all channels,
    so the preset's per-channel std becomes their mean (at most 1.3 % off per channel for
    ImageNet's); it crops each face's box without edge-fer's 5-point alignment. Both change
    the input from what the model was trained on: measure before trusting the labels.

    Raises:
        ArtifactError: ``repo`` holds no backbone of an edge-fer export.
        OutputExistsError: a config exists and ``force`` is False.
    """
    from edge_fer.fileio import atomic_output

    backbones = sorted(Path(repo).glob("*_backbone/1/edge_fer_sidecar.json"))
    if not backbones:
        raise ArtifactError(f"{repo} holds no backbone model written by python -m export.triton")
    meta = json.loads(backbones[0].read_text())
    folder = backbones[0].parent
    artifact = Artifact(folder / meta["artifact"]["file"], meta)
    name = backbones[0].parent.parent.name
    pre = artifact.preset.preprocessing
    height, width = pre.input_size
    scale = 1.0 / (pre.value_scale * sum(pre.std) / len(pre.std))
    offsets = ";".join(f"{pre.value_scale * m:.3f}" for m in pre.mean)  # RGB, as the model takes them
    mode = {"fp32": 0, "int8": 1, "fp16": 2}[artifact.precision]
    model_dir = (Path(repo) / name / "1").resolve()
    model_line = {
        "onnx": f"onnx-file={model_dir / 'model.onnx'}",
        "tensorrt": f"model-engine-file={model_dir / 'model.plan'}",
    }.get(artifact.kind, f"# {artifact.kind} artifact: nvinfer needs ONNX or a TensorRT engine; export one")
    made_by = "written by python -m export.triton; not run"
    nvinfer = f"""# edge-fer {artifact.preset.name} backbone as a secondary GIE ({made_by})
[property]
gpu-id=0
{model_line}
batch-size=16
network-mode={mode}
# model input = (pixel - offset) * scale, RGB; the preset's per-channel std is averaged (see deepstream.md)
net-scale-factor={scale:.6f}
offsets={offsets}
model-color-format=0
infer-dims=3;{height};{width}
network-type=100
output-tensor-meta=1
process-mode=2
gie-unique-id=2
operate-on-gie-id=1
operate-on-class-ids=0
maintain-aspect-ratio=0
"""
    nvinferserver = f"""# edge-fer {artifact.preset.name} backbone through Triton ({made_by})
infer_config {{
  unique_id: 2
  gpu_ids: [0]
  max_batch_size: 16
  backend {{
    triton {{
      model_name: "{name}"
      version: -1
      grpc {{ url: "{url}" }}
    }}
  }}
  preprocess {{
    network_format: IMAGE_FORMAT_RGB
    tensor_order: TENSOR_ORDER_LINEAR
    maintain_aspect_ratio: 0
    normalize {{
      scale_factor: {scale:.6f}
      channel_offsets: [{offsets.replace(";", ", ")}]
    }}
  }}
  postprocess {{ other {{}} }}
}}
input_control {{
  process_mode: PROCESS_MODE_CLIP_OBJECTS
  operate_on_gie_id: 1
  operate_on_class_ids: [0]
  interval: 0
}}
output_control {{ output_tensor_meta: true }}
"""
    out = Path(out)
    written = []
    for file_name, text in (("nvinfer_backbone.txt", nvinfer), ("nvinferserver_backbone.txt", nvinferserver)):
        with atomic_output(out / file_name, force=force) as tmp:
            tmp.write_text(text)
        written.append(out / file_name)
    return written


def _config(artifact: Artifact, name: str, flavour: str, max_batch: int, queue_delay_us: int, instances: int) -> str:
    (input_name, input_shape), (output_name, output_shape) = (
        next(iter(artifact.inputs.items())),
        next(iter(artifact.outputs.items())),
    )
    batched = input_shape[0] is None and output_shape[0] is None
    if flavour == "native":
        backend, file_name, instance_kind = NATIVE[artifact.kind]
    else:
        backend, file_name, instance_kind = 'backend: "python"', artifact.path.name, "KIND_CPU"

    def dims(shape: list) -> str:
        kept = shape[1:] if batched else shape
        return "[ " + ", ".join("-1" if d is None else str(d) for d in kept) + " ]"

    lines = [
        f'name: "{name}"',
        backend,
        f"max_batch_size: {max_batch if batched else 0}",
        f'input [ {{ name: "{input_name}" data_type: TYPE_FP32 dims: {dims(input_shape)} }} ]',
        f'output [ {{ name: "{output_name}" data_type: TYPE_FP32 dims: {dims(output_shape)} }} ]',
        f"instance_group [ {{ kind: {instance_kind} count: {instances} }} ]",
    ]
    if batched:
        lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}")
    if flavour == "native" and artifact.kind != "tensorrt":
        lines.append(f'default_model_filename: "{file_name}"')
    if flavour == "python":
        lines.append(f'parameters {{ key: "artifact" value: {{ string_value: "{file_name}" }} }}')
    return "\n".join(lines) + "\n"


def _write_model(
    artifact: Artifact, folder: Path, flavour: str, max_batch: int, queue_delay_us: int, instances: int
) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        version = staging / "1"
        version.mkdir()
        if flavour == "native":
            target = NATIVE[artifact.kind][1]
            for source in artifact_files(artifact.path):  # model.xml + model.bin keep their pairing
                shutil.copy2(source, version / (Path(target).stem + source.suffix))
        else:
            for source in artifact_files(artifact.path):
                shutil.copy2(source, version / source.name)
            shutil.copy2(PYTHON_MODEL, version / "model.py")
        shutil.copy2(sidecar_path(artifact.path), version / "edge_fer_sidecar.json")  # provenance
        text = _config(artifact, folder.name, flavour, max_batch, queue_delay_us, instances)
        (staging / "config.pbtxt").write_text(text)
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.{os.getpid()}.old")
            folder.rename(old)
        staging.rename(folder)
        if old is not None:
            shutil.rmtree(old)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_repository(repo: str | os.PathLike, *, expected: list[Artifact] | None = None) -> dict[str, dict]:
    """Parse every model's ``config.pbtxt`` with Triton's schema; with ``expected``, check each
    artifact's model against its sidecar (names, shapes, batching, files).

    Returns:
        model name -> {"backend", "max_batch_size", "inputs", "outputs", "files"}.

    Raises:
        ArtifactError: a config Triton would reject or one that disagrees with its artifact.
    """
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise ArtifactError(
            "reading a Triton repository back needs tritonclient: pip install 'edge-fer[triton]'"
        ) from None
    repo = Path(repo)
    models = {}
    for config_path in sorted(repo.glob("*/config.pbtxt")):
        config = model_config_pb2.ModelConfig()
        try:
            text_format.Parse(config_path.read_text(), config)
        except text_format.ParseError as exc:
            raise ArtifactError(f"{config_path}: Triton cannot parse it: {exc}") from None
        if config.name != config_path.parent.name:
            raise ArtifactError(f"{config_path}: name {config.name!r} is not its folder's")
        models[config.name] = {
            "backend": config.backend or config.platform,
            "max_batch_size": config.max_batch_size,
            "inputs": {i.name: list(i.dims) for i in config.input},
            "outputs": {o.name: list(o.dims) for o in config.output},
            "files": sorted(p.name for p in (config_path.parent / "1").iterdir()),
            "dynamic_batching": config.HasField("dynamic_batching"),
        }
    for artifact in expected or ():
        name = triton_model_name(artifact)
        model = models.get(name)
        if model is None:
            raise ArtifactError(f"{repo}: no model {name} for {artifact.path}")
        for ours, theirs in ((artifact.inputs, model["inputs"]), (artifact.outputs, model["outputs"])):
            for tensor, shape in ours.items():
                batched = model["max_batch_size"] > 0
                want = [-1 if d is None else d for d in (shape[1:] if batched else shape)]
                if theirs.get(tensor) != want:
                    raise ArtifactError(f"{repo / name}: {tensor} is {theirs.get(tensor)} there, {want} in the sidecar")
        if model["max_batch_size"] > 0 and not model["dynamic_batching"]:
            raise ArtifactError(f"{repo / name}: batched without dynamic batching")
        if not any(f.startswith("model.") for f in model["files"]):
            raise ArtifactError(f"{repo / name}/1 holds no model file")
    return models


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m export.triton", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="the full model: model.xml, model.onnx or its folder")
    parser.add_argument("--out", required=True, type=Path, help="the Triton model repository (created)")
    parser.add_argument("--flavour", choices=FLAVOURS, default="native", help="Triton backend (see above)")
    parser.add_argument("--max-batch", type=int, default=32, help="largest batch Triton forms (default 32)")
    parser.add_argument(
        "--queue-delay-us", type=int, default=500, help="how long Triton waits to fill a batch (default 500 µs)"
    )
    parser.add_argument("--instances", type=int, default=1, help="model instances per part (default 1)")
    parser.add_argument("--deepstream", type=Path, help="also write DeepStream configs here (docs/deepstream.md)")
    parser.add_argument("--force", action="store_true", help="replace model folders already in --out")
    args = parser.parse_args(argv)
    try:
        names = export_triton(
            args.model,
            args.out,
            flavour=args.flavour,
            max_batch=args.max_batch,
            queue_delay_us=args.queue_delay_us,
            instances=args.instances,
            force=args.force,
            log=print,
        )
    except ValueError as exc:
        parser.error(str(exc))
    print(f"{args.out}: {', '.join(names)} (read back with Triton's schema)")
    if args.deepstream is not None:
        for path in deepstream_configs(args.out, args.deepstream, force=args.force):
            print(f"wrote {path} (DeepStream; not run here)")
    return 0


if __name__ == "__main__":
    from edge_fer.cli.main import run_tool

    run_tool(main, "python -m export.triton")
