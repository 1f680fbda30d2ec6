"""Long work off the UI thread: a worker QObject moved to a QThread, owned by a controller.

A job is a plain object with
  - `steps()`: a generator; the worker checks its stop flag between items,
  - `snapshot()`: the latest partial result (kept small; views pull it on a timer),
  - `progress()`: a small progress record, and `result(stopped)`: the final result.
Emissions are throttled to `interval` seconds (~30 Hz by default). Exceptions never escape:
they become a `failed(str)` signal with a message a user can read.
"""

from __future__ import annotations

import logging
import time

from PySide6.QtCore import QObject, QThread, Signal, Slot

log = logging.getLogger(__name__)


def describe_error(exc: BaseException) -> str:
    """A message for a user: engine errors speak for themselves, the rest get their type."""
    from engine import EngineError

    if isinstance(exc, EngineError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "Out of memory. Try a shorter text, a smaller model or a smaller batch."
    if isinstance(exc, OSError):
        if getattr(exc, "errno", None) == 28:
            return f"The disk is full: {exc.filename or ''}. Free some space and try again."
        return f"A file could not be read or written: {exc.strerror or exc} ({exc.filename})"
    return f"Unexpected error ({type(exc).__name__}): {exc}"


class GeneratorWorker(QObject):
    progress = Signal(object)
    partial_result = Signal(object)
    finished = Signal(object)
    failed = Signal(str)

    def __init__(self, job, interval: float = 1 / 30):
        super().__init__()
        self.job = job
        self.interval = interval
        self._stop = False
        self._paused = False

    def request_stop(self) -> None:  # called from the UI thread; a bool store is atomic
        self._stop = True

    def set_paused(self, paused: bool) -> None:
        self._paused = paused

    @Slot()
    def run(self) -> None:
        try:
            last = 0.0
            for _ in self.job.steps():
                while self._paused and not self._stop:
                    time.sleep(0.05)
                if self._stop:
                    break
                now = time.monotonic()
                if now - last >= self.interval:
                    last = now
                    self.partial_result.emit(self.job.snapshot())
                    self.progress.emit(self.job.progress())
            self.partial_result.emit(self.job.snapshot())
            self.progress.emit(self.job.progress())
            self.finished.emit(self.job.result(self._stop))
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the user
            log.exception("worker failed")
            self.failed.emit(describe_error(exc))


class WorkerController(QObject):
    """Owns one thread at a time; relays the worker's signals; stops it cleanly."""

    started = Signal()
    progress = Signal(object)
    partial_result = Signal(object)
    finished = Signal(object)
    failed = Signal(str)
    stopped = Signal()  # the thread is gone (after finished or failed)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._thread: QThread | None = None
        self._worker: GeneratorWorker | None = None

    def is_running(self) -> bool:
        return self._thread is not None

    def start(self, job, interval: float = 1 / 30) -> None:
        if self._thread is not None:
            raise RuntimeError("a job is already running")
        thread = QThread(self)
        worker = GeneratorWorker(job, interval)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.progress.connect(self.progress)
        worker.partial_result.connect(self.partial_result)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        self._thread, self._worker = thread, worker
        thread.start()
        self.started.emit()

    def request_stop(self) -> None:
        if self._worker is not None:
            self._worker.request_stop()

    def set_paused(self, paused: bool) -> None:
        if self._worker is not None:
            self._worker.set_paused(paused)

    def _cleanup(self) -> None:
        thread, worker = self._thread, self._worker
        self._thread = self._worker = None
        if thread is not None:
            thread.quit()
            thread.wait()
            worker.deleteLater()
            thread.deleteLater()

    def _on_finished(self, result) -> None:
        self._cleanup()
        self.finished.emit(result)
        self.stopped.emit()

    def _on_failed(self, message: str) -> None:
        self._cleanup()
        self.failed.emit(message)
        self.stopped.emit()

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Ask the worker to stop and wait for its thread; True when no thread is left."""
        thread = self._thread
        if thread is None:
            return True
        self.request_stop()
        self._worker.set_paused(False)
        thread.quit()  # the event loop ends after run() returns
        ok = thread.wait(timeout_ms)
        if ok:
            # deliver the queued finished/failed so results (e.g. the last checkpoint) land
            from PySide6.QtCore import QCoreApplication

            QCoreApplication.sendPostedEvents()
            QCoreApplication.processEvents()
            if self._thread is thread:  # signal was not delivered: clean up ourselves
                self._thread = self._worker = None
                thread.deleteLater()
        return ok
