"""The main window: opens, writes with live views, stops, flags unsupported characters."""

import numpy as np
import pytest
from PySide6.QtGui import QTextCursor


def test_window_opens_with_tabs_and_no_model_state(window):
    names = [window.tabs.tabText(i) for i in range(window.tabs.count())]
    assert names[:3] == ["Write", "Capture && style", "Train"]
    window.models.load_bundled("synthesis") or None
    if window.models.loaded is None and not window.models.loading:
        assert "No synthesis model is installed" in window.models.status
        assert not window.write_tab.write_button.isEnabled()
        assert not window.write_tab.untrained_button.isHidden()


def _write(qtbot, window, text, model):
    tab = window.write_tab
    window.models.set_loaded(model, "tiny")
    tab.text.setPlainText(text)
    with qtbot.waitSignal(tab.controller.finished, timeout=60000) as blocker:
        tab.write()
    return blocker.args[0]


def test_write_produces_ink_and_one_phi_row_per_character(qtbot, window, tiny_synthesis):
    snap = _write(qtbot, window, "ab cd", tiny_synthesis)
    assert snap.n_points > 0 and not snap.stopped
    assert window.write_tab.last_first_ink is not None
    canvas = window.write_tab.canvas
    canvas.refresh()
    drawn = np.column_stack(canvas.ink.getData())
    drawn = drawn[np.isfinite(drawn[:, 0])]
    strokes = len(snap.strokes())
    assert len(drawn) == snap.n_points + 3 * (snap.n_points - strokes)  # the spline, 4 per step
    gap = np.abs(drawn[None] - snap.points[:, None]).sum(-1).min(1)
    assert gap.max() < 1e-9  # it passes through every point the network wrote
    view = window.write_tab.attention
    view.refresh()
    assert view.phi.shape == (snap.n_points, len("ab cd"))
    ticks = view.plot.getAxis("left")._tickLevels[0]
    assert [t for _, t in ticks] == ["a", "b", "␣", "c", "d"]
    assert view.image.image.shape == (len("ab cd"), snap.n_points)
    window.write_tab.views.setCurrentWidget(window.write_tab.density)
    window.write_tab.density.refresh()
    assert window.write_tab.density.weights.image.shape == (3, snap.n_points)
    assert window.write_tab.timeline.isEnabled()


def test_timeline_scrubs_canvas_and_heatmap(qtbot, window, tiny_synthesis):
    snap = _write(qtbot, window, "abc", tiny_synthesis)
    tab = window.write_tab
    tab.timeline.setValue(snap.n_points // 2)
    assert window.session.cursor == snap.n_points // 2
    (cx,), (cy,) = tab.canvas.cursor_marker.getData()
    assert (cx, cy) == tuple(snap.points[snap.n_points // 2])
    assert tab.attention.cursor_line.isVisible()
    assert tab.attention.cursor_line.value() == snap.n_points // 2 + 0.5


def test_multiline_text_wraps_to_page_width(qtbot, window, tiny_synthesis):
    window.write_tab.page_width.setValue(6)
    snap = _write(qtbot, window, "abc def ghi", tiny_synthesis)
    assert snap.lines == ["abc", "def", "ghi"]
    assert len(snap.line_start) == 3


def test_stop_stops(qtbot, window, tiny_synthesis):
    tab = window.write_tab
    window.models.set_loaded(tiny_synthesis, "tiny")
    tab.text.setPlainText("a long text " * 20)
    with qtbot.waitSignal(tab.controller.partial_result, timeout=30000):
        tab.write()
    with qtbot.waitSignal(tab.controller.finished, timeout=30000) as blocker:
        tab.stop_button.click()
    snap = blocker.args[0]
    assert snap.stopped
    assert not tab.controller.is_running()
    assert tab.write_button.isEnabled() and not tab.stop_button.isEnabled()
    assert "Stopped" in tab.banner.text()


def test_unsupported_characters_are_flagged_before_writing(qtbot, window, tiny_synthesis):
    tab = window.write_tab
    window.models.set_loaded(tiny_synthesis, "tiny")
    tab.text.setPlainText("café ok")
    assert tab.banner.isVisible() or not tab.banner.isHidden()
    assert "'é'" in tab.banner.text()
    block = tab.text.document().firstBlock()
    formats = block.layout().formats()
    assert [(f.start, f.length) for f in formats] == [(3, 1)]
    tab.write()
    assert not tab.controller.is_running()  # nothing started
    cursor = tab.text.textCursor()
    cursor.setPosition(3)
    cursor.movePosition(QTextCursor.MoveOperation.Right, QTextCursor.MoveMode.KeepAnchor)
    cursor.insertText("e")
    assert tab.banner.isHidden()


def test_worker_failure_shows_message_and_app_stays_usable(qtbot, window, tiny_synthesis):
    tab = window.write_tab

    class Broken:
        kind = "synthesis"
        alphabet = tiny_synthesis.alphabet
        norm = tiny_synthesis.norm
        model = None  # generate() fails on it inside the worker

    window.models.set_loaded(Broken(), "broken")
    tab.text.setPlainText("ab")
    with qtbot.waitSignal(tab.controller.failed, timeout=30000):
        tab.write()
    qtbot.waitUntil(lambda: not tab.controller.is_running())
    assert "Writing failed" in tab.banner.text()
    snap = _write(qtbot, window, "ab", tiny_synthesis)
    assert snap.n_points > 0


def test_scribble_with_prediction_model(qtbot, window, tiny_prediction):
    tab = window.write_tab
    window.models.set_loaded(tiny_prediction, "tiny prediction")
    assert not tab.scribble_button.isHidden() and not tab.write_button.isEnabled()
    with qtbot.waitSignal(tab.controller.finished, timeout=60000) as blocker:
        tab.scribble_button.click()
    snap = blocker.args[0]
    assert snap.n_points > 0 and snap.lines == [None]


def test_settings_persist(qtbot, window, studio_home):
    from studio.main_window import MainWindow

    window.write_tab.text.setPlainText("remember me")
    window.write_tab.bias.set_value(1.0)
    window.write_tab.tries.setValue(5)
    window.save_settings()
    assert str(window.settings.fileName()).startswith(str(studio_home))
    again = MainWindow(styles=window.styles)
    qtbot.addWidget(again)
    assert again.write_tab.text.toPlainText() == "remember me"
    assert again.write_tab.bias.value() == 1.0
    assert again.write_tab.tries.value() == 5


def test_bias_starts_at_the_default_and_presets_set_their_value(qtbot, window):
    from engine.sampler import DEFAULT_BIAS
    from studio.write_tab import BIAS_STOPS

    bias = window.write_tab.bias
    assert bias.value() == DEFAULT_BIAS and window.capture_tab.bias.value() == DEFAULT_BIAS
    assert bias.label.text() == f"{DEFAULT_BIAS:.2f}"
    for button, (_text, value, _tip) in zip(bias.stop_buttons, BIAS_STOPS, strict=True):
        with qtbot.waitSignal(bias.changed, timeout=1000, raising=False):
            button.click()
        assert bias.value() == value and bias.label.text() == f"{value:.2f}"


def test_bad_model_file_is_a_message(qtbot, window, tmp_path, messages):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"PK\x03\x04 not a model")
    with qtbot.waitSignal(window.models.failed, timeout=60000) as blocker:
        window.models.load_file(bad)
    assert "pickle" in blocker.args[0] or "not a Handwriting Studio model" in blocker.args[0]
    qtbot.waitUntil(lambda: not window.models.loading)
    assert window.models.loaded is None
    assert messages and messages[-1][:2] == ("warning", "Model not loaded")


def test_bundled_example_styles_prime_writing(qtbot, tiny_synthesis):
    from studio.styles import StyleStore, primer_from_ink

    store = StyleStore()
    examples = [s for s in store.list() if s.builtin]
    assert examples, "resources/styles/ should ship example styles"
    for s in examples:
        primer = primer_from_ink(store.load(s))
        assert primer.text and len(primer.offsets) > 10 * len(primer.text)


def test_model_details_show_the_network_spacing_and_training(qtbot, window, tmp_path):
    from engine.alphabet import Alphabet
    from engine.checkpoint import save_model
    from engine.models import HandwritingModel, preset
    from engine.strokes import NormStats

    model = HandwritingModel(preset("tiny", point_step=2.7))
    path = tmp_path / "sparse.safetensors"
    training = {"step": 1200, "device": "cpu", "wall_time_s": 600.0, "best_step": 1000,
                "best_validation": {"nats_per_sequence": -123.4}}  # fmt: skip
    save_model(path, model, Alphabet(), NormStats(), training)
    with qtbot.waitSignal(window.models.changed, timeout=60000):
        window.models.load_file(path)
    qtbot.waitUntil(lambda: window.models.loaded is not None and not window.models.loading)
    html = window.model_details_html()
    count = sum(p.numel() for p in model.parameters())
    for want in ("1 × 32 LSTM", "spaced 2.7 units", "about 9 per character", f"{count:,}",
                 "1,200 steps on cpu, 10 min", "-123.4 nats per line at step 1000"):  # fmt: skip
        assert want in html, want


def test_a_loaded_model_is_warmed_up_and_a_failing_warm_up_still_loads(
    qtbot, window, monkeypatch, caplog
):
    # the loading thread prepares the fast step (its weights cached on the model), so the
    # first Write does not pay for it
    with qtbot.waitSignal(window.models.changed, timeout=60000):
        window.models.create_untrained("synthesis")
    qtbot.waitUntil(lambda: window.models.loaded is not None and not window.models.loading)
    assert window.models.loaded.model.__dict__.get("_fast_weights")
    import gc

    # the objects alive at the first load are out of the garbage collector's full passes
    # (studio.model_manager._freeze_startup_objects)
    assert gc.get_freeze_count() > 0

    import engine.sampler

    def broken(*a, **k):
        raise RuntimeError("no kernel today")
        yield  # pragma: no cover

    monkeypatch.setattr(engine.sampler, "generate", broken)
    with qtbot.waitSignal(window.models.changed, timeout=60000):
        window.models.create_untrained("prediction")
    qtbot.waitUntil(lambda: not window.models.loading, timeout=60000)
    assert window.models.loaded.kind == "prediction"
    assert "warming up the model failed" in caplog.text


def test_the_page_is_written_best_of_the_tries_box(qtbot, window, tiny_synthesis):
    from engine.layout import DEFAULT_TRIES, best_line

    tab = window.write_tab
    assert tab.tries.value() == DEFAULT_TRIES
    tab.tries.setValue(2)
    tab.bias.set_value(1.0)
    tab.seed.setValue(12)
    snap = _write(qtbot, window, "ab", tiny_synthesis)
    rows, _ = best_line(tiny_synthesis, "ab", 2, seed=12, bias=1.0)
    want = np.cumsum([s.offset[0, :2] for s in rows if not s.primed], axis=0)
    np.testing.assert_allclose(snap.points - snap.points[0] + want[0], want)


def test_the_canvas_draws_a_draft_light_under_the_ink_and_drops_it(qtbot, window, tiny_synthesis):
    from studio.writing import WriteJob

    job = WriteJob(tiny_synthesis, ["ab"], bias=1.0, seed=6, tries=3)
    steps = job.steps()
    for _ in range(8):
        next(steps)
    session, canvas = window.session, window.write_tab.canvas
    session.begin()
    session.update(job.snapshot())
    canvas.refresh()
    x, _y = canvas.draft.getData()
    assert x is not None and np.isfinite(x).sum() >= 8  # the spline through 8 draft points
    assert canvas.ink.getData()[0] is None or len(canvas.ink.getData()[0]) == 0
    tip = canvas.tip.getData()
    assert tip[0][0] == pytest.approx(job.snapshot().draft[-1, 0])  # the pen is at the draft
    for _ in steps:
        pass
    session.finish(job.result(False))
    canvas.refresh(final=True)
    assert canvas.draft.getData()[0] is None or len(canvas.draft.getData()[0]) == 0
    assert np.isfinite(canvas.ink.getData()[0]).sum() > 0
