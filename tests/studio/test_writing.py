"""The Qt-free page writer: wrapping, layout, mixture densities."""

import numpy as np
import pytest

from engine.sampler import StepParams
from studio.writing import DensityAccumulator, WriteJob, mixture_density, wrap_text


def test_wrap_text_is_the_engines_and_blank_lines_leave_space(tiny_synthesis):
    from engine.layout import LINE_GAP

    lines = wrap_text("one two three\n\nfive", 9)
    assert lines == ["one two", "three", "", "five"]
    job = WriteJob(tiny_synthesis, lines, bias=1.0, seed=2)
    for _ in job.steps():
        pass
    snap = job.result(False)
    assert snap.lines == ["one two", "three", "five"]
    assert [o[1] for o in job._origins] == [0.0, LINE_GAP, 3 * LINE_GAP]


def _params(rho=0.3):
    return StepParams(
        pi=np.array([[0.25, 0.75]]),
        mu=np.array([[[0.0, 0.0], [2.0, -1.0]]]),
        sigma=np.array([[[1.0, 0.5], [0.7, 1.2]]]),
        rho=np.array([[rho, -0.5]]),
        e=np.array([0.1]),
    )


def test_mixture_density_matches_hand_computation_and_integrates_to_one():
    p = _params()
    # component 1 at its own mean: 1 / (2 pi s1 s2 sqrt(1 - rho^2)), times pi
    v = mixture_density(p, 0, np.array(2.0), np.array(-1.0))
    c2 = 0.75 / (2 * np.pi * 0.7 * 1.2 * np.sqrt(1 - 0.25))
    dx, dy = (2.0 - 0.0) / 1.0, (-1.0 - 0.0) / 0.5
    z = dx**2 + dy**2 - 2 * 0.3 * dx * dy
    c1 = 0.25 * np.exp(-z / (2 * (1 - 0.09))) / (2 * np.pi * 0.5 * np.sqrt(1 - 0.09))
    assert v == pytest.approx(c1 + c2, rel=1e-9)
    g = np.linspace(-10, 10, 401)
    dens = mixture_density(p, 0, g[None, :], g[:, None])
    assert dens.sum() * (g[1] - g[0]) ** 2 == pytest.approx(1.0, abs=1e-3)


def test_density_accumulator_adds_one_unit_of_mass_per_step_and_grows():
    acc = DensityAccumulator(cell=0.5, half=20)
    acc.add(np.array([0.0, 0.0]), _params())
    assert acc.image.sum() == pytest.approx(1.0, abs=0.02)
    acc.add(np.array([500.0, 300.0]), _params())  # far away: the grid grows
    assert acc.image.sum() == pytest.approx(2.0, abs=0.04)
    x, y, w, h = acc.rect()
    assert x <= 0 and x + w >= 500 and y + h >= 300


def test_write_job_lays_lines_down_the_page(tiny_synthesis):
    job = WriteJob(tiny_synthesis, ["ab", "cd"], bias=1.0, seed=3)
    for _ in job.steps():
        pass
    snap = job.result(False)
    assert len(snap.line_start) == 2 and snap.n_points > 0
    assert [p.shape[1] for p in snap.phi] == [2, 2]
    assert sum(len(p) for p in snap.phi) == snap.n_points
    first = snap.points[: snap.line_start[1]]
    second = snap.points[snap.line_start[1] :]
    assert second[:, 1].min() > first[:, 1].max()  # the second line is below the first
    assert sum(len(s) for s in snap.strokes()) == snap.n_points


def test_same_seed_same_page(tiny_synthesis):
    def run():
        job = WriteJob(tiny_synthesis, ["abc"], bias=0.5, seed=11)
        for _ in job.steps():
            pass
        return job.result(False).points

    a, b = run(), run()
    assert np.array_equal(a, b)


def test_scribble_with_prediction_model(tiny_prediction):
    job = WriteJob(tiny_prediction, [None], seed=1, max_steps=50)
    for _ in job.steps():
        pass
    snap = job.result(False)
    assert snap.n_points == 50 and snap.phi[0].shape == (0, 0)
    assert snap.pi.shape == (50, 3) and snap.density is not None


def test_best_of_draws_a_draft_then_the_chosen_line(tiny_synthesis):
    from engine.layout import best_line

    job = WriteJob(tiny_synthesis, ["ab"], bias=1.0, seed=6, tries=3)
    saw_draft_only = False
    for _ in job.steps():
        snap = job.snapshot()
        if len(snap.draft) and snap.n_points == 0:
            saw_draft_only = True  # ink to show before the line is chosen
            assert snap.draft.shape[1] == 2 and len(snap.draft_pen_up) == len(snap.draft)
    assert saw_draft_only
    final = job.result(False)
    assert len(final.draft) == 0 and final.n_points > 0
    rows, _ = best_line(tiny_synthesis, "ab", 3, seed=6, bias=1.0)
    want = np.cumsum([s.offset[0, :2] for s in rows if not s.primed], axis=0)
    np.testing.assert_allclose(final.points, want)
    assert len(final.phi[0]) == len(rows)  # the views get the chosen line's window


def test_a_page_stopped_while_choosing_keeps_no_draft(tiny_synthesis):
    job = WriteJob(tiny_synthesis, ["abc"], bias=1.0, seed=1, tries=3)
    steps = job.steps()
    for _ in range(5):
        next(steps)
    assert len(job.snapshot().draft) == 5
    final = job.result(True)
    assert final.stopped and len(final.draft) == 0 and final.n_points == 0
