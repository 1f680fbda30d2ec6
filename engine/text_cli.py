"""`handwriting-engine text train|eval|sample`: the character-level predictor (Sec. 3)."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from engine import EngineError


class TextCliError(EngineError, ValueError):
    """A command-line request the text commands cannot carry out."""


class ProgressBar:
    """A one-line stderr progress bar, redrawn at most ~10 times a second."""

    def __init__(self, label: str, stream=None):
        self.label, self.stream, self.last = label, stream or sys.stderr, 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.1 and done < total:
            return
        self.last = now
        frac = done / total if total else 1.0
        bar = "#" * int(30 * frac)
        self.stream.write(f"\r{self.label} [{bar:<30}] {100 * frac:5.1f}% ({done:,}/{total:,})")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def add_commands(sub) -> None:
    p = sub.add_parser("text", help="character/byte-level text prediction (Sec. 3)")
    tsub = p.add_subparsers(dest="text_command", metavar="ACTION")

    t = tsub.add_parser("train", help="train a text predictor on a text file")
    t.add_argument("--text", help="UTF-8 text file (any file with --vocab bytes)")
    t.add_argument("--out", required=True, help="run directory (run.json, checkpoints, model)")
    t.add_argument(
        "--vocab", choices=["char", "bytes"], help="symbols: characters (default) or bytes"
    )
    t.add_argument(
        "--unknown",
        choices=["map", "error"],
        help="char vocab: map characters unseen in training to one unknown symbol (default, "
        "counted and reported) or refuse them",
    )
    t.add_argument("--layers", type=int, help="LSTM layers (1)")
    t.add_argument("--hidden", type=int, help="cells per layer (512)")
    t.add_argument("--seq-len", type=int, help="symbols per training sequence (100, Sec. 3.2)")
    t.add_argument("--batch", type=int, help="parallel streams per batch (32)")
    t.add_argument("--reset-every", type=int, help="reset the state every N sequences (100)")
    t.add_argument("--steps", type=int, help="optimiser steps in all (2000)")
    t.add_argument(
        "--optimizer", choices=["adam", "rmsprop"], help="adam (default) or the paper's rmsprop"
    )
    t.add_argument("--lr", type=float, help="learning rate (2e-3 adam, 1e-4 rmsprop)")
    t.add_argument("--lr-schedule", choices=["constant", "cosine", "step"], help="(cosine)")
    t.add_argument("--weight-noise", type=float, help="fixed weight-noise std (0)")
    t.add_argument("--valid-tail", type=float, help="held-out end of the file, by bytes (0.1)")
    t.add_argument("--val-every", type=int, help="steps between validations (200)")
    t.add_argument(
        "--val-max-symbols", type=int, help="validate on the first N held-out symbols (250000)"
    )
    t.add_argument("--ckpt-every", type=int, help="steps between checkpoints (50)")
    t.add_argument("--seed", type=int)
    t.add_argument("--threads", type=int, help="torch CPU threads (1 is best on a busy machine)")
    t.add_argument("--device", default="auto", help="auto, cpu or cuda")
    t.add_argument("--resume", action="store_true", help="continue the run in --out (run.json)")
    t.set_defaults(func=cmd_train)

    e = tsub.add_parser("eval", help="bits per character (static and dynamic) on a text file")
    e.add_argument("--model", default=None, help="model file or directory (default: bundled)")
    e.add_argument("--text", required=True)
    e.add_argument(
        "--tail",
        type=float,
        default=None,
        help="evaluate only the last fraction of the file (by bytes), e.g. 0.1",
    )
    e.add_argument("--max-symbols", type=int, help="evaluate only the first N symbols")
    e.add_argument("--dynamic", action="store_true", help="also run dynamic evaluation")
    e.add_argument("--dynamic-lr", type=float, default=None)
    e.add_argument("--json", action="store_true", help="print the results as JSON")
    e.set_defaults(func=cmd_eval)

    s = tsub.add_parser("sample", help="generate text, streamed to stdout")
    s.add_argument("--model", default=None, help="model file or directory (default: bundled)")
    s.add_argument("--prime", default="", help="text the model continues")
    s.add_argument("--temperature", type=float, default=1.0)
    s.add_argument("--length", type=int, default=500)
    s.add_argument("--seed", type=int, default=None)
    s.set_defaults(func=cmd_sample)

    p.set_defaults(func=lambda a: p.print_help() or 2)


# -- models ------------------------------------------------------------------------------------
def resolve_model_path(path) -> Path:
    from engine.resources import default_model_path, model_file

    p = model_file(path or default_model_path("text"))
    if not p.exists():
        raise TextCliError(f"no text model at {p}" + ("" if path else " (bundled model missing)"))
    return p


def load_text_model(path=None):
    """The TextModel in a model file (default: the bundled one); refuses other kinds."""
    from engine.checkpoint import ModelFileError, load_model

    p = resolve_model_path(path)
    loaded = load_model(p)
    if loaded.kind != "text":
        raise ModelFileError(f"{p} holds a {loaded.kind} model, not a text model")
    return loaded.model


# -- train -------------------------------------------------------------------------------------
TRAIN_DEFAULTS = {
    "text": None,
    "vocab": "char",
    "unknown": "map",
    "layers": 1,
    "hidden": 512,
    "seq_len": 100,
    "batch": 32,
    "reset_every": 100,
    "steps": 2000,
    "optimizer": "adam",
    "lr": None,
    "lr_schedule": "cosine",
    "weight_noise": 0.0,
    "valid_tail": 0.1,
    "val_every": 200,
    "val_max_symbols": 250_000,
    "ckpt_every": 50,
    "seed": 0,
}
# changing these on --resume would change the model or the data stream: refused
FIXED_ON_RESUME = (
    "text",
    "vocab",
    "unknown",
    "layers",
    "hidden",
    "seq_len",
    "batch",
    "valid_tail",
    "optimizer",
)


def _run_settings(args) -> dict:
    """Settings from run.json (on --resume) overlaid with the flags given now."""
    out = Path(args.out)
    given = {k: getattr(args, k) for k in TRAIN_DEFAULTS if getattr(args, k, None) is not None}
    run_json = out / "run.json"
    if args.resume:
        if not run_json.is_file():
            raise TextCliError(f"--resume: {out} holds no run.json (not a text training run)")
        settings = json.loads(run_json.read_text())
        for k in FIXED_ON_RESUME:
            if k in given and given[k] != settings.get(k):
                raise TextCliError(
                    f"--{k.replace('_', '-')} {given[k]} differs from this run's "
                    f"{settings.get(k)}; it cannot change on --resume"
                )
        settings.update(given)
    else:
        if run_json.exists():
            raise TextCliError(f"{out} already holds a run; pass --resume or choose another --out")
        if out.exists() and not out.is_dir():
            raise TextCliError(f"--out {out} exists and is not a directory")
        if not given.get("text"):
            raise TextCliError("--text FILE is required to start a run")
        settings = {**TRAIN_DEFAULTS, **given}
        settings["text"] = str(Path(settings["text"]).resolve())
    if settings["lr"] is None:
        settings["lr"] = 2e-3 if settings["optimizer"] == "adam" else 1e-4
    return settings


# counts the trainer would read as "never" or "all" below these
TEXT_AT_LEAST = {"val_every": 0, "ckpt_every": 0, "val_max_symbols": 1}


def _train_config(s: dict):
    """The trainer's settings, refused as a message before anything is written."""
    from engine.trainer import check_counts, config_or_error

    check_counts(s, TEXT_AT_LEAST)
    return config_or_error(
        steps=s["steps"],
        optimizer=s["optimizer"],
        lr=s["lr"],
        lr_schedule=s["lr_schedule"],
        weight_noise=s["weight_noise"],
        val_every=s["val_every"],
        ckpt_every=s["ckpt_every"],
        monitor="bpc",
        seed=s["seed"],
    )


def _prepare_data(settings: dict, out: Path, vocab=None):
    """(vocab, train ids, valid ids) streaming over the file; char encodings cached in `out`."""
    from engine.text_data import (
        Vocab,
        build_char_vocab,
        check_text_file,
        describe_unknown,
        encode_file,
        split_point,
    )

    path = check_text_file(settings["text"])
    split = split_point(path, settings["valid_tail"])
    if split < 2:
        raise TextCliError(f"{path} is too short to hold out a validation tail")
    if vocab is None:
        if settings["vocab"] == "bytes":
            vocab = Vocab("bytes")
        else:
            vocab, _ = build_char_vocab(path, split, settings["unknown"], ProgressBar("vocabulary"))
    bits = 8 * np.dtype(vocab.dtype).itemsize
    train = encode_file(path, vocab, 0, split, out / f"train.u{bits}", ProgressBar("encode train"))
    valid = None
    if split < os.path.getsize(path):
        valid = encode_file(
            path, vocab, split, None, out / f"valid.u{bits}", ProgressBar("encode valid")
        )
        if valid.unknown:
            print(f"validation text: {describe_unknown(valid.unknown)}", file=sys.stderr)
    if valid is None:
        return vocab, train.ids, None
    return vocab, train.ids, valid.ids[: settings.get("val_max_symbols") or None]


def cmd_train(args) -> int:
    import torch

    from engine.text_model import TextConfig, TextModel, count_parameters
    from engine.text_train import TextTask
    from engine.trainer import Trainer, resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    s = _run_settings(args)
    tconf = _train_config(s)
    out.mkdir(parents=True, exist_ok=True)
    config = None
    if args.resume:
        config = TextConfig.from_dict(json.loads((out / "run.json").read_text())["model_config"])
    vocab, train_ids, valid_ids = _prepare_data(s, out, config.vocabulary if config else None)
    if config is None:
        config = TextConfig(vocab=vocab.to_dict(), hidden_size=s["hidden"], num_layers=s["layers"])
    s["model_config"] = config.to_dict()
    from engine.checkpoint import atomic_write_bytes

    atomic_write_bytes(out / "run.json", json.dumps(s, indent=2).encode())
    torch.manual_seed(s["seed"])
    model = TextModel(config)
    task = TextTask(model, train_ids, valid_ids, s["batch"], s["seq_len"], s["reset_every"])
    if valid_ids is None:  # no held-out tail: nothing to validate on
        tconf = replace(tconf, val_every=0)
    trainer = Trainer(task, tconf, out, resolve_device(args.device), resume=args.resume)
    print(
        f"text model: {vocab.kind} vocabulary of {vocab.size}, {config.num_layers} x "
        f"{config.hidden_size} LSTM, {count_parameters(model):,} weights; {len(train_ids):,} "
        f"training symbols ({task.batcher.per_epoch} sequences per epoch); step {trainer.step}"
        f" of {tconf.steps}",
        file=sys.stderr,
    )
    try:
        for r in trainer.run():
            if r.validation is None and r.step % 10 and r.step != r.total_steps:
                continue
            line = (
                f"step {r.step:6d}/{r.total_steps} epoch {task.batcher.epoch(task.position):6.2f} "
                f"train {r.loss_per_point * 1.4426950408889634:.3f} bpc lr {r.lr:.2e} "
                f"{r.points_per_s:,.0f} sym/s"
            )
            if r.validation:
                line += f" | valid {r.validation['bpc']:.3f} bpc"
            if r.events:
                line += f" [{', '.join(r.events)}]"
            print(line, file=sys.stderr, flush=True)
    finally:
        trainer.close()
    print(f"done: best model in {out / 'model.safetensors'}", file=sys.stderr)
    return 0


# -- eval --------------------------------------------------------------------------------------
def cmd_eval(args) -> int:
    import tempfile

    from engine.text_data import (
        char_boundary,
        check_text_file,
        describe_unknown,
        encode_file,
        split_point,
    )
    from engine.text_eval import DynamicConfig, evaluate

    model = load_text_model(args.model)
    path = check_text_file(args.text)
    size = os.path.getsize(path)
    start = 0 if args.tail is None else split_point(path, args.tail)
    stop = size
    if args.max_symbols:  # read no more than N symbols can need (4 bytes per char at most)
        stop = char_boundary(path, min(size, start + 4 * args.max_symbols + 4))
    with tempfile.TemporaryDirectory(prefix="text-eval-") as tmp:
        # a large character range is encoded to a memmap on disk rather than held in memory
        cache = Path(tmp) / "ids" if stop - start > 64 * 2**20 else None
        enc = encode_file(path, model.vocab, start, stop, cache, ProgressBar("encode"))
        if enc.unknown:
            print(f"note: {describe_unknown(enc.unknown)}", file=sys.stderr)
        ids = enc.ids[: args.max_symbols] if args.max_symbols else enc.ids
        results = [evaluate(model, ids, progress=ProgressBar("static "))]
        if args.dynamic:
            dyn = DynamicConfig() if args.dynamic_lr is None else DynamicConfig(lr=args.dynamic_lr)
            results.append(evaluate(model, ids, dyn, progress=ProgressBar("dynamic")))
        del ids, enc
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
        return 0
    unit = "bits/byte" if model.vocab.kind == "bytes" else "bits/char"
    print(
        f"{'evaluation':<12}{unit:>12}{'word ppl':>12}   ({results[0].symbols:,} predictions, "
        f"{results[0].symbols_per_word:.2f} symbols per word)"
    )
    for r in results:
        name = "dynamic" if r.dynamic else "static"
        print(f"{name:<12}{r.bpc:>12.4f}{r.word_perplexity:>12.1f}")
    return 0


# -- sample ------------------------------------------------------------------------------------
def cmd_sample(args) -> int:
    from engine.text_eval import sample_stream

    model = load_text_model(args.model)
    out = sys.stdout
    out.write(args.prime)
    for piece in sample_stream(model, args.prime, args.temperature, args.length, args.seed):
        if piece.text:
            out.write(piece.text)
            out.flush()
    out.write("\n")
    return 0
