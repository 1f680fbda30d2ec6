"""The Text tab: live text prediction with the character/byte LSTM (Sec. 3).

Generated text streams in from a worker thread, each character shaded by its surprisal
-log2 p (how unsure the model was), with the probability in a tooltip. A file can be evaluated
for bits per character, static and dynamic side by side (Tables 1-2). Torch and the model are
loaded lazily, in the worker, the first time they are needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from studio.workers import WorkerController

MAX_BITS = 8.0  # surprisal at which the shading saturates


def surprisal_color(bits: float) -> QColor:
    """White (certain) -> amber (a few bits) -> red (>= MAX_BITS bits)."""
    t = max(0.0, min(1.0, bits / MAX_BITS))
    stops = [(0.0, (255, 255, 255)), (0.35, (255, 226, 140)), (1.0, (235, 80, 70))]
    for (t0, c0), (t1, c1) in zip(stops, stops[1:]):
        if t <= t1:
            u = (t - t0) / (t1 - t0)
            return QColor(*(round(a + (b - a) * u) for a, b in zip(c0, c1)))
    return QColor(*stops[-1][1])


class ModelHandle:
    """A text model loaded on first use (in whichever thread asks first); opaque to Qt code."""

    def __init__(self, path: str | Path | None = None, model=None):
        self.path, self._model = path, model

    @property
    def label(self) -> str:
        if self._model is not None and self.path is None:
            return "in-memory model"
        return str(self.path) if self.path else "bundled text model"

    def get(self):
        if self._model is None:
            from engine.text_cli import load_text_model

            self._model = load_text_model(self.path)
        return self._model


@dataclass
class Piece:
    text: str
    probability: float  # of the symbol(s) that make up the text, under the tempered draw
    surprisal: float  # bits, untempered


class GenerateJob:
    """Job for WorkerController: samples symbols; snapshot() drains the new pieces."""

    def __init__(self, handle: ModelHandle, prime: str, temperature: float, length: int, seed=None):
        self.handle, self.prime, self.temperature = handle, prime, temperature
        self.length, self.seed = length, seed
        self._new: list[Piece] = []
        self.count = 0
        self.bits = 0.0

    def steps(self):
        from engine.text_eval import sample_stream

        model = self.handle.get()
        prob, bits = 1.0, 0.0  # a multi-byte character shows once, with its bytes' totals
        for s in sample_stream(model, self.prime, self.temperature, self.length, self.seed):
            prob, bits = prob * s.probability, bits + s.surprisal
            self.count += 1
            self.bits += s.surprisal
            if s.text:
                self._new.append(Piece(s.text, prob, bits))
                prob, bits = 1.0, 0.0
            yield s

    def snapshot(self) -> list[Piece]:
        new, self._new = self._new, []
        return new

    def progress(self) -> tuple[int, int]:
        return self.count, self.length

    def result(self, stopped: bool) -> dict:
        return {"symbols": self.count, "bits": self.bits, "stopped": stopped}


class _Cancelled(Exception):
    pass


class EvaluateJob:
    """Job for WorkerController: static and (optionally) dynamic BPC of a text file."""

    def __init__(self, handle: ModelHandle, path: str, tail: float, dynamic: bool):
        self.handle, self.path, self.tail, self.dynamic = handle, path, tail, dynamic
        self._progress = ("loading", 0, 1)
        self.results: list[dict] = []

    def steps(self):
        import queue
        import threading

        from engine.text_data import encode_file, split_point
        from engine.text_eval import DynamicConfig, evaluate

        model = self.handle.get()
        start = split_point(self.path, self.tail) if self.tail > 0 else 0
        enc = encode_file(self.path, model.vocab, start)
        self.unknown = sum(enc.unknown.values())
        runs = [("static", None)] + ([("dynamic", DynamicConfig())] if self.dynamic else [])
        for name, dyn in runs:
            # evaluate() reports through a callback; it runs on a helper thread so this
            # generator yields between chunks. Stopping (the generator closed) makes the next
            # callback raise, and evaluate() restores the weights on its way out.
            q: queue.Queue = queue.Queue()
            box: dict = {}
            cancel = threading.Event()

            def report(done, total, q=q, cancel=cancel):
                if cancel.is_set():
                    raise _Cancelled
                q.put((done, total))

            def work(dyn=dyn, q=q, box=box, report=report):
                try:
                    box["r"] = evaluate(model, enc.ids, dyn, progress=report)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the worker
                    box["e"] = exc
                q.put(None)

            t = threading.Thread(target=work, daemon=True)
            t.start()
            try:
                while (item := q.get()) is not None:
                    self._progress = (name, *item)
                    yield item
            finally:
                cancel.set()
                t.join()
            if "e" in box:
                raise box["e"]
            self.results.append(box["r"].to_dict())

    def snapshot(self) -> list[dict]:
        return list(self.results)

    def progress(self):
        return self._progress

    def result(self, stopped: bool) -> dict:
        return {
            "results": list(self.results),
            "stopped": stopped,
            "unknown": getattr(self, "unknown", 0),
        }


class TextTab(QWidget):
    """Prime text + temperature -> live generated text shaded by surprisal; file evaluation."""

    generation_finished = Signal(object)  # GenerateJob.result dict
    evaluation_finished = Signal(object)  # EvaluateJob.result dict

    def __init__(self, parent=None, model_path=None):
        super().__init__(parent)
        self.handle = ModelHandle(model_path)
        self.controller = WorkerController(self)
        self.controller.partial_result.connect(self._on_partial)
        self.controller.progress.connect(self._on_progress)
        self.controller.finished.connect(self._on_finished)
        self.controller.failed.connect(self._on_failed)
        self._job_kind: str | None = None
        self._build()
        self._set_running(None)

    # -- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        root = QVBoxLayout(self)
        top = QHBoxLayout()
        self.model_label = QLabel(f"Model: {self.handle.label}")
        self.model_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        open_btn = QPushButton("Open model…")
        open_btn.clicked.connect(self._choose_model)
        top.addWidget(self.model_label, 1)
        top.addWidget(open_btn)
        root.addLayout(top)

        gen = QGroupBox("Generate")
        form = QFormLayout(gen)
        self.prime_edit = QLineEdit("ROMEO:\n")
        self.prime_edit.setPlaceholderText("priming text the model continues (may be empty)")
        self.prime_edit.setToolTip("Text the model continues; type \\n for a line break")
        self.temperature = QDoubleSpinBox(minimum=0.05, maximum=3.0, singleStep=0.05, value=0.8)
        self.temperature.setToolTip("Below 1: safer, more repetitive text; above 1: wilder")
        self.length = QSpinBox(minimum=1, maximum=100_000, value=600)
        self.generate_btn = QPushButton("Generate")
        self.stop_btn = QPushButton("Stop")
        self.generate_btn.clicked.connect(self.generate)
        self.stop_btn.clicked.connect(self.controller.request_stop)
        row = QHBoxLayout()
        for w in (QLabel("Temperature"), self.temperature, QLabel("Symbols"), self.length):
            row.addWidget(w)
        row.addStretch(1)
        row.addWidget(self.generate_btn)
        row.addWidget(self.stop_btn)
        form.addRow("Prime", self.prime_edit)
        form.addRow(row)
        root.addWidget(gen)

        self.output = QTextEdit(readOnly=True)
        self.output.setPlaceholderText("Generated text appears here, shaded by surprisal.")
        self.output.setStyleSheet("QTextEdit { font-family: monospace; font-size: 11pt; }")
        root.addWidget(self.output, 1)
        self.legend = QLabel(self._legend_html())
        self.legend.setToolTip(
            "Background = surprisal -log2 p of each generated character under the model: "
            "white = the model was sure, red = it was surprised. Hover a character for its "
            "probability."
        )
        root.addWidget(self.legend)

        ev = QGroupBox("Evaluate a text file (bits per character)")
        ev_layout = QHBoxLayout(ev)
        self.eval_btn = QPushButton("Evaluate file…")
        self.eval_btn.clicked.connect(self._choose_eval_file)
        self.tail = QDoubleSpinBox(minimum=0.0, maximum=0.99, singleStep=0.05, value=0.1)
        self.tail.setToolTip("Evaluate only this last fraction of the file (0 = all of it)")
        self.dynamic = QCheckBox("Dynamic evaluation", checked=True)
        self.dynamic.setToolTip("Keep adapting the weights while predicting (Sec. 3.1)")
        self.results = QTableWidget(0, 4)
        self.results.setHorizontalHeaderLabels(["evaluation", "BPC", "word perplexity", "symbols"])
        self.results.verticalHeader().setVisible(False)
        self.results.setMaximumHeight(90)
        col = QVBoxLayout()
        for w in (self.eval_btn, QLabel("Tail fraction"), self.tail, self.dynamic):
            col.addWidget(w)
        ev_layout.addLayout(col)
        ev_layout.addWidget(self.results, 1)
        root.addWidget(ev)

        bottom = QHBoxLayout()
        self.progress = QProgressBar()
        self.status = QLabel("")
        bottom.addWidget(self.progress)
        bottom.addWidget(self.status, 1)
        root.addLayout(bottom)

    @staticmethod
    def _legend_html() -> str:
        cells = "".join(
            f'<span style="background:{surprisal_color(b).name()}">&nbsp;{b:g}&nbsp;</span>'
            for b in (0, 1, 2, 3, 4, 6, 8)
        )
        return f"Surprisal (bits, -log<sub>2</sub> p): {cells} &nbsp;(hover a character)"

    # -- actions -----------------------------------------------------------------------------
    def set_model(self, model=None, path=None) -> None:
        """Use an already-built TextModel (tests, the model manager) or a model file."""
        self.handle = ModelHandle(path, model)
        self.model_label.setText(f"Model: {self.handle.label}")

    def _choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open text model", "", "Models (*.safetensors)")
        if path:
            self.set_model(path=path)

    def generate(self, seed: int | None = None) -> None:
        if self.controller.is_running():
            return
        self.output.clear()
        prime = self.prime_edit.text().replace("\\n", "\n")
        self._insert(prime, QTextCharFormat())
        self.progress.setRange(0, self.length.value())
        job = GenerateJob(self.handle, prime, self.temperature.value(), self.length.value(), seed)
        self._start("generate", job, "Generating… (loading the model on first use)")

    def _choose_eval_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Text file to evaluate", "", "Text (*.txt);;All (*)"
        )
        if path:
            self.evaluate_file(path)

    def evaluate_file(self, path: str) -> None:
        if self.controller.is_running():
            return
        self.results.setRowCount(0)
        job = EvaluateJob(self.handle, path, self.tail.value(), self.dynamic.isChecked())
        self._start("evaluate", job, f"Evaluating {Path(path).name}…")

    def _start(self, kind: str, job, message: str) -> None:
        self._job_kind = kind
        self._set_running(kind)
        self.status.setText(message)
        self.controller.start(job, interval=1 / 20)

    def _set_running(self, kind: str | None) -> None:
        self.generate_btn.setEnabled(kind is None)
        self.eval_btn.setEnabled(kind is None)
        self.stop_btn.setEnabled(kind is not None)

    # -- worker signals ----------------------------------------------------------------------
    def _insert(self, text: str, fmt: QTextCharFormat) -> None:
        cursor = self.output.textCursor()
        cursor.movePosition(QTextCursor.End)
        cursor.insertText(text, fmt)

    def _on_partial(self, snapshot) -> None:
        if self._job_kind == "generate":
            for p in snapshot:
                fmt = QTextCharFormat()
                fmt.setBackground(surprisal_color(p.surprisal))
                shown = repr(p.text)
                fmt.setToolTip(
                    f"{shown}: p = {p.probability:.3g}, surprisal {p.surprisal:.2f} bits"
                )
                self._insert(p.text, fmt)
            self.output.ensureCursorVisible()
        elif self._job_kind == "evaluate":
            self._show_results(snapshot)

    def _on_progress(self, progress) -> None:
        if self._job_kind == "generate":
            self.progress.setValue(progress[0])
        elif self._job_kind == "evaluate":
            name, done, total = progress
            self.progress.setRange(0, max(total, 1))
            self.progress.setValue(done)
            self.status.setText(f"Evaluating ({name})…")

    def _show_results(self, results: list[dict]) -> None:
        self.results.setRowCount(len(results))
        for i, r in enumerate(results):
            cells = [
                "dynamic" if r["dynamic"] else "static",
                f"{r['bpc']:.4f}",
                f"{r['word_perplexity']:.1f}",
                f"{r['symbols']:,}",
            ]
            for j, text in enumerate(cells):
                self.results.setItem(i, j, QTableWidgetItem(text))

    def _on_finished(self, result: dict) -> None:
        kind, self._job_kind = self._job_kind, None
        self._set_running(None)
        if kind == "generate":
            n = result["symbols"]
            mean = result["bits"] / n if n else math.nan
            end = "stopped" if result["stopped"] else "done"
            self.status.setText(f"{end}: {n} symbols, mean surprisal {mean:.2f} bits/symbol")
            self.generation_finished.emit(result)
        else:
            self._show_results(result["results"])
            note = f"; {result['unknown']} unknown characters mapped" if result["unknown"] else ""
            self.status.setText(("stopped" if result["stopped"] else "done") + note)
            self.evaluation_finished.emit(result)

    def _on_failed(self, message: str) -> None:
        self._job_kind = None
        self._set_running(None)
        self.status.setText(f"Error: {message}")

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.controller.shutdown()
        super().closeEvent(event)
