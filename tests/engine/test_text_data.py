"""Vocabularies, streaming file access and the parallel-stream batcher of the text model."""

from __future__ import annotations

import numpy as np
import pytest

from engine import text_data
from engine.text_data import (
    StreamBatcher,
    TextDataError,
    UnknownSymbolsError,
    Vocab,
    build_char_vocab,
    encode_file,
    split_point,
)

MIXED = "Ἀθῆναι — 東京都 🦉🚀 naïve café\n"


def test_bytes_round_trip_non_ascii():
    v = Vocab("bytes")
    ids, unknown = v.encode(MIXED)
    assert v.size == 256 and not unknown
    assert len(ids) == len(MIXED.encode("utf-8")) > len(MIXED)
    assert v.decode(ids) == MIXED


def test_bytes_stream_decoder_holds_partial_characters():
    d = Vocab("bytes").decoder()
    pieces = [d.feed(b) for b in "🦉".encode()]
    assert pieces == ["", "", "", "🦉"]  # nothing until the 4-byte character completes
    assert d.feed(0xFF) == "\ufffd"  # invalid byte: replacement, not an exception
    assert d.feed(0xE6) == "" and d.flush() == "\ufffd"  # dangling lead byte at the end


def test_char_vocab_unknown_map_is_counted():
    v = Vocab("char", "abc ", "map")
    ids, unknown = v.encode("ab xyx c")
    assert v.size == 5 and v.unknown_index == 4
    assert list(ids) == [0, 1, 3, 4, 4, 4, 3, 2]
    assert unknown == {"x": 2, "y": 1}
    assert v.decode(ids) == "ab \ufffd\ufffd\ufffd c"


def test_char_vocab_unknown_error_names_position():
    v = Vocab("char", "abc", "error")
    assert v.size == 3
    with pytest.raises(UnknownSymbolsError, match="first at character 2"):
        v.encode("abzc")


def test_vocab_validation_and_dict_round_trip():
    with pytest.raises(TextDataError, match="'bytes' or 'char'"):
        Vocab("words")
    with pytest.raises(TextDataError, match="unique"):
        Vocab("char", "aa")
    v = Vocab("char", "xyz", "error")
    assert Vocab.from_dict(v.to_dict()) == v


def test_streaming_vocab_and_encoding_match_in_memory(tmp_path, monkeypatch):
    # a few MB with multi-byte characters; a tiny chunk size forces characters to straddle
    # chunk boundaries, which the incremental decoder must reassemble
    rng = np.random.default_rng(0)
    words = ["the", "cat", "Ἀθῆναι", "東京", "🦉", "naïve", "\n"]
    text = " ".join(rng.choice(words, 600_000))
    path = tmp_path / "big.txt"
    path.write_text(text, encoding="utf-8")
    assert path.stat().st_size > 3_000_000
    monkeypatch.setattr(text_data, "CHUNK_BYTES", 4099)
    seen = []
    vocab, counts = build_char_vocab(path, progress=lambda d, t: seen.append((d, t)))
    assert set(vocab.symbols) == set(text) and sum(counts.values()) == len(text)
    assert seen[-1][0] == seen[-1][1] == path.stat().st_size and len(seen) > 100
    enc = encode_file(path, vocab, cache=tmp_path / "ids.u16")
    assert isinstance(enc.ids, np.memmap)
    np.testing.assert_array_equal(enc.ids, vocab.encode(text)[0])
    b = encode_file(path, Vocab("bytes"), start=10, stop=2_000_010)
    assert isinstance(b.ids, np.memmap) and len(b) == 2_000_000
    assert bytes(b.ids[:50]) == text.encode()[10:60]


def test_split_point_respects_character_boundaries(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("🦉" * 10, encoding="utf-8")  # 40 bytes
    cut = split_point(path, 0.1 + 1 / 80)  # byte 35: mid-character -> moves to 36
    assert cut == 36
    assert path.read_bytes()[cut:].decode("utf-8") == "🦉"
    with pytest.raises(TextDataError, match="fraction"):
        split_point(path, 1.5)


def test_invalid_utf8_for_char_vocab_is_a_clear_error(tmp_path):
    path = tmp_path / "bin.txt"
    path.write_bytes(b"hello \xff\xfe world")
    with pytest.raises(TextDataError, match="not valid UTF-8 near byte 6.*--vocab bytes"):
        build_char_vocab(path)
    with pytest.raises(TextDataError, match="no text file"):
        build_char_vocab(tmp_path / "missing.txt")


def test_batcher_streams_are_contiguous_consecutive_and_reset():
    ids = np.arange(1000)
    b = StreamBatcher(ids, batch=4, seq_len=10, reset_every=3)
    assert b.stream_len == 250 and b.per_epoch == 24
    x0, y0, r0 = b.get(0)
    x1, y1, r1 = b.get(1)
    np.testing.assert_array_equal(x0[:, 0], [0, 250, 500, 750])  # B contiguous slices
    np.testing.assert_array_equal(y0, x0 + 1)  # next-symbol targets
    np.testing.assert_array_equal(x1[:, 0], x0[:, -1] + 1)  # sequence 1 continues sequence 0
    assert (r0, r1, b.get(2)[2], b.get(3)[2]) == (True, False, False, True)
    assert b.get(24)[2] and b.get(24)[0][0, 0] == 0  # epoch wraps to the start, state reset
    with pytest.raises(TextDataError, match="too few"):
        StreamBatcher(np.arange(20), batch=4, seq_len=10)
