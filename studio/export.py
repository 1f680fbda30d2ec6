"""Exports of the written page, through engine.render so the CLI and the studio match."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine import EngineError

FORMATS = {
    "png": "PNG image (*.png)",
    "svg": "SVG vector image (*.svg)",
    "inkml": "InkML ink (*.inkml)",
    "animation": "Animated SVG (*.svg);;Animated GIF (*.gif)",
    "trace": "NumPy arrays: window and mixture per step (*.npz)",
}


class ExportError(EngineError):
    pass


def _check(strokes) -> list[np.ndarray]:
    strokes = [np.asarray(s, dtype=np.float64) for s in strokes if len(s)]
    if not strokes:
        raise ExportError("there is no ink to export yet: write something first")
    return strokes


def _write_text(path: Path, text: str) -> None:
    from engine.checkpoint import atomic_write_bytes

    atomic_write_bytes(path, text.encode("utf-8"))


def export_png(
    strokes,
    path,
    *,
    height: int | None = None,
    scale: float = 4.0,
    transparent: bool = False,
    stroke_width: float = 2.0,
    pressure=None,
) -> Path:
    from engine.render import render_png

    path = Path(path)
    render_png(
        _check(strokes),
        path,
        height=height,
        scale=scale,
        background=None if transparent else "white",
        stroke_width=stroke_width,
        pressure=pressure,
    )
    return path


def export_svg(strokes, path, *, pressure=None, stroke_width: float = 1.5) -> Path:
    from engine.render import render_svg

    path = Path(path)
    _write_text(
        path,
        render_svg(
            _check(strokes), pressure=pressure, stroke_width=stroke_width, background="white"
        ),
    )
    return path


def export_animation(strokes, path, *, stroke_width: float = 1.5) -> Path:
    from engine.render import render_animated_svg, render_gif

    path = Path(path)
    strokes = _check(strokes)
    if path.suffix.lower() == ".gif":
        render_gif(strokes, path, stroke_width=stroke_width, scale=4.0)
    else:
        if path.suffix.lower() != ".svg":
            path = path.with_suffix(".svg")
        _write_text(path, render_animated_svg(strokes, stroke_width=stroke_width))
    return path


def export_inkml(strokes, text: str, path, *, ink=None) -> Path:
    """InkML of the strokes; with `ink` (an engine Ink) its time and pressure channels too."""
    from engine.data.ink import Ink
    from engine.data.inkml import write_inkml

    path = Path(path)
    write_inkml(ink if ink is not None else Ink(text=text, strokes=_check(strokes)), path)
    return path


def import_inkml(path):
    from engine.data.inkml import read_inkml

    return read_inkml(path)
