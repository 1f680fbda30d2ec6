"""UNIPEN importer against real files from train_r01_v07 and small hand-made variants."""

import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from engine import EngineError
from engine.data.unipen import (
    ImportReport,
    UnipenSource,
    iter_unipen,
    parse_refs,
    unescape_label,
)

FIXTURE = Path(__file__).parents[1] / "fixtures" / "unipen" / "train_r01_v07"


def test_real_files_give_labelled_lines_and_words():
    report = ImportReport()
    recs = list(iter_unipen(FIXTURE, report=report))
    lines = [r for r in recs if r.category == 8]
    words = [r for r in recs if r.category == 7]
    assert [r.ink.text for r in lines] == [
        "Give me your arm .",
        "be or not to be ;",
        "is the question .",
    ]
    assert len(words) == 15 and words[0].ink.text == "Give"
    assert {r.writer for r in recs} == {"sta/hpb0-skw"}
    assert {r.donor for r in recs} == {"sta"} and lines[0].style == "MIXED"
    assert report.files == 2 and report.records == 18 and not report.skipped


def test_words_are_the_pieces_of_their_line():
    recs = list(iter_unipen(FIXTURE))
    line = next(r for r in recs if r.ink.text == "Give me your arm .")
    words = [r for r in recs if r.category == 7][:5]
    pts = np.concatenate([np.concatenate(w.ink.strokes) for w in words])
    assert np.array_equal(pts, line.ink.points())


def test_y_is_flipped_to_screen_coordinates():
    # the ink file holds y growing up; the first pen-down point of component 58 is read back
    raw = (FIXTURE / "include/sta/data/sta1/hpb1-skw.dat").read_text("latin-1")
    recs = list(iter_unipen(FIXTURE))
    first = recs[0].ink.strokes[0][0]
    assert f"{int(first[0])} {int(-first[1])}" in raw


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    path = tmp_path_factory.mktemp("tar") / "u.tar.xz"
    with tarfile.open(path, "w:xz", preset=0) as tar:
        tar.add(FIXTURE, arcname="train_r01_v07")
    return path


def test_reads_straight_from_a_tar_archive(archive):
    from_tar = list(iter_unipen(archive))
    from_dir = list(iter_unipen(FIXTURE))
    assert [r.ink.text for r in from_tar] == [r.ink.text for r in from_dir]
    assert all(a.ink.equals(b.ink) for a, b in zip(from_tar, from_dir))


def _write(root: Path, rel: str, text: str):
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_component_numbering_hover_nesting_escapes(tmp_path):
    _write(tmp_path, "include/xx/a.doc", ".COORD\tX Y T\n.POINTS_PER_SECOND 100\n")
    _write(tmp_path, "include/xx/inner.dat", ".PEN_DOWN\n5 5 0\n6 6 1\n.PEN_UP\n")
    ink = (
        ".INCLUDE xx/a.doc\n.WRITER_ID w1\n.STYLE CURSIVE\n"
        ".PEN_DOWN\n0 0 0\n1 1 1\n.PEN_UP\n"  # 0: bare pen-up closes it, no component
        ".PEN_UP\n3 3 2\n4 4 3\n"  # 1: hover points: a component, never drawn
        ".PEN_DOWN\n10 10 4\n11 12 5\n.PEN_UP\n"  # 2
        ".INCLUDE xx/inner.dat\n"  # 3 (nested include)
    )
    _write(tmp_path, "include/xx/data/w1.dat", ink)
    _write(
        tmp_path,
        "data/8/xx/w1.dat",
        ".INCLUDE xx/data/w1.dat\n"
        '.SEGMENT TEXT 0-3 OK "say \\"hi\\""\n'
        '.SEGMENT TEXT 2,3 ? "b"\n'
        '.SEGMENT TEXT 1 ? "hover only"\n'
        '.SEGMENT TEXT 2:1-3 ? "sub range"\n'
        '.SEGMENT TEXT 9 ? "beyond"\n',
    )
    report = ImportReport()
    recs = list(iter_unipen(tmp_path, report=report))
    assert [r.ink.text for r in recs] == ['say "hi"', "b"]
    strokes = recs[0].ink.strokes
    assert len(strokes) == 3  # pen-down components 0, 2, 3; hover 1 not drawn
    assert np.array_equal(strokes[1], [[10, -10], [11, -12]])
    assert np.array_equal(strokes[2], [[5, -5], [6, -6]])
    assert recs[0].writer == "xx/w1" and recs[0].style == "CURSIVE"
    assert recs[0].ink.device["points_per_second"] == 100
    assert report.skipped == {
        "no pen-down ink": 1,
        "point sub-range reference (n:m)": 1,
        "component reference beyond the ink": 1,
    }


def test_missing_include_and_dropped_donor_are_counted_not_raised(tmp_path):
    shutil.copytree(FIXTURE, tmp_path, dirs_exist_ok=True)
    _write(tmp_path, "data/8/yy/z.dat", '.INCLUDE yy/gone.dat\n.SEGMENT TEXT 0 ? "x"\n')
    _write(tmp_path, "data/8/lex/q.dat", '.INCLUDE sta/hpb1.doc\n.SEGMENT TEXT 0 ? "x"\n')
    report = ImportReport()
    recs = list(iter_unipen(tmp_path, report=report))
    assert len(recs) == 18
    assert report.skipped["segment in a file with a missing include"] == 1
    assert report.skipped["dropped donor lex"] == 1
    assert report.missing_includes == {"yy/gone.dat"}
    report2 = ImportReport()
    list(iter_unipen(tmp_path, drop_donors=(), report=report2))
    assert "dropped donor lex" not in report2.skipped


def test_garbage_points_are_skipped(tmp_path):
    _write(tmp_path, "include/xx/d.dat", ".PEN_DOWN\n1 2\n3 oops\n.PEN_UP\n.PEN_DOWN\n1 1\n2 2\n")
    _write(
        tmp_path,
        "data/8/xx/d.dat",
        '.INCLUDE xx/d.dat\n.SEGMENT TEXT 0 ? "a"\n.SEGMENT TEXT 1 ? "b"\n.SEGMENT garbage\n',
    )
    report = ImportReport()
    recs = list(iter_unipen(tmp_path, report=report))
    assert [r.ink.text for r in recs] == ["b"]
    assert report.skipped["unreadable pen-down block"] == 1
    assert report.skipped["malformed .SEGMENT line"] == 1


def test_coord_channels_are_found_by_name(tmp_path):
    """X and Y are taken by name from .COORD, in any order, with extra channels ignored."""
    _write(tmp_path, "include/xx/c.dat", ".COORD T Y X P\n.PEN_DOWN\n0 2 1 9\n1 4 3 9\n.PEN_UP\n")
    _write(tmp_path, "data/8/xx/c.dat", '.INCLUDE xx/c.dat\n.SEGMENT TEXT 0 ? "a"\n')
    recs = list(iter_unipen(tmp_path, report=ImportReport()))
    assert np.array_equal(recs[0].ink.strokes[0], [[1, -2], [3, -4]])


def test_coord_without_x_and_y_is_counted_not_raised(tmp_path):
    # found by the fuzz test: a flipped byte turned ".COORD X Y" into one channel named "X\0Y"
    _write(tmp_path, "include/xx/c.dat", ".COORD X\0Y\n.PEN_DOWN\n10 100\n12 104\n.PEN_UP\n")
    _write(tmp_path, "data/8/xx/c.dat", '.INCLUDE xx/c.dat\n.SEGMENT TEXT 0 ? "hi"\n')
    report = ImportReport()
    assert list(iter_unipen(tmp_path, report=report)) == []
    assert report.skipped == {".COORD names no X and Y channels": 1}


def test_bad_sources_raise_clear_errors(tmp_path, archive):
    with pytest.raises(EngineError, match="not found"):
        UnipenSource(tmp_path / "nope")
    with pytest.raises(EngineError, match="not a UNIPEN distribution"):
        UnipenSource(tmp_path)
    junk = tmp_path / "junk.tar.xz"
    junk.write_bytes(b"not an archive")
    with pytest.raises(EngineError, match="neither a directory nor a tar"):
        UnipenSource(junk)
    truncated = tmp_path / "t.tar.xz"
    data = archive.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(EngineError):
        UnipenSource(truncated)


def test_refs_and_labels():
    assert parse_refs("3-5,9") == [3, 4, 5, 9]
    assert parse_refs("7") == [7]
    assert parse_refs("5311-5413:15") is None
    assert parse_refs("5-3") is None
    assert unescape_label(r"t\@h\@e\@") == "the"
    assert unescape_label(r"a\\b \"q\"") == 'a\\b "q"'
