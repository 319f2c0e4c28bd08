"""What a dataset reader returns: one record per labelled video, paths only (no pixels).

Readers check the layout and annotation files up front and raise ``DatasetError`` naming
the file (and row) at fault; frames are read later, by the samplers and pre-processing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_fer.errors import DatasetError

__all__ = ["ClipRecord", "MicroRecord", "DatasetInfo", "sorted_frames", "IMAGE_SUFFIXES"]


@dataclass(frozen=True)
class ClipRecord:
    """One labelled video of a dynamic-expression (DFER) dataset.

    Attributes:
        video_id: the dataset's id of the video (e.g. DFEW "00001").
        frames: frame image paths in temporal order (at least one).
        label: index into the dataset's ``classes``.
        subject: the person filmed, where the dataset says (CK+); None otherwise. Splits
            keep one subject's videos on one side.
    """

    video_id: str
    frames: tuple[Path, ...]
    label: int
    subject: str | None = None

    def __post_init__(self) -> None:
        if not self.frames:
            raise DatasetError(f"video {self.video_id}: no frames")


@dataclass(frozen=True)
class MicroRecord:
    """One annotated micro-expression sample.

    Attributes:
        sample_id: unique within the dataset, e.g. "sub01/EP02_01f".
        subject: subject id as the dataset writes it (the unit of leave-one-subject-out).
        frames: frame image paths, sorted by frame number.
        frame_numbers: the frame number of each path (same length as ``frames``).
        onset: onset frame number.
        apex: apex frame number, or None where the dataset does not annotate it (SMIC,
            some CASME II rows) - pre-processing then spots it from motion.
        offset: offset frame number, or None if not annotated.
        emotion: the dataset's own emotion label, lower-case (e.g. "happiness", "ne").
        dataset: "casme2", "samm", "smic", "casme3a".
    """

    sample_id: str
    subject: str
    frames: tuple[Path, ...]
    frame_numbers: tuple[int, ...]
    onset: int
    apex: int | None
    offset: int | None
    emotion: str
    dataset: str

    def __post_init__(self) -> None:
        if not self.frames or len(self.frames) != len(self.frame_numbers):
            raise DatasetError(
                f"{self.dataset} {self.sample_id}: frames and frame numbers do not match "
                f"({len(self.frames)} paths, {len(self.frame_numbers)} numbers)"
            )

    def frame_path(self, number: int) -> Path:
        """Path of the frame with this frame number.

        Raises:
            DatasetError: no such frame in the sample's folder.
        """
        try:
            return self.frames[self.frame_numbers.index(number)]
        except ValueError:
            folder = self.frames[0].parent
            raise DatasetError(
                f"{self.dataset} {self.sample_id}: frame {number} is not in {folder} "
                f"(frames {self.frame_numbers[0]}..{self.frame_numbers[-1]})"
            ) from None


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset: its name, kind and class names in label order."""

    name: str
    kind: str  # "dfer" or "micro"
    classes: tuple[str, ...]
    description: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def sorted_frames(folder: Path, *, source: str) -> tuple[Path, ...]:
    """Image files of a folder in natural (numeric-aware) order.

    Raises:
        DatasetError: the folder is missing or holds no images; ``source`` names who asked.
    """
    import re

    if not folder.is_dir():
        raise DatasetError(f"{source}: frame folder {folder} does not exist")
    images = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise DatasetError(f"{source}: frame folder {folder} holds no images")

    def key(path: Path) -> list:
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.stem)]

    return tuple(sorted(images, key=key))


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
