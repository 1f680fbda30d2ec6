"""Sampling traces: the numbers behind the attention (Fig. 13) and mixture (Fig. 10) views.

A trace keeps, for each written line, the offsets drawn and the distribution each was drawn
from, and saves them as an .npz of plain arrays that numpy.load reads anywhere (no pickles).
Written by `handwriting-engine sample --trace` and the studio's File > Export trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine import EngineError

README = (
    "Handwriting Studio sampling trace. For line i: line{i}_text; line{i}_offsets (T, 3): dx, "
    "dy, pen lift drawn at each step, in the model's data units (body height ~10, y down); the "
    "mixture each was drawn from, after bias: line{i}_pi (T, M) weights, line{i}_mu and "
    "line{i}_sigma (T, M, 2), line{i}_rho (T, M), line{i}_e (T,) pen-lift probability; for "
    "the synthesis network line{i}_phi (T, U+1): the window weights (Eq. 46, not normalised) "
    "over the U characters of line{i}_window_text, the last column being the end of text (the "
    "paper's stop rule fires when it is the largest). With a primer the window reads the "
    "primer's text, a space and the line; the primer's own steps are left out."
)


class TraceError(EngineError):
    pass


def trace_of(steps, row: int = 0) -> dict[str, np.ndarray]:
    """The written steps (engine.sampler.SampleStep) of one batch row as arrays, primer and
    finished steps left out: `offsets` (T, 3) and the mixture each was drawn from, after bias,
    in data units: `pi` (T, M), `mu` and `sigma` (T, M, 2), `rho` (T, M), `e` (T,) the pen-lift
    probability; for the synthesis network also the window weights `phi` (T, U+1), column U
    being the end of text."""
    rows = [s for s in steps if not s.primed and not s.done[row]]
    out = {"offsets": np.array([s.offset[row] for s in rows], np.float32).reshape(-1, 3)}
    params = [s.params for s in rows]
    for name in ("pi", "mu", "sigma", "rho", "e"):
        out[name] = np.array([getattr(p, name)[row] for p in params], np.float32)
    if steps and steps[0].phi is not None:
        out["phi"] = np.array([s.phi[row] for s in rows], np.float32)
    return out


def check_path(path) -> Path:
    """The path a trace can be saved to, or a TraceError: an .npz name in a folder that exists."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise TraceError(f"{path.name}: a trace file is a NumPy .npz file")
    if not path.parent.exists():
        raise TraceError(f"the folder {path.parent} does not exist")
    return path


@dataclass
class PageTrace:
    """One written page: (text, trace_of(...)) per line and how it was written."""

    lines: list[tuple[str, dict[str, np.ndarray]]]
    model: str
    kind: str
    bias: float
    seed: int | None
    primer_text: str | None = None

    def save(self, path) -> Path:
        from engine.sampler import primed_text

        path = check_path(path)
        arrays = {
            "readme": np.array(README),
            "model": np.array(self.model),
            "kind": np.array(self.kind),
            "bias": np.array(float(self.bias)),
            "seed": np.array(-1 if self.seed is None else int(self.seed)),
            "lines": np.array(len(self.lines)),
        }
        for i, (text, trace) in enumerate(self.lines):
            arrays[f"line{i}_text"] = np.array(text)
            if "phi" in trace:
                read = text if self.primer_text is None else primed_text(self.primer_text, text)
                arrays[f"line{i}_window_text"] = np.array(read)
            for name, values in trace.items():
                arrays[f"line{i}_{name}"] = values
        try:
            with open(path, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        except OSError as exc:
            raise TraceError(f"cannot write {path}: {exc.strerror or exc}") from None
        return path
