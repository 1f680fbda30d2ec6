"""`handwriting-engine data ...`: import handwriting, build and inspect the line corpus."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from engine.data.errors import DataError

log = logging.getLogger(__name__)


def add_commands(subparsers) -> None:
    data = subparsers.add_parser("data", help="import handwriting data, build and inspect corpora")
    sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    data.set_defaults(func=lambda args: data.print_help() or 2)

    p = sub.add_parser("import-unipen", help="UNIPEN directory or .tar.xz -> corpus")
    p.add_argument("path", type=Path)
    p.add_argument("--out", type=Path, required=True, help="corpus .npz to write")
    p.add_argument(
        "--drop-donors",
        default="lex,abm",
        help="comma-separated donors to skip (default: lex,abm, misaligned labels)",
    )
    p.add_argument("--no-assembled", action="store_true", help="no lines assembled from words")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=cmd_import_unipen)

    p = sub.add_parser("build-corpus", help="rebuild the bundled resources/corpus/unipen_lines.npz")
    p.add_argument(
        "--source",
        type=Path,
        default=None,
        help="UNIPEN train_r01_v07 .tar.xz or directory (default: shared data)",
    )
    p.add_argument("--out", type=Path, default=None, help="default: the bundled corpus path")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=cmd_build_corpus)

    p = sub.add_parser("import-iam", help="IAM-OnDB (lineStrokes-all + ascii-all) -> corpus")
    p.add_argument("path", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_import_iam)

    p = sub.add_parser("import-inkml", help="InkML files -> corpus")
    p.add_argument("files", type=Path, nargs="+")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_import_inkml)

    p = sub.add_parser("stats", help="lines, writers, points per character, coverage")
    p.add_argument("corpus", type=Path)
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("render", help="PNG sheet of random corpus lines with their labels")
    p.add_argument("corpus", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_render)


def _unipen(source, out, drop, assembled, workers):
    from engine.data.build_corpus import BuildConfig, build_corpus
    from engine.data.stats import corpus_stats, format_stats

    if workers < 1:
        raise DataError(f"--workers must be at least 1, got {workers}")
    t0 = time.perf_counter()
    config = BuildConfig(drop_donors=drop, assembled=assembled, workers=workers)
    corpus = build_corpus(source, config)
    corpus.save(out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.0f} s")
    print(format_stats(corpus_stats(corpus)))
    report = corpus.meta["report"]
    print("skipped:")
    for why, n in sorted(report["skipped"].items(), key=lambda kv: -kv[1]):
        print(f"  {n:6d}  {why}")
    return 0


def cmd_import_unipen(args) -> int:
    drop = tuple(d.strip() for d in args.drop_donors.split(",") if d.strip())
    return _unipen(args.path, args.out, drop, not args.no_assembled, args.workers)


def cmd_build_corpus(args) -> int:
    from engine.data.build_corpus import DEFAULT_SOURCE, BuildConfig
    from engine.resources import default_corpus_path

    source = args.source or DEFAULT_SOURCE
    if not Path(source).exists():
        raise DataError(f"UNIPEN source not found: {source} (pass --source PATH)")
    out = args.out or default_corpus_path()
    return _unipen(source, out, BuildConfig().drop_donors, True, args.workers)


def _save_records(records, out, report=None) -> int:
    from engine.data.records import corpus_from_records
    from engine.data.stats import corpus_stats, format_stats

    corpus = corpus_from_records(records, report)
    corpus.save(out)
    print(f"wrote {out}: {len(corpus)} lines")
    print(format_stats(corpus_stats(corpus)))
    return 0


def cmd_import_iam(args) -> int:
    from engine.data.iam import read_iam
    from engine.data.unipen import ImportReport

    report = ImportReport()
    records = read_iam(args.path, report)
    print(report.summary())
    return _save_records(records, args.out, report)


def cmd_import_inkml(args) -> int:
    from engine.data.inkml import read_inkml_files
    from engine.data.unipen import ImportReport

    report = ImportReport()
    records = read_inkml_files(args.files, report)
    print(report.summary())
    return _save_records(records, args.out, report)


def cmd_stats(args) -> int:
    from engine.data.corpus import load_corpus
    from engine.data.stats import corpus_stats, format_stats

    print(format_stats(corpus_stats(load_corpus(args.corpus))))
    return 0


def cmd_render(args) -> int:
    import numpy as np

    from engine.data.corpus import load_corpus
    from engine.data.render import render_sheet
    from engine.strokes import offsets_to_strokes

    if args.n < 1:
        raise DataError(f"--n must be at least 1, got {args.n}")
    corpus = load_corpus(args.corpus)
    if not len(corpus):
        raise DataError(f"{args.corpus} holds no lines")
    rng = np.random.default_rng(args.seed)
    idx = rng.choice(len(corpus), size=min(args.n, len(corpus)), replace=False)
    items = []
    for i in idx:
        tag = " [assembled]" if corpus.assembled[i] else ""
        label = f"#{i} {corpus.donors[i]}{tag}: {corpus.texts[i]}"
        items.append((offsets_to_strokes(corpus.offsets[i]), label))
    render_sheet(items, args.out)
    print(f"wrote {args.out}: {len(items)} lines")
    return 0
