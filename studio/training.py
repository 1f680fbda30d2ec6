"""In-app training: a job (studio.workers protocol) around engine.trainer.Trainer.

Datasets: the bundled corpus, a UNIPEN folder or archive, an IAM-OnDB folder, InkML files, or
the user's captured styles. Everything but the bundled corpus goes through
engine.data.preprocess.preprocess_ink, as the corpus did. The trainer's generator is consumed
one step per item, so pause, cancel and close all happen between optimiser steps; on cancel a
checkpoint is written before the job ends.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from engine import EngineError

SOURCES = {
    "bundled": "Bundled corpus (UNIPEN lines)",
    "unipen": "UNIPEN folder or .tar.xz archive",
    "iam": "IAM-OnDB folder",
    "inkml": "InkML files",
    "captured": "My captured styles",
}


class DatasetError(EngineError, ValueError):
    pass


@dataclass
class Dataset:
    texts: list[str]
    offsets: list[np.ndarray]  # preprocessed, not normalised
    split: np.ndarray  # 0 train, 1 valid
    skipped: int = 0
    description: str = ""


def dataset_from_inks(inks, description: str = "") -> Dataset:
    """Preprocess inks; every 10th line validates (with one line it does both)."""
    from engine.data.preprocess import preprocess_ink

    texts, offsets, skipped = [], [], 0
    for ink in inks:
        text = " ".join(ink.text.split())
        try:
            off = preprocess_ink(ink)
        except EngineError:
            skipped += 1
            continue
        if not text or len(off) < 2:
            skipped += 1
            continue
        texts.append(text)
        offsets.append(off)
    if not texts:
        raise DatasetError(
            f"{description or 'the data'} holds no usable labelled lines ({skipped} skipped)"
        )
    split = np.zeros(len(texts), np.int64)
    split[9::10] = 1
    if len(texts) == 1:  # one line: train and validate on it (a demo, not a measurement)
        texts, offsets, split = texts * 2, offsets * 2, np.array([0, 1])
    elif not (split == 1).any():
        split[-1] = 1
    return Dataset(texts, offsets, split, skipped, description)


def load_dataset(source: str, path=None, styles=None, limit: int | None = None) -> Dataset:
    if source == "bundled":
        from engine.resources import default_corpus_path

        p = Path(path) if path else default_corpus_path()
        if not p.is_file():
            raise DatasetError(f"the bundled corpus is not installed (expected {p})")
        from engine.data.corpus import load_corpus

        c = load_corpus(p)
        return Dataset(list(c.texts), list(c.offsets), np.asarray(c.split), 0, str(p))
    if source == "captured":
        store = styles
        inks = [store.load(s) for s in store.list() if not s.builtin]
        if not inks:
            raise DatasetError("you have no captured styles yet: save one on the Capture tab")
        return dataset_from_inks(inks, "captured styles")
    if not path:
        raise DatasetError(f"choose a file or folder for {SOURCES.get(source, source)}")
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path} does not exist")
    if source == "unipen":
        from engine.data.unipen import iter_unipen

        inks = [r.ink for _, r in zip(range(limit or 10**9), iter_unipen(path))]
    elif source == "inkml":
        from studio.export import import_inkml

        files = sorted(path.glob("*.inkml")) if path.is_dir() else [path]
        inks = [import_inkml(f) for f in files]
    elif source == "iam":
        from engine.data.iam import read_iam

        inks = [r.ink for r in read_iam(path)][: limit or None]
    else:
        raise DatasetError(f"unknown data source {source!r}; choose one of {', '.join(SOURCES)}")
    return dataset_from_inks(inks, str(path))


@dataclass
class TrainSnapshot:
    step: int = 0
    total: int = 0
    train_steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    valid_steps: list[int] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    points_per_s: float = 0.0
    steps_per_s: float = 0.0
    eta_s: float | None = None
    checkpoints: list[str] = field(default_factory=list)
    preview: list | None = None  # strokes of the latest sample preview
    preview_step: int = -1
    message: str = ""
    run_dir: str = ""
    stopped: bool = False


FINETUNE_LR = 1e-4  # Adam, with a linear warm-up over FINETUNE_WARMUP steps
FINETUNE_WARMUP = 50


class TrainJob:
    def __init__(
        self,
        *,
        source="bundled",
        path=None,
        styles=None,
        kind="synthesis",
        preset="small",
        device="auto",
        steps=2000,
        batch_size=16,
        max_len=400,
        run_dir=None,
        preview_every=200,
        preview_text="hello",
        dataset=None,
        val_every=100,
        ckpt_every=500,
        threads: int | None = None,
        init_from=None,
    ):
        self.source, self.path, self.styles = source, path, styles
        # fine-tuning: start from this model file's weights, network and normalisation
        self.init_from = Path(init_from) if init_from else None
        self.kind, self.preset, self.device = kind, preset, device
        self.steps_total, self.batch_size, self.max_len = steps, batch_size, max_len
        self.preview_every, self.preview_text = preview_every, preview_text
        self.val_every, self.ckpt_every, self.threads = val_every, ckpt_every, threads
        self.dataset = dataset
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        if run_dir is None:
            from studio import paths

            name = "finetune" if self.init_from else preset
            run_dir = paths.models_dir() / f"{kind}-{name}-{stamp}"
        self.run_dir = Path(run_dir)
        self.snap = TrainSnapshot(total=steps, run_dir=str(self.run_dir))
        self.trainer = None
        self._t0 = None
        self._s0 = 0

    def _build(self):
        import torch

        from engine.alphabet import Alphabet
        from engine.data.preprocess import TRAIN_STEP
        from engine.models import HandwritingModel, preset
        from engine.train_data import HandwritingTask
        from engine.trainer import TrainConfig, Trainer, resolve_device

        # leave a core to the UI thread (and on a 2-core machine avoid the ~100x slowdown of
        # two torch threads competing with other work, see platform notes)
        threads = self.threads or max(1, (os.cpu_count() or 2) - 1)
        torch.set_num_threads(threads)
        self.snap.message = "Loading data..."
        data = self.dataset or load_dataset(self.source, self.path, self.styles)
        # a new network learns its own spacing (TRAIN_STEP): the task fits its normalisation
        alphabet, norm = Alphabet(), None
        if self.init_from is not None:
            model, norm, alphabet = self._initial_model(alphabet)
        else:
            model = HandwritingModel(
                preset(self.preset, self.kind, alphabet_size=len(alphabet), point_step=TRAIN_STEP)
            )
        task = HandwritingTask(
            model,
            data.texts,
            data.offsets,
            data.split,
            norm,
            alphabet,
            batch_size=self.batch_size,
            max_len=self.max_len,
            val_max_sequences=256,
            description={
                "source": self.source,
                "preset": None if self.init_from else self.preset,
                **({"init_from": str(self.init_from)} if self.init_from else {}),
            },
        )
        # a fresh Adam at its default 1e-3 moves every weight of a trained model at once: the
        # bundled model went from -3.8 to +0.8 nats/point in its first fine-tuning step
        finetune = dict(lr=FINETUNE_LR, warmup_steps=FINETUNE_WARMUP) if self.init_from else {}
        config = TrainConfig(
            steps=self.steps_total,
            optimizer="adam",
            val_every=self.val_every,
            ckpt_every=self.ckpt_every,
            **finetune,
        )
        self.trainer = Trainer(
            task, config, run_dir=self.run_dir, device=resolve_device(self.device)
        )
        self.snap.message = (
            f"Training on {len(data.texts)} lines "
            f"({data.skipped} skipped) from {data.description or self.source}"
        )

    def _initial_model(self, alphabet):
        """The model to fine-tune, with the normalisation and alphabet its weights expect."""
        from engine.train_cli import load_for_training

        loaded = load_for_training(self.init_from)
        self.kind = loaded.kind
        return loaded.model, loaded.norm, loaded.alphabet or alphabet

    def steps(self):
        self._build()
        yield
        self._t0, self._s0 = time.monotonic(), self.trainer.step
        try:
            for report in self.trainer.run():
                self._record(report)
                if self.preview_every and report.step % self.preview_every == 0:
                    self._preview(report.step)
                yield
        finally:
            self.trainer.close()

    def _record(self, r) -> None:
        s = self.snap
        s.step = r.step
        if np.isfinite(r.loss_per_point):
            s.train_steps.append(r.step)
            s.train_loss.append(float(r.loss_per_point))
        if r.validation and "nats_per_point" in r.validation:
            s.valid_steps.append(r.step)
            s.valid_loss.append(float(r.validation["nats_per_point"]))
        s.points_per_s = float(r.points_per_s)
        elapsed = time.monotonic() - self._t0
        done = r.step - self._s0
        s.steps_per_s = done / elapsed if elapsed > 0 else 0.0
        s.eta_s = (r.total_steps - r.step) / s.steps_per_s if s.steps_per_s > 0 else None
        if "checkpoint" in r.events:
            s.checkpoints = [str(p) for _, p in self.trainer.checkpoints()]

    def _preview(self, step: int) -> None:
        from engine.sampler import sample

        model = self.trainer.model
        task = self.trainer.task
        try:
            text = self.preview_text if self.kind == "synthesis" else None
            out = sample(
                model, text, alphabet=task.alphabet, norm=task.norm, bias=0.5, seed=0, max_steps=300
            )
            self.snap.preview = out[0].strokes() if out else None
            self.snap.preview_step = step
        finally:
            model.train()

    def snapshot(self) -> TrainSnapshot:
        s = self.snap
        return TrainSnapshot(
            s.step,
            s.total,
            list(s.train_steps),
            list(s.train_loss),
            list(s.valid_steps),
            list(s.valid_loss),
            s.points_per_s,
            s.steps_per_s,
            s.eta_s,
            list(s.checkpoints),
            s.preview,
            s.preview_step,
            s.message,
            s.run_dir,
            s.stopped,
        )

    def progress(self) -> dict:
        return {"step": self.snap.step, "total": self.snap.total, "eta_s": self.snap.eta_s}

    def result(self, stopped: bool) -> TrainSnapshot:
        if self.trainer is not None and self.trainer.step > 0:
            ckpts = self.trainer.checkpoints()
            if not ckpts or ckpts[-1][0] != self.trainer.step:
                self.trainer.checkpoint()  # cancel/close keeps the work done so far
            self.snap.checkpoints = [str(p) for _, p in self.trainer.checkpoints()]
        snap = self.snapshot()
        snap.stopped = stopped
        return snap
