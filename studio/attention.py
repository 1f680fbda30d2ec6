"""Attention view (paper Fig. 13): the window weights phi(t, u), x = timestep, y = characters.

Fills while the pen moves; hovering shows the value; the session cursor draws a line.
Shows the line being written, or the line the cursor is on after writing.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from studio.canvas import configure_heatmap, start_refresh_timer

REFRESH_MS = 100


class AttentionView(QWidget):
    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.plot_widget = pg.PlotWidget(background="w")
        self.plot = self.plot_widget.getPlotItem()
        self.plot.invertY(True)
        self.image, self.cursor_line = configure_heatmap(
            self.plot, "timestep t (pen points)", "character u"
        )
        self.hover = QLabel("Hover over the heatmap to read phi(t, u).")
        self.title = QLabel("Attention: window weights phi(t, u) (Fig. 13)")
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.plot_widget, 1)
        layout.addWidget(self.hover)
        self.phi = np.zeros((0, 0), np.float32)  # (T, U) shown
        self.text = ""
        self.line_index = -1
        self.line_offset = 0
        self._drawn = (-1, -1)
        self.plot_widget.scene().sigMouseMoved.connect(self._on_mouse)
        self.timer = start_refresh_timer(self, REFRESH_MS)
        session.started.connect(self._clear)
        session.finished.connect(lambda _s: self.refresh())
        session.cursor_changed.connect(self._on_cursor)

    def _clear(self) -> None:
        self.phi = np.zeros((0, 0), np.float32)
        self.image.clear()
        self.line_index = -1
        self._drawn = (-1, -1)
        self.cursor_line.setVisible(False)

    def _wanted_line(self, snap) -> int:
        if self.session.cursor >= 0:
            return snap.line_of(self.session.cursor)
        return min(snap.current_line, len(snap.phi) - 1)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self.refresh()

    def refresh(self) -> None:
        if not self.isVisible():
            return  # hidden views cost nothing; showEvent catches up
        snap = self.session.latest
        if snap is None or not snap.phi:
            return
        line = self._wanted_line(snap)
        key = (self.session.version, line)
        if key == self._drawn or line < 0:
            return
        self._drawn = key
        text = snap.lines[line] or ""
        self.phi = snap.phi[line]
        self.line_offset = snap.line_start[line]
        if line != self.line_index or text != self.text:
            self.line_index, self.text = line, text
            self._set_ticks()
            self.title.setText(f"Attention phi(t, u), line {line + 1}: {text!r}")
        if self.phi.size:
            # rows = characters, cols = timesteps; phi is a distribution over u, so 0..1 levels
            self.image.setImage(self.phi.T, autoLevels=False, levels=(0.0, 1.0))
            self.image.setRect(0, 0, self.phi.shape[0], self.phi.shape[1])
        else:  # the line's candidates are still being drawn (Best of > 1): no window yet
            self.image.clear()
        # the new line's rows even before its window arrives (else the last line's range stays)
        self.plot.setRange(xRange=(0, max(len(self.phi), 50)), yRange=(0, len(text)), padding=0)

    def _set_ticks(self) -> None:
        """One tick per character; a minor level keeps labels apart when rows are thin."""
        text = self.text
        rows_px = max(self.plot.vb.height(), 1.0) / max(len(text), 1)
        every = max(1, int(np.ceil(13.0 / rows_px)))
        label = lambda c: c if c != " " else "␣"  # noqa: E731
        major = [(u + 0.5, label(c)) for u, c in enumerate(text) if u % every == 0]
        minor = [(u + 0.5, "") for u in range(len(text)) if u % every]
        self.plot.getAxis("left").setTicks([major, minor])
        self._tick_rows = (len(text), every)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if self.text:
            self._set_ticks()

    def _on_cursor(self, index: int) -> None:
        self.refresh()
        if index < 0:
            self.cursor_line.setVisible(False)
            return
        self.cursor_line.setPos(index - self.line_offset + 0.5)
        self.cursor_line.setVisible(True)

    def value_at(self, t: int, u: int) -> float | None:
        if 0 <= t < self.phi.shape[0] and 0 <= u < self.phi.shape[1]:
            return float(self.phi[t, u])
        return None

    def _on_mouse(self, pos) -> None:
        p = self.plot.vb.mapSceneToView(pos)
        t, u = int(np.floor(p.x())), int(np.floor(p.y()))
        v = self.value_at(t, u)
        if v is not None:
            self.hover.setText(f"t = {t}, u = {u} ({self.text[u]!r}): phi = {v:.3f}")
