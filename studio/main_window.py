"""The main window: Write, Capture and Train tabs (plus Text when installed), menus, export,
settings and a clean shutdown of every worker."""

from __future__ import annotations

import importlib.util
import logging

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QTabWidget,
)

from engine import EngineError
from studio import settings as st
from studio.model_manager import ModelManager
from studio.session import WriteSession
from studio.styles import StyleStore
from studio.write_tab import WriteTab

log = logging.getLogger(__name__)

ATTRIBUTION = (
    'Handwriting Studio implements Alex Graves (2013), "Generating Sequences With Recurrent '
    'Neural Networks".<br><br>Bundled handwriting data and example styles come from the '
    "UNIPEN train_r01_v07 set (Unipen Consortium 1999, doi:10.5281/zenodo.1195803, CC BY 4.0; "
    "Guyon et al., ICPR 1994)."
)


class MainWindow(QMainWindow):
    def __init__(self, settings=None, styles: StyleStore | None = None):
        super().__init__()
        self.setWindowTitle("Handwriting Studio")
        self.settings = settings or st.open_settings()
        self.models = ModelManager(self)
        self.styles = styles or StyleStore()
        self.session = WriteSession(self)
        self.tabs = QTabWidget()
        self.write_tab = WriteTab(self.session, self.models, self.styles)
        self.tabs.addTab(self.write_tab, "Write")
        from studio.capture_tab import CaptureTab

        self.capture_tab = CaptureTab(self.models, self.styles, self.write_tab.bias.value())
        self.capture_tab.styles_changed.connect(self.write_tab.refresh_styles)
        self.tabs.addTab(self.capture_tab, "Capture && style")
        from studio.train_tab import TrainTab

        self.train_tab = TrainTab(self.models, self.styles)
        self.tabs.addTab(self.train_tab, "Train")
        self.text_tab = self._optional_text_tab()
        self.setCentralWidget(self.tabs)
        self._build_menus()
        self.models.failed.connect(self._model_failed)
        # the model's name sits at the right of the status bar, where passing messages
        # ("Exported ...") do not wipe it
        self.model_status = QLabel(self.models.status)
        self.statusBar().addPermanentWidget(self.model_status)
        self.models.changed.connect(lambda: self.model_status.setText(self.models.status))
        self.train_tab.use_model.connect(self._use_trained_model)
        self._restore()

    def _optional_text_tab(self):
        if importlib.util.find_spec("studio.text_tab") is None:
            return None
        try:
            from studio.text_tab import TextTab

            tab = TextTab()
        except Exception:  # noqa: BLE001 - an optional tab must not keep the studio from opening
            log.exception("the Text tab could not be created")
            return None
        self.tabs.addTab(tab, "Text")
        return tab

    # -- menus -------------------------------------------------------------------------------
    def _action(self, menu, text, slot, shortcut=None) -> QAction:
        act = QAction(text, self)
        if shortcut:
            act.setShortcut(QKeySequence(shortcut))
        act.triggered.connect(slot)
        menu.addAction(act)
        return act

    def _build_menus(self) -> None:
        bar = self.menuBar()
        f = bar.addMenu("&File")
        self._action(f, "Open model file...", self.open_model, "Ctrl+O")
        f.addSeparator()
        self._action(f, "Export PNG...", lambda: self.export("png"), "Ctrl+E")
        self._action(f, "Export SVG...", lambda: self.export("svg"))
        self._action(f, "Export InkML...", lambda: self.export("inkml"))
        self._action(f, "Export animation (SVG or GIF)...", lambda: self.export("animation"))
        self._action(f, "Export window and mixture trace (NPZ)...", lambda: self.export("trace"))
        cap = f.addMenu("Export captured ink")
        self._action(cap, "SVG (pressure width)...", lambda: self.export("svg", source="capture"))
        self._action(cap, "PNG (pressure width)...", lambda: self.export("png", source="capture"))
        self._action(
            cap, "InkML (with pressure)...", lambda: self.export("inkml", source="capture")
        )
        f.addSeparator()
        self._action(f, "Quit", self.close, "Ctrl+Q")
        m = bar.addMenu("&Model")
        self._action(m, "Details of the current model...", self.show_model_details)
        m.addSeparator()
        self._action(m, "Bundled synthesis model", lambda: self._load_bundled("synthesis"))
        self._action(m, "Bundled prediction model", lambda: self._load_bundled("prediction"))
        m.addSeparator()
        self._action(
            m, "Untrained tiny synthesis model", lambda: self.models.create_untrained("synthesis")
        )
        self._action(
            m, "Untrained tiny prediction model", lambda: self.models.create_untrained("prediction")
        )
        h = bar.addMenu("&Help")
        self._action(h, "About", lambda: QMessageBox.about(self, "Handwriting Studio", ATTRIBUTION))

    # -- models ------------------------------------------------------------------------------
    def load_initial_model(self) -> None:
        last = st.get(self.settings, "model/path", "")
        if last:
            from pathlib import Path

            if Path(last).is_file():
                self.models.load_file(last)
                return
        self.models.load_bundled("synthesis")

    def model_details_html(self) -> str | None:
        """The current model's network, point spacing and training record as an HTML table."""
        from html import escape

        from engine.model_info import describe_loaded

        loaded = self.models.loaded
        if loaded is None:
            return None
        rows = "".join(
            f"<tr><td><b>{escape(k)}</b></td><td>{escape(v)}</td></tr>"
            for k, v in describe_loaded(loaded)
        )
        return f"<p>{escape(self.models.status)}</p><table cellspacing='6'>{rows}</table>"

    def show_model_details(self) -> None:
        try:
            html = self.model_details_html()
        except EngineError as exc:  # the file changed or vanished since it was loaded
            QMessageBox.warning(self, "Model details", str(exc))
            return
        if html is None:
            QMessageBox.information(self, "No model loaded", self.models.status)
            return
        box = QMessageBox(QMessageBox.Icon.NoIcon, "Model details", html, parent=self)
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setStyleSheet("QLabel { min-width: 560px; }")  # rows on one line, not wrapped
        box.exec()

    def _load_bundled(self, kind: str) -> None:
        if not self.models.load_bundled(kind):
            QMessageBox.information(self, "No model installed", self.models.status)

    def open_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a model", self._folder("models"), "Model files (*.safetensors)"
        )
        if path:
            self._remember_folder("models", path)
            self.settings.setValue("model/path", path)
            self.models.load_file(path)

    def _use_trained_model(self, path) -> None:
        self.settings.setValue("model/path", str(path))
        self.models.load_file(path)
        self.tabs.setCurrentWidget(self.write_tab)

    def _model_failed(self, message: str) -> None:
        QMessageBox.warning(self, "Model not loaded", message)

    # -- export ------------------------------------------------------------------------------
    def _folder(self, key: str) -> str:
        return st.get(self.settings, f"folders/{key}", "")

    def _remember_folder(self, key: str, path: str) -> None:
        from pathlib import Path

        self.settings.setValue(f"folders/{key}", str(Path(path).parent))

    def current_ink(self):
        """(strokes, text) of the page on the Write tab."""
        snap = self.session.latest
        if snap is None:
            return [], ""
        return snap.strokes(), "\n".join(t for t in snap.lines if t)

    def captured_ink(self):
        """The ink on the Capture tab (with pressure, tilt and time) labelled with its text."""
        return self.capture_tab.canvas.ink(self.capture_tab.written_text.text().strip())

    def export(
        self, kind: str, path: str | None = None, source: str = "page", **options
    ) -> str | None:
        """Export the Write tab's page, or with source="capture" the captured ink, whose
        pressure sets the line width in PNG and SVG and travels as a channel in InkML. Kind
        "trace" saves the finished page's window and mixture arrays (engine.trace)."""
        from studio import export as ex

        ink = None
        if source == "capture":
            ink = self.captured_ink()
            strokes, text = ink.strokes, ink.text
            if kind in ("png", "svg") and ink.pressure is not None:
                options.setdefault("pressure", ink.pressure)
            if kind == "png":
                options.setdefault("scale", 1.0)  # captured ink is already in screen pixels
        else:
            strokes, text = self.current_ink()
        if not strokes:
            what = "Write something on the Capture tab" if ink is not None else "Write something"
            QMessageBox.information(self, "Nothing to export", f"{what} first.")
            return None
        trace = self.session.latest.trace if kind == "trace" else None
        if kind == "trace" and trace is None:
            QMessageBox.information(
                self, "Still writing", "The trace is ready when the writing finishes or stops."
            )
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(
                self, f"Export {kind}", self._folder("export"), ex.FORMATS[kind]
            )
            if not path:
                return None
            if kind == "trace" and not path.lower().endswith(".npz"):
                path += ".npz"
            if kind == "png":
                btn = QMessageBox.StandardButton
                was = st.get(self.settings, "export/png_transparent", False, bool)
                answer = QMessageBox.question(
                    self,
                    "Background",
                    "Transparent background? (No = white)",
                    btn.Yes | btn.No,
                    btn.Yes if was else btn.No,
                )
                self.settings.setValue("export/png_transparent", answer == btn.Yes)
                options.setdefault("transparent", answer == btn.Yes)
                height, ok = QInputDialog.getInt(
                    self,
                    "PNG size",
                    "Image height in pixels",
                    st.get(self.settings, "export/png_height", 400),
                    16,
                    20000,
                )
                if not ok:
                    return None
                self.settings.setValue("export/png_height", height)
                options.setdefault("height", height)
            self._remember_folder("export", path)
        try:
            if kind == "png":
                out = ex.export_png(strokes, path, **options)
            elif kind == "svg":
                out = ex.export_svg(strokes, path, **options)
            elif kind == "inkml":
                out = ex.export_inkml(strokes, text, path, ink=ink)
            elif kind == "trace":  # the numbers behind the attention and density views
                out = trace.save(path)
            else:
                out = ex.export_animation(strokes, path, **options)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a message
            from studio.workers import describe_error

            QMessageBox.warning(self, "Export failed", describe_error(exc))
            return None
        self.statusBar().showMessage(f"Exported {out}", 5000)
        return str(out)

    # -- settings and close ------------------------------------------------------------------
    def _restore(self) -> None:
        s = self.settings
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 800)
        state = s.value("window/state")
        if isinstance(state, QByteArray):
            self.restoreState(state)
        w = self.write_tab
        w.text.setPlainText(st.get(s, "write/text", w.text.toPlainText()))
        w.bias.set_value(st.get(s, "write/bias", w.bias.value(), float))
        w.seed.setValue(st.get(s, "write/seed", w.seed.value(), int))
        w.page_width.setValue(st.get(s, "write/page_width", w.page_width.value(), int))
        w.tries.setValue(st.get(s, "write/tries", w.tries.value(), int))
        w.refresh_styles(select=st.get(s, "write/style", "") or None)

    def save_settings(self) -> None:
        s, w = self.settings, self.write_tab
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("write/text", w.text.toPlainText())
        s.setValue("write/bias", w.bias.value())
        s.setValue("write/seed", w.seed.value())
        s.setValue("write/page_width", w.page_width.value())
        s.setValue("write/tries", w.tries.value())
        s.setValue("write/style", w.style_box.currentData() or "")
        s.sync()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self.train_tab.is_training() and not getattr(self, "force_close", False):
            answer = QMessageBox.question(
                self,
                "Training is running",
                "Stop training and close? The last checkpoint is kept and the run can be "
                "resumed later.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
        self.save_settings()
        self.train_tab.shutdown()
        self.write_tab.shutdown()
        self.capture_tab.shutdown()
        self.models.wait()
        event.accept()
