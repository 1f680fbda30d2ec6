"""W3C InkML import and export (https://www.w3.org/TR/InkML/).

Reads traces with the channels of the document's traceFormat (X, Y, optional T and F),
comma-separated points with the difference-encoding prefixes of the spec: ``!`` explicit
value, ``'`` first difference (velocity), ``"`` second difference (acceleration); a prefix
holds for the following values until another one appears. traceGroups are flattened in
document order; an annotation type="truth" gives the text. Export writes X Y [T] [F] traces
with explicit values, so exported ink re-imports identically.
"""

from __future__ import annotations

import re
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from engine.data.errors import DataError
from engine.data.ink import Ink, InkRecord
from engine.data.unipen import ImportReport
from engine.data.xmlsafe import local, parse_xml_bytes, parse_xml_file

INKML_NS = "http://www.w3.org/2003/InkML"
_TOKEN = re.compile(r"""([!'"]?)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[TF*?])""")


def _channels(root) -> list[str]:
    for el in root.iter():
        if local(el.tag) == "traceFormat":
            names = [c.get("name", "").upper() for c in el if local(c.tag) == "channel"]
            if names:
                return names
    return ["X", "Y"]


def _decode_point(text: str, state: list[str], ncols: int) -> list[str | tuple[str, float]]:
    """Tokens of one point with their prefix (the prefix carries over per channel)."""
    values = []
    for prefix, token in _TOKEN.findall(text):
        col = len(values)
        if col >= ncols:
            break
        if prefix:
            state[col] = prefix
        values.append((state[col], token))
    return values


def parse_trace(text: str, ncols: int) -> np.ndarray:
    """A <trace> body -> (n, ncols) float64, undoing the ! ' " difference encodings."""
    state = ["!"] * ncols
    rows, vel, prev = [], np.zeros(ncols), np.zeros(ncols)
    for chunk in text.split(","):
        if not chunk.strip():
            continue
        tokens = _decode_point(chunk, state, ncols)
        if len(tokens) < min(ncols, 2):
            raise DataError(f"trace point {chunk.strip()!r} has fewer than 2 values")
        row = prev.copy()
        for col, (mode, token) in enumerate(tokens):
            try:
                v = float(token)
            except ValueError:
                raise DataError(f"trace value {token!r} is not a number") from None
            if mode == "!":
                vel[col], row[col] = (v - prev[col]) if rows else 0.0, v
            elif mode == "'":
                vel[col] = v
                row[col] = prev[col] + v
            else:  # '"': second difference
                vel[col] += v
                row[col] = prev[col] + vel[col]
        rows.append(row)
        prev = row
    if not rows:
        raise DataError("empty trace")
    return np.array(rows)


def _truth(el) -> str:
    for a in el:
        if local(a.tag) == "annotation" and a.get("type") == "truth":
            return (a.text or "").strip()
    return ""


def ink_from_inkml(root, where: str = "InkML") -> Ink:
    if local(root.tag) != "ink":
        raise DataError(f"{where}: root element is <{local(root.tag)}>, expected <ink>")
    channels = _channels(root)
    if channels[:2] != ["X", "Y"]:
        raise DataError(f"{where}: traceFormat must start with channels X, Y (got {channels})")
    col = {c: i for i, c in enumerate(channels)}
    strokes, times, force = [], [], []
    for tr in root.iter():
        if local(tr.tag) != "trace":
            continue
        try:
            arr = parse_trace(tr.text or "", len(channels))
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None
        strokes.append(arr[:, :2])
        times.append(arr[:, col["T"]] if "T" in col else None)
        force.append(arr[:, col["F"]] if "F" in col else None)
    if not strokes:
        raise DataError(f"{where}: no traces")
    text = _truth(root)
    if not text:
        groups = [g for g in root.iter() if local(g.tag) == "traceGroup"]
        text = next((t for t in map(_truth, groups) if t), "")
    return Ink(text, strokes, times if "T" in col else None, force if "F" in col else None)


def read_inkml(path) -> Ink:
    return ink_from_inkml(parse_xml_file(path), str(path))


def loads_inkml(data: bytes | str) -> Ink:
    data = data.encode("utf-8") if isinstance(data, str) else data
    return ink_from_inkml(parse_xml_bytes(data))


def _fmt(v: float) -> str:
    return repr(float(v))  # shortest text that parses back to the same float


def dumps_inkml(ink: Ink) -> str:
    has_t, has_f = ink.times is not None, ink.pressure is not None
    channels = ["X", "Y"] + (["T"] if has_t else []) + (["F"] if has_f else [])
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', f'<ink xmlns="{INKML_NS}">']
    lines.append(f'  <annotation type="truth">{escape(ink.text)}</annotation>')
    lines.append("  <traceFormat>")
    lines += [f'    <channel name={quoteattr(c)} type="decimal"/>' for c in channels]
    lines.append("  </traceFormat>")
    for i, s in enumerate(ink.strokes):
        cols = [s[:, 0], s[:, 1]]
        for present, values in ((has_t, ink.times), (has_f, ink.pressure)):
            if present:
                v = values[i]
                cols.append(np.full(len(s), np.nan) if v is None else v)
        if any(np.isnan(c).any() for c in cols):
            raise DataError(f"stroke {i} lacks time or pressure that other strokes have")
        pts = ", ".join(" ".join(_fmt(c[k]) for c in cols) for k in range(len(s)))
        lines.append(f"  <trace>{pts}</trace>")
    lines.append("</ink>")
    return "\n".join(lines) + "\n"


def write_inkml(ink: Ink, path) -> Path:
    path = Path(path)
    try:
        path.write_text(dumps_inkml(ink), encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def read_inkml_files(paths, report: ImportReport | None = None) -> list[InkRecord]:
    """Records for every readable file; unreadable ones are counted in `report`."""
    report = report if report is not None else ImportReport()
    records = []
    for p in paths:
        report.files += 1
        try:
            ink = read_inkml(p)
        except DataError:
            report.skip("unreadable InkML file")
            continue
        records.append(InkRecord(ink, writer=str(Path(p).stem), donor="inkml", source=str(p)))
        report.records += 1
    return records
