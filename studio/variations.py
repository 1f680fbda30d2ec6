"""Variations: the page's first line written several ways, to pick the seed you like.

Each card is exactly what Write produces for that line with the card's seed and the tab's
"Best of" setting (it is sampled by `engine.layout.write_lines`, as the page is: line i uses
seed + i, best of N), so choosing a card and writing the page reproduces the card's line and
goes on with the rest.

The cards are sampled one after another with batch 1, not as one batch: a batch draws all its
rows from one random stream, so a row of it is not the line its seed writes. (The torch int8
step was not row-exact either: its products round differently at batch 6 than at batch 1. The
native step, engine/native, computes each row alone.) A seed must mean one line. With the
bundled model six cards take ~0.4-0.5 s at one try per line.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen, QTransform
from PySide6.QtWidgets import (
    QDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from engine.strokes import smooth_strokes
from studio.canvas import INK
from studio.workers import WorkerController

DEFAULT_COUNT = 6
MAX_COUNT = 12
SEED_MAX = 2**31 - 1  # the Write tab's seed box range


@dataclass
class Candidate:
    seed: int  # the page seed (what goes into the Write tab's seed box)
    points: list = field(default_factory=list)  # pen positions from (0, 0), data units
    pen_up: list = field(default_factory=list)  # the pen lifts after this point
    finished: bool = False  # sampled to its end (stop rule or step limit)
    reached_end: bool = False  # the window passed the last character (Sec. 5.3)

    def strokes(self) -> list[np.ndarray]:
        out, cur = [], []
        for p, up in zip(self.points, self.pen_up):
            cur.append(p)
            if up:
                out.append(np.asarray(cur, np.float64))
                cur = []
        if cur:
            out.append(np.asarray(cur, np.float64))
        return out


def first_line(lines: list[str]) -> tuple[int, str]:
    """(page index, text) of the first line with writing on it."""
    from engine.sampler import SamplingError

    for i, line in enumerate(lines):
        if line.strip():
            return i, line
    raise SamplingError("there is no text to write (the text is empty or only spaces)")


def random_seeds(count: int, line_index: int, rng=random) -> list[int]:
    """`count` distinct page seeds whose line seed (seed + line_index) stays in range."""
    seeds: set[int] = set()
    while len(seeds) < count:
        seeds.add(rng.randrange(0, SEED_MAX - line_index))
    return list(seeds)


class VariationsJob:
    """Writes the first line of `lines` once per page seed in `seeds` (worker protocol of
    studio.workers: steps / snapshot / progress / result)."""

    def __init__(
        self,
        loaded,
        lines: list[str],
        seeds: list[int],
        *,
        bias: float,
        primer=None,
        tries: int = 1,
    ):
        if not seeds:
            raise ValueError("no seeds to write")
        if any(not 0 <= s <= SEED_MAX for s in seeds):
            raise ValueError(f"seeds must lie in 0..{SEED_MAX}")
        self.loaded = loaded
        self.line_index, self.text = first_line(lines)
        self._page = list(lines[: self.line_index + 1])  # blank lines, then the first line
        from engine.layout import check_tries

        check_tries(tries)
        self.bias = float(bias)
        self.primer = primer
        self.tries = tries  # as the page will be written: best of N (engine.layout.best_line)
        self.candidates = [Candidate(int(s)) for s in seeds]
        self._current = 0
        self._started = time.perf_counter()
        self.seconds = 0.0

    def steps(self):
        import torch

        from engine.fast import sampling_threads
        from engine.layout import write_lines
        from engine.sampler import past_last_character

        torch.set_num_threads(sampling_threads(self.loaded.model, keep_free=1))  # as WriteJob
        self._started = time.perf_counter()
        for k, cand in enumerate(self.candidates):
            self._current = k
            pen = np.zeros(2)
            step = None
            # the page's own sampling (line seed, best of N), cut after its first written line
            events = write_lines(
                self.loaded,
                self._page,
                seed=cand.seed,
                tries=self.tries,
                bias=self.bias,
                primer=self.primer,
            )
            for step in (e.step for e in events):
                if step.primed:
                    continue
                pen = pen + step.offset[0, :2]
                cand.points.append(pen)
                cand.pen_up.append(bool(step.offset[0, 2] > 0.5))
                yield
            if step is not None and step.phi is not None:
                cand.reached_end = bool(past_last_character(step.phi[:1])[0])
            cand.finished = True
            self.seconds = time.perf_counter() - self._started
            yield
        self._current = len(self.candidates)

    def snapshot(self) -> list[Candidate]:
        # copies: the worker thread goes on appending to the live lists
        return [
            Candidate(c.seed, list(c.points), list(c.pen_up), c.finished, c.reached_end)
            for c in self.candidates
        ]

    def progress(self) -> dict:
        done = sum(c.finished for c in self.candidates)
        return {"done": done, "count": len(self.candidates), "seconds": self.seconds}

    def result(self, stopped: bool) -> dict:
        return {"candidates": self.snapshot(), "stopped": stopped, **self.progress()}


class VariationCard(QPushButton):
    """One candidate: its ink fitted into the card, its seed below. Click (or Space/Enter with
    the keyboard) to choose it. The path is built once per change of the candidate (raw points
    while it is being written, the spline that exports draw once it is finished) and drawn
    through a scaling transform with a cosmetic pen, so a repaint costs one drawPath."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.candidate: Candidate | None = None
        self._path: QPainterPath | None = None
        self._bounds: tuple[float, float, float, float] | None = None
        self._key = None
        self.setMinimumSize(260, 110)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def set_candidate(self, cand: Candidate | None) -> None:
        key = None if cand is None else (cand.seed, len(cand.points), cand.finished)
        if key == self._key:
            return  # unchanged: most cards, most of the time
        self._key, self.candidate = key, cand
        self._path = self._bounds = None
        if cand is None:
            self.setToolTip("")
            self.setEnabled(False)
            self.update()
            return
        strokes = [s for s in cand.strokes() if len(s)]
        if cand.finished:
            strokes = smooth_strokes(strokes)
        if strokes:
            path = QPainterPath()
            for stroke in strokes:
                path.moveTo(float(stroke[0, 0]), float(stroke[0, 1]))
                for x, y in stroke[1:].tolist():
                    path.lineTo(x, y)
                if len(stroke) == 1:  # a dot
                    path.lineTo(float(stroke[0, 0]) + 1e-3, float(stroke[0, 1]))
            allp = np.concatenate(strokes)
            (x0, y0), (x1, y1) = allp.min(0), allp.max(0)
            self._path, self._bounds = path, (float(x0), float(y0), float(x1), float(y1))
        self.setEnabled(cand.finished)
        tip = f"Write the page with seed {cand.seed}"
        if cand.finished and not cand.reached_end:
            tip += " (this line stopped at the step limit: the text may be cut short)"
        self.setToolTip(tip)
        self.update()

    def caption(self) -> str:
        c = self.candidate
        if c is None:
            return "waiting"
        if not c.finished:
            return f"seed {c.seed}: writing…" if c.points else "waiting"
        return f"seed {c.seed}" + ("" if c.reached_end else " (cut short)")

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().paintEvent(event)
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(QColor(90, 90, 90))
        p.drawText(
            QRectF(self.rect()).adjusted(8, 0, -8, -6),
            Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignHCenter,
            self.caption(),
        )
        r = QRectF(self.rect()).adjusted(10, 8, -10, -26)
        if self._path is None or r.width() <= 0 or r.height() <= 0:
            p.end()
            return
        x0, y0, x1, y1 = self._bounds
        w, h = max(x1 - x0, 1e-6), max(y1 - y0, 1e-6)
        s = min(r.width() / w, r.height() / h)
        t = QTransform()  # y grows down in data and on screen alike
        t.translate(r.left() + (r.width() - w * s) / 2, r.top() + (r.height() - h * s) / 2)
        t.scale(s, s)
        t.translate(-x0, -y0)
        pen = QPen(INK if self.isEnabled() else QColor(120, 130, 170))
        pen.setWidthF(1.6)
        pen.setCosmetic(True)  # 1.6 device pixels whatever the scale
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
        p.setTransform(t)
        p.setPen(pen)
        p.drawPath(self._path)
        p.end()


class VariationsDialog(QDialog):
    """Writes the page's first line with several seeds, side by side; `chosen(seed)` when the
    user picks one. Not modal: the page and its views stay usable while the cards fill in."""

    chosen = Signal(int)
    written = Signal(object)  # the job's result dict, when every card is written or stopped
    more_requested = Signal()  # "New variations": the owner starts again with its settings

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Variations")
        self.controller = WorkerController(self)
        self._started_once = False
        self.intro = QLabel()
        self.intro.setWordWrap(True)
        self.status = QLabel()
        self.count = QSpinBox()
        self.count.setRange(2, MAX_COUNT)
        self.count.setValue(DEFAULT_COUNT)
        self.count.setToolTip("How many variations to write")
        self.more = QPushButton("New variations")
        self.more.setToolTip("Write the line again with new seeds")
        self.stop_button = QPushButton("Stop")
        self.close_button = QPushButton("Close")
        self.grid = QGridLayout()
        self.grid.setSpacing(8)
        self.cards: list[VariationCard] = []
        grid_w = QWidget()
        grid_w.setLayout(self.grid)
        bottom = QHBoxLayout()
        bottom.addWidget(QLabel("Variations"))
        bottom.addWidget(self.count)
        bottom.addWidget(self.more)
        bottom.addWidget(self.stop_button)
        bottom.addStretch(1)
        bottom.addWidget(self.status)
        bottom.addWidget(self.close_button)
        box = QVBoxLayout(self)
        box.addWidget(self.intro)
        box.addWidget(grid_w, 1)
        box.addLayout(bottom)
        self.resize(860, 480)

        self.more.clicked.connect(self.more_requested)
        self.stop_button.clicked.connect(self.controller.request_stop)
        self.close_button.clicked.connect(self.close)
        self.controller.partial_result.connect(self._show)
        self.controller.progress.connect(self._progress)
        self.controller.finished.connect(self._finished)
        self.controller.failed.connect(self._failed)
        self._set_busy(False)

    # -- running ------------------------------------------------------------------------------
    def start(self, loaded, lines, *, bias: float, primer=None, seeds=None, tries=1) -> bool:
        """Write the first line of `lines` with `seeds` (default: random, as many as the count
        box says). False (with the reason shown) when it cannot start."""
        if self.controller.is_running():
            self.controller.shutdown()
        try:
            index, text = first_line(lines)
            seeds = list(seeds) if seeds is not None else random_seeds(self.count.value(), index)
            job = VariationsJob(loaded, lines, seeds, bias=bias, primer=primer, tries=tries)
        except Exception as exc:  # noqa: BLE001 - shown in the dialog, nothing else changes
            from studio.workers import describe_error

            self.status.setText(f"Cannot write: {describe_error(exc)}")
            return False
        self._started_once = True
        self.intro.setText(
            f"The first line, “{text}”, written with {len(seeds)} seeds (bias {bias:.2f}"
            + (f", best of {tries}" if tries > 1 else "")
            + (", your style" if primer is not None else "")
            + "). Click the one you like: the page is written with its seed."
        )
        self._layout_cards(len(seeds))
        for card, cand in zip(self.cards, job.snapshot()):
            card.set_candidate(cand)
        self.status.setText("Writing…")
        self.controller.start(job, interval=1 / 15)  # cards need no 30 Hz
        self._set_busy(True)
        return True

    def _layout_cards(self, n: int) -> None:
        while len(self.cards) < n:
            card = VariationCard()
            card.clicked.connect(lambda _=False, c=card: self._choose(c))
            self.cards.append(card)
        for card in self.cards:
            self.grid.removeWidget(card)
            card.hide()
        cols = 2 if n <= 4 else 3
        for k in range(n):
            self.grid.addWidget(self.cards[k], k // cols, k % cols)
            self.cards[k].set_candidate(None)
            self.cards[k].show()

    def _choose(self, card: VariationCard) -> None:
        if card.candidate is None or not card.candidate.finished:
            return
        self.controller.request_stop()  # one sampler at a time: the page is next
        self.chosen.emit(card.candidate.seed)
        self.close()

    # -- worker signals -----------------------------------------------------------------------
    def _show(self, cands: list[Candidate]) -> None:
        for card, cand in zip(self.cards, cands):
            card.set_candidate(cand)

    def _progress(self, p: dict) -> None:
        self.status.setText(f"Writing {min(p['done'] + 1, p['count'])} of {p['count']}…")

    def _finished(self, result: dict) -> None:
        self._show(result["candidates"])
        self._set_busy(False)
        n, done = result["count"], result["done"]
        if result["stopped"]:
            self.status.setText(f"Stopped: {done} of {n} written.")
        else:
            self.status.setText(f"{n} variations in {result['seconds']:.2f} s.")
        self.written.emit(result)

    def _failed(self, message: str) -> None:
        self._set_busy(False)
        self.status.setText(f"Writing failed: {message}")

    def _set_busy(self, busy: bool) -> None:
        self.stop_button.setEnabled(busy)
        self.more.setEnabled(not busy and self._started_once)
        self.count.setEnabled(not busy)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.controller.request_stop()
        super().closeEvent(event)

    def shutdown(self) -> None:
        self.controller.shutdown()
