"""The legibility bench's scoring and renderer (the recogniser itself is optional)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.legibility import TEXTS, cer, levenshtein, render_line


def test_levenshtein_and_case_insensitive_cer():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert cer(["Hello"], ["hello"]) == 0.0
    assert cer(["abcd", "ef"], ["abxd", ""]) == pytest.approx(3 / 6)


def test_bench_has_enough_distinct_texts():
    assert len(TEXTS) >= 50 and len(set(TEXTS)) == len(TEXTS)
    assert all(t.isascii() and t.strip() == t for t in TEXTS)


def test_render_line_crops_tightly_with_a_small_margin():
    strokes = [np.array([[10.0, 5.0], [60.0, 25.0]]), np.array([[70.0, 5.0]])]
    img = render_line(strokes, margin=0.05, px_height=96)
    assert img.dtype == np.uint8 and img.shape[0] == int(96 * 1.1) + 1
    ink = np.argwhere(img < 128)
    top, left = ink.min(0)
    bottom, right = ink.max(0)
    pad = 0.05 * 96
    assert abs(top - pad) <= 3 and abs(left - pad) <= 3  # ink starts at the margin
    assert (
        abs((img.shape[0] - 1 - bottom) - pad) <= 3 and abs((img.shape[1] - 1 - right) - pad) <= 3
    )


def test_recogniser_reads_printed_text():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("rapidocr")
    from PIL import Image, ImageDraw, ImageFont

    from bench.legibility import Recogniser

    img = Image.new("L", (320, 60), 255)
    ImageDraw.Draw(img).text((5, 5), "hello world", fill=0, font=ImageFont.load_default(size=36))
    assert Recogniser()(np.asarray(img)) == "hello world"


@pytest.mark.parametrize("primed,point_step", [(False, 0.9), (True, 0.9), (True, 2.7)])
def test_bench_batch_sampler_matches_the_engine_sampler(primed, point_step):
    """The bench writes its texts as one batch for speed; at batch 1 it must draw exactly what
    engine.sampler's reference path draws, with and without a primer (Sec. 5.5), also for a
    network of sparser points (the primer resampled to its spacing on both paths)."""
    import torch

    from bench.legibility import sample_texts
    from engine.alphabet import Alphabet
    from engine.checkpoint import LoadedModel
    from engine.data.corpus import NormStats
    from engine.models import HandwritingModel, preset
    from engine.sampler import Primer, sample

    torch.manual_seed(0)
    model = HandwritingModel(preset("tiny", point_step=point_step)).eval()
    loaded = LoadedModel(
        model, "synthesis", model.config, Alphabet(), NormStats((0.5, -0.1), (2.0, 1.5))
    )
    rng = np.random.default_rng(1)
    ink = np.c_[rng.normal(size=(40, 2)), np.arange(40) % 9 == 8].astype(np.float32)
    primer = Primer(ink, "ab") if primed else None
    ours = sample_texts(loaded, ["hi"], 0.5, seed=3, steps_per_char=10, primer=primer)[0]
    ref = sample(loaded, "hi", bias=0.5, seed=3, primer=primer, fast=False, steps_per_char=10)[0]
    assert [len(s) for s in ours] == [len(s) for s in ref.strokes()]
    np.testing.assert_allclose(np.concatenate(ours), np.concatenate(ref.strokes()), atol=1e-5)


def test_bench_errors_are_messages(tmp_path, capsys):
    """A bad model path or an empty request ends with one line on stderr, not a traceback,
    before the recogniser (an optional extra) is needed."""
    from bench.legibility import main

    assert main(["--model", str(tmp_path / "missing.safetensors"), "--real", "0"]) == 2
    assert "no model file" in capsys.readouterr().err
    assert main(["--real-only", "--real", "0"]) == 2
    assert "scores nothing" in capsys.readouterr().err
