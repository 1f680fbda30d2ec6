"""Corpus statistics for `handwriting-engine data stats`."""

from __future__ import annotations

import numpy as np

from engine.alphabet import PRINTABLE_ASCII
from engine.data.corpus import TRAIN, VALID, Corpus, char_coverage


def corpus_stats(corpus: Corpus, rare: int = 20) -> dict:
    lengths = np.array([len(o) for o in corpus.offsets])
    chars = sum(len(t) for t in corpus.texts)
    coverage = char_coverage(corpus.texts)
    return {
        "lines": len(corpus),
        "words": sum(len(t.split()) for t in corpus.texts),
        "writers": len(set(corpus.writers)),
        "donors": len(set(corpus.donors)),
        "characters": chars,
        "points": int(lengths.sum()),
        "points_per_char": float(lengths.sum() / max(chars, 1)),
        "points_per_line": {
            "median": float(np.median(lengths)) if len(lengths) else 0.0,
            "max": int(lengths.max()) if len(lengths) else 0,
        },
        "train": int((corpus.split == TRAIN).sum()),
        "valid": int((corpus.split == VALID).sum()),
        "valid_writers": len({w for w, s in zip(corpus.writers, corpus.split) if s == VALID}),
        "assembled": int(corpus.assembled.sum()),
        "absent": [c for c in PRINTABLE_ASCII if coverage[c] == 0],
        "rare": {c: n for c, n in coverage.items() if 0 < n < rare},
        "least": sorted((n, c) for c, n in coverage.items() if n > 0)[:12],
        "norm": corpus.norm.to_dict(),
    }


def format_stats(s: dict) -> str:
    rows = [
        f"lines            {s['lines']}  (train {s['train']}, valid {s['valid']} from "
        f"{s['valid_writers']} writers; assembled from words {s['assembled']})",
        f"words            {s['words']}",
        f"writers          {s['writers']}",
        f"donors           {s['donors']}",
        f"characters       {s['characters']}",
        f"points           {s['points']}  (median {s['points_per_line']['median']:.0f} per "
        f"line, max {s['points_per_line']['max']})",
        f"points per char  {s['points_per_char']:.1f}",
        f"absent chars     {''.join(s['absent']) or '(none)'}",
        "rare chars       "
        + (" ".join(f"{c!r}:{n}" for c, n in sorted(s["rare"].items())) or "(none)"),
        "least common     " + " ".join(f"{c!r}:{n}" for n, c in s["least"]),
        f"norm             mean {s['norm']['mean']}, std {s['norm']['std']}",
    ]
    return "\n".join(rows)
