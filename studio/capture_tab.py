"""Capture & style: write a line, type what you wrote, preview text in that hand (Sec. 5.5
priming) and keep it as a named style."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from engine.layout import DEFAULT_TRIES
from engine.sampler import DEFAULT_BIAS
from studio.canvas import InkCanvas
from studio.capture import CaptureCanvas
from studio.session import WriteSession
from studio.workers import WorkerController, describe_error
from studio.write_tab import Banner, BiasControl
from studio.writing import WriteJob, wrap_text


class CaptureTab(QWidget):
    styles_changed = Signal(str)  # the name to select ("" = keep)

    def __init__(self, models, styles, bias: float = DEFAULT_BIAS, parent=None):
        super().__init__(parent)
        self.models, self.styles = models, styles
        self.session = WriteSession(self)
        self.controller = WorkerController(self)

        self.canvas = CaptureCanvas()
        self.written_text = QLineEdit()
        self.written_text.setPlaceholderText("Type exactly what you wrote on the canvas")
        self.undo_button = QPushButton("Undo stroke")
        self.clear_button = QPushButton("Clear")
        self.preview_text = QLineEdit("The quick brown fox jumps over the lazy dog")
        self.bias = BiasControl(bias)
        self.preview_button = QPushButton("Write this text in my style")
        self.preview = InkCanvas(self.session)
        self.style_list = QListWidget()
        self.save_button = QPushButton("Save as style...")
        self.load_button = QPushButton("Show on canvas")
        self.rename_button = QPushButton("Rename...")
        self.delete_button = QPushButton("Delete")
        self.banner = Banner()

        tools = QHBoxLayout()
        tools.addWidget(QLabel("You wrote:"))
        tools.addWidget(self.written_text, 1)
        tools.addWidget(self.undo_button)
        tools.addWidget(self.clear_button)
        prev = QHBoxLayout()
        prev.addWidget(self.preview_text, 1)
        prev.addWidget(self.preview_button)
        left = QVBoxLayout()
        left.addWidget(
            QLabel(
                "1. Write one line on the canvas (a pen tablet records pressure "
                "and tilt; the mouse works too)."
            )
        )
        left.addWidget(self.canvas, 2)
        left.addLayout(tools)
        left.addWidget(QLabel("2. Preview other text in your style:"))
        left.addLayout(prev)
        bias_row = QHBoxLayout()
        bias_row.addWidget(QLabel("Bias"), 0, Qt.AlignmentFlag.AlignTop)
        bias_row.addWidget(self.bias, 1)
        left.addLayout(bias_row)
        left.addWidget(self.preview, 2)
        left.addWidget(self.banner)
        left_w = QWidget()
        left_w.setLayout(left)
        right = QVBoxLayout()
        right.addWidget(QLabel("Styles"))
        right.addWidget(self.style_list, 1)
        for b in (self.save_button, self.load_button, self.rename_button, self.delete_button):
            right.addWidget(b)
        right_w = QWidget()
        right_w.setLayout(right)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left_w)
        split.addWidget(right_w)
        split.setSizes([900, 260])
        QVBoxLayout(self).addWidget(split)

        self.undo_button.clicked.connect(self.canvas.undo)
        self.clear_button.clicked.connect(self.canvas.clear)
        self.preview_button.clicked.connect(self.preview_style)
        self.save_button.clicked.connect(lambda: self.save_style())
        self.load_button.clicked.connect(self.show_selected)
        self.rename_button.clicked.connect(lambda: self.rename_selected())
        self.delete_button.clicked.connect(lambda: self.delete_selected())
        self.controller.partial_result.connect(self.session.update)
        self.controller.finished.connect(self._on_finished)
        self.controller.failed.connect(self._on_failed)
        self.refresh()

    # -- styles ------------------------------------------------------------------------------
    def refresh(self) -> None:
        self.style_list.clear()
        for s in self.styles.list():
            item = QListWidgetItem(s.label)
            item.setData(Qt.ItemDataRole.UserRole, s.name)
            self.style_list.addItem(item)

    def selected(self):
        item = self.style_list.currentItem()
        return None if item is None else self.styles.find(item.data(Qt.ItemDataRole.UserRole))

    def _fail(self, action: str, exc: Exception) -> None:
        self.banner.show_message(f"{action}: {describe_error(exc)}")

    def save_style(self, name: str | None = None) -> bool:
        if name is None:
            name, ok = QInputDialog.getText(self, "Save style", "Name for this style:")
            if not ok:
                return False
        try:
            ink = self.canvas.ink(self.written_text.text().strip())
            from studio.styles import primer_from_ink

            primer_from_ink(ink, self._alphabet())  # refuse ink that cannot prime
            style = self.styles.save(name, ink)
        except Exception as exc:  # noqa: BLE001 - shown in the window
            self._fail("Cannot save the style", exc)
            return False
        self.banner.show_message(f"Saved style {style.name!r}.", "info")
        self.refresh()
        self.styles_changed.emit(style.name)
        return True

    def show_selected(self) -> None:
        style = self.selected()
        if style is None:
            return
        try:
            ink = self.styles.load(style)
        except Exception as exc:  # noqa: BLE001
            self._fail("Cannot open the style", exc)
            return
        self.canvas.load_ink(ink)
        self.written_text.setText(ink.text)

    def rename_selected(self, new_name: str | None = None) -> bool:
        style = self.selected()
        if style is None:
            return False
        if new_name is None:
            new_name, ok = QInputDialog.getText(self, "Rename style", "New name:", text=style.name)
            if not ok:
                return False
        try:
            renamed = self.styles.rename(style, new_name)
        except Exception as exc:  # noqa: BLE001
            self._fail("Cannot rename the style", exc)
            return False
        self.refresh()
        self.styles_changed.emit(renamed.name)
        return True

    def delete_selected(self, confirm: bool = True) -> bool:
        style = self.selected()
        if style is None:
            return False
        if (
            confirm
            and QMessageBox.question(self, "Delete style", f"Delete {style.name!r}?")
            != QMessageBox.StandardButton.Yes
        ):
            return False
        try:
            self.styles.delete(style)
        except Exception as exc:  # noqa: BLE001
            self._fail("Cannot delete the style", exc)
            return False
        self.refresh()
        self.styles_changed.emit("")
        return True

    # -- preview -----------------------------------------------------------------------------
    def _alphabet(self):
        from engine.alphabet import Alphabet

        loaded = self.models.loaded
        return loaded.alphabet if loaded is not None and loaded.alphabet else Alphabet()

    def preview_style(self) -> None:
        loaded = self.models.loaded
        if loaded is None or loaded.kind != "synthesis":
            self.banner.show_message("Load a synthesis model first (Model menu).")
            return
        if self.controller.is_running():
            return
        try:
            from studio.styles import primer_from_ink

            primer = primer_from_ink(self.canvas.ink(self.written_text.text()), self._alphabet())
            lines = wrap_text(self.preview_text.text(), 60)
            if not lines:
                from studio.styles import StyleError

                raise StyleError("type the text to write in your style")
            self._alphabet().check(" ".join(lines))
            job = WriteJob(
                loaded, lines, bias=self.bias.value(), seed=1, primer=primer, tries=DEFAULT_TRIES
            )  # as the Write tab writes by default
        except Exception as exc:  # noqa: BLE001
            self._fail("Cannot preview", exc)
            return
        self.banner.clear_message()
        self.session.begin()
        self.preview_button.setEnabled(False)
        self.controller.start(job)

    def _on_finished(self, snap) -> None:
        self.session.finish(snap)
        self.preview_button.setEnabled(True)

    def _on_failed(self, message: str) -> None:
        self.session.finish(None)
        self.preview_button.setEnabled(True)
        self.banner.show_message(f"Preview failed: {message}")

    def shutdown(self) -> None:
        self.controller.shutdown()
