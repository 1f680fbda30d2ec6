"""Turn imported `InkRecord`s (IAM-OnDB, InkML, native ink) into a `Corpus`."""

from __future__ import annotations

from engine.data.build_corpus import label_ok
from engine.data.corpus import TRAIN, VALID, Corpus
from engine.data.ink import InkRecord
from engine.data.preprocess import PreprocessConfig, is_single_line, preprocess_ink
from engine.data.unipen import ImportReport
from engine.strokes import InkError


def corpus_from_records(
    records: list[InkRecord],
    report: ImportReport | None = None,
    config: PreprocessConfig = PreprocessConfig(),
    max_points: int = 1200,
) -> Corpus:
    """Single-line, printable-ASCII records, preprocessed; skips are counted in `report`.

    A record's own split ("train"/"valid", e.g. IAM-OnDB's set files) is kept; records
    without one get the writer-hash split."""
    report = report if report is not None else ImportReport()
    texts, offsets, writers, donors, split = [], [], [], [], []
    for rec in records:
        if not label_ok(rec.ink.text):
            report.skip("label empty or outside printable ASCII")
            continue
        if not is_single_line(rec.ink):
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
        split.append({"valid": VALID, "train": TRAIN}.get(rec.split, -1))
    meta = {"report": {"skipped": dict(report.skipped), "records": len(records)}}
    return Corpus.build(texts, offsets, writers, donors, [False] * len(texts), meta, split)
