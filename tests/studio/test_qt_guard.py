"""The guard against PySide6 6.12.0's lost reference to True on every Signal.emit()."""

from __future__ import annotations

import sys

import pytest

from studio import qt_guard


def test_the_installed_binding_keeps_true_alive_across_many_emits(qapp):
    """Fails (or aborts the run) on a binding that leaks, unless the guard protects it."""
    from PySide6.QtCore import QObject, Signal

    class Source(QObject):
        fired = Signal(object)

    qt_guard.check_and_protect()
    source = Source()
    source.fired.connect(lambda value: None)
    for _ in range(20_000):  # more than True's whole reference count at start-up on 3.11
        source.fired.emit(1)
    assert sys.getrefcount(True) > 0


def test_a_leaking_binding_is_reported_and_the_singletons_protected(monkeypatch, caplog):
    added = []
    monkeypatch.setattr(qt_guard, "leaked_refs_per_emit", lambda: 1.0)
    monkeypatch.setattr(qt_guard, "_add_references", lambda obj, n: added.append((obj, n)))
    assert qt_guard.check_and_protect() is True
    assert "loses 1 reference(s) to True per signal emit" in caplog.text
    assert "PySide6-Essentials!=6.12.0" in caplog.text
    if sys.version_info < (3, 12):
        assert added == [(True, qt_guard.HEADROOM), (False, qt_guard.HEADROOM),
                         (None, qt_guard.HEADROOM)]  # fmt: skip
    else:
        assert added == []  # immortal singletons need nothing


def test_a_sound_binding_is_left_alone(monkeypatch):
    monkeypatch.setattr(qt_guard, "leaked_refs_per_emit", lambda: 0.0)
    monkeypatch.setattr(qt_guard, "_add_references", lambda obj, n: pytest.fail("touched"))
    assert qt_guard.check_and_protect() is False


def test_the_probe_measures_this_binding(qapp):
    import PySide6

    leak = qt_guard.leaked_refs_per_emit()
    if PySide6.__version__ == "6.12.0" and sys.version_info < (3, 12):
        assert leak == pytest.approx(1.0)
    else:
        assert leak == 0.0
