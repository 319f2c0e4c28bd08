"""A frozen trunk's features, computed once instead of every epoch (``train.stt --trunk-views N``).

With ``--freeze-trunk`` the ResNet trunk is a fixed function (its weights and BatchNorm
statistics as loaded), and much of the run's work: about two thirds of a CPU run of the
frozen-trunk stage with a width-64 trunk (the transformer a few per cent), less with
``stt_tiny``'s width 16, whose stage still took 0.58x the time with one view. Computing its
output once per sample and training the rest on those features is the usual linear-probe
practice; what it gives up is a new augmented view every epoch. Here it keeps ``views``
views of each training clip, the ones the uncached run would have drawn in epochs
0..views-1 (the dataset's randomness is a function of (seed, epoch, index)); epoch ``e``
trains on view ``e % views``. With as many views as epochs the run is the uncached one
(same samples, same teacher targets; on CUDA the cached trunk runs in float32, not under
autocast); with fewer, each view is seen again.

While training, the model's trunk passes its input through (``features_in``), so the same
module, state dict and checkpoint come out; only ``fit`` sees features instead of frames.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from edge_fer.errors import PresetError

__all__ = ["TrunkFeatures", "features_in"]

# Of the memory free when the cache is built: beyond this share, refuse (the run would swap).
MEMORY_SHARE = 0.5


class TrunkFeatures(Dataset):
    """``clips`` (a ``ClipDataset``) with ``trunk`` applied: ((T, C, h, w) features, label[, teacher target]).

    Args:
        clips: the clip dataset; its ``train`` flag, seed and teacher settings are used as they are.
        trunk: the frozen trunk (run in eval mode, without gradients).
        views: training views kept per clip (1 for an evaluation set: its transform is fixed).
        batch_size: clips per trunk call while building the cache.
        device: where the trunk runs; the features are kept in CPU memory.
    """

    def __init__(
        self, clips: Dataset, trunk: nn.Module, *, views: int, batch_size: int = 16, device: torch.device | None = None
    ) -> None:
        if views < 1:
            raise PresetError(f"--trunk-views must be at least 1 to cache the trunk's features, got {views}")
        self.views = views if clips.train else 1
        self.epoch = 0
        device = device or torch.device("cpu")
        was_training = trunk.training
        trunk.eval().to(device)
        if device.type == "cpu":  # oneDNN's NHWC convolutions, as ``fit`` sets them: 1.7x faster here
            trunk.to(memory_format=torch.channels_last)
        self._check_memory(clips, trunk, self.views, device)
        self.features: list[torch.Tensor] = []
        self.targets: list[torch.Tensor | None] = []
        self.labels: torch.Tensor | None = None
        try:
            for view in range(self.views):
                clips.set_epoch(view)
                features, labels, targets = self._run(clips, trunk, batch_size, device)
                self.features.append(features)
                self.targets.append(targets)
                self.labels = labels
        finally:
            trunk.train(was_training)
            clips.set_epoch(0)

    @staticmethod
    def _check_memory(clips: Dataset, trunk: nn.Module, views: int, device: torch.device) -> None:
        sample = clips.eval_item(0)[0]
        with torch.no_grad():
            per_frame = trunk(sample[:1].to(device)).numel()
        need = len(clips) * views * sample.shape[0] * per_frame * 4
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):  # not Linux: trust the caller
            return
        if need > MEMORY_SHARE * free:
            raise PresetError(
                f"caching the frozen trunk's features for {len(clips)} clips x {views} views needs "
                f"{need / 2**30:.1f} GiB, more than half the {free / 2**30:.1f} GiB free: give fewer --trunk-views, "
                "or --trunk-views 0 to compute them every epoch"
            )

    @staticmethod
    @torch.no_grad()
    def _run(clips: Dataset, trunk: nn.Module, batch_size: int, device: torch.device):
        features, labels, targets = [], [], []
        # Its own generator: a loader draws a seed, which must not move the global RNG (the
        # head's dropout draws from it, as in the run without the cache).
        for batch in DataLoader(clips, batch_size=batch_size, shuffle=False, generator=torch.Generator()):
            frames, label, *target = batch
            b, t = frames.shape[:2]
            out = trunk(frames.flatten(0, 1).to(device)).float().cpu().contiguous()
            features.append(out.reshape(b, t, *out.shape[1:]))
            labels.append(label)
            targets.append(target[0] if target else None)
        teacher = None if targets[0] is None else torch.cat(targets)
        return torch.cat(features), torch.cat(labels), teacher

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.features[0])

    def __getitem__(self, index: int) -> tuple:
        view = self.epoch % self.views
        item = (self.features[view][index], self.labels[index])
        target = self.targets[view]
        return item if target is None else (*item, target[index])


@contextlib.contextmanager
def features_in(trunk: nn.Module) -> Iterator[None]:
    """Make ``trunk`` pass its input through (it is given ``TrunkFeatures``), for the block's duration."""
    trunk.forward = _identity  # an instance attribute shadows the method; the parameters stay
    try:
        yield
    finally:
        del trunk.forward


def _identity(features: torch.Tensor) -> torch.Tensor:
    return features
