"""Which handwriting model the studio writes with, loaded off the UI thread.

States: no model yet (`loaded is None`, `status` says why), loading, ready. Torch is first
imported here, in a worker thread, so the window is up before it loads.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from studio.workers import WorkerController

MODEL_FILE = "model.safetensors"
log = logging.getLogger(__name__)


def bundled_model_file(kind: str = "synthesis") -> Path:
    from engine.resources import default_model_path

    return default_model_path(kind) / MODEL_FILE


class _LoadJob:
    def __init__(self, source):
        self.source = source  # a path, or ("tiny", kind)
        self._result = None

    def steps(self):
        if isinstance(self.source, tuple):
            self._result = make_untrained(*self.source)
        else:
            from engine.checkpoint import load_model

            loaded = load_model(self.source)
            if loaded.kind not in ("synthesis", "prediction"):
                from engine.checkpoint import ModelFileError

                raise ModelFileError(
                    f"{self.source} holds a {loaded.kind!r} model; the studio writes with a "
                    "handwriting 'synthesis' or 'prediction' model"
                )
            self._result = loaded
        _warm_up(self._result)
        yield

    def snapshot(self):
        return None

    def progress(self):
        return None

    def result(self, stopped):
        return self._result


def _warm_up(loaded) -> None:
    """One sampling step, here in the loading thread, so the first Write draws at once: it
    prepares the fast step's weights (int8 quantisation of the bundled model: ~14 ms) and
    runs each kernel once. studio.measure's first ink went from 56 to ~10 ms. A failure
    here is only logged: writing hits the same error and shows it."""
    import itertools

    import torch

    from engine.fast import sampling_threads
    from engine.sampler import generate

    text = "a" if loaded.kind == "synthesis" else None
    try:
        torch.set_num_threads(sampling_threads(loaded.model, keep_free=1))  # as WriteJob does
        for _ in itertools.islice(generate(loaded, text, seed=0, max_steps=1), 1):
            pass
    except Exception:  # noqa: BLE001 - see the docstring
        log.warning("warming up the model failed", exc_info=True)


def make_untrained(preset_name: str = "tiny", kind: str = "synthesis"):
    """A randomly initialised model for exploring the views before any model is installed."""
    import torch

    from engine.alphabet import Alphabet
    from engine.checkpoint import LoadedModel
    from engine.models import HandwritingModel, preset
    from engine.strokes import NormStats

    torch.manual_seed(0)
    model = HandwritingModel(preset(preset_name, kind=kind)).eval()
    norm = NormStats((0.0, 0.0), (1.0, 1.0))
    return LoadedModel(model, kind, model.config, Alphabet(), norm, {"untrained": True}, None)


@dataclass
class ModelInfo:
    name: str
    kind: str
    path: Path | None


_frozen = False


def _freeze_startup_objects() -> None:
    """Once, when the first model has loaded: everything alive then (Qt, torch, the studio's
    widgets, the model) lives as long as the app, so take it out of the cyclic garbage
    collector's full passes. Each full pass walked 200,000+ objects with the GIL held: a
    100-160 ms stall of the UI thread at the end of a line, when the sampler had made its
    step records (studio.measure, worst write of three: 117-164 ms before, 38-104 ms after,
    together with fewer step records in engine.layout.iter_best_line). Refcounting still
    frees whatever is dropped later, such as a replaced model."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.freeze()


class ModelManager(QObject):
    changed = Signal()  # `loaded` changed (or its status)
    failed = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.loaded = None
        self.name = ""
        self.status = "No model loaded."
        self.loading = False
        self._controller = WorkerController(self)
        self._controller.finished.connect(self._on_loaded)
        self._controller.failed.connect(self._on_failed)
        self._pending_name = ""

    @property
    def kind(self) -> str | None:
        return None if self.loaded is None else self.loaded.kind

    def load_file(self, path, name: str | None = None) -> None:
        self._start(Path(path), name or Path(path).name)

    def load_bundled(self, kind: str = "synthesis") -> bool:
        path = bundled_model_file(kind)
        if not path.is_file():
            self.status = (
                f"No {kind} model is installed (expected {path}). Open a model file, train one "
                "in the Train tab, or create an untrained tiny model to explore the views."
            )
            self.changed.emit()
            return False
        self._start(path, f"bundled {kind} model")
        return True

    def create_untrained(self, kind: str = "synthesis") -> None:
        self._start(("tiny", kind), f"untrained tiny {kind} model")

    def set_loaded(self, loaded, name: str) -> None:
        self.loaded, self.name = loaded, name
        self.status = f"Model: {name} ({loaded.kind})"
        self.changed.emit()

    def _start(self, source, name: str) -> None:
        if self._controller.is_running():
            self.failed.emit("A model is still loading; wait a moment and try again.")
            return
        self.loading = True
        self._pending_name = name
        self.status = f"Loading {name}..."
        self.changed.emit()
        self._controller.start(_LoadJob(source))

    def _on_loaded(self, loaded) -> None:
        self.loading = False
        _freeze_startup_objects()
        self.set_loaded(loaded, self._pending_name)

    def _on_failed(self, message: str) -> None:
        self.loading = False
        self.status = "No model loaded." if self.loaded is None else self.status
        self.changed.emit()
        self.failed.emit(message)

    def wait(self, timeout_ms: int = 30000) -> bool:
        return self._controller.shutdown(timeout_ms)
