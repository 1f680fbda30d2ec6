"""Build the line corpus from UNIPEN (`handwriting-engine data build-corpus`).

Real text lines (category 8) that hold a single written line, plus lines assembled from the
same writers' word segments (category 7) within a size budget; everything goes through
`engine.data.preprocess`. Reproducible: results are sorted by source, randomness is seeded
by source path, and the split is a hash of the writer id.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from engine.alphabet import PRINTABLE_ASCII
from engine.data.assemble import AssembleConfig, assemble_line, group_words
from engine.data.corpus import Corpus
from engine.data.errors import DataError
from engine.data.ink import InkRecord
from engine.data.preprocess import PreprocessConfig, is_single_line, preprocess_ink
from engine.data.unipen import DEFAULT_DROP_DONORS, ImportReport, UnipenSource, iter_unipen
from engine.strokes import InkError

log = logging.getLogger(__name__)

DEFAULT_SOURCE = Path(__file__).resolve().parents[3] / "shared/data/unipen/train_r01_v07.tar.xz"
_ALLOWED = set(PRINTABLE_ASCII)


@dataclass(frozen=True)
class BuildConfig:
    drop_donors: tuple = DEFAULT_DROP_DONORS
    assembled: bool = True
    assembled_fraction: float = 0.45  # of word groups assembled; the size budget keeps fewer
    max_points: int = 1200  # longer lines are dropped (memory per batch, corpus size)
    max_total_points: int = 7_000_000  # keeps the float16 .npz under ~25 MB
    workers: int = 2
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    assemble: AssembleConfig = field(default_factory=AssembleConfig)


@dataclass
class Line:
    source: str
    text: str
    offsets: np.ndarray
    writer: str
    donor: str
    assembled: bool


def label_ok(text: str) -> bool:
    return bool(text.strip()) and all(c in _ALLOWED for c in text)


def _line(rec: InkRecord, ink, config: BuildConfig, report: ImportReport, assembled=False):
    try:
        offsets = preprocess_ink(ink, config.preprocess)
    except InkError:
        report.skip("unusable ink")
        return None
    if len(offsets) > config.max_points:
        report.skip(f"{'assembled ' if assembled else ''}line over {config.max_points} points")
        return None
    return Line(rec.source, ink.text, offsets.astype(np.float16), rec.writer, rec.donor, assembled)


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big")


def _assembled_lines(words: list[InkRecord], config: BuildConfig, report: ImportReport):
    by_writer: dict[str, list[InkRecord]] = defaultdict(list)
    for w in words:
        by_writer[w.writer].append(w)
    for writer, recs in by_writer.items():
        rng = np.random.default_rng(_seed(recs[0].source + writer))
        for group in group_words([r.ink for r in recs], rng, config.assemble):
            key = recs[0].source + writer + " ".join(w.text for w in group)
            if _seed(key) % 1000 >= config.assembled_fraction * 1000:
                continue
            ink = assemble_line(group, rng, config.assemble)
            rec = InkRecord(ink, writer, recs[0].donor, source=recs[0].source + f"+{ink.text}")
            line = _line(rec, ink, config, report, assembled=True)
            if line:
                yield line


def _shard(args) -> tuple[list[Line], list[Line], ImportReport]:
    source, k, n, config = args
    cpu0 = time.process_time()
    report = ImportReport()
    real, assembled, words, current = [], [], [], None
    for rec in iter_unipen(UnipenSource(source), config.drop_donors, report, (k, n)):
        if not label_ok(rec.ink.text):
            report.skip("label empty or outside printable ASCII")
            continue
        if rec.category == 8:
            if not is_single_line(rec.ink):
                report.skip("multi-line text segment")
                continue
            line = _line(rec, rec.ink, config, report)
            if line:
                real.append(line)
        elif rec.category == 7 and config.assembled:
            file = rec.source.split("#")[0]
            if file != current:
                assembled += _assembled_lines(words, config, report)
                words, current = [], file
            words.append(rec)
    assembled += _assembled_lines(words, config, report)
    report.cpu_seconds = time.process_time() - cpu0
    return real, assembled, report


def build_lines(source, config: BuildConfig = BuildConfig()):
    """(real lines, assembled lines, report) over worker processes."""
    source = Path(source)
    if not source.exists():
        raise DataError(f"UNIPEN source not found: {source}")
    n = max(1, config.workers)
    jobs = [(str(source), k, n, config) for k in range(n)]
    if n == 1:
        results = [_shard(jobs[0])]
    else:
        with ProcessPoolExecutor(n) as pool:
            results = list(pool.map(_shard, jobs))
    report = ImportReport()
    real, assembled = [], []
    for r, a, rep in results:
        real += r
        assembled += a
        report.merge(rep)
    real.sort(key=lambda x: x.source)
    assembled.sort(key=lambda x: _seed(x.source))  # a seeded shuffle, independent of workers
    return real, assembled, report


def build_corpus(source=DEFAULT_SOURCE, config: BuildConfig = BuildConfig()) -> Corpus:
    t0 = time.perf_counter()
    real, assembled, report = build_lines(source, config)
    budget = config.max_total_points - sum(len(x.offsets) for x in real)
    kept = []
    for line in assembled:
        if len(line.offsets) > budget:
            continue
        kept.append(line)
        budget -= len(line.offsets)
    if len(kept) < len(assembled):
        report.skip("assembled line over the corpus size budget", len(assembled) - len(kept))
    lines = real + sorted(kept, key=lambda x: x.source)
    meta = {
        "source": Path(source).name,
        "build": {k: v for k, v in asdict(config).items() if k != "workers"},
        "report": {
            "files": report.files,
            "segments": report.segments,
            "records": report.records,
            "skipped": dict(report.skipped),
            "missing_includes": sorted(report.missing_includes),
        },
        "import_seconds": round(time.perf_counter() - t0, 1),
        "import_cpu_seconds": round(report.cpu_seconds, 1),
    }
    return Corpus.build(
        [x.text for x in lines],
        [x.offsets.astype(np.float32) for x in lines],
        [x.writer for x in lines],
        [x.donor for x in lines],
        [x.assembled for x in lines],
        meta,
    )
