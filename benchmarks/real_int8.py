"""INT8 on real data, fold by fold, and the real-data report (``python -m benchmarks.real``).

For each fold's FP32 model (trained by ``benchmarks.real``): OpenVINO FP32, OpenVINO INT8
post-training (NNCF, calibrated on that fold's *training* data only), accuracy-controlled INT8
(NNCF: at most 1 point lost on the fold's *validation* people - the ones its training set aside
for model selection), the TensorRT-ready signed INT8 Q/DQ ONNX run by ONNX Runtime, and the QAT
fine-tuned model in OpenVINO, all predicting the fold's held-out people. Predictions are pooled over folds, as the FP32
metric is, so each INT8 figure's drop is measured on exactly the same samples.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import warnings
from pathlib import Path

import numpy as np

from edge_fer.fileio import atomic_output
from edge_fer.metrics import classification_report

__all__ = ["run_int8", "write_report"]

CALIB_SAMPLES = 128
AC_MAX_DROP = 0.01  # accuracy-controlled INT8: at most 1 point of the fold's metric on its validation people


def _calibration_indices(labels: np.ndarray, samples: int, seed: int = 0) -> np.ndarray:
    """Up to ``samples`` indices, classes in proportion (every class at least once)."""
    rng = np.random.default_rng(seed)
    if len(labels) <= samples:
        return np.arange(len(labels))
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        take = max(1, round(samples * len(members) / len(labels)))
        chosen += rng.choice(members, size=min(take, len(members)), replace=False).tolist()
    return np.sort(np.array(chosen[: max(samples, len(np.unique(labels)))]))


def _predict_engines(
    checkpoint: Path, calib: np.ndarray, test: np.ndarray, qat_checkpoint: Path | None, validation
) -> tuple[dict, dict]:
    """Predicted classes of ``test`` per engine/precision (all from the same fold model), and
    what accuracy control measured on ``validation`` = (inputs, targets, score function)."""
    import onnxruntime as ort
    import openvino as ov
    import torch

    from export.common import load_exportable
    from export.onnx import export_onnx
    from export.openvino import accuracy_controlled_int8, convert_part, post_training_int8
    from export.qdq import quantize_for_tensorrt

    exportable = load_exportable(checkpoint)
    model = exportable.model.eval()
    core = ov.Core()
    f32 = {"INFERENCE_PRECISION_HINT": "f32"}  # FP32 really computed in FP32 (no bf16 on CPUs that have it)
    predictions = {}
    with torch.no_grad():
        predictions["fp32 torch"] = model(torch.from_numpy(test)).argmax(1).numpy()
    ov_model = convert_part(exportable, "full")
    predictions["fp32 openvino"] = core.compile_model(ov_model, "CPU", f32)(test)[0].argmax(1)
    samples = [calib[i : i + 1] for i in range(len(calib))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        int8 = post_training_int8(ov_model, samples)  # the settings export.openvino uses
    predictions["int8 openvino ptq"] = core.compile_model(int8, "CPU", f32)(test)[0].argmax(1)
    val_inputs, val_targets, score = validation
    items = [(val_inputs[i : i + 1], int(val_targets[i])) for i in range(len(val_inputs))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        controlled, before, after = accuracy_controlled_int8(ov_model, samples, items, score, AC_MAX_DROP)
    # Kept even where the target was missed (the exporter would refuse to write it): the row
    # then shows what NNCF's search gives, and the report counts such folds.
    predictions["int8 openvino accuracy-controlled"] = core.compile_model(controlled, "CPU", f32)(test)[0].argmax(1)
    control = {"val_samples": len(items), "float": before, "int8": after, "reached": before - after <= AC_MAX_DROP}
    input_name = model.io_names["full"][0]
    with tempfile.TemporaryDirectory(prefix="edge-fer-real-") as tmp:
        fp32_onnx = export_onnx(model, Path(tmp) / "fp32.onnx")
        qdq = quantize_for_tensorrt(fp32_onnx, Path(tmp) / "qdq.onnx", [{input_name: s} for s in samples])
        session = ort.InferenceSession(str(qdq), providers=["CPUExecutionProvider"])
        predictions["int8 q/dq onnxruntime (tensorrt input)"] = session.run(None, {input_name: test})[0].argmax(1)
    if qat_checkpoint is not None:
        qat = load_exportable(qat_checkpoint)
        predictions["int8 openvino qat"] = core.compile_model(convert_part(qat, "full"), "CPU", f32)(test)[0].argmax(1)
    return {k: np.asarray(v).astype(int).tolist() for k, v in predictions.items()}, control


def _save(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, force=True) as tmp:
        tmp.write_text(json.dumps(payload))


def _training_split(checkpoint: Path, labels: list[int], groups: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The (fit, validation) split of a fold's training data that its training run made, as
    recorded in its checkpoint; runs from before that record made it with the trainer's
    default fraction and its seed."""
    from edge_fer.data.splits import train_val_split
    from edge_fer.models.checkpoint import read_checkpoint
    from train import htnet, stt

    payload = read_checkpoint(checkpoint)
    default = htnet.VAL_FRACTION if payload["model_kind"] == "htnet" else stt.VAL_FRACTION
    recorded = payload.get("validation") or {"fraction": default, "seed": payload["train_config"]["seed"]}
    return train_val_split(labels, val_fraction=recorded["fraction"], seed=recorded["seed"], groups=groups)


def _megc2019(out: Path, root: Path) -> None:
    from edge_fer.data.megc2019 import megc2019_features, read_megc2019
    from edge_fer.data.splits import loso_folds
    from edge_fer.metrics import classification_report
    from edge_fer.models.checkpoint import load_model
    from edge_fer.preprocessing.clips import to_model_input
    from edge_fer.presets import MICRO_CLASSES

    run, qat_run = out / "megc2019" / "htnet_light", out / "megc2019" / "htnet_light_qat"
    records = read_megc2019(root / "htnet-megc2019")
    subjects = [r.subject for r in records]
    labels = np.array([r.label for r in records])
    folds = loso_folds(subjects)
    _, preset, _ = load_model(run / "folds" / _safe(folds[0].name) / "best.pt")
    features = megc2019_features(records, convention=preset.preprocessing.patch_convention, cache_dir=run / "cache")
    inputs = to_model_input(features.images, preset.preprocessing)
    # While the QAT run is still going (started alongside), measure only the folds it finished.
    qat_running = qat_run.exists() and not (qat_run / "metrics.json").exists()
    for fold in folds:
        target = out / "int8" / "megc2019" / f"{_safe(fold.name)}.json"
        qat_done = (qat_run / "folds" / _safe(fold.name) / "predictions.json").exists()
        if target.exists() or (qat_running and not qat_done):
            continue
        train, test = np.array(fold.train), np.array(fold.test)
        # train.htnet's own split of the training subjects: calibration from the part it trained
        # on, accuracy control on the part it set aside for model selection.
        fit_part, val_part = _training_split(
            run / "folds" / _safe(fold.name) / "best.pt", labels[train].tolist(), [subjects[i] for i in train]
        )
        fit_part, val_part = train[fit_part], train[val_part]
        calib = inputs[fit_part[_calibration_indices(labels[fit_part], CALIB_SAMPLES)]]
        qat = qat_run / "folds" / _safe(fold.name) / "best.pt"
        predictions, control = _predict_engines(
            run / "folds" / _safe(fold.name) / "best.pt",
            calib,
            inputs[test],
            qat if qat.exists() else None,
            (inputs[val_part], labels[val_part], lambda t, p: classification_report(t, p, MICRO_CLASSES)["uf1"]),
        )
        _save(
            target,
            {
                "fold": fold.name,
                "targets": labels[test].tolist(),
                "sources": [records[i].source for i in test],
                "predictions": predictions,
                "accuracy_control": {**control, "metric": "uf1"},
            },
        )
        print(f"  int8 megc2019 {fold.name}", flush=True)


def _ckplus(out: Path, root: Path) -> None:
    from edge_fer.data.ckplus import CKPLUS_CLASSES
    from edge_fer.data.dfer import read_dfer
    from edge_fer.data.torch_dataset import ClipDataset
    from edge_fer.metrics import classification_report
    from edge_fer.models.checkpoint import load_model

    for fold in range(1, 11):
        target = out / "int8" / "ckplus" / f"fold{fold}.json"
        if target.exists():
            continue
        checkpoint = out / "ckplus" / "stt" / f"fold{fold}" / "best.pt"
        qat = out / "ckplus" / "stt_qat" / f"fold{fold}" / "best.pt"
        _, preset, _ = load_model(checkpoint)
        train = read_dfer("ckplus", root / "ckplus48", fold=fold, split="train")
        test = read_dfer("ckplus", root / "ckplus48", fold=fold, split="test")
        # train.stt's own split of the training people (validation: whole people, 10 %).
        fit_part, val_part = _training_split(checkpoint, [r.label for r in train], [r.subject for r in train])
        fit_records, val_records = [train[i] for i in fit_part], [train[i] for i in val_part]
        picks = _calibration_indices(np.array([r.label for r in fit_records]), 64)
        inputs = {
            name: np.stack([clips.eval_item(i)[0].numpy() for i in range(len(clips))])
            for name, clips in (
                ("calib", ClipDataset([fit_records[i] for i in picks], preset.preprocessing, train=False)),
                ("val", ClipDataset(val_records, preset.preprocessing, train=False)),
                ("test", ClipDataset(test, preset.preprocessing, train=False)),
            )
        }
        validation = (
            inputs["val"],
            np.array([r.label for r in val_records]),
            lambda t, p: classification_report(t, p, CKPLUS_CLASSES)["uar"],
        )
        predictions, control = _predict_engines(
            checkpoint, inputs["calib"], inputs["test"], qat if qat.exists() else None, validation
        )
        _save(
            target,
            {
                "fold": fold,
                "targets": [r.label for r in test],
                "predictions": predictions,
                "accuracy_control": {**control, "metric": "uar"},
            },
        )
        print(f"  int8 ckplus fold {fold}", flush=True)


def run_int8(out: Path, root: Path) -> None:
    """Per-fold INT8 predictions into ``out/int8`` (folds already done are kept)."""
    print("benchmarks.real: INT8 per fold", flush=True)
    _ckplus(out, root)
    _megc2019(out, root)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def _pooled(folder: Path) -> tuple[list[int], dict[str, list[int]], list[str], list[dict]]:
    """Targets, predictions per engine, sources and accuracy-control records pooled over the
    folds; an engine missing from any fold (a QAT run not finished) is left out, never pooled
    over fewer samples than the rest."""
    folds = [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]
    everywhere = set.intersection(*(set(fold["predictions"]) for fold in folds)) if folds else set()
    targets, predictions, sources, controls = [], {}, [], []
    for fold in folds:
        targets += fold["targets"]
        sources += fold.get("sources", [])
        controls += [fold["accuracy_control"]] if "accuracy_control" in fold else []
        for name, values in fold["predictions"].items():
            if name in everywhere:
                predictions.setdefault(name, []).extend(values)
    return targets, predictions, sources, controls


def _summed_confusion(folder: Path) -> dict | None:
    """Pooled metrics of per-fold ``metrics.json`` files (confusion matrices summed)."""
    files = sorted(folder.glob("fold*/metrics.json"))
    if not files:
        return None
    reports = [json.loads(p.read_text()) for p in files]
    matrix = np.sum([np.array(r["confusion_matrix"]) for r in reports], axis=0)
    targets = np.repeat(np.arange(len(matrix)), matrix.sum(axis=1))
    predictions = np.concatenate([np.repeat(np.arange(len(matrix)), row) for row in matrix])
    return {**classification_report(targets, predictions, reports[0]["classes"]), "folds": len(files)}


def _pt(value: float) -> str:
    return f"{100 * value:.1f}"


PAPER_MEGC2019 = {
    "all": (0.8603, 0.8475),
    "casme2": (0.9532, 0.9516),
    "samm": (0.8131, 0.8124),
    "smic": (0.8049, 0.7905),
}
STSTNET_MEGC2019 = (0.7353, 0.7605)  # the MEGC2019 baseline (composite UF1, UAR)
SOURCES = (("casme2", "CASME II"), ("samm", "SAMM"), ("smic", "SMIC"))


def _megc_row(name: str, figures: dict) -> str:
    cells = [f"{figures['uf1']:.4f} / {figures['uar']:.4f}"]
    cells += [f"{figures[s]['uf1']:.4f} / {figures[s]['uar']:.4f}" if s in figures else "-" for s, _ in SOURCES]
    return f"| {name} | " + " | ".join(cells) + " |"


def _per_source(targets, predictions, sources, classes) -> dict:
    report = classification_report(targets, predictions, classes)
    figures = {"uf1": report["uf1"], "uar": report["uar"], "war": report["war"]}
    for source, _ in SOURCES:
        picked = [i for i, s in enumerate(sources) if s == source]
        if picked:
            part = classification_report([targets[i] for i in picked], [predictions[i] for i in picked], classes)
            figures[source] = {"uf1": part["uf1"], "uar": part["uar"]}
    return figures


def _int8_rows(targets, predictions, classes, metrics: tuple[str, ...], sources=None) -> tuple[list[dict], list[str]]:
    reference = classification_report(targets, predictions["fp32 torch"], classes)
    rows, lines = [], []
    for name, values in predictions.items():
        report = classification_report(targets, values, classes)
        agreement = float(np.mean(np.array(values) == np.array(predictions["fp32 torch"])))
        row = {"engine": name, **{m: report[m] for m in metrics}, "top1_agreement_with_fp32": agreement}
        row["drop_points"] = {m: 100 * (reference[m] - report[m]) for m in metrics}
        rows.append(row)
        cells = [f"{report[m]:.4f} ({_change(-row['drop_points'][m])})" for m in metrics]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {100 * agreement:.1f} % |")
    return rows, lines


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "CPU"
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "CPU")


def _change(points: float) -> str:
    return "±0.0" if abs(points) < 0.05 else f"{points:+.1f}"


def write_report(out: Path, timings: dict) -> None:
    """``report.json`` and ``report.md`` from the runs and the per-fold INT8 predictions."""
    from edge_fer.data.ckplus import CKPLUS_CLASSES
    from edge_fer.presets import MICRO_CLASSES
    from edge_fer.runtime.cpu import cpu_info

    cpu = f"{os.cpu_count()}-core {_cpu_model()}, {cpu_info().summary}"
    report: dict = {"machine": {"cpu": cpu, "python": platform.python_version()}, "timings": timings}
    md = [
        "# Real-data results (`python -m benchmarks.real`)",
        "",
        f"Machine: {report['machine']['cpu']}; training {timings.get('train_s', 0) / 60:.0f} min "
        f"(two 1-thread jobs side by side), INT8 per fold {timings.get('int8_s', 0) / 60:.0f} min, bench "
        f"{timings.get('bench_s', 0) / 60:.0f} min (wall time of each stage, summed over the runs that built this "
        "folder: an interrupted or extended run counts each part once more). Weights trained on "
        "these sets stay in the run folder: they are never shipped.",
        "",
    ]
    megc = out / "megc2019" / "htnet_light" / "metrics.json"
    if megc.exists():
        metrics = json.loads(megc.read_text())
        report["megc2019"] = metrics
        md += [
            "## MEGC2019 composite: real micro-expressions (442 samples, 68 subjects, leave-one-subject-out)",
            "",
            "HTNet's own inputs (the flow images its repository ships); patches placed by our detector. "
            f"`{metrics.get('preset')}`, trained from scratch on this CPU. UF1 / UAR pooled over all "
            "442 predictions, and per source database.",
            "",
            "| protocol | all | CASME II | SAMM | SMIC |",
            "|---|---|---|---|---|",
            _megc_row(
                "**honest**: best epoch on a validation split of the training subjects", metrics["protocols"]["honest"]
            ),
            _megc_row("as the official script: best epoch on the held-out subject", metrics["protocols"]["official"]),
            _megc_row(
                "HTNet paper (`htnet_official`, official protocol)",
                {"uf1": PAPER_MEGC2019["all"][0], "uar": PAPER_MEGC2019["all"][1]}
                | {s: {"uf1": v[0], "uar": v[1]} for s, v in PAPER_MEGC2019.items() if s != "all"},
            ),
            f"| STSTNet (the MEGC2019 baseline) | {STSTNET_MEGC2019[0]:.4f} / {STSTNET_MEGC2019[1]:.4f} | - | - | - |",
            "",
        ]
    ck_rows = []
    for folder, label in (
        ("stt", "STT `stt_tiny` (clip of the sequence), trunk started from the fold's single-frame model"),
        ("stt_scratch", "STT `stt_tiny`, from scratch (ablation)"),
        ("frame", "single-frame baseline (same trunk, middle peak frame)"),
        ("frame_leaky", "single-frame baseline, **leaky** frame-index split"),
    ):
        pooled = _summed_confusion(out / "ckplus" / folder)
        if pooled:
            report.setdefault("ckplus", {})[folder] = pooled
            protocol = "leaky: the same people on both sides" if "leaky" in folder else "10 folds by subject"
            ck_rows.append(f"| {label} | {protocol} | {pooled['war']:.4f} | {pooled['uar']:.4f} | {pooled['folds']} |")
    if ck_rows:
        md += [
            "## CK+: real faces, posed (327 sequences of 118 people, 7 classes)",
            "",
            "CK+48 (the 3 peak frames of each sequence, 48x48 grey), trained on this CPU with no outside weights: "
            "the single-frame baseline from scratch, then STT with its ResNet trunk started from the same fold's "
            "single-frame model (two-stage, as the STT paper starts from a face-trained ResNet-18; the fold's test "
            "people are never seen). Accuracy = sequences (frames, for the leaky split) right, pooled over the "
            "folds. The CK+48 repository publishes 94.04 % (ResNet-18) on its leaky split.",
            "",
            "| model | protocol | accuracy | UAR | folds |",
            "|---|---|---|---|---|",
            *ck_rows,
            "",
        ]
    int8_sections = (
        ("ckplus", "CK+ STT, 10 folds by subject", CKPLUS_CLASSES, ("war", "uar")),
        ("megc2019", "MEGC2019 htnet_light, LOSO (honest fold models)", MICRO_CLASSES, ("uf1", "uar")),
    )
    for key, title, classes, metrics in int8_sections:
        folder = out / "int8" / key
        if not any(folder.glob("*.json")):
            continue
        targets, predictions, sources, controls = _pooled(folder)
        rows, lines = _int8_rows(targets, predictions, classes, metrics)
        report.setdefault("int8", {})[key] = {"samples": len(targets), "rows": rows, "accuracy_control": controls}
        control_note = []
        if controls:
            reached = sum(c["reached"] for c in controls)
            metric, sizes = controls[0]["metric"].upper(), [c["val_samples"] for c in controls]
            control_note = [
                f"Accuracy-controlled INT8: NNCF reverts layers to float until the fold's {metric} on its validation "
                f"people (set aside by training for model selection, {min(sizes)}-{max(sizes)} samples) is at most "
                f"{100 * AC_MAX_DROP:.0f} point below "
                f"FP32; the target was reached in {reached} of {len(controls)} folds (where it was not, NNCF's model "
                "is kept here; the exporter would refuse to write it).",
                "",
            ]
        names = {"war": "accuracy", "uar": "UAR", "uf1": "UF1"}
        md += [
            f"## INT8 on real data: {title}",
            "",
            f"{len(targets)} held-out predictions pooled over the folds; in brackets the change from FP32 (torch) "
            "of the same fold models, in points. INT8 post-training is calibrated on each fold's training data only.",
            "",
            "| engine | " + " | ".join(names[m] for m in metrics) + " | top-1 agreement with FP32 |",
            "|---|" + "---|" * len(metrics) + "---|",
            *lines,
            "",
            *control_note,
        ]
    benches = (
        ("ckplus", "CK+ fold 1 (its held-out people)", "Exports of CK+ fold 1's STT"),
        ("megc2019", "MEGC2019 fold 1 of 5 by subject (its held-out people)",
         "Exports of an `htnet_light` trained on the other four fifths of the MEGC2019 subjects"),
    )  # fmt: skip
    for name, where, what in benches:
        bench = out / "bench" / name / "results.md"
        if not bench.exists():
            continue
        md += [
            f"## `edge-fer bench` on real data: {where}",
            "",
            f"{what}, accuracy on its held-out people, latency on this CPU (Pareto plot: `bench/{name}/pareto.png`).",
            "",
            *[
                line.replace("](pareto.png)", f"](bench/{name}/pareto.png)")
                for line in bench.read_text().splitlines()
                if not line.startswith("# ")
            ],
            "",
        ]
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text("\n".join(md))
