"""The page: ink drawn as the pen moves, with the pen tip and the timeline cursor."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtGui import QColor

from engine.strokes import smooth_path

INK = QColor(20, 30, 90)
DRAFT = QColor(165, 172, 200)
REFRESH_MS = 40


def ink_path(points: np.ndarray, pen_up: np.ndarray, line_start) -> tuple[np.ndarray, np.ndarray]:
    """x, y arrays of the spline through the points (engine.strokes.smooth_path, as exports
    draw), with NaN between strokes (pen lifts and line breaks), for one curve item."""
    n = len(points)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    breaks = np.asarray(pen_up, bool).copy()
    for s in line_start[1:]:
        if 0 < s <= n:
            breaks[s - 1] = True
    breaks[-1] = False
    return smooth_path(points, breaks)


def configure_page(plot: pg.PlotItem) -> None:
    plot.invertY(True)  # engine convention: y grows down
    plot.setAspectLocked(True)
    plot.hideAxis("left")
    plot.hideAxis("bottom")
    plot.hideButtons()
    plot.setMenuEnabled(False)


def start_refresh_timer(view, interval_ms: int) -> QTimer:
    """The pull loop of the live views: call view.refresh() every interval (house style 11)."""
    timer = QTimer(view)
    timer.setInterval(interval_ms)
    timer.timeout.connect(view.refresh)
    timer.start()
    return timer


def configure_heatmap(plot: pg.PlotItem, x_label: str, y_label: str):
    """A time-by-row heatmap (Figs. 10 and 13): viridis image plus the hidden timeline cursor.
    Returns (image item, cursor line)."""
    plot.setLabel("bottom", x_label)
    plot.setLabel("left", y_label)
    plot.setMenuEnabled(False)
    image = pg.ImageItem(axisOrder="row-major")
    image.setColorMap(pg.colormap.get("viridis"))
    plot.addItem(image)
    cursor = pg.InfiniteLine(angle=90, pen=pg.mkPen(220, 60, 40, width=2))
    cursor.setVisible(False)
    plot.addItem(cursor)
    return image, cursor


class InkCanvas(pg.PlotWidget):
    """Pulls the session's latest snapshot on a timer and redraws what changed."""

    def __init__(self, session, parent=None, pen_width: float = 2.2):
        super().__init__(parent, background="w")
        self.session = session
        configure_page(self.getPlotItem())
        self.ink = pg.PlotDataItem(
            pen=pg.mkPen(INK, width=pen_width), connect="finite", antialias=True
        )
        # the first candidate of a line being chosen (Best of > 1): pencil-light, under the ink
        self.draft = pg.PlotDataItem(
            pen=pg.mkPen(DRAFT, width=pen_width * 0.8), connect="finite", antialias=True
        )
        self.tip = pg.ScatterPlotItem(size=9, brush=pg.mkBrush(220, 60, 40), pen=None)
        self.cursor_marker = pg.ScatterPlotItem(
            size=14, brush=pg.mkBrush(0, 0, 0, 0), pen=pg.mkPen(220, 60, 40, width=2)
        )
        for item in (self.draft, self.ink, self.tip, self.cursor_marker):
            self.addItem(item)
        self._drawn = -1
        self._n = 0
        self.timer = start_refresh_timer(self, REFRESH_MS)
        session.started.connect(self.clear_page)
        session.finished.connect(lambda _s: self.refresh(final=True))
        session.cursor_changed.connect(self._show_cursor)

    def clear_page(self) -> None:
        self.ink.setData([], [])
        self.draft.setData([], [])
        self.tip.setData([], [])
        self.cursor_marker.setData([], [])
        self._drawn = -1
        self._n = 0

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self.refresh()

    def refresh(self, final: bool = False) -> None:
        snap = self.session.latest
        if snap is None or self.session.version == self._drawn or not self.isVisible():
            return
        self._drawn = self.session.version
        x, y = ink_path(snap.points, snap.pen_up, snap.line_start)
        self.ink.setData(x, y)
        draft = snap.draft
        if len(draft):
            self.draft.setData(*ink_path(draft, snap.draft_pen_up, [0]))
        else:
            self.draft.setData([], [])
        shown = np.concatenate([snap.points, draft]) if len(draft) else snap.points
        grew = len(shown) != self._n
        self._n = len(shown)
        if len(shown) and self.session.running:
            tip = draft[-1] if len(draft) else snap.points[-1]
            self.tip.setData([tip[0]], [tip[1]])
        else:
            self.tip.setData([], [])
        if (grew or final) and len(shown):
            self._follow(shown)

    def _follow(self, points) -> None:
        """Keep the ink in view, changing the range in jumps: every range change repaints
        the whole page, so growing it a little on every tick would stall the UI."""
        lo, hi = points.min(axis=0), points.max(axis=0)
        vb = self.getPlotItem().getViewBox()
        (x0, x1), (y0, y1) = vb.viewRange()
        if self.session.running and lo[0] >= x0 and hi[0] <= x1 and lo[1] >= y0 and hi[1] <= y1:
            return
        size = np.maximum(hi - lo, 1e-6)
        if self.session.running:
            big = float(size.max())
            vb.setRange(
                xRange=(lo[0] - 0.05 * big, hi[0] + 0.5 * big),
                yRange=(lo[1] - 0.1 * big, hi[1] + 0.3 * big),
                padding=0,
            )
        else:
            self.autoRange(padding=0.05)

    def _show_cursor(self, index: int) -> None:
        snap = self.session.latest
        if snap is None or not (0 <= index < snap.n_points):
            self.cursor_marker.setData([], [])
            return
        p = snap.points[index]
        self.cursor_marker.setData([p[0]], [p[1]])
