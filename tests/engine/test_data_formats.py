"""IAM-OnDB, InkML and native ink: real formats, round trips, hostile and broken input."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from engine import EngineError
from engine.data.iam import read_iam, read_transcription
from engine.data.ink import Ink
from engine.data.inkml import dumps_inkml, loads_inkml, parse_trace, read_inkml, write_inkml
from engine.data.native import load_ink, save_ink
from engine.data.records import corpus_from_records
from engine.data.unipen import ImportReport

FIX = Path(__file__).parents[1] / "fixtures"


def _ink(with_channels=True):
    rng = np.random.default_rng(0)
    strokes = [np.cumsum(rng.normal(size=(n, 2)), 0) for n in (5, 1, 9)]
    if not with_channels:
        return Ink('Hello, <world> & "you"', strokes)
    times = [np.arange(len(s)) * 0.01 + i for i, s in enumerate(strokes)]
    pressure = [rng.uniform(size=len(s)) for s in strokes]
    return Ink('Hello, <world> & "you"', strokes, times, pressure)


# --- IAM-OnDB -------------------------------------------------------------------------------


def test_iam_pairs_kth_text_line_with_kth_sorted_stroke_file():
    report = ImportReport()
    recs = read_iam(FIX / "iam", report)
    assert [r.ink.text for r in recs] == [
        "A MOVE to stop Mr. Gaitskell",
        "from nominating any more",
        "Labour life Peers",
        "Tuesday morning",
        "was bright",
    ]
    assert [Path(r.source).stem for r in recs[:3]] == ["a01-000u-00", "a01-000u-01", "a01-000u-02"]
    assert [r.split for r in recs] == ["train"] * 3 + ["valid"] * 2
    # y is already screen-down in IAM: kept as is; time comes along
    assert recs[0].ink.strokes[2].tolist() == [[1600.0, 975.0]]
    assert recs[0].ink.times is not None
    corpus = corpus_from_records(recs, report)
    assert list(corpus.split) == [0, 0, 0, 1, 1]


def test_iam_count_mismatch_and_broken_xml_are_counted(tmp_path):
    root = tmp_path / "iam"
    shutil.copytree(FIX / "iam", root)
    (root / "lineStrokes-all/a01/a01-001/a01-001w-02.xml").unlink()
    (root / "lineStrokes-all/a01/a01-000/a01-000u-01.xml").write_text("<StrokeSet><Stroke>")
    report = ImportReport()
    recs = read_iam(root, report)
    assert len(recs) == 2
    assert report.skipped == {
        "form with text/stroke line count mismatch": 1,
        "unreadable stroke file": 1,
    }


def test_iam_refuses_entities_and_bad_layout(tmp_path):
    root = tmp_path / "iam"
    shutil.copytree(FIX / "iam", root)
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
        '<StrokeSet><Stroke><Point x="&lol2;" y="1" time="0"/></Stroke></StrokeSet>'
    )
    (root / "lineStrokes-all/a01/a01-001/a01-001w-01.xml").write_text(bomb)
    report = ImportReport()
    assert len(read_iam(root, report)) == 4
    assert report.skipped["unreadable stroke file"] == 1
    with pytest.raises(EngineError, match="ascii-all"):
        shutil.rmtree(root / "ascii-all")
        read_iam(root)
    bad = tmp_path / "x.txt"
    bad.write_text("no marker here\n")
    with pytest.raises(EngineError, match="CSR"):
        read_transcription(bad)


# --- InkML ----------------------------------------------------------------------------------


def test_inkml_difference_encodings_follow_the_spec():
    # the spec's own example: 1125 18432,'23'43,"7"-8,3-5
    pts = parse_trace("1125 18432,'23'43,\"7\"-8,3-5", 2)
    assert pts.tolist() == [[1125, 18432], [1148, 18475], [1178, 18510], [1211, 18540]]
    ink = read_inkml(FIX / "inkml/difference_encoded.inkml")
    assert ink.text == "hi" and len(ink.strokes) == 2
    assert ink.strokes[1].tolist() == [[10, 0], [12, 0], [14, 1]]


def test_inkml_channels_and_round_trip(tmp_path):
    ink = read_inkml(FIX / "inkml/with_time_force.inkml")
    assert ink.text == "a & b"
    assert ink.times[1].tolist() == [40, 50] and ink.pressure[0].tolist() == [0.5, 0.6, 0.7]
    for original in (ink, _ink(), _ink(with_channels=False)):
        path = write_inkml(original, tmp_path / "x.inkml")
        back = read_inkml(path)
        assert back.equals(original)  # exact: floats are written with repr()
        assert loads_inkml(dumps_inkml(back)).equals(original)


@pytest.mark.parametrize(
    "doc, match",
    [
        ("<ink><trace>1 2, 3</trace></ink>", "fewer than 2"),
        ("<ink><trace>1 2, a b</trace></ink>", "fewer than 2"),
        ("<ink></ink>", "no traces"),
        ("<notink/>", "expected <ink>"),
        ("<ink><trace>1 2", "malformed"),
        ('<!DOCTYPE x [<!ENTITY a "b">]><ink><trace>&a;</trace></ink>', "DOCTYPE"),
    ],
)
def test_inkml_bad_input(doc, match):
    with pytest.raises(EngineError, match=match):
        loads_inkml(doc)


# --- native JSON ----------------------------------------------------------------------------


def test_native_round_trip_with_and_without_channels(tmp_path):
    for ink in (_ink(), _ink(with_channels=False)):
        ink.tilt = None
        ink.device = {"name": "tablet", "dpi": 100}
        back = load_ink(save_ink(ink, tmp_path / "a.json"))
        assert back.equals(ink) and back.device == ink.device
    tilted = Ink("t", [np.zeros((2, 2))], tilt=[np.ones((2, 2))])
    assert load_ink(save_ink(tilted, tmp_path / "b.json")).tilt[0].tolist() == [[1, 1], [1, 1]]


def test_native_rejects_newer_versions_and_garbage(tmp_path):
    path = save_ink(_ink(), tmp_path / "a.json")
    d = json.loads(path.read_text())
    d["version"] = 99
    path.write_text(json.dumps(d))
    with pytest.raises(EngineError, match="version 99 is not supported"):
        load_ink(path)
    cases = {
        "truncated": path.read_text()[:40],
        "wrong format": json.dumps({"format": "other", "version": 1}),
        "bad points": json.dumps(
            {"format": "handwriting-studio-ink", "version": 1, "strokes": [{"points": [[1]]}]}
        ),
        "nan": '{"format": "handwriting-studio-ink", "version": 1, "strokes": '
        '[{"points": [[NaN, 1]]}]}',
        "ragged pressure": json.dumps(
            {
                "format": "handwriting-studio-ink",
                "version": 1,
                "strokes": [{"points": [[1, 1], [2, 2]], "pressure": [0.5]}],
            }
        ),
    }
    for name, text in cases.items():
        path.write_text(text)
        with pytest.raises(EngineError):
            load_ink(path)
        assert name
    with pytest.raises(EngineError, match="cannot read"):
        load_ink(tmp_path / "missing.json")
