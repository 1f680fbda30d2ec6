"""Sampler policy: stop rule, bias, priming, reproducibility, bounds and text checks."""

import copy

import numpy as np
import pytest
import torch

from engine.alphabet import Alphabet, UnsupportedCharactersError
from engine.data.preprocess import resample_many, respace
from engine.models import HandwritingModel, preset
from engine.sampler import (
    Primer,
    SamplingError,
    StepParams,
    _draw,
    _draw_one,
    generate,
    sample,
)
from engine.strokes import NormStats, strokes_to_offsets

ALPHA = Alphabet()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return HandwritingModel(preset("tiny")).eval()


def test_stop_rule_fires_when_window_passes_last_character(model):
    """Construct phi so that phi(t, U+1) overtakes every phi(t, u<=U) at step 7 exactly."""
    model = copy.deepcopy(model)  # its own `step` below; the shared fixture keeps the fast path
    U = 3
    calls = {"t": 0}
    real_step = model.step

    def fake_step(x, state, onehot, positions):
        y, state, _ = real_step(x, state, onehot, positions)
        t = calls["t"]
        calls["t"] += 1
        centre = 1 + t * 0.5  # window centre moves half a character per step
        phi = torch.exp(-((torch.arange(1, U + 2) - centre) ** 2)).float()[None]
        return y, state, phi

    model.step = fake_step
    steps = list(generate(model, "abc", alphabet=ALPHA, seed=0))
    # centre = 4.0 at t = 6 -> phi(U+1) is the max; rule fires after that step
    first_over = next(t for t in range(50) if (1 + t * 0.5) > 3.5)
    assert len(steps) == first_over + 1
    for s in steps[:-1]:
        assert not (s.phi[0, U] > s.phi[0, :U].max())


def test_the_shared_model_still_takes_the_fast_path(model):
    from engine.fast import supports

    assert supports(model)


def test_hard_bound_on_steps_per_character(model):
    steps = list(generate(model, "hi", alphabet=ALPHA, seed=1, steps_per_char=5))
    assert len(steps) <= 5 * 3


def test_seed_reproduces_exactly(model):
    a = sample(model, "abc", alphabet=ALPHA, seed=42, max_steps=50)[0]
    b = sample(model, "abc", alphabet=ALPHA, seed=42, max_steps=50)[0]
    c = sample(model, "abc", alphabet=ALPHA, seed=43, max_steps=50)[0]
    assert np.array_equal(a.offsets, b.offsets)
    assert not np.array_equal(a.offsets, c.offsets)


def test_priming_emits_the_primer_first(model):
    rng = np.random.default_rng(0)
    prim = rng.normal(size=(25, 3)).astype(np.float32)
    prim[:, 2] = (np.arange(25) % 8 == 7).astype(np.float32)
    norm = NormStats((0.5, -0.2), (2.0, 3.0))
    steps = list(
        generate(
            model,
            "new",
            alphabet=ALPHA,
            norm=norm,
            seed=3,
            primer=Primer(prim, "old"),
            max_steps=30,
        )
    )
    emitted = np.array([s.offset[0] for s in steps[:25]])
    assert np.allclose(emitted, prim, atol=1e-6)
    assert all(s.primed for s in steps[:25]) and not steps[25].primed
    assert steps[0].phi.shape[1] == len("old new") + 1  # c' = c + s (with a space)


def test_a_sparser_network_is_primed_with_the_primer_at_its_own_spacing():
    """A network trained at point_step 1.8 reads the primer resampled to 1.8, not the
    corpus's 0.9 points: it was never shown ink that dense."""
    torch.manual_seed(0)
    sparse = HandwritingModel(preset("tiny", point_step=1.8)).eval()
    t = np.linspace(0, 4 * np.pi, 60)
    stroke = np.column_stack([3 * t, 4 * np.sin(t)])
    prim = strokes_to_offsets(resample_many([stroke], 0.9), origin=stroke[0])
    want = respace(prim, 1.8)
    assert len(want) < 0.6 * len(prim)
    steps = list(
        generate(sparse, "new", alphabet=ALPHA, seed=3, primer=Primer(prim, "old"), max_steps=80)
    )
    primed = np.array([s.offset[0] for s in steps if s.primed])
    np.testing.assert_allclose(primed, want, atol=1e-5)


def test_batch_variants_differ_but_share_the_text(model):
    steps = list(generate(model, "ab", alphabet=ALPHA, seed=5, batch=3, max_steps=20))
    off = np.array([s.offset for s in steps])  # (T, 3, 3)
    assert off.shape[1] == 3
    assert not np.allclose(off[:, 0], off[:, 1])


def test_draw_collapses_to_mode_with_huge_bias_params():
    p = StepParams(
        pi=np.array([[0.0, 1.0, 0.0]]),
        mu=np.array([[[5.0, 5.0], [1.0, -2.0], [9.0, 9.0]]]),
        sigma=np.full((1, 3, 2), 1e-9),
        rho=np.zeros((1, 3)),
        e=np.array([0.0]),
    )
    rng = np.random.default_rng(0)
    for _ in range(5):
        d = _draw(p, rng)
        assert np.allclose(d[0], [1.0, -2.0, 0.0])


def test_eos_is_drawn_not_thresholded():
    p = StepParams(
        np.ones((1, 1)), np.zeros((1, 1, 2)), np.ones((1, 1, 2)), np.zeros((1, 1)), np.array([0.3])
    )
    rng = np.random.default_rng(1)
    eos = np.array([_draw(p, rng)[0, 2] for _ in range(2000)])
    assert 0.25 < eos.mean() < 0.35  # a threshold at 0.5 would give 0


def test_large_bias_samples_collapse_to_the_mode(model):
    for seed in (1, 2):
        for s in generate(model, "ab", alphabet=ALPHA, seed=seed, bias=40.0, max_steps=15):
            # sigma = exp(sigma_hat - 40): every draw lands on a component mean
            assert s.params.sigma.max() < 1e-12
            dist = np.abs(s.params.mu[0] - s.offset[0, :2]).max(axis=1)
            assert dist.min() < 1e-6


@pytest.mark.parametrize(
    "text, match",
    [("", "no text"), ("   ", "no text"), ("a\nb", "one line"), ("x" * 1000, "at most")],
)
def test_bad_text_gets_clear_errors(model, text, match):
    with pytest.raises(SamplingError, match=match):
        list(generate(model, text, alphabet=ALPHA))


def test_unsupported_characters_are_reported_with_positions(model):
    with pytest.raises(UnsupportedCharactersError) as info:
        list(generate(model, "naïve 😀", alphabet=ALPHA))
    assert [p for p, _ in info.value.bad] == [2, 6]
    assert "printable ASCII" in str(info.value)


def test_negative_bias_is_refused(model):
    with pytest.raises(SamplingError, match="bias"):
        list(generate(model, "a", alphabet=ALPHA, bias=-1))


def test_prediction_model_needs_no_text_and_is_bounded():
    m = HandwritingModel(preset("tiny", kind="prediction")).eval()
    steps = list(generate(m, None, seed=0, max_steps=40))
    assert len(steps) == 40 and steps[0].phi is None
    with pytest.raises(SamplingError):
        list(generate(m, "text", seed=0))


def test_batch1_draw_matches_the_numpy_draw():
    """The fast path's batch-1 draw (Python floats) picks the same point as `_draw` from the
    full mixture parameters, given the same generator state."""
    from engine.fast import params_numpy

    gen = np.random.default_rng(0)
    mean, std = np.array([0.4, -0.1]), np.array([2.0, 1.5])
    for bias in (0.0, 0.7):
        for _ in range(50):
            y = gen.normal(0, 2, (1, 1 + 6 * 20))
            a = _draw(params_numpy(y, bias, mean, std), np.random.default_rng(5))
            b = _draw_one(y[0].tolist(), bias, tuple(mean), tuple(std), np.random.default_rng(5))
            np.testing.assert_allclose(a[0], b, rtol=1e-9, atol=1e-12)


def test_params_are_lazy_but_available():
    torch.manual_seed(0)
    m = HandwritingModel(preset("tiny")).eval()  # the shared fixture's step gets monkeypatched
    step = next(generate(m, "ab", alphabet=ALPHA, seed=0))
    assert callable(step._params)
    assert step.params.pi.shape == (1, m.config.num_mixtures)
    assert step.params is step.params  # computed once
