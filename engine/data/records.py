"""Turn imported `InkRecord`s (IAM-OnDB, InkML, native ink) into a `Corpus`."""

from __future__ import annotations

from engine.data.build_corpus import label_ok
from engine.data.corpus import Corpus
from engine.data.ink import InkRecord
from engine.data.preprocess import PreprocessConfig, count_lines, preprocess_ink
from engine.data.unipen import ImportReport
from engine.strokes import InkError


def corpus_from_records(
    records: list[InkRecord],
    report: ImportReport | None = None,
    config: PreprocessConfig = PreprocessConfig(),
    max_points: int = 1200,
) -> Corpus:
    """Single-line, printable-ASCII records, preprocessed; skips are counted in `report`."""
    report = report if report is not None else ImportReport()
    texts, offsets, writers, donors = [], [], [], []
    for rec in records:
        if not label_ok(rec.ink.text):
            report.skip("label empty or outside printable ASCII")
            continue
        if count_lines(rec.ink.strokes) > 1:
            report.skip("multi-line ink")
            continue
        try:
            o = preprocess_ink(rec.ink, config)
        except InkError:
            report.skip("unusable ink")
            continue
        if len(o) > max_points:
            report.skip(f"line over {max_points} points")
            continue
        texts.append(rec.ink.text)
        offsets.append(o)
        writers.append(rec.writer or rec.source)
        donors.append(rec.donor)
    meta = {"report": {"skipped": dict(report.skipped), "records": len(records)}}
    return Corpus.build(texts, offsets, writers, donors, [False] * len(texts), meta)
