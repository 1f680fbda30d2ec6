"""`Ink`: the one in-memory record of handwriting every importer returns.

Strokes are absolute pen-down points (n, 2) float64 in screen coordinates (x right, y down),
in the units of the source device; `engine.data.preprocess` turns them into training offsets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.data.errors import DataError


def _as_points(stroke, i: int) -> np.ndarray:
    pts = np.asarray(stroke, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
        raise DataError(f"stroke {i} must be a non-empty (n, 2) array, got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise DataError(f"stroke {i} has non-finite coordinates")
    return pts


def _per_stroke(values, strokes, name: str, width: int | None):
    """Validate an optional per-stroke channel (times, pressure: (n,), tilt: (n, 2))."""
    if values is None:
        return None
    if len(values) != len(strokes):
        raise DataError(f"{name} has {len(values)} entries for {len(strokes)} strokes")
    out = []
    for i, (v, s) in enumerate(zip(values, strokes)):
        if v is None:
            out.append(None)
            continue
        arr = np.asarray(v, dtype=np.float64)
        shape = (len(s),) if width is None else (len(s), width)
        if arr.shape != shape:
            raise DataError(f"{name} of stroke {i} has shape {arr.shape}, expected {shape}")
        if not np.isfinite(arr).all():
            raise DataError(f"{name} of stroke {i} has non-finite values")
        out.append(arr)
    return out if any(v is not None for v in out) else None


@dataclass
class Ink:
    """Handwritten text: label plus strokes, with optional per-point channels per stroke."""

    text: str
    strokes: list[np.ndarray]
    times: list[np.ndarray | None] | None = None  # seconds, (n,) per stroke
    pressure: list[np.ndarray | None] | None = None  # 0..1 where known, (n,) per stroke
    tilt: list[np.ndarray | None] | None = None  # (n, 2) per stroke, degrees
    device: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.text, str):
            raise DataError(f"ink text must be a string, got {type(self.text).__name__}")
        self.strokes = [_as_points(s, i) for i, s in enumerate(self.strokes)]
        self.times = _per_stroke(self.times, self.strokes, "times", None)
        self.pressure = _per_stroke(self.pressure, self.strokes, "pressure", None)
        self.tilt = _per_stroke(self.tilt, self.strokes, "tilt", 2)

    @property
    def n_points(self) -> int:
        return sum(len(s) for s in self.strokes)

    def points(self) -> np.ndarray:
        """All points (N, 2); empty (0, 2) when there are no strokes."""
        return np.concatenate(self.strokes) if self.strokes else np.zeros((0, 2))

    def bbox(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax)."""
        pts = self.points()
        if not len(pts):
            raise DataError("the ink has no points")
        return (*map(float, pts.min(axis=0)), *map(float, pts.max(axis=0)))

    def equals(self, other: Ink, atol: float = 0.0) -> bool:
        """Same text, strokes and channels (within atol)."""
        if self.text != other.text or len(self.strokes) != len(other.strokes):
            return False
        for name in ("strokes", "times", "pressure", "tilt"):
            a, b = getattr(self, name), getattr(other, name)
            if (a is None) != (b is None):
                return False
            for x, y in zip(a or [], b or []):
                if (x is None) != (y is None):
                    return False
                if x is not None and (
                    x.shape != y.shape or not np.allclose(x, y, atol=atol, rtol=0)
                ):
                    return False
        return True


@dataclass
class InkRecord:
    """An imported sample: the ink plus where it came from."""

    ink: Ink
    writer: str = ""
    donor: str = ""
    style: str = ""
    source: str = ""  # file (and segment) it was read from
    category: int = 8  # UNIPEN category: 7 = word, 8 = text line
    split: str = ""  # the source's own split when it has one ("train", "valid", "test")
