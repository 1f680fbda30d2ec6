"""Application start-up: the window first, the model (and torch) after it is on screen."""

from __future__ import annotations

import logging
import os
import sys


def create_app(argv=None):
    os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
    from PySide6.QtWidgets import QApplication

    # Workers run Python between torch ops; a short GIL switch interval keeps them from
    # holding the UI thread off for tens of milliseconds at a time (measured: 5 ms default
    # gave ~400 ms UI stalls while sampling on a loaded 2-core machine, 1 ms gave ~25 ms).
    sys.setswitchinterval(0.001)

    app = QApplication.instance() or QApplication(list(argv or sys.argv))
    from studio.qt_guard import check_and_protect

    check_and_protect()  # PySide6 6.12.0 would otherwise crash Python < 3.12 (see qt_guard)
    app.setApplicationName("Handwriting Studio")
    app.setOrganizationName("HandwritingStudio")
    return app


def _log_to_file() -> None:
    """Also log to paths.log_dir()/studio.log (1 MB, 3 old copies kept); never fatal."""
    from logging.handlers import RotatingFileHandler

    from studio import paths

    try:
        handler = RotatingFileHandler(
            paths.log_dir() / "studio.log", maxBytes=1_000_000, backupCount=3, encoding="utf-8"
        )
    except OSError as exc:
        logging.getLogger(__name__).warning("no log file: %s", exc)
        return
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)


def run(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _log_to_file()
    app = create_app(argv)
    from PySide6.QtCore import QTimer

    from studio.main_window import MainWindow

    window = MainWindow()
    window.show()
    QTimer.singleShot(0, window.load_initial_model)  # torch loads after the window is shown
    code = app.exec()
    # delete the window (and its threads' owners) while Qt is still alive, not in random
    # order at interpreter exit
    window.deleteLater()
    app.processEvents()
    return code
