"""Text as symbol streams for the character-level predictor (Sec. 3).

Two vocabularies:
- bytes: the 256 byte values, as in the paper's Wikipedia experiment (Sec. 3.2). Any UTF-8 text
  works, non-Latin scripts included; decoding goes through an incremental UTF-8 decoder so a
  character split across symbols (or across streamed chunks) comes out whole.
- char: the distinct Unicode characters of the training text (Sec. 3.1 style). Characters the
  vocabulary lacks follow an explicit policy ("error" or "map" to one unknown symbol), and every
  mapping is counted and reported, never silent.

Large files are never read whole: bytes are an np.memmap over the file itself; a character file
is scanned in chunks (vocabulary pass), then encoded once into a uint16/uint32 cache file.
Training batches are B parallel streams over contiguous slices of the text, consecutive
fixed-length sequences, no shuffling (Sec. 3.2).
"""

from __future__ import annotations

import codecs
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine import EngineError

CHUNK_BYTES = 4 * 1024 * 1024  # streaming read size
UNKNOWN_CHAR = "\ufffd"  # how the unknown symbol is displayed when decoded
Progress = Callable[[int, int], None]  # (done_bytes, total_bytes)


class TextDataError(EngineError, ValueError):
    """A text file or vocabulary the text model cannot work with; the message says why."""


class UnknownSymbolsError(TextDataError):
    """Text holds characters outside a char vocabulary whose policy is 'error'."""

    def __init__(self, counts: Counter, first_pos: int):
        self.counts = counts
        shown = ", ".join(f"{c!r} (U+{ord(c):04X}) x{n}" for c, n in counts.most_common(10))
        more = "" if len(counts) <= 10 else f" and {len(counts) - 10} more"
        super().__init__(
            f"the text holds {sum(counts.values())} character(s) outside the model's vocabulary "
            f"(first at character {first_pos}): {shown}{more}. Use a byte-level model, or a "
            "character model trained with --unknown map."
        )


@dataclass(frozen=True)
class Vocab:
    """kind 'bytes' (256 symbols) or 'char' (`symbols`, plus one unknown symbol if 'map')."""

    kind: str = "bytes"
    symbols: str = ""  # char vocab only: the known characters, index = position
    unknown: str = "map"  # char vocab only: 'map' (to one extra symbol) or 'error'

    def __post_init__(self):
        if self.kind not in ("bytes", "char"):
            raise TextDataError(f"vocabulary kind must be 'bytes' or 'char', not {self.kind!r}")
        if self.unknown not in ("map", "error"):
            raise TextDataError(
                f"unknown-symbol policy must be 'map' or 'error', not {self.unknown!r}"
            )
        if self.kind == "char":
            if not self.symbols:
                raise TextDataError("a char vocabulary needs at least one symbol")
            if len(set(self.symbols)) != len(self.symbols):
                raise TextDataError("char vocabulary symbols must be unique")

    @property
    def size(self) -> int:
        if self.kind == "bytes":
            return 256
        return len(self.symbols) + (self.unknown == "map")

    @property
    def unknown_index(self) -> int | None:
        return len(self.symbols) if self.kind == "char" and self.unknown == "map" else None

    @property
    def dtype(self):
        return np.uint8 if self.kind == "bytes" else (np.uint16 if self.size < 65536 else np.uint32)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "symbols": self.symbols, "unknown": self.unknown}

    @classmethod
    def from_dict(cls, d: dict) -> Vocab:
        return cls(d.get("kind", "bytes"), d.get("symbols", ""), d.get("unknown", "map"))

    # -- encoding ----------------------------------------------------------------------------
    def encode(self, text: str, offset: int = 0) -> tuple[np.ndarray, Counter]:
        """text -> (indices, Counter of unknown characters mapped). Raises under 'error'.
        `offset` only shifts the positions named in error messages."""
        if self.kind == "bytes":
            return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy(), Counter()
        lut = _char_lut(self.symbols)
        ids = np.fromiter((lut.get(ch, -1) for ch in text), dtype=np.int64, count=len(text))
        bad = ids < 0
        unknown: Counter = Counter()
        if bad.any():
            unknown = Counter(text[i] for i in np.flatnonzero(bad))
            if self.unknown == "error":
                raise UnknownSymbolsError(unknown, offset + int(np.flatnonzero(bad)[0]))
            ids[bad] = self.unknown_index
        return ids.astype(self.dtype), unknown

    def decoder(self) -> StreamDecoder:
        return StreamDecoder(self)

    def decode(self, ids) -> str:
        d = self.decoder()
        return "".join(d.feed(int(i)) for i in np.asarray(ids).ravel()) + d.flush()


_LUT_CACHE: dict[str, dict[str, int]] = {}


def _char_lut(symbols: str) -> dict[str, int]:
    lut = _LUT_CACHE.get(symbols)
    if lut is None:
        lut = _LUT_CACHE[symbols] = {c: i for i, c in enumerate(symbols)}
    return lut


class StreamDecoder:
    """Symbol indices -> text, one at a time. For bytes an incremental UTF-8 decoder keeps a
    partial multi-byte character until it completes; invalid bytes become U+FFFD."""

    def __init__(self, vocab: Vocab):
        self.vocab = vocab
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, index: int) -> str:
        if self.vocab.kind == "bytes":
            if not 0 <= index < 256:
                raise TextDataError(f"byte symbol {index} is outside 0..255")
            return self._utf8.decode(bytes((index,)))
        if index == self.vocab.unknown_index:
            return UNKNOWN_CHAR
        if not 0 <= index < len(self.vocab.symbols):
            raise TextDataError(f"symbol {index} is outside the vocabulary of {self.vocab.size}")
        return self.vocab.symbols[index]

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True) if self.vocab.kind == "bytes" else ""


# -- files -------------------------------------------------------------------------------------
def check_text_file(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise TextDataError(f"no text file at {path}")
    if not path.is_file():
        raise TextDataError(f"{path} is not a file")
    if path.stat().st_size < 2:
        raise TextDataError(f"{path} holds fewer than 2 bytes: nothing to predict")
    return path


def char_boundary(path, pos: int) -> int:
    """The first byte offset >= pos that starts a UTF-8 character (skips continuation bytes)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        f.seek(pos)
        head = f.read(4)
    for i, b in enumerate(head):
        if b & 0xC0 != 0x80:
            return pos + i
    return min(pos + len(head), size)


def split_point(path, tail: float) -> int:
    """Byte offset where the held-out last `tail` fraction (by bytes) begins."""
    if not 0.0 <= tail < 1.0:
        raise TextDataError(f"the held-out tail must be a fraction in [0, 1), not {tail}")
    size = os.path.getsize(path)
    return size if tail == 0 else char_boundary(path, int(round(size * (1.0 - tail))))


def iter_text_chunks(
    path, start: int = 0, stop: int | None = None, progress: Progress | None = None
) -> Iterator[str]:
    """Decoded text of bytes [start, stop) in chunks; multi-byte characters are never split.
    Invalid UTF-8 is an error that names the byte offset (a char vocabulary needs text)."""
    path = check_text_file(path)
    stop = os.path.getsize(path) if stop is None else stop
    dec = codecs.getincrementaldecoder("utf-8")(errors="strict")
    done = start
    with open(path, "rb") as f:
        f.seek(start)
        while done < stop:
            raw = f.read(min(CHUNK_BYTES, stop - done))
            if not raw:
                break
            try:
                text = dec.decode(raw, final=done + len(raw) >= stop)
            except UnicodeDecodeError as exc:
                raise TextDataError(
                    f"{path} is not valid UTF-8 near byte {done + exc.start}; use --vocab bytes"
                ) from None
            done += len(raw)
            if progress:
                progress(done - start, stop - start)
            if text:
                yield text


def build_char_vocab(
    path, stop: int | None = None, unknown: str = "map", progress: Progress | None = None
) -> tuple[Vocab, Counter]:
    """Streaming pass over bytes [0, stop): the vocabulary (characters sorted by code point)
    and their counts."""
    counts: Counter = Counter()
    for text in iter_text_chunks(path, 0, stop, progress):
        counts.update(text)
    if not counts:
        raise TextDataError(f"{path} holds no text to build a vocabulary from")
    return Vocab("char", "".join(sorted(counts)), unknown), counts


@dataclass
class EncodedText:
    """Symbol indices of a byte range of a file, plus what encoding had to map."""

    ids: np.ndarray  # 1-D, possibly an np.memmap
    unknown: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.ids)


def encode_file(
    path,
    vocab: Vocab,
    start: int = 0,
    stop: int | None = None,
    cache: str | os.PathLike | None = None,
    progress: Progress | None = None,
) -> EncodedText:
    """Indices of bytes [start, stop). Bytes: a memmap view of the file, nothing is read.
    Chars: encoded chunk by chunk, into `cache` (a memmap file) when given, else into memory."""
    path = check_text_file(path)
    size = os.path.getsize(path)
    stop = size if stop is None else stop
    if not 0 <= start < stop <= size:
        raise TextDataError(f"byte range [{start}, {stop}) is empty or outside {path} ({size} B)")
    if vocab.kind == "bytes":
        ids = np.memmap(path, dtype=np.uint8, mode="r", offset=start, shape=(stop - start,))
        if progress:
            progress(stop - start, stop - start)
        return EncodedText(ids)
    unknown: Counter = Counter()
    parts, n = [], 0
    sink = open(cache, "wb") if cache else None  # noqa: SIM115 - closed below
    try:
        for text in iter_text_chunks(path, start, stop, progress):
            ids, bad = vocab.encode(text, offset=n)
            unknown.update(bad)
            n += len(ids)
            if sink:
                sink.write(ids.tobytes())
            else:
                parts.append(ids)
    finally:
        if sink:
            sink.close()
    if cache:
        return EncodedText(np.memmap(cache, dtype=vocab.dtype, mode="r", shape=(n,)), unknown)
    return EncodedText(np.concatenate(parts) if parts else np.zeros(0, vocab.dtype), unknown)


def describe_unknown(unknown: Counter) -> str:
    shown = ", ".join(f"{c!r} x{n}" for c, n in unknown.most_common(8))
    return f"{sum(unknown.values())} character(s) outside the vocabulary mapped to the unknown " + (
        f"symbol: {shown}" + (" ..." if len(unknown) > 8 else "")
    )


# -- batches: B parallel contiguous streams (Sec. 3.2) ----------------------------------------
class StreamBatcher:
    """Consecutive fixed-length sequences from B parallel streams over contiguous slices.

    Stream b reads ids[b*L : (b+1)*L]; sequence k of an epoch is positions [kT, kT+T] of each
    stream (T inputs and T targets, overlapping by one). The position is a single integer
    (sequences done since the start of training), so training resumes exactly where it left off.
    The recurrent state carries across sequences and is reset at the start of every
    `reset_every`-th sequence and at each epoch start.
    """

    def __init__(self, ids: np.ndarray, batch: int, seq_len: int, reset_every: int = 100):
        if batch < 1 or seq_len < 1 or reset_every < 1:
            raise TextDataError("batch, seq_len and reset_every must all be >= 1")
        self.ids, self.batch, self.seq_len, self.reset_every = ids, batch, seq_len, reset_every
        self.stream_len = len(ids) // batch
        self.per_epoch = (self.stream_len - 1) // seq_len
        if self.per_epoch < 1:
            raise TextDataError(
                f"{len(ids)} symbols are too few for {batch} streams of sequences of {seq_len}; "
                f"need at least {batch * (seq_len + 1)}"
            )

    def get(self, position: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """(inputs (B, T), targets (B, T) int64, reset_state_before) for sequence `position`."""
        k = position % self.per_epoch
        s = np.arange(self.batch)[:, None] * self.stream_len + k * self.seq_len
        window = np.asarray(self.ids[(s + np.arange(self.seq_len + 1)).ravel()], dtype=np.int64)
        window = window.reshape(self.batch, self.seq_len + 1)
        reset = k == 0 or position % self.reset_every == 0
        return window[:, :-1], window[:, 1:], reset

    def epoch(self, position: int) -> float:
        return position / self.per_epoch
