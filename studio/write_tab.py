"""The Write tab: text in, animated handwriting out, with the researcher views beside it."""

from __future__ import annotations

import random
import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine.layout import DEFAULT_TRIES, MAX_TRIES
from engine.sampler import DEFAULT_BIAS
from studio.attention import AttentionView
from studio.canvas import InkCanvas
from studio.density import DensityView
from studio.highlight import UnsupportedHighlighter
from studio.workers import WorkerController
from studio.writing import WriteJob, wrap_text

# preset buttons under the bias slider (label, value, tooltip); a row of buttons, not an axis
BIAS_STOPS = (
    ("0", 0.0, "unbiased: the network's own samples, lively and sometimes untidy"),
    ("0.15 paper", 0.15, "the paper's demonstration value (Sec. 5.4)"),
    (f"{DEFAULT_BIAS:g} default", DEFAULT_BIAS, "the studio's default: legible and still varied"),
    ("1 neat", 1.0, "neat and uniform: the most legible"),
    ("2", 2.0, "very neat, little variation"),
)


class Banner(QLabel):
    """A message line in the window (warnings and errors), never a stack trace."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hide()

    def show_message(self, text: str, level: str = "error") -> None:
        colours = {
            "error": "#fde2e2; color:#7a0000",
            "warning": "#fff4d6; color:#5a4000",
            "info": "#e3f0ff; color:#00305a",
        }
        self.setStyleSheet(f"background:{colours[level]}; padding:6px; border-radius:4px;")
        self.setText(text)
        self.show()

    def clear_message(self) -> None:
        self.setText("")
        self.hide()


class BiasControl(QWidget):
    """Slider 0..2 in steps of 0.01 with the value shown and buttons at the paper's stops."""

    changed = Signal(float)

    def __init__(self, value: float = DEFAULT_BIAS, parent=None):
        super().__init__(parent)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 200)
        self.slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.slider.setTickInterval(25)
        self.slider.setToolTip("Sampling bias (Sec. 5.4): 0 = raw samples, higher = neater")
        self.label = QLabel()
        self.label.setMinimumWidth(36)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.slider, 1)
        row.addWidget(self.label)
        stops = QHBoxLayout()
        stops.setContentsMargins(0, 0, 0, 0)
        stops.setSpacing(4)
        self.stop_buttons = []
        for text, v, tip in BIAS_STOPS:
            b = QPushButton(text)
            b.setToolTip(f"bias {v:g}: {tip}")
            b.setStyleSheet("QPushButton { padding: 2px 5px; min-width: 0px; }")  # compact
            b.clicked.connect(lambda _=False, v=v: self.set_value(v))
            stops.addWidget(b)
            self.stop_buttons.append(b)
        stops.addStretch(1)
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.addLayout(row)
        box.addLayout(stops)
        self.slider.valueChanged.connect(self._on_slider)
        self.set_value(value)
        self._on_slider(self.slider.value())

    def value(self) -> float:
        return self.slider.value() / 100.0

    def set_value(self, v: float) -> None:
        self.slider.setValue(int(round(min(max(v, 0.0), 2.0) * 100)))

    def _on_slider(self, raw: int) -> None:
        self.label.setText(f"{raw / 100:.2f}")
        self.changed.emit(raw / 100)


class WriteTab(QWidget):
    first_ink = Signal(float)  # seconds from Write to the first ink on the canvas
    written = Signal(object)  # the final WriteSnapshot

    def __init__(self, session, models, styles, parent=None):
        super().__init__(parent)
        from engine.alphabet import Alphabet

        self.session, self.models, self.styles = session, models, styles
        self.controller = WorkerController(self)
        self._write_started = None
        self.last_first_ink = None

        self.text = QPlainTextEdit()
        self.text.setPlaceholderText("Type the text to write. Long text wraps to the page width.")
        self.text.setPlainText("Handwriting with a neural network")
        self.highlighter = UnsupportedHighlighter(self.text.document(), Alphabet())
        self.page_width = QSpinBox()
        self.page_width.setRange(5, 200)
        self.page_width.setValue(40)
        self.page_width.setSuffix(" characters")
        self.bias = BiasControl(DEFAULT_BIAS)
        self.style_box = QComboBox()
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(1)
        self.tries = QSpinBox()
        self.tries.setRange(1, MAX_TRIES)
        self.tries.setValue(DEFAULT_TRIES)
        self.tries.setSuffix(" tries per line")
        self.tries.setToolTip(
            "Write each line this many times at once and keep the one whose attention window "
            "covered every character best. With 8, an offline recogniser misread 49-67 % fewer "
            "characters than with 1; a page takes about 6 times as long. 1 = one plain sample."
        )
        self.variation = QPushButton("New variation")
        self.variations_button = QPushButton("Variations…")
        self.variations_button.setToolTip(
            "Write the first line with several seeds side by side and pick one"
        )
        self._variations = None  # the dialog, made on first use
        self.write_button = QPushButton("Write")
        self.write_button.setDefault(True)
        self.scribble_button = QPushButton("Write without text")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.untrained_button = QPushButton("Create an untrained tiny model")
        self.model_label = QLabel()
        self.model_label.setWordWrap(True)
        self.banner = Banner()

        form = QFormLayout()
        form.addRow("Page width", self.page_width)
        form.addRow("Bias", self.bias)
        form.addRow("Style", self.style_box)
        form.addRow("Best of", self.tries)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.variation)
        seed_row.addWidget(self.variations_button)
        form.addRow("Seed", seed_row)
        buttons = QHBoxLayout()
        for b in (self.write_button, self.stop_button, self.scribble_button):
            buttons.addWidget(b)
        left = QVBoxLayout()
        left.addWidget(QLabel("Text"))
        left.addWidget(self.text, 1)
        left.addLayout(form)
        left.addLayout(buttons)
        left.addWidget(self.banner)
        left.addWidget(self.model_label)
        left.addWidget(self.untrained_button)
        left_w = QWidget()
        left_w.setLayout(left)
        left_w.setMaximumWidth(420)

        self.canvas = InkCanvas(session)
        self.timeline = QSlider(Qt.Orientation.Horizontal)
        self.timeline.setEnabled(False)
        self.timeline.setToolTip("After writing: scrub through the pen's timeline")
        self.timeline_label = QLabel("Timeline")
        self.attention = AttentionView(session)
        self.density = DensityView(session)
        self.views = QTabWidget()
        self.views.addTab(self.attention, "Attention")
        self.views.addTab(self.density, "Mixture densities")
        page = QWidget()
        pv = QVBoxLayout(page)
        pv.setContentsMargins(0, 0, 0, 0)
        pv.addWidget(self.canvas, 1)
        tl = QHBoxLayout()
        tl.addWidget(self.timeline_label)
        tl.addWidget(self.timeline, 1)
        pv.addLayout(tl)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(page)
        right.addWidget(self.views)
        right.setSizes([400, 300])
        outer = QHBoxLayout(self)
        outer.addWidget(left_w)
        outer.addWidget(right, 1)

        self.write_button.clicked.connect(self.write)
        self.scribble_button.clicked.connect(self.scribble)
        self.stop_button.clicked.connect(self.stop)
        self.variation.clicked.connect(self.new_variation)
        self.variations_button.clicked.connect(self.show_variations)
        self.untrained_button.clicked.connect(lambda: self.models.create_untrained("synthesis"))
        self.timeline.valueChanged.connect(self.session.set_cursor)
        self.text.textChanged.connect(self._check_text)
        self.controller.finished.connect(self._on_finished)
        self.controller.failed.connect(self._on_failed)
        self.controller.partial_result.connect(self._on_partial)
        self.models.changed.connect(self._on_model_changed)
        self.session.started.connect(lambda: self.timeline.setEnabled(False))
        self.refresh_styles()
        self._on_model_changed()

    # -- state -------------------------------------------------------------------------------
    def _alphabet(self):
        from engine.alphabet import Alphabet

        loaded = self.models.loaded
        return loaded.alphabet if loaded is not None and loaded.alphabet else Alphabet()

    def _on_model_changed(self) -> None:
        loaded = self.models.loaded
        self.model_label.setText(self.models.status)
        kind = None if loaded is None else loaded.kind
        busy = self.controller.is_running()
        self.write_button.setEnabled(kind == "synthesis" and not busy)
        self.variations_button.setEnabled(kind == "synthesis")  # its own worker, busy or not
        self.scribble_button.setVisible(kind == "prediction")
        self.scribble_button.setEnabled(not busy)
        self.untrained_button.setVisible(loaded is None and not self.models.loading)
        # which model is loaded stays in the status bar; here only why none is (and the way out)
        self.model_label.setVisible(loaded is None)
        self.highlighter.set_alphabet(self._alphabet())
        self._check_text()

    def refresh_styles(self, select: str | None = None) -> None:
        current = select or self.style_box.currentData()
        self.style_box.blockSignals(True)
        self.style_box.clear()
        self.style_box.addItem("(no style: the model's own)", None)
        for s in self.styles.list():
            self.style_box.addItem(s.label, s.name)
        i = self.style_box.findData(current)
        self.style_box.setCurrentIndex(max(i, 0))
        self.style_box.blockSignals(False)

    def lines(self) -> list[str]:
        return wrap_text(self.text.toPlainText(), self.page_width.value())

    def _check_text(self) -> bool:
        """Flag unsupported characters (highlighted in the text box) with what to do."""
        text = self.text.toPlainText()
        bad = self._alphabet().unsupported(text.replace("\n", " "))
        if not bad:
            if self.banner.property("kind") == "chars":
                self.banner.clear_message()
            return True
        chars = "".join(sorted({c for _, c in bad}))
        self.banner.setProperty("kind", "chars")
        self.banner.show_message(
            f"The model cannot write {len(bad)} highlighted character(s): {chars!r}. "
            "Replace or delete them (the model writes printable ASCII: letters, digits, "
            "punctuation and space).",
            "warning",
        )
        return False

    # -- actions -----------------------------------------------------------------------------
    def new_variation(self) -> None:
        self.seed.setValue(random.randrange(0, 2**31 - 1))
        if self.write_button.isEnabled():
            self.write()

    def show_variations(self, seeds=None) -> bool:
        """Open the Variations dialog and write the first line with several seeds (random
        unless given); choosing one sets the seed and writes the page."""
        loaded = self.models.loaded
        if loaded is None or loaded.kind != "synthesis":
            self.banner.show_message(
                "Load a synthesis model first (Model menu), or create an untrained tiny model."
            )
            return False
        if not self._check_text():
            return False
        from engine import EngineError

        try:
            lines = self.lines()
            primer = self._primer()
        except (EngineError, OSError, ValueError) as exc:
            from studio.workers import describe_error

            self.banner.show_message(f"Cannot write: {describe_error(exc)}", "warning")
            return False
        if self._variations is None:
            from studio.variations import VariationsDialog

            self._variations = VariationsDialog(self)
            self._variations.chosen.connect(self._use_variation)
            self._variations.more_requested.connect(self.show_variations)
        dialog = self._variations
        started = dialog.start(
            loaded,
            lines,
            bias=self.bias.value(),
            primer=primer,
            seeds=seeds,
            tries=self.tries.value(),
        )
        dialog.show()
        dialog.raise_()
        return started

    def _use_variation(self, seed: int) -> None:
        self.seed.setValue(seed)
        if self.controller.is_running():  # a page is being written: stop it, write the choice
            self.controller.stopped.connect(self._write_once_stopped)
            self.controller.request_stop()
        elif self.write_button.isEnabled():
            self.write()

    def _write_once_stopped(self) -> None:
        self.controller.stopped.disconnect(self._write_once_stopped)
        if self.write_button.isEnabled():
            self.write()

    def _primer(self):
        name = self.style_box.currentData()
        if not name:
            return None
        from studio.styles import primer_from_ink

        style = self.styles.find(name)
        if style is None:
            raise FileNotFoundError(f"the style {name!r} no longer exists")
        return primer_from_ink(self.styles.load(style), self._alphabet())

    def write(self) -> None:
        loaded = self.models.loaded
        if loaded is None or loaded.kind != "synthesis":
            self.banner.show_message(
                "Load a synthesis model first (Model menu), or create an untrained tiny model."
            )
            return
        if not self._check_text():
            return
        from engine import EngineError

        try:
            lines = self.lines()
        except EngineError as exc:  # empty, too long: the engine's message says what to do
            self.banner.setProperty("kind", "text")
            self.banner.show_message(f"Cannot write: {exc}.", "warning")
            return
        self._start(lines)

    def scribble(self) -> None:
        if self.models.loaded is None or self.models.loaded.kind != "prediction":
            self.banner.show_message("Writing without text needs a prediction model.")
            return
        self._start([None])

    def _start(self, lines) -> None:
        if self.controller.is_running():
            return
        try:
            primer = self._primer() if lines[0] is not None else None
            job = WriteJob(
                self.models.loaded,
                lines,
                bias=self.bias.value(),
                seed=self.seed.value(),
                primer=primer,
                tries=self.tries.value() if lines[0] is not None else 1,
            )
        except Exception as exc:  # noqa: BLE001 - shown to the user, app stays usable
            from studio.workers import describe_error

            self.banner.show_message(f"Cannot write: {describe_error(exc)}")
            return
        self.banner.clear_message()
        self._write_started = time.perf_counter()
        self.last_first_ink = None
        self.session.begin()
        self.controller.start(job)
        self._set_busy(True)

    def stop(self) -> None:
        self.controller.request_stop()

    def _set_busy(self, busy: bool) -> None:
        self.stop_button.setEnabled(busy)
        self._on_model_changed()

    def _on_partial(self, snap) -> None:
        self.session.update(snap)
        if self._write_started is not None and (snap.n_points or len(snap.draft)):
            self.canvas.refresh()  # paint the very first ink now, not on the next tick
            self.last_first_ink = time.perf_counter() - self._write_started
            self._write_started = None
            self.first_ink.emit(self.last_first_ink)

    def _on_finished(self, snap) -> None:
        self.session.finish(snap)
        self._set_busy(False)
        if snap.n_points:
            self.timeline.blockSignals(True)
            self.timeline.setRange(0, snap.n_points - 1)
            self.timeline.setValue(snap.n_points - 1)
            self.timeline.blockSignals(False)
            self.timeline.setEnabled(True)
            self.timeline_label.setText(f"Timeline ({snap.n_points} points)")
        if snap.stopped:
            self.banner.show_message("Stopped.", "info")
        elif any(t is not None for t in snap.lines) and not all(snap.stopped_by_rule):
            self.banner.show_message(
                "The model did not reach the end of every line within its step limit; the "
                "text may be cut short. Try a higher bias or a better-trained model.",
                "warning",
            )
        self.written.emit(snap)

    def _on_failed(self, message: str) -> None:
        self.session.finish(None)
        self._set_busy(False)
        self.banner.show_message(f"Writing failed: {message}")

    def shutdown(self) -> None:
        if self._variations is not None:
            self._variations.shutdown()
        self.controller.shutdown()
