"""UNIPEN importer: the train_r01_v07 distribution, read from its directory or its .tar.xz.

`data/<cat>/<donor>/.../*.dat` files hold `.SEGMENT` labels and `.INCLUDE` the ink from
`include/...`. Components are numbered from 0 in file order after resolving includes: every
`.PEN_DOWN` block is a component, a `.PEN_UP` block only when it carries (hover) points.
Only pen-down components are drawn. UNIPEN's y grows up; we flip it to screen coordinates.
Unreadable pieces are skipped and counted in an `ImportReport`, never raised.
"""

from __future__ import annotations

import logging
import re
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from engine.data.errors import DataError
from engine.data.ink import Ink, InkRecord

log = logging.getLogger(__name__)

DEFAULT_DROP_DONORS = ("lex", "abm")  # labels badly misaligned with the ink (data README)
CATEGORY_LEVEL = {7: "WORD", 8: "TEXT"}
MAX_INCLUDE_DEPTH = 8

_SEGMENT = re.compile(r'\.SEGMENT\s+(\S+)\s+([0-9,\-:]+)\s*([^"\s]*)\s*"(.*)"', re.S)
_BLOCK_START = re.compile(r"^(?=\.[A-Z_])", re.M)


@dataclass
class ImportReport:
    """What an import read and what it skipped (reason -> count)."""

    files: int = 0
    segments: int = 0
    records: int = 0
    skipped: Counter = field(default_factory=Counter)
    missing_includes: set = field(default_factory=set)
    cpu_seconds: float = 0.0

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] += n

    def merge(self, other: ImportReport) -> None:
        self.files += other.files
        self.segments += other.segments
        self.records += other.records
        self.skipped.update(other.skipped)
        self.missing_includes |= other.missing_includes
        self.cpu_seconds += other.cpu_seconds

    def summary(self) -> str:
        lines = [f"files {self.files}, segments {self.segments}, records {self.records}"]
        lines += [f"  skipped {n:6d}  {why}" for why, n in self.skipped.most_common()]
        if self.missing_includes:
            lines.append("  missing includes: " + ", ".join(sorted(self.missing_includes)))
        return "\n".join(lines)


class UnipenSource:
    """Files of a UNIPEN distribution by path relative to its root (holding data/, include/)."""

    def __init__(self, path, categories=(7, 8)):
        self.path = Path(path)
        self.categories = tuple(categories)
        if not self.path.exists():
            raise DataError(f"UNIPEN source not found: {self.path}")
        self._files: dict[str, bytes] | None = None
        self._root: Path | None = None
        if self.path.is_dir():
            self._root = self._find_root_dir(self.path)
        elif tarfile.is_tarfile(self.path):
            self._files = self._read_tar(self.path)
        else:
            raise DataError(f"{self.path} is neither a directory nor a tar archive of UNIPEN data")

    @staticmethod
    def _find_root_dir(path: Path) -> Path:
        for cand in [path, *sorted(p for p in path.iterdir() if p.is_dir())]:
            if (cand / "data").is_dir() and (cand / "include").is_dir():
                return cand
        raise DataError(f"{path} has no data/ and include/ folders: not a UNIPEN distribution")

    def _read_tar(self, path: Path) -> dict[str, bytes]:
        wanted = tuple(f"data/{c}/" for c in self.categories) + ("include/",)
        files: dict[str, bytes] = {}
        try:
            with tarfile.open(path) as tar:
                for m in tar:
                    if not m.isfile():
                        continue
                    parts = m.name.split("/")
                    # strip the top folder (train_r01_v07/) when there is one
                    rel = "/".join(parts[1:]) if parts[0] not in ("data", "include") else m.name
                    if rel.startswith(wanted):
                        f = tar.extractfile(m)
                        if f is not None:
                            files[rel] = f.read()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataError(f"cannot read UNIPEN archive {path}: {exc}") from None
        if not any(k.startswith("data/") for k in files):
            raise DataError(f"{path} holds no UNIPEN data/ files for categories {self.categories}")
        return files

    def read(self, rel: str) -> bytes | None:
        if self._files is not None:
            return self._files.get(rel)
        p = self._root / rel
        try:
            if not p.resolve().is_relative_to(self._root.resolve()):
                return None  # an .INCLUDE of ../../somewhere may not leave the distribution
            return p.read_bytes()
        except (OSError, ValueError):  # ValueError: a NUL byte in the included name
            return None

    def data_files(self) -> list[str]:
        """Sorted data/*.dat paths of the chosen categories."""
        if self._files is not None:
            names = [k for k in self._files if k.startswith("data/")]
        else:
            names = [
                str(p.relative_to(self._root)).replace("\\", "/")
                for c in self.categories
                for p in (self._root / "data" / str(c)).rglob("*")
                if p.is_file()
            ]
        return sorted(n for n in names if n.lower().endswith(".dat"))


@dataclass
class _State:
    channels: tuple = ("X", "Y")
    pps: float = 0.0
    ppi: tuple = (0.0, 0.0)
    writer: str = ""
    style: str = ""
    # (points (n, 2) as X, Y | why they are unusable, pen_down, writer, style)
    components: list = field(default_factory=list)
    segments: list = field(default_factory=list)  # (level, refs, quality, label)
    missing: list = field(default_factory=list)


def _parse_points(body: str, ncols: int) -> np.ndarray | None:
    """Rows of numbers -> (n, ncols); rows with extra columns are cut, short rows refused."""
    try:
        values = np.array(body.split(), dtype=np.float64)
        if values.size % ncols == 0:
            return values.reshape(-1, ncols)
    except ValueError:
        pass
    rows = [r.split() for r in body.splitlines() if r.strip()]
    if any(len(r) < ncols for r in rows):
        return None
    try:
        return np.array([r[:ncols] for r in rows], dtype=np.float64).reshape(-1, ncols)
    except ValueError:
        return None


def _xy_columns(pts: np.ndarray, channels: tuple) -> np.ndarray | str:
    """The X and Y columns of a pen block, in that order, or why there are none."""
    if "X" not in channels or "Y" not in channels:
        return ".COORD names no X and Y channels"
    return pts[:, [channels.index("X"), channels.index("Y")]]


def _parse_text(text: str, source: UnipenSource, state: _State, depth: int) -> None:
    for block in _BLOCK_START.split(text):
        if not block.startswith("."):
            continue
        head, _, body = block.partition("\n")
        keyword, arg = (head.split(None, 1) + [""])[:2]
        arg = arg.strip()
        if keyword in (".PEN_DOWN", ".PEN_UP"):
            body = arg + "\n" + body
            raw = _parse_points(body, len(state.channels)) if body.strip() else None
            if keyword == ".PEN_DOWN" or (raw is not None and len(raw)):
                pts = _xy_columns(raw, state.channels) if raw is not None else None
                pts = "unreadable pen-down block" if pts is None else pts
                state.components.append((pts, keyword == ".PEN_DOWN", state.writer, state.style))
        elif keyword == ".INCLUDE":
            _include(arg.split()[0] if arg else "", source, state, depth + 1)
        elif keyword == ".SEGMENT":
            state.segments.append(block)
        elif keyword == ".COORD":
            state.channels = tuple(arg.split()) or ("X", "Y")
        elif keyword == ".POINTS_PER_SECOND":
            state.pps = _number(arg)
        elif keyword == ".X_POINTS_PER_INCH":
            state.ppi = (_number(arg), state.ppi[1])
        elif keyword == ".Y_POINTS_PER_INCH":
            state.ppi = (state.ppi[0], _number(arg))
        elif keyword == ".WRITER_ID":
            state.writer = arg.split()[0] if arg else ""
        elif keyword == ".STYLE":
            state.style = arg.split()[0] if arg else ""


def _number(s: str) -> float:
    try:
        return float(s.split()[0])
    except (ValueError, IndexError):
        return 0.0


def _include(rel: str, source: UnipenSource, state: _State, depth: int) -> None:
    path = "include/" + str(PurePosixPath(rel))
    data = source.read(path) if rel and depth <= MAX_INCLUDE_DEPTH else None
    if data is None:
        state.missing.append(rel or "(empty .INCLUDE)")
        return
    _parse_text(data.decode("latin-1"), source, state, depth)


def parse_refs(refs: str) -> list[int] | None:
    """'3-7,9' -> [3, 4, 5, 6, 7, 9]; None for point sub-ranges ('n:m') or nonsense."""
    if ":" in refs:
        return None
    out: list[int] = []
    for part in refs.split(","):
        a, dash, b = part.partition("-")
        if not a.isdigit() or (dash and not b.isdigit()):
            return None
        lo, hi = int(a), int(b) if dash else int(a)
        if hi < lo or hi - lo > 100_000:
            return None
        out.extend(range(lo, hi + 1))
    return out


_ESCAPE = re.compile(r"\\(.)")
# \" and \\ are escaped characters; \@ marks character boundaries (donor kai) and goes
_UNESCAPED = {"@": ""}


def unescape_label(label: str) -> str:
    return _ESCAPE.sub(lambda m: _UNESCAPED.get(m.group(1), m.group(1)), label).strip()


def _segment_ink(state: _State, idx: list[int], label: str) -> tuple[Ink | None, str]:
    comps = state.components
    if idx[-1] >= len(comps) or max(idx) >= len(comps):
        return None, "component reference beyond the ink"
    strokes, times, t0 = [], [], 0.0
    for i in idx:
        pts, down, _, _ = comps[i]
        if not down:
            continue
        if isinstance(pts, str):
            return None, pts
        if not len(pts):
            continue
        # UNIPEN y grows up: flip to screen coordinates (y down)
        strokes.append(np.column_stack([pts[:, 0], -pts[:, 1]]))
        if state.pps > 0:
            times.append(t0 + np.arange(len(pts)) / state.pps)
            t0 = times[-1][-1] + 1.0 / state.pps
    if not strokes:
        return None, "no pen-down ink"
    device = {"points_per_second": state.pps, "points_per_inch": list(state.ppi)}
    try:
        return Ink(label, strokes, times or None, device=device), ""
    except DataError:  # e.g. 1e999 or nan coordinates: counted, never raised
        return None, "non-finite or malformed points"


def parse_data_file(
    source: UnipenSource, rel: str, report: ImportReport, levels=("WORD", "TEXT")
) -> list[InkRecord]:
    """All readable segments of one data/*.dat file (category from its path)."""
    data = source.read(rel)
    report.files += 1
    if data is None:
        report.skip("unreadable data file")
        return []
    parts = rel.split("/")
    category = int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else 0
    donor = parts[2] if len(parts) > 3 else ""
    state = _State()
    _parse_text(data.decode("latin-1"), source, state, 0)
    report.segments += len(state.segments)
    if state.missing:
        report.missing_includes.update(state.missing)
        report.skip("segment in a file with a missing include", len(state.segments))
        return []
    records = []
    for n, block in enumerate(state.segments):
        m = _SEGMENT.match(block)
        if not m:
            report.skip("malformed .SEGMENT line")
            continue
        level, refs, _quality, label = m.groups()
        if level not in levels:
            report.skip(f"segment level {level}")
            continue
        idx = parse_refs(refs)
        if idx is None:
            report.skip("point sub-range reference (n:m)")
            continue
        ink, why = _segment_ink(state, idx, unescape_label(label))
        if ink is None:
            report.skip(why)
            continue
        _, _, writer, style = state.components[idx[0]]
        writer = f"{donor}/{writer}" if writer else f"{donor}/{PurePosixPath(rel).stem}"
        records.append(InkRecord(ink, writer, donor, style, f"{rel}#{n}", category))
    report.records += len(records)
    return records


def iter_unipen(
    source: UnipenSource | str | Path,
    drop_donors=DEFAULT_DROP_DONORS,
    report: ImportReport | None = None,
    shard: tuple[int, int] = (0, 1),
):
    """Yield InkRecords for every readable word/text segment.

    `shard=(k, n)` reads only every n-th data file, starting at the k-th (for worker pools).
    """
    if not isinstance(source, UnipenSource):
        source = UnipenSource(source)
    report = report if report is not None else ImportReport()
    drop = set(drop_donors or ())
    k, n = shard
    for i, rel in enumerate(source.data_files()):
        if i % n != k:
            continue
        parts = rel.split("/")
        if len(parts) > 3 and parts[2] in drop:
            report.skip(f"dropped donor {parts[2]}")
            continue
        yield from parse_data_file(source, rel, report)
