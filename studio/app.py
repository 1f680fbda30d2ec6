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
    app.setApplicationName("Handwriting Studio")
    app.setOrganizationName("HandwritingStudio")
    return app


def run(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
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
