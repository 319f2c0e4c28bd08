"""Pick, on this device, the fastest artifact of a model whose recorded accuracy is good enough.

A model folder can hold the same STT in several precisions and formats (``models/fp32``,
``models/ov_fp32``, ``models/ov_int8``, ...). Which one is fastest depends on the CPU: INT8
wins where the CPU has 8-bit dot-product instructions (VNNI, AMX, ARM dot-product) and can
lose to FP32 where it has not (see ``runtime.cpu``). So ``edge-fer camera --model FOLDER``
times each eligible artifact here, for what the camera actually runs (one backbone frame plus
one head per ``stride`` frames, per face), and takes the fastest.

Eligible: a full STT artifact whose recorded accuracy (its sidecar's ``metrics``, written by
``--dataset`` at export) is within ``max_drop`` of the best FP32 one on the same data.
FP32 artifacts without metrics are eligible (they are the checkpoint, to float rounding);
FP16/INT8 ones without metrics are not: nobody measured what they cost. Accuracy is recorded
with FP32 compute, so OpenVINO runs the candidates with the f32 hint (the bf16 default of
some CPUs would be another, unmeasured precision).

An eligible artifact this device cannot load or run (an engine built for another GPU, a Q/DQ
ONNX in OpenVINO under an ISA cap) is skipped with the reason when another can run; the only
eligible one fails as it is, its error the user's to read.

Timings are cached per CPU (model name and features), artifact hashes, backend, threads and
stride in ``$XDG_CACHE_HOME/edge-fer/timings.json``, so a restart costs nothing.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_fer.artifacts import Artifact, is_artifact, read_artifact
from edge_fer.errors import ArtifactError, EdgeFerError

__all__ = ["Candidate", "Choice", "find_candidates", "choose_model", "timing_cache_path"]

TIMING_SECONDS = 0.4  # per candidate, after warm-up: enough to rank, short enough to start fast


@dataclass
class Candidate:
    """One artifact of the folder and what was decided about it."""

    path: Path
    artifact: Artifact
    metric: float | None = None
    excluded: str | None = None
    ms_per_frame: float | None = None
    cached: bool = False

    @property
    def label(self) -> str:
        quantization = self.artifact.meta.get("quantization", {}).get("method", "none")
        return f"{self.artifact.precision}{'' if quantization == 'none' else ' ' + quantization}"


@dataclass
class Choice:
    """The chosen artifact, the model already loaded, and every candidate considered."""

    model: object  # ExpressionModel
    chosen: Candidate
    candidates: list[Candidate] = field(default_factory=list)
    reference: str = ""

    def report(self, root: Path) -> list[str]:
        """Lines for the start of a run: what was chosen among what, and why."""
        lines = [f"chose {_rel(self.chosen.path, root)} ({self.chosen.label}) {self.reference}"]
        for c in sorted(self.candidates, key=lambda c: (c.ms_per_frame is None, c.ms_per_frame or 0)):
            metric = "accuracy not recorded" if c.metric is None else f"UAR {c.metric:.4f}"
            speed = "" if c.ms_per_frame is None else f"{c.ms_per_frame:.2f} ms/frame{' (cached)' if c.cached else ''}"
            why = f"skipped: {c.excluded}" if c.excluded else speed
            lines.append(f"  {'*' if c is self.chosen else ' '} {_rel(c.path, root)} {c.label}, {metric}: {why}")
        return lines


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def find_candidates(folder: Path, *, verify: bool = True) -> list[Candidate]:
    """Full STT artifacts (with sidecars) in ``folder`` and its subfolders (two levels)."""
    found = []
    for depth in ("*", "*/*", "*/*/*"):
        for path in sorted(folder.glob(depth)):
            if not is_artifact(path) or not path.with_name(path.name + ".json").is_file():
                continue
            try:
                artifact = read_artifact(path, verify=verify)
            except ArtifactError:
                continue  # corrupt or foreign files are not candidates; loading one directly says why
            if artifact.part == "full" and artifact.model_kind == "stt":
                found.append(Candidate(path, artifact))
    return found


def _metric_key(metrics: dict) -> tuple:
    return tuple(metrics.get(k) for k in ("data", "dataset", "fold", "split", "samples"))


def _eligible(candidates: list[Candidate], folder: Path, *, precision: str | None, max_drop: float) -> str:
    """Mark candidates that may not be used; returns the reference the bound was taken from."""
    presets = {c.artifact.preset.name for c in candidates}
    if len(presets) > 1:
        raise ArtifactError(
            f"the folder holds different models ({', '.join(sorted(presets))}); "
            "pass one artifact or a folder of one model"
        )
    for c in candidates:
        metrics = c.artifact.meta.get("metrics") or {}
        c.metric = metrics.get("uar")
    fp32 = [c for c in candidates if c.artifact.precision == "fp32" and c.metric is not None]
    reference = max(fp32, key=lambda c: c.metric, default=None)
    for c in candidates:
        if precision is not None and c.artifact.precision != precision:
            c.excluded = f"not {precision} (--precision)"
        elif c.path.suffix == ".engine" and not _has("tensorrt"):
            c.excluded = "TensorRT is not installed here"
        elif c.path.suffix == ".xml" and not _has("openvino"):
            c.excluded = "OpenVINO is not installed here"
        elif c.path.suffix == ".onnx" and not (_has("openvino") or _has("onnxruntime")):
            c.excluded = "neither OpenVINO nor ONNX Runtime is installed here"
        elif precision is not None:
            continue  # forced: the user takes the accuracy as it is
        elif c.metric is None and c.artifact.precision != "fp32":
            c.excluded = "no recorded accuracy (export it with --dataset to make it eligible)"
        elif c.metric is not None and reference is not None:
            ref_metrics = reference.artifact.meta["metrics"]
            if _metric_key(c.artifact.meta["metrics"]) != _metric_key(ref_metrics):
                c.excluded = "accuracy recorded on other data than the FP32 reference's"
            elif c.metric < reference.metric - max_drop - 1e-9:
                c.excluded = f"UAR {reference.metric - c.metric:.4f} below FP32 (bound {max_drop})"
    if reference is None:
        return "(no FP32 accuracy recorded: only FP32 artifacts or forced precision are eligible)"
    return f"- the fastest here within {max_drop} UAR of FP32 ({reference.metric:.4f}, {_rel(reference.path, folder)})"


def _no_usable_model(candidates: list[Candidate], folder: Path) -> ArtifactError:
    reasons = "; ".join(f"{_rel(c.path, folder)}: {c.excluded}" for c in candidates)
    return ArtifactError(f"no usable model in {folder}: {reasons}")


def _cannot_run(exc: Exception) -> str:
    return f"cannot run here: {' '.join(str(exc).split())[:160]}"


def _has(package: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(package) is not None


def _runs_on_openvino(path: Path, backend: str) -> bool:
    if backend != "auto":
        return backend == "openvino"
    return path.suffix == ".xml" or _has("openvino")  # auto runs ONNX on OpenVINO where it is installed


def timing_cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edge-fer" / "timings.json"


def _cache_key(candidate: Candidate, *, cpu: str, backend: str, threads: int | None, stride: int) -> str:
    hashes = sorted(candidate.artifact.meta["artifact"]["sha256"].values())
    return json.dumps([cpu, backend, threads, stride, hashes])


def _load_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_cache(path: Path, cache: dict) -> None:
    from edge_fer.fileio import atomic_output

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path, force=True) as tmp:
            tmp.write_text(json.dumps(cache, indent=1) + "\n")
    except (OSError, EdgeFerError) as exc:  # a read-only home must not stop the camera
        print(f"edge-fer camera: could not keep the timings in {path} ({exc})", file=sys.stderr)


def time_per_frame(model, stride: int) -> float:
    """Milliseconds per frame per face of what the camera runs: one new frame through the
    backbone and, every ``stride`` frames, the head (or the full model) on a clip."""
    pre = model.preset.preprocessing
    rng = np.random.default_rng(0)
    height, width = pre.input_size
    crop = rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    clip = rng.integers(0, 256, (1, pre.clip_len, height, width, 3), dtype=np.uint8)
    if model.streaming:
        tokens = model.frame_tokens(np.repeat(crop, pre.clip_len, axis=0))[None]

        def step() -> tuple[float, float]:
            start = time.perf_counter()
            model.frame_tokens(crop)
            middle = time.perf_counter()
            model.head_logits(tokens)
            return middle - start, time.perf_counter() - middle
    else:

        def step() -> tuple[float, float]:
            start = time.perf_counter()
            model.clip_logits(clip)
            return 0.0, time.perf_counter() - start

    for _ in range(3):
        step()
    per_frame, per_head = [], []
    deadline = time.perf_counter() + TIMING_SECONDS
    while time.perf_counter() < deadline or len(per_head) < 5:
        frame_s, head_s = step()
        per_frame.append(frame_s)
        per_head.append(head_s)
    return 1000 * (float(np.median(per_frame)) + float(np.median(per_head)) / stride)


def choose_model(
    folder: Path,
    *,
    stride: int,
    backend: str = "auto",
    device: str | None = None,
    threads: int | None = None,
    precision: str | None = None,
    infer_precision: str | None = None,
    max_drop: float = 0.01,
    streaming: bool = True,
    verify: bool = True,
    use_cache: bool = True,
) -> Choice:
    """Load the fastest eligible artifact of ``folder`` (see the module docstring).

    Args:
        precision: "fp32", "fp16" or "int8" forces that precision (fastest of those).
        infer_precision: OpenVINO compute hint; None runs f32, the precision accuracy is recorded in.
        max_drop: how much recorded UAR below the FP32 artifact's is acceptable.

    Raises:
        ArtifactError: no STT artifact in the folder, or none eligible (with the reasons).
    """
    from edge_fer.runtime.cpu import cpu_info
    from edge_fer.runtime.streaming import ExpressionModel

    folder = Path(folder)
    candidates = find_candidates(folder, verify=verify)
    if not candidates:
        raise ArtifactError(
            f"{folder} holds no STT expression model (model.xml / model.onnx / model.engine with sidecar)"
        )
    reference = _eligible(candidates, folder, precision=precision, max_drop=max_drop)
    eligible = [c for c in candidates if c.excluded is None]
    if not eligible:
        raise _no_usable_model(candidates, folder)
    cache_path = timing_cache_path()
    cache = _load_cache(cache_path) if use_cache else {}
    cpu = cpu_info().key
    loaded = {}

    def load(c: Candidate):
        hint = infer_precision or ("f32" if c.path.suffix != ".engine" and _runs_on_openvino(c.path, backend) else None)
        return ExpressionModel(
            c.path, backend=backend, device=device, threads=threads, precision=hint, streaming=streaming, verify=verify
        )

    timed = len(eligible) > 1  # only one: nothing to time it against
    how = f"{backend}/{device}/{infer_precision}/{'streaming' if streaming else 'full'}"
    for c in eligible if timed else ():
        key = _cache_key(c, cpu=cpu, backend=how, threads=threads, stride=stride)
        if key in cache:
            c.ms_per_frame, c.cached = float(cache[key]), True
            continue
        try:
            loaded[id(c)] = load(c)
            c.ms_per_frame = time_per_frame(loaded[id(c)], stride)
        except (EdgeFerError, RuntimeError) as exc:
            # One export this device cannot run (an engine built for another GPU, a Q/DQ ONNX
            # under an ISA cap) must not stop the camera while another can: skip it, say why.
            if id(c) in loaded:
                loaded.pop(id(c)).close()
            c.excluded = _cannot_run(exc)
            continue
        cache[key] = round(c.ms_per_frame, 4)
    model = best = None
    for c in sorted((c for c in eligible if c.excluded is None), key=lambda c: c.ms_per_frame or 0.0):
        if id(c) in loaded:
            model, best = loaded.pop(id(c)), c
            break
        try:  # its timing read from the cache, or the only one
            model, best = load(c), c
            break
        except (EdgeFerError, RuntimeError) as exc:
            if not timed:
                raise  # the only one: its error is the user's to read as it is
            c.excluded = _cannot_run(exc)
    for other in loaded.values():
        other.close()
    if model is None:
        raise _no_usable_model(candidates, folder)
    if use_cache and timed:
        _save_cache(cache_path, cache)
    return Choice(model, best, candidates, reference)
