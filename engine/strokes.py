"""Stroke geometry (Sec. 4): absolute pen points <-> offsets (dx, dy, eos), and normalisation.

Conventions used everywhere in the project:
- Screen coordinates: x grows right, y grows DOWN.
- A stroke is a float array (n, 2) of absolute points with the pen down.
- Offsets are float32 (T, 3): (dx, dy, eos) where eos = 1 on the last point of a stroke
  (the pen lifts after it). The first offset of a sequence is measured from the origin (0, 0),
  so strokes round-trip exactly when the ink starts at the origin; `offsets_to_strokes`
  takes an `origin` for ink that does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine import EngineError


class InkError(EngineError, ValueError):
    """Ink that cannot be used (empty, non-finite, wrong shape)."""


def strokes_to_offsets(strokes: list[np.ndarray], origin=(0.0, 0.0)) -> np.ndarray:
    """Absolute strokes -> offsets (T, 3). Empty strokes are skipped."""
    parts = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes]
    parts = [p for p in parts if len(p)]
    if not parts:
        raise InkError("the ink has no points")
    points = np.concatenate(parts)
    if not np.isfinite(points).all():
        raise InkError("the ink has non-finite coordinates")
    eos = np.zeros(len(points))
    eos[np.cumsum([len(p) for p in parts]) - 1] = 1.0
    prev = np.vstack([np.asarray(origin, dtype=np.float64)[None], points[:-1]])
    return np.column_stack([points - prev, eos]).astype(np.float32)


def offsets_to_strokes(offsets: np.ndarray, origin=(0.0, 0.0)) -> list[np.ndarray]:
    """Offsets (T, 3) -> list of absolute strokes (n, 2) float64."""
    offsets = np.asarray(offsets, dtype=np.float64)
    if offsets.ndim != 2 or offsets.shape[1] != 3:
        raise InkError(f"offsets must have shape (T, 3), got {offsets.shape}")
    if len(offsets) == 0:
        return []
    points = np.cumsum(offsets[:, :2], axis=0) + np.asarray(origin, dtype=np.float64)
    ends = np.flatnonzero(offsets[:, 2] > 0.5) + 1
    if len(ends) == 0 or ends[-1] != len(points):
        ends = np.append(ends, len(points))
    starts = np.concatenate([[0], ends[:-1]])
    return [points[a:b] for a, b in zip(starts, ends) if b > a]


@dataclass(frozen=True)
class NormStats:
    """Mean and std of (dx, dy) over a training set; eos is left as is (Sec. 4)."""

    mean: tuple[float, float] = (0.0, 0.0)
    std: tuple[float, float] = (1.0, 1.0)

    @classmethod
    def fit(cls, sequences: list[np.ndarray]) -> NormStats:
        xy = np.concatenate([np.asarray(s, dtype=np.float64)[:, :2] for s in sequences])
        std = xy.std(axis=0)
        std[std < 1e-8] = 1.0
        return cls(tuple(map(float, xy.mean(axis=0))), tuple(map(float, std)))

    def normalise(self, offsets: np.ndarray) -> np.ndarray:
        out = np.array(offsets, dtype=np.float32, copy=True)
        out[:, :2] = (out[:, :2] - np.asarray(self.mean, np.float32)) / np.asarray(
            self.std, np.float32
        )
        return out

    def denormalise(self, offsets: np.ndarray) -> np.ndarray:
        out = np.array(offsets, dtype=np.float32, copy=True)
        out[:, :2] = out[:, :2] * np.asarray(self.std, np.float32) + np.asarray(
            self.mean, np.float32
        )
        return out

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> NormStats:
        mean, std = d["mean"], d["std"]
        if len(mean) != 2 or len(std) != 2 or min(std) <= 0:
            raise ValueError("normalisation stats need two means and two positive stds")
        return cls(tuple(map(float, mean)), tuple(map(float, std)))


# -- smooth drawing ---------------------------------------------------------------------------
# Networks may write sparse points (HandwritingConfig.point_step 2.7 is ~9 points per letter); a
# polyline through them shows corners on round letters. Drawing a centripetal Catmull-Rom spline
# through the same points removes them: the curve passes through every point, a straight run
# stays straight, and the centripetal knots (alpha 1/2) never loop or overshoot at sharp turns.


def _segments(p: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Bezier segments of the spline through points p (n, 2) of several strokes at once:
    first/last mark each stroke's first and last point; segments join i -> i+1 where i is not
    a stroke's last point. Returns (segments, 4, 2)."""
    n = len(p)
    i = np.flatnonzero(~last[:-1]) if n > 1 else np.zeros(0, np.int64)
    b, c = p[i], p[i + 1]
    a = np.where(first[i, None], 2 * b - c, p[np.maximum(i - 1, 0)])  # reflected at an end
    e = np.where(last[i + 1, None], 2 * c - b, p[np.minimum(i + 2, n - 1)])
    span = lambda u, v: np.maximum(np.hypot(*(v - u).T) ** 0.5, 1e-9)[:, None]  # noqa: E731
    d0, d1, d2 = span(a, b), span(b, c), span(c, e)  # centripetal knot spans
    m1 = ((b - a) / d0 - (c - a) / (d0 + d1) + (c - b) / d1) * d1  # tangent at P_i
    m2 = ((c - b) / d1 - (e - b) / (d1 + d2) + (e - c) / d2) * d1  # tangent at P_{i+1}
    return np.stack([b, b + m1 / 3, c - m2 / 3, c], axis=1)


def _curve_points(seg: np.ndarray, per_segment: int) -> np.ndarray:
    """(segments, per_segment, 2): each segment's points at t = 0, 1/k, ..., (k-1)/k."""
    t = (np.arange(per_segment) / per_segment)[None, :, None]
    s = 1 - t
    return (
        s**3 * seg[:, None, 0]
        + 3 * s * s * t * seg[:, None, 1]
        + 3 * s * t * t * seg[:, None, 2]
        + t**3 * seg[:, None, 3]
    )


def bezier_segments(stroke: np.ndarray) -> np.ndarray:
    """The centripetal Catmull-Rom spline through a stroke's points as cubic Bezier segments:
    (n-1, 4, 2) = [start, control 1, control 2, end] per segment; (0, 4, 2) for one point."""
    p = np.asarray(stroke, dtype=np.float64).reshape(-1, 2)
    if len(p) < 2:
        return np.zeros((0, 4, 2))
    first, last = np.zeros(len(p), bool), np.zeros(len(p), bool)
    first[0] = last[-1] = True
    return _segments(p, first, last)


def smooth_stroke(stroke: np.ndarray, per_segment: int = 4) -> np.ndarray:
    """The stroke's points with `per_segment - 1` points of its spline added between each pair
    (see bezier_segments); the original points are kept, in place."""
    seg = bezier_segments(stroke)
    if not len(seg) or per_segment <= 1:
        return np.asarray(stroke, dtype=np.float64).reshape(-1, 2).copy()
    return np.vstack([_curve_points(seg, per_segment).reshape(-1, 2), seg[-1, 3]])


def smooth_strokes(strokes, per_segment: int = 4) -> list[np.ndarray]:
    """Each stroke of three or more points through smooth_stroke; shorter ones as they are
    (a dot stays a dot, two points stay a straight line)."""
    return [smooth_stroke(s, per_segment) if len(s) > 2 else s for s in strokes]


def smooth_path(points: np.ndarray, breaks: np.ndarray, per_segment: int = 4):
    """x, y of the spline through many strokes at once, NaN between strokes (for one plotted
    curve): `breaks[i]` True ends a stroke after point i. Vectorised over all strokes, so a
    page of ink is smoothed in a few numpy calls on every redraw."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    n = len(p)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    last = np.asarray(breaks, bool).copy()
    last[-1] = True
    first = np.roll(last, 1)
    seg = _segments(p, first, last)
    k = max(int(per_segment), 1)
    curve = _curve_points(seg, k).reshape(-1, 2) if len(seg) else np.zeros((0, 2))
    # output slots: every segment's k points, then each stroke's last point and a NaN gap
    owner = np.flatnonzero(~last)  # the point each segment starts at
    per_point = np.where(last, 2, k)  # a stroke's last point: itself + NaN; others: k points
    offset = np.concatenate([[0], np.cumsum(per_point)[:-1]])
    out = np.full((int(per_point.sum()), 2), np.nan)
    out[(offset[owner][:, None] + np.arange(k)).reshape(-1)] = curve
    out[offset[last]] = p[last]
    out = out[:-1]  # no gap after the very last stroke
    return out[:, 0], out[:, 1]
