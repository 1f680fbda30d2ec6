"""The Text tab generates live, shades by surprisal and evaluates files in a worker."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture
def tiny_text_model():
    from engine.text_data import Vocab
    from engine.text_model import TextConfig, TextModel

    torch.manual_seed(0)
    vocab = Vocab("char", "abcdefgh \n", "map")
    return TextModel(TextConfig(vocab=vocab.to_dict(), hidden_size=8, num_layers=1))


def test_generates_text_shaded_by_surprisal(qtbot, tiny_text_model):
    from studio.text_tab import TextTab, surprisal_color

    tab = TextTab()
    qtbot.addWidget(tab)
    tab.set_model(tiny_text_model)
    tab.prime_edit.setText("abc")
    tab.length.setValue(60)
    with qtbot.waitSignal(tab.generation_finished, timeout=20000) as blocker:
        tab.generate(seed=1)
        assert not tab.generate_btn.isEnabled() and tab.stop_btn.isEnabled()
    result = blocker.args[0]
    assert result["symbols"] == 60 and not result["stopped"]
    text = tab.output.toPlainText()
    assert text.startswith("abc") and len(text) == 63
    assert tab.generate_btn.isEnabled()
    # each generated character carries its surprisal as background colour and a tooltip
    cursor = tab.output.textCursor()
    cursor.setPosition(10)
    cursor.setPosition(11, cursor.MoveMode.KeepAnchor)
    fmt = cursor.charFormat()
    assert "surprisal" in fmt.toolTip() and "bits" in fmt.toolTip()
    bits = float(fmt.toolTip().split("surprisal ")[1].split(" bits")[0])
    assert fmt.background().color() == surprisal_color(bits)
    assert "mean surprisal" in tab.status.text()


def test_surprisal_colors_run_white_to_red():
    from studio.text_tab import surprisal_color

    assert surprisal_color(0).name() == "#ffffff"
    assert surprisal_color(100).name() == surprisal_color(8).name()
    assert surprisal_color(2).red() > surprisal_color(2).blue()


def test_stop_ends_a_long_generation(qtbot, tiny_text_model):
    from studio.text_tab import TextTab

    tab = TextTab()
    qtbot.addWidget(tab)
    tab.set_model(tiny_text_model)
    tab.length.setValue(100_000)
    with qtbot.waitSignal(tab.generation_finished, timeout=20000) as blocker:
        tab.generate(seed=0)
        qtbot.waitUntil(lambda: len(tab.output.toPlainText()) > 20, timeout=10000)
        tab.stop_btn.click()
    assert blocker.args[0]["stopped"] and blocker.args[0]["symbols"] < 100_000


def test_evaluates_a_file_static_and_dynamic(qtbot, tmp_path, tiny_text_model):
    from studio.text_tab import TextTab

    path = tmp_path / "t.txt"
    path.write_text("abc def gh\n" * 40 + "xyz", encoding="utf-8")
    tab = TextTab()
    qtbot.addWidget(tab)
    tab.set_model(tiny_text_model)
    tab.tail.setValue(0.5)
    with qtbot.waitSignal(tab.evaluation_finished, timeout=30000) as blocker:
        tab.evaluate_file(str(path))
    res = blocker.args[0]["results"]
    assert [r["dynamic"] for r in res] == [False, True]
    assert tab.results.rowCount() == 2 and tab.results.item(1, 0).text() == "dynamic"
    assert float(tab.results.item(0, 1).text()) == pytest.approx(res[0]["bpc"], abs=1e-4)
    assert "3 unknown" in tab.status.text()  # x, y, z are outside the vocabulary: reported


def test_missing_model_is_reported(qtbot, tmp_path):
    from studio.text_tab import TextTab

    tab = TextTab(model_path=tmp_path / "none.safetensors")
    qtbot.addWidget(tab)
    with qtbot.waitSignal(tab.controller.failed, timeout=20000) as blocker:
        tab.generate()
    assert "no text model" in blocker.args[0]
    assert "Error" in tab.status.text() and tab.generate_btn.isEnabled()
