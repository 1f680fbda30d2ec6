"""`handwriting-engine`: the engine's command-line tool.

Each command group lives next to the code it drives and registers itself here through an
`add_commands(subparsers)` function; modules are imported lazily so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from engine import EngineError, __version__

# Modules that contribute commands. Each defines add_commands(subparsers) and sets
# `func` on its parsers; a module not yet present is skipped.
COMMAND_MODULES = [
    "engine.sample_cli",
    "engine.data.cli",
    "engine.train_cli",
    "engine.text_cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="handwriting-engine",
        description="Handwriting synthesis and prediction after Graves (2013): "
        "sample, import data, train and evaluate models.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EngineError as exc:
        print(f"handwriting-engine: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("handwriting-engine: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
