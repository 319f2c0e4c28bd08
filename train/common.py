"""What ``train.stt`` and ``train.htnet`` share: devices, determinism, the epoch loop,
checkpoints with exact resume, metrics files and (optional) DDP.

Exact resume: ``last.pt`` is written at the end of every epoch with the model, optimizer,
scheduler, scaler and RNG states. Data order and augmentation are pure functions of
(seed, epoch, index), so a run killed mid-epoch and resumed re-runs that epoch exactly as
the uninterrupted run did.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from edge_fer.errors import ArtifactError, OutputExistsError, PresetError
from edge_fer.fileio import atomic_output
from edge_fer.metrics import classification_report
from edge_fer.models.checkpoint import read_checkpoint, save_checkpoint
from edge_fer.presets import ModelPreset
from train.threads import CpuShare

__all__ = [
    "TrainConfig",
    "Distributed",
    "setup_distributed",
    "pick_device",
    "fit",
    "predict",
    "evaluate",
    "write_metrics",
    "prepare_run_dir",
    "progress_bar",
]


@dataclass
class TrainConfig:
    """Optimisation settings; every training script fills these from its flags."""

    epochs: int = 30
    # At most this many optimiser steps per epoch (each epoch a fresh random subset of the
    # training set); None: the whole set. Short fine-tunes (QAT) need far less than an epoch.
    steps_per_epoch: int | None = None
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adamw"  # "adamw" or "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    cs_ce_weight: float = 0.0  # compact softmax cross-entropy weight (0: plain CE)
    grad_clip: float = 5.0
    workers: int = 1
    threads: int | None = None  # torch CPU threads; None: all cores, fewer while others use them (threads.py)
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # mixed precision where the device is CUDA
    # Write last.pt (the resume state) every N epochs and after the last; 0: never (a resumed
    # run restarts the unfinished run). Long GPU runs of big models spend more time saving
    # optimizer state than training when this is 1.
    checkpoint_every: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Distributed:
    """Join the process group when started by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    return Distributed(dist.get_rank(), world, local_rank)


def pick_device(requested: str, ddp: Distributed) -> torch.device:
    if requested == "auto":
        return torch.device(f"cuda:{ddp.local_rank}" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]), "python_pos": random.getstate()[2]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def progress_bar(iterable, *, total: int | None = None, desc: str = "", enabled: bool = True):
    """A tqdm bar on an interactive terminal; the plain iterable otherwise."""
    if not enabled or not sys.stderr.isatty():
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def prepare_run_dir(run_dir: Path, *, resume: bool, force: bool) -> None:
    """Refuse to mix a new run into an old run folder (unless resuming or forced)."""
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        if not force:
            raise OutputExistsError(
                f"{run_dir} already holds a run; pass --resume to continue it or --force to start over in it"
            )
        for name in ("best.pt", "last.pt", "log.jsonl", "metrics.json", "confusion.png"):
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "folds", ignore_errors=True)  # per-fold results of a LOSO run
    run_dir.mkdir(parents=True, exist_ok=True)


def _make_optimizer(model: nn.Module, config: TrainConfig, loss_fn: nn.Module | None = None) -> torch.optim.Optimizer:
    """AdamW or SGD over the model's trainable parameters and the loss's own (a feature
    distillation's projection), norms, biases and tokens without weight decay."""
    decay, no_decay = [], []
    named = list(model.named_parameters()) + (list(loss_fn.named_parameters()) if loss_fn is not None else [])
    for name, param in named:
        if not param.requires_grad:
            continue
        # No weight decay on norms, biases, embeddings and tokens (standard for transformers).
        (
            no_decay if param.ndim <= 1 or name.endswith(("pos_space", "pos_time", "cls_token", "pos_emb")) else decay
        ).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {config.optimizer!r}")


def _make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    total = max(1, config.epochs * steps_per_epoch)
    warmup = int(config.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:  # linear warm-up, then cosine to 0
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _autocast(device: torch.device, enabled: bool):
    if device.type == "cuda" and enabled:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def predict(
    model: nn.Module, loader: DataLoader, device: torch.device, *, amp: bool = True, desc: str = "eval"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(targets, predicted classes, probabilities) over a loader, model in eval mode."""
    model.eval()
    targets, probs = [], []
    for inputs, labels in progress_bar(loader, desc=desc):
        with _autocast(device, amp):
            logits = model(inputs.to(device, non_blocking=True))
        probs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        targets.append(labels.numpy())
    if not probs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    probabilities = np.concatenate(probs)
    return np.concatenate(targets), probabilities.argmax(1), probabilities


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    classes: tuple[str, ...],
    device: torch.device,
    *,
    batch_size: int,
    workers: int = 0,
    amp: bool = True,
) -> dict[str, Any]:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    targets, predictions, probabilities = predict(model, loader, device, amp=amp)
    report = classification_report(targets, predictions, classes)
    if len(targets):  # mean cross-entropy: breaks ties between epochs of equal accuracy
        report["loss"] = float(-np.log(np.maximum(probabilities[np.arange(len(targets)), targets], 1e-12)).mean())
    return report


def _train_epoch(
    model, loader, loss_fn, optimizer, scheduler, scaler, device, config, epoch, share=None
) -> dict[str, float]:
    model.train()
    for module in model.modules():  # a frozen BatchNorm keeps its running statistics (as at inference)
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.weight is not None:
            if not module.weight.requires_grad:
                module.eval()
    total_loss, correct, seen = 0.0, 0, 0
    batches = itertools.islice(loader, config.steps_per_epoch)  # None: every batch
    total = min(len(loader), config.steps_per_epoch or len(loader))
    for inputs, labels, *extra in progress_bar(batches, desc=f"epoch {epoch + 1}/{config.epochs}", total=total):
        if share is not None:
            share.update()
        inputs, labels = inputs.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        extra = [e.to(device, non_blocking=True) for e in extra]  # e.g. a teacher's probabilities
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, config.amp):
            logits = model(inputs)
            loss = loss_fn(logits.float(), labels, *extra)
        scaler.scale(loss).backward()
        if config.grad_clip:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        total_loss += loss.item() * len(labels)
        correct += (logits.argmax(1) == labels).sum().item()
        seen += len(labels)
    return {"train_loss": total_loss / max(seen, 1), "train_acc": correct / max(seen, 1)}


def fit(
    model: nn.Module,
    *,
    train_set: Dataset,
    val_set: Dataset,
    preset: ModelPreset,
    kind: str,
    config: TrainConfig,
    run_dir: Path,
    loss_fn: nn.Module,
    select: str,
    meta: dict[str, Any],
    resume: bool = False,
    ddp: Distributed = Distributed(),
    log: Callable[[str], None] = print,
    watch: Callable[[nn.Module, int], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Train with model selection on ``val_set``; returns the best validation report.

    Writes ``best.pt`` (best ``select`` metric on validation), ``last.pt`` (full training
    state) and ``log.jsonl`` (one line per epoch) into ``run_dir`` (rank 0 only).
    ``watch(model, epoch)``, if given, runs after each epoch's validation and its (small,
    JSON-ready) result goes into that epoch's log line; it never influences selection.
    """
    device = pick_device(config.device, ddp)
    model.to(device)
    share = None
    if device.type == "cpu":
        model.to(memory_format=torch.channels_last)  # oneDNN's NHWC convolutions: 1.3x faster stt_tiny steps
        if config.threads:
            torch.set_num_threads(config.threads)
        elif ddp.world == 1:
            share = CpuShare(log)
    sampler = (
        DistributedSampler(train_set, num_replicas=ddp.world, rank=ddp.rank, shuffle=True, seed=config.seed)
        if ddp.world > 1
        else None
    )
    steps_per_epoch = math.ceil(len(train_set) / ddp.world / config.batch_size)
    if config.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.steps_per_epoch)
    # A loss with parameters of its own (a feature distillation's projection) trains with the model.
    loss_fn.to(device)
    if ddp.world > 1 and any(True for _ in loss_fn.parameters()):
        raise PresetError(
            "a loss with its own parameters (--teacher-features) trains in one process only, not torchrun"
        )
    optimizer = _make_optimizer(model, config, loss_fn)
    scheduler = _make_scheduler(optimizer, config, steps_per_epoch)
    scaler = torch.amp.GradScaler(
        "cuda", enabled=device.type == "cuda" and config.amp and not torch.cuda.is_bf16_supported()
    )
    start_epoch, best_score, best_report, history = 0, -1.0, {}, []
    last_path = run_dir / "last.pt"
    if resume and last_path.exists():
        state = read_checkpoint(last_path)
        if state["train_config"]["seed"] != config.seed:
            raise ArtifactError(
                f"{last_path} was trained with seed {state['train_config']['seed']}, "
                f"not {config.seed}; resume with the same flags"
            )
        try:
            model.load_state_dict(state["state_dict"])
        except RuntimeError:  # another architecture: other --preset, --single-frame or --frame-path
            raise ArtifactError(
                f"{last_path} holds another model than these flags build; resume with the same flags"
            ) from None
        try:  # a feature distillation's projection; empty for the other losses
            loss_fn.load_state_dict(state.get("loss_state", {}))
        except RuntimeError:
            raise ArtifactError(
                f"{last_path} was trained with other --teacher-features; resume with the same flags"
            ) from None
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        start_epoch, best_score = state["epoch"] + 1, state["best_score"]
        best_report, history = state["best_report"], state["history"]
        log(f"resuming {run_dir} after epoch {state['epoch'] + 1}")
    net = (
        nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if ddp.world > 1
        else model
    )

    for epoch in range(start_epoch, config.epochs):
        for dataset in (train_set, val_set):
            dataset.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        loader = DataLoader(
            train_set,
            batch_size=config.batch_size,
            sampler=sampler,
            shuffle=sampler is None,
            num_workers=config.workers,
            drop_last=len(train_set) > config.batch_size,
            generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch),
            pin_memory=device.type == "cuda",
        )
        stats = _train_epoch(net, loader, loss_fn, optimizer, scheduler, scaler, device, config, epoch, share)
        if ddp.world > 1:
            dist.barrier()
        if not ddp.main:
            continue
        report = evaluate(
            model, val_set, preset.classes, device, batch_size=config.batch_size, workers=config.workers, amp=config.amp
        )
        # Best = highest validation metric; among equals, the lowest validation loss.
        improved = report[select] > best_score or (
            report[select] == best_score and report.get("loss", 0.0) < best_report.get("loss", float("inf"))
        )
        if improved:
            best_score, best_report = report[select], report
            save_checkpoint(
                run_dir / "best.pt",
                model=model,
                preset=preset,
                kind=kind,
                extra={**meta, "epoch": epoch, "val": report, "train_config": asdict(config)},
            )
        record = {
            "epoch": epoch + 1,
            **{k: round(v, 5) for k, v in stats.items()},
            "val_uar": round(report["uar"], 5),
            "val_war": round(report["war"], 5),
            "val_uf1": round(report["uf1"], 5),
            "lr": scheduler.get_last_lr()[0],
            "best": improved,
        }
        if watch is not None:
            record["watch"] = watch(model, epoch)
        history.append(record)
        every = config.checkpoint_every
        if every and ((epoch + 1) % every == 0 or epoch + 1 == config.epochs):
            save_checkpoint(
                last_path,
                model=model,
                preset=preset,
                kind=kind,
                extra={
                    **meta,
                    "epoch": epoch,
                    "train_config": asdict(config),
                    "optimizer": optimizer.state_dict(),
                    "loss_state": loss_fn.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": _rng_state(),
                    "best_score": best_score,
                    "best_report": best_report,
                    "history": history,
                },
            )
        _write_log(run_dir / "log.jsonl", history)
        log(
            f"epoch {epoch + 1}/{config.epochs}  loss {stats['train_loss']:.4f}  train acc {stats['train_acc']:.3f}"
            f"  val {select} {report[select]:.4f}{'  *' if improved else ''}"
        )
    return best_report


def _write_log(path: Path, history: list[dict]) -> None:
    # Rewritten whole each epoch (atomically), so a resumed run never duplicates lines.
    with atomic_output(path, force=True) as tmp:
        tmp.write_text("".join(json.dumps(record) + "\n" for record in history))


def write_metrics(run_dir: Path, report: dict[str, Any], *, title: str) -> None:
    """``metrics.json`` and ``confusion.png`` (if matplotlib is installed)."""
    with atomic_output(run_dir / "metrics.json", force=True) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    matrix = np.asarray(report["confusion_matrix"], dtype=float)
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    classes = report["classes"]
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(classes), 1.0 + 0.7 * len(classes)))
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                f"{int(matrix[i, j])}",
                ha="center",
                va="center",
                color="white" if rows[i, j] > 0.5 else "black",
                fontsize=8,
            )
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_output(run_dir / "confusion.png", force=True) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
