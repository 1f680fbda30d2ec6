"""Writing whole texts: one line at a time in one consistent style, laid out down a page.

The networks write single lines (they were trained on lines). A text is wrapped to a page
width in characters, each line is sampled with the same bias and primer, and the lines are
stacked with a baseline-aligned line gap. Units are the preprocessing units of the model's
training data (body height ~10, y down).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from engine.sampler import SamplingError, generate, prepare_text
from engine.strokes import offsets_to_strokes
from engine.trace import trace_of

LINE_GAP = 40.0  # baseline-to-baseline distance in preprocessing units (~4 body heights)
MAX_TEXT_CHARS = 5000  # a whole page; longer texts are refused with a clear message


def wrap_text(text: str, width: int = 60) -> list[str]:
    """Split text into lines at newlines, then wrap each paragraph to `width` characters.
    Blank lines are kept (they leave vertical space)."""
    if len(text) > MAX_TEXT_CHARS:
        raise SamplingError(
            f"the text has {len(text)} characters; at most {MAX_TEXT_CHARS} are written at once"
        )
    if width < 5:
        raise SamplingError("the page width must be at least 5 characters")
    lines: list[str] = []
    for para in text.replace("\r\n", "\n").split("\n"):
        wrapped = textwrap.wrap(para, width=width, break_long_words=True) if para.strip() else [""]
        lines.extend(wrapped)
    while lines and not lines[-1].strip():
        lines.pop()
    if not any(line.strip() for line in lines):
        raise SamplingError("there is no text to write (the text is empty or only spaces)")
    return lines


@dataclass
class LineEvent:
    """One sampling step of one line, with where the line sits on the page."""

    line: int
    text: str
    origin: tuple[float, float]  # page position of the line's first pen position
    step: object  # engine.sampler.SampleStep


def write_lines(
    model, lines: list[str], *, seed: int | None = None, **kwargs
) -> Iterator[LineEvent]:
    """Sample each non-blank line; line i uses seed + i so a seed reproduces the page."""
    alphabet = kwargs.get("alphabet") or getattr(model, "alphabet", None)
    if alphabet is not None:  # refuse a bad line before any other line is sampled
        for line in lines:
            if line.strip():
                prepare_text(line, alphabet)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        line_seed = None if seed is None else seed + i
        origin = (0.0, i * LINE_GAP)
        for step in generate(model, line, seed=line_seed, **kwargs):
            yield LineEvent(i, line, origin, step)


@dataclass
class PageLine:
    text: str
    strokes: list[np.ndarray]  # absolute page coordinates
    trace: dict[str, np.ndarray] | None = None  # engine.trace.trace_of, with trace=True


def write_page(
    model, text: str, *, width: int = 60, trace: bool = False, **kwargs
) -> list[PageLine]:
    """Write `text` (wrapped) and return each line's strokes in page coordinates, primer ink
    excluded, each line shifted so its median y sits on its baseline slot. `trace` keeps each
    line's window weights and mixture parameters too (PageLine.trace)."""
    lines = wrap_text(text, width)
    per_line: dict[int, list] = {}
    for ev in write_lines(model, lines, **kwargs):
        entry = per_line.setdefault(ev.line, [ev.text, ev.origin, [], []])
        if trace:
            entry[3].append(ev.step)
        if not (ev.step.primed or ev.step.done[0]):
            entry[2].append(ev.step.offset[0])
    page = []
    for _i, (line_text, origin, offs, steps) in sorted(per_line.items()):
        if not offs:
            continue  # nothing written (as before tracing existed: no PageLine)
        offs = np.asarray(offs, np.float32)
        strokes = offsets_to_strokes(offs)
        if strokes:
            ys = np.concatenate(strokes)[:, 1]
            shift = np.array([origin[0], origin[1] - float(np.median(ys))])
            strokes = [s + shift for s in strokes]
        page.append(PageLine(line_text, strokes, trace_of(steps) if trace else None))
    return page
