"""Render ink to PNG with Pillow (no Qt in the engine): contact sheets for checking data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.data.errors import DataError


def _draw_strokes(draw, strokes, box, width=1):
    """Fit strokes (y down) into box=(x0, y0, x1, y1) keeping aspect ratio."""
    pts = np.concatenate(strokes)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    size = np.maximum(hi - lo, 1e-9)
    x0, y0, x1, y1 = box
    scale = min((x1 - x0) / size[0], (y1 - y0) / size[1])
    for s in strokes:
        p = (s - lo) * scale + (x0, y0)
        if len(p) == 1:
            draw.point([tuple(p[0])], fill="black")
        else:
            draw.line([tuple(q) for q in p], fill="black", width=width)


def render_sheet(items, out, row_height: int = 70, width: int = 1400, label_height: int = 16):
    """items: (strokes (list of (n,2) arrays), label) pairs, one per row. Writes a PNG."""
    try:
        from PIL import Image, ImageDraw
    except ImportError as exc:  # pragma: no cover - pillow is a dependency
        raise DataError("rendering needs Pillow (pip install pillow)") from exc
    items = [(s, t) for s, t in items if s and sum(len(x) for x in s)]
    if not items:
        raise DataError("nothing to render: no item has ink")
    cell = row_height + label_height + 8
    img = Image.new("RGB", (width, cell * len(items) + 4), "white")
    draw = ImageDraw.Draw(img)
    for i, (strokes, label) in enumerate(items):
        top = i * cell + 4
        draw.text((6, top), label[:200], fill=(180, 0, 0))
        box = (6, top + label_height, width - 6, top + label_height + row_height)
        _draw_strokes(draw, strokes, box)
        draw.line([(0, top + cell - 3), (width, top + cell - 3)], fill=(220, 220, 220))
    out = Path(out)
    try:
        img.save(out)
    except OSError as exc:
        raise DataError(f"cannot write {out}: {exc}") from None
    return out
