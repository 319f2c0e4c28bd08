"""Train HTNet on micro-expressions, evaluated leave-one-subject-out (LOSO).

    python -m train.htnet --dataset casme2 --root CASME2 --loso --preset htnet_light --out runs/htnet
    python -m train.htnet --dataset megc2019 --root HTNet-clone --loso --out runs/megc2019
    python -m train.htnet --dataset megc2019 --root HTNet-clone --fold 1 --out runs/megc2019-fold1

Reads top to bottom: flags -> records and cached flow features (computed once; megc2019
reads the HTNet repository's own flow images) -> for each held-out subject: train on the
other subjects with a validation split carved from them, keep the best epoch on validation,
predict the held-out subject -> UF1/UAR on the predictions pooled over all folds (MEGC2019),
overall and per source database -> a final model trained on every subject (best.pt).

Two protocols are reported side by side. "honest": model selection never sees the held-out
subject (the headline). "official": as the HTNet script does it, each fold keeps the epoch
with the most correct predictions ON the held-out subject (the last such epoch) - optimistic,
shown so the published numbers can be read against it.

One held-out model (megc2019, ``--fold K``): the composite's 5 folds by subject
(``edge_fer.data.megc2019``); best.pt is trained on fold K's training subjects (validation
carved from them) and metrics.json holds its scores on the held-out test subjects - the
model to export, calibrate (``--calib dataset=megc2019,root=...,fold=K``) and benchmark
(``edge-fer bench --dataset megc2019 --fold K``) without touching test people.

Quantization-aware fine-tuning: ``--qat --from RUN`` fine-tunes each fold's model of a LOSO
run trained with ``--keep-fold-models`` (and RUN/best.pt, the final model) with INT8
fake-quantizers, on the same training subjects and with the same honest selection. With
``--fold K`` RUN must be a ``--fold K`` run; its best.pt is fine-tuned on the same subjects.

Labels: the MEGC2019 composite classes (negative, positive, surprise) by default;
``--classes native`` keeps the dataset's own emotions (samples of unmapped emotions are
dropped in composite mode). Official HTNet setting: ``--preset htnet_official --lr 5e-5
--batch-size 256 --epochs 800``; the defaults suit the light preset.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from edge_fer.cli.args import Parser
from edge_fer.data.megc2019 import MEGC2019, MEGC2019_FOLDS, megc2019_features, megc2019_folds, read_megc2019
from edge_fer.data.micro import MICRO_DATASETS, composite_label, read_micro
from edge_fer.data.micro_features import MicroFeatureConfig, compute_micro_features
from edge_fer.data.spec import is_synthetic
from edge_fer.data.splits import loso_folds, train_val_split
from edge_fer.data.torch_dataset import MicroDataset
from edge_fer.errors import PresetError
from edge_fer.fileio import atomic_output
from edge_fer.metrics import classification_report
from edge_fer.models import build_model
from edge_fer.models.checkpoint import load_model
from edge_fer.presets import MICRO_CLASSES, get_preset
from train.common import (
    TrainConfig,
    fit,
    pick_device,
    predict,
    prepare_run_dir,
    progress_bar,
    setup_distributed,
    write_metrics,
)

VAL_FRACTION = 0.15  # of the training subjects' samples, for model selection
# HTNet paper, MEGC2019 composite, official protocol: (UF1, UAR).
PAPER = {
    "all": (0.8603, 0.8475),
    "casme2": (0.9532, 0.9516),
    "samm": (0.8131, 0.8124),
    "smic": (0.8049, 0.7905),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = Parser(prog="python -m train.htnet", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, choices=sorted([*MICRO_DATASETS, MEGC2019]))
    p.add_argument(
        "--root",
        required=True,
        type=Path,
        help="dataset folder (composite: a folder holding casme2/, samm/, smic/; megc2019: a clone of the HTNet "
        "repository, or a folder in its layout)",
    )
    p.add_argument(
        "--loso",
        action="store_true",
        help="leave-one-subject-out evaluation (otherwise: only the "
        "final model, validated on a held-out part of the subjects)",
    )
    p.add_argument(
        "--fold",
        type=int,
        help=f"megc2019 only, instead of --loso: train on fold K's training subjects (K = 1..{MEGC2019_FOLDS}, "
        "folds by subject) and report best.pt on its held-out test subjects",
    )
    p.add_argument("--classes", choices=("composite", "native"), default="composite")
    p.add_argument("--preset", default="htnet_light")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--epochs", type=int, help="default 100 (2 with --qat)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, help="peak learning rate (default 1e-3; 1e-5 with --qat)")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--val-fraction", type=float, default=VAL_FRACTION, help="of the training subjects' samples")
    p.add_argument("--flow", choices=("farneback", "dis"), default="farneback")
    p.add_argument(
        "--patches", choices=("xy", "official"), default=None, help="patch crop convention (default: the preset's)"
    )
    p.add_argument("--cache", type=Path, help="flow feature cache (default: OUT/cache)")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: all cores, fewer while other processes keep cores busy; "
        "give a number for bit-exact reruns and resumes)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-amp", action="store_true")
    p.add_argument(
        "--keep-fold-models",
        action="store_true",
        help="keep each LOSO fold's best.pt (for INT8 measured per fold: python -m benchmarks.real)",
    )
    p.add_argument(
        "--qat",
        action="store_true",
        help="quantization-aware fine-tuning (INT8) of the run in --from, fold by fold with --loso",
    )
    p.add_argument(
        "--from",
        dest="from_run",
        type=Path,
        help="with --qat: the float run folder (its best.pt, and folds/*/best.pt from --keep-fold-models)",
    )
    p.add_argument("--calib-samples", type=int, default=128, help="with --qat: samples to initialise quantizers")
    p.add_argument("--qat-target", choices=("openvino", "tensorrt"), default="openvino")
    p.add_argument(
        "--shard",
        type=_shard,
        metavar="K/N",
        help="with --loso: train only every N-th fold from the K-th, beside the other shards in one --out "
        "(finished folds are kept, as with --resume); then the same command with --resume and no --shard pools them "
        "and trains the final model (scripts/gpu_htnet_official.sh runs shards side by side on one GPU)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=1,
        metavar="N",
        help="write the resume state (last.pt) every N epochs; 0: never (an interrupted fold restarts)",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out (finished folds are kept)")
    p.add_argument("--force", action="store_true")
    args = p.parse_args(argv)
    if args.shard is not None:
        if not args.loso:
            p.error("--shard splits the folds of --loso; add --loso")
        if args.force:
            p.error("--force with --shard would let one shard clear the others' folds; empty --out first")
        args.resume = True
    if args.checkpoint_every < 0:
        p.error(f"--checkpoint-every must be 0 or more, got {args.checkpoint_every}")
    if args.fold is not None:
        if args.dataset != MEGC2019:
            p.error(f"--fold is for --dataset {MEGC2019} (its {MEGC2019_FOLDS} folds by subject), not {args.dataset}")
        if args.loso:
            p.error("--fold and --loso are two protocols: give one")
        if not 1 <= args.fold <= MEGC2019_FOLDS:
            p.error(f"--fold must be 1..{MEGC2019_FOLDS}, got {args.fold}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ddp = setup_distributed()
    if args.qat:
        _check_qat_source(args)
    epochs = args.epochs or (2 if args.qat else 100)
    config = TrainConfig(
        epochs=epochs,
        batch_size=args.batch_size,
        lr=args.lr or (1e-5 if args.qat else 1e-3),
        optimizer="adamw",
        weight_decay=args.weight_decay,
        warmup_epochs=0.0 if args.qat else min(5.0, epochs / 10),
        workers=args.workers,
        threads=args.threads,
        seed=args.seed,
        device=args.device,
        amp=not args.no_amp,
        checkpoint_every=args.checkpoint_every,
    )
    torch.manual_seed(config.seed)
    if ddp.main:
        prepare_run_dir(args.out, resume=args.resume, force=args.force)
    log = print if ddp.main else (lambda *_: None)

    # Records and labels.
    preset = _source_preset(args.from_run, args.fold) if args.qat else get_preset(args.preset)
    if preset.family != "htnet":
        raise PresetError(f"preset {args.preset!r} is a {preset.family} preset; train.htnet needs an HTNet preset")
    convention = args.patches or preset.preprocessing.patch_convention or "xy"
    synthetic = is_synthetic(args.root)
    cache_dir = args.cache or (args.from_run / "cache" if args.qat else args.out / "cache")
    if args.dataset == MEGC2019:
        if args.classes != "composite":
            raise PresetError("megc2019 has the three composite classes only; drop --classes native")
        classes = MICRO_CLASSES
        records = read_megc2019(args.root)
        labels = np.array([r.label for r in records], dtype=np.int64)
        sources = [r.source for r in records]
        # Flow from the repository's images; patches placed by our detector on the apex face.
        features = megc2019_features(
            records, convention=convention, cache_dir=cache_dir, progress=_progress("landmarks") if ddp.main else None
        )
    else:
        records = read_micro(args.dataset, args.root)
        if args.classes == "composite":
            classes = MICRO_CLASSES
            labelled = [(r, composite_label(r)) for r in records]
            labelled = [(r, y) for r, y in labelled if y is not None]
        else:
            classes = MICRO_DATASETS[args.dataset].classes
            labelled = [(r, classes.index(r.emotion)) for r in records]
        records = [r for r, _ in labelled]
        labels = np.array([y for _, y in labelled], dtype=np.int64)
        sources = [r.dataset for r in records]
        # Flow features, computed once and cached.
        features = compute_micro_features(
            records,
            cache_dir=cache_dir,
            config=MicroFeatureConfig(method=args.flow, convention=convention),
            progress=_progress("flow features") if ddp.main else None,
        )
    subjects = [r.subject for r in records]
    preset = preset.with_classes(classes)
    log(
        f"train.htnet: {preset.name} on {args.dataset}{' (SYNTHETIC)' if synthetic else ''}: {len(records)} samples, "
        f"{len(set(subjects))} subjects, classes {classes}; apex spotted for {int(features.apex_spotted.sum())}, "
        f"no face found in {int((~features.face_found).sum())}"
    )
    meta = {
        "dataset": {
            "name": args.dataset,
            "root": str(args.root),
            "synthetic": synthetic,
            "classes": args.classes,
            "samples": len(records),
            **({"fold": args.fold, "protocol": "subject-5fold"} if args.fold is not None else {}),
        },
        "features": {
            "flow": "HTNet repository images" if args.dataset == MEGC2019 else args.flow,
            "patches": convention,
        },
        # Recorded so that tools measuring this model later (benchmarks.real_int8) set aside
        # the same validation subjects instead of repeating this script's defaults.
        "validation": {"fraction": args.val_fraction, "seed": config.seed, "groups": "subject"},
    }

    def start_model(indices: np.ndarray, source: Path | None) -> tuple[torch.nn.Module, dict]:
        """A new model, or (QAT) ``source``'s float model with quantizers set on training samples."""
        if not args.qat:
            return build_model(preset), meta
        from edge_fer.models.qat import prepare_qat, qat_state

        model, _, _ = load_model(source)
        picks = np.random.default_rng(config.seed).permutation(indices)[: args.calib_samples]
        calibration = MicroDataset(features.images[picks], labels[picks], preset.preprocessing, train=False)
        inputs = np.stack([calibration[i][0].numpy() for i in range(len(calibration))])
        model = prepare_qat(model, inputs, target=args.qat_target)
        return model, {**meta, "qat": qat_state(model), "qat_from": str(source), "qat_target": args.qat_target}

    def train_on(indices: np.ndarray, run_dir: Path, watch=None, source: Path | None = None) -> dict:
        train_idx, val_idx = train_val_split(
            labels[indices].tolist(),
            val_fraction=args.val_fraction,
            seed=config.seed,
            groups=[subjects[i] for i in indices],
        )
        train_idx, val_idx = indices[train_idx], indices[val_idx]
        flip = convention == "xy"
        train_set = MicroDataset(
            features.images[train_idx], labels[train_idx], preset.preprocessing, train=True, seed=config.seed, flip=flip
        )
        val_set = MicroDataset(features.images[val_idx], labels[val_idx], preset.preprocessing, train=False)
        torch.manual_seed(config.seed)
        model, model_meta = start_model(train_idx, source)
        return fit(
            model,
            train_set=train_set,
            val_set=val_set,
            preset=preset,
            kind="htnet",
            config=config,
            run_dir=run_dir,
            loss_fn=torch.nn.CrossEntropyLoss(),
            select="uf1",
            meta=model_meta,
            resume=args.resume,
            ddp=ddp,
            log=lambda *_: None,
            watch=watch,
        )

    device = pick_device(config.device, ddp)
    summary: dict = {
        "data": "synthetic" if synthetic else "real",
        "dataset": args.dataset,
        "model": "htnet" + (f" QAT ({args.qat_target} INT8 fake-quant)" if args.qat else ""),
        "preset": preset.name,
        "protocol": "loso-honest" if args.loso else "subject-5fold" if args.fold is not None else "none",
    }
    if args.loso:
        pooled: dict[str, list[int]] = {"targets": [], "honest": [], "official": [], "sources": []}
        folds = loso_folds(subjects)
        if args.shard is not None:
            k, n = args.shard
            folds = folds[k - 1 :: n]
        for fold in progress_bar(folds, desc="LOSO folds"):
            fold_dir = args.out / "folds" / _safe(fold.name)
            done = fold_dir / "predictions.json"
            if not (args.resume and done.exists()):
                fold_dir.mkdir(parents=True, exist_ok=True)
                test_set = MicroDataset(
                    features.images[list(fold.test)], labels[list(fold.test)], preset.preprocessing, train=False
                )
                loader = torch.utils.data.DataLoader(test_set, batch_size=config.batch_size)
                official = _OfficialSelection(loader, device, config.amp)
                source = args.from_run / "folds" / _safe(fold.name) / "best.pt" if args.qat else None
                train_on(np.array(fold.train), fold_dir, watch=official if ddp.main else None, source=source)
                if ddp.main:
                    model, _, _ = load_model(fold_dir / "best.pt")
                    targets, predictions, _ = predict(model.to(device), loader, device, amp=config.amp)
                    result = {
                        "subject": fold.name,
                        "targets": targets.tolist(),
                        "predictions": predictions.tolist(),
                        "official_predictions": official.predictions,
                        "official_epoch": official.epoch + 1,
                    }
                    with atomic_output(done, force=True) as tmp:
                        tmp.write_text(json.dumps(result))
                    (fold_dir / "last.pt").unlink(missing_ok=True)
                    if not args.keep_fold_models:  # fold models are for evaluation only
                        (fold_dir / "best.pt").unlink(missing_ok=True)
            if ddp.main:
                result = json.loads(done.read_text())
                pooled["targets"] += result["targets"]
                pooled["honest"] += result["predictions"]
                pooled["official"] += result.get("official_predictions") or result["predictions"]
                pooled["sources"] += [sources[i] for i in fold.test]
                log(
                    f"  fold {fold.name}: {sum(t == p for t, p in zip(result['targets'], result['predictions']))}"
                    f"/{len(result['targets'])} correct"
                )
        if args.shard is not None:
            log(
                f"shard {args.shard[0]}/{args.shard[1]}: {len(folds)} folds done in {args.out}; when every shard "
                "is done, run the same command without --shard, with --resume, to pool them and train the final model"
            )
            return 0
        if ddp.main:
            summary.update(classification_report(pooled["targets"], pooled["honest"], classes))
            summary["folds"] = len(set(subjects))
            summary["protocols"] = {
                name: _per_source(pooled["targets"], pooled[name], pooled["sources"], classes)
                for name in ("honest", "official")
            }
            summary["protocols"]["honest"]["description"] = "best epoch on a validation split of the training subjects"
            summary["protocols"]["official"]["description"] = (
                "as the official HTNet script: each fold's best epoch on the held-out subject (optimistic)"
            )
            if args.dataset in (MEGC2019, "composite"):
                summary["paper"] = {k: {"uf1": f1, "uar": ar} for k, (f1, ar) in PAPER.items()}

    if args.fold is not None:  # one model: fold K's training subjects; scored on its test subjects
        split = megc2019_folds(records)[args.fold - 1]
        train, test = np.array(split.train), list(split.test)
        best_val = train_on(train, args.out, source=args.from_run / "best.pt" if args.qat else None)
        if not ddp.main:
            return 0
        test_set = MicroDataset(features.images[test], labels[test], preset.preprocessing, train=False)
        loader = torch.utils.data.DataLoader(test_set, batch_size=config.batch_size)
        model, _, _ = load_model(args.out / "best.pt")
        targets, predictions, _ = predict(model.to(device), loader, device, amp=config.amp)
        targets, predictions = targets.tolist(), predictions.tolist()
        summary.update(classification_report(targets, predictions, classes))
        summary.update(
            split="test",
            fold=args.fold,
            folds=MEGC2019_FOLDS,
            test_subjects=sorted({subjects[i] for i in test}),
            train_subjects=sorted({subjects[i] for i in train}),
            train_samples=len(train),
            sources=_per_source(targets, predictions, [sources[i] for i in test], classes),
            final_model_val={k: best_val.get(k) for k in ("uf1", "uar", "war")},
        )
        title = f"htnet {preset.name}, {args.dataset} fold {args.fold}/{MEGC2019_FOLDS} test"
        write_metrics(args.out, summary, title=title + (" (SYNTHETIC data)" if synthetic else ""))
        log(json.dumps({k: summary.get(k) for k in ("data", "dataset", "protocol", "fold", "samples", "uf1", "uar")}))
        return 0

    # The model to deploy: trained on every subject (validation carved from them).
    best_val = train_on(np.arange(len(records)), args.out, source=args.from_run / "best.pt" if args.qat else None)
    if not ddp.main:
        return 0
    summary["final_model_val"] = {k: best_val.get(k) for k in ("uf1", "uar", "war")}
    if not args.loso:
        summary.update({k: best_val[k] for k in ("uf1", "uar", "war", "confusion_matrix", "classes")})
        summary["split"] = "validation (no LOSO requested)"
    protocol = "LOSO" if args.loso else "val"
    title = f"htnet {preset.name}, {args.dataset} {protocol}{' (SYNTHETIC data)' if synthetic else ''}"
    write_metrics(args.out, summary, title=title)
    log(json.dumps({k: summary.get(k) for k in ("data", "dataset", "protocol", "uf1", "uar")}))
    return 0


def _shard(text: str) -> tuple[int, int]:
    k, _, n = text.partition("/")
    if not (k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise argparse.ArgumentTypeError(f"expected K/N with 1 <= K <= N (e.g. 2/8), got {text!r}")
    return int(k), int(n)


def _check_qat_source(args: argparse.Namespace) -> None:
    """--qat needs the float run: its final model, and with --loso every fold's model."""
    if args.from_run is None:
        raise PresetError("--qat fine-tunes a trained HTNet run: give its folder with --from RUN")
    if not (args.from_run / "best.pt").is_file():
        raise PresetError(f"{args.from_run / 'best.pt'} is absent: --from must be a finished train.htnet run folder")
    if args.loso and not any((args.from_run / "folds").glob("*/best.pt")):
        raise PresetError(
            f"{args.from_run} kept no fold models: train it with --loso --keep-fold-models to fine-tune fold by fold"
        )


def _source_preset(run: Path, fold: int | None = None):
    """The preset of the float run that QAT fine-tunes (not --preset); with ``fold``, the run
    must have been trained on that fold's training subjects (else its test subjects leak in)."""
    _, preset, payload = load_model(run / "best.pt")
    if payload["model_kind"] != "htnet" or payload.get("qat"):
        raise PresetError(f"{run / 'best.pt'} is not a float HTNet checkpoint")
    trained_on = (payload.get("dataset") or {}).get("fold")
    if fold is not None and trained_on != fold:
        raise PresetError(
            f"{run / 'best.pt'} was trained on {'fold ' + str(trained_on) if trained_on else 'every subject'}, "
            f"not on fold {fold}'s training subjects: --qat --fold {fold} needs a run trained with --fold {fold}"
        )
    return preset


class _OfficialSelection:
    """The official script's model selection, kept only to report it: after every epoch,
    predict the held-out subject and keep the predictions of the last epoch with the most
    correct ones (its ``<=``). A run resumed inside a fold sees only the epochs after the
    resume."""

    def __init__(self, loader, device, amp: bool) -> None:
        self.loader, self.device, self.amp = loader, device, amp
        self.correct, self.epoch, self.predictions = -1, -1, []

    def __call__(self, model, epoch: int) -> dict:
        targets, predictions, _ = predict(model, self.loader, self.device, amp=self.amp, desc="held-out")
        correct = int((targets == predictions).sum())
        if correct >= self.correct:
            self.correct, self.epoch, self.predictions = correct, epoch, predictions.tolist()
        return {"held_out_correct": correct}


def _per_source(targets: list[int], predictions: list[int], sources: list[str], classes) -> dict:
    """UF1/UAR pooled over all predictions, and per source database."""
    pooled = classification_report(targets, predictions, classes)
    report = {k: pooled[k] for k in ("uf1", "uar", "war")}
    for source in sorted(set(sources)):
        picked = [i for i, s in enumerate(sources) if s == source]
        part = classification_report([targets[i] for i in picked], [predictions[i] for i in picked], classes)
        report[source] = {"uf1": part["uf1"], "uar": part["uar"], "samples": len(picked)}
    return report


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def _progress(desc: str):
    def report(done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\r{desc}: {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)

    return report


if __name__ == "__main__":
    from edge_fer.cli.main import run_tool

    run_tool(main, "train.htnet")
