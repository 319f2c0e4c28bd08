"""Clip sampling and frame transforms for DFER, as the paper family does them (numpy + OpenCV).

One set of rules for training, calibration, evaluation and the runtime: which frames make a
clip (``clip_indices``, and ``window_clip`` for a live stream's last ``clip_window`` seconds),
how a frame is resized (``resize_frame``) and normalised (``normalise``, ``to_model_input``).

Sampling: a video is cut into 8 equal segments and 2 consecutive frames are taken from each
(16 frames). Training picks a random offset inside each segment; testing takes the centre.
Videos shorter than 16 frames are *padded by repetition*: every frame is repeated in order
(a slowed-down video) rather than the video being dropped.

Transforms act on the whole clip at once, so every frame gets the same crop and flip:
training uses a random-sized crop (area 80-100 %, aspect 0.9-1.1: a face must stay a face) and a
horizontal flip,
testing a plain resize. Output: (T, 3, H, W) float32, RGB, normalised as the preset says.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edge_fer.errors import DatasetError
from edge_fer.preprocessing.align import align_face
from edge_fer.presets import Preprocessing

__all__ = [
    "DEFAULT_FPS",
    "frame_rate",
    "clip_window",
    "sample_indices",
    "spread_indices",
    "clip_indices",
    "window_clip",
    "load_frames",
    "resize_frame",
    "face_crop",
    "train_transform",
    "train_views",
    "eval_transform",
    "normalise",
    "to_model_input",
]

DEFAULT_FPS = 8.0  # the frame rate of a preset that names none (DFEW's clips are sampled near it)


def frame_rate(pre: Preprocessing) -> float:
    """Frames per second the preset's clips are sampled at."""
    return pre.fps or DEFAULT_FPS


def clip_window(pre: Preprocessing) -> float:
    """Seconds of video one clip covers: ``clip_len`` frames at the preset's frame rate."""
    return pre.clip_len / frame_rate(pre)


def sample_indices(
    num_frames: int, *, segments: int = 8, per_segment: int = 2, train: bool, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Frame indices (segments * per_segment,) of one clip, in temporal order.

    Args:
        num_frames: frames in the video (>= 1).
        segments: number of equal segments.
        per_segment: consecutive frames taken from each segment.
        train: random offset per segment (needs ``rng``) instead of the centred one.
    """
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    needed = segments * per_segment
    if num_frames < needed:  # pad by repetition: each frame repeated, order kept
        return np.floor(np.arange(needed) * num_frames / needed).astype(np.int64)
    span = num_frames - per_segment + 1  # valid start positions
    if train:
        if rng is None:
            raise ValueError("training sampling needs an rng")
        length = span // segments
        starts = np.arange(segments) * length + rng.integers(0, max(length, 1), size=segments)
    else:
        tick = span / segments
        starts = (tick / 2 + tick * np.arange(segments)).astype(np.int64)
    return (starts[:, None] + np.arange(per_segment)[None]).ravel().astype(np.int64)


def spread_indices(num_frames: int, most: int) -> np.ndarray:
    """Up to ``most`` frame indices spread evenly over ``num_frames``, first and last included."""
    return np.unique(np.linspace(0, num_frames - 1, min(most, num_frames)).round().astype(np.int64))


def clip_indices(
    num_frames: int, pre: Preprocessing, *, train: bool, rng: np.random.Generator | None = None
) -> np.ndarray:
    """The ``clip_len`` frame indices of a clip of ``num_frames`` frames: ``clip_len // 2``
    segments of 2 consecutive frames (8 x 2 for the papers' 16-frame clips)."""
    segments = pre.clip_len // 2
    return sample_indices(num_frames, segments=segments, per_segment=pre.clip_len // segments, train=train, rng=rng)


def window_clip(times: np.ndarray, end: float, pre: Preprocessing) -> np.ndarray | None:
    """Indices (clip_len,) of the frames that make the clip ending at ``end`` seconds, or None.

    The window is ``clip_window(pre)`` seconds; its frames are sampled like the test-time
    sampler. None when the window holds no frame.
    """
    inside = np.flatnonzero((times > end - clip_window(pre)) & (times <= end))
    if inside.size == 0:
        return None
    return inside[clip_indices(inside.size, pre, train=False)]


def load_frames(paths, indices: np.ndarray, *, source: str) -> list[np.ndarray]:
    """Read the frames at ``indices`` (BGR uint8); each distinct frame is decoded once."""
    cache: dict[int, np.ndarray] = {}
    frames = []
    for index in indices.tolist():
        if index not in cache:
            image = cv2.imread(str(paths[index]))
            if image is None:
                raise DatasetError(f"{source}: cannot read frame {paths[index]}")
            cache[index] = image
        frames.append(cache[index])
    return frames


def _crop_box(
    height: int, width: int, rng: np.random.Generator, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    return 0, 0, height, width


def train_transform(
    frames: list[np.ndarray], pre: Preprocessing, rng: np.random.Generator, **crop: tuple[float, float]
) -> np.ndarray:
    """Random-sized crop + horizontal flip, the same for every frame -> (T, 3, H, W) float32
    (``train_views``, normalised; ``crop``: its ``scale`` and ``ratio``)."""
    return normalise(train_views(frames, pre, rng, **crop), pre)


def train_views(
    frames: list[np.ndarray],
    pre: Preprocessing,
    rng: np.random.Generator,
    *,
    scale: tuple[float, float] = (0.8, 1.0),
    ratio: tuple[float, float] = (0.9, 1.1),
) -> np.ndarray:
    """``train_transform``'s crops before normalisation: (T, H, W, 3) uint8 BGR (what a teacher reads)."""
    height, width = frames[0].shape[:2]
    top, left, h, w = _crop_box(height, width, rng, scale, ratio)
    flip = rng.random() < 0.5
    out_h, out_w = pre.input_size
    resized = []
    for frame in frames:
        crop = cv2.resize(frame[top : top + h, left : left + w], (out_w, out_h), interpolation=cv2.INTER_LINEAR)
        resized.append(crop[:, ::-1] if flip else crop)
    return np.stack(resized)


def resize_frame(frame: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """A frame at the preset's input size (area averaging when shrinking), still uint8."""
    out_h, out_w = pre.input_size
    interpolation = cv2.INTER_AREA if frame.shape[0] > out_h else cv2.INTER_LINEAR
    return cv2.resize(frame, (out_w, out_h), interpolation=interpolation)


def face_crop(frame: np.ndarray, landmarks: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """The aligned face crop (H, W, 3) uint8 BGR the model sees, before normalisation."""
    return align_face(frame, landmarks, pre.input_size[0])


def eval_transform(frames: list[np.ndarray], pre: Preprocessing) -> np.ndarray:
    """Resize every frame to the input size -> (T, 3, H, W) float32."""
    return normalise(np.stack([resize_frame(f, pre) for f in frames]), pre)


def normalise(frames_bgr: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """(T, H, W, 3) uint8 BGR -> (T, 3, H, W) float32 in the preset's channel order and scale."""
    if tuple(pre.channels) != ("R", "G", "B"):
        raise ValueError(f"expected an RGB preset, got channels {pre.channels}")
    rgb = frames_bgr[..., ::-1].astype(np.float32) / pre.value_scale
    rgb = (rgb - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return np.ascontiguousarray(rgb.transpose(0, 3, 1, 2))


def to_model_input(images: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """uint8 images as the data pipeline makes them -> float32 model input.

    RGB presets: (N, T, H, W, 3) BGR clips -> (N, T, 3, H, W). Other presets (HTNet's flow
    images): (N, H, W, C) -> (N, C, H, W), scaled and normalised per channel.
    """
    if tuple(pre.channels) == ("R", "G", "B"):
        return np.stack([normalise(clip, pre) for clip in images]).astype(np.float32)
    x = images.astype(np.float32) / pre.value_scale
    x = (x - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
