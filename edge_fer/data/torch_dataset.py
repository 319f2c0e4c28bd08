"""torch ``Dataset`` wrappers (the only torch in ``edge_fer.data``).

Randomness is a pure function of (seed, epoch, sample index): a sample looks the same
whichever worker loads it and whether or not the run was interrupted and resumed.
Call ``set_epoch`` before each epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from edge_fer.data.records import ClipRecord
from edge_fer.preprocessing.clips import (
    clip_indices,
    eval_transform,
    load_frames,
    normalise,
    spread_indices,
    train_views,
)
from edge_fer.presets import Preprocessing

__all__ = ["ClipDataset", "FrameDataset", "MicroDataset"]


class _Epoched(Dataset):
    def __init__(self, *, train: bool, seed: int) -> None:
        self.train = train
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])


class _Records(_Epoched):
    def __init__(self, records: Sequence[ClipRecord], pre: Preprocessing, *, train: bool, seed: int = 0) -> None:
        super().__init__(train=train, seed=seed)
        self.records = list(records)
        self.pre = pre

    # Distillation targets, either fixed per record or read off each training view:
    teacher: np.ndarray | None = None  # (N, C) a teacher's class probabilities per record
    # uint8 BGR faces (N, H, W, 3) -> (N, C) probabilities, or a pair (probabilities, (N, ...)
    # feature maps): the teacher reads every training sample as the model sees it (same crop and
    # flip, each epoch anew), up to ``teacher_frames`` frames of a clip, averaged.
    teacher_reader: Callable[[np.ndarray], np.ndarray | tuple[np.ndarray, np.ndarray]] | None = None
    teacher_frames: int = 4

    def __len__(self) -> int:
        return len(self.records)

    def _transform(self, index: int, frames: list[np.ndarray], rng: np.random.Generator) -> tuple:
        """(model input (T, 3, H, W), teacher targets) of one sample's frames; the targets: a
        tuple of the (C,) probabilities and, where the reader gives them, the mean feature map;
        empty without a teacher."""
        if not self.train:
            return eval_transform(frames, self.pre), ()
        views = train_views(frames, self.pre, rng)
        targets: tuple[np.ndarray, ...] = ()
        if self.teacher_reader is not None:
            read = self.teacher_reader(views[spread_indices(len(views), self.teacher_frames)])
            targets = tuple(part.mean(0).astype(np.float32) for part in (read if isinstance(read, tuple) else (read,)))
            targets[0][:] /= targets[0].sum()
        elif self.teacher is not None:
            targets = (self.teacher[index].astype(np.float32),)
        return normalise(views, self.pre), targets

    @staticmethod
    def _item_tuple(item: torch.Tensor, label: int, targets: tuple[np.ndarray, ...]) -> tuple:
        return (item, label, *(torch.from_numpy(target) for target in targets))


class ClipDataset(_Records):
    """DFER clips -> ((T, 3, H, W) float32 tensor, label), plus the teacher's (C,) class
    probabilities of the clip when ``teacher`` (N, C) is set (distillation)."""

    def __getitem__(self, index: int) -> tuple:
        record = self.records[index]
        rng = self.rng(index)
        indices = clip_indices(len(record.frames), self.pre, train=self.train, rng=rng)
        frames = load_frames(record.frames, indices, source=f"video {record.video_id}")
        clip, target = self._transform(index, frames, rng)
        return self._item_tuple(torch.from_numpy(clip), record.label, target)

    def eval_item(self, index: int) -> tuple[torch.Tensor, int]:
        """The clip as evaluation makes it (centred sampling, resize), even in a training set."""
        record = self.records[index]
        indices = clip_indices(len(record.frames), self.pre, train=False, rng=self.rng(index))
        frames = load_frames(record.frames, indices, source=f"video {record.video_id}")
        return torch.from_numpy(eval_transform(frames, self.pre)), record.label


class FrameDataset(_Records):
    """Single frames of DFER clips -> ((3, H, W) tensor, label): a random frame when
    training, the middle frame when testing (the single-frame baseline)."""

    def __getitem__(self, index: int) -> tuple:
        record = self.records[index]
        rng = self.rng(index)
        count = len(record.frames)
        position = int(rng.integers(count)) if self.train else count // 2
        frames = load_frames(record.frames, np.array([position]), source=f"video {record.video_id}")
        image, target = self._transform(index, frames, rng)
        return self._item_tuple(torch.from_numpy(image[0]), record.label, target)


class MicroDataset(_Epoched):
    """Cached HTNet input images -> ((3, 28, 28) float32 tensor, label).

    With ``flip``, training mirrors the image with probability 1/2: for the geometric ("xy")
    patch convention that is exactly the input of the mirrored face (left and right patches
    swap and mirror; u changes sign, so its min-max image inverts). Not valid for the
    official transposed crops.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: Sequence[int],
        pre: Preprocessing,
        *,
        train: bool,
        seed: int = 0,
        flip: bool = False,
    ) -> None:
        super().__init__(train=train, seed=seed)
        self.flip = flip
        if images.ndim != 4 or images.shape[-1] != 3 or len(images) != len(labels):
            raise ValueError(f"expected (N, H, W, 3) images and N labels, got {images.shape} and {len(labels)}")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.pre = pre

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index].astype(np.float32)  # (H, W, 3): u, v, strain
        if self.train and self.flip and self.rng(index).random() < 0.5:
            image = image[:, ::-1].copy()
            image[..., 0] = 255.0 - image[..., 0]  # mirrored horizontal flow
        image = (image / self.pre.value_scale - np.asarray(self.pre.mean, np.float32)) / np.asarray(
            self.pre.std, np.float32
        )
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), int(self.labels[index])
