"""Capture canvas (tablet and mouse), saved styles and priming from them."""

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QInputDevice, QPointingDevice, QTabletEvent
from PySide6.QtWidgets import QApplication

from tests.studio.conftest import handwritten_ink


@pytest.fixture
def capture(window, qtbot):
    window.tabs.setCurrentWidget(window.capture_tab)
    window.show()
    qtbot.waitExposed(window)
    return window.capture_tab


def _tablet(device, kind, canvas, local: QPointF, pressure: float, tilt=(10, -5)):
    top = canvas.window()
    scene = QPointF(canvas.mapTo(top, local.toPoint()))
    global_pos = QPointF(canvas.mapToGlobal(local.toPoint()))
    buttons = (
        Qt.MouseButton.NoButton if kind == QEvent.Type.TabletRelease else Qt.MouseButton.LeftButton
    )
    ev = QTabletEvent(
        kind,
        device,
        scene,
        global_pos,
        pressure,
        tilt[0],
        tilt[1],
        0.0,
        0.0,
        0.0,
        Qt.KeyboardModifier.NoModifier,
        Qt.MouseButton.LeftButton,
        buttons,
    )
    QApplication.sendEvent(top.windowHandle(), ev)


def test_tablet_events_are_recorded_with_pressure_and_tilt(capture, qtbot):
    canvas = capture.canvas
    device = QPointingDevice(
        "test stylus",
        1,
        QInputDevice.DeviceType.Stylus,
        QPointingDevice.PointerType.Pen,
        QInputDevice.Capability.Position
        | QInputDevice.Capability.Pressure
        | QInputDevice.Capability.XTilt
        | QInputDevice.Capability.YTilt,
        1,
        1,
    )  # kept referenced for the duration of the events
    pts = [QPointF(40 + 10 * i, 60 + 3 * i) for i in range(6)]
    pressures = [0.2, 0.4, 0.6, 0.8, 0.9, 0.5]
    _tablet(device, QEvent.Type.TabletPress, canvas, pts[0], pressures[0])
    for p, pr in zip(pts[1:-1], pressures[1:-1]):
        _tablet(device, QEvent.Type.TabletMove, canvas, p, pr)
    _tablet(device, QEvent.Type.TabletRelease, canvas, pts[-1], pressures[-1])
    assert len(canvas.recorder.strokes) == 1
    s = canvas.recorder.strokes[0]
    assert np.allclose(s["p"], pressures, atol=1e-6)
    assert np.allclose(np.array(s["xy"]), [(p.x(), p.y()) for p in pts], atol=1.0)
    assert s["tilt"][0] == (10.0, -5.0)
    ink = canvas.ink("x")
    assert ink.pressure is not None and ink.device["input"] == "tablet"
    # pressure shows in the ink: the heavy part of the stroke paints more pixels
    img = canvas.pixmap.toImage()
    assert img.pixelColor(QPoint(80, 72)).lightness() < 200


def test_mouse_input_records_strokes_and_undo_clear(capture, qtbot):
    canvas = capture.canvas
    for k in range(2):
        qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=QPoint(30 + 60 * k, 50))
        for i in range(1, 6):
            qtbot.mouseMove(canvas, QPoint(30 + 60 * k + 5 * i, 50 + 4 * i))
        qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=QPoint(60 + 60 * k, 75))
    strokes = canvas.recorder.strokes
    assert len(strokes) == 2 and all(len(s["xy"]) >= 3 for s in strokes)
    assert all(p == 1.0 for s in strokes for p in s["p"])
    canvas.undo()
    assert len(canvas.recorder.strokes) == 1
    canvas.clear()
    assert canvas.recorder.strokes == []


def _fill_canvas(canvas, ink):
    for s, pr in zip(ink.strokes, ink.pressure):
        for n, (x, y) in enumerate(s):
            (canvas.recorder.begin if n == 0 else canvas.recorder.add)(x, y, pr[n], (0, 0), n)
        canvas.recorder.end()


def test_save_style_then_prime_writing_from_it(qtbot, capture, window, tiny_synthesis, studio_home):
    window.models.set_loaded(tiny_synthesis, "tiny")
    _fill_canvas(capture.canvas, handwritten_ink("hi"))
    capture.written_text.setText("hi")
    assert capture.save_style("my hand")
    path = studio_home / "data" / "styles" / "my hand.json"
    assert path.is_file()
    assert window.write_tab.style_box.currentData() == "my hand"
    # the same name twice is refused with a message
    assert not capture.save_style("my hand")
    assert "already exists" in capture.banner.text()
    tab = window.write_tab
    tab.text.setPlainText("ok")
    primer = tab._primer()
    assert primer.text == "hi" and primer.offsets.shape[1] == 3
    with qtbot.waitSignal(tab.controller.finished, timeout=60000) as blocker:
        tab.write()
    snap = blocker.args[0]
    assert snap.n_points > 0
    assert snap.phi[0].shape[1] == 2  # the primer's characters are not shown as rows


def test_preview_in_my_style(qtbot, capture, window, tiny_synthesis):
    window.models.set_loaded(tiny_synthesis, "tiny")
    _fill_canvas(capture.canvas, handwritten_ink("hi"))
    capture.written_text.setText("hi")
    capture.preview_text.setText("abc")
    with qtbot.waitSignal(capture.controller.finished, timeout=60000) as blocker:
        capture.preview_button.click()
    assert blocker.args[0].n_points > 0


def test_rename_and_delete_styles(qtbot, capture):
    _fill_canvas(capture.canvas, handwritten_ink("hi"))
    capture.written_text.setText("hi")
    assert capture.save_style("first")
    capture.style_list.setCurrentRow(0)
    assert capture.rename_selected("second")
    assert [s.name for s in capture.styles.list()] == ["second"]
    capture.style_list.setCurrentRow(0)
    assert not capture.rename_selected("bad/name")
    assert "cannot be used" in capture.banner.text()
    capture.style_list.setCurrentRow(0)
    assert capture.delete_selected(confirm=False)
    assert capture.styles.list() == []


def test_saving_without_text_is_refused(capture):
    _fill_canvas(capture.canvas, handwritten_ink("hi"))
    capture.written_text.setText("")
    assert not capture.save_style("x")
    assert "text" in capture.banner.text()
