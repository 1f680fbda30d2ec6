"""Variations: the first line with several seeds; a card is exactly the page line it promises."""

import numpy as np
import pytest

from studio.variations import VariationsJob, first_line, random_seeds


def _run(job):
    for _ in job.steps():
        pass
    return job.result(False)


def test_a_card_is_the_line_that_write_puts_on_the_page(tiny_synthesis):
    from studio.writing import WriteJob

    lines = ["", "ab c", "de"]  # the first written line is page line 1: its seed is seed + 1
    res = _run(VariationsJob(tiny_synthesis, lines, [7, 40], bias=0.5))
    assert res["done"] == res["count"] == 2 and not res["stopped"]
    for cand in res["candidates"]:
        assert cand.finished and len(cand.points) > 0
        page = WriteJob(tiny_synthesis, lines, bias=0.5, seed=cand.seed)
        for _ in page.steps():
            pass
        snap = page.snapshot()
        start, end = snap.line_start[0], snap.line_start[1]
        origin = page._origins[0]
        np.testing.assert_allclose(snap.points[start:end] - origin, np.asarray(cand.points))
        assert list(snap.pen_up[start:end]) == cand.pen_up
    a, b = (np.asarray(c.points) for c in res["candidates"])
    assert a.shape != b.shape or not np.allclose(a, b)  # two seeds, two different lines


def test_strokes_split_at_pen_lifts():
    from studio.variations import Candidate

    c = Candidate(
        3, [np.array([0.0, 0]), np.array([1.0, 0]), np.array([2.0, 1])], [False, True, False]
    )
    s = c.strokes()
    assert [len(x) for x in s] == [2, 1]


def test_bad_inputs_are_refused_with_a_reason(tiny_synthesis):
    from engine.sampler import SamplingError

    with pytest.raises(SamplingError, match="no text"):
        first_line(["", "   "])
    with pytest.raises(ValueError, match="no seeds"):
        VariationsJob(tiny_synthesis, ["ab"], [], bias=0.5)
    with pytest.raises(ValueError, match="seeds must lie"):
        VariationsJob(tiny_synthesis, ["ab"], [-1], bias=0.5)


def test_random_seeds_are_distinct_and_leave_room_for_the_line_index():
    import random

    seeds = random_seeds(12, 5, random.Random(0))
    assert len(set(seeds)) == 12
    assert all(0 <= s and s + 5 <= 2**31 - 1 for s in seeds)


def test_dialog_fills_cards_and_choosing_one_writes_the_page_with_its_seed(
    qtbot, window, tiny_synthesis
):
    tab = window.write_tab
    window.models.set_loaded(tiny_synthesis, "tiny")
    tab.text.setPlainText("ab\ncd")
    tab.bias.set_value(1.0)
    assert tab.variations_button.isEnabled()
    assert tab.show_variations(seeds=[5, 9, 13])
    dialog = tab._variations
    with qtbot.waitSignal(dialog.written, timeout=60000) as blocker:
        pass
    result = blocker.args[0]
    assert [c.seed for c in result["candidates"]] == [5, 9, 13]
    cards = [c for c in dialog.cards if c.isVisible()]
    assert len(cards) == 3
    assert all(c.isEnabled() and c.candidate.finished for c in cards)
    assert "seed 9" in cards[1].caption()
    assert "3 variations in" in dialog.status.text()
    assert "“ab”" in dialog.intro.text()
    image = cards[1].grab().toImage()  # the card shows ink: some dark pixels in the card
    dark = sum(
        image.pixelColor(x, y).lightness() < 100
        for x in range(0, image.width(), 2)
        for y in range(0, image.height() - 30, 2)
    )
    assert dark > 10
    with qtbot.waitSignal(tab.controller.finished, timeout=60000) as page:
        cards[1].click()
    assert tab.seed.value() == 9 and not dialog.isVisible()
    snap = page.args[0]
    start, end = snap.line_start[0], snap.line_start[1]
    chosen = np.asarray(result["candidates"][1].points)
    np.testing.assert_allclose(snap.points[start:end] - snap.points[start] + chosen[0], chosen)


def test_variations_without_a_model_or_text_say_why(qtbot, window, tiny_synthesis, tiny_prediction):
    tab = window.write_tab
    assert window.models.loaded is None  # the fixture's window loads no model
    assert not tab.variations_button.isEnabled()
    assert tab.show_variations() is False
    assert "Load a synthesis model" in tab.banner.text()
    window.models.set_loaded(tiny_prediction, "tiny prediction")
    assert not tab.variations_button.isEnabled()
    assert tab.show_variations() is False
    window.models.set_loaded(tiny_synthesis, "tiny")
    tab.text.setPlainText("   ")
    assert tab.show_variations() is False
    assert "no text" in tab.banner.text()


def test_stopping_leaves_the_written_cards_and_says_how_many(qtbot, window, tiny_synthesis):
    tab = window.write_tab
    window.models.set_loaded(tiny_synthesis, "tiny")
    tab.text.setPlainText("abcdefgh ijk")
    tab.show_variations(seeds=list(range(10)))
    dialog = tab._variations
    with qtbot.waitSignal(dialog.written, timeout=60000) as blocker:
        dialog.stop_button.click()
    result = blocker.args[0]
    assert result["stopped"] and result["done"] < 10
    assert dialog.status.text().startswith("Stopped:")
    unfinished = [c for c in dialog.cards[:10] if not c.isEnabled()]
    assert len(unfinished) == 10 - result["done"]
    assert dialog.more.isEnabled()


def test_shutting_the_tab_down_stops_a_running_variations_job(qtbot, window, tiny_synthesis):
    tab = window.write_tab
    window.models.set_loaded(tiny_synthesis, "tiny")
    tab.text.setPlainText("abcdefgh ijklmnop")
    assert tab.show_variations(seeds=list(range(12)))
    assert tab._variations.controller.is_running()
    tab.shutdown()  # what closing the main window does
    assert not tab._variations.controller.is_running()
