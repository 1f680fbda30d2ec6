"""Small synthetic handwriting-like data and tiny tasks for the trainer tests."""

from __future__ import annotations

import numpy as np
import torch

from engine.alphabet import Alphabet
from engine.models import HandwritingModel, preset
from engine.strokes import NormStats
from engine.train_data import HandwritingTask


def wave_offsets(rng: np.random.Generator, n: int) -> np.ndarray:
    """A loopy pen trace with regular pen lifts: learnable structure, a little noise."""
    t = np.arange(n)
    phase = rng.uniform(0, 2 * np.pi)
    dx = 1.0 + 0.8 * np.cos(0.6 * t + phase) + rng.normal(0, 0.05, n)
    dy = 1.5 * np.sin(0.6 * t + phase) + rng.normal(0, 0.05, n)
    eos = ((t + 1) % 12 == 0).astype(np.float32)
    return np.column_stack([dx, dy, eos]).astype(np.float32)


def synthetic_data(lines: int = 12, seed: int = 0, length=(20, 50)):
    rng = np.random.default_rng(seed)
    words = ["hello", "abc def", "xyz", "quiet", "brown fox"]
    texts = [words[i % len(words)] for i in range(lines)]
    offsets = [wave_offsets(rng, int(n)) for n in rng.integers(*length, lines)]
    split = np.zeros(lines, np.int64)
    split[-max(2, lines // 4) :] = 1
    norm = NormStats.fit([o for o, s in zip(offsets, split) if s == 0])
    return texts, offsets, split, norm


def tiny_task(kind: str = "synthesis", seed: int = 0, lines: int = 12, **kwargs) -> HandwritingTask:
    torch.manual_seed(seed)
    model = HandwritingModel(preset("tiny", kind))
    texts, offsets, split, norm = synthetic_data(lines)
    kwargs.setdefault("batch_size", 4)
    norm = kwargs.pop("norm", norm)  # None: the task fits its own
    return HandwritingTask(model, texts, offsets, split, norm, Alphabet(), **kwargs)
