"""Best of N lines: the attention-coverage score, the choice, and the rows it returns."""

import numpy as np
import pytest
import torch

from engine.alphabet import Alphabet
from engine.layout import (
    attention_coverage,
    best_line,
    check_tries,
    write_lines,
)
from engine.models import HandwritingModel, preset
from engine.sampler import Primer, SamplingError, generate
from engine.strokes import NormStats

ALPHA = Alphabet()
NORM = NormStats((0.5, 0.0), (1.0, 1.0))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return HandwritingModel(preset("tiny")).eval()


def test_coverage_is_the_mean_of_the_characters_peaks():
    phi = np.array(
        [
            [0.9, 0.1, 0.0, 0.2, 0.0],
            [0.2, 0.7, 0.1, 0.0, 0.0],
            [0.0, 0.3, 0.4, 0.1, 0.6],
        ]
    )
    # characters 0..3: peaks 0.9, 0.7, 0.4, 0.2 -> 0.55; the end column (4) does not count
    assert attention_coverage(phi, 0, 4) == pytest.approx(0.55)
    # after a 1-character primer text: characters 1..3 -> 1.3 / 3; 1..2 -> 0.55
    assert attention_coverage(phi, 1, 3) == pytest.approx(1.3 / 3)
    assert attention_coverage(phi, 1, 2) == pytest.approx(0.55)
    assert attention_coverage(np.zeros((0, 5)), 0, 4) == 0.0


def test_best_line_keeps_the_best_covered_row_of_one_batch(model):
    kw = dict(alphabet=ALPHA, norm=NORM, bias=0.5)
    rows, scores = best_line(model, "abc", 4, seed=5, **kw)
    assert len(scores) == 4 and scores.index(max(scores)) == int(np.argmax(scores))
    # the same batch drawn directly: the chosen row's steps are that row, up to its stop
    steps = list(generate(model, "abc", seed=5, batch=4, **kw))
    b = int(np.argmax(scores))
    own = [s for s in steps if not s.done[b]]
    assert len(rows) == len(own)
    for got, want in zip(rows, own):
        assert got.offset.shape == (1, 3) and got.phi.shape == (1, 4)
        np.testing.assert_array_equal(got.offset[0], want.offset[b])
        np.testing.assert_array_equal(got.phi[0], want.phi[b])
        np.testing.assert_allclose(got.params.pi[0], want.params.pi[b])
        np.testing.assert_allclose(got.params.mu[0], want.params.mu[b])
    # its score is the coverage of its own window weights
    phi = np.array([s.phi[0] for s in rows])
    assert scores[b] == pytest.approx(attention_coverage(phi, 0, 3))
    # a seed reproduces the choice
    again, scores2 = best_line(model, "abc", 4, seed=5, **kw)
    assert scores2 == scores and len(again) == len(rows)


def test_write_lines_at_one_try_is_the_plain_sample(model):
    kw = dict(alphabet=ALPHA, norm=NORM, bias=0.5)
    events = list(write_lines(model, ["ab", "", "cd"], seed=9, **kw))
    first = [e.step.offset[0] for e in events if e.line == 0]
    plain = [s.offset[0] for s in generate(model, "ab", seed=9, **kw)]
    np.testing.assert_array_equal(np.array(first), np.array(plain))
    assert {e.line for e in events} == {0, 2}


def test_write_lines_with_tries_gives_the_best_lines(model):
    kw = dict(alphabet=ALPHA, norm=NORM, bias=0.5)
    events = list(write_lines(model, ["ab", "cd"], seed=9, tries=3, **kw))
    for line, text in ((0, "ab"), (1, "cd")):
        rows, _ = best_line(model, text, 3, seed=9 + line, **kw)
        got = np.array([e.step.offset[0] for e in events if e.line == line])
        np.testing.assert_array_equal(got, np.array([s.offset[0] for s in rows]))


def test_best_line_with_a_primer_scores_only_the_new_text(model):
    offsets = np.zeros((12, 3), np.float32)
    offsets[:, 0] = 2.0
    offsets[5, 2] = offsets[-1, 2] = 1.0
    primer = Primer(offsets, "xy")
    rows, scores = best_line(model, "ab", 2, seed=1, alphabet=ALPHA, norm=NORM, primer=primer)
    assert any(s.primed for s in rows) and not rows[-1].primed
    written = np.array([s.phi[0] for s in rows if not s.primed])
    first = written.shape[1] - 1 - len("ab")  # "xy ab": the new text's columns come last
    assert max(scores) == pytest.approx(attention_coverage(written, first, 2))


@pytest.mark.parametrize("bad", [0, 17, 2.5, True, "3", None])
def test_tries_out_of_range_are_refused(bad):
    with pytest.raises(SamplingError, match="tries must be a whole number from 1 to 16"):
        check_tries(bad)


def test_best_line_refuses_a_batch(model):
    with pytest.raises(SamplingError, match="leave batch at 1"):
        best_line(model, "ab", 2, alphabet=ALPHA, norm=NORM, batch=2)


def test_drafts_come_first_then_the_chosen_steps(model):
    kw = dict(alphabet=ALPHA, norm=NORM, bias=0.5)
    plain = list(write_lines(model, ["ab", "cd"], seed=2, tries=3, **kw))
    events = list(write_lines(model, ["ab", "cd"], seed=2, tries=3, drafts=True, **kw))
    assert not any(e.draft for e in plain)
    for line in (0, 1):
        mine = [e for e in events if e.line == line]
        flags = [e.draft for e in mine]
        n_draft = flags.index(False)
        assert n_draft > 0 and not any(flags[n_draft:])  # all drafts, then the line
        assert all(e.step.offset.shape == (3, 3) for e in mine[:n_draft])  # one row a candidate
        final = [e.step.offset[0] for e in mine[n_draft:]]
        want = [e.step.offset[0] for e in plain if e.line == line]
        np.testing.assert_array_equal(np.array(final), np.array(want))
    # the drafts are the batch the line was chosen from, step by step
    batch = list(generate(model, "ab", seed=2, batch=3, **kw))
    drafts = [e.step for e in events if e.line == 0 and e.draft]
    assert len(drafts) == len(batch)
    np.testing.assert_array_equal(drafts[-1].offset, batch[-1].offset)
