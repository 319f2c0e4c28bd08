"""Videos of real faces, made from photographs that ship inside installed packages.

Used where a *real* face video is needed and none may be downloaded: the demo, the
runtime tests (tracking through a face leaving and returning, two faces at once) and the
FP32-vs-INT8 agreement check. The faces are real photographs - Eileen Collins
(scikit-image's ``astronaut``) and Grace Hopper (matplotlib's sample data) - moved,
scaled and given expression motion with the synthetic benchmark's deformations placed at
the photo's own landmarks. The script of the video (who is where, when) is returned and
saved as ground truth.

Schedule of the default video (fractions of its length)::

    0.00-0.20  face A alone, moving and zooming, with expressions
    0.20-0.30  face A leaves the frame; empty frames
    0.30-0.45  face A returns
    0.45-0.75  faces A and B together
    0.75-1.00  face B alone, scaling
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_fer.data.synth import DFER_SCHEME, displacement_field, intensity_profile
from edge_fer.errors import DatasetError
from edge_fer.fileio import atomic_output

__all__ = ["PHOTOS", "FacePhoto", "load_photo", "write_face_video", "write_crowd_video"]

# Five landmarks (RetinaFace order, photo pixels) of the shipped photos, measured once with
# RetinaFace; fixed here so videos do not depend on which detector is installed.
PHOTOS = {
    "astronaut": ((204.8, 100.8), (247.4, 103.4), (223.6, 129.2), (202.5, 138.1), (244.2, 140.6)),
    "grace_hopper": ((219.0, 187.6), (303.4, 186.8), (259.6, 247.2), (231.9, 273.1), (299.2, 272.7)),
}


@dataclass(frozen=True)
class FacePhoto:
    """A head cut from a photo: a square sprite, its soft mask and landmark fractions."""

    name: str
    sprite: np.ndarray  # (S, S, 3) uint8 BGR
    mask: np.ndarray  # (S, S) float32
    landmarks: dict[str, tuple[float, float]]  # fractions of the sprite, as synth.FACE_LANDMARKS


def _photo_pixels(name: str) -> np.ndarray:
    if name == "astronaut":
        try:
            from skimage.data import astronaut
        except ImportError:
            raise DatasetError("the astronaut photo comes with scikit-image: pip install scikit-image") from None
        return np.ascontiguousarray(astronaut()[..., ::-1])
    if name == "grace_hopper":
        try:
            import matplotlib
        except ImportError:
            raise DatasetError("the Grace Hopper photo comes with matplotlib: pip install matplotlib") from None
        path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
        image = cv2.imread(path)
        if image is None:
            raise DatasetError(f"cannot read {path}")
        return image
    raise DatasetError(f"unknown photo {name!r}; choose from {', '.join(PHOTOS)}")


def load_photo(name: str) -> FacePhoto:
    """Cut the head out of a shipped photo (a square 3.2 eye-distances wide)."""
    image = _photo_pixels(name)
    points = np.array(PHOTOS[name], np.float32)
    eye_l, eye_r, nose, mouth_l, mouth_r = points
    eye_distance = float(np.linalg.norm(eye_r - eye_l))
    side = int(round(3.2 * eye_distance))
    centre = (eye_l + eye_r + mouth_l + mouth_r) / 4
    x0, y0 = int(round(centre[0] - side / 2)), int(round(centre[1] - side / 2))
    padded = cv2.copyMakeBorder(image, side, side, side, side, cv2.BORDER_REPLICATE)
    sprite = padded[y0 + side : y0 + 2 * side, x0 + side : x0 + 2 * side].copy()
    yy, xx = (np.mgrid[0:side, 0:side] / (side - 1)) * 2 - 1
    mask = np.clip((1.0 - np.sqrt((xx / 0.9) ** 2 + (yy / 1.0) ** 2)) / 0.15, 0, 1).astype(np.float32)

    def frac(point: np.ndarray) -> tuple[float, float]:
        return float((point[0] - x0) / side), float((point[1] - y0) / side)

    up = np.array([0.0, eye_distance], np.float32)
    mouth_mid = (mouth_l + mouth_r) / 2
    landmarks = {
        "eye_l": frac(eye_l),
        "eye_r": frac(eye_r),
        "nose": frac(nose),
        "mouth_l": frac(mouth_l),
        "mouth_r": frac(mouth_r),
        "brow_l": frac(eye_l - 0.35 * up),
        "brow_r": frac(eye_r - 0.35 * up),
        "lid_l": frac(eye_l - 0.08 * up),
        "lid_r": frac(eye_r - 0.08 * up),
        "lip_low": frac(mouth_mid + 0.25 * up),
        "chin": frac(mouth_mid + 0.75 * up),
    }
    return FacePhoto(name, sprite, mask, landmarks)


@dataclass(frozen=True)
class _Track:
    photo: FacePhoto
    fields: dict[str, np.ndarray]  # deformation -> (S, S, 2) field at full intensity


def _path(t: np.ndarray, start: tuple[float, float], end: tuple[float, float]) -> np.ndarray:
    s = np.clip(t, 0, 1)
    s = s * s * (3 - 2 * s)
    return np.array(start)[None] * (1 - s[:, None]) + np.array(end)[None] * s[:, None]


def _expression_curves(frames: int, fps: float, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """A sequence of expressions (2-4 s each, random class) as (deformation, intensity) curves."""
    curves: dict[str, np.ndarray] = {}
    position = 0
    while position < frames:
        length = int(rng.uniform(2.0, 4.0) * fps)
        _, deformation, profile = DFER_SCHEME[int(rng.integers(len(DFER_SCHEME)))]
        end = min(frames, position + length)
        if deformation != "none":
            curve = curves.setdefault(deformation, np.zeros(frames))
            curve[position:end] = intensity_profile(profile, length, rng)[: end - position] * rng.uniform(0.6, 1.0)
        position = end
    return list(curves.items())


def write_face_video(
    path: str | os.PathLike,
    *,
    seconds: float = 30.0,
    fps: float = 25.0,
    size: tuple[int, int] = (640, 360),
    faces: Sequence[str] = ("astronaut", "grace_hopper"),
    seed: int = 0,
    force: bool = False,
) -> dict:
    """Write an MP4 of real faces moving, leaving, returning and meeting; return its script.

    The script (also saved beside the video as ``<video>.truth.json``) lists, per frame,
    the faces present with their ids and boxes (x1, y1, x2, y2).
    """
    path = Path(path)
    width, height = size
    frames = int(round(seconds * fps))
    rng = np.random.default_rng(seed)
    tracks = []
    for name in faces[:2]:
        photo = load_photo(name)
        side = photo.sprite.shape[0]
        tracks.append(
            _Track(photo, {d: displacement_field(d, side, photo.landmarks) for d in ("smile", "frown", "open")})
        )
    if len(tracks) < 2:
        tracks.append(tracks[0])
    t = np.arange(frames) / max(frames - 1, 1)
    base = min(width, height)
    # Per face: centre x, y (pixels) and face height (pixels) per frame; NaN = absent.
    layout = np.full((2, frames, 3), np.nan)
    a_alone, a_leaves, a_back, both, b_alone = (
        (t < 0.2),
        (t >= 0.2) & (t < 0.3),
        (t >= 0.3) & (t < 0.45),
        (t >= 0.45) & (t < 0.75),
        (t >= 0.75),
    )
    span = lambda mask: (t[mask] - t[mask].min()) / max(np.ptp(t[mask]), 1e-9)  # noqa: E731
    layout[0, a_alone, :2] = _path(span(a_alone), (0.35 * width, 0.5 * height), (0.6 * width, 0.45 * height))
    layout[0, a_alone, 2] = base * (0.45 + 0.15 * np.sin(2 * np.pi * span(a_alone)))
    leaving = _path(span(a_leaves) * 2.0, (0.6 * width, 0.45 * height), (1.3 * width, 0.45 * height))
    layout[0, a_leaves, :2] = leaving
    layout[0, a_leaves, 2] = base * 0.45
    layout[0, a_back, :2] = _path(span(a_back), (-0.1 * width, 0.5 * height), (0.4 * width, 0.5 * height))
    layout[0, a_back, 2] = base * 0.5
    layout[0, both, :2] = _path(span(both), (0.3 * width, 0.5 * height), (0.28 * width, 0.55 * height))
    layout[0, both, 2] = base * 0.42
    layout[1, both, :2] = _path(span(both), (0.72 * width, 0.48 * height), (0.7 * width, 0.45 * height))
    layout[1, both, 2] = base * 0.4
    layout[1, b_alone, :2] = _path(span(b_alone), (0.7 * width, 0.45 * height), (0.5 * width, 0.5 * height))
    layout[1, b_alone, 2] = base * (0.35 + 0.3 * span(b_alone))
    expressions = [_expression_curves(frames, fps, rng) for _ in tracks]
    background = _background(width, height, rng)

    return _render(
        path,
        fps=fps,
        size=size,
        tracks=tracks,
        expressions=expressions,
        background=background,
        rng=rng,
        place=lambda face_id, index: tuple(layout[face_id, index]),
        frames=frames,
        faces=list(faces[:2]),
        force=force,
    )


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    base = rng.uniform(70, 170) + rng.uniform(-15, 15, size=3)
    ramp_x = np.linspace(-1, 1, width)[None, :, None]
    ramp_y = np.linspace(-1, 1, height)[:, None, None]
    image = base + 25 * ramp_x * rng.uniform(-1, 1, 3) + 20 * ramp_y * rng.uniform(-1, 1, 3)
    return np.clip(image, 0, 255).astype(np.uint8)


def _paste(frame: np.ndarray, track: _Track, curves, index: int, centre, face_height: float):
    """Deform the sprite, scale it to ``face_height`` and blend it at ``centre``; return its box."""
    photo = track.photo
    side = photo.sprite.shape[0]
    displacement = sum(track.fields[name] * float(curve[index]) for name, curve in curves) if curves else None
    sprite = photo.sprite
    if displacement is not None and np.any(displacement):
        grid_y, grid_x = np.mgrid[0:side, 0:side].astype(np.float32)
        sprite = cv2.remap(
            sprite,
            grid_x - displacement[..., 0],
            grid_y - displacement[..., 1],
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
    scale = face_height / side
    matrix = np.array([[scale, 0, centre[0] - side * scale / 2], [0, scale, centre[1] - side * scale / 2]], np.float32)
    height, width = frame.shape[:2]
    warped = cv2.warpAffine(sprite, matrix, (width, height), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(photo.mask, matrix, (width, height), flags=cv2.INTER_LINEAR)[..., None]
    frame *= 1 - alpha
    frame += warped * alpha
    x1, y1 = centre[0] - face_height * 0.45, centre[1] - face_height * 0.5
    x2, y2 = centre[0] + face_height * 0.45, centre[1] + face_height * 0.5
    visible_w = min(x2, width) - max(x1, 0)
    if visible_w < 0.5 * (x2 - x1):  # mostly outside the frame: not a face to find
        return None
    return max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))


def write_crowd_video(
    path: str | os.PathLike,
    *,
    faces: int = 1,
    seconds: float = 20.0,
    fps: float = 25.0,
    size: tuple[int, int] = (640, 360),
    seed: int = 0,
    force: bool = False,
) -> dict:
    """Write an MP4 with ``faces`` real faces in view the whole time (for speed benchmarks).

    Faces sit on a grid, drift and zoom gently and change expression; the two shipped
    photos alternate (mirrored on every second use). Returns the script as ``write_face_video``.
    """
    if not 1 <= faces <= 9:
        raise DatasetError(f"faces must be 1..9, got {faces}")
    path = Path(path)
    width, height = size
    frames = int(round(seconds * fps))
    rng = np.random.default_rng(seed)
    columns = int(np.ceil(np.sqrt(faces)))
    rows = int(np.ceil(faces / columns))
    cell_w, cell_h = width / columns, height / rows
    tracks = []
    for index in range(faces):
        photo = load_photo(("astronaut", "grace_hopper")[index % 2])
        if (index // 2) % 2:
            photo = FacePhoto(
                photo.name,
                np.ascontiguousarray(photo.sprite[:, ::-1]),
                np.ascontiguousarray(photo.mask[:, ::-1]),
                photo.landmarks,  # fields are symmetric enough for a benchmark video
            )
        side = photo.sprite.shape[0]
        tracks.append(
            _Track(photo, {d: displacement_field(d, side, photo.landmarks) for d in ("smile", "frown", "open")})
        )
    expressions = [_expression_curves(frames, fps, rng) for _ in tracks]
    phases = rng.uniform(0, 2 * np.pi, size=(faces, 3))
    background = _background(width, height, rng)

    def place(face_id: int, index: int) -> tuple[float, float, float]:
        t = index / fps
        row, column = divmod(face_id, columns)
        cx = (column + 0.5) * cell_w + 0.12 * cell_w * np.sin(0.5 * t + phases[face_id, 0])
        cy = (row + 0.5) * cell_h + 0.08 * cell_h * np.sin(0.4 * t + phases[face_id, 1])
        return cx, cy, min(cell_w, cell_h) * (0.6 + 0.1 * np.sin(0.3 * t + phases[face_id, 2]))

    return _render(
        path,
        fps=fps,
        size=size,
        tracks=tracks,
        expressions=expressions,
        background=background,
        rng=rng,
        place=place,
        frames=frames,
        faces=faces,
        force=force,
    )


def _render(path: Path, *, fps, size, tracks, expressions, background, rng, place, frames, faces, force) -> dict:
    """Write the MP4 (atomically) and ``<video>.truth.json``; ``place(face, frame)`` gives the
    face's centre x, y and height in pixels (NaN: absent). Returns the script."""
    width, height = size
    truth = []
    with atomic_output(path, force=force) as tmp:
        video_tmp = tmp.with_suffix(".mp4")  # OpenCV picks the container from the extension
        writer = cv2.VideoWriter(str(video_tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        try:
            if not writer.isOpened():
                raise DatasetError("OpenCV cannot write MP4 here (no mp4v encoder)")
            for index in range(frames):
                frame = background.astype(np.float32).copy()
                present = []
                for face_id, track in enumerate(tracks):
                    cx, cy, face_h = place(face_id, index)
                    if np.isnan(cx):
                        continue
                    box = _paste(frame, track, expressions[face_id], index, (cx, cy), face_h)
                    if box is not None:
                        present.append({"id": face_id, "box": [round(v, 1) for v in box]})
                noise = rng.normal(0, 2.0, frame.shape)
                writer.write(np.clip(frame + noise, 0, 255).astype(np.uint8))
                truth.append(present)
            writer.release()
            os.replace(video_tmp, tmp)
        finally:
            writer.release()
            video_tmp.unlink(missing_ok=True)
    script = {"fps": fps, "frames": frames, "size": [width, height], "faces": faces, "truth": truth}
    with atomic_output(path.with_name(path.name + ".truth.json"), force=True) as tmp:
        tmp.write_text(json.dumps(script))
    return script
