"""Pick a few clean single lines from UNIPEN as the example styles shipped in resources/styles/.

    python -m studio.example_styles /work/shared/data/unipen/train_r01_v07.tar.xz [N]

Run once by a maintainer; the app only reads the JSON files. Attribution: see
resources/styles/README.md (UNIPEN train_r01_v07, CC BY 4.0).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def _clean(text: str) -> bool:
    return 18 <= len(text) <= 40 and bool(re.fullmatch(r"[A-Za-z ,.'!?]+", text)) and " " in text


def pick(source, n: int = 4, max_records: int = 20000):
    """Labelled single-line text segments from distinct writers and donors."""
    from engine.data.preprocess import count_lines, preprocess_ink
    from engine.data.unipen import UnipenSource, iter_unipen

    source = UnipenSource(source, categories=(8,))  # text lines only
    chosen, writers, donors = [], set(), set()
    for i, rec in enumerate(iter_unipen(source)):
        if i >= max_records or len(chosen) >= n:
            break
        ink, donor = rec.ink, rec.source.split("/")[2] if rec.source.count("/") > 2 else ""
        if rec.category != 8 or not _clean(ink.text) or rec.writer in writers or donor in donors:
            continue
        if donor == "hpb" or count_lines(ink.strokes) != 1:
            continue  # hpb ink is coarsely quantised (data README)
        try:
            offsets = preprocess_ink(ink)
        except Exception:  # noqa: BLE001 - unusable ink is simply not picked
            continue
        if not 15 <= len(offsets) / len(ink.text) <= 40:
            continue  # points per character far from the corpus norm: likely misaligned
        chosen.append(rec)
        writers.add(rec.writer)
        donors.add(donor)
    return chosen


def main(argv=None) -> int:
    from engine.data.ink import Ink
    from engine.data.native import save_ink
    from engine.resources import resource

    argv = sys.argv[1:] if argv is None else argv
    n = int(argv[1]) if len(argv) > 1 else 4
    out = resource("styles")
    out.mkdir(parents=True, exist_ok=True)
    for k, rec in enumerate(pick(argv[0], n), 1):
        ink = Ink(
            rec.ink.text,
            rec.ink.strokes,
            device={"source": "UNIPEN train_r01_v07", "file": rec.source, "writer": rec.writer},
        )
        path = Path(out) / f"UNIPEN writer {k}.json"
        save_ink(ink, path)
        print(f"{path.name}: {rec.ink.text!r} ({rec.source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
