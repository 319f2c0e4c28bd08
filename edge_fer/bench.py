"""``edge-fer bench``: accuracy against latency for every artifact x backend x batch on this device.

Every configuration runs in a fresh worker process, so its load time and peak memory are its
own; all get the same seeded input, a warm-up that is not timed, and at least
``--min-iters`` timed runs lasting ``--min-time`` seconds (the count is recorded). Accuracy is
measured on the chosen eval set once per artifact x backend, and top-1 agreement against the
FP32 reference on the same samples. Ratios are only meaningful within one run.

Outputs in ``--out``: results.json (schema ``edge-fer-bench/1``), results.csv, results.md
(sorted by latency, Pareto-optimal rows marked) and pareto.png. ``compare OLD NEW`` prints the
regressions between two results.json beyond their measured noise.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_fer.artifacts import ARTIFACT_KINDS, is_artifact
from edge_fer.artifacts import RUNS_ON as ARTIFACT_RUNS_ON
from edge_fer.data.spec import DataSpec
from edge_fer.errors import ArtifactError, EdgeFerError
from edge_fer.runtime.memory import peak_rss_mib

__all__ = ["Config", "discover", "plan", "run_bench", "compare", "pareto_front", "SCHEMA"]

SCHEMA = "edge-fer-bench/1"
# which backends can run which file (a .pt checkpoint is the torch reference)
# What times each file: an artifact on the backends its kind runs on, a checkpoint on torch.
RUNS_ON = {**{suffix: ARTIFACT_RUNS_ON[kind] for suffix, kind in ARTIFACT_KINDS.items()}, ".pt": ("torch",)}
PACKAGE = {"openvino": "openvino", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt", "torch": "torch"}


@dataclass
class Config:
    artifact: str
    backend: str
    batch: int
    threads: int | None = None
    skip: str | None = None  # why this row was not measured


@dataclass
class Row:
    """One measured (or skipped) configuration."""

    config: Config
    label: str = ""
    preset: str = ""
    precision: str = ""
    quantization: str = ""
    size_mb: float = 0.0
    load_s: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    iters: int = 0
    clips_per_s: float | None = None
    frames_per_s: float | None = None
    stream_frame_ms: float | None = None  # STT streaming: backbone per frame + head / stride
    peak_rss_mb: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    agreement: float | None = None
    pareto: bool = False
    end_to_end: dict[str, Any] | None = None
    exec_precision: str | None = None  # OpenVINO's inference precision


def discover(folder: Path) -> list[Path]:
    """Full-model artifacts (with sidecars) and ``best.pt`` checkpoints under ``folder``."""
    found = []
    for path in sorted(folder.rglob("*")):
        if is_artifact(path) and path.with_name(path.name + ".json").is_file():
            try:
                meta = json.loads(path.with_name(path.name + ".json").read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if meta.get("model", {}).get("part") == "full":
                found.append(path)
        elif path.name == "best.pt":
            found.append(path)
    return found


def plan(artifacts: list[Path], backends: list[str], batches: list[int], threads: list[int | None]) -> list[Config]:
    """Every artifact x compatible backend x batch x threads; missing backends become skip rows."""
    configs = []
    for artifact in artifacts:
        for backend in RUNS_ON.get(artifact.suffix, ()):
            if backend not in backends:
                continue
            skip = None
            if importlib.util.find_spec(PACKAGE[backend]) is None:
                skip = f"{backend} is not installed here"
            for batch in batches if not skip else batches[:1]:
                for thread_count in threads if not skip else threads[:1]:
                    configs.append(Config(str(artifact), backend, batch, thread_count, skip))
    return configs


# ----------------------------------------------------------------------------- worker side


def _timed(run, *, min_iters: int, min_time: float, warmup: int = 5) -> tuple[np.ndarray, int]:
    for _ in range(warmup):
        run()
    times = []
    started = time.perf_counter()
    while len(times) < min_iters or (time.perf_counter() - started < min_time and len(times) < 5000):
        clock = time.perf_counter()
        run()
        times.append((time.perf_counter() - clock) * 1000)
    return np.array(times), len(times)


def _describe(path: Path) -> dict[str, Any]:
    if path.suffix == ".pt":
        from edge_fer.models.checkpoint import load_model

        _, preset, payload = load_model(path)
        return {
            "label": f"{preset.name} fp32 torch checkpoint ({path.parent.name}/{path.name})",
            "preset": preset.name,
            "precision": "fp32",
            "quantization": "none",
            "size_mb": path.stat().st_size / 2**20,
            "preset_obj": preset,
        }
    from edge_fer.artifacts import artifact_files, read_artifact

    artifact = read_artifact(path)
    method = artifact.meta.get("quantization", {}).get("method", "none")
    where = f"{path.parent.name}/{path.name}"
    return {
        "label": f"{artifact.preset.name} {artifact.precision}"
        + (f" {method}" if method != "none" else "")
        + f" ({where})",
        "preset": artifact.preset.name,
        "precision": artifact.precision,
        "quantization": method,
        "size_mb": sum(f.stat().st_size for f in artifact_files(path)) / 2**20,
        "preset_obj": artifact.preset,
        "artifact": artifact,
    }


def worker(task: dict[str, Any]) -> dict[str, Any]:
    """Measure one configuration (runs in its own process)."""
    config = Config(**task["config"])
    path = Path(config.artifact)
    info = _describe(path)
    preset = info.pop("preset_obj")
    artifact = info.pop("artifact", None)
    result: dict[str, Any] = dict(info)
    rng = np.random.default_rng(0)  # the same input for every configuration
    if artifact is not None:
        name, shape = next(iter(artifact.inputs.items()))
    else:
        name = "input"
        shape = [
            None,
            *(preset.preprocessing.clip_len,) * (preset.family == "stt"),
            3,
            *preset.preprocessing.input_size,
        ]
    feed = rng.standard_normal((config.batch, *shape[1:])).astype(np.float32)
    started = time.perf_counter()
    if config.backend == "torch":
        import torch

        from edge_fer.models.checkpoint import load_model

        if config.threads:
            torch.set_num_threads(config.threads)
        model = load_model(path)[0].eval()
        tensor = torch.from_numpy(feed)

        def run() -> None:
            with torch.no_grad():
                model(tensor)
    else:
        from edge_fer.runtime.backends import open_backend

        precision = "f32" if config.backend == "openvino" and artifact.precision in ("fp32", "int8") else None
        runner = open_backend(path, backend=config.backend, threads=config.threads, precision=precision)

        def run() -> None:
            runner.infer({name: feed})

        compiled = getattr(runner, "compiled", None)
        if compiled is not None:  # what OpenVINO actually computes in (bf16 is its default on CPUs that have it)
            hint = compiled.get_property("INFERENCE_PRECISION_HINT")
            result["exec_precision"] = hint.to_string() if hasattr(hint, "to_string") else str(hint)

    run()  # first inference belongs to loading (lazy allocation, compilation)
    result["load_s"] = time.perf_counter() - started
    times, iters = _timed(run, min_iters=task["min_iters"], min_time=task["min_time"])
    result.update(
        p50_ms=float(np.percentile(times, 50)),
        p90_ms=float(np.percentile(times, 90)),
        p99_ms=float(np.percentile(times, 99)),
        iters=iters,
        clips_per_s=config.batch * iters / (times.sum() / 1000),
    )
    if preset.family == "stt":
        result["frames_per_s"] = result["clips_per_s"] * preset.preprocessing.clip_len
    if artifact is not None and preset.family == "stt" and config.batch == 1 and config.backend != "torch":
        result["stream_frame_ms"] = _streaming_cost(path, config, task)
    if task.get("eval") and task.get("with_accuracy") and _family_of(task["eval"]["dataset"]) == preset.family:
        result.update(_accuracy(path, config, task["eval"], preset.family))
    result["peak_rss_mb"] = peak_rss_mib()  # the row process's own (ru_maxrss would carry the parent's)
    return result


def _family_of(dataset: str) -> str | None:
    """Which model family a dataset evaluates (others are timed without accuracy)."""
    from edge_fer.data.dfer import DFER_DATASETS
    from edge_fer.data.megc2019 import MEGC2019
    from edge_fer.data.micro import MICRO_DATASETS

    return "stt" if dataset in DFER_DATASETS else "htnet" if dataset in (*MICRO_DATASETS, MEGC2019) else None


def _streaming_cost(path: Path, config: Config, task: dict[str, Any]) -> float | None:
    """Per-frame cost when streaming: backbone on one frame + head per clip / stride."""
    from edge_fer.artifacts import read_artifact
    from edge_fer.runtime.backends import open_backend
    from edge_fer.runtime.streaming import find_pair

    pair = find_pair(path)
    if pair is None:
        return None
    costs = []
    rng = np.random.default_rng(1)
    for part in pair:
        artifact = read_artifact(part)
        name, shape = next(iter(artifact.inputs.items()))
        feed = {name: rng.standard_normal((1, *shape[1:])).astype(np.float32)}
        precision = "f32" if config.backend == "openvino" and artifact.precision in ("fp32", "int8") else None
        with open_backend(part, backend=config.backend, threads=config.threads, precision=precision) as runner:
            times, _ = _timed(lambda: runner.infer(feed), min_iters=task["min_iters"], min_time=task["min_time"] / 2)
        costs.append(float(np.percentile(times, 50)))
    return costs[0] + costs[1] / task["stride"]


def _accuracy(path: Path, config: Config, spec: dict[str, Any], family: str) -> dict[str, Any]:
    from edge_fer.evaluation import evaluate_artifact, evaluate_checkpoint

    kwargs = dict(dataset=spec["dataset"], root=spec["root"], fold=spec.get("fold"), split=spec.get("split", "test"))
    if config.backend == "torch":
        report = evaluate_checkpoint(path, keep_predictions=True, device="cpu", **kwargs)
    else:
        report = evaluate_artifact(path, backend=config.backend, keep_predictions=True, **kwargs)
    keys = ("uar", "war", "uf1")
    return {
        "metrics": {k: report[k] for k in keys if k in report},
        "predictions": report["predictions"],
        "data": report.get("data"),
        "samples": len(report["predictions"]),
    }


# ----------------------------------------------------------------------------- parent side


def environment() -> dict[str, Any]:
    """CPU, flags, OS, tool versions; Jetson power mode; NVIDIA GPU and driver."""
    from edge_fer.artifacts import tool_versions

    env: dict[str, Any] = {
        "os": platform.platform(),
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "tools": tool_versions(),
    }
    from edge_fer.runtime.cpu import cpu_info

    cpu = cpu_info()
    env["cpu"] = cpu.model
    env["cpu_features"] = cpu.to_dict()  # INT8 is only fast with dot-product instructions (runtime/cpu.py)
    env["cpu_flags"] = list(cpu.features)
    if importlib.util.find_spec("openvino") is not None:
        try:
            import openvino as ov

            env["openvino_capabilities"] = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        except Exception as exc:  # noqa: BLE001 - the record notes why, the benchmark goes on
            env["openvino_capabilities"] = f"unavailable ({exc})"
    if Path("/etc/nv_tegra_release").is_file():
        env["jetson"] = Path("/etc/nv_tegra_release").read_text().strip().splitlines()[0]
        if shutil.which("nvpmodel"):
            env["power_mode"] = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True).stdout.strip()
    if shutil.which("nvidia-smi"):
        query = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True, text=True
        )
        env["gpu"] = query.stdout.strip()
    return env


# Metrics are ratios of clip counts (a UAR over 140 clips moves in steps of ~1e-3 or more):
# values closer than this are the same result computed in another order, not a difference.
METRIC_RESOLUTION = 1e-9


def pareto_front(points: list[tuple[float, float]], *, resolution: float = METRIC_RESOLUTION) -> list[bool]:
    """Which (latency, accuracy) points no other point beats (<= latency and >= accuracy, one strictly).

    Accuracies within ``resolution`` of each other are equal: two backends that classify the
    same clips the same way must tie, whatever the last bit of their float UAR."""
    accuracies = [round(acc / resolution) for _, acc in points]  # integers: ties are exact
    flags = []
    for i, ((lat, _), acc) in enumerate(zip(points, accuracies)):
        dominated = any(
            (l2 <= lat and a2 >= acc) and (l2 < lat or a2 > acc)
            for j, ((l2, _), a2) in enumerate(zip(points, accuracies))
            if j != i
        )
        flags.append(not dominated)
    return flags


def _run_worker(task: dict[str, Any]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "edge_fer.bench", "--worker", json.dumps(task)],
        capture_output=True,
        text=True,
        timeout=task.get("timeout", 900),
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        reason = (result.stderr.strip().splitlines() or ["worker failed"])[-1]
        return {"skip": reason[:300]}
    return json.loads(lines[-1])


def _end_to_end(
    artifact: str, backend: str, video: Path, out: Path, stride: int, frames: int | None = None
) -> dict[str, Any]:
    stats = out / "e2e" / f"{abs(hash((artifact, backend))):x}.json"
    stats.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "edge_fer", "camera", "--model", artifact, "--backend", backend, "--source"]
    command += [str(video), "--headless", "--stats-every", "0", "--stats-json", str(stats), "--stride", str(stride)]
    command += ["--max-frames", str(frames)] if frames else []
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        return {"error": (result.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    summary = json.loads(stats.read_text())
    return {k: summary[k] for k in ("fps", "fps_steady", "fps_with_startup", "stage_ms", "frames", "faces_per_frame")}


def run_bench(
    artifacts: list[Path],
    *,
    out: Path,
    backends: list[str],
    batches: list[int],
    threads: list[int | None],
    eval_spec: DataSpec | None = None,
    video: Path | None = None,
    video_frames: int | None = None,
    min_iters: int = 30,
    min_time: float = 2.0,
    stride: int = 4,
    progress: bool = True,
) -> dict[str, Any]:
    """Measure every configuration and write results.json/.csv/.md and pareto.png to ``out``."""
    if not artifacts:
        raise ArtifactError("no artifacts to benchmark: give --artifacts, or a --run folder that holds exports")
    for artifact in artifacts:
        if not artifact.is_file():
            raise ArtifactError(f"{artifact} does not exist")
        if artifact.suffix not in RUNS_ON:
            raise ArtifactError(
                f"{artifact}: not a model edge-fer can time (.onnx, .xml, .engine/.plan or a .pt checkpoint)"
            )
    configs = plan(artifacts, backends, batches, threads)
    if not configs:
        raise ArtifactError(f"none of the artifacts runs on the chosen backends ({', '.join(backends)})")
    out.mkdir(parents=True, exist_ok=True)
    e2e_total = len({(c.artifact, c.backend) for c in configs if c.backend != "torch" and not c.skip}) if video else 0
    bar = _progress(len(configs) + e2e_total, progress)
    rows: list[Row] = []
    predictions: dict[tuple[str, str], list[int]] = {}
    accuracy_done: set[tuple[str, str]] = set()
    for config in configs:
        bar.set_description(
            f"{Path(config.artifact).parent.name}/{Path(config.artifact).name} {config.backend} b{config.batch}"
        )
        row = Row(config)
        if config.skip is None:
            key = (config.artifact, config.backend)
            task = {
                "config": asdict(config),
                "min_iters": min_iters,
                "min_time": min_time,
                "stride": stride,
                "eval": eval_spec.as_json() if eval_spec else None,
                "with_accuracy": key not in accuracy_done,
            }
            result = _run_worker(task)
            if "skip" in result:
                config.skip = result["skip"]
            else:
                accuracy_done.add(key)
                if "predictions" in result:
                    predictions[key] = result.pop("predictions")
                for name in ("data", "samples"):
                    result.pop(name, None)
                for name, value in result.items():
                    setattr(row, name, value)
        if config.skip is not None:
            try:
                row.__dict__.update({k: v for k, v in _describe_quick(Path(config.artifact)).items()})
            except EdgeFerError:
                row.label = config.artifact
        rows.append(row)
        bar.update(1)
    # accuracy of later batches/threads = the same artifact x backend's
    for row in rows:
        if not row.metrics:
            twin = next(
                (
                    r
                    for r in rows
                    if r.metrics and (r.config.artifact, r.config.backend) == (row.config.artifact, row.config.backend)
                ),
                None,
            )
            if twin:
                row.metrics = dict(twin.metrics)
    reference = _reference(rows, predictions)
    if reference is not None:
        ref_predictions = np.array(predictions[reference])
        for row in rows:
            key = (row.config.artifact, row.config.backend)
            if key in predictions and len(predictions[key]) == len(ref_predictions):
                row.agreement = float((np.array(predictions[key]) == ref_predictions).mean())
    if video is not None:
        done: dict[tuple[str, str], dict] = {}
        for row in rows:
            key = (row.config.artifact, row.config.backend)
            if row.config.skip or row.config.backend == "torch" or not row.preset.startswith("stt"):
                continue
            if key not in done:
                bar.set_description(f"end-to-end {Path(row.config.artifact).name} {row.config.backend}")
                done[key] = _end_to_end(row.config.artifact, row.config.backend, video, out, stride, video_frames)
                bar.update(1)
            row.end_to_end = done[key]
    bar.close()
    metric = _headline_metric(rows)
    measured = [r for r in rows if r.config.skip is None and r.p50_ms is not None and metric in r.metrics]
    for batch in batches:
        group = [r for r in measured if r.config.batch == batch]
        for row, flag in zip(group, pareto_front([(r.p50_ms, r.metrics[metric]) for r in group])):
            row.pareto = flag
    results = {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": environment(),
        "settings": {
            "backends": backends,
            "batches": batches,
            "threads": threads,
            "min_iters": min_iters,
            "min_time_s": min_time,
            "warmup_iters": 5,
            "stride": stride,
            "input": "seeded standard-normal array of the artifact's input shape, the same for every configuration",
            "eval": eval_spec.as_json() if eval_spec else None,
            "eval_data": _eval_data(eval_spec),
            "reference": None if reference is None else {"artifact": reference[0], "backend": reference[1]},
            "metric": metric,
            "video": None if video is None else str(video),
            "video_frames": video_frames,
        },
        "rows": [_row_dict(r) for r in rows],
    }
    _write(out, results)
    return results


def _describe_quick(path: Path) -> dict[str, Any]:
    info = _describe(path)
    info.pop("preset_obj", None)
    info.pop("artifact", None)
    return info


def _reference(rows: list[Row], predictions: dict) -> tuple[str, str] | None:
    """The FP32 reference: a torch checkpoint, else an FP32 ONNX on ONNX Runtime, else any FP32."""
    candidates = [r for r in rows if r.precision == "fp32" and (r.config.artifact, r.config.backend) in predictions]
    for preferred in ("torch", "onnxruntime", "openvino"):
        for row in candidates:
            if row.config.backend == preferred:
                return row.config.artifact, row.config.backend
    return None


def _headline_metric(rows: list[Row]) -> str:
    presets = {r.preset for r in rows}
    return "uf1" if presets and all(p.startswith("htnet") for p in presets) else "uar"


def _eval_data(spec: DataSpec | None) -> str | None:
    if spec is None:
        return None
    return spec.data


def _row_dict(row: Row) -> dict[str, Any]:
    data = asdict(row)
    for key, value in list(data.items()):
        if isinstance(value, float):
            data[key] = round(value, 4)
    return data


def _progress(total: int, enabled: bool):
    try:
        from tqdm import tqdm

        return tqdm(total=total, disable=not enabled, file=sys.stderr, unit="config")
    except ImportError:

        class Plain:
            def __init__(self) -> None:
                self.count = 0

            def set_description(self, text: str) -> None:
                if enabled:
                    print(f"[{self.count + 1}/{total}] {text}", file=sys.stderr, flush=True)

            def update(self, n: int) -> None:
                self.count += n

            def close(self) -> None:
                pass

        return Plain()


def _fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "—" if value is None else f"{value:.{digits}f}{suffix}"


def _eval_part(spec: dict[str, Any]) -> str:
    """Which part of the eval set the accuracy is on: a fold's split, a fixed split, or (CK+
    without a fold) every sequence, read zero-shot."""
    if spec["fold"] is not None:
        return f"{spec['dataset']}, fold {spec['fold']}, {spec['split']}"
    if spec["dataset"] == "ckplus":
        return "ckplus, every sequence, zero-shot"
    return f"{spec['dataset']}, {spec['split']}"


def _write(out: Path, results: dict[str, Any]) -> None:
    from edge_fer.fileio import atomic_output

    rows = results["rows"]
    metric = results["settings"]["metric"]
    with atomic_output(out / "results.json", force=True) as tmp:
        tmp.write_text(json.dumps(results, indent=2) + "\n")
    columns = [
        "label",
        "backend",
        "batch",
        "threads",
        "precision",
        "quantization",
        metric,
        "agreement",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "iters",
        "clips_per_s",
        "frames_per_s",
        "stream_frame_ms",
        "load_s",
        "peak_rss_mb",
        "size_mb",
        "pareto",
        "e2e_fps",
        "skip",
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        config = row["config"]
        e2e = row.get("end_to_end") or {}
        values = {**row, **config, metric: row["metrics"].get(metric), "e2e_fps": e2e.get("fps_steady")}
        writer.writerow(["" if values.get(c) is None else values.get(c) for c in columns])
    with atomic_output(out / "results.csv", force=True) as tmp:
        tmp.write_text(buffer.getvalue())
    plot_note = _plot(out, rows, metric, results)
    env = results["environment"]
    settings = results["settings"]
    data = settings.get("eval_data")
    lines = [
        f"# edge-fer bench — {env.get('cpu', '')} ({env['cores']} cores"
        + (f"; {env['cpu_features']['summary']}" if env.get("cpu_features") else "")
        + ")",
        "",
        *(
            [
                "This CPU has no 8-bit dot-product instructions (VNNI/AMX/ARM dot-product): INT8 can be slower "
                "than FP32 here; the rows below are the measurement.",
                "",
            ]
            if env.get("cpu_features") and not env["cpu_features"]["int8_dot_product"]
            else []
        ),
        f"Accuracy: {metric.upper()} on "
        + (f"**{data.upper()}** data ({_eval_part(settings['eval'])})" if data else "no eval set (latency only)")
        + "; agreement: top-1 agreement with "
        + (
            f"`{settings['reference']['artifact']}` on {settings['reference']['backend']}"
            if settings["reference"]
            else "—"
        )
        + f". Latency: batch as shown, ≥ {settings['min_iters']} runs and ≥ {settings['min_time_s']:g} s after "
        f"{settings['warmup_iters']} warm-up runs, same input everywhere. ★ = Pareto-optimal ({metric} vs p50). "
        f"Stream ms/frame = backbone per frame + head per clip / {settings['stride']}.",
        "",
        f"| | model | backend | batch | {metric.upper()} | agreement | p50 ms | p90 ms | p99 ms | clips/s | "
        "stream ms/frame | load s | peak RSS MB | size MB | e2e FPS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    measured = sorted((r for r in rows if not r["config"]["skip"]), key=lambda r: r["p50_ms"] or 1e9)
    for row in measured:
        e2e = row.get("end_to_end") or {}
        agreement = None if row["agreement"] is None else 100 * row["agreement"]
        lines.append(
            f"| {'★' if row['pareto'] else ''} | {row['label']} | {row['config']['backend']}"
            f"{' (' + row['exec_precision'] + ' compute)' if row.get('exec_precision') else ''} | "
            f"{row['config']['batch']} | {_fmt(row['metrics'].get(metric), 4)} | {_fmt(agreement, 1, '%')} | "
            f"{_fmt(row['p50_ms'])} | {_fmt(row['p90_ms'])} | {_fmt(row['p99_ms'])} | {_fmt(row['clips_per_s'], 1)} | "
            f"{_fmt(row['stream_frame_ms'])} | {_fmt(row['load_s'])} | {_fmt(row['peak_rss_mb'], 0)} | "
            f"{_fmt(row['size_mb'])} | {_fmt(e2e.get('fps_steady'), 1)} |"
        )
    skipped = [r for r in rows if r["config"]["skip"]]
    if skipped:
        lines += ["", "Skipped:", ""]
        lines += [f"- {r['label']} on {r['config']['backend']}: {r['config']['skip']}" for r in skipped]
    lines += ["", plot_note, "", f"Tools: {', '.join(f'{k} {v}' for k, v in env['tools'].items())}."]
    with atomic_output(out / "results.md", force=True) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _plot(out: Path, rows: list[dict], metric: str, results: dict) -> str:
    points = [r for r in rows if not r["config"]["skip"] and r["p50_ms"] and metric in r["metrics"]]
    points = [r for r in points if r["config"]["batch"] == min(p["config"]["batch"] for p in points)] if points else []
    if not points:
        return "No plot: no configuration has both a latency and an accuracy."
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "No plot: matplotlib is not installed (pip install matplotlib)."
    data = results["settings"].get("eval_data") or ""
    figure, axis = plt.subplots(figsize=(9, 5.5 + 0.22 * len(points)))
    # Points are numbered on the plot; the legend names them (many share one accuracy).
    for number, row in enumerate(sorted(points, key=lambda r: r["p50_ms"]), start=1):
        where = f"{Path(row['config']['artifact']).parent.name}/{Path(row['config']['artifact']).name}"
        name = f"{number}: {row['precision']} {row['quantization'] if row['quantization'] != 'none' else ''}"
        name = f"{name} {row['config']['backend']} ({where})".replace("  ", " ") + (" ★" if row["pareto"] else "")
        marker = "*" if row["pareto"] else "o"
        axis.scatter(row["p50_ms"], row["metrics"][metric], marker=marker, s=140 if row["pareto"] else 45, label=name)
        axis.annotate(
            str(number),
            (row["p50_ms"], row["metrics"][metric]),
            fontsize=8,
            xytext=(3, 5 + 6 * (number % 3)),
            textcoords="offset points",
        )
    front = sorted((r for r in points if r["pareto"]), key=lambda r: r["p50_ms"])
    if len(front) > 1:
        axis.step([r["p50_ms"] for r in front], [r["metrics"][metric] for r in front], where="post", linestyle="--")
    axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1, frameon=False)
    axis.set_xlabel(f"p50 latency, ms (batch {points[0]['config']['batch']})")
    axis.set_ylabel(metric.upper() + (f" ({data} data)" if data else ""))
    axis.set_title(
        f"edge-fer bench: accuracy vs latency — {data.upper()} data, {results['environment'].get('cpu', '')}"[:90]
    )
    axis.grid(alpha=0.3)
    figure.tight_layout()
    from edge_fer.fileio import atomic_output

    with atomic_output(out / "pareto.png", force=True) as tmp:
        figure.savefig(tmp, dpi=120, format="png")
    plt.close(figure)
    return "![accuracy vs latency](pareto.png)"


def compare(old: Path, new: Path, *, tolerance: float = 0.10, accuracy_drop: float = 0.005) -> list[str]:
    """Regressions of ``new`` against ``old``: slower beyond max(tolerance, old's p90/p50 spread),
    or less accurate by more than ``accuracy_drop``; rows matched by label, backend, batch, threads."""

    def load(path: Path) -> dict:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"cannot read {path}: {exc}") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise ArtifactError(f"{path} is not an edge-fer bench results.json ({SCHEMA})")
        return data

    before, after = load(old), load(new)
    key = lambda r: (r["label"], r["config"]["backend"], r["config"]["batch"], r["config"]["threads"])  # noqa: E731
    previous = {key(r): r for r in before["rows"] if not r["config"]["skip"]}
    metric = after["settings"]["metric"]
    problems = []
    for row in after["rows"]:
        old_row = previous.get(key(row))
        if old_row is None or row["config"]["skip"]:
            continue
        if old_row["p50_ms"] and row["p50_ms"]:
            noise = max(tolerance, (old_row["p90_ms"] - old_row["p50_ms"]) / old_row["p50_ms"])
            if row["p50_ms"] > old_row["p50_ms"] * (1 + noise):
                problems.append(
                    f"slower: {row['label']} {row['config']['backend']} b{row['config']['batch']}: p50 "
                    f"{old_row['p50_ms']:.2f} -> {row['p50_ms']:.2f} ms (+{row['p50_ms'] / old_row['p50_ms'] - 1:.0%}, "
                    f"noise {noise:.0%})"
                )
        a, b = old_row["metrics"].get(metric), row["metrics"].get(metric)
        if a is not None and b is not None and a - b > accuracy_drop:
            problems.append(f"less accurate: {row['label']} {row['config']['backend']}: {metric} {a:.4f} -> {b:.4f}")
    return problems


if __name__ == "__main__" and "--worker" in sys.argv:
    task = json.loads(sys.argv[sys.argv.index("--worker") + 1])
    try:
        print(json.dumps(worker(task)))
    except EdgeFerError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(1)
