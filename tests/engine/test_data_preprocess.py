"""Preprocessing geometry: properties (hypothesis) and the device-independence it exists for."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from engine import EngineError
from engine.data.assemble import assemble_line
from engine.data.ink import Ink
from engine.data.preprocess import (
    PreprocessConfig,
    body_height,
    count_lines,
    dedupe,
    is_single_line,
    preprocess_ink,
    preprocess_strokes,
    resample,
    resample_many,
    respace,
    split_glitches,
)
from engine.strokes import NormStats, offsets_to_strokes, strokes_to_offsets

coord = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)
stroke = arrays(np.float64, st.tuples(st.integers(1, 40), st.just(2)), elements=coord)
strokes = st.lists(stroke, min_size=1, max_size=6)


@settings(max_examples=30, deadline=None)
@given(strokes)
def test_offsets_points_round_trip(ss):
    back = offsets_to_strokes(strokes_to_offsets(ss))
    assert len(back) == len(ss)
    for a, b in zip(ss, back):
        np.testing.assert_allclose(a, b, atol=1e-2 + 1e-6 * np.abs(a).max())


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        arrays(np.float64, st.tuples(st.integers(1, 40), st.just(2)), elements=st.floats(-50, 50)),
        min_size=1,
        max_size=6,
    ),
    st.floats(0.2, 20),
)
def test_resampling_keeps_stroke_count_endpoints_and_spacing(ss, step):
    ss = [dedupe(s) for s in ss]
    out = resample_many(ss, step)
    assert len(out) == len(ss)
    for a, b in zip(ss, out):
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[-1], b[-1])
        gaps = np.hypot(*np.diff(b, axis=0).T)
        assert (gaps <= step * (1 + 1e-6) + 1e-9).all()
        length = np.hypot(*np.diff(a, axis=0).T).sum()
        assert len(b) <= length / step + 2


def test_respace_resamples_preprocessed_offsets_to_a_sparser_spacing():
    wave = np.column_stack([np.linspace(0, 60, 200), 8 * np.sin(np.linspace(0, 9, 200))])
    corner = np.array([[70.0, 2.0], [80.0, 6.0], [84.0, -3.0]])
    ink = Ink("ab", [wave, corner, np.array([[90.0, 0.0]])])
    dense = preprocess_ink(ink)
    assert np.array_equal(respace(dense, PreprocessConfig().step), dense)  # same spacing: as is
    sparse = respace(dense, 1.8)
    assert np.array_equal(sparse[0], [0, 0, 0])  # first point at the origin, as in a corpus
    a, b = offsets_to_strokes(dense), offsets_to_strokes(sparse)
    assert len(a) == len(b) == 3  # strokes kept, the one-point dot too
    for s, t in zip(a, b):
        np.testing.assert_allclose(t[[0, -1]], s[[0, -1]], atol=1e-4)  # endpoints kept
        if len(s) > 1:
            assert np.hypot(*np.diff(t, axis=0).T).max() <= 1.8 + 1e-4
    gaps = np.hypot(*np.diff(b[0], axis=0).T)  # a smooth stroke: evenly spaced along its arc
    assert gaps.min() > 0.9 * 1.8
    assert 0.4 < len(sparse) / len(dense) < 0.6
    with pytest.raises(EngineError, match="point spacing must be positive"):
        respace(dense, 0.0)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        arrays(
            np.float32,
            st.tuples(st.integers(1, 30), st.just(3)),
            elements=st.floats(-50, 50, width=32),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_normalisation_inverts(seqs):
    norm = NormStats.fit(seqs)
    for s in seqs:
        np.testing.assert_allclose(norm.denormalise(norm.normalise(s)), s, atol=1e-3)


def _line(scale=1.0, rate=1, dy=0.0):
    """A synthetic line of 'letters': loops along x, sampled every `rate`-th of a fine path."""
    t = np.linspace(0, 8 * np.pi, 800)
    x = t * 2.0 + np.cos(t) * 1.5
    y = np.sin(t) * 3.0 + dy
    pts = np.column_stack([x, y]) * scale
    return Ink("abcd", [pts[:300:rate], pts[300::rate]])


def test_scale_and_rate_of_the_device_do_not_matter():
    """A studio primer on a tablet must come out like training data: same size, same density."""
    a = preprocess_ink(_line())
    b = preprocess_ink(_line(scale=37.0, rate=3))
    assert abs(len(a) - len(b)) <= 0.05 * len(a)
    pa = np.cumsum(a[:, :2], 0)
    pb = np.cumsum(b[:, :2], 0)
    assert abs(np.ptp(pa[:, 0]) - np.ptp(pb[:, 0])) < 0.05 * np.ptp(pa[:, 0])
    assert abs(np.ptp(pa[:, 1]) - np.ptp(pb[:, 1])) < 0.05 * np.ptp(pa[:, 1])


def test_pipeline_output_format_and_inverse():
    ink = _line(scale=5.0)
    offsets, info = preprocess_strokes(ink.strokes)
    assert offsets.dtype == np.float32 and offsets.shape[1] == 3
    assert offsets[0].tolist() == [0.0, 0.0, 0.0]
    assert offsets[:, 2].sum() == 2 and offsets[-1, 2] == 1
    config = PreprocessConfig()
    pts = np.cumsum(offsets[:, :2], 0)
    ys = np.sort(np.concatenate(resample_many(offsets_to_strokes(offsets), 0.01))[:, 1])
    assert abs(body_height(offsets_to_strokes(offsets)) - config.body_height) < 0.3
    assert np.hypot(*offsets[:, :2].T)[offsets[:, 2] == 0].max() <= config.step + 1e-4
    assert len(ys) and len(pts)
    back = info.to_source(offsets)
    assert np.allclose(back[0][0], ink.strokes[0][0], atol=1e-4)
    assert np.allclose(back[-1][-1], ink.strokes[-1][-1], atol=1e-3)


def test_glitches_are_removed_or_split():
    s = np.array([[0, 0], [1, 0], [500, 500], [2, 0], [3, 0], [300, 0], [301, 0]], float)
    pieces = split_glitches(s, 10.0)
    assert [p.tolist() for p in pieces] == [[[0, 0], [1, 0], [2, 0], [3, 0]], [[300, 0], [301, 0]]]


def test_bad_ink_gives_clear_errors():
    with pytest.raises(EngineError, match="no points"):
        preprocess_strokes([np.zeros((0, 2))])
    with pytest.raises(EngineError, match="non-finite"):
        preprocess_strokes([np.array([[0, 0], [np.nan, 1]])])
    with pytest.raises(EngineError, match="positive"):
        resample(np.zeros((3, 2)), 0.0)
    # a single dot still gives a valid one-point sequence
    assert preprocess_strokes([np.array([[5.0, 5.0]])])[0].tolist() == [[0, 0, 1]]


def test_multi_line_detection():
    one = _line()
    assert count_lines(one.strokes) == 1 and is_single_line(one)
    below = [s + (0, 20) for s in one.strokes]
    two = Ink("abcd efgh", one.strokes + below)
    assert count_lines(two.strokes) == 2 and not is_single_line(two)
    stacked = Ink("a much longer label than this ink could ever hold", one.strokes)
    assert not is_single_line(stacked)


def test_assembled_line_is_one_line_with_gaps():
    rng = np.random.default_rng(0)
    words = [
        Ink(
            t,
            [
                np.column_stack([np.linspace(0, 10 * len(t), 20), np.sin(np.arange(20))])
                + (rng.uniform(-500, 500), rng.uniform(-500, 500))
            ],
        )
        for t in ("ab", "cde", "f")
    ]
    line = assemble_line(words, rng)
    assert line.text == "ab cde f" and len(line.strokes) == 3
    xs = [(s[:, 0].min(), s[:, 0].max()) for s in line.strokes]
    assert all(b[0] > a[1] for a, b in zip(xs, xs[1:]))  # left to right, not overlapping
    assert np.ptp([np.median(s[:, 1]) for s in line.strokes]) < 2.0  # a common baseline
    assert is_single_line(line)
