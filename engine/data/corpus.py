"""`Corpus`: preprocessed handwriting lines with labels, writers and a writer-disjoint split.

Stored as one compact .npz (allow_pickle=False): (dx, dy) of all lines concatenated as
float16, end-of-stroke flags, line lengths, split and assembled flags, and a JSON string
with texts, writers, donors, normalisation statistics and provenance.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.alphabet import PRINTABLE_ASCII
from engine.data.errors import DataError, FormatVersionError
from engine.strokes import NormStats

CORPUS_FORMAT = "handwriting-studio-corpus"
CORPUS_VERSION = 1
TRAIN, VALID = 0, 1
VALID_FRACTION = 0.10  # of writers (by a hash of the writer id): ~7% of UNIPEN lines


def writer_split(writer: str, valid_fraction: float = VALID_FRACTION) -> int:
    """Deterministic split of a writer: VALID for ~valid_fraction of writer ids, else TRAIN."""
    h = int.from_bytes(hashlib.sha1(writer.encode("utf-8")).digest()[:4], "big")
    return VALID if h / 2**32 < valid_fraction else TRAIN


def spread(indices, n: int) -> np.ndarray:
    """At most n of `indices`, evenly spaced from the first to the last. A corpus is ordered by
    donor and writer, so its first n validation lines are a handful of writers: the bundled
    run's first 96 scored -890 nats/sequence where the whole split scores -1,825."""
    indices = np.asarray(indices)
    if n >= len(indices):
        return indices
    return indices[np.unique(np.linspace(0, len(indices) - 1, max(n, 1)).round().astype(int))]


def char_coverage(texts: list[str]) -> dict[str, int]:
    """Count of every printable ASCII character over the texts (absent ones as 0)."""
    counts = Counter("".join(texts))
    return {c: counts.get(c, 0) for c in PRINTABLE_ASCII}


@dataclass
class Corpus:
    texts: list[str]
    offsets: list[np.ndarray]  # float32 (T, 3) each: preprocessed, NOT normalised
    writers: list[str]
    donors: list[str]
    assembled: np.ndarray  # bool (N,): line assembled from word segments
    split: np.ndarray  # uint8 (N,): TRAIN = 0, VALID = 1
    norm: NormStats = field(default_factory=NormStats)
    meta: dict = field(default_factory=dict)  # provenance, import report, preprocessing

    def __post_init__(self):
        n = len(self.texts)
        self.assembled = np.asarray(self.assembled, dtype=bool).reshape(-1)
        self.split = np.asarray(self.split, dtype=np.uint8).reshape(-1)
        sizes = {len(self.offsets), len(self.writers), len(self.donors)}
        sizes |= {len(self.assembled), len(self.split)}
        if sizes != {n}:
            raise DataError(f"corpus fields disagree in length: {sorted(sizes)} vs {n} texts")
        for i, o in enumerate(self.offsets):
            if o.ndim != 2 or o.shape[1] != 3 or len(o) == 0:
                raise DataError(f"line {i}: offsets must be non-empty (T, 3), got {o.shape}")

    def __len__(self) -> int:
        return len(self.texts)

    @classmethod
    def build(cls, texts, offsets, writers, donors, assembled, meta=None, split=None) -> Corpus:
        """Fit NormStats on the training lines. `split` per line (TRAIN/VALID, or -1 for
        "unassigned") defaults to the writer-disjoint hash split."""
        hashed = np.array([writer_split(w) for w in writers], dtype=np.int64)
        if split is not None:
            split = np.asarray(split, dtype=np.int64)
            hashed = np.where(split >= 0, split, hashed)
        corpus = cls(
            list(texts),
            [np.asarray(o, np.float32) for o in offsets],
            list(writers),
            list(donors),
            np.asarray(assembled, bool),
            hashed.astype(np.uint8),
            NormStats(),
            dict(meta or {}),
        )
        train = [o for o, s in zip(corpus.offsets, corpus.split) if s == TRAIN]
        train = train or corpus.offsets
        corpus.norm = NormStats.fit(train) if train else NormStats()
        corpus.meta["coverage"] = char_coverage(corpus.texts)
        return corpus

    def subset(self, split: int | None = None, assembled: bool | None = None) -> Corpus:
        """Lines of one split (TRAIN/VALID) and/or only (non-)assembled ones; same norm."""
        keep = np.ones(len(self), bool)
        if split is not None:
            keep &= self.split == split
        if assembled is not None:
            keep &= self.assembled == assembled
        idx = np.flatnonzero(keep)
        return Corpus(
            [self.texts[i] for i in idx],
            [self.offsets[i] for i in idx],
            [self.writers[i] for i in idx],
            [self.donors[i] for i in idx],
            self.assembled[idx],
            self.split[idx],
            self.norm,
            dict(self.meta),
        )

    def train(self) -> Corpus:
        return self.subset(TRAIN)

    def valid(self) -> Corpus:
        return self.subset(VALID)

    def save(self, path) -> Path:
        path = Path(path)
        lengths = np.array([len(o) for o in self.offsets], dtype=np.int32)
        cat = np.concatenate(self.offsets) if len(self) else np.zeros((0, 3), np.float32)
        meta = dict(
            self.meta,
            format=CORPUS_FORMAT,
            version=CORPUS_VERSION,
            texts=self.texts,
            writers=self.writers,
            donors=self.donors,
            norm=self.norm.to_dict(),
        )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as f:
                np.savez_compressed(
                    f,
                    xy=cat[:, :2].astype(np.float16),
                    eos=cat[:, 2] > 0.5,
                    lengths=lengths,
                    assembled=self.assembled,
                    split=self.split,
                    meta=np.array(json.dumps(meta, separators=(",", ":"))),
                )
        except OSError as exc:
            raise DataError(f"cannot write corpus {path}: {exc}") from None
        return path


_KEYS = ("xy", "eos", "lengths", "assembled", "split", "meta")


def load_corpus(path) -> Corpus:
    """Read a corpus written by `Corpus.save` (never unpickles anything)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"corpus file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _KEYS if k not in z.files]
            if missing:
                raise DataError(f"{path} is not a corpus file (missing {', '.join(missing)})")
            arrays = {k: z[k] for k in _KEYS}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read corpus {path}: {exc}") from None
    except (NotImplementedError, RuntimeError) as exc:  # zip: unknown compression, encrypted
        raise DataError(f"cannot read corpus {path}: {exc}") from None
    try:
        meta = json.loads(str(arrays["meta"]))
    except ValueError as exc:
        raise DataError(f"{path}: corrupt corpus metadata ({exc})") from None
    if meta.get("format") != CORPUS_FORMAT:
        raise DataError(f"{path} is not a handwriting-studio corpus")
    if meta.get("version", 0) > CORPUS_VERSION:
        raise FormatVersionError(
            f"{path}: corpus version {meta.get('version')} is newer than "
            f"this program reads ({CORPUS_VERSION}); update the program"
        )
    lengths = arrays["lengths"].astype(np.int64)
    xy, eos = arrays["xy"], arrays["eos"]
    if lengths.sum() != len(xy) or len(eos) != len(xy) or (lengths <= 0).any():
        raise DataError(f"{path}: corrupt corpus (line lengths do not match the offsets)")
    cat = np.empty((len(xy), 3), np.float32)
    cat[:, :2] = xy
    cat[:, 2] = eos
    offsets = np.split(cat, np.cumsum(lengths)[:-1]) if len(lengths) else []
    texts, writers, donors = meta.pop("texts"), meta.pop("writers"), meta.pop("donors")
    try:
        norm = NormStats.from_dict(meta.pop("norm"))
    except (KeyError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: bad normalisation statistics ({exc})") from None
    for key in ("format", "version"):
        meta.pop(key, None)
    return Corpus(
        texts, list(offsets), writers, donors, arrays["assembled"], arrays["split"], norm, meta
    )
