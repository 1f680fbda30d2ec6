"""The studio's native ink format: versioned JSON for captured ink and saved styles.

{"format": "handwriting-studio-ink", "version": 1, "text": "...",
 "strokes": [{"points": [[x, y], ...], "t": [...] | null, "pressure": [...] | null,
              "tilt": [[tx, ty], ...] | null}],
 "device": {...}, "created": "2026-01-01T00:00:00+00:00"}
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from engine.data.errors import DataError, FormatVersionError
from engine.data.ink import Ink

FORMAT = "handwriting-studio-ink"
VERSION = 1
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_POINTS = 2_000_000


def ink_to_dict(ink: Ink, created: str | None = None) -> dict:
    def channel(values, i):
        return None if values is None or values[i] is None else values[i].tolist()

    strokes = [
        {
            "points": s.tolist(),
            "t": channel(ink.times, i),
            "pressure": channel(ink.pressure, i),
            "tilt": channel(ink.tilt, i),
        }
        for i, s in enumerate(ink.strokes)
    ]
    created = created or datetime.now(timezone.utc).isoformat(timespec="seconds")
    return {
        "format": FORMAT,
        "version": VERSION,
        "text": ink.text,
        "strokes": strokes,
        "device": dict(ink.device),
        "created": created,
    }


def ink_from_dict(d: dict, where: str = "ink") -> Ink:
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise DataError(f"{where}: not a handwriting-studio ink file (format must be {FORMAT!r})")
    version = d.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise DataError(f"{where}: version must be an integer, got {version!r}")
    if version > VERSION or version < 1:
        raise FormatVersionError(
            f"{where}: ink format version {version} is not supported "
            f"(this program reads versions 1 to {VERSION}); update the program"
        )
    strokes = d.get("strokes")
    if not isinstance(strokes, list):
        raise DataError(f"{where}: 'strokes' must be a list")
    text = d.get("text", "")
    if not isinstance(text, str):
        raise DataError(f"{where}: 'text' must be a string")
    total = 0
    pts, ts, ps, tilts = [], [], [], []
    for i, s in enumerate(strokes):
        if not isinstance(s, dict) or "points" not in s:
            raise DataError(f"{where}: stroke {i} must be an object with 'points'")
        try:
            p = np.asarray(s["points"], dtype=np.float64)
            t, pr, ti = (
                None if s.get(k) is None else np.asarray(s[k], dtype=np.float64)
                for k in ("t", "pressure", "tilt")
            )
        except (TypeError, ValueError, OverflowError) as exc:
            raise DataError(f"{where}: stroke {i} holds non-numeric values ({exc})") from None
        total += p.size
        if total > 2 * MAX_POINTS:
            raise DataError(f"{where}: more than {MAX_POINTS} points")
        pts.append(p), ts.append(t), ps.append(pr), tilts.append(ti)
    device = d.get("device") or {}
    if not isinstance(device, dict):
        raise DataError(f"{where}: 'device' must be an object")
    try:
        return Ink(text, pts, ts, ps, tilts, device=device)
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None


def save_ink(ink: Ink, path) -> Path:
    from engine.checkpoint import atomic_write_bytes  # old file intact if the write fails

    path = Path(path)
    data = json.dumps(ink_to_dict(ink), separators=(",", ":"), allow_nan=False)
    atomic_write_bytes(path, data.encode("utf-8"))
    return path


def _reject_constant(name):
    raise ValueError(f"non-finite number {name}")


def load_ink(path) -> Ink:
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"cannot read ink file {path}: {exc.strerror or exc}") from None
    if size > MAX_FILE_BYTES:
        raise DataError(f"{path}: {size} bytes is larger than the {MAX_FILE_BYTES} byte limit")
    try:
        d = json.loads(path.read_bytes(), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: deep nesting
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    return ink_from_dict(d, str(path))


__all__ = ["save_ink", "load_ink", "ink_to_dict", "ink_from_dict", "FORMAT", "VERSION"]
