"""Hostile and broken files: every importer answers with the project's own error or a counted
skip, never a crash, a hang or an unbounded read.

Covered: native ink/style JSON, InkML, IAM-OnDB stroke XML and transcriptions, UNIPEN data
files, model files (safetensors header + JSON metadata) and the corpus .npz. Inputs: truncations
and byte flips of valid files, garbage bytes, huge numbers, deep nesting, billion-laughs and
external-entity XML, and files whose size (or declared size) is past the limits.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import EngineError
from engine.data.errors import DataError
from engine.data.ink import Ink

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def sample_ink() -> Ink:
    strokes = [np.array([[0.0, 0.0], [1.5, 2.0], [3.0, 1.0]]), np.array([[5.0, 5.0], [6.0, 4.5]])]
    times = [np.array([0.0, 0.01, 0.02]), np.array([0.1, 0.11])]
    pressure = [np.array([0.2, 0.5, 0.7]), np.array([0.4, 0.3])]
    return Ink("hello", strokes, times, pressure)


# -- byte-level mutations of a valid file -----------------------------------------------------


@st.composite
def mutated(draw, valid: bytes):
    """A valid file truncated, with bytes flipped, spliced with garbage, or pure garbage."""
    kind = draw(st.sampled_from(["truncate", "flip", "splice", "garbage"]))
    if kind == "truncate":
        return valid[: draw(st.integers(0, len(valid) - 1))]
    if kind == "garbage":
        return draw(st.binary(max_size=400))
    data = bytearray(valid)
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        return bytes(data)
    i = draw(st.integers(0, len(data)))
    return bytes(data[:i]) + draw(st.binary(min_size=1, max_size=40)) + bytes(data[i:])


HUGE_NUMBERS = ["1e999", "-1e999", "9" * 400, "1" + "0" * 5000, "NaN", "Infinity", "-0", "1e-999"]
HUGE_IDS = ["1e999", "-1e999", "9x400", "1e5000-int", "NaN", "Infinity", "-0", "1e-999"]


def nested(depth: int, open_: str, close: str, inner: str = "1") -> str:
    return open_ * depth + inner + close * depth


def expect_clean(call, *args):
    """Run an importer: it returns normally or raises an EngineError; anything else fails."""
    try:
        return call(*args)
    except EngineError:
        return None


# -- native ink / style JSON ------------------------------------------------------------------


def native_bytes() -> bytes:
    from engine.data.native import ink_to_dict

    return json.dumps(ink_to_dict(sample_ink())).encode()


def test_native_round_trip_is_the_baseline(tmp_path):
    from engine.data.native import load_ink, save_ink

    ink = sample_ink()
    assert load_ink(save_ink(ink, tmp_path / "s.json")).equals(ink)


@FUZZ
@given(data=mutated(native_bytes()))
def test_native_ink_file_mutations(tmp_path, data):
    from engine.data.native import load_ink

    path = tmp_path / "style.json"
    path.write_bytes(data)
    ink = expect_clean(load_ink, path)
    assert ink is None or isinstance(ink, Ink)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=20,
)


@FUZZ
@given(
    strokes=st.lists(
        st.fixed_dictionaries(
            {"points": json_values},
            optional={"t": json_values, "pressure": json_values, "tilt": json_values},
        ),
        max_size=4,
    ),
    text=json_values,
    version=json_values,
    device=json_values,
)
def test_native_ink_structure_fuzz(strokes, text, version, device):
    from engine.data.native import FORMAT, ink_from_dict

    d = {"format": FORMAT, "version": version, "text": text, "strokes": strokes, "device": device}
    expect_clean(ink_from_dict, d)


@pytest.mark.parametrize("number", HUGE_NUMBERS, ids=HUGE_IDS)
def test_native_huge_numbers(tmp_path, number):
    from engine.data.native import load_ink

    path = tmp_path / "s.json"
    body = f'{{"format":"handwriting-studio-ink","version":1,"text":"a","strokes":[{{"points":[[{number},1],[2,3]]}}]}}'  # noqa: E501
    path.write_text(body)
    expect_clean(load_ink, path)


@pytest.mark.parametrize("depth", [100, 5_000, 200_000])
def test_native_deep_nesting(tmp_path, depth):
    from engine.data.native import load_ink

    path = tmp_path / "s.json"
    path.write_text(nested(depth, "[", "]"))
    with pytest.raises(DataError):
        load_ink(path)
    path.write_text(
        '{"format":"handwriting-studio-ink","version":1,"text":"a","strokes":[{"points":'
        + nested(depth, "[", "]")
        + "}]}"
    )
    with pytest.raises(DataError):
        load_ink(path)


def test_native_file_past_the_size_limit_is_refused_without_reading(tmp_path):
    from engine.data import native

    path = tmp_path / "huge.json"
    with open(path, "wb") as f:  # sparse: costs no disk, but stat() says it is huge
        f.truncate(native.MAX_FILE_BYTES + 1)
    with pytest.raises(DataError, match="byte limit"):
        native.load_ink(path)


# -- XML: InkML and IAM-OnDB ------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<ink xmlns="http://www.w3.org/2003/InkML"><trace>&lol4; 1 2, 3 4</trace></ink>"""
XXE = b"""<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<WhiteboardCaptureSession><StrokeSet><Stroke><Point x="&x;" y="1" time="0"/></Stroke>
</StrokeSet></WhiteboardCaptureSession>"""
XML_ATTACKS = [
    BILLION_LAUGHS,
    XXE,
    b'<?xml version="1.0" encoding="bogus-encoding"?><ink/>',
    b'<?xml version="1.0" encoding="utf-16"?><ink/>',
    b"\xff\xfe<\x00i\x00n\x00k\x00/\x00>\x00",
    b"<ink>" + b"<traceGroup>" * 50_000 + b"</traceGroup>" * 50_000 + b"</ink>",
    b"",
    b"<",
    b"\x00" * 64,
]


def inkml_bytes() -> bytes:
    from engine.data.inkml import dumps_inkml

    return dumps_inkml(sample_ink()).encode()


def test_inkml_round_trip_is_the_baseline():
    from engine.data.inkml import loads_inkml

    assert loads_inkml(inkml_bytes()).equals(sample_ink(), atol=1e-9)


@pytest.mark.parametrize("data", XML_ATTACKS, ids=range(len(XML_ATTACKS)))
def test_inkml_refuses_hostile_xml(data):
    from engine.data.inkml import loads_inkml

    with pytest.raises(DataError):
        loads_inkml(data)


@FUZZ
@given(data=mutated(inkml_bytes()))
def test_inkml_mutations(data):
    from engine.data.inkml import loads_inkml

    expect_clean(loads_inkml, data)


@FUZZ
@given(
    body=st.text(alphabet="0123456789.,-+eE!'\"TF*? \n", max_size=200)
    | st.sampled_from([f"{n} 1, 2 {n}" for n in HUGE_NUMBERS]),
    channels=st.lists(st.sampled_from(["X", "Y", "T", "F", "Q", ""]), max_size=5),
)
def test_inkml_trace_fuzz(body, channels):
    from xml.sax.saxutils import escape

    from engine.data.inkml import loads_inkml

    fmt = "".join(f'<channel name="{c}"/>' for c in channels)
    doc = f"<ink><traceFormat>{fmt}</traceFormat><trace>{escape(body)}</trace></ink>"
    ink = expect_clean(loads_inkml, doc)
    assert ink is None or all(np.isfinite(s).all() for s in ink.strokes)


def iam_stroke_bytes() -> bytes:
    points = "".join(
        f'<Point x="{100 + 7 * i}" y="{200 + (i % 5)}" time="{0.01 * i:.2f}"/>' for i in range(6)
    )
    return (
        '<?xml version="1.0" encoding="ISO-8859-1"?><WhiteboardCaptureSession>'
        f"<StrokeSet><Stroke>{points}</Stroke><Stroke>{points}</Stroke></StrokeSet>"
        "</WhiteboardCaptureSession>"
    ).encode("latin-1")


def test_iam_stroke_file_baseline(tmp_path):
    from engine.data.iam import read_stroke_file

    path = tmp_path / "a01-000u-01.xml"
    path.write_bytes(iam_stroke_bytes())
    assert read_stroke_file(path, "hi").n_points == 12


@pytest.mark.parametrize("data", XML_ATTACKS, ids=range(len(XML_ATTACKS)))
def test_iam_refuses_hostile_xml(tmp_path, data):
    from engine.data.iam import read_stroke_file

    path = tmp_path / "a01-000u-01.xml"
    path.write_bytes(data)
    with pytest.raises(DataError):
        read_stroke_file(path, "x")


@FUZZ
@given(data=mutated(iam_stroke_bytes()))
def test_iam_stroke_file_mutations(tmp_path, data):
    from engine.data.iam import read_stroke_file

    path = tmp_path / "a01-000u-01.xml"
    path.write_bytes(data)
    expect_clean(read_stroke_file, path, "x")


@pytest.mark.parametrize("number", HUGE_NUMBERS, ids=HUGE_IDS)
def test_iam_huge_numbers(tmp_path, number):
    from engine.data.iam import read_stroke_file

    path = tmp_path / "a01-000u-01.xml"
    path.write_text(
        f'<S><StrokeSet><Stroke><Point x="{number}" y="1" time="0"/><Point x="1" y="2" '
        'time="1"/></Stroke></StrokeSet></S>'
    )
    ink = expect_clean(read_stroke_file, path, "x")
    assert ink is None or np.isfinite(ink.points()).all()


def test_iam_copy_with_broken_files_is_counted_not_raised(tmp_path):
    from engine.data.iam import read_iam
    from engine.data.unipen import ImportReport

    root = tmp_path / "iam"
    form = root / "lineStrokes-all" / "a01" / "a01-000"
    text = root / "ascii-all" / "a01" / "a01-000"
    form.mkdir(parents=True)
    text.mkdir(parents=True)
    (text / "a01-000u.txt").write_text("OCR:\n\nCSR:\n\nfirst line\nsecond line\nthird\n")
    (form / "a01-000u-01.xml").write_bytes(iam_stroke_bytes())
    (form / "a01-000u-02.xml").write_bytes(BILLION_LAUGHS)
    (form / "a01-000u-03.xml").write_bytes(iam_stroke_bytes()[:50])
    (text / "a01-001u.txt").write_bytes(b"\xff\x00garbage without the marker")
    (root / "ascii-all" / "a01" / "a01-000" / "a01-002u.txt").write_text("CSR:\nno strokes\n")
    report = ImportReport()
    records = read_iam(root, report)
    assert [r.ink.text for r in records] == ["first line"]
    assert report.skipped["unreadable stroke file"] == 2
    assert report.skipped["unreadable transcription"] == 1
    assert report.skipped["form with text/stroke line count mismatch"] == 1


def test_xml_past_the_size_limit_is_refused_without_reading(tmp_path):
    from engine.data.inkml import read_inkml
    from engine.data.xmlsafe import MAX_XML_BYTES

    path = tmp_path / "huge.inkml"
    with open(path, "wb") as f:
        f.truncate(MAX_XML_BYTES + 1)
    with pytest.raises(DataError, match="byte limit"):
        read_inkml(path)


# -- UNIPEN -----------------------------------------------------------------------------------

UNIPEN_DAT = b""".VERSION 1.0
.COORD X Y
.POINTS_PER_SECOND 100
.X_POINTS_PER_INCH 1000
.Y_POINTS_PER_INCH 1000
.WRITER_ID w01
.INCLUDE words.inc
.SEGMENT TEXT 0-2 ? "hi there"
.SEGMENT WORD 0-1 ? "hi"
.SEGMENT WORD 1:3-2:4 ? "sub-range"
"""
UNIPEN_INC = b""".PEN_DOWN
10 100
12 104
15 109
.PEN_UP
.PEN_DOWN
20 100
22 96
.PEN_UP
.PEN_DOWN
30 100
31 101
.PEN_UP
"""


def unipen_tree(root: Path, dat: bytes, inc: bytes) -> Path:
    data = root / "data" / "8" / "don"
    data.mkdir(parents=True, exist_ok=True)
    (root / "include").mkdir(exist_ok=True)
    (data / "w01.dat").write_bytes(dat)
    (root / "include" / "words.inc").write_bytes(inc)
    return root


def import_unipen(root: Path):
    from engine.data.unipen import ImportReport, iter_unipen

    report = ImportReport()
    records = list(iter_unipen(root, report=report))
    return records, report


def test_unipen_baseline(tmp_path):
    records, report = import_unipen(unipen_tree(tmp_path, UNIPEN_DAT, UNIPEN_INC))
    assert [r.ink.text for r in records] == ["hi there", "hi"]
    assert report.skipped["point sub-range reference (n:m)"] == 1


@FUZZ
@given(dat=mutated(UNIPEN_DAT), inc=mutated(UNIPEN_INC))
def test_unipen_mutations_are_skipped_and_counted(tmp_path_factory, dat, inc):
    root = unipen_tree(tmp_path_factory.mktemp("u"), dat, inc)
    try:
        records, report = import_unipen(root)
    except EngineError:
        return
    assert report.records == len(records)
    for r in records:
        assert all(np.isfinite(s).all() for s in r.ink.strokes)


@pytest.mark.parametrize("number", HUGE_NUMBERS, ids=HUGE_IDS)
def test_unipen_huge_numbers_are_skipped_and_counted(tmp_path, number):
    inc = UNIPEN_INC.replace(b"12 104", f"{number} 104".encode())
    records, report = import_unipen(unipen_tree(tmp_path, UNIPEN_DAT, inc))
    total = len(records) + sum(report.skipped.values())
    assert total == 3  # every segment is either read or counted
    for r in records:
        assert all(np.isfinite(s).all() for s in r.ink.strokes)


def test_unipen_include_loops_and_huge_ranges_are_bounded(tmp_path):
    dat = b'.INCLUDE self.inc\n.SEGMENT TEXT 0-99999999999 ? "x"\n.SEGMENT TEXT 0-0 ? "y"\n'
    inc = b".INCLUDE self.inc\n.PEN_DOWN\n1 2\n3 4\n"
    root = unipen_tree(tmp_path, dat, b"")
    (root / "include" / "self.inc").write_bytes(inc)  # includes itself forever
    records, report = import_unipen(root)
    assert report.segments == 2 and report.records == len(records)


# -- model files ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory) -> bytes:
    import torch

    from engine.alphabet import Alphabet
    from engine.checkpoint import save_model
    from engine.models import HandwritingModel, preset
    from engine.strokes import NormStats

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("m") / "model.safetensors"
    model = HandwritingModel(preset("tiny", "synthesis"))
    save_model(path, model, Alphabet(), NormStats((0.0, 0.0), (1.0, 1.0)))
    return path.read_bytes()


def safetensors_with_header(header: bytes, body: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + body


def test_model_file_mutations(tmp_path, model_bytes):
    from hypothesis import given as given_

    from engine.checkpoint import load_model

    @FUZZ
    @given_(data=mutated(model_bytes[:4000]) | mutated(model_bytes))
    def check(data):
        path = tmp_path / "m.safetensors"
        path.write_bytes(data)
        expect_clean(load_model, path)

    check()


@pytest.mark.parametrize(
    "header",
    [
        b"{" * 100_000 + b"}" * 100_000,
        b'{"__metadata__": {"json": "' + b"[" * 100_000 + b'"}}',
        b'{"__metadata__": {"json": 5}}',
        b'{"__metadata__": []}',
        b"[]",
        b'{"__metadata__": {"json": "{\\"format\\": \\"handwriting-studio-model\\", '
        b'\\"format_version\\": 1e999}"}}',
        b'{"__metadata__": {"json": "{\\"format\\": \\"handwriting-studio-model\\", '
        b'\\"format_version\\": 1, \\"kind\\": \\"synthesis\\", \\"config\\": {}}"}}',
        b'{"w": {"dtype": "F32", "shape": [1000000000, 1000000000], "data_offsets": [0, 4]}, '
        b'"__metadata__": {"json": "{\\"format\\": \\"handwriting-studio-model\\", '
        b'\\"format_version\\": 1, \\"kind\\": \\"synthesis\\", \\"config\\": {}}"}}',
    ],
    ids=["deep-header", "deep-metadata", "json-not-str", "meta-list", "header-list",
         "huge-version", "empty-config", "huge-declared-shape"],
)  # fmt: skip
def test_model_file_hostile_headers(tmp_path, header):
    from engine.checkpoint import ModelFileError, load_model

    path = tmp_path / "m.safetensors"
    path.write_bytes(safetensors_with_header(header, b"\x00" * 8))
    with pytest.raises(ModelFileError):
        load_model(path)


def test_model_file_huge_declared_header_is_refused_without_reading(tmp_path):
    from engine.checkpoint import ModelFileError, read_metadata

    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    with pytest.raises(ModelFileError, match="not a Handwriting Studio model"):
        read_metadata(path)


# -- corpus .npz ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus_bytes(tmp_path_factory) -> bytes:
    from engine.data.corpus import Corpus

    rng = np.random.default_rng(0)
    offsets = [rng.normal(size=(12, 3)).astype(np.float32) for _ in range(3)]
    for o in offsets:
        o[:, 2] = 0
    c = Corpus.build(["a", "b", "c"], offsets, ["w1", "w2", "w3"], ["d"] * 3, [False] * 3)
    return c.save(tmp_path_factory.mktemp("c") / "c.npz").read_bytes()


def test_corpus_mutations(tmp_path, corpus_bytes):
    from engine.data.corpus import load_corpus

    @FUZZ
    @given(data=mutated(corpus_bytes))
    def check(data):
        path = tmp_path / "c.npz"
        path.write_bytes(data)
        expect_clean(load_corpus, path)

    check()


def test_corpus_with_pickled_objects_is_refused_and_never_unpickled(tmp_path):
    from engine.data.corpus import load_corpus

    path = tmp_path / "evil.npz"
    marker = tmp_path / "pwned"
    payload = np.array([Boom(str(marker))], dtype=object)
    np.savez(path, xy=payload, eos=payload, lengths=payload, assembled=payload, split=payload,
             meta=payload)  # fmt: skip
    with pytest.raises(DataError):
        load_corpus(path)
    assert not marker.exists()


class Boom:
    """Unpickling this creates a file: proof that a payload ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_unipen_include_cannot_leave_the_distribution(tmp_path):
    secret = tmp_path / "outside.inc"
    secret.write_bytes(UNIPEN_INC)  # valid ink, but outside the UNIPEN root
    root = tmp_path / "unipen"
    root.mkdir()
    dat = UNIPEN_DAT.replace(b"words.inc", b"../../outside.inc")
    records, report = import_unipen(unipen_tree(root, dat, UNIPEN_INC))
    assert records == [] and report.missing_includes == {"../../outside.inc"}
    dat = UNIPEN_DAT.replace(b"words.inc", b"\x00words.inc")
    records, report = import_unipen(unipen_tree(root, dat, UNIPEN_INC))
    assert records == [] and report.missing_includes
