"""The capture canvas, after Qt's tablet example (tabletcanvas.cpp): tablet tracking on,
tablet events record position, pressure, tilt and time; the mouse feeds the same recorder with
pressure 1; ink is painted once into an offscreen pixmap, with pressure setting the width."""

from __future__ import annotations

import time

import numpy as np
from PySide6.QtCore import QEvent, QPointF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QSizePolicy, QWidget

PEN_WIDTH = 4.0  # pixels at full pressure
INK = QColor(20, 30, 90)


class StrokeRecorder:
    """Points of the strokes being captured; one list per channel per stroke."""

    def __init__(self):
        self.strokes: list[dict] = []
        self.active = False

    def begin(self, x, y, pressure, tilt, t) -> None:
        self.strokes.append({"xy": [], "p": [], "tilt": [], "t": []})
        self.active = True
        self.add(x, y, pressure, tilt, t)

    def add(self, x, y, pressure, tilt, t) -> None:
        if not self.active:
            return
        s = self.strokes[-1]
        s["xy"].append((float(x), float(y)))
        s["p"].append(float(pressure))
        s["tilt"].append((float(tilt[0]), float(tilt[1])))
        s["t"].append(float(t))

    def end(self) -> None:
        self.active = False

    def undo(self) -> None:
        if self.strokes:
            self.strokes.pop()
        self.active = False

    def clear(self) -> None:
        self.strokes.clear()
        self.active = False

    def to_ink(self, text: str = "", device: dict | None = None):
        from engine.data.ink import Ink

        strokes = [s for s in self.strokes if s["xy"]]
        t0 = strokes[0]["t"][0] if strokes else 0.0
        return Ink(
            text=text,
            strokes=[np.array(s["xy"]) for s in strokes],
            times=[np.array(s["t"]) - t0 for s in strokes] if strokes else None,
            pressure=[np.array(s["p"]) for s in strokes] if strokes else None,
            tilt=[np.array(s["tilt"]) for s in strokes] if strokes else None,
            device=dict(device or {}),
        )


class CaptureCanvas(QWidget):
    changed = Signal()  # a stroke was added, undone or cleared

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_TabletTracking)
        self.setAttribute(Qt.WidgetAttribute.WA_StaticContents)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(400, 160)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.recorder = StrokeRecorder()
        self.pixmap = QPixmap()
        self.last_device = "mouse"
        self._t0 = time.monotonic()

    # -- input -------------------------------------------------------------------------------
    def tabletEvent(self, event) -> None:  # noqa: N802 - Qt override
        pos = event.position()
        tilt = (event.xTilt(), event.yTilt())
        t = event.timestamp() / 1000.0
        kind = event.type()
        self.last_device = "tablet"
        if kind == QEvent.Type.TabletPress:
            self.recorder.begin(pos.x(), pos.y(), event.pressure(), tilt, t)
        elif kind == QEvent.Type.TabletMove and self.recorder.active:
            self._extend(pos, event.pressure(), tilt, t)
        elif kind == QEvent.Type.TabletRelease and self.recorder.active:
            self._extend(pos, event.pressure(), tilt, t)
            self.recorder.end()
            self.changed.emit()
        event.accept()

    def _mouse_time(self) -> float:
        return time.monotonic() - self._t0

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.button() == Qt.MouseButton.LeftButton:
            p = event.position()
            self.last_device = "mouse"
            self.recorder.begin(p.x(), p.y(), 1.0, (0.0, 0.0), self._mouse_time())
            self._draw_dot(p, 1.0)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self.recorder.active and event.buttons() & Qt.MouseButton.LeftButton:
            self._extend(event.position(), 1.0, (0.0, 0.0), self._mouse_time())

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self.recorder.active and event.button() == Qt.MouseButton.LeftButton:
            self._extend(event.position(), 1.0, (0.0, 0.0), self._mouse_time())
            self.recorder.end()
            self.changed.emit()

    def _extend(self, pos: QPointF, pressure: float, tilt, t: float) -> None:
        s = self.recorder.strokes[-1]
        last = QPointF(*s["xy"][-1])
        last_p = s["p"][-1]
        self.recorder.add(pos.x(), pos.y(), pressure, tilt, t)
        self._draw_segment(last, pos, 0.5 * (last_p + pressure))

    # -- painting (offscreen pixmap, as in the tablet example) -------------------------------
    def _ensure_pixmap(self) -> None:
        dpr = self.devicePixelRatioF()
        size = self.size() * dpr
        if self.pixmap.size() != size:
            old = self.pixmap
            self.pixmap = QPixmap(size)
            self.pixmap.setDevicePixelRatio(dpr)
            self.pixmap.fill(Qt.GlobalColor.white)
            if not old.isNull():
                QPainter(self.pixmap).drawPixmap(0, 0, old)

    def _pen(self, pressure: float) -> QPen:
        pen = QPen(INK, max(0.6, PEN_WIDTH * float(pressure)))
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        return pen

    def _draw_segment(self, a: QPointF, b: QPointF, pressure: float) -> None:
        self._ensure_pixmap()
        p = QPainter(self.pixmap)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(self._pen(pressure))
        p.drawLine(a, b)
        p.end()
        self.update()

    def _draw_dot(self, a: QPointF, pressure: float) -> None:
        self._draw_segment(a, a, pressure)

    def redraw(self) -> None:
        self.pixmap = QPixmap()
        self._ensure_pixmap()
        p = QPainter(self.pixmap)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        for s in self.recorder.strokes:
            xy, pr = s["xy"], s["p"]
            for i in range(len(xy)):
                j = max(i - 1, 0)
                p.setPen(self._pen(0.5 * (pr[i] + pr[j])))
                p.drawLine(QPointF(*xy[j]), QPointF(*xy[i]))
        p.end()
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        self._ensure_pixmap()
        p = QPainter(self)
        p.drawPixmap(0, 0, self.pixmap)
        p.setPen(QPen(QColor(200, 210, 230), 1, Qt.PenStyle.DashLine))
        base = int(self.height() * 0.65)
        p.drawLine(10, base, self.width() - 10, base)  # a baseline to write on
        if not self.recorder.strokes:
            p.setPen(QColor(150, 150, 150))
            p.drawText(
                self.rect().adjusted(12, 12, -12, -12),
                Qt.AlignmentFlag.AlignTop,
                "Write one line here with a pen tablet or the mouse.",
            )

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self._ensure_pixmap()
        super().resizeEvent(event)

    # -- commands ----------------------------------------------------------------------------
    def undo(self) -> None:
        self.recorder.undo()
        self.redraw()
        self.changed.emit()

    def clear(self) -> None:
        self.recorder.clear()
        self.redraw()
        self.changed.emit()

    def load_ink(self, ink) -> None:
        """Show saved ink (scaled to fit) so a style can be inspected and re-saved."""
        self.recorder.clear()
        pts = ink.points()
        if len(pts):
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            k = min(
                (self.width() - 40) / max(hi[0] - lo[0], 1e-6),
                (self.height() - 40) / max(hi[1] - lo[1], 1e-6),
            )
            for i, s in enumerate(ink.strokes):
                xy = (s - lo) * k + 20
                pr = ink.pressure[i] if ink.pressure and ink.pressure[i] is not None else None
                for n, (x, y) in enumerate(xy):
                    p = 1.0 if pr is None else pr[n]
                    (self.recorder.begin if n == 0 else self.recorder.add)(x, y, p, (0, 0), n)
                self.recorder.end()
        self.redraw()
        self.changed.emit()

    def ink(self, text: str = ""):
        return self.recorder.to_ink(text, {"input": self.last_device})
