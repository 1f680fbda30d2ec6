"""`handwriting-engine sample`: write text with a synthesis model to JSON, SVG, PNG, GIF, InkML."""

from __future__ import annotations

import json
from pathlib import Path

from engine import EngineError
from engine.sampler import DEFAULT_BIAS

FORMATS = (".json", ".svg", ".png", ".gif", ".inkml")
EXPORT_SCALE = 4.0  # preprocessing units -> output units (a body height of ~40 px)


class CommandError(EngineError):
    pass


def add_commands(sub) -> None:
    p = sub.add_parser(
        "sample",
        help="write text in handwriting (or scribble with a prediction model)",
        description="Write TEXT with a synthesis model and save it; the output format follows "
        f"the extension of --out: {', '.join(FORMATS)}. Long text wraps to --width characters.",
    )
    p.add_argument("--text", help="text to write (printable ASCII; \\n starts a new line)")
    p.add_argument("--model", type=Path, help="model file (default: the bundled model)")
    p.add_argument(
        "--bias",
        type=float,
        default=DEFAULT_BIAS,
        help="sampling bias b >= 0 (Sec. 5.4): 0 = unbiased samples, higher = neater and "
        f"more legible, 1 = neat (default {DEFAULT_BIAS})",
    )
    p.add_argument(
        "--seed", type=int, default=None, help="random seed (>= 0) for a reproducible sample"
    )
    p.add_argument("--prime-ink", type=Path, help="ink whose style to imitate (.json or .inkml)")
    p.add_argument("--prime-text", help="what the priming ink says (default: the ink's own label)")
    p.add_argument("--width", type=int, default=60, help="page width in characters (default 60)")
    p.add_argument(
        "--tries",
        type=int,
        help="write each line N times at once and keep the one whose attention window covered "
        "every character best; an offline recogniser misreads 49-67 %% fewer characters with "
        "8 than with 1, for about 6 times the time (synthesis models; default 8; 1 = one plain "
        "sample, as in the paper)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=700,
        help="points to draw with a prediction model (default 700)",
    )
    p.add_argument(
        "--weights",
        default="auto",
        help="how the fast sampling step stores its weights: auto (int8 on the CPU for models "
        "with at least 1 M streamed weights, such as the bundled one; else fp32), fp32, bf16 "
        "or int8 (default auto)",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads to sample with (default 1 where the native int8 step runs, which "
        "is one thread; else 2 for models large enough for int8 weights, such as the bundled "
        "one, and 1 for others: a second thread only helps those, and only on an idle core)",
    )
    p.add_argument("--animate", action="store_true", help="for .svg: an animated pen drawing")
    p.add_argument("--scale", type=float, default=EXPORT_SCALE, help="output units per model unit")
    p.add_argument("--out", type=Path, required=True, help=f"output file ({', '.join(FORMATS)})")
    p.add_argument(
        "--trace",
        type=Path,
        metavar="FILE.npz",
        help="also save, per line, the window weights phi(t, u) and the mixture each point was "
        "drawn from (pi, mu, sigma, rho, pen-lift e), for plotting Figs. 10 and 13 yourself",
    )
    p.set_defaults(func=run_sample)


def resolve_model_path(path: Path | None, kind: str = "synthesis") -> Path:
    from engine.resources import default_model_path, model_file

    if path is not None:
        return model_file(path)
    bundled = default_model_path(kind) / "model.safetensors"
    if not bundled.is_file():
        raise CommandError(
            f"no {kind} model is installed (looked for {bundled}); pass --model PATH or train "
            "one with `handwriting-engine train`"
        )
    return bundled


def load_primer(ink_path: Path, text: str | None):
    from engine.data.native import load_ink
    from engine.data.preprocess import preprocess_ink
    from engine.sampler import Primer

    if not ink_path.is_file():
        raise CommandError(f"no priming ink at {ink_path}")
    if ink_path.suffix.lower() == ".inkml":
        from engine.data.inkml import read_inkml

        ink = read_inkml(ink_path)
    else:
        ink = load_ink(ink_path)
    label = text if text is not None else ink.text
    if not label or not label.strip():
        raise CommandError("the priming ink has no text label: say what it reads with --prime-text")
    return Primer(preprocess_ink(ink), label)


def run_sample(args) -> int:
    from engine.checkpoint import load_model

    suffix = args.out.suffix.lower()
    if suffix not in FORMATS:
        raise CommandError(f"cannot write {args.out.name}: use one of {', '.join(FORMATS)}")
    if not args.out.parent.exists():
        raise CommandError(f"the folder {args.out.parent} does not exist")
    if args.scale <= 0:
        raise CommandError("--scale must be positive")
    if args.trace is not None:
        from engine.trace import check_path

        check_path(args.trace)  # before any sampling
    from engine.sampler import WEIGHTS

    if args.threads is not None and args.threads < 1:
        raise CommandError(f"--threads must be at least 1, not {args.threads}")
    if args.weights not in WEIGHTS:
        raise CommandError(f"--weights must be one of {', '.join(WEIGHTS)}, not {args.weights!r}")
    from engine.layout import DEFAULT_TRIES, check_tries

    if args.tries is not None:
        try:
            check_tries(args.tries)
        except EngineError as exc:  # the option's own name in the message
            raise CommandError(f"--{exc}") from None
    loaded = load_model(resolve_model_path(args.model))
    if loaded.kind not in ("synthesis", "prediction"):
        raise CommandError(f"{loaded.path} is a {loaded.kind} model, not a handwriting model")
    if loaded.kind == "prediction" and args.tries not in (None, 1):
        raise CommandError("--tries picks among lines of text: it needs a synthesis model")
    import torch

    from engine.fast import sampling_threads

    torch.set_num_threads(args.threads or sampling_threads(loaded.model))
    primer = load_primer(args.prime_ink, args.prime_text) if args.prime_ink else None
    if loaded.kind == "synthesis":
        if args.text is None:
            raise CommandError("--text is required for a synthesis model")
        from engine.layout import write_page

        page = write_page(
            loaded,
            args.text.replace("\\n", "\n"),
            width=args.width,
            bias=args.bias,
            seed=args.seed,
            primer=primer,
            weights=args.weights,
            trace=args.trace is not None,
            tries=DEFAULT_TRIES if args.tries is None else args.tries,
        )
        strokes = [s for line in page for s in line.strokes]
        text = "\n".join(line.text for line in page)
        traces = [(line.text, line.trace) for line in page]
    else:
        from engine.sampler import generate, samples_of
        from engine.trace import trace_of

        steps = list(
            generate(
                loaded,
                None,
                bias=args.bias,
                seed=args.seed,
                primer=primer,
                max_steps=args.steps,
                weights=args.weights,
            )
        )
        strokes = samples_of(steps)[0].strokes()
        text = ""
        traces = [("", trace_of(steps))] if args.trace is not None else []
    strokes = [s * args.scale for s in strokes if len(s)]
    write_output(args.out, text, strokes, animate=args.animate)
    print(f"wrote {args.out} ({len(strokes)} strokes)")
    if args.trace is not None:
        from engine.trace import PageTrace

        trace = PageTrace(
            traces,
            str(loaded.path or ""),
            loaded.kind,
            args.bias,
            args.seed,
            primer.text if primer is not None else None,
        )
        trace.save(args.trace)
        print(f"wrote {args.trace} ({len(traces)} line(s) of window and mixture parameters)")
    return 0


def write_output(path: Path, text: str, strokes, animate: bool = False) -> None:
    from engine import render

    suffix = path.suffix.lower()
    if not strokes:
        raise CommandError("the model produced no ink; try another seed or a lower bias")
    try:
        if suffix == ".json":
            data = {
                "text": text,
                "strokes": [
                    [[round(float(x), 3), round(float(y), 3)] for x, y in s] for s in strokes
                ],
            }
            path.write_text(json.dumps(data))
        elif suffix == ".svg":
            svg = (
                render.render_animated_svg(strokes)
                if animate
                else render.render_svg(strokes, background="white")
            )
            path.write_text(svg)
        elif suffix == ".png":
            render.render_png(strokes, path, stroke_width=2.5)
        elif suffix == ".gif":
            render.render_gif(strokes, path, stroke_width=2.5)
        elif suffix == ".inkml":
            from engine.data.ink import Ink
            from engine.data.inkml import write_inkml

            write_inkml(Ink(text, strokes), path)
    except OSError as exc:
        raise CommandError(f"could not write {path}: {exc.strerror or exc}") from None
