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
