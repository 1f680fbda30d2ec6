"""Screenshots of every view, live: python -m studio.screenshots OUTDIR [--model PATH].

Drives the real window (under Xvfb or offscreen) and saves PNGs with QWidget.grab(): the
Write tab mid-writing and after it (attention and mixture views), the Variations dialog,
Capture & style with a preview, and Train mid-training.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

TEXT = "A quick brown fox jumps over the lazy dog\nHandwriting Studio, after Graves (2013)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--model")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HANDWRITING_STUDIO_HOME", tempfile.mkdtemp(prefix="hs-shots-"))
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from engine.sampler import DEFAULT_BIAS
    from studio.app import create_app
    from studio.measure import _spin

    app = create_app([])
    from studio.main_window import MainWindow

    w = MainWindow()
    w.resize(1440, 900)
    w.show()

    def shot(name):
        for _ in range(5):
            app.processEvents()
        w.grab().save(str(args.out / name))
        print("saved", args.out / name)

    if args.model:
        w.models.load_file(args.model)
    elif not w.models.load_bundled("synthesis"):
        w.models.create_untrained("synthesis")
    _spin(app, lambda: w.models.loaded is not None, 120)
    tab = w.write_tab
    tab.text.setPlainText(TEXT)
    tab.bias.set_value(DEFAULT_BIAS)  # what a new user sees
    tab.write()
    _spin(app, lambda: w.session.latest is not None and w.session.latest.n_points > 500, 60)
    time.sleep(0.1)
    shot("write-live.png")
    _spin(app, lambda: not tab.controller.is_running(), 300)
    snap = w.session.latest
    tab.timeline.setValue(int(snap.n_points * 0.3))
    shot("studio-write.png")
    tab.views.setCurrentWidget(tab.density)
    shot("studio-density.png")
    tab.show_variations(seeds=[1, 2, 3, 4, 5, 6])  # fixed seeds: the same picture each run
    dialog = tab._variations
    _spin(app, lambda: not dialog.controller.is_running(), 300)
    for _ in range(5):
        app.processEvents()
    dialog.grab().save(str(args.out / "studio-variations.png"))
    print("saved", args.out / "studio-variations.png")
    dialog.close()

    w.tabs.setCurrentWidget(w.capture_tab)
    cap = w.capture_tab
    examples = [s for s in w.styles.list() if s.builtin]
    if examples:
        cap.canvas.load_ink(w.styles.load(examples[0]))
        cap.written_text.setText(w.styles.load(examples[0]).text)
        cap.preview_text.setText("written in the same hand")
        cap.preview_style()
        _spin(app, lambda: not cap.controller.is_running(), 300)
    cap.refresh()
    shot("studio-capture.png")

    w.tabs.setCurrentWidget(w.train_tab)
    # train for real on what the form shows (the bundled corpus), so the picture is honest
    w.train_tab.steps.setValue(400)
    w.train_tab.batch.setValue(8)
    w.train_tab.start(
        max_len=300,
        preview_every=20,
        val_every=20,
        ckpt_every=50,
        run_dir=tempfile.mkdtemp(prefix="hs-shots-run-"),
        preview_text="hello",
    )
    _spin(app, lambda: w.train_tab.latest is not None and w.train_tab.latest.step >= 60, 600)
    time.sleep(0.3)
    shot("studio-train.png")
    w.force_close = True
    w.close()
    w.deleteLater()
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
