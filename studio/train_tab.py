"""The Train tab: pick data, model size and device; start, pause, resume, cancel; watch the
loss curves, throughput, ETA and sample previews; use a checkpoint for writing."""

from __future__ import annotations

import sys
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from studio.canvas import configure_page, ink_path
from studio.training import SOURCES, TrainJob
from studio.workers import WorkerController
from studio.write_tab import Banner


def _fmt_time(seconds) -> str:
    if seconds is None:
        return "--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class TrainTab(QWidget):
    use_model = Signal(object)  # path of the checkpoint to write with
    training_finished = Signal(object)

    def __init__(self, models, styles, parent=None):
        super().__init__(parent)
        self.models, self.styles = models, styles
        self.controller = WorkerController(self)
        self.latest = None
        self._drawn = None
        self.paused = False

        self.source = QComboBox()
        for key, label in SOURCES.items():
            self.source.addItem(label, key)
        self.path = QLineEdit()
        self.path.setPlaceholderText("folder or file (not needed for the bundled corpus)")
        self.browse = QPushButton("Browse...")
        self.start_from = QComboBox()
        self.start_from.addItem("A new network", "new")
        self.start_from.addItem("The model in use (fine-tune it)", "current")
        self.start_from.setToolTip(
            "Fine-tuning continues the model the Write tab uses (its size, network and "
            "normalisation) on the data chosen above, e.g. your own captured styles"
        )
        self.kind = QComboBox()
        self.kind.addItem("Synthesis (writes text)", "synthesis")
        self.kind.addItem("Prediction (scribbles, no text)", "prediction")
        self.preset = QComboBox()
        from studio.model_presets import PRESET_NOTES

        for name, note in PRESET_NOTES.items():
            self.preset.addItem(f"{name}: {note}", name)
        self.preset.setCurrentIndex(self.preset.findData("small"))
        self.device = QComboBox()
        self.device.addItem("Auto", "auto")
        self.device.addItem("CPU", "cpu")
        self.steps = QSpinBox()
        self.steps.setRange(1, 10_000_000)
        self.steps.setValue(2000)
        self.batch = QSpinBox()
        self.batch.setRange(1, 1024)
        self.batch.setValue(16)
        self.start_button = QPushButton("Start")
        self.pause_button = QPushButton("Pause")
        self.cancel_button = QPushButton("Cancel")
        self.progress = QProgressBar()
        self.rate = QLabel("Not training.")
        self.banner = Banner()
        self.checkpoints = QListWidget()
        self.use_button = QPushButton("Use this model for writing")

        path_row = QHBoxLayout()
        path_row.addWidget(self.path, 1)
        path_row.addWidget(self.browse)
        form = QFormLayout()
        form.addRow("Data", self.source)
        form.addRow("", path_row)
        form.addRow("Start from", self.start_from)
        form.addRow("Network", self.kind)
        form.addRow("Size", self.preset)
        form.addRow("Device", self.device)
        form.addRow("Steps", self.steps)
        form.addRow("Batch size", self.batch)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.pause_button, self.cancel_button):
            buttons.addWidget(b)
        left = QVBoxLayout()
        left.addLayout(form)
        left.addLayout(buttons)
        left.addWidget(self.progress)
        left.addWidget(self.rate)
        left.addWidget(self.banner)
        left.addWidget(QLabel("Checkpoints"))
        left.addWidget(self.checkpoints, 1)
        left.addWidget(self.use_button)
        left_w = QWidget()
        left_w.setLayout(left)
        left_w.setMaximumWidth(440)

        self.loss_plot = pg.PlotWidget(background="w", title="Loss (nats per point)")
        # top right, opaque and in dark text: the default (top left, transparent, light grey)
        # sat on the early, high part of the loss curve and was hard to read
        legend = self.loss_plot.addLegend(
            offset=(-10, 10), brush=pg.mkBrush(255, 255, 255, 230), pen=pg.mkPen(180, 180, 180)
        )
        legend.setLabelTextColor(pg.mkColor(40, 40, 40))
        self.loss_plot.setLabel("bottom", "step")
        self.train_curve = self.loss_plot.plot(pen=pg.mkPen(40, 90, 200, width=2), name="train")
        self.valid_curve = self.loss_plot.plot(
            pen=pg.mkPen(220, 90, 40, width=2), symbol="o", symbolSize=6, name="validation"
        )
        self.preview_plot = pg.PlotWidget(background="w", title="Sample preview")
        configure_page(self.preview_plot.getPlotItem())
        self.preview_ink = pg.PlotDataItem(pen=pg.mkPen(20, 30, 90, width=2), connect="finite")
        self.preview_plot.addItem(self.preview_ink)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.loss_plot)
        right.addWidget(self.preview_plot)
        outer = QHBoxLayout(self)
        outer.addWidget(left_w)
        outer.addWidget(right, 1)

        self.browse.clicked.connect(self._browse)
        self.start_from.currentIndexChanged.connect(self._start_from_changed)
        self.start_button.clicked.connect(lambda: self.start())
        self.pause_button.clicked.connect(self.toggle_pause)
        self.cancel_button.clicked.connect(self.cancel)
        self.use_button.clicked.connect(self._use_selected)
        self.controller.partial_result.connect(self._on_partial)
        self.controller.finished.connect(self._on_finished)
        self.controller.failed.connect(self._on_failed)
        self.models.changed.connect(self._check_gpu)
        self.timer = QTimer(self)
        self.timer.setInterval(200)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self._set_running(False)

    def _start_from_changed(self) -> None:
        new = self.start_from.currentData() == "new"
        self.kind.setEnabled(new)  # a fine-tuned model keeps its own network and size
        self.preset.setEnabled(new)

    def _model_to_finetune(self):
        """Path of the model in use, or an error message."""
        loaded = getattr(self.models, "loaded", None)
        if loaded is None:
            return None, "no model is loaded to fine-tune"
        if loaded.kind not in ("synthesis", "prediction"):
            return None, f"the model in use is a {loaded.kind} model, not a handwriting model"
        if loaded.path is None:
            return None, "the model in use has no file (an untrained network); start a new one"
        return loaded.path, None

    def _check_gpu(self) -> None:
        """Offer the GPU once torch is loaded anyway (never import it just for this)."""
        torch = sys.modules.get("torch")
        if torch is not None and self.device.findData("cuda") < 0 and torch.cuda.is_available():
            self.device.addItem(f"GPU ({torch.cuda.get_device_name(0)})", "cuda")

    def _browse(self) -> None:
        source = self.source.currentData()
        if source == "unipen":
            path, _ = QFileDialog.getOpenFileName(
                self, "UNIPEN archive", "", "UNIPEN archive (*.tar.xz *.tar *.tgz)"
            )
            if not path:
                path = QFileDialog.getExistingDirectory(self, "UNIPEN folder")
        elif source == "inkml":
            path = QFileDialog.getExistingDirectory(self, "Folder of InkML files")
        else:
            path = QFileDialog.getExistingDirectory(self, "Data folder")
        if path:
            self.path.setText(path)

    # -- control -----------------------------------------------------------------------------
    def is_training(self) -> bool:
        return self.controller.is_running()

    def start(self, **overrides) -> bool:
        if self.controller.is_running():
            return False
        kwargs = dict(
            source=self.source.currentData(),
            path=self.path.text().strip() or None,
            styles=self.styles,
            kind=self.kind.currentData(),
            preset=self.preset.currentData(),
            device=self.device.currentData(),
            steps=self.steps.value(),
            batch_size=self.batch.value(),
        )
        if self.start_from.currentData() == "current" and "init_from" not in overrides:
            path, problem = self._model_to_finetune()
            if problem:
                self.banner.show_message(f"Cannot fine-tune: {problem}.")
                return False
            kwargs.update(init_from=path, kind=self.models.loaded.kind)
        kwargs.update(overrides)
        try:
            job = TrainJob(**kwargs)
        except Exception as exc:  # noqa: BLE001
            from studio.workers import describe_error

            self.banner.show_message(f"Cannot start training: {describe_error(exc)}")
            return False
        self.banner.clear_message()
        self.latest = None
        self.train_curve.setData([], [])
        self.valid_curve.setData([], [])
        self.preview_ink.setData([], [])
        self.paused = False
        self.controller.start(job, interval=1 / 10)
        self._set_running(True)
        self.rate.setText("Starting (loading torch and the data)...")
        return True

    def toggle_pause(self) -> None:
        self.paused = not self.paused
        self.controller.set_paused(self.paused)
        self.pause_button.setText("Resume" if self.paused else "Pause")
        if self.paused:
            self.rate.setText("Paused.")

    def cancel(self) -> None:
        self.controller.set_paused(False)
        self.controller.request_stop()
        self.rate.setText("Stopping after this step and saving a checkpoint...")

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.pause_button.setEnabled(running)
        self.cancel_button.setEnabled(running)
        self.pause_button.setText("Pause")

    # -- results -----------------------------------------------------------------------------
    def _on_partial(self, snap) -> None:
        self.latest = snap

    def refresh(self) -> None:
        snap = self.latest
        if snap is None or snap is self._drawn:
            return
        self._drawn = snap
        self.train_curve.setData(snap.train_steps, snap.train_loss)
        self.valid_curve.setData(snap.valid_steps, snap.valid_loss)
        self.progress.setRange(0, max(snap.total, 1))
        self.progress.setValue(snap.step)
        if snap.step and not self.paused:
            self.rate.setText(
                f"Step {snap.step}/{snap.total} - {snap.steps_per_s:.2f} steps/s, "
                f"{snap.points_per_s:,.0f} points/s - ETA {_fmt_time(snap.eta_s)}"
            )
        if snap.message and not self.banner.isVisible():
            self.banner.show_message(snap.message, "info")
        if snap.preview:
            import numpy as np

            pts = np.concatenate(snap.preview)
            ups = np.zeros(len(pts), bool)
            ups[np.cumsum([len(s) for s in snap.preview]) - 1] = True
            x, y = ink_path(pts, ups, [0])
            self.preview_ink.setData(x, y)
            self.preview_plot.setTitle(f"Sample preview at step {snap.preview_step}")
        self._list_checkpoints(snap.checkpoints)

    def _list_checkpoints(self, paths) -> None:
        have = [
            self.checkpoints.item(i).data(Qt.ItemDataRole.UserRole)
            for i in range(self.checkpoints.count())
        ]
        if have == paths:
            return
        self.checkpoints.clear()
        for p in paths:
            item = QListWidgetItem(Path(p).stem)
            item.setData(Qt.ItemDataRole.UserRole, p)
            item.setToolTip(p)
            self.checkpoints.addItem(item)
        if paths:
            self.checkpoints.setCurrentRow(len(paths) - 1)

    def _use_selected(self) -> None:
        item = self.checkpoints.currentItem()
        if item is None:
            self.banner.show_message("No checkpoint yet: train first.", "warning")
            return
        self.use_model.emit(Path(item.data(Qt.ItemDataRole.UserRole)))

    def _on_finished(self, snap) -> None:
        self.latest = snap
        self.refresh()
        self._set_running(False)
        done = "Cancelled" if snap.stopped else "Finished"
        self.rate.setText(f"{done} at step {snap.step}. Checkpoints are listed below.")
        self.training_finished.emit(snap)

    def _on_failed(self, message: str) -> None:
        self._set_running(False)
        self.rate.setText("Training stopped with an error.")
        self.banner.show_message(f"Training failed: {message}")

    def shutdown(self, timeout_ms: int = 60000) -> bool:
        return self.controller.shutdown(timeout_ms)
