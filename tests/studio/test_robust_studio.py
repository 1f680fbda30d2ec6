"""The studio under faults: hostile text on the Write tab, a full disk while saving a style
or a checkpoint, a NaN step in the training worker, a pickle passed as a model, and closing
the window while a worker is busy. Each ends in a message and a usable window."""

from __future__ import annotations

import errno
import os
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.studio.conftest import handwritten_ink


def worker_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t is not threading.main_thread()]


def fill_canvas(canvas, ink):
    for s, pr in zip(ink.strokes, ink.pressure):
        for n, (x, y) in enumerate(s):
            (canvas.recorder.begin if n == 0 else canvas.recorder.add)(x, y, pr[n], (0, 0), n)
        canvas.recorder.end()


def disk_full_for(marker: str):
    """An os.replace that fails with ENOSPC for targets containing `marker`."""
    real = os.replace

    def replace(src, dst):
        if marker in str(dst):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst)

    return replace


# -- text on the Write tab --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "no text to write"),
        ("   \n    \n", "no text to write"),
        ("שלום עולם", "cannot write"),
        ("مرحبا", "cannot write"),
        ("hi 👋", "cannot write"),
        ("ok\x00", "cannot write"),
    ],
    ids=["empty", "whitespace", "hebrew", "arabic", "emoji", "control"],
)
def test_write_tab_refuses_bad_text_with_a_message(window, tiny_synthesis, text, words):
    tab = window.write_tab
    window.models.set_loaded(tiny_synthesis, "tiny")
    tab.text.setPlainText(text)
    tab.write()
    assert not tab.controller.is_running()
    assert words in tab.banner.text().lower()
    assert tab.write_button.isEnabled()


def test_write_tab_refuses_10000_characters_without_starting(window, tiny_synthesis):
    from engine.layout import MAX_TEXT_CHARS

    tab = window.write_tab
    window.models.set_loaded(tiny_synthesis, "tiny")
    tab.text.setPlainText("word " * 2000)
    tab.write()
    assert not tab.controller.is_running()
    assert f"at most {MAX_TEXT_CHARS}" in tab.banner.text()


def test_closing_while_writing_leaves_no_thread(qtbot, window, tiny_synthesis):
    tab = window.write_tab
    window.models.set_loaded(tiny_synthesis, "tiny")
    tab.text.setPlainText("a long text to write " * 10)
    before = worker_threads()
    with qtbot.waitSignal(tab.controller.partial_result, timeout=30000):
        tab.write()
    assert tab.controller.is_running()
    window.close()
    assert not tab.controller.is_running()
    qtbot.waitUntil(lambda: worker_threads() == before, timeout=5000)


# -- saving styles with a full disk -----------------------------------------------------------


def test_a_failed_style_save_keeps_the_old_style(studio_home, monkeypatch):
    from engine.checkpoint import StorageError
    from engine.data.native import load_ink
    from studio.styles import StyleStore

    store = StyleStore(bundled_dir=studio_home / "none")
    first = store.save("mine", handwritten_ink("hi"))
    before = first.path.read_bytes()
    monkeypatch.setattr(os, "replace", disk_full_for("mine.json"))
    with pytest.raises(StorageError, match="disk is full"):
        store.save("mine", handwritten_ink("ho", seed=3), overwrite=True)
    assert first.path.read_bytes() == before
    assert load_ink(first.path).text == "hi"
    assert [s.name for s in store.list()] == ["mine"]  # no temporary shows up as a style


def test_capture_tab_reports_a_full_disk_and_stays_usable(window, tiny_synthesis, monkeypatch):
    capture = window.capture_tab
    window.models.set_loaded(tiny_synthesis, "tiny")
    fill_canvas(capture.canvas, handwritten_ink("hi"))
    capture.written_text.setText("hi")
    with monkeypatch.context() as m:
        m.setattr(os, "replace", disk_full_for("full.json"))
        assert not capture.save_style("full")
    assert "Cannot save the style" in capture.banner.text()
    assert "disk is full" in capture.banner.text()
    assert window.styles.find("full") is None
    assert capture.save_style("later")  # space again: the same ink saves
    assert window.styles.find("later") is not None


# -- training worker faults -------------------------------------------------------------------
# short sequences, no previews or validation, a checkpoint every 2 steps
FAULT_RUN = dict(max_len=40, preview_every=0, val_every=0, ckpt_every=2)


@pytest.mark.slow
def test_full_disk_during_training_is_a_message_and_keeps_the_last_checkpoint(
    start_training, qtbot, window, tmp_path, dataset, monkeypatch
):
    from engine.checkpoint import load_model

    tab = window.train_tab
    monkeypatch.setattr(os, "replace", disk_full_for("step-00000004"))
    with qtbot.waitSignal(tab.controller.failed, timeout=120000) as blocker:
        start_training(tab, tmp_path / "run", dataset, steps=8, **FAULT_RUN)
    assert "disk is full" in blocker.args[0]
    qtbot.waitUntil(lambda: not tab.is_training())
    assert "Training failed" in tab.banner.text() and tab.start_button.isEnabled()
    assert load_model(tmp_path / "run" / "checkpoints" / "step-00000002.safetensors")
    assert not list((tmp_path / "run" / "checkpoints").glob(".*.tmp"))


@pytest.mark.slow
def test_nan_step_in_the_training_worker_is_skipped(
    start_training, qtbot, window, tmp_path, dataset, monkeypatch
):
    from engine.train_data import HandwritingTask

    real_loss, calls = HandwritingTask.loss, []

    def loss(self, batch):
        calls.append(1)
        value, metrics = real_loss(self, batch)
        if len(calls) == 2:
            nan = float("nan")
            return value * nan, {**metrics, "nats_per_sequence": nan, "nats_per_point": nan}
        return value, metrics

    monkeypatch.setattr(HandwritingTask, "loss", loss)
    tab = window.train_tab
    with qtbot.waitSignal(tab.controller.finished, timeout=120000) as blocker:
        start_training(tab, tmp_path / "run", dataset, steps=4, **FAULT_RUN)
    snap = blocker.args[0]
    assert snap.step == 4 and not snap.stopped
    assert snap.train_steps == [1, 3, 4]  # the NaN step is not plotted
    assert np.isfinite(snap.train_loss).all()
    assert "Training failed" not in tab.banner.text()


# -- opening a model file ---------------------------------------------------------------------


class Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_opening_a_pickle_model_is_refused_and_its_payload_never_runs(qtbot, window, tmp_path):
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "model.safetensors"
    evil.write_bytes(pickle.dumps(Payload(str(marker)), protocol=4))
    with qtbot.waitSignal(window.models.failed, timeout=60000) as blocker:
        window.models.load_file(evil)
    assert "pickle" in blocker.args[0]
    assert not marker.exists()
    qtbot.waitUntil(lambda: not window.models.loading)
    assert window.models.loaded is None


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00" * 100, b"{not json", b"PK\x03\x04zip"],
    ids=["empty", "zeros", "not-json", "zip"],
)
def test_opening_a_broken_model_is_a_message(qtbot, window, tmp_path, content):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)
    with qtbot.waitSignal(window.models.failed, timeout=60000) as blocker:
        window.models.load_file(path)
    assert str(path) in blocker.args[0]
    assert "Unexpected error" not in blocker.args[0]


# -- where files live -------------------------------------------------------------------------


def test_user_files_live_in_the_platform_folders(monkeypatch, tmp_path):
    import sys

    import platformdirs

    from studio import paths

    monkeypatch.delenv("HANDWRITING_STUDIO_HOME")
    if sys.platform.startswith("linux"):
        for var, sub in [("XDG_DATA_HOME", "d"), ("XDG_CONFIG_HOME", "c"), ("XDG_STATE_HOME", "s")]:
            monkeypatch.setenv(var, str(tmp_path / sub))
    name = paths.APP_NAME
    assert paths.data_dir() == Path(platformdirs.user_data_dir(name, appauthor=False))
    assert paths.styles_dir().parent == paths.data_dir()
    assert paths.models_dir().parent == paths.data_dir()
    assert paths.settings_file().parent == Path(platformdirs.user_config_dir(name, appauthor=False))
    assert paths.log_dir() == Path(platformdirs.user_log_dir(name, appauthor=False))
    if sys.platform.startswith("linux"):
        assert paths.styles_dir() == tmp_path / "d" / name / "styles"
        assert paths.log_dir() == tmp_path / "s" / name / "log"


def test_the_studio_log_file_records_messages(studio_home):
    import logging

    from studio import app

    root = logging.getLogger()
    before = list(root.handlers)
    app._log_to_file()
    added = [h for h in root.handlers if h not in before]
    try:
        logging.getLogger("studio.test").warning("a line for the log file")
        for h in added:
            h.flush()
        text = (studio_home / "logs" / "studio.log").read_text()
        assert "WARNING studio.test: a line for the log file" in text
    finally:
        for h in added:
            root.removeHandler(h)
            h.close()
