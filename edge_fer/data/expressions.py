"""Facial expressions rendered from action units on real face photos (the "au" synthetic style).

SYNTHETIC DATA. Each emotion is drawn with the action units (AUs) that define its prototype
in FACS/EMFACS (Ekman & Friesen), so a "happy" clip shows a smile and a "surprise" clip a
dropped jaw and raised brows - the model learns what those expressions look like rather
than an arbitrary code, which is what lets it read a real face it has never seen.

How a face is made to move:

- ``LANDMARKS``: 35 points of a face crop (brows, lids, eye corners, cheeks, nose, lips, chin,
  jaw) as fractions of the square, measured on the LFW crops ``faces.load_faces`` returns.
- ``ACTION_UNITS``: each AU moves some of those points (face widths at full intensity; left
  side given, the right mirrored) and may draw the creases it makes (nasolabial folds for
  AU6/9/12, the brow furrow for AU4, forehead lines for AU1/2, nose wrinkles for AU9, the
  chin's bulge for AU17).
- The photo is warped so the points land where the AUs put them: an affine moving-least-
  squares deformation (Schaefer et al. 2006) through the moved points, with every other
  point and the border held still, so the person's identity is kept. Where the lips part
  (AU16/25/26) the mouth interior is drawn, with teeth where the prototype shows them.
- Eyes (sclera, iris, lid line) and brows are drawn at the moved lid and brow points, over
  the photo's own at a random opacity per clip: the 25-px photos have no eye detail to warp,
  so a wide-open eye (AU5), a raised (AU1/2) or knitted (AU4) brow would barely show
  (``_draw_eyes_and_brows``).
- Over a clip the AUs follow an onset -> apex -> offset intensity curve; nuisances (head
  pose, lighting, blur, low resolution, occlusion, colour or grey, noise) vary per clip.

Written without a landmark/warping library: the warp is ~40 lines of numpy and keeps the
synthetic set's dependencies to numpy, OpenCV and scikit-image's face photos.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from edge_fer.data.faces import FACE_CENTRE_X

__all__ = [
    "ACTION_UNITS",
    "EMOTION_PROTOTYPES",
    "LANDMARKS",
    "ActionUnit",
    "ClipPlan",
    "expression_landmarks",
    "pick_expression",
    "plan_clip",
    "render_au_clip",
    "warp_field",
]

MIDLINE_X = FACE_CENTRE_X  # the LFW crops' eye midpoint: a little left of centre

# Mirrored points: (offset from the midline, y). "_l" is the image's left.
_SIDE_POINTS = {
    "brow_in": (0.08, 0.255),
    "brow_mid": (0.17, 0.235),
    "brow_out": (0.26, 0.26),
    "lid_up": (0.17, 0.335),
    "lid_low": (0.17, 0.385),
    "eye_in": (0.10, 0.362),
    "eye_out": (0.245, 0.36),
    "cheek": (0.20, 0.50),
    "nose_wing": (0.06, 0.555),
    "mouth": (0.145, 0.69),
    "lip_up_side": (0.075, 0.665),
    "lip_low_side": (0.075, 0.725),
    "jaw": (0.27, 0.80),
    "temple": (0.36, 0.30),
}
_MID_POINTS = {
    "forehead": 0.10,
    "nose_bridge": 0.42,
    "nose_tip": 0.53,
    "lip_up_out": 0.650,
    "lip_up_in": 0.688,
    "lip_low_in": 0.695,
    "lip_low_out": 0.745,
    "chin": 0.90,
}


def _template() -> dict[str, tuple[float, float]]:
    points: dict[str, tuple[float, float]] = {}
    for name, (offset, y) in _SIDE_POINTS.items():
        points[f"{name}_l"] = (MIDLINE_X - offset, y)
        points[f"{name}_r"] = (MIDLINE_X + offset, y)
    for name, y in _MID_POINTS.items():
        points[name] = (MIDLINE_X, y)
    return points


LANDMARKS: dict[str, tuple[float, float]] = _template()


@dataclass(frozen=True)
class ActionUnit:
    """One FACS action unit: the points it moves and the creases it draws.

    ``moves``: (point, (dx, dy)) in face widths at full intensity. A point named without a side
    ("brow_in") moves both sides, dx given for the left one (positive = towards the right of
    the image) and mirrored for the right; midline points are named as in ``LANDMARKS``.
    ``creases``: (kind, depth) - darkening drawn along the moved points (see ``_draw_creases``).
    """

    number: int
    name: str
    moves: tuple[tuple[str, tuple[float, float]], ...]
    creases: tuple[tuple[str, float], ...] = ()


ACTION_UNITS: dict[int, ActionUnit] = {
    au.number: au
    for au in (
        ActionUnit(1, "inner brow raiser", (("brow_in", (0.0, -0.06)), ("brow_mid", (0.0, -0.025))), (("forehead", 0.12),)),
        ActionUnit(2, "outer brow raiser", (("brow_out", (0.0, -0.06)), ("brow_mid", (0.0, -0.045))), (("forehead", 0.1),)),
        ActionUnit(
            4,
            "brow lowerer",
            (("brow_in", (0.03, 0.05)), ("brow_mid", (0.012, 0.035)), ("lid_up", (0.0, 0.01))),
            (("glabella", 0.4),),
        ),
        ActionUnit(5, "upper lid raiser", (("lid_up", (0.0, -0.028)), ("brow_mid", (0.0, -0.008))), (("sclera", 0.3),)),
        ActionUnit(
            6,
            "cheek raiser",
            (("cheek", (0.0, -0.035)), ("lid_low", (0.0, -0.015)), ("eye_out", (0.0, -0.006))),
            (("nasolabial", 0.1), ("crows_feet", 0.15)),
        ),
        ActionUnit(7, "lid tightener", (("lid_low", (0.0, -0.016)), ("lid_up", (0.0, 0.008)))),
        ActionUnit(
            9,
            "nose wrinkler",
            (
                ("nose_wing", (0.0, -0.035)),
                ("nose_tip", (0.0, -0.012)),
                ("lip_up_out", (0.0, -0.03)),
                ("lip_up_side", (0.0, -0.03)),
                ("brow_in", (0.01, 0.025)),
                ("lid_low", (0.0, -0.01)),
            ),
            (("nose_wrinkle", 0.8), ("nasolabial", 0.35)),
        ),
        ActionUnit(
            10,
            "upper lip raiser",
            (("lip_up_out", (0.0, -0.03)), ("lip_up_side", (0.0, -0.035)), ("nose_wing", (0.0, -0.01))),
            (("nasolabial", 0.2),),
        ),
        ActionUnit(
            12,
            "lip corner puller",
            (
                ("mouth", (-0.055, -0.045)),
                ("lip_up_side", (-0.02, -0.012)),
                ("lip_low_side", (-0.025, -0.01)),
                ("cheek", (0.0, -0.012)),
            ),
            (("nasolabial", 0.25),),
        ),
        ActionUnit(
            17,
            "chin raiser",
            (
                ("lip_low_out", (0.0, -0.022)),
                ("lip_low_in", (0.0, -0.008)),
                ("lip_low_side", (0.0, -0.012)),
                ("mouth", (0.0, 0.008)),
                ("chin", (0.0, -0.025)),
            ),
            (("chin_boss", 0.2),),
        ),
        ActionUnit(15, "lip corner depressor", (("mouth", (0.012, 0.055)), ("lip_low_side", (0.0, 0.018)))),
        ActionUnit(
            16,
            "lower lip depressor",
            (("lip_low_in", (0.0, 0.045)), ("lip_low_out", (0.0, 0.035)), ("lip_low_side", (0.0, 0.035))),
        ),
        ActionUnit(
            20,
            "lip stretcher",
            (("mouth", (-0.05, 0.02)), ("lip_up_side", (-0.02, 0.003)), ("lip_low_side", (-0.02, 0.01))),
        ),
        ActionUnit(
            23,
            "lip tightener",
            (
                ("mouth", (0.02, 0.0)),
                ("lip_up_out", (0.0, 0.008)),
                ("lip_low_out", (0.0, -0.012)),
                ("lip_up_side", (0.01, 0.006)),
                ("lip_low_side", (0.01, -0.008)),
            ),
        ),
        ActionUnit(
            25,
            "lips part",
            (("lip_low_in", (0.0, 0.04)), ("lip_low_out", (0.0, 0.03)), ("lip_low_side", (0.0, 0.028))),
        ),
        ActionUnit(
            26,
            "jaw drop",
            (
                ("lip_low_in", (0.0, 0.14)),
                ("lip_low_out", (0.0, 0.13)),
                ("lip_low_side", (0.0, 0.11)),
                ("lip_up_in", (0.0, -0.01)),
                ("chin", (0.0, 0.11)),
                ("jaw", (0.0, 0.05)),
                ("mouth", (0.025, 0.035)),
            ),
        ),
    )
}


@dataclass(frozen=True)
class Prototype:
    """An emotion's AUs (relative weights) and how often its open mouth shows teeth."""

    aus: Mapping[int, float]
    teeth: float = 0.0  # probability that teeth show where the lips part
    optional: Mapping[int, float] = field(default_factory=dict)  # AU -> probability it joins


# EMFACS prototypes (the list; optional AUs are common variants in posed sets).
EMOTION_PROTOTYPES: dict[str, Prototype] = {
    "happy": Prototype({6: 1.0, 12: 1.0}, teeth=0.85, optional={25: 0.75}),
    "sad": Prototype({1: 1.0, 4: 0.6, 15: 1.0}),
    "neutral": Prototype({}),
    # Anger: brows down and together, a glare, lips pressed thin (AU23), often the chin pushed up.
    "angry": Prototype({4: 1.3, 5: 0.6, 7: 1.0, 23: 1.3}, optional={17: 0.6}),
    "surprise": Prototype({1: 1.0, 2: 1.0, 5: 1.0, 26: 1.0}, teeth=0.3),
    # Disgust as CK+ poses it: the nose wrinkled and the upper lip raised, brows lowered, lids
    # narrowed, the chin pushed up (AU17) or the lips parted over the upper teeth.
    "disgust": Prototype({9: 1.3, 10: 1.0, 4: 0.7, 7: 0.7}, teeth=0.7, optional={15: 0.4, 25: 0.4, 6: 0.3}),
    # Fear: brows up and drawn together, eyes wide, lips stretched sideways and parted over
    # the teeth (a wide, shallow mouth, not surprise's round one).
    "fear": Prototype({1: 1.0, 2: 0.7, 4: 0.8, 5: 1.2, 20: 1.4, 25: 1.0}, teeth=0.8, optional={26: 0.3, 7: 0.3}),
}


def expression_landmarks(
    aus: Mapping[int, float], landmarks: Mapping[str, tuple[float, float]] = LANDMARKS
) -> dict[str, np.ndarray]:
    """Where each landmark goes (fractions of the face square) under AU intensities ``aus``."""
    moved = {name: np.array(point, np.float64) for name, point in landmarks.items()}
    for number, weight in aus.items():
        if weight == 0:
            continue
        for point, (dx, dy) in ACTION_UNITS[number].moves:
            if point in moved:  # a midline point
                moved[point] += (0.0, dy * weight)
            else:
                moved[f"{point}_l"] += (dx * weight, dy * weight)
                moved[f"{point}_r"] += (-dx * weight, dy * weight)
    return moved


def _border_anchors(count: int = 11) -> np.ndarray:
    ticks = np.linspace(0.0, 1.0, count)
    edge = [(t, 0.0) for t in ticks] + [(t, 1.0) for t in ticks] + [(0.0, t) for t in ticks[1:-1]]
    return np.array(edge + [(1.0, t) for t in ticks[1:-1]])


_ANCHORS = _border_anchors()


def _outer(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise outer products of two (N, 2) arrays: (N, 2, 2)."""
    return x[:, :, None] * y[:, None, :]


def warp_field(source: np.ndarray, target: np.ndarray, size: int, *, step: int = 4) -> np.ndarray:
    """Backward map (size, size, 2) of an affine moving-least-squares warp, in pixels.

    The warp takes each ``source`` point (N, 2 fractions) to its ``target``; the field gives,
    for every output pixel, the offset to the pixel of the original image it shows (for
    ``cv2.remap``). The border is held still. The field is smooth, so it is solved on a grid
    ``step`` pixels apart and interpolated (16x less work at step 4; step 1 solves every pixel).
    """
    # Output pixels are deformed positions: interpolate the map target -> source.
    ctrl_from = np.concatenate([target, _ANCHORS]) * size
    ctrl_to = np.concatenate([source, _ANCHORS]) * size
    coarse = max(2, size // step)
    # The pixel positions cv2.resize maps the coarse cells' centres to.
    ticks = (np.arange(coarse) + 0.5) * size / coarse - 0.5
    grid = np.stack(np.meshgrid(ticks, ticks), -1).reshape(-1, 2).astype(np.float64)
    # Squared distances (P, N) as dx*dx + dy*dy: the same sums as ``(d ** 2).sum(-1)``, whose
    # reduction over a length-2 axis took two thirds of this function.
    dx = ctrl_from[None, :, 0] - grid[:, None, 0]
    dy = ctrl_from[None, :, 1] - grid[:, None, 1]
    weights = 1.0 / (dx * dx + dy * dy + 1e-3)  # alpha = 1
    total = weights.sum(1, keepdims=True)
    p_star = weights @ ctrl_from / total
    q_star = weights @ ctrl_to / total
    # sum_n w (p - p*)(x - x*)^T = sum_n w p x^T - W p* x*^T: the moments as one matrix product
    # over the control points' outer products (3x faster than summing per grid point)
    moments = weights @ np.concatenate([_outer(ctrl_from, ctrl_from), _outer(ctrl_from, ctrl_to)], 1).reshape(-1, 8)
    a = moments[:, :4].reshape(-1, 2, 2) - total[..., None] * _outer(p_star, p_star)
    b = moments[:, 4:].reshape(-1, 2, 2) - total[..., None] * _outer(p_star, q_star)
    mapped = ((grid - p_star)[:, None] @ np.linalg.solve(a, b))[:, 0] + q_star
    field = (mapped - grid).reshape(coarse, coarse, 2).astype(np.float32)
    return field if coarse == size else cv2.resize(field, (size, size), interpolation=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class ClipPlan:
    """Everything random about one clip, drawn once (so a clip renders the same every time)."""

    aus: dict[int, float]  # AU -> intensity at the apex
    teeth: tuple[bool, bool]  # upper, lower teeth visible where the lips part
    intensity: np.ndarray  # (T,) expression intensity per frame in [0, 1]
    apex: int  # frame of highest intensity
    pose: np.ndarray  # (T, 4) angle (deg), log-scale, dx, dy (face widths)
    yaw: float  # horizontal squeeze/stretch of one side, a cheap stand-in for turning
    flip: bool
    tint: tuple[float, float, float] | None  # BGR skin tint, None = greyscale
    gain: float
    gamma: float
    light: tuple[float, float]  # linear lighting gradient (x, y), fraction of brightness
    blur: float  # Gaussian sigma, fraction of the face
    low_res: int | None  # side the frame is shrunk to and back, or None
    occluder: tuple[float, float, float, float, float] | None  # cx, cy, rx, ry, grey level
    noise: float
    interior: float  # darkness of the mouth interior relative to the skin
    noise_seed: int  # sensor noise, drawn frame by frame from this seed


def _profile(length: int, rng: np.random.Generator) -> np.ndarray:
    """Onset -> apex -> (partial) offset, or a held apex, as posed and in-the-wild clips show."""
    tau = np.linspace(0.0, 1.0, length)

    def ramp(start: float, duration: float) -> np.ndarray:
        s = np.clip((tau - start) / duration, 0.0, 1.0)
        return s * s * (3 - 2 * s)

    kind = rng.choice(["rise", "apex", "pulse", "fall"], p=[0.4, 0.25, 0.2, 0.15])
    if kind == "apex":
        return np.clip(1.0 - np.abs(rng.normal(0, 0.04, length)), 0, 1)
    if kind == "rise":
        return ramp(rng.uniform(0.0, 0.3), rng.uniform(0.15, 0.35))
    if kind == "fall":
        floor = rng.uniform(0.2, 0.5)
        return 1.0 - (1.0 - floor) * ramp(rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.35))
    start, up = rng.uniform(0.0, 0.2), rng.uniform(0.15, 0.25)
    floor = rng.uniform(0.3, 0.6)
    return ramp(start, up) * (1.0 - (1.0 - floor) * ramp(start + up + rng.uniform(0.15, 0.3), up))


def _skin_tint(rng: np.random.Generator) -> tuple[float, float, float]:
    """A BGR gain that turns a grey photo into a plausible skin tone (red > green > blue)."""
    green = rng.uniform(0.78, 0.93)
    return (green * rng.uniform(0.78, 0.92), green, 1.0)


def plan_clip(emotion: str, length: int, rng: np.random.Generator) -> ClipPlan:
    """Draw the AUs, timing and nuisances of one clip of ``emotion`` (a key of EMOTION_PROTOTYPES)."""
    prototype = EMOTION_PROTOTYPES[emotion]
    strength = rng.uniform(0.8, 1.4)  # posed sets (CK+) show strong apexes
    aus = {au: weight * strength * rng.uniform(0.75, 1.2) for au, weight in prototype.aus.items()}
    for au, chance in prototype.optional.items():
        if au in ACTION_UNITS and rng.random() < chance:
            aus[au] = strength * rng.uniform(0.5, 1.2)
    if rng.random() < 0.25:  # a faint unrelated AU: faces are never still
        au = int(rng.choice(sorted(ACTION_UNITS)))
        aus[au] = aus.get(au, 0.0) + rng.uniform(0.05, 0.2)
    teeth = prototype.teeth > 0 and rng.random() < prototype.teeth
    intensity = _profile(length, rng) if aus else np.zeros(length)
    knots = max(2, length // 10 + 2)
    path = rng.uniform(-1, 1, (knots, 4)) * (2.0, 0.02, 0.01, 0.01)  # slow head motion around a pose
    # Framing from the runtime's aligned crop (eyes 0.25 of the crop apart, 0.74x these photos)
    # to a tight crop such as CK+48's (about 1.2x).
    base = np.array([rng.normal(0, 6), rng.uniform(math.log(0.72), math.log(1.2)), rng.normal(0, 0.03), rng.normal(0, 0.03)])
    t = np.linspace(0, knots - 1, length)
    pose = base + np.stack([np.interp(t, np.arange(knots), path[:, k]) for k in range(4)], 1)
    grey = rng.random() < 0.5
    return ClipPlan(
        aus=aus,
        teeth=(teeth, teeth and rng.random() < 0.5),
        intensity=intensity,
        apex=int(np.argmax(intensity)) if aus else length // 2,
        pose=pose,
        yaw=float(rng.normal(0, 0.06)),
        flip=bool(rng.random() < 0.5),
        tint=None if grey else _skin_tint(rng),
        gain=float(rng.uniform(0.7, 1.3)),
        gamma=float(np.exp(rng.normal(0, 0.2))),
        light=(float(rng.normal(0, 0.2)), float(rng.normal(0, 0.1))),
        blur=float(rng.uniform(0.0, 0.01)),
        low_res=int(rng.integers(24, 48)) if rng.random() < 0.35 else None,
        occluder=(
            (rng.uniform(0.1, 0.9), rng.uniform(0.55, 1.0), rng.uniform(0.1, 0.25), rng.uniform(0.08, 0.2), rng.uniform(0, 255))
            if rng.random() < 0.05
            else None
        ),
        noise=float(rng.uniform(0.5, 4.0)),
        interior=float(rng.uniform(0.12, 0.3)),
        noise_seed=int(rng.integers(2**31)),
    )


def _curve(a: np.ndarray, mid: np.ndarray, b: np.ndarray, steps: int = 12) -> np.ndarray:
    """Points of the quadratic through a, mid (at t = 0.5) and b."""
    control = 2 * mid - (a + b) / 2
    t = np.linspace(0, 1, steps)[:, None]
    return (1 - t) ** 2 * a + 2 * (1 - t) * t * control + t**2 * b


def _skin_level(face: np.ndarray, size: int) -> float:
    """The face's skin brightness: the median of a cheek-and-nose window no AU darkens much."""
    return float(np.median(face[int(0.45 * size) : int(0.6 * size), int(0.3 * size) : int(0.56 * size)]))


def _draw_mouth(face: np.ndarray, points: Mapping[str, np.ndarray], plan: ClipPlan, size: int) -> np.ndarray:
    """Dark mouth interior (and teeth) where the lips have parted."""
    gap = float(points["lip_low_in"][1] - points["lip_up_in"][1]) - (
        LANDMARKS["lip_low_in"][1] - LANDMARKS["lip_up_in"][1]
    )
    if gap < 0.008:
        return face
    left, right = points["mouth_l"], points["mouth_r"]
    upper = _curve(left, points["lip_up_in"], right)
    lower = _curve(right, points["lip_low_in"], left)
    polygon = np.concatenate([upper, lower]) * size
    mask = np.zeros((size, size), np.float32)
    cv2.fillPoly(mask, [np.round(polygon * 4).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=2)
    skin = _skin_level(face, size)
    paint = np.full((size, size), skin * plan.interior, np.float32)
    teeth_level = min(235.0, skin * 1.2 + 15)
    for visible, contour, depth in ((plan.teeth[0], upper, 0.5), (plan.teeth[1], lower[::-1], 0.3)):
        if not visible:
            continue
        # A band along the lip contour, as deep as a share of the opening (teeth are ~1/20 face high).
        inner = contour + np.array([0.0, min(gap * depth, 0.04) * (1 if contour is upper else -1)])
        band = np.concatenate([contour, inner[::-1]]) * size
        teeth = np.zeros((size, size), np.float32)
        cv2.fillPoly(teeth, [np.round(band * 4).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=2)
        paint = paint * (1 - teeth) + teeth_level * teeth
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.5, size * 0.006)) * min(1.0, gap / 0.02)
    return face * (1 - mask) + paint * mask


@dataclass(frozen=True)
class _Features:
    """How one clip's drawn eyes and brows look (drawn from the clip's own seed)."""

    iris: float  # iris darkness relative to the skin
    sclera: float  # white of the eye relative to the skin
    gaze: float  # the irises' shift sideways, face widths
    brow: float  # brow opacity
    brow_width: float  # brow stroke, face widths
    opacity: float  # how much of the drawing covers the photo's own eyes and brows

    @classmethod
    def draw(cls, seed: int) -> _Features:
        # A generator of its own: the plan's draws (and so every other nuisance) stay as they were.
        rng = np.random.default_rng([seed, 1])
        return cls(
            iris=float(rng.uniform(0.15, 0.45)),
            sclera=float(rng.uniform(1.2, 1.5)),
            gaze=float(rng.normal(0, 0.008)),
            brow=float(rng.uniform(0.35, 0.65)),
            brow_width=float(rng.uniform(0.02, 0.035)),
            opacity=float(rng.uniform(0.0, 1.0)),
        )


def _draw_eyes_and_brows(face: np.ndarray, points: Mapping[str, np.ndarray], look: _Features, size: int) -> np.ndarray:
    """Eyes (sclera, iris, upper lid line) between the moved lids, and brows along the moved brow points.

    The LFW photos are 25 px: upscaled, their eyes and brows are smudges, so how wide an eye is
    opened (AU5), narrowed (AU6/7) or how a brow is raised (AU1/2) or knitted (AU4) barely
    shows. Drawn at the points the AUs move, they show it as a real face would. At a random
    opacity per clip (``look.opacity``, 0: the photo's own eyes): drawn fully in every clip,
    the FER2013 teacher read the renders as intended more often (44.7 % against 35.3 %), yet
    models trained on them read real faces worse (zero-shot CK+ 0.612 against 0.638 over nine
    runs, fear 0.17): the drawing itself became a cue. Mixed with the photo they read CK+
    better than without it (docs/training.md).
    """
    skin = _skin_level(face, size)
    sub = 4  # drawing subpixels (shift=2)

    def at(point) -> tuple[int, int]:
        return tuple(int(v) for v in np.round(np.asarray(point) * size * sub))

    def paint(image: np.ndarray, mask: np.ndarray, level: float) -> np.ndarray:
        mask = mask * look.opacity
        return image * (1 - mask) + level * mask

    for side in ("l", "r"):
        inner, outer = points[f"eye_in_{side}"], points[f"eye_out_{side}"]
        upper, lower = points[f"lid_up_{side}"], points[f"lid_low_{side}"]
        centre = ((inner[0] + outer[0]) / 2, (upper[1] + lower[1]) / 2)
        axes = (int(abs(outer[0] - inner[0]) / 2 * size * sub), int(max(0.003, (lower[1] - upper[1]) / 2) * size * sub))
        opening = np.zeros((size, size), np.float32)
        cv2.ellipse(opening, at(centre), axes, 0, 0, 360, 1.0, -1, cv2.LINE_AA, shift=2)
        # The iris sits where the eye's corners are: a raised upper lid uncovers sclera above it.
        iris = np.zeros((size, size), np.float32)
        cv2.circle(iris, at((centre[0] + look.gaze, (inner[1] + outer[1]) / 2)), int(0.032 * size * sub), 1.0, -1, cv2.LINE_AA, shift=2)
        iris *= opening
        face = paint(face, opening - iris, min(235.0, skin * look.sclera + 15))
        face = paint(face, iris, skin * look.iris)
        lid = np.zeros((size, size), np.float32)
        cv2.ellipse(lid, at(centre), axes, 0, 180, 360, 0.6, max(1, size // 48), cv2.LINE_AA, shift=2)
        face = paint(face, lid, skin * 0.2)
        brow = np.array([points[f"brow_in_{side}"], points[f"brow_mid_{side}"], points[f"brow_out_{side}"]])
        stroke = np.zeros((size, size), np.float32)
        cv2.polylines(stroke, [np.round(brow * size * sub).astype(np.int32)], False, 1.0,
                      max(1, round(look.brow_width * size)), cv2.LINE_AA, shift=2)  # fmt: skip
        face = paint(face, cv2.GaussianBlur(stroke, (0, 0), max(0.5, size * 0.008)) * look.brow, skin * 0.3)
    return face


def _draw_creases(face: np.ndarray, points: Mapping[str, np.ndarray], aus: Mapping[int, float], size: int) -> np.ndarray:
    """Creases AUs make (darker lines) and the sclera AU5 shows (brighter), softly blurred."""
    shade = np.zeros((size, size), np.float32)
    depth: dict[str, float] = {}
    for number, weight in aus.items():
        for kind, amount in ACTION_UNITS[number].creases:
            depth[kind] = min(0.3, depth.get(kind, 0.0) + amount * weight)  # creases saturate

    def line(a, b, value: float) -> None:
        pa, pb = (np.round(np.asarray(a) * size * 4).astype(int) for a in (a, b))
        cv2.line(shade, tuple(map(int, pa)), tuple(map(int, pb)), value, max(1, size // 96), cv2.LINE_AA, shift=2)

    for side, sign in (("l", -1), ("r", 1)):
        wing, corner = points[f"nose_wing_{side}"], points[f"mouth_{side}"]
        if depth.get("nasolabial"):
            a = wing + (sign * 0.03, 0.0)
            b = corner + (sign * 0.03, 0.015)
            for u0, u1 in ((0, 0.5), (0.5, 1)):  # a slight outward bow
                mid = lambda u: a + (b - a) * u + (sign * 0.012 * math.sin(math.pi * u), 0.0)  # noqa: E731
                line(mid(u0), mid(u1), -depth["nasolabial"])
        if depth.get("crows_feet"):
            eye = points[f"eye_out_{side}"]
            for dy in (-0.02, 0.0, 0.02):
                line(eye + (sign * 0.02, dy / 2), eye + (sign * 0.06, dy), -depth["crows_feet"])
        if depth.get("sclera"):
            up, low = points[f"lid_up_{side}"], points[f"lid_low_{side}"]
            centre = tuple(int(v) for v in np.round(((up + low) / 2) * size * 4))
            axes = (int(size * 4 * 0.045), int(max(1, (low[1] - up[1]) * size * 4 * 0.45)))
            cv2.ellipse(shade, centre, axes, 0, 0, 360, depth["sclera"], -1, cv2.LINE_AA, shift=2)
    if depth.get("glabella"):
        top = (points["brow_in_l"][1] + points["brow_in_r"][1]) / 2
        for dx in (-0.025, 0.025):
            line((MIDLINE_X + dx, top - 0.01), (MIDLINE_X + dx * 0.6, top + 0.06), -depth["glabella"])
    if depth.get("forehead"):
        top = min(points["brow_mid_l"][1], points["brow_mid_r"][1])
        for dy in (0.05, 0.09):
            line((MIDLINE_X - 0.18, top - dy), (MIDLINE_X + 0.18, top - dy), -depth["forehead"])
    if depth.get("nose_wrinkle"):
        for y, half in ((0.41, 0.035), (0.44, 0.045), (0.47, 0.05)):  # across the bridge, below the eyes
            line((MIDLINE_X - half, y), (MIDLINE_X + half, y + 0.005), -depth["nose_wrinkle"])
    if depth.get("chin_boss"):  # the raised chin's dimpled bulge: a shadow under the lower lip
        lip = points["lip_low_out"]
        line(lip + (-0.06, 0.035), lip + (0.06, 0.035), -depth["chin_boss"])
    if not shade.any():
        return face
    shade = cv2.GaussianBlur(shade, (0, 0), max(0.6, size * 0.008))
    return np.clip(face * (1.0 + shade), 0, 255)


def _source_points() -> np.ndarray:
    return np.array(list(LANDMARKS.values()))


@functools.lru_cache(maxsize=16)
def _apex_field(aus: tuple[tuple[int, float], ...], size: int) -> np.ndarray:
    """The warp field of an expression at its apex (read-only), kept for the next clips: with
    teacher picks the chosen candidate's field is solved once, not again for its whole clip.
    ``aus`` in the plan's order, which the landmark sums follow."""
    points = expression_landmarks(dict(aus))
    field = warp_field(_source_points(), np.array([points[name] for name in LANDMARKS]), size)
    field.flags.writeable = False
    return field


def render_au_clip(face: np.ndarray, plan: ClipPlan, *, frame_size: int, work_size: int = 96) -> Iterator[np.ndarray]:
    """Yield the frames (frame_size square, uint8 BGR) of one clip of ``face`` (grey, [0, 1])."""
    size = work_size
    base = cv2.resize((face * 255).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    field = _apex_field(tuple(plan.aus.items()), size)
    grid_y, grid_x = np.mgrid[0:size, 0:size].astype(np.float32)
    yy, xx = grid_y / size - 0.5, grid_x / size - 0.5
    light = 1.0 + plan.light[0] * xx * 2 + plan.light[1] * yy * 2
    noise = np.random.default_rng(plan.noise_seed)
    look = _Features.draw(plan.noise_seed)
    for t, level in enumerate(plan.intensity):
        level = float(level)
        frame = cv2.remap(
            base, grid_x + field[..., 0] * level, grid_y + field[..., 1] * level, cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT101,
        )
        scaled = {au: weight * level for au, weight in plan.aus.items()}
        points = expression_landmarks(scaled)
        frame = _draw_eyes_and_brows(frame, points, look, size)
        frame = _draw_creases(frame, points, scaled, size)
        frame = _draw_mouth(frame, points, plan, size)
        # Lighting and camera response, then colour.
        frame = np.clip(frame * light * plan.gain, 0, 255)
        frame = 255.0 * (frame / 255.0) ** plan.gamma
        angle, log_scale, dx, dy = plan.pose[t]
        matrix = cv2.getRotationMatrix2D((size * MIDLINE_X, size * 0.5), float(angle), math.exp(log_scale))
        matrix[0, :2] *= 1.0 + plan.yaw
        matrix[:, 2] += (dx * size + (0.5 - MIDLINE_X) * size, dy * size)
        # Where a zoomed-out face leaves the photo: its edges replicated and blurred into a plain
        # surround (a mirrored border would show a second face, a replicated one streaks).
        inside = cv2.warpAffine(np.ones_like(frame), matrix, (size, size), flags=cv2.INTER_LINEAR)
        frame = cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if inside.min() < 1:
            frame = frame * inside + cv2.GaussianBlur(frame, (0, 0), size * 0.08) * (1 - inside)
        if plan.occluder is not None:
            cx, cy, rx, ry, level_grey = plan.occluder
            cv2.ellipse(frame, (int(cx * size), int(cy * size)), (int(rx * size), int(ry * size)), 0, 0, 360, level_grey, -1)
        if plan.blur > 0.002:
            frame = cv2.GaussianBlur(frame, (0, 0), plan.blur * size)
        if plan.flip:
            frame = frame[:, ::-1]
        frame = cv2.resize(frame, (frame_size, frame_size), interpolation=cv2.INTER_AREA)
        if plan.low_res is not None and plan.low_res < frame_size:
            small = cv2.resize(frame, (plan.low_res, plan.low_res), interpolation=cv2.INTER_AREA)
            frame = cv2.resize(small, (frame_size, frame_size), interpolation=cv2.INTER_LINEAR)
        colour = np.repeat(frame[..., None], 3, -1) if plan.tint is None else frame[..., None] * np.array(plan.tint)
        yield np.clip(colour + noise.normal(0, plan.noise, colour.shape), 0, 255).astype(np.uint8)


def pick_expression(
    face: np.ndarray,
    plan: ClipPlan,
    alternatives: list[ClipPlan],
    read: Callable[[np.ndarray], np.ndarray],
    label: int,
    *,
    frame_size: int,
) -> tuple[ClipPlan, np.ndarray]:
    """``plan`` with the expression (AUs, teeth) that ``read`` finds most like class ``label``.

    The candidates are ``plan``'s own expression and each alternative's, all rendered at the
    apex on ``face`` with ``plan``'s timing and nuisances (pose, lighting, blur, ...), so only
    the expression is chosen: choosing the nuisances too picks the views a noisy judge happens
    to read right (docs/training.md). ``read`` maps uint8 frames (K, S, S, 3) to class
    probabilities (K, C).

    Returns:
        The chosen plan and the candidates' probabilities (K, C), ``plan``'s first.
    """
    candidates = [plan] + [replace(plan, aus=other.aus, teeth=other.teeth) for other in alternatives]
    apex = slice(plan.apex, plan.apex + 1)
    at_apex = [replace(c, intensity=plan.intensity[apex], pose=plan.pose[apex]) for c in candidates]
    frames = [next(render_au_clip(face, c, frame_size=frame_size)) for c in at_apex]
    probabilities = np.asarray(read(np.stack(frames)))
    return candidates[int(np.argmax(probabilities[:, label]))], probabilities
