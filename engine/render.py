"""Qt-free rendering of handwriting: SVG, PNG (Pillow), animated SVG and GIF.

Strokes are absolute points in screen coordinates (y down). The CLI and the studio export
through these functions so a file looks the same whichever wrote it. Strokes are drawn as the
smooth curve through their points (engine.strokes.bezier_segments; `smooth=False` draws the
polyline): networks that write sparse points (point_step 2.7) would otherwise show corners.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from engine import EngineError
from engine.strokes import bezier_segments, smooth_strokes

SMOOTH_STEPS = 4  # curve points per pair of ink points when drawing with Pillow


class RenderError(EngineError, ValueError):
    pass


@dataclass(frozen=True)
class Bounds:
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0


def _clean(strokes) -> list[np.ndarray]:
    out = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes]
    out = [s for s in out if len(s)]
    if not out:
        raise RenderError("there is no ink to render")
    if not all(np.isfinite(s).all() for s in out):
        raise RenderError("the ink has non-finite coordinates")
    return out


def bounds(strokes, margin: float = 0.0) -> Bounds:
    pts = np.concatenate(_clean(strokes))
    lo, hi = pts.min(axis=0) - margin, pts.max(axis=0) + margin
    return Bounds(float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))


def _fmt(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")


def _path_d(s: np.ndarray, smooth: bool = True) -> str:
    """SVG path data: the spline through the points as cubic Beziers (strokes.bezier_segments),
    or with smooth False the polyline."""
    if len(s) == 1:  # a dot: a zero-length segment draws with round caps
        s = np.vstack([s, s + [0.01, 0]])
    head = f"M{_fmt(s[0, 0])} {_fmt(s[0, 1])}"
    if not smooth or len(s) < 3:
        return head + "".join(f" L{_fmt(x)} {_fmt(y)}" for x, y in s[1:])
    return head + "".join(
        " C" + " ".join(f"{_fmt(x)} {_fmt(y)}" for x, y in seg[1:]) for seg in bezier_segments(s)
    )


def _densify(strokes, pressure, smooth: bool):
    """Strokes (and per-point pressure) with spline points added for drawing as polylines."""
    if not smooth:
        return strokes, pressure
    out = smooth_strokes(strokes, SMOOTH_STEPS)
    if pressure is None:
        return out, None
    dense = []
    for s, p in zip(strokes, pressure):
        if p is None or len(s) <= 2:
            dense.append(p)
            continue
        p = np.asarray(p, float).reshape(-1)
        at = np.arange((len(s) - 1) * SMOOTH_STEPS + 1) / SMOOTH_STEPS
        dense.append(np.interp(at, np.arange(len(p)), p))
    return out, dense


def _svg_open(b: Bounds, background: str | None) -> list[str]:
    """The SVG prologue for a drawing of bounds b, with an optional background rectangle."""
    view = f"{_fmt(b.x0)} {_fmt(b.y0)} {_fmt(b.width)} {_fmt(b.height)}"
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_fmt(b.width)}" '
        f'height="{_fmt(b.height)}" viewBox="{view}">',
    ]
    if background:
        parts.append(
            f'<rect x="{_fmt(b.x0)}" y="{_fmt(b.y0)}" width="{_fmt(b.width)}" '
            f'height="{_fmt(b.height)}" fill="{escape(background)}"/>'
        )
    return parts


def render_svg(
    strokes,
    *,
    stroke_width: float = 2.0,
    color: str = "#1a1a2e",
    background: str | None = None,
    margin: float = 10.0,
    pressure: list[np.ndarray] | None = None,
    smooth: bool = True,
) -> str:
    """SVG text with one <path> per stroke. With `pressure` (one array per stroke, 0..1),
    each stroke is split into segments whose width follows the pressure."""
    strokes = _clean(strokes)
    parts = _svg_open(bounds(strokes, margin), background)
    style = f'fill="none" stroke="{escape(color)}" stroke-linecap="round" stroke-linejoin="round"'
    parts.append(f"<g {style}>")
    for i, s in enumerate(strokes):
        if pressure is not None and pressure[i] is not None and len(s) > 1:
            p = np.clip(np.asarray(pressure[i], dtype=float).reshape(-1), 0.05, 1.0)
            widths = " ".join(_fmt(stroke_width * 2 * v) for v in p)
            # one path per stroke; the per-point widths ride along for tools that read them
            mean_width = _fmt(stroke_width * 2 * p.mean())
            parts.append(
                f'<path d="{_path_d(s, smooth)}" stroke-width="{mean_width}" '
                f'data-widths="{widths}"/>'
            )
        else:
            parts.append(f'<path d="{_path_d(s, smooth)}" stroke-width="{_fmt(stroke_width)}"/>')
    parts.append("</g></svg>")
    return "\n".join(parts)


def render_image(
    strokes,
    *,
    scale: float = 1.0,
    height: int | None = None,
    stroke_width: float = 2.0,
    color=(26, 26, 46),
    background: tuple | str | None = "white",
    margin: float = 10.0,
    pressure: list[np.ndarray] | None = None,
    supersample: int = 2,
    frame: Bounds | None = None,
    smooth: bool = True,
):
    """A Pillow image of the ink. `height` (pixels) overrides `scale`. background None =
    transparent. Lines are drawn supersampled, then downscaled for smooth edges. `frame`
    fixes the drawn area (for animation frames), else it is the ink's bounds plus margin."""
    from PIL import Image, ImageDraw

    strokes = _clean(strokes)
    b = frame or bounds(strokes, margin)
    strokes, pressure = _densify(strokes, pressure, smooth)
    if height is not None:
        scale = height / max(b.height, 1e-6)
    W = max(1, int(round(b.width * scale)))
    H = max(1, int(round(b.height * scale)))
    if W * H > 80_000_000:
        raise RenderError(f"the image would be {W} x {H} pixels; choose a smaller resolution")
    ss = supersample
    mode = "RGBA"
    bg = (0, 0, 0, 0) if background is None else background
    img = Image.new(mode, (W * ss, H * ss), bg)
    draw = ImageDraw.Draw(img)
    ink = tuple(color) + (255,) if isinstance(color, tuple) else color
    k = scale * ss
    for i, s in enumerate(strokes):
        xy = (s - [b.x0, b.y0]) * k
        widths = None
        if pressure is not None and pressure[i] is not None:
            widths = np.clip(np.asarray(pressure[i], float).reshape(-1), 0.05, 1.0) * 2
        base = stroke_width * k
        if len(xy) == 1:
            r = base / 2
            x, y = xy[0]
            draw.ellipse([x - r, y - r, x + r, y + r], fill=ink)
            continue
        for j in range(len(xy) - 1):
            w = base if widths is None else base * widths[min(j, len(widths) - 1)]
            draw.line([tuple(xy[j]), tuple(xy[j + 1])], fill=ink, width=max(1, int(round(w))))
            r = w / 2  # round joints
            x, y = xy[j + 1]
            draw.ellipse([x - r, y - r, x + r, y + r], fill=ink)
    if ss > 1:
        img = img.resize((W, H), Image.LANCZOS)
    if background is not None:
        img = img.convert("RGB")
    return img


def render_png(strokes, path, **kwargs) -> None:
    """Write a PNG of the ink (see render_image for options)."""
    img = render_image(strokes, **kwargs)
    try:
        img.save(Path(path), format="PNG")
    except OSError as exc:
        raise RenderError(f"could not write {path}: {exc.strerror or exc}") from None


def render_animated_svg(
    strokes,
    *,
    duration: float | None = None,
    times: list[np.ndarray] | None = None,
    stroke_width: float = 2.0,
    color: str = "#1a1a2e",
    margin: float = 10.0,
    background: str | None = "white",
    smooth: bool = True,
) -> str:
    """An SVG whose strokes draw themselves in order (SMIL stroke-dashoffset animation).
    Timing follows `times` (seconds per point) when given, else pen-path length."""
    strokes = _clean(strokes)
    drawn, _ = _densify(strokes, None, smooth)  # the dash length is the drawn curve's
    lengths = [float(np.sum(np.hypot(*np.diff(s, axis=0).T))) + 0.01 for s in drawn]
    if times is not None:
        spans = [max(float(t[-1] - t[0]), 0.02) for t in times]
        starts = [float(t[0] - times[0][0]) for t in times]
    else:
        total = sum(lengths)
        duration = duration or max(1.0, total / 300.0)
        spans = [duration * L / total for L in lengths]
        starts = list(np.cumsum([0.0] + spans[:-1]))
    parts = _svg_open(bounds(strokes, margin), background)
    for s, L, t0, dt in zip(strokes, lengths, starts, spans):
        parts.append(
            f'<path d="{_path_d(s, smooth)}" fill="none" stroke="{escape(color)}" '
            f'stroke-width="{_fmt(stroke_width)}" stroke-linecap="round" '
            f'stroke-linejoin="round" stroke-dasharray="{_fmt(L)}" '
            f'stroke-dashoffset="{_fmt(L)}"><animate attributeName="stroke-dashoffset" '
            f'from="{_fmt(L)}" to="0" begin="{t0:.3f}s" dur="{dt:.3f}s" fill="freeze"/></path>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def render_gif(strokes, path, *, frames: int = 60, frame_ms: int = 40, **kwargs) -> None:
    """An animated GIF of the pen writing the strokes in order."""
    strokes = _clean(strokes)
    counts = np.cumsum([len(s) for s in strokes])
    total = int(counts[-1])
    b = bounds(strokes, kwargs.pop("margin", 10.0))
    images = []
    for f in range(1, frames + 1):
        n = max(1, int(round(total * f / frames)))
        shown = []
        for s, end in zip(strokes, counts):
            start = end - len(s)
            if start >= n:
                break
            shown.append(s[: n - start])
        img = render_image(shown, frame=b, pressure=None, **kwargs)
        images.append(img.convert("P", palette=1, colors=64) if img.mode == "RGB" else img)
    try:
        images[0].save(
            Path(path), save_all=True, append_images=images[1:], duration=frame_ms, loop=0
        )
    except OSError as exc:
        raise RenderError(f"could not write {path}: {exc.strerror or exc}") from None
