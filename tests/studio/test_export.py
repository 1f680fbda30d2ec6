"""Exports of the written page: SVG, PNG, animation, InkML."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def written(qtbot, window, tiny_synthesis):
    window.models.set_loaded(tiny_synthesis, "tiny")
    window.write_tab.text.setPlainText("ab")
    with qtbot.waitSignal(window.write_tab.controller.finished, timeout=60000):
        window.write_tab.write()
    return window


def test_svg_has_one_path_per_stroke(written, tmp_path):
    strokes, _ = written.current_ink()
    out = written.export("svg", str(tmp_path / "page.svg"))
    root = ET.parse(out).getroot()
    paths = root.findall(".//{http://www.w3.org/2000/svg}path")
    assert len(paths) == len(strokes) > 0


def test_png_decodes_with_ink_pixels(written, tmp_path):
    out = written.export("png", str(tmp_path / "page.png"), height=200, transparent=False)
    img = np.asarray(Image.open(out).convert("L"))
    assert img.shape[0] == 200
    assert (img < 128).sum() > 20 and (img > 250).mean() > 0.5


def test_transparent_png(written, tmp_path):
    out = written.export("png", str(tmp_path / "t.png"), height=100, transparent=True)
    img = Image.open(out)
    assert img.mode == "RGBA" and np.asarray(img)[..., 3].min() == 0


def test_animation_exports(written, tmp_path):
    svg = written.export("animation", str(tmp_path / "anim.svg"))
    assert "<animate" in open(svg).read()
    gif = written.export("animation", str(tmp_path / "anim.gif"))
    assert Image.open(gif).n_frames > 1


def test_inkml_round_trip(written, tmp_path):
    pytest.importorskip("engine.data.inkml")
    from studio.export import import_inkml

    strokes, text = written.current_ink()
    out = written.export("inkml", str(tmp_path / "page.inkml"))
    ink = import_inkml(out)
    assert len(ink.strokes) == len(strokes)
    assert np.allclose(np.concatenate(ink.strokes), np.concatenate(strokes), atol=1e-2)


def test_trace_export_holds_what_the_views_showed(written, tmp_path, messages):
    snap = written.session.latest
    out = written.export("trace", str(tmp_path / "page.npz"))
    z = np.load(out, allow_pickle=False)
    assert int(z["lines"]) == 1 and str(z["line0_text"]) == "ab"
    assert len(z["line0_offsets"]) == snap.n_points
    # the attention view's phi(t, u) is the trace's, less the end-of-text column
    np.testing.assert_allclose(z["line0_phi"][:, :-1], snap.phi[0], rtol=1e-6)
    np.testing.assert_allclose(z["line0_pi"], snap.pi, rtol=1e-6)  # the weights strip
    assert z["line0_mu"].shape == (snap.n_points, snap.pi.shape[1], 2)
    assert float(z["bias"]) == written.write_tab.bias.value()
    assert written.export("trace", "/proc/forbidden.npz") is None
    assert messages[-1][1] == "Export failed" and "Traceback" not in messages[-1][2]


def test_trace_export_before_writing_says_so(window, messages):
    assert window.export("trace", "/tmp/never.npz") is None
    assert messages[-1][1] == "Nothing to export"


def test_export_errors_are_messages(written, tmp_path, messages):
    assert written.export("png", str(tmp_path / "missing-dir" / "x" / "p.png"), height=50) in (
        None,
        str(tmp_path / "missing-dir" / "x" / "p.png"),
    )
    assert written.export("svg", "/proc/forbidden.svg") is None
    assert messages and messages[-1][1] == "Export failed"
    assert "Traceback" not in messages[-1][2]


def test_captured_ink_exports_with_pressure(window, tmp_path):
    from engine.data.ink import Ink
    from engine.data.inkml import read_inkml

    t = np.linspace(0, 1, 30)
    ink = Ink(
        "hi",
        [np.c_[t * 100, 20 * np.sin(t * 6) + 50], np.c_[t * 50 + 120, t * 40 + 30]],
        pressure=[0.2 + 0 * t, 0.9 + 0 * t],
    )
    window.capture_tab.canvas.load_ink(ink)
    window.capture_tab.written_text.setText("hi")
    svg = window.export("svg", str(tmp_path / "cap.svg"), source="capture")
    paths = ET.parse(svg).getroot().findall(".//{http://www.w3.org/2000/svg}path")
    assert len(paths) == 2
    light, heavy = (float(p.get("stroke-width")) for p in paths)
    assert heavy > 3 * light  # the harder-pressed stroke is drawn wider
    png = window.export("png", str(tmp_path / "cap.png"), source="capture", height=120)
    assert (np.asarray(Image.open(png).convert("L")) < 128).sum() > 20
    back = read_inkml(window.export("inkml", str(tmp_path / "cap.inkml"), source="capture"))
    assert back.text == "hi" and back.pressure is not None
    assert np.allclose(back.pressure[1], 0.9, atol=1e-3)


def test_captured_ink_menu_actions_export_the_capture(window, monkeypatch):
    calls = []
    monkeypatch.setattr(window, "export", lambda kind, **kw: calls.append((kind, kw)))
    for act in window.findChildren(type(window.menuBar().actions()[0])):
        if act.text().startswith(("SVG (pressure", "PNG (pressure", "InkML (with")):
            act.trigger()
    assert sorted(calls) == [(k, {"source": "capture"}) for k in ("inkml", "png", "svg")]
