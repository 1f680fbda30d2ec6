"""Entry point of the frozen desktop app (PyInstaller).

    HandwritingStudio                 the studio
    HandwritingStudio engine ARGS...  the engine CLI (`handwriting-engine ARGS...`)

With HANDWRITING_STUDIO_SMOKE=1 the studio starts as usual, loads the bundled synthesis model
(or an untrained tiny one when none is bundled) through its own model manager, writes one line
of handwriting with the engine's sampler, prints one `SMOKE OK ...` line and exits 0; any
failure prints `SMOKE FAIL ...` and exits 1. packaging/smoke_test.py drives both modes.
"""

from __future__ import annotations

import os
import sys

SMOKE_ENV = "HANDWRITING_STUDIO_SMOKE"
SMOKE_TIMEOUT_MS = 180_000


def _smoke() -> int:
    from PySide6.QtCore import QTimer

    from studio.app import create_app
    from studio.main_window import MainWindow

    app = create_app(sys.argv[:1])
    window = MainWindow()
    window.show()
    outcome: dict = {}

    def finish(code: int, line: str) -> None:
        if outcome:
            return
        outcome["code"] = code
        print(line, flush=True)
        window.force_close = True
        window.close()
        app.quit()

    def on_changed() -> None:
        loaded = window.models.loaded
        if loaded is None or window.models.loading:
            return
        try:
            from engine.sampler import sample

            text = "Hello" if loaded.kind == "synthesis" else None
            (result,) = sample(loaded, text, bias=1.0, seed=0, max_steps=400)
            n = len(result.offsets)
            finish(0, f"SMOKE OK model={window.models.name!r} kind={loaded.kind} points={n}")
        except Exception as exc:  # noqa: BLE001 - report any failure as one line
            finish(1, f"SMOKE FAIL sampling: {type(exc).__name__}: {exc}")

    window.models.changed.connect(on_changed)
    window.models.failed.connect(lambda m: finish(1, f"SMOKE FAIL model: {m}"))

    def start() -> None:
        if not window.models.load_bundled("synthesis"):
            window.models.create_untrained("synthesis")

    QTimer.singleShot(0, start)
    QTimer.singleShot(SMOKE_TIMEOUT_MS, lambda: finish(1, "SMOKE FAIL timeout"))
    app.exec()
    return outcome.get("code", 1)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "engine":
        from engine.cli import main as engine_main

        return engine_main(sys.argv[2:])
    if os.environ.get(SMOKE_ENV):
        return _smoke()
    from studio.__main__ import main as studio_main

    return studio_main(sys.argv)


if __name__ == "__main__":
    sys.exit(main())
