"""Mixture views (paper Fig. 10): accumulated pen-position densities over the page (top) and
the mixture weights pi_j(t) over time (bottom), both live while the pen moves."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from studio.canvas import configure_heatmap, configure_page, ink_path, start_refresh_timer

REFRESH_MS = 150
WEIGHTS_MAX_HEIGHT = 120  # px: the mixture-weight strip below the page


class DensityView(QWidget):
    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.layout_widget = pg.GraphicsLayoutWidget()
        self.layout_widget.setBackground("w")
        self.top = self.layout_widget.addPlot(row=0, col=0)
        configure_page(self.top)
        self.density = pg.ImageItem(axisOrder="row-major")
        self.density.setColorMap(pg.colormap.get("inferno"))
        self.top.addItem(self.density)
        self.ink = pg.PlotDataItem(pen=pg.mkPen(120, 200, 255, 110, width=1), connect="finite")
        self.top.addItem(self.ink)
        self.weights_plot = self.layout_widget.addPlot(row=1, col=0)
        self.weights, self.cursor_line = configure_heatmap(
            self.weights_plot, "timestep t", "component j"
        )
        self.cursor_dot = pg.ScatterPlotItem(
            size=12, brush=pg.mkBrush(0, 0, 0, 0), pen=pg.mkPen(120, 255, 120, width=2)
        )
        self.top.addItem(self.cursor_dot)
        # the page gets the height: the weights need only a strip (titles would take it back)
        self.layout_widget.ci.layout.setRowStretchFactor(0, 4)
        self.layout_widget.ci.layout.setRowStretchFactor(1, 1)
        self.layout_widget.ci.layout.setRowMaximumHeight(1, WEIGHTS_MAX_HEIGHT)
        layout = QVBoxLayout(self)
        layout.addWidget(
            QLabel(
                "Mixture densities (Fig. 10): above, the predicted pen-position densities "
                "accumulated over the page; below, the mixture weights pi_j(t)"
            )
        )
        layout.addWidget(self.layout_widget, 1)
        self.pi = np.zeros((0, 0), np.float32)
        self._drawn = -1
        self.timer = start_refresh_timer(self, REFRESH_MS)
        session.started.connect(self._clear)
        session.finished.connect(lambda _s: self.refresh())
        session.cursor_changed.connect(self._on_cursor)

    def _clear(self) -> None:
        self.density.clear()
        self.weights.clear()
        self.ink.setData([], [])
        self.cursor_line.setVisible(False)
        self.cursor_dot.setData([], [])
        self._drawn = -1

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self.refresh()

    def refresh(self) -> None:
        if not self.isVisible():
            return  # hidden views cost nothing; showEvent catches up
        snap = self.session.latest
        if snap is None or self.session.version == self._drawn:
            return
        self._drawn = self.session.version
        if snap.density is not None and snap.density.size:
            level = max(snap.density_level, 1e-9)
            self.density.setImage(snap.density, autoLevels=False, levels=(0.0, level))
            self.density.setRect(*snap.density_rect)
        x, y = ink_path(snap.points, snap.pen_up, snap.line_start)
        self.ink.setData(x, y)
        if snap.n_points:
            pts = snap.points
            pad = 0.05 * max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1]), 1e-6)
            self.top.setRange(
                xRange=(pts[:, 0].min() - pad, pts[:, 0].max() + pad),
                yRange=(pts[:, 1].min() - pad, pts[:, 1].max() + pad),
                padding=0,
            )
        self.pi = snap.pi
        if self.pi.size:
            self.weights.setImage(self.pi.T, autoLevels=False, levels=(0.0, 1.0))
            self.weights.setRect(0, 0, self.pi.shape[0], self.pi.shape[1])
            self.weights_plot.setRange(
                xRange=(0, max(self.pi.shape[0], 50)), yRange=(0, self.pi.shape[1]), padding=0
            )

    def _on_cursor(self, index: int) -> None:
        snap = self.session.latest
        if snap is None or not (0 <= index < snap.n_points):
            self.cursor_line.setVisible(False)
            self.cursor_dot.setData([], [])
            return
        self.cursor_line.setPos(index + 0.5)
        self.cursor_line.setVisible(True)
        p = snap.points[index]
        self.cursor_dot.setData([p[0]], [p[1]])
