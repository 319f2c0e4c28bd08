"""The synthetic benchmark: real faces that move like expressions, in real dataset layouts.

SYNTHETIC DATA. It stands in for DFEW and CASME II, which cannot be downloaded here, in
tests, the demo and benchmarks; numbers measured on it say nothing about real-data accuracy.

Two DFER styles (``write_dfer(style=...)``, ``edge-fer synth dfer --style``):

- "au" (default): face crops whose expressions are drawn from the action units that define
  each emotion (``edge_fer.data.expressions``), so a model trained on them can read a real
  face; its realism is measured by a real-data FER2013 model (``edge_fer.data.realism``).
- "motion": the benchmark described below, kept because its classes need the order of the
  frames (a clip model beats a single-frame one on it by construction).

Faces: the 100 real face photographs of scikit-image's LFW subset (25x25 grey crops of many
different people), up-scaled, tinted to a skin tone and blended onto a background. A real
face detector (RetinaFace) finds them in practically every frame.

Expressions are smooth local deformations of the face (a displacement field made of
Gaussian bumps at the mouth corners, brows, eyelids and jaw), scaled over time by an
intensity profile. Nuisances: head motion (translation, rotation, scale drift), lighting
drift, sensor noise and JPEG compression.

"motion" DFER (7 classes, DFEW layout): three deformations x temporal profiles + neutral::

    happy    smile  rise   (neutral -> apex, held)
    disgust  smile  fall   (apex -> neutral)
    sad      frown  rise
    angry    frown  pulse  (neutral -> apex -> neutral)
    surprise open   pulse
    fear     open   rise
    neutral  none   (head motion only)

Classes sharing a deformation show the same faces frame by frame; only the order of the
frames tells them apart, so a single-frame classifier confuses them and a clip model does
not. The rising and falling profiles even have the same distribution of per-frame
intensities.

Micro-expressions (3 classes, CASME II layout): the same deformations at a few percent of
the amplitude (1-2 pixels), lasting at most 0.5 s at a nominal 200 fps:
happiness -> positive, disgust / repression -> negative, surprise -> surprise. About one
clip in three also holds a blink (a larger, unrelated eyelid motion), and about one sample
in eight has no apex annotation ("/"), as in CASME II.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_fer.data.dfer import dfer_frame_path
from edge_fer.data.faces import FACE_CENTRE_X, LFW_FACES, RESTING_FACES, load_faces
from edge_fer.data.spec import SYNTHETIC_MARKER
from edge_fer.errors import DatasetError, OutputExistsError

__all__ = [
    "DFER_SCHEME",
    "MICRO_EMOTIONS",
    "FACE_LANDMARKS",
    "SynthFace",
    "render_clip",
    "write_dfer",
    "write_micro",
]

# Landmarks of the LFW crops as fractions of the face square, (x, y): eyes, nose, mouth
# corners as RetinaFace finds them on these faces (mean over the set; the LFW crops sit a
# little left of centre), then the extra points the deformations use.
FACE_LANDMARKS = {
    "eye_l": (0.26, 0.36),
    "eye_r": (0.60, 0.36),
    "nose": (0.43, 0.52),
    "mouth_l": (0.30, 0.69),
    "mouth_r": (0.59, 0.69),
    "brow_l": (0.26, 0.24),
    "brow_r": (0.60, 0.24),
    "lip_low": (0.445, 0.78),
    "chin": (0.445, 0.93),
    "lid_l": (0.26, 0.33),
    "lid_r": (0.60, 0.33),
}

# A deformation: (landmark, displacement (dx, dy) in face widths at full intensity, sigma in face widths).
Deformation = tuple[tuple[str, tuple[float, float], float], ...]
DEFORMATIONS: dict[str, Deformation] = {
    "none": (),
    "smile": (
        ("mouth_l", (-0.07, -0.08), 0.09),
        ("mouth_r", (0.07, -0.08), 0.09),
        ("eye_l", (0.0, -0.02), 0.06),
        ("eye_r", (0.0, -0.02), 0.06),
    ),
    "frown": (
        ("brow_l", (0.04, 0.07), 0.09),
        ("brow_r", (-0.04, 0.07), 0.09),
        ("mouth_l", (-0.015, 0.07), 0.08),
        ("mouth_r", (0.015, 0.07), 0.08),
    ),
    "open": (
        ("brow_l", (0.0, -0.08), 0.10),
        ("brow_r", (0.0, -0.08), 0.10),
        ("lip_low", (0.0, 0.10), 0.11),
        ("chin", (0.0, 0.07), 0.13),
    ),
    # Not an expression: the upper eyelids come down (a distractor in micro-expression clips).
    "blink": (("lid_l", (0.0, 0.035), 0.035), ("lid_r", (0.0, 0.035), 0.035)),
}

# DFEW label order (presets.DFER_CLASSES): (deformation, temporal profile) per class.
DFER_SCHEME = (
    ("happy", "smile", "rise"),
    ("sad", "frown", "rise"),
    ("neutral", "none", "flat"),
    ("angry", "frown", "pulse"),
    ("surprise", "open", "pulse"),
    ("disgust", "smile", "fall"),
    ("fear", "open", "rise"),
)
MICRO_EMOTIONS = (("happiness", "smile"), ("disgust", "frown"), ("repression", "frown"), ("surprise", "open"))


@dataclass(frozen=True)
class SynthFace:
    """One identity: a face image and how it sits in the frame."""

    face: np.ndarray  # (S, S, 3) uint8 BGR
    background: np.ndarray  # (H, W, 3) uint8 BGR
    mask: np.ndarray  # (S, S, 1) float32 blending weights
    centre: tuple[float, float]  # face centre in the frame, pixels


def make_identity(gray_face: np.ndarray, rng: np.random.Generator, *, frame_size: int, face_size: int) -> SynthFace:
    """Tint, up-scale and place one face photo; draw its background."""
    face = cv2.resize((gray_face * 255).astype(np.uint8), (face_size, face_size), interpolation=cv2.INTER_CUBIC)
    tone = np.array([rng.uniform(0.55, 0.85), rng.uniform(0.7, 0.95), 1.0]) * rng.uniform(0.85, 1.1)  # BGR skin tint
    face = np.clip(face[..., None].astype(np.float32) * tone, 0, 255).astype(np.uint8)
    y, x = np.mgrid[0:face_size, 0:face_size] / (face_size - 1) * 2 - 1
    mask = np.clip((1.0 - np.sqrt((x / 0.98) ** 2 + (y / 1.05) ** 2)) / 0.12, 0, 1).astype(np.float32)[..., None]
    # A muted, smoothly varying background (a wall, a room): low saturation, low contrast.
    base = rng.uniform(50, 200) + rng.uniform(-20, 20, size=3)
    corners = (base + rng.uniform(-35, 35, size=(2, 2, 1))).astype(np.float32)  # (2, 2, 3)
    ramp = np.linspace(0.0, 1.0, frame_size, dtype=np.float32)
    top = corners[0, 0] * (1 - ramp[:, None]) + corners[0, 1] * ramp[:, None]  # (W, 3)
    bottom = corners[1, 0] * (1 - ramp[:, None]) + corners[1, 1] * ramp[:, None]
    background = top[None] * (1 - ramp[:, None, None]) + bottom[None] * ramp[:, None, None]  # (H, W, 3)
    centre = (
        frame_size / 2 + (0.5 - FACE_CENTRE_X) * face_size + rng.uniform(-3, 3),
        frame_size / 2 + rng.uniform(-3, 3),
    )
    return SynthFace(face, background.astype(np.uint8), mask, centre)


def intensity_profile(profile: str, length: int, rng: np.random.Generator) -> np.ndarray:
    """Expression intensity in [0, 1] per frame for a temporal profile."""
    tau = np.linspace(0.0, 1.0, length)

    def ramp(start: float, duration: float) -> np.ndarray:
        s = np.clip((tau - start) / duration, 0.0, 1.0)
        return s * s * (3 - 2 * s)  # smoothstep

    if profile == "flat":
        return np.zeros(length)
    if profile in ("rise", "fall"):
        curve = ramp(rng.uniform(0.1, 0.35), rng.uniform(0.25, 0.4))
        return curve if profile == "rise" else curve[::-1].copy()
    if profile == "pulse":
        start, up, hold = rng.uniform(0.1, 0.25), rng.uniform(0.15, 0.25), rng.uniform(0.05, 0.15)
        return ramp(start, up) * (1.0 - ramp(start + up + hold, up))
    raise ValueError(f"unknown profile {profile!r}")


def displacement_field(
    deformation: str, size: int, landmarks: dict[str, tuple[float, float]] | None = None
) -> np.ndarray:
    """(S, S, 2) displacement (pixels) of a face square at full intensity.

    ``landmarks`` (fractions of the square) default to the LFW crops' ``FACE_LANDMARKS``.
    """
    landmarks = landmarks or FACE_LANDMARKS
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    field = np.zeros((size, size, 2), np.float32)
    for landmark, (dx, dy), sigma in DEFORMATIONS[deformation]:
        cx, cy = landmarks[landmark]
        weight = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
        field[..., 0] += weight * dx * size
        field[..., 1] += weight * dy * size
    return field


def head_motion(length: int, rng: np.random.Generator, *, amplitude: float) -> np.ndarray:
    """(T, 4) smooth (dx, dy, angle_deg, log_scale) drift; amplitude 1 = a lively head."""
    knots = max(2, length // 12 + 2)
    scale = np.array([3.0, 3.0, 4.0, 0.04]) * amplitude
    values = rng.uniform(-1, 1, size=(knots, 4)) * scale
    t = np.linspace(0, knots - 1, length)
    return np.stack([np.interp(t, np.arange(knots), values[:, k]) for k in range(4)], axis=1)


def render_clip(
    identity: SynthFace,
    deformation: str,
    intensity: np.ndarray,
    rng: np.random.Generator,
    *,
    amplitude: float,
    head_amplitude: float,
    noise: float,
    distractors: tuple[tuple[str, np.ndarray], ...] = (),
) -> Iterator[np.ndarray]:
    """Yield the frames (H, W, 3) uint8 BGR of one clip.

    Args:
        identity: the face and its placement.
        deformation: key of ``DEFORMATIONS``.
        intensity: (T,) expression intensity per frame, in [0, 1].
        rng: source of the nuisances.
        amplitude: multiplies the deformation (1 for macro-, ~0.3 for micro-expressions).
        head_amplitude: multiplies the head motion.
        noise: standard deviation of the sensor noise (grey levels).
        distractors: further (deformation, (T,) intensity) at full amplitude, e.g. blinks.
    """
    size = identity.face.shape[0]
    frame_size = identity.background.shape[0]
    components = [(displacement_field(deformation, size) * amplitude, intensity)]
    components += [(displacement_field(name, size), curve) for name, curve in distractors]
    grid_y, grid_x = np.mgrid[0:size, 0:size].astype(np.float32)
    motion = head_motion(len(intensity), rng, amplitude=head_amplitude)
    gain = 1.0 + np.interp(np.linspace(0, 1, len(intensity)), [0, 1], rng.uniform(-0.08, 0.08, 2))
    for t in range(len(intensity)):
        d = sum(field * float(curve[t]) for field, curve in components)
        face = cv2.remap(
            identity.face, grid_x - d[..., 0], grid_y - d[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        dx, dy, angle, log_scale = motion[t]
        cx, cy = identity.centre
        # Similarity that maps the face square into the frame around its (moving) centre.
        to_frame = cv2.getRotationMatrix2D((size / 2, size / 2), angle, math.exp(log_scale))
        to_frame[:, 2] += (cx + dx - size / 2, cy + dy - size / 2)
        warped = cv2.warpAffine(face, to_frame, (frame_size, frame_size), flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(identity.mask, to_frame, (frame_size, frame_size), flags=cv2.INTER_LINEAR)[..., None]
        frame = identity.background * (1 - alpha) + warped * alpha
        frame = frame * gain[t] + rng.normal(0, noise, frame.shape)
        yield np.clip(frame, 0, 255).astype(np.uint8)


def _write_frames(folder: Path, frames: Iterator[np.ndarray], name: Callable[[int], str], quality: int = 90) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for count, frame in enumerate(frames, start=1):
        if not cv2.imwrite(str(folder / name(count)), frame, [cv2.IMWRITE_JPEG_QUALITY, quality]):
            raise DatasetError(f"cannot write frames into {folder}")
    return count


MARKER = SYNTHETIC_MARKER


def _prepare_out(out: Path, *, force: bool, owned: tuple[str, ...]) -> None:
    """Make ``out`` ready: empty, or (with ``force``) a synthetic set of ours, cleared.

    Only folders this module writes (``owned``) are removed, and only where the marker
    file says the folder holds a synthetic set; anything else is never deleted.
    """
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise OutputExistsError(f"{out} is not empty and holds no synthetic set; choose an empty folder")
        if not force:
            raise OutputExistsError(f"{out} already holds a synthetic set; pass --force to replace it")
        for name in (*owned, MARKER):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("Synthetic set being written by edge-fer (incomplete until this line changes).\n")


# ---------------------------------------------------------------- DFER (DFEW layout)


DFER_STYLES = ("au", "motion")  # the first is the default


@dataclass(frozen=True)
class _DferJob:
    root: str
    video: int
    label: int
    face_index: int
    seed: tuple[int, ...]
    frame_size: int
    style: str = "motion"
    teacher_picks: int = 1


@dataclass(frozen=True)
class _Rendered:
    apex: int | None = None  # 1-based apex frame ("au" style)
    first_read: bool | None = None  # with teacher picks: did the teacher read the first draw as intended?


def _render_dfer_video(job: _DferJob) -> _Rendered:
    """Render one video; the "au" style reports its apex frame (1-based), for the realism meter."""
    rng = np.random.default_rng(np.random.SeedSequence(list(job.seed)))
    faces = load_faces()
    folder = dfer_frame_path(job.root, job.video, 1).parent

    def name(frame: int) -> str:
        return dfer_frame_path(job.root, job.video, frame).name

    if job.style == "au":
        from edge_fer.data.expressions import pick_expression, plan_clip, render_au_clip

        emotion = DFER_SCHEME[job.label][0]
        plan = plan_clip(emotion, int(rng.integers(16, 25)), rng)
        first_read = None
        if job.teacher_picks > 1:  # the expression the teacher reads best of K draws (write_dfer)
            from edge_fer.data.realism import load_teacher  # once per process (cached)

            more = np.random.default_rng(np.random.SeedSequence([*job.seed, 1]))
            alternatives = [plan_clip(emotion, len(plan.intensity), more) for _ in range(job.teacher_picks - 1)]
            plan, read = pick_expression(
                faces[job.face_index], plan, alternatives, load_teacher().probabilities, job.label,
                frame_size=job.frame_size,
            )  # the teacher's 7 columns are in DFER_SCHEME's order, so the label is its column
            first_read = bool(read[0].argmax() == job.label)
        frames = render_au_clip(faces[job.face_index], plan, frame_size=job.frame_size)
        _write_frames(folder, frames, name, quality=int(rng.integers(70, 96)))
        return _Rendered(apex=plan.apex + 1, first_read=first_read)
    _, deformation, profile = DFER_SCHEME[job.label]
    identity = make_identity(
        faces[job.face_index], rng, frame_size=job.frame_size, face_size=int(job.frame_size * rng.uniform(0.68, 0.78))
    )
    length = int(rng.integers(24, 41))
    intensity = intensity_profile(profile, length, rng) * rng.uniform(0.6, 1.0)
    frames = render_clip(identity, deformation, intensity, rng, amplitude=1.0, head_amplitude=0.3, noise=3.0)
    _write_frames(folder, frames, name)
    return _Rendered()


def write_dfer(
    out: str | Path,
    *,
    clips: int = 700,
    seed: int = 0,
    frame_size: int | None = None,
    folds: int = 5,
    workers: int = 2,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    style: str = "au",
    teacher_picks: int = 1,
) -> Path:
    """Write a synthetic DFER set in DFEW's layout (A): frames and the 5-fold split files.

    ``Clip/jpg_256/{video:05d}/{video:05d}_{frame:05d}.jpg`` (frames are ``frame_size``
    square, not 256, to keep the set small) and
    ``EmoLabel_DataSplit/{train,test}(single-labeled)/set_{k}.csv`` (``video_name,label``,
    labels 1..7). Classes are balanced; folds are stratified by class; identities are drawn
    from all 100 faces (in the "au" style, emotions other than happy from the 29 at rest:
    ``RESTING_FACES``). Deterministic from ``seed``.

    Styles: "au" (default) - face crops whose expressions are the emotions' action units
    (``edge_fer.data.expressions``), 96 px frames by default; "motion" - the older benchmark of
    deformation x temporal-profile classes (module docstring), whose classes only the order of
    frames tells apart, 160 px frames with background by default.
    """
    out = Path(out)
    if style not in DFER_STYLES:
        raise DatasetError(f"unknown synthetic style {style!r}; choose from {', '.join(DFER_STYLES)}")
    frame_size = frame_size or (96 if style == "au" else 160)
    if teacher_picks < 1 or (teacher_picks > 1 and style != "au"):
        raise DatasetError(f"teacher picks must be 1, or more with the 'au' style; got {teacher_picks} ({style})")
    if teacher_picks > 1:
        from edge_fer.data.realism import load_teacher

        load_teacher()  # fail here with the install hint, not in every worker
    if clips < 7 * folds:
        raise DatasetError(f"need at least {7 * folds} clips for {folds} stratified folds, got {clips}")
    _prepare_out(out, force=force, owned=("Clip", "EmoLabel_DataSplit", "synth_meta.json"))
    rng = np.random.default_rng(seed)
    labels = np.arange(clips) % 7
    rng.shuffle(labels)
    faces = rng.integers(0, LFW_FACES, size=clips)
    if style == "au":  # expressions other than happy on faces at rest
        happy = [c for c, _, _ in DFER_SCHEME].index("happy")
        draws = np.random.default_rng([seed, 1]).choice(np.array(RESTING_FACES), size=clips)
        faces = np.where(labels == happy, faces, draws)
    fold_of = np.empty(clips, dtype=int)
    for label in range(7):  # stratified folds
        members = np.flatnonzero(labels == label)
        fold_of[members] = (np.arange(len(members)) + rng.integers(folds)) % folds
    jobs = [
        _DferJob(
            str(out), video + 1, int(labels[video]), int(faces[video]), (seed, video), frame_size, style, teacher_picks
        )
        for video in range(clips)
    ]
    rendered = _run(_render_dfer_video, jobs, workers, progress)
    for k in range(1, folds + 1):
        for split, members in (("train", fold_of != k - 1), ("test", fold_of == k - 1)):
            rows = [(f"{v + 1}", int(labels[v]) + 1) for v in np.flatnonzero(members)]
            _write_csv(
                out / "EmoLabel_DataSplit" / f"{split}(single-labeled)" / f"set_{k}.csv", ("video_name", "label"), rows
            )
    _write_meta(
        out,
        {
            "kind": "dfer",
            "style": style,
            "seed": seed,
            "clips": clips,
            "folds": folds,
            "frame_size": frame_size,
            **({"teacher_picks": teacher_picks} if teacher_picks > 1 else {}),
            "classes": [c for c, _, _ in DFER_SCHEME],
            "videos": [
                {
                    "video": v + 1,
                    "label": int(labels[v]),
                    "identity": int(faces[v]),
                    "fold": int(fold_of[v]) + 1,
                    **({"apex": rendered[v].apex} if rendered[v].apex is not None else {}),
                    **({"first_draw_read": rendered[v].first_read} if rendered[v].first_read is not None else {}),
                }
                for v in range(clips)
            ],
        },
    )
    (out / MARKER).write_text(
        f"Synthetic DFER benchmark written by edge-fer (style {style}, seed {seed}, {clips} clips, {folds} folds).\n"
        "Not real data: see edge_fer/data/synth.py for how it is made.\n"
    )
    return out


def _write_meta(out: Path, meta: dict) -> None:
    """``synth_meta.json``: what was generated (labels, identities, folds), for analysis and tests."""
    (out / "synth_meta.json").write_text(json.dumps(meta, indent=1) + "\n")


def _write_csv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _run(fn: Callable, jobs: list, workers: int, progress: Callable[[int, int], None] | None) -> list:
    """``fn`` over ``jobs`` (in processes when ``workers`` > 1); the results in job order."""
    results = []
    if workers <= 1:
        for done, job in enumerate(jobs, start=1):
            results.append(fn(job))
            if progress:
                progress(done, len(jobs))
        return results
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for done, result in enumerate(pool.map(fn, jobs, chunksize=4), start=1):
            results.append(result)
            if progress:
                progress(done, len(jobs))
    return results


# ------------------------------------------------------- micro-expressions (CASME II)


@dataclass(frozen=True)
class _MicroJob:
    root: str
    subject: int
    filename: str
    emotion: str
    face_index: int
    seed: tuple[int, ...]
    frame_size: int
    first_frame: int


@dataclass(frozen=True)
class _MicroRow:
    subject: int
    filename: str
    onset: int
    apex: int
    offset: int
    emotion: str
    action_units: str


ACTION_UNITS = {"smile": "12", "frown": "4+15", "open": "1+2+26"}


def _render_micro_video(job: _MicroJob) -> _MicroRow:
    rng = np.random.default_rng(np.random.SeedSequence(list(job.seed)))
    faces = load_faces()
    deformation = dict(MICRO_EMOTIONS)[job.emotion]
    # Subject identity: the same face, background and placement for all of a subject's clips.
    identity = make_identity(
        faces[job.face_index],
        np.random.default_rng(job.face_index + 1000 * job.subject),
        frame_size=job.frame_size,
        face_size=int(job.frame_size * 0.62),
    )
    length = int(rng.integers(40, 61))
    onset = int(rng.integers(4, 10))
    rise = int(rng.integers(8, 21))  # <= 0.1 s to apex at 200 fps
    hold = int(rng.integers(2, 8))
    fall = int(rng.integers(10, 26))
    t = np.arange(length, dtype=np.float64)
    up = np.clip((t - onset) / rise, 0, 1)
    down = np.clip((t - onset - rise - hold) / fall, 0, 1)
    intensity = (up * up * (3 - 2 * up)) * (1 - down * down * (3 - 2 * down)) * rng.uniform(0.7, 1.0)
    distractors = ()
    if rng.random() < 0.3:  # a blink somewhere in the clip, as in real recordings
        start, width = int(rng.integers(0, length - 8)), int(rng.integers(6, 12))
        blink = np.clip(1 - np.abs(t - start - width / 2) / (width / 2), 0, 1)
        distractors = (("blink", blink),)
    frames = render_clip(
        identity, deformation, intensity, rng, amplitude=0.3, head_amplitude=0.15, noise=1.5, distractors=distractors
    )
    folder = Path(job.root) / "CASME2_RAW_selected" / f"sub{job.subject:02d}" / job.filename
    _write_frames(folder, frames, lambda i: f"img{job.first_frame + i - 1}.jpg", quality=95)
    apex = onset + rise + hold // 2
    offset = min(length - 1, onset + rise + hold + fall)
    return _MicroRow(
        job.subject,
        job.filename,
        job.first_frame + onset,
        job.first_frame + apex,
        job.first_frame + offset,
        job.emotion,
        ACTION_UNITS[deformation],
    )


def write_micro(
    out: str | Path,
    *,
    subjects: int = 16,
    clips_per_subject: int = 9,
    seed: int = 0,
    frame_size: int = 160,
    workers: int = 2,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a synthetic micro-expression set in CASME II's layout.

    ``CASME2-coding-20140508.xlsx`` (Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame,
    Action Units, Estimated Emotion) and ``CASME2_RAW_selected/subXX/<Filename>/img{N}.jpg``.
    One face per subject; classes balanced per subject over positive / negative / surprise.
    Deterministic from ``seed``.
    """
    out = Path(out)
    if subjects < 2 or subjects > LFW_FACES:
        raise DatasetError(f"--subjects must be 2..{LFW_FACES} (leave-one-subject-out needs two), got {subjects}")
    if clips_per_subject < 3:
        raise DatasetError(f"need at least 3 clips per subject (one per class), got {clips_per_subject}")
    _prepare_out(out, force=force, owned=("CASME2_RAW_selected", "CASME2-coding-20140508.xlsx", "synth_meta.json"))
    rng = np.random.default_rng(seed)
    face_of_subject = rng.permutation(LFW_FACES)[:subjects]
    jobs = []
    for subject in range(1, subjects + 1):
        classes = [("happiness",), ("disgust", "repression"), ("surprise",)]
        for clip in range(clips_per_subject):
            options = classes[(clip + subject) % 3]
            emotion = options[int(rng.integers(len(options)))]
            jobs.append(
                _MicroJob(
                    str(out),
                    subject,
                    f"EP{clip + 1:02d}_{int(rng.integers(1, 10)):02d}",
                    emotion,
                    int(face_of_subject[subject - 1]),
                    (seed, subject, clip),
                    frame_size,
                    int(rng.integers(1, 200)),
                )
            )
    rows: list[_MicroRow] = []
    if workers <= 1:
        rows = [_render_micro_video(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rows = list(pool.map(_render_micro_video, jobs, chunksize=4))
    if progress:
        progress(len(jobs), len(jobs))
    hide_apex = rng.random(len(rows)) < 0.125
    _write_casme2_coding(out / "CASME2-coding-20140508.xlsx", rows, hide_apex)
    _write_meta(
        out,
        {
            "kind": "micro",
            "seed": seed,
            "subjects": subjects,
            "frame_size": frame_size,
            "samples": [
                {
                    "subject": f"sub{r.subject:02d}",
                    "filename": r.filename,
                    "emotion": r.emotion,
                    "identity": int(face_of_subject[r.subject - 1]),
                    "apex": r.apex,
                    "apex_hidden": bool(h),
                }
                for r, h in zip(rows, hide_apex)
            ],
        },
    )
    (out / MARKER).write_text(
        f"Synthetic micro-expression benchmark written by edge-fer (seed {seed}, {subjects} subjects).\n"
        "Not real data: see edge_fer/data/synth.py for how it is made.\n"
    )
    return out


def _write_casme2_coding(path: Path, rows: list[_MicroRow], hide_apex: np.ndarray) -> None:
    try:
        from openpyxl import Workbook
    except ImportError:
        raise DatasetError("writing the CASME II coding file needs openpyxl: pip install openpyxl") from None
    book = Workbook()
    sheet = book.active
    sheet.title = "Sheet1"
    sheet.append(["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units", "Estimated Emotion"])
    for row, hidden in zip(rows, hide_apex):
        sheet.append(
            [
                f"{row.subject:02d}",
                row.filename,
                row.onset,
                "/" if hidden else row.apex,
                row.offset,
                row.action_units,
                row.emotion,
            ]
        )
    book.save(path)
