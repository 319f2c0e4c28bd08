"""Face clips from a video, the way the runtime makes them.

Frames are read with their timestamps; the face (the largest one) is detected, aligned with
its 5 landmarks onto the canonical crop at the model's input size; clips cover a window of
``clip_len / fps`` seconds and take ``clip_len`` of the window's frames with the training
test-time sampler (8 segments x 2 consecutive frames). Calibration sets built from videos
use exactly this, so INT8 ranges are measured on what the runtime feeds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import cv2
import numpy as np

from edge_fer.errors import SourceError
from edge_fer.preprocessing.clips import clip_window, face_crop, window_clip
from edge_fer.presets import Preprocessing

__all__ = ["read_video", "clips_from_video"]


def read_video(path: str | os.PathLike) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (time in seconds, BGR frame) of a video file.

    Raises:
        SourceError: the file cannot be opened or holds no frames.
    """
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise SourceError(f"cannot open video {path}")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    index = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            yield index / fps, frame
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise SourceError(f"video {path} holds no readable frames")


def clips_from_video(
    path: str | os.PathLike, pre: Preprocessing, detector, *, stride: float = 0.5, max_clips: int | None = None
) -> list[np.ndarray]:
    """Face clips (clip_len, H, W, 3) uint8 BGR from a video, one every ``stride`` seconds.

    A window is used only when the face was found in every frame it samples.
    """
    times, crops = [], []
    for time, frame in read_video(path):
        found = detector.detect(frame)
        times.append(time)
        crops.append(face_crop(frame, found.top(1).landmarks[0], pre) if len(found) else None)
    times_array = np.array(times)
    clips = []
    end = times_array[0] + clip_window(pre)
    while end <= times_array[-1] + 1e-9 and (max_clips is None or len(clips) < max_clips):
        indices = window_clip(times_array, end, pre)
        if indices is not None and all(crops[i] is not None for i in indices):
            clips.append(np.stack([crops[i] for i in indices]))
        end += stride
    return clips
