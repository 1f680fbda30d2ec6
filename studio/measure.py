"""Responsiveness measurements: time from Write to first ink, and the longest UI-thread stall
while writing and while training (a 5 ms QTimer heartbeat records the largest gap).

    python -m studio.measure [--model PATH] [--train-steps N]

Runs offscreen unless a display is set; prints one line per measurement.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from PySide6.QtCore import QElapsedTimer, QObject, QTimer


class Heartbeat(QObject):
    """A fast timer on the UI thread; a long gap between its ticks is a stall."""

    def __init__(self, interval_ms: int = 5, parent=None):
        super().__init__(parent)
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.clock = QElapsedTimer()
        self.max_gap_ms = 0.0
        self.ticks = 0

    def start(self) -> None:
        self.max_gap_ms, self.ticks = 0.0, 0
        self.clock.start()
        self.timer.start()

    def stop(self) -> float:
        self.timer.stop()
        return self.max_gap_ms

    def _tick(self) -> None:
        gap = self.clock.nsecsElapsed() / 1e6
        self.clock.restart()
        self.ticks += 1
        if self.ticks > 1:
            self.max_gap_ms = max(self.max_gap_ms, gap)


def _spin(app, cond, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        app.processEvents()
        time.sleep(0.001)
    return cond()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model file (default: bundled, else untrained tiny)")
    ap.add_argument("--text", default="The quick brown fox jumps over the lazy dog")
    ap.add_argument("--train-steps", type=int, default=30)
    args = ap.parse_args(argv)
    os.environ.setdefault("HANDWRITING_STUDIO_HOME", tempfile.mkdtemp(prefix="hs-measure-"))
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from studio.app import create_app

    t0 = time.perf_counter()
    app = create_app([])
    from studio.main_window import MainWindow

    w = MainWindow()
    w.show()
    app.processEvents()
    print(
        f"window shown after {1000 * (time.perf_counter() - t0):.0f} ms "
        f"(torch imported: {'torch' in sys.modules})"
    )
    if args.model:
        w.models.load_file(args.model)
    elif not w.models.load_bundled("synthesis"):
        w.models.create_untrained("synthesis")
    _spin(app, lambda: w.models.loaded is not None or not w.models.loading, 120)
    if w.models.loaded is None:
        print("no model could be loaded:", w.models.status)
        return 1
    print(f"model: {w.models.name}")
    beat = Heartbeat()
    tab = w.write_tab
    tab.text.setPlainText(args.text)
    firsts = []
    for seed in (1, 2, 3):
        tab.seed.setValue(seed)
        beat.start()
        tab.write()
        _spin(app, lambda: not tab.controller.is_running(), 300)
        stall = beat.stop()
        firsts.append(1000 * tab.last_first_ink)
        print(
            f"write {seed}: first ink {firsts[-1]:.0f} ms, {w.session.latest.n_points} points,"
            f" longest UI stall {stall:.1f} ms"
        )
    from studio.capture import StrokeRecorder
    from studio.training import dataset_from_inks

    rec = StrokeRecorder()
    import numpy as np

    for k in range(4):
        t = np.linspace(0, 6.28, 40)
        for n, (x, y) in enumerate(zip(30 * k + 8 * np.cos(t) + 3 * t, 50 + 15 * np.sin(t))):
            (rec.begin if n == 0 else rec.add)(x, y, 1.0, (0, 0), n)
        rec.end()
    data = dataset_from_inks([rec.to_ink(txt) for txt in ("hi", "ho", "ha")], "measure")
    for run in ("first run, imports the trainer", "second run"):
        beat.start()
        t = time.perf_counter()
        w.train_tab.start(
            dataset=data,
            preset="small",
            steps=args.train_steps,
            batch_size=4,
            max_len=120,
            preview_every=10,
            val_every=10,
            ckpt_every=0,
            run_dir=tempfile.mkdtemp(prefix="hs-measure-run-"),
        )
        _spin(app, lambda: not w.train_tab.is_training(), 600)
        print(
            f"training {args.train_steps} steps, small preset ({run}): "
            f"{time.perf_counter() - t:.1f} s, longest UI stall {beat.stop():.1f} ms"
        )
    w.force_close = True
    w.close()
    w.deleteLater()
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
