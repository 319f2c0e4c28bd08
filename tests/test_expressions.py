"""The action-unit renderer: each AU moves its landmarks the way FACS says, and clips are reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from edge_fer.data.expressions import (
    ACTION_UNITS,
    EMOTION_PROTOTYPES,
    LANDMARKS,
    MIDLINE_X,
    _Features,
    expression_landmarks,
    plan_clip,
    render_au_clip,
    warp_field,
)

pytest.importorskip("skimage")

# (AU, point, expected sign of dx for the image-left point (0: no horizontal rule), sign of dy).
# Image y grows downwards: "up" is a negative dy. "Inward" for the left side is +dx.
EXPECTED_MOTION = [
    (1, "brow_in", 0, -1),  # inner brow raiser: inner brows up
    (2, "brow_out", 0, -1),  # outer brow raiser: outer brows up
    (4, "brow_in", +1, +1),  # brow lowerer: brows down and together
    (5, "lid_up", 0, -1),  # upper lid raiser
    (6, "cheek", 0, -1),  # cheek raiser
    (6, "lid_low", 0, -1),  # ... pushes the lower lid up
    (7, "lid_low", 0, -1),  # lid tightener: lower lid up
    (9, "nose_wing", 0, -1),  # nose wrinkler lifts the nostrils
    (12, "mouth", -1, -1),  # lip corner puller: corners out and up
    (15, "mouth", 0, +1),  # lip corner depressor: corners down
    (16, "lip_low_in", 0, +1),  # lower lip depressor
    (17, "lip_low_out", 0, -1),  # chin raiser pushes the lower lip up ...
    (17, "chin", 0, -1),  # ... with the chin
    (20, "mouth", -1, 0),  # lip stretcher: corners out
    (23, "mouth", +1, 0),  # lip tightener: corners in
    (25, "lip_low_in", 0, +1),  # lips part
    (26, "lip_low_in", 0, +1),  # jaw drop opens the mouth ...
    (26, "chin", 0, +1),  # ... and lowers the chin
]


def _sides(point: str) -> list[tuple[str, int]]:
    """The landmark names of ``point`` with the sign that mirrors dx (+1 left, -1 right)."""
    return [(point, 1)] if point in LANDMARKS else [(f"{point}_l", 1), (f"{point}_r", -1)]


@pytest.mark.parametrize(("au", "point", "sign_x", "sign_y"), EXPECTED_MOTION)
def test_each_action_unit_moves_its_landmarks_the_way_facs_describes(au, point, sign_x, sign_y):
    moved = expression_landmarks({au: 1.0})
    for name, mirror in _sides(point):
        dx, dy = moved[name] - np.array(LANDMARKS[name])
        if sign_y:
            assert np.sign(dy) == sign_y, f"AU{au} moves {name} vertically by {dy:+.3f}"
        if sign_x:
            assert np.sign(dx) == sign_x * mirror, f"AU{au} moves {name} horizontally by {dx:+.3f}"
    # Points no AU of this kind touches stay where they are (identity is kept).
    assert np.allclose(moved["forehead"], LANDMARKS["forehead"])
    assert np.allclose(moved["nose_bridge"], LANDMARKS["nose_bridge"])


def test_landmark_motion_scales_with_intensity_and_is_mirror_symmetric():
    half = expression_landmarks({12: 0.5})
    full = expression_landmarks({12: 1.0})
    for name in ("mouth_l", "mouth_r"):
        start = np.array(LANDMARKS[name])
        assert np.allclose(full[name] - start, 2 * (half[name] - start))
    left = full["mouth_l"] - np.array(LANDMARKS["mouth_l"])
    right = full["mouth_r"] - np.array(LANDMARKS["mouth_r"])
    assert np.allclose(left * (-1, 1), right)


def test_every_prototype_uses_defined_action_units():
    for emotion, prototype in EMOTION_PROTOTYPES.items():
        assert set(prototype.aus) | set(prototype.optional) <= set(ACTION_UNITS), emotion
    assert EMOTION_PROTOTYPES["neutral"].aus == {}
    assert set(EMOTION_PROTOTYPES["happy"].aus) == {6, 12}
    assert {1, 2, 5, 26} <= set(EMOTION_PROTOTYPES["surprise"].aus)


def test_warp_carries_image_content_with_the_landmarks():
    """A dot at the left mouth corner is found where AU12 moves the corner."""
    size = 96
    source = np.array(list(LANDMARKS.values()))
    target_points = expression_landmarks({12: 1.0})
    target = np.array([target_points[name] for name in LANDMARKS])
    field = warp_field(source, target, size)
    corner = np.array(LANDMARKS["mouth_l"]) * size
    moved_corner = target_points["mouth_l"] * size
    x, y = np.round(moved_corner).astype(int)
    # The output pixel at the moved corner shows the original corner (within a pixel).
    assert np.allclose((x, y) + field[y, x], corner, atol=1.0)
    # The border is held still (exactly at its anchors, within half a pixel between them).
    assert np.abs(field[0]).max() < 0.5 and np.abs(field[:, 0]).max() < 0.5


def _clip(emotion: str, seed: int) -> list[np.ndarray]:
    from edge_fer.data.faces import load_faces

    plan = plan_clip(emotion, 12, np.random.default_rng(seed))
    return list(render_au_clip(load_faces()[3], plan, frame_size=64))


def test_an_expressions_warp_field_is_solved_once_and_reused_unchanged():
    """Teacher picks render a candidate at the apex, then its whole clip: the clip reuses the
    candidate's solved field (read-only), and frames rendered from the cache equal fresh ones."""
    from edge_fer.data.expressions import _apex_field

    _apex_field.cache_clear()
    cold = _clip("fear", 7)
    assert _apex_field.cache_info().misses == 1
    warm = _clip("fear", 7)
    assert _apex_field.cache_info().hits == 1
    assert all(np.array_equal(a, b) for a, b in zip(cold, warm))
    plan = plan_clip("fear", 12, np.random.default_rng(7))
    field = _apex_field(tuple(plan.aus.items()), 96)
    assert not field.flags.writeable


def test_rendering_is_deterministic_from_the_seed():
    first, again, other = _clip("surprise", 5), _clip("surprise", 5), _clip("surprise", 6)
    assert len(first) == 12 and first[0].shape == (64, 64, 3) and first[0].dtype == np.uint8
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_a_jaw_drop_darkens_the_mouth_at_the_apex():
    """Surprise opens the mouth: the mouth region is darker at the apex than at a neutral frame."""
    from edge_fer.data.faces import load_faces

    rng = np.random.default_rng(0)
    plan = plan_clip("surprise", 16, rng)
    # Hold the nuisances still so only the expression changes between the two frames.
    plan = type(plan)(
        **{
            **plan.__dict__,
            "intensity": np.linspace(0, 1, 16),
            "apex": 15,
            "pose": np.zeros((16, 4)),
            "occluder": None,
            "flip": False,
            "low_res": None,
            "noise": 0.0,
            "teeth": (False, False),
        }
    )
    frames = list(render_au_clip(load_faces()[3], plan, frame_size=96))
    mouth = (slice(int(0.68 * 96), int(0.8 * 96)), slice(int(0.36 * 96), int(0.5 * 96)))
    assert frames[-1][mouth].mean() < frames[0][mouth].mean() - 10


def _held_still(plan, aus: dict[int, float], length: int = 16, **changes):
    """``plan`` with only ``aus``, rising from none to full, and every nuisance held still."""
    return type(plan)(
        **{
            **plan.__dict__,
            **changes,
            "aus": aus,
            "intensity": np.linspace(0, 1, length),
            "apex": length - 1,
            "pose": np.zeros((length, 4)),
            "yaw": 0.0,
            "occluder": None,
            "flip": False,
            "low_res": None,
            "blur": 0.0,
            "noise": 0.0,
            "light": (0.0, 0.0),
            "teeth": (False, False),
        }
    )


def _seed_with_opacity(low: float, high: float) -> int:
    """A clip seed whose drawn eyes and brows cover the photo's with opacity in [low, high]."""
    return next(seed for seed in range(1000) if low <= _Features.draw(seed).opacity <= high)


def test_a_raised_upper_lid_bares_the_white_above_the_iris_and_raised_brows_rise():
    """The drawn eyes and brows follow the AUs: AU5 uncovers sclera above the iris (brighter
    there), AU1+2 move the dark brow stroke up; a faint drawing (low opacity) shows less."""
    from edge_fer.data.faces import load_faces

    size = 96
    face = load_faces()[3]
    plan = plan_clip("neutral", 16, np.random.default_rng(0))
    grey = lambda frame: frame.astype(np.float32).mean(-1)  # noqa: E731
    shift = 0.5 - MIDLINE_X  # frames are centred on the face's midline
    x_l = LANDMARKS["lid_up_l"][0] + shift
    y_lid, y_raised = LANDMARKS["lid_up_l"][1], expression_landmarks({5: 1.5})["lid_up_l"][1]
    band = (slice(int(y_raised * size) + 1, int(y_lid * size)), slice(int((x_l - 0.02) * size), int((x_l + 0.02) * size)))

    def whitening(opacity: tuple[float, float]) -> float:
        wide = _held_still(plan, {5: 1.5}, noise_seed=_seed_with_opacity(*opacity))
        frames = [grey(f) for f in render_au_clip(face, wide, frame_size=size)]
        return float(frames[-1][band].mean() - frames[0][band].mean())

    opaque, faint = whitening((0.9, 1.0)), whitening((0.0, 0.1))
    assert opaque > 40 and opaque > faint + 30

    raised = _held_still(plan, {1: 1.5, 2: 1.5}, noise_seed=_seed_with_opacity(0.9, 1.0))
    frames = [grey(f) for f in render_au_clip(face, raised, frame_size=size)]
    x_mid = LANDMARKS["brow_mid_l"][0] + shift
    y_up = expression_landmarks({1: 1.5, 2: 1.5})["brow_mid_l"][1]  # ~0.1 above its rest
    brow_there = (slice(int((y_up - 0.02) * size), int((y_up + 0.02) * size) + 1), slice(int((x_mid - 0.02) * size), int((x_mid + 0.02) * size)))
    assert frames[-1][brow_there].mean() < frames[0][brow_there].mean() - 10  # the dark brow moved up there (21; undrawn: +10)
