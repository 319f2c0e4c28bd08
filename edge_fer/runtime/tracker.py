"""Face tracks with stable IDs: detection every N frames, optical-flow following in between.

On a detection frame, detections are matched to tracks greedily by IoU (highest first);
unmatched detections open new tracks (up to ``max_faces``, highest scores first) and
unmatched tracks start missing. Between detections each visible track follows its face
with pyramidal Lucas-Kanade flow on a few points (5 landmarks + a grid inside the box):
a similarity transform fitted to the points that tracked well moves box and landmarks.
That costs well under a millisecond per face, so the detector does not have to run on
every frame. A track that misses more than ``max_missed`` frames is closed; until then
it keeps its ID, so a face that is lost for a moment comes back under the same one.

Small and dependency-free on purpose: SORT/ByteTrack-style association is all a handful
of faces needs, and the flow step gives landmarks, which box trackers do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_fer.runtime.detection import Detections

__all__ = ["Track", "FaceTracker", "iou_matrix"]


@dataclass
class Track:
    """One face followed through the video.

    Attributes:
        id: stable identifier (never reused in a run).
        box: (4,) x1, y1, x2, y2 in frame pixels.
        landmarks: (5, 2) in frame pixels.
        score: detector confidence at the last match.
        visible: the face was found on this frame (detected or followed); False while missing.
        missed: frames since the face was last seen.
        first_frame, last_seen: frame indices.
    """

    id: int
    box: np.ndarray
    landmarks: np.ndarray
    score: float
    first_frame: int
    last_seen: int
    visible: bool = True
    missed: int = 0
    points: np.ndarray | None = field(default=None, repr=False)  # flow points, (K, 1, 2) float32


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4) -> (N, M)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9)


_LK = dict(winSize=(15, 15), maxLevel=2, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.03))
# Room around the followed points: the window at the coarsest level (7 px there, 28 here), the
# pyramid's border rows, and the motion of one frame, with margin to spare.
_FLOW_MARGIN = 64


class FaceTracker:
    """Stable face IDs across frames.

    Args:
        max_faces: at most this many tracks at once (the most confident faces win).
        max_missed: frames a track survives without being seen (>= 10 keeps IDs through
            short occlusions and detector misses).
        iou_threshold: minimum IoU for a detection to continue a track.
        min_face: faces smaller than this (box side, pixels) are ignored.
    """

    def __init__(
        self, *, max_faces: int = 8, max_missed: int = 30, iou_threshold: float = 0.3, min_face: int = 24
    ) -> None:
        if max_faces < 1:
            raise ValueError("max_faces must be at least 1")
        self.max_faces = max_faces
        self.max_missed = max_missed
        self.iou_threshold = iou_threshold
        self.min_face = min_face
        self.tracks: list[Track] = []
        self.closed: list[Track] = []  # closed since the last call; the caller drains it
        self.capped = 0  # faces dropped by max_faces so far
        self._next_id = 1
        self._prev_gray: np.ndarray | None = None

    def update(self, frame_index: int, gray: np.ndarray, detections: Detections | None) -> list[Track]:
        """Advance to a new frame; ``detections`` None on frames where the detector did not run.

        Returns the visible tracks of this frame.
        """
        height, width = gray.shape[:2]
        if self._prev_gray is not None:
            self._follow(gray)
        if detections is not None:
            self._associate(frame_index, gray, detections)
        for track in self.tracks:
            if track.visible and not _inside(track.box, width, height):
                track.visible = False  # mostly out of the frame: not a face we can classify
            if track.visible:
                track.last_seen = frame_index
                track.missed = 0
            else:
                track.missed = frame_index - track.last_seen
        for track in [t for t in self.tracks if t.missed > self.max_missed]:
            self.tracks.remove(track)
            self.closed.append(track)
        self._prev_gray = gray
        return [t for t in self.tracks if t.visible]

    def reset(self) -> None:
        """Forget every track (a new video or a camera cut); the next IDs continue upwards, so
        an ID is never reused within one tracker."""
        self.tracks, self.closed, self._prev_gray = [], [], None

    def drain_closed(self) -> list[Track]:
        closed, self.closed = self.closed, []
        return closed

    def _follow(self, gray: np.ndarray) -> None:
        followed = [t for t in self.tracks if t.visible and t.points is not None]
        if not followed:
            return
        points = np.concatenate([t.points for t in followed])
        # Flow on the region around the faces, not the whole frame: LK builds pyramids and
        # derivatives of every pixel it is given (one face in 640x360: half the time, measured).
        x0, y0, x1, y1 = _flow_region(points, gray.shape)
        shift = np.float32([x0, y0])
        before, after = self._prev_gray[y0:y1, x0:x1], gray[y0:y1, x0:x1]
        moved, status, _ = cv2.calcOpticalFlowPyrLK(before, after, points - shift, None, **_LK)
        moved += shift
        # Wrong points are left to the RANSAC fit below. A forward-backward check (LK back again,
        # points that do not return dropped) found no more faces, no better boxes and no fewer id
        # switches on rendered and real-photo videos, at twice the flow's cost: each LK call is
        # mostly building its two pyramids (docs/benchmarks.md).
        good = status[:, 0] == 1
        start = 0
        for track in followed:
            n = len(track.points)
            ok = good[start : start + n]
            src, dst = track.points[ok][:, 0], moved[start : start + n][ok][:, 0]
            start += n
            matrix = None
            if len(src) >= 6:
                matrix, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=2.0)
                if matrix is not None and int(inliers.sum()) < 6:
                    matrix = None
            if matrix is None:
                track.visible = False  # lost: wait for the detector
                track.points = None
                continue
            track.landmarks = _apply(matrix, track.landmarks)
            track.box = _transform_box(matrix, track.box)
            track.points = moved[start - n : start][ok][np.asarray(inliers[:, 0], bool)].reshape(-1, 1, 2)
            if len(track.points) < 10:  # points die off at occlusions and edges: sow new ones
                track.points = _flow_points(gray, track.box, track.landmarks)

    def _associate(self, frame_index: int, gray: np.ndarray, detections: Detections) -> None:
        sides = detections.boxes[:, 2:] - detections.boxes[:, :2]
        sizes = sides.min(axis=1) if len(sides) else np.zeros(0)
        keep = np.flatnonzero(sizes >= self.min_face)
        boxes, scores, marks = detections.boxes[keep], detections.scores[keep], detections.landmarks[keep]
        iou = iou_matrix(np.array([t.box for t in self.tracks]).reshape(-1, 4), boxes)
        matched_tracks, matched_dets = set(), set()
        pairs = []
        for flat in np.argsort(-iou, axis=None, kind="stable"):
            ti, di = divmod(int(flat), len(boxes))
            if iou[ti, di] < self.iou_threshold:
                break
            if ti not in matched_tracks and di not in matched_dets:
                pairs.append((ti, di))
                matched_tracks.add(ti)
                matched_dets.add(di)
        # Second pass for what IoU left over: a fast move between two detection frames can leave
        # no overlap, so accept a nearby detection of similar size (centre within 0.6 face sizes).
        for ti, di in _near_pairs(self.tracks, boxes, matched_tracks, matched_dets):
            pairs.append((ti, di))
            matched_tracks.add(ti)
            matched_dets.add(di)
        for ti, di in pairs:
            track = self.tracks[ti]
            track.box, track.landmarks, track.score = boxes[di].copy(), marks[di].copy(), float(scores[di])
            track.visible = True
            track.points = _flow_points(gray, track.box, track.landmarks)
        for ti, track in enumerate(self.tracks):
            if ti not in matched_tracks:
                track.visible = False  # the detector did not see it: stop following
                track.points = None
        new = [di for di in np.argsort(-scores, kind="stable") if int(di) not in matched_dets]
        for di in new:
            if len(self.tracks) >= self.max_faces:
                self.capped += 1
                continue
            track = Track(
                id=self._next_id,
                box=boxes[di].copy(),
                landmarks=marks[di].copy(),
                score=float(scores[di]),
                first_frame=frame_index,
                last_seen=frame_index,
            )
            track.points = _flow_points(gray, track.box, track.landmarks)
            self._next_id += 1
            self.tracks.append(track)


def _near_pairs(tracks: list[Track], boxes: np.ndarray, used_tracks: set, used_dets: set) -> list[tuple[int, int]]:
    candidates = []
    for ti, track in enumerate(tracks):
        if ti in used_tracks:
            continue
        size = float(np.mean(track.box[2:] - track.box[:2]))
        for di, box in enumerate(boxes):
            if di in used_dets:
                continue
            ratio = float(np.mean(box[2:] - box[:2])) / max(size, 1e-6)
            distance = float(np.linalg.norm((box[:2] + box[2:]) / 2 - (track.box[:2] + track.box[2:]) / 2)) / size
            if distance < 0.6 and 0.6 < ratio < 1.67:
                candidates.append((distance, ti, di))
    pairs, seen_t, seen_d = [], set(), set()
    for _, ti, di in sorted(candidates):
        if ti not in seen_t and di not in seen_d:
            pairs.append((ti, di))
            seen_t.add(ti)
            seen_d.add(di)
    return pairs


def _inside(box: np.ndarray, width: int, height: int) -> bool:
    """At least half the box lies inside the frame."""
    w, h = box[2] - box[0], box[3] - box[1]
    if w <= 0 or h <= 0:
        return False
    visible_w = min(box[2], width) - max(box[0], 0)
    visible_h = min(box[3], height) - max(box[1], 0)
    return visible_w >= 0.5 * w and visible_h >= 0.5 * h


def _flow_region(points: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 of the part of the frame LK needs for these points: their bounds widened
    by _FLOW_MARGIN, the corner on the pyramid's grid (a multiple of 2**maxLevel), so every
    pyramid level samples the same pixels as on the whole frame: the flow is the whole frame's
    but for the region's borders (measured: within 0.06 px on rendered face videos)."""
    height, width = shape[:2]
    step = 2 ** _LK["maxLevel"]
    low = np.floor(points.reshape(-1, 2).min(axis=0)) - _FLOW_MARGIN
    high = np.ceil(points.reshape(-1, 2).max(axis=0)) + _FLOW_MARGIN
    x0, y0 = (max(0, int(v) // step * step) for v in low)
    x1, y1 = min(width, int(high[0])), min(height, int(high[1]))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def _flow_points(gray: np.ndarray, box: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Points to follow: the landmarks and a 4x4 grid over the inner face."""
    x1, y1, x2, y2 = box
    xs = np.linspace(x1 + 0.2 * (x2 - x1), x2 - 0.2 * (x2 - x1), 4)
    ys = np.linspace(y1 + 0.2 * (y2 - y1), y2 - 0.2 * (y2 - y1), 4)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    return np.concatenate([landmarks, grid]).astype(np.float32).reshape(-1, 1, 2)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def _transform_box(matrix: np.ndarray, box: np.ndarray) -> np.ndarray:
    centre = _apply(matrix, ((box[:2] + box[2:]) / 2)[None])[0]
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    half = (box[2:] - box[:2]) / 2 * scale
    return np.concatenate([centre - half, centre + half]).astype(np.float32)
