"""Writing a page: multi-line text -> one sampler run per line, laid out down the page.

Qt-free (numpy only; torch is imported by the sampler inside the worker thread). The job
follows studio.workers' protocol: `steps()` yields once per pen point, `snapshot()` returns
a `WriteSnapshot` the views draw from. Every line uses the same primer, bias and seed stream,
so a page reads as one hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.layout import wrap_text  # noqa: F401 - one wrapping rule for CLI and studio

DEFAULT_PAGE_WIDTH = 40  # characters per line


def mixture_density(params, b: int, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Eqs. 23-25 summed over components: sum_j pi_j N(d | mu_j, sigma_j, rho_j) at offsets
    (gx, gy) (broadcastable arrays), for batch row b. Data units."""
    pi, mu, sigma, rho = params.pi[b], params.mu[b], params.sigma[b], params.rho[b]
    dx = (gx[..., None] - mu[:, 0]) / sigma[:, 0]
    dy = (gy[..., None] - mu[:, 1]) / sigma[:, 1]
    one_m_r2 = np.maximum(1.0 - rho**2, 1e-6)
    z = dx**2 + dy**2 - 2.0 * rho * dx * dy
    norm = 2.0 * np.pi * sigma[:, 0] * sigma[:, 1] * np.sqrt(one_m_r2)  # Eq. 24
    n = np.exp(-z / (2.0 * one_m_r2)) / norm
    return (n * pi).sum(axis=-1)


class DensityAccumulator:
    """Predicted pen-position densities summed over the writing, on a growing grid in canvas
    coordinates (Fig. 10, top). Each step adds its probability mass on a patch around the
    pen's expected next position."""

    def __init__(self, cell: float, half: int = 12):
        self.cell = float(cell)
        self.half = half
        self.image = np.zeros((0, 0), np.float32)  # rows = y, cols = x
        self.origin = (0, 0)  # integer cell index (ix, iy) of image[0, 0]

    def _ensure(self, ix0: int, iy0: int, ix1: int, iy1: int) -> None:
        h, w = self.image.shape
        if h == 0:
            pad = 64
            self.origin = (ix0 - pad, iy0 - pad)
            self.image = np.zeros((iy1 - iy0 + 2 * pad, ix1 - ix0 + 2 * pad), np.float32)
            return
        ox, oy = self.origin
        left, top = max(0, ox - ix0), max(0, oy - iy0)
        right, bottom = max(0, ix1 - (ox + w)), max(0, iy1 - (oy + h))
        if left or top or right or bottom:
            grow = lambda n: 0 if n == 0 else n + 64  # noqa: E731 - grow in chunks
            pads = ((grow(top), grow(bottom)), (grow(left), grow(right)))
            self.image = np.pad(self.image, pads)
            self.origin = (ox - pads[1][0], oy - pads[0][0])

    def add(self, pen: np.ndarray, params, b: int = 0) -> None:
        if not np.isfinite(pen).all():
            return
        centre = pen + (params.pi[b, :, None] * params.mu[b]).sum(axis=0)
        cx, cy = int(np.floor(centre[0] / self.cell)), int(np.floor(centre[1] / self.cell))
        H = self.half
        ix = np.arange(cx - H, cx + H + 1)
        iy = np.arange(cy - H, cy + H + 1)
        gx = (ix + 0.5) * self.cell - pen[0]
        gy = (iy + 0.5) * self.cell - pen[1]
        patch = mixture_density(params, b, gx[None, :], gy[:, None]) * self.cell**2
        self._ensure(ix[0], iy[0], ix[-1] + 1, iy[-1] + 1)
        ox, oy = self.origin
        self.image[iy[0] - oy : iy[-1] + 1 - oy, ix[0] - ox : ix[-1] + 1 - ox] += patch

    def rect(self) -> tuple[float, float, float, float]:
        """(x, y, width, height) of the image in canvas coordinates."""
        h, w = self.image.shape
        c = self.cell
        return (self.origin[0] * c, self.origin[1] * c, w * c, h * c)


@dataclass
class WriteSnapshot:
    """What the views draw. Points are pen positions after each generated step (primer
    steps excluded), in canvas coordinates (data units, y down)."""

    lines: list[str | None]
    points: np.ndarray  # (N, 2)
    pen_up: np.ndarray  # (N,) bool: the pen lifts after this point
    line_start: list[int]  # index of each started line's first point
    phi: list[np.ndarray]  # per started line: (T_line, U_line) one column per character
    pi: np.ndarray  # (N, M)
    density: np.ndarray | None  # accumulated density image for display (sqrt), rows = y
    density_level: float  # display level (high percentile of `density`)
    density_rect: tuple[float, float, float, float] | None
    current_line: int
    finished: bool = False
    stopped: bool = False
    stopped_by_rule: list[bool] = field(default_factory=list)
    trace: object | None = None  # engine.trace.PageTrace, on the final snapshot only
    # the line being chosen (Best of > 1): the first candidate's pen so far, drawn as a draft
    draft: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    draft_pen_up: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    @property
    def n_points(self) -> int:
        return len(self.points)

    def line_of(self, index: int) -> int:
        """The line a point index belongs to."""
        return max(0, int(np.searchsorted(self.line_start, index, side="right")) - 1)

    def strokes(self) -> list[np.ndarray]:
        """Absolute strokes; a new stroke starts after each pen lift and at each new line."""
        if not len(self.points):
            return []
        breaks = self.pen_up.copy()
        for s in self.line_start[1:]:
            if s > 0:
                breaks[s - 1] = True
        out, start = [], 0
        for end in np.flatnonzero(breaks) + 1:
            out.append(self.points[start:end])
            start = end
        if start < len(self.points):
            out.append(self.points[start:])
        return [s for s in out if len(s)]


class WriteJob:
    """Writes `lines` (None = one unconditional scribble with the prediction network)."""

    def __init__(
        self,
        loaded,
        lines: list[str | None],
        *,
        bias: float = 0.0,
        seed: int | None = None,
        primer=None,
        max_steps: int = 700,
        density: bool = True,
        tries: int = 1,
    ):
        if not lines or not any(t is None or t.strip() for t in lines):
            from engine.sampler import SamplingError

            raise SamplingError("there is no text to write (the text is empty or only spaces)")
        self.loaded = loaded
        self.page_lines = list(lines)  # blank lines leave space on the page
        self.lines = [t for t in lines if t is None or t.strip()]  # the lines written
        self.bias = float(bias)
        self.primer = primer
        self.max_steps = max_steps
        self.seed = seed
        from engine.layout import check_tries

        check_tries(tries)
        self.tries = tries  # best of N per line (engine.layout.best_line)
        norm = getattr(loaded, "norm", None)
        scale = float(np.mean(norm.std)) if norm is not None else 1.0
        self.scale = scale
        self.density = DensityAccumulator(cell=0.2 * scale) if density else None
        self._points: list[np.ndarray] = []
        self._pen_up: list[bool] = []
        self._pi: list[np.ndarray] = []
        self._phi: list[list[np.ndarray]] = []
        self._steps: list[list] = []  # per line, every SampleStep (for the exported trace)
        self._line_start: list[int] = []
        self._by_rule: list[bool] = []
        self._current = 0
        self._finished = False
        self._draft: list[np.ndarray] = []
        self._draft_up: list[bool] = []

    # -- the worker protocol -------------------------------------------------------------
    def steps(self):
        import torch

        from engine.fast import sampling_threads
        from engine.sampler import past_last_character, primed_text

        # one thread, or two for an int8-size model where a third core is left for the GUI:
        # on a busy 2-core machine a second thread can slow small ops ~100x
        torch.set_num_threads(sampling_threads(self.loaded.model, keep_free=1))
        self._origins: list[np.ndarray] = []
        kwargs = dict(bias=self.bias, primer=self.primer)
        if self.lines == [None]:
            from engine.sampler import generate

            events = (
                (0, None, (0.0, 0.0), step, False)
                for step in generate(
                    self.loaded, None, seed=self.seed, max_steps=self.max_steps, **kwargs
                )
            )
        else:
            from engine.layout import write_lines  # the CLI's page: same seeds, same origins

            events = (
                (e.line, e.text, e.origin, e.step, e.draft)
                for e in write_lines(
                    self.loaded,
                    self.page_lines,
                    seed=self.seed,
                    tries=self.tries,
                    drafts=True,
                    **kwargs,
                )
            )
        page_line, pen, skip, i = None, None, 0, -1
        for line, text, origin, step, draft in events:
            if line != page_line:
                page_line, i = line, i + 1
                self._start_line(i, text, origin)
                pen = np.asarray(origin, np.float64).copy()
                draft_pen = pen.copy()
                skip = 0
                if text is not None and self.primer is not None:
                    skip = len(primed_text(self.primer.text, text)) - len(text)
            if draft:  # the first candidate, while the line's candidates are drawn
                if not step.primed and not step.done[0]:
                    draft_pen = draft_pen + step.offset[0, :2]
                    self._draft.append(draft_pen)
                    self._draft_up.append(bool(step.offset[0, 2] > 0.5))
                    yield
                continue
            if self._draft:
                self._draft, self._draft_up = [], []  # the chosen line replaces it
            self._steps[i].append(step)
            if step.primed:
                continue
            if self.density is not None:
                self.density.add(pen, step.params)
            pen = pen + step.offset[0, :2]
            self._points.append(pen)
            self._pen_up.append(bool(step.offset[0, 2] > 0.5))
            self._pi.append(step.params.pi[0].astype(np.float32))
            if step.phi is not None:
                row = step.phi[0, skip : skip + len(text)].astype(np.float32)
                self._phi[i].append(row)
                self._by_rule[i] = bool(past_last_character(step.phi[:1])[0])
            yield
        self._finished = True

    def _start_line(self, i: int, text, origin) -> None:
        self._current = i
        self._origins.append(np.asarray(origin, np.float64))
        self._line_start.append(len(self._points))
        self._phi.append([])
        self._steps.append([])
        self._by_rule.append(False)

    def snapshot(self) -> WriteSnapshot:
        n = len(self._points)
        phi = []
        for k, rows in enumerate(self._phi):
            width = len(self.lines[k] or "")
            phi.append(np.asarray(rows, np.float32) if rows else np.zeros((0, width), np.float32))
        dens = rect = None
        level = 1.0
        if self.density is not None and self.density.image.size:
            # sqrt keeps faint strokes visible beside dense ones; done here, off the UI thread
            dens, rect = np.sqrt(self.density.image), self.density.rect()
            ink = dens[dens > 0]
            if ink.size:
                level = float(np.percentile(ink[:: max(1, ink.size // 20000)], 99.5)) or 1.0
        M = self._pi[0].shape[0] if self._pi else 0
        return WriteSnapshot(
            lines=self.lines,
            points=np.asarray(self._points, np.float64).reshape(n, 2),
            pen_up=np.asarray(self._pen_up, bool).reshape(n),
            line_start=list(self._line_start),
            phi=phi,
            pi=np.asarray(self._pi, np.float32).reshape(n, M),
            density=dens,
            density_rect=rect,
            density_level=level,
            current_line=self._current,
            finished=self._finished,
            stopped_by_rule=list(self._by_rule),
            draft=np.asarray(self._draft, np.float64).reshape(-1, 2),
            draft_pen_up=np.asarray(self._draft_up, bool),
        )

    def progress(self) -> dict:
        return {"line": self._current, "lines": len(self.lines), "points": len(self._points)}

    def result(self, stopped: bool) -> WriteSnapshot:
        snap = self.snapshot()
        snap.stopped = stopped
        snap.finished = True
        snap.draft, snap.draft_pen_up = np.zeros((0, 2)), np.zeros(0, bool)  # stopped mid-choice
        snap.trace = self.trace()
        return snap

    def trace(self):
        """The page's engine.trace.PageTrace: each started line's window and mixture."""
        from engine.trace import PageTrace, trace_of

        lines = [(self.lines[k] or "", trace_of(steps)) for k, steps in enumerate(self._steps)]
        return PageTrace(
            lines,
            str(getattr(self.loaded, "path", None) or ""),
            getattr(self.loaded, "kind", "synthesis"),
            self.bias,
            self.seed,
            self.primer.text if self.primer is not None else None,
        )
