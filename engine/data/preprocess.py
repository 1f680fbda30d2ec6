"""The one preprocessing pipeline for training, priming and evaluation (paper Sec. 4).

Ink from any device (a 60 Hz 145 dpi tablet, a 205 Hz 1000 dpi one, the studio canvas)
comes out at the same scale and point density:

1. screen coordinates (y down); duplicate consecutive points removed;
2. scale: the ink's *body height* -- the 90th minus the 10th percentile of y over points
   spaced evenly along the pen path -- is mapped to `body_height` units. Percentiles of
   arc-length-uniform points ignore how fast the pen moved and are robust to the odd
   ascender, descender or stray dot; a line's median body height is about its x-height
   plus part of its ascenders;
3. recording glitches (Sec. 4: "removing steps whose length exceeded a certain
   threshold"): a lone point far from both neighbours is dropped, and a pen-down step
   longer than `max_step` body heights is treated as a lift;
4. every stroke is resampled to uniform arc-length spacing `step` (endpoints kept, so
   gaps in the recording are filled by interpolation, also as in Sec. 4). With the
   defaults a character takes ~25 points, as in IAM-OnDB ("the average letter occupying
   more than 25 timesteps");
5. offsets (dx, dy, eos) by `engine.strokes.strokes_to_offsets`, first point at (0, 0).

Deviation from the paper: IAM-OnDB came from one device and was left at its own scale
and rate; mixing ~40 UNIPEN devices needs the scale and rate normalised here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.data.ink import Ink
from engine.strokes import InkError, offsets_to_strokes, strokes_to_offsets


@dataclass(frozen=True)
class PreprocessConfig:
    body_height: float = 10.0  # units the ink's 90-10 percentile y range is scaled to
    step: float = 0.9  # arc-length spacing after scaling: ~25 points per character (Sec. 4)
    max_step: float = 4.0  # in body heights: longer pen-down steps are glitches (Sec. 4)
    min_body_height_px: float = 1e-6  # below this (in source units) the ink has no height


@dataclass(frozen=True)
class PreprocessInfo:
    """What maps offsets back to the source ink's coordinates: src = pts / scale + origin."""

    scale: float
    origin: tuple[float, float]

    def to_source(self, offsets: np.ndarray) -> list[np.ndarray]:
        return [s / self.scale + np.asarray(self.origin) for s in offsets_to_strokes(offsets)]


# Strokes are handled as one point array plus stroke lengths so that a line of ~40 strokes
# costs a handful of numpy calls rather than a few hundred.


def _pack(strokes) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(s) for s in strokes], dtype=np.int64)
    pts = np.concatenate(strokes) if len(strokes) else np.zeros((0, 2))
    return pts.astype(np.float64, copy=False), lengths


def _unpack(pts: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    ends = np.cumsum(lengths).tolist()
    starts = [0, *ends[:-1]]
    return [pts[a:b] for a, b in zip(starts, ends) if b > a]


def _first_mask(lengths: np.ndarray, n: int) -> np.ndarray:
    """True at the first point of every (non-empty) stroke."""
    first = np.zeros(n, bool)
    first[(np.cumsum(lengths) - lengths)[lengths > 0]] = True
    return first


def _dedupe(pts, lengths):
    keep = _first_mask(lengths, len(pts))
    keep[1:] |= np.any(pts[1:] != pts[:-1], axis=1)
    ids = np.repeat(np.arange(len(lengths)), lengths)[keep]
    lengths = np.bincount(ids, minlength=len(lengths))
    return pts[keep], lengths[lengths > 0]


def _resample(pts, lengths, step):
    pts, lengths = _dedupe(pts, lengths)
    first = _first_mask(lengths, len(pts))
    seg = np.zeros(len(pts))
    seg[1:] = np.hypot(pts[1:, 0] - pts[:-1, 0], pts[1:, 1] - pts[:-1, 1])
    seg[first] = 0.0
    ends = np.cumsum(lengths) - 1
    starts = ends - lengths + 1
    arc = np.cumsum(seg)
    stroke_len = np.add.reduceat(seg, starts)  # exact per stroke, unlike differences of arc
    # a unit gap between strokes keeps the unrolled arc coordinate strictly increasing
    base = np.concatenate([[0.0], np.cumsum(stroke_len[:-1] + 1.0)])
    unrolled = arc - np.repeat(arc[starts] - base, lengths)
    n_out = np.ceil(stroke_len / step - 1e-9).astype(np.int64) + 1
    n_out = np.where(stroke_len > 0, np.maximum(n_out, 2), 1)
    k = np.arange(n_out.sum()) - np.repeat(np.cumsum(n_out) - n_out, n_out)
    frac = k / np.repeat(np.maximum(n_out - 1, 1), n_out)
    target = np.repeat(base, n_out) + frac * np.repeat(stroke_len, n_out)
    out = np.column_stack(
        [np.interp(target, unrolled, pts[:, 0]), np.interp(target, unrolled, pts[:, 1])]
    )
    out[np.cumsum(n_out) - 1] = pts[ends]  # exact endpoints despite rounding
    out[np.cumsum(n_out) - n_out] = pts[starts]
    return out, n_out


def _split_glitches(pts, lengths, max_len):
    first = _first_mask(lengths, len(pts))
    last = np.roll(first, -1)
    step_in = np.zeros(len(pts))
    step_in[1:] = np.hypot(pts[1:, 0] - pts[:-1, 0], pts[1:, 1] - pts[:-1, 1])
    long_in = (step_in > max_len) & ~first
    long_out = np.roll(long_in, -1) & ~last
    keep = ~(long_in & long_out)  # a lone point far from both neighbours
    ids = np.repeat(np.arange(len(lengths)), lengths)[keep]
    pts = pts[keep]
    step_in = np.zeros(len(pts))
    step_in[1:] = np.hypot(pts[1:, 0] - pts[:-1, 0], pts[1:, 1] - pts[:-1, 1])
    starts = np.ones(len(pts), bool)
    starts[1:] = (ids[1:] != ids[:-1]) | (step_in[1:] > max_len)
    return pts, np.diff(np.append(np.flatnonzero(starts), len(pts)))


def _checked(strokes) -> tuple[np.ndarray, np.ndarray]:
    strokes = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes]
    pts, lengths = _pack([s for s in strokes if len(s)])
    if not len(pts):
        raise InkError("the ink has no points")
    if not np.isfinite(pts).all():
        raise InkError("the ink has non-finite coordinates")
    return pts, lengths


def dedupe(stroke: np.ndarray) -> np.ndarray:
    """Drop points equal to their predecessor."""
    return _dedupe(*_checked([stroke]))[0]


def resample_many(strokes: list[np.ndarray], step: float) -> list[np.ndarray]:
    """Each stroke resampled to points evenly spaced (<= step apart); endpoints kept."""
    if not step > 0:
        raise InkError(f"resampling step must be positive, got {step}")
    return _unpack(*_resample(*_checked(strokes), step))


def resample(stroke: np.ndarray, step: float) -> np.ndarray:
    """Points evenly spaced (<= step apart) along the stroke; first and last points kept."""
    return resample_many([stroke], step)[0]


CORPUS_STEP = PreprocessConfig().step  # the spacing preprocess_ink gives and corpora store
# the spacing new networks learn by default (train CLI, studio): ~9 points per character. An A/B
# of `small` synthesis networks (identical settings, 2,250 steps) gave CER 0.919 / 0.896 at 0.9,
# 0.909 / 0.860 at 1.8 and 0.861 / 0.834 at 2.7 (bias 1.0 / 0.15), and 2.7 trains and samples a
# line in a third of the steps. A 3.6 arm led at 2,250 steps (0.777 / 0.807) but, carried to
# 15,250 steps, scored 0.162 / 0.388, the same as a 2.7 network (0.158 / 0.404).
# Model files without a spacing were trained at CORPUS_STEP.
TRAIN_STEP = 2.7


def respace(offsets: np.ndarray, step: float, source_step: float = CORPUS_STEP) -> np.ndarray:
    """Preprocessed offsets (T, 3) -> the same ink resampled to arc-length spacing `step`.

    A network may be trained on sparser points than the corpus stores (HandwritingConfig.
    point_step): fewer points per character mean shorter sequences for the same text. Equal
    steps return the offsets unchanged; the first point stays at the origin.
    """
    offsets = np.asarray(offsets, np.float32)
    if not step > 0:
        raise InkError(f"point spacing must be positive, got {step}")
    if abs(step - source_step) < 1e-9 or len(offsets) == 0:
        return offsets
    out = resample_many(offsets_to_strokes(offsets), step)
    return strokes_to_offsets(out, origin=out[0][0])


def split_glitches(stroke: np.ndarray, max_len: float) -> list[np.ndarray]:
    """Drop lone far-away points; split the stroke at any remaining over-long step."""
    return _unpack(*_split_glitches(*_checked([stroke]), max_len))


def _body_height(pts, lengths) -> float:
    extent = float(np.ptp(pts, axis=0).max())
    if extent <= 0:
        return 0.0
    even, _ = _resample(pts, lengths, extent / 500.0)
    y = np.sort(even[:, 1])  # np.percentile costs ~0.5 ms a call; this is the same quantile
    return float(y[round(0.9 * (len(y) - 1))] - y[round(0.1 * (len(y) - 1))])


def body_height(strokes: list[np.ndarray]) -> float:
    """90th - 10th percentile of y over points spread evenly along the pen path."""
    return _body_height(*_checked(strokes))


def normalise_strokes(
    strokes: list[np.ndarray], config: PreprocessConfig = PreprocessConfig(), scale=None
) -> tuple[list[np.ndarray], PreprocessInfo]:
    """Steps 1-4: cleaned, scaled and resampled strokes (first point at the origin)."""
    pts, lengths = _dedupe(*_checked(strokes))
    if scale is None:
        height = _body_height(pts, lengths)
        if height <= config.min_body_height_px:
            # a dot or a perfectly flat line: fall back on the extent so scale stays finite
            height = float(np.ptp(pts, axis=0).max()) / 4.0
        scale = config.body_height / height if height > 0 else 1.0
    if not (np.isfinite(scale) and scale > 0):
        raise InkError(f"scale must be a positive number, got {scale}")
    origin = pts[0].copy()
    pts = (pts - origin) * scale
    pts, lengths = _split_glitches(pts, lengths, config.max_step * config.body_height)
    out = _unpack(*_resample(pts, lengths, config.step))
    return out, PreprocessInfo(float(scale), (float(origin[0]), float(origin[1])))


def preprocess_strokes(
    strokes: list[np.ndarray], config: PreprocessConfig = PreprocessConfig(), scale=None
) -> tuple[np.ndarray, PreprocessInfo]:
    """Strokes in any device's screen units -> (offsets (T, 3) float32, PreprocessInfo)."""
    out, info = normalise_strokes(strokes, config, scale)
    return strokes_to_offsets(out, origin=out[0][0]), info


def preprocess_ink(
    ink: Ink, config: PreprocessConfig = PreprocessConfig(), scale=None
) -> np.ndarray:
    """Ink -> offsets (T, 3) float32 at training scale: the pipeline in the module docstring.

    Use it for training lines, studio primers and evaluation alike; pass `scale` to reuse a
    scale measured on more ink (e.g. a whole page) than a short primer holds.
    """
    return preprocess_strokes(ink.strokes, config, scale)[0]


def count_lines(strokes: list[np.ndarray], back_frac: float = 0.4) -> int:
    """Written lines in the ink, counted by carriage returns.

    A carriage return is a pen-up move that starts the next stroke more than `back_frac` of
    the ink's width to the left of where the previous one ended and lower by more than the
    median stroke height. Delayed strokes (i-dots, t-bars) go back left but not down a line.
    """
    if len(strokes) < 2:
        return 1 if strokes else 0
    heights = np.array([np.ptp(s[:, 1]) for s in strokes])
    h = float(np.median(heights[heights > 0])) if (heights > 0).any() else 0.0
    width = float(np.ptp(np.concatenate(strokes)[:, 0]))
    if width <= 0 or h <= 0:
        return 1
    returns = 0
    for a, b in zip(strokes[:-1], strokes[1:]):
        if b[0, 0] < a[-1, 0] - back_frac * width and b[:, 1].mean() - a[:, 1].mean() > h:
            returns += 1
    return returns + 1


def is_single_line(ink: Ink, min_width_per_char: float = 0.25) -> bool:
    """True when the ink looks like one written line of its label.

    Besides carriage returns (`count_lines`), ink narrower than `min_width_per_char` body
    heights per label character is refused: words stacked under each other (UNIPEN donors
    apb-ape) or a label far longer than its ink. Single lines measure 0.4-1.6 per character.
    """
    if count_lines(ink.strokes) != 1:
        return False
    if not ink.text:
        return True
    width = float(np.ptp(ink.points()[:, 0]))
    return width >= min_width_per_char * body_height(ink.strokes) * len(ink.text)
