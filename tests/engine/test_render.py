"""Drawing ink: the spline through the points (engine.strokes) and the SVG / PNG renderers."""

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from engine.render import render_animated_svg, render_image, render_svg
from engine.strokes import bezier_segments, smooth_path, smooth_stroke


def circle(n: int, radius: float = 10.0) -> np.ndarray:
    th = np.linspace(0, 2 * np.pi, n)
    return np.column_stack([np.cos(th), np.sin(th)]) * radius


def test_spline_passes_through_every_point_and_keeps_straight_runs_straight():
    rng = np.random.default_rng(0)
    pts = np.cumsum(rng.normal(size=(15, 2)), axis=0)
    dense = smooth_stroke(pts, 5)
    assert len(dense) == (len(pts) - 1) * 5 + 1
    np.testing.assert_allclose(dense[::5], pts, atol=1e-12)  # the points themselves, in place
    line = np.column_stack([np.arange(6.0), 2 * np.arange(6.0)])
    steps = np.diff(smooth_stroke(line, 4), axis=0)
    np.testing.assert_allclose(steps, np.tile([0.25, 0.5], (len(steps), 1)), atol=1e-12)


def test_spline_follows_a_circle_far_closer_than_the_polyline():
    pts = circle(13)  # 30 degrees apart: a chord sags 3.4 % of the radius
    interior = np.hypot(*smooth_stroke(pts, 8)[16:-16].T)  # away from the open ends
    chord = np.hypot(*((pts[1:] + pts[:-1]) / 2).T).min()
    assert 10 - chord > 0.3
    assert np.abs(interior - 10).max() < 0.03


def test_spline_never_loops_at_a_sharp_turn_or_a_repeated_point():
    cusp = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [2.0, 0.0], [1.0, 0.05], [0.0, 0.1]])
    dense = smooth_stroke(cusp, 8)
    assert np.isfinite(dense).all()
    lo, hi = cusp.min(0), cusp.max(0)
    assert (dense >= lo - 0.3).all() and (dense <= hi + 0.3).all()  # no overshoot loop
    assert bezier_segments(np.zeros((1, 2))).shape == (0, 4, 2)
    np.testing.assert_array_equal(smooth_stroke(np.ones((1, 2))), np.ones((1, 2)))


def test_smooth_path_smooths_many_strokes_at_once_like_one_at_a_time():
    rng = np.random.default_rng(0)
    pts = np.cumsum(rng.normal(size=(20, 2)), axis=0)
    breaks = np.zeros(20, bool)
    breaks[[4, 5, 12]] = True  # strokes of 5, 1 (a dot), 7 and 7 points
    x, y = smooth_path(pts, breaks, 4)
    gaps = np.flatnonzero(np.isnan(x))
    assert len(gaps) == 3 and np.isnan(y[gaps]).all()
    got = [q[~np.isnan(q[:, 0])] for q in np.split(np.column_stack([x, y]), gaps)]
    want = [smooth_stroke(s, 4) for s in np.split(pts, [5, 6, 13])]
    assert [len(g) for g in got] == [17, 1, 25, 25]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-12)
    assert smooth_path(np.zeros((0, 2)), np.zeros(0, bool))[0].shape == (0,)


def test_svg_draws_curves_by_default_and_polylines_on_request():
    strokes = [circle(9), np.array([[30.0, 0.0]]), np.array([[40.0, 0.0], [50.0, 5.0]])]
    smooth = render_svg(strokes)
    plain = render_svg(strokes, smooth=False)
    for svg in (smooth, plain):
        ET.fromstring(svg)  # well-formed
    d = [p.get("d") for p in ET.fromstring(smooth).iter("{http://www.w3.org/2000/svg}path")]
    assert len(d) == 3
    assert d[0].count(" C") == 8 and " L" not in d[0]  # one cubic per pair of points
    assert " L" in d[1] and " L" in d[2]  # a dot and a two-point stroke stay lines
    assert " C" not in plain
    # every Bezier segment ends on the next ink point
    ends = [tuple(map(float, c.split()[-2:])) for c in re.findall(r"C([^C]+)", d[0])]
    np.testing.assert_allclose(ends, np.round(circle(9)[1:], 2), atol=0.006)
    anim = render_animated_svg([circle(9)])
    assert " C" in anim and "<animate" in anim


def test_png_of_a_sparse_circle_is_rounder_when_smoothed():
    pts = circle(9, 40.0)  # 45 degrees apart: an octagon as a polyline
    kw = dict(scale=4.0, background="white", margin=5.0, stroke_width=1.0, supersample=1)
    plain = np.asarray(render_image([pts], smooth=False, **kw).convert("L")) < 128
    smooth = np.asarray(render_image([pts], **kw).convert("L")) < 128
    cy, cx = (np.array(plain.shape) - 1) / 2

    def radius_spread(mask):  # of the inked pixels, away from the stroke's open ends
        y, x = np.nonzero(mask)
        angle = np.degrees(np.arctan2(y - cy, x - cx)) % 360
        away = (angle > 60) & (angle < 300)
        return np.ptp(np.hypot(x - cx, y - cy)[away])

    # the pen is 4 px wide; a polyline sags 7.6 % of the 160 px radius between points
    assert radius_spread(plain) > 14 and radius_spread(smooth) < 7


def test_pressure_widths_follow_the_smoothed_stroke():
    pts = circle(9, 40.0)
    p = [np.linspace(0.1, 1.0, len(pts))]
    img = render_image([pts], pressure=p, scale=2.0)
    assert img.size[0] > 100
    with pytest.raises(Exception, match="no ink"):
        render_image([])
