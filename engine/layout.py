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
    draft: bool = False  # a step of the candidates still being drawn (write_lines(drafts=True))


def write_lines(
    model,
    lines: list[str],
    *,
    seed: int | None = None,
    tries: int = 1,
    drafts: bool = False,
    **kwargs,
) -> Iterator[LineEvent]:
    """Sample each non-blank line; line i uses seed + i so a seed reproduces the page.
    tries > 1 writes each line that many times at once and keeps the best (`best_line`); its
    steps then arrive together once the line is chosen. With `drafts`, every step of the
    candidates (a batch SampleStep, one row per candidate) comes first as it is drawn, as an
    event with draft=True, so a viewer can show ink at once."""
    check_tries(tries)
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
        if tries == 1:
            steps = generate(model, line, seed=line_seed, **kwargs)
        else:
            candidates = iter_best_line(model, line, tries, seed=line_seed, **kwargs)
            while True:
                try:
                    step = next(candidates)
                except StopIteration as chosen:
                    steps = chosen.value[0]
                    break
                if drafts:
                    yield LineEvent(i, line, origin, step, draft=True)
        for step in steps:
            yield LineEvent(i, line, origin, step)


# the studio's and the CLI's default. bench.legibility --tries, bias 0.75, seeds 0-5: CER 0.048
# at 5 tries, 0.041 at 8, 0.040 at 12; a 40-character line of the bundled model takes 0.14-0.17 s
# at 5 and 0.22-0.23 s at 8 with the native step (bench/RESULTS.md, tenth session)
DEFAULT_TRIES = 8
MAX_TRIES = 16


def check_tries(tries) -> None:
    if isinstance(tries, bool) or not isinstance(tries, int) or not 1 <= tries <= MAX_TRIES:
        raise SamplingError(f"tries must be a whole number from 1 to {MAX_TRIES}, not {tries!r}")


def attention_coverage(phi: np.ndarray, first: int, count: int) -> float:
    """How clearly the window went through the line: the mean over its characters of the
    largest weight phi(t, u) each received. phi (T, U+1) of the written steps; the characters
    are columns first .. first+count-1 (after any primer text). A character the pen skipped
    or slurred gets no clear peak, and lines low on this measure are the ones an offline
    recogniser misreads: bundled model, 180-360 candidate lines per set, the lowest tenth had
    a character error rate of 0.26-0.28 against 0.08-0.10 for the rest at bias 0.75 (0.17
    against 0.07 at 1.0). The mean picked better lines than the weakest character's peak in
    each of three sets of 60-120 texts (CER 0.058 / 0.062 / 0.042 against 0.064 / 0.085 /
    0.058), so it replaced it."""
    if count <= 0 or len(phi) == 0:
        return 0.0
    return float(phi[:, first : first + count].max(axis=0).mean())


def best_line(model, text: str, tries: int, *, seed: int | None = None, **kwargs):
    """Write `text` `tries` times at once (one batch, one generator seeded with `seed`) and
    keep the candidate whose attention covered every character best (`attention_coverage`).
    Returns (its steps as batch-1 SampleSteps, the coverage of every candidate).

    Measured with bench.legibility --tries (an offline recogniser's character error rate on
    60 held-out texts, seeds 0-2, the bundled model), one try / best of 2 / 3 / 5:
    0.120 / 0.070 / 0.059 / 0.049 at bias 0.75, 0.084 / 0.053 / 0.047 / 0.030 at bias 1.0 and
    0.291 / 0.232 / 0.201 / 0.178 at bias 0.15. The rows of a batch share each step, so more
    tries cost less than in proportion (the batch runs until its slowest row stops): a
    four-line page with the bundled model, one thread, 0.30 / 0.60 / 0.78 s at 1 / 3 / 5.
    """
    candidates = iter_best_line(model, text, tries, seed=seed, **kwargs)
    while True:
        try:
            next(candidates)
        except StopIteration as chosen:
            return chosen.value


def iter_best_line(model, text: str, tries: int, *, seed: int | None = None, **kwargs):
    """`best_line` as a generator: yields each step of the candidates' batch as it is drawn,
    then returns (the chosen steps, the scores) as its StopIteration value."""
    from engine.sampler import primed_text

    check_tries(tries)
    if kwargs.get("batch", 1) != 1:
        raise SamplingError("best_line writes one line: leave batch at 1")
    steps = []
    for step in generate(model, text, seed=seed, batch=tries, **kwargs):
        steps.append(step)
        yield step
    primer = kwargs.get("primer")
    first = len(primed_text(primer.text, text)) - len(text) if primer is not None else 0
    # scored from the stacked arrays, and only the chosen row made into per-step objects: a
    # SampleStep per row and step (8 x 400) set off full garbage collections that held the
    # GIL ~100 ms at the end of a line, a stall in the studio's UI thread
    drawn = [s for s in steps if not s.primed and s.phi is not None]
    scores = [0.0] * tries
    if drawn:
        phi = np.stack([s.phi for s in drawn])  # (T, tries, U+1)
        done = np.stack([s.done for s in drawn])  # (T, tries): a row ends at its first done
        for b in range(tries):
            end = int(np.argmax(done[:, b])) if done[:, b].any() else len(drawn)
            if end:
                scores[b] = attention_coverage(phi[:end, b], first, len(text))
    return _row_steps(steps, int(np.argmax(scores))), scores


def _row_steps(steps, b: int) -> list:
    """Row b of a batch's steps as batch-1 SampleSteps, up to the step where it stopped."""
    from engine.sampler import SampleStep

    out = []
    for s in steps:
        if s.done[b]:
            break
        out.append(
            SampleStep(
                s.t,
                s.offset[b : b + 1],
                s.primed,
                None if s.phi is None else s.phi[b : b + 1],
                _row_params(s, b),
                s.done[b : b + 1],
            )
        )
    return out


def _row_params(step, b: int):
    def params():
        from engine.sampler import StepParams

        p = step.params
        return StepParams(p.pi[b : b + 1], p.mu[b : b + 1], p.sigma[b : b + 1],
                          p.rho[b : b + 1], p.e[b : b + 1])  # fmt: skip

    return params


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
    line's window weights and mixture parameters too (PageLine.trace). Other keywords go to
    `write_lines` and `generate` (tries=N: each line best of N; the CLI passes DEFAULT_TRIES)."""
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
