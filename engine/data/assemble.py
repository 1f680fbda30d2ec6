"""Assemble text lines from one writer's isolated word segments (UNIPEN category 7).

Words are laid left to right in their source coordinates (same writer, same device, so
their relative size is real), with word spacing and a slowly wandering baseline drawn from
a seeded generator. Assembled lines are flagged in the corpus so they can be excluded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.data.ink import Ink


@dataclass(frozen=True)
class AssembleConfig:
    min_chars: int = 18  # a line ends once it holds at least a drawn target in this range
    max_chars: int = 42
    space: tuple[float, float] = (0.6, 1.1)  # word gap, in body heights
    baseline_jitter: float = 0.08  # per-word baseline wobble, in body heights
    baseline_drift: float = 0.04  # per-word random-walk drift, in body heights


def _word_geometry(ink: Ink) -> tuple[float, float, float]:
    pts = ink.points()
    return float(pts[:, 0].min()), float(pts[:, 0].max()), float(np.median(pts[:, 1]))


def _spread(y: np.ndarray) -> float:
    y = np.sort(y)
    return float(y[round(0.9 * (len(y) - 1))] - y[round(0.1 * (len(y) - 1))])


def assemble_line(words: list[Ink], rng: np.random.Generator, config=AssembleConfig()) -> Ink:
    """One line from word inks: x-gaps of natural spacing, baselines near a common level."""
    # a rough height (percentiles of raw points) is enough to scale gaps and wobble
    heights = [_spread(w.points()[:, 1]) for w in words]
    h = float(np.median([x for x in heights if x > 0] or [1.0]))
    strokes, x, drift = [], 0.0, 0.0
    for w in words:
        xmin, xmax, ymid = _word_geometry(w)
        drift += rng.normal(0.0, config.baseline_drift)
        dy = (drift + rng.normal(0.0, config.baseline_jitter)) * h - ymid
        dx = x - xmin
        strokes += [s + (dx, dy) for s in w.strokes]
        x += (xmax - xmin) + rng.uniform(*config.space) * h
    return Ink(" ".join(w.text for w in words), strokes)


def group_words(words: list[Ink], rng: np.random.Generator, config=AssembleConfig()):
    """Consecutive words, cut into groups of a target line length drawn per line."""
    group, n, target = [], 0, rng.integers(config.min_chars, config.max_chars + 1)
    for w in words:
        group.append(w)
        n += len(w.text) + 1
        if n >= target:
            yield group
            group, n, target = [], 0, rng.integers(config.min_chars, config.max_chars + 1)
    if len(group) >= 2:
        yield group
