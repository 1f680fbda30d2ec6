"""Text edge cases at the engine boundary: every bad text is refused with a clear message
before any sampling work starts (bounded work), and odd but valid text is written."""

from __future__ import annotations

import pytest
import torch

import engine.sampler as sampler
from engine import EngineError
from engine.alphabet import Alphabet, UnsupportedCharactersError
from engine.layout import MAX_TEXT_CHARS, write_page
from engine.models import HandwritingModel, preset
from engine.sampler import MAX_LINE_CHARS, SamplingError, generate
from engine.strokes import NormStats


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return HandwritingModel(preset("tiny", "synthesis")).eval()


@pytest.fixture
def draws(monkeypatch):
    """Counts sampling steps (every drawn point goes through sampler._draw)."""
    calls = []
    real = sampler._draw

    def counting(params, rng):
        calls.append(1)
        return real(params, rng)

    monkeypatch.setattr(sampler, "_draw", counting)
    return calls


def page(model, text, **kw):
    return write_page(model, text, alphabet=Alphabet(), norm=NormStats(), seed=0, **kw)


BAD_TEXTS = {
    "empty": ("", "no text to write"),
    "whitespace": (" \t\n  \n\t", "no text to write"),
    "too-long": ("word " * 2000, f"at most {MAX_TEXT_CHARS}"),
    "hebrew": ("שלום עולם", "cannot write"),
    "arabic": ("مرحبا بالعالم", "cannot write"),
    "mixed-rtl": ("hello שלום world", "cannot write"),
    "emoji": ("hi 👋 there", "cannot write"),
    "zero-width-joiner": ("a\u200db", "cannot write"),
    "control": ("nul\x00byte", "cannot write"),
    "combining": ("cafe\u0301", "cannot write"),
}


@pytest.mark.parametrize("name", list(BAD_TEXTS))
def test_write_page_refuses_bad_text_before_any_work(tiny, draws, name):
    text, words = BAD_TEXTS[name]
    with pytest.raises(EngineError, match=words):
        page(tiny, text)
    assert draws == []


def test_unsupported_characters_are_named_with_their_code_points(tiny):
    with pytest.raises(UnsupportedCharactersError) as info:
        page(tiny, "ok 👋 שלום")
    message = str(info.value)
    assert "U+1F44B" in message and "U+05E9" in message and "Allowed:" in message


def test_a_bad_later_line_is_refused_before_the_first_line_is_written(tiny, draws):
    with pytest.raises(UnsupportedCharactersError):
        page(tiny, "a fine first line\nthen emoji 🙂", width=40)
    assert draws == []  # no work wasted on line 1 before the error in line 2


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "no text to write"),
        ("   ", "no text to write"),
        ("x" * (MAX_LINE_CHARS + 1), f"at most {MAX_LINE_CHARS}"),
        ("two\nlines", "one line at a time"),
        ("שלום", "cannot write"),
    ],
    ids=["empty", "spaces", "too-long", "newline", "hebrew"],
)
def test_generate_refuses_bad_lines_before_the_first_step(tiny, draws, text, words):
    gen = generate(tiny, text, alphabet=Alphabet(), norm=NormStats(), seed=0)
    with pytest.raises(SamplingError if "cannot" not in words else EngineError, match=words):
        next(gen)
    assert draws == []


@pytest.mark.parametrize("seed", [-1, 1.5, True, "7"])
def test_a_bad_seed_is_a_sampling_error_not_a_numpy_traceback(tiny, draws, seed):
    gen = generate(tiny, "hello", alphabet=Alphabet(), norm=NormStats(), seed=seed)
    with pytest.raises(SamplingError, match="seed must be a whole number >= 0"):
        next(gen)
    assert draws == []


def test_10000_characters_cost_nothing_before_the_refusal(tiny, draws):
    import time

    t0 = time.perf_counter()
    with pytest.raises(SamplingError):
        page(tiny, "x" * 10_000)
    assert draws == [] and time.perf_counter() - t0 < 5


def test_the_longest_allowed_line_is_bounded_in_steps(tiny, draws):
    steps = list(
        generate(tiny, "a" * 20, alphabet=Alphabet(), norm=NormStats(), seed=0, steps_per_char=3)
    )
    assert 0 < len(steps) <= 3 * 21


def test_odd_but_printable_text_is_written(tiny):
    lines = page(tiny, "  tabs\tand   spaces  \n\n\nx", width=20, max_steps=5)
    assert [line.text.split() for line in lines] == [["tabs", "and", "spaces"], ["x"]]
    assert all(s.shape[1] == 2 for line in lines for s in line.strokes)


@pytest.mark.parametrize("bias", [float("nan"), float("inf"), -1.0])
def test_bad_bias_is_a_message(tiny, bias):
    with pytest.raises(SamplingError, match="bias"):
        page(tiny, "ok", bias=bias)
