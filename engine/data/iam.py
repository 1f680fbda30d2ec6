"""IAM-OnDB importer for a user's own copy (the paper's data, Sec. 4).

Layout: lineStrokes-all/a01/a01-000/a01-000u-01.xml (StrokeSet/Stroke/Point x y time, y
already grows down) and ascii-all/a01/a01-000/a01-000u.txt (the text lines after "CSR:",
blank lines dropped). The k-th text line belongs to the k-th stroke file of the form in
sorted order: the numbers in the file names are not trusted (some forms start at 00).
trainset.txt / testset_v.txt / testset_t.txt / testset_f.txt, when present, give the split.
IAM-OnDB records carry no writer id here; the form id stands in for it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from engine.data.errors import DataError
from engine.data.ink import Ink, InkRecord
from engine.data.unipen import ImportReport
from engine.data.xmlsafe import local, parse_xml_file

log = logging.getLogger(__name__)

SPLIT_FILES = {
    "trainset.txt": "train",
    "testset_v.txt": "valid",  # the smaller validation set: early stopping in the paper
    "testset_t.txt": "train",  # the paper trained on the larger validation set ...
    "testset_f.txt": "train",  # ... and on the test set too
}
MAX_TEXT_BYTES = 1024 * 1024


def read_transcription(path: Path) -> list[str]:
    """Text lines after the 'CSR:' line, blank lines dropped."""
    try:
        if path.stat().st_size > MAX_TEXT_BYTES:
            raise DataError(f"{path}: transcription over {MAX_TEXT_BYTES} bytes")
        text = path.read_text(encoding="latin-1")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "CSR:":
            return [x.strip() for x in lines[i + 1 :] if x.strip()]
    raise DataError(f"{path}: no 'CSR:' line, not an IAM-OnDB transcription")


def read_stroke_file(path: Path, text: str = "") -> Ink:
    root = parse_xml_file(path)
    sets = [e for e in root.iter() if local(e.tag) == "StrokeSet"]
    if not sets:
        raise DataError(f"{path}: no StrokeSet element")
    strokes, times = [], []
    for stroke in sets[0]:
        if local(stroke.tag) != "Stroke":
            continue
        try:
            pts = [
                (float(p.get("x")), float(p.get("y")), float(p.get("time", "nan")))
                for p in stroke
                if local(p.tag) == "Point"
            ]
        except (TypeError, ValueError):
            raise DataError(f"{path}: a Point lacks a numeric x, y or time") from None
        if pts:
            arr = np.array(pts)
            strokes.append(arr[:, :2])
            times.append(arr[:, 2] if np.isfinite(arr[:, 2]).all() else None)
    if not strokes:
        raise DataError(f"{path}: no points")
    return Ink(text, strokes, times if any(t is not None for t in times) else None)


def read_splits(root: Path) -> dict[str, str]:
    """form or line id -> split name, from the split files found under root."""
    out = {}
    for name, split in SPLIT_FILES.items():
        for path in [root / name, *root.glob(f"*/{name}")]:
            if path.is_file():
                for line in path.read_text(encoding="latin-1").split():
                    out[line.strip()] = split
    return out


def read_iam(root, report: ImportReport | None = None) -> list[InkRecord]:
    """All readable lines of an IAM-OnDB copy; unreadable pieces are counted in `report`."""
    root = Path(root)
    strokes_dir, ascii_dir = root / "lineStrokes-all", root / "ascii-all"
    for d in (strokes_dir, ascii_dir):
        if not d.is_dir():
            raise DataError(f"{root} is not an IAM-OnDB copy: {d.name}/ is missing")
    report = report if report is not None else ImportReport()
    splits = read_splits(root)
    records = []
    for txt in sorted(ascii_dir.rglob("*.txt")):
        form = txt.stem
        report.files += 1
        try:
            texts = read_transcription(txt)
        except DataError as exc:
            log.info("%s", exc)
            report.skip("unreadable transcription")
            continue
        rel = txt.parent.relative_to(ascii_dir)
        files = sorted((strokes_dir / rel).glob(f"{form}-*.xml"))
        if len(files) != len(texts):
            report.skip("form with text/stroke line count mismatch")
            continue
        for path, text in zip(files, texts):
            report.segments += 1
            try:
                ink = read_stroke_file(path, text)
            except DataError as exc:
                log.info("%s", exc)
                report.skip("unreadable stroke file")
                continue
            split = splits.get(path.stem) or splits.get(form) or ""
            records.append(InkRecord(ink, form, "iam", "", str(path), 8, split))
            report.records += 1
    return records
