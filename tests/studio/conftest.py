"""Studio test fixtures: every user path goes to a temporary folder, models are tiny."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def studio_home(tmp_path, monkeypatch):
    """Point studio.paths (data, config, styles, trained models) at a temporary folder."""
    home = tmp_path / "home"
    monkeypatch.setenv("HANDWRITING_STUDIO_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_synthesis():
    from studio.model_manager import make_untrained

    return make_untrained("tiny", "synthesis")


@pytest.fixture(scope="session")
def tiny_prediction():
    from studio.model_manager import make_untrained

    return make_untrained("tiny", "prediction")


def handwritten_ink(text: str = "hi", seed: int = 0):
    """A few loopy strokes that look enough like a written line for preprocessing."""
    from engine.data.ink import Ink

    rng = np.random.default_rng(seed)
    strokes = []
    for k in range(max(2, len(text))):
        t = np.linspace(0, 2 * np.pi, 40)
        x = 30 * k + 8 * np.cos(t) + t * 3
        y = 50 + 15 * np.sin(t) + rng.normal(0, 0.3, t.shape)
        strokes.append(np.column_stack([x, y]))
    pressure = [np.linspace(0.3, 0.9, len(s)) for s in strokes]
    return Ink(text=text, strokes=strokes, pressure=pressure)


@pytest.fixture
def messages(monkeypatch):
    """Modal message boxes would block a test forever: record them instead."""
    from PySide6.QtWidgets import QMessageBox

    shown = []

    def fake(kind, answer):
        def show(parent, title, text, *a, **k):
            shown.append((kind, title, text))
            return answer

        return show

    yes, ok = QMessageBox.StandardButton.Yes, QMessageBox.StandardButton.Ok
    monkeypatch.setattr(QMessageBox, "warning", fake("warning", ok))
    monkeypatch.setattr(QMessageBox, "critical", fake("critical", ok))
    monkeypatch.setattr(QMessageBox, "information", fake("information", ok))
    monkeypatch.setattr(QMessageBox, "question", fake("question", yes))
    return shown


@pytest.fixture
def window(qtbot, tmp_path, messages):
    from studio.main_window import MainWindow
    from studio.styles import StyleStore

    styles = StyleStore(bundled_dir=tmp_path / "no-bundled-styles")
    w = MainWindow(styles=styles)
    qtbot.addWidget(w)
    w.force_close = True
    w.show()  # hidden views skip their refresh
    qtbot.waitExposed(w)
    yield w
    w.train_tab.shutdown()
    w.write_tab.shutdown()
    w.capture_tab.shutdown()
    w.models.wait()


@pytest.fixture(scope="module")
def dataset():
    """Six short handwritten lines as a training dataset (one per test module)."""
    from studio.training import dataset_from_inks

    texts = ["hi", "ho", "ha", "he", "hu", "hy"]
    return dataset_from_inks([handwritten_ink(t, seed=i) for i, t in enumerate(texts)], "test")


@pytest.fixture
def start_training():
    """start(tab, run_dir, dataset, steps, **overrides): start a tiny in-app training run with
    one thread, previews and validation every 2 steps and no periodic checkpoints, and assert
    that the Train tab accepted it."""

    def start(tab, run_dir, dataset, steps, **overrides):
        args = dict(
            dataset=dataset,
            preset="tiny",
            steps=steps,
            batch_size=2,
            max_len=60,
            run_dir=run_dir,
            preview_every=2,
            preview_text="hi",
            val_every=2,
            ckpt_every=0,
            threads=1,
        )
        args.update(overrides)
        assert tab.start(**args)

    return start
