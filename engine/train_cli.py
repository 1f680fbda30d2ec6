"""`handwriting-engine train` and `handwriting-engine eval` for the handwriting networks.

A run directory holds run.json (the settings, so `--resume` needs no other flags),
metrics.jsonl, checkpoints/ and model.safetensors (the best model, loadable by load_model).
Multi-GPU / multi-process: `torchrun --nproc_per_node=N -m engine.cli train ...`.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import fields
from pathlib import Path

from engine import EngineError
from engine.data.preprocess import CORPUS_STEP, TRAIN_STEP

# settings kept in run.json; None defaults mean "not given on the command line"
RUN_DEFAULTS = {
    "corpus": None,
    "preset": "small",
    "kind": "synthesis",
    "cell": "peephole",
    "window": "graves",
    "point_step": TRAIN_STEP,
    "steps": 10_000,
    "batch_size": 32,
    "lr": None,
    "optimizer": "rmsprop",
    "lr_schedule": "constant",
    "warmup_steps": 0,
    "grad_clip": None,
    "weight_noise": 0.0,
    "max_len": None,
    "val_every": 200,
    "val_max_sequences": None,
    "ckpt_every": 500,
    "keep_last": 3,
    "early_stop_patience": 0,
    "bf16": False,
    "cuda_graph": False,
    "seed": 0,
    "max_train_sequences": None,
    "init_from": None,
}
# what a run.json written before a setting existed meant by leaving it out
LEGACY = {"point_step": CORPUS_STEP}
# changing these on --resume changes the data or the model: refused
FIXED_ON_RESUME = (
    "corpus", "preset", "kind", "cell", "window", "point_step", "seed", "optimizer", "init_from"
)  # fmt: skip
# these may change on --resume (a curriculum: longer sequences later); the batch stream then
# differs from an uninterrupted run, so the resume is no longer exact, and we say so
CURRICULUM = ("batch_size", "max_len")


def add_commands(sub) -> None:
    p = sub.add_parser("train", help="train a synthesis or prediction network")
    p.add_argument("--corpus", help="corpus .npz (default: the bundled UNIPEN corpus)")
    p.add_argument("--preset", choices=["tiny", "small", "medium", "large", "paper"])
    p.add_argument("--kind", choices=["synthesis", "prediction"])
    p.add_argument(
        "--cell",
        choices=["peephole", "lstm"],
        help="peephole = the paper's cells (default); lstm = fast variant, layers 2..N as nn.LSTM",
    )
    p.add_argument(
        "--window",
        choices=["graves", "softplus"],
        help="synthesis window: graves = the paper's Eqs. 49-51 (default); softplus = softmax "
        "weights and softplus width/step (an option, see engine/window.py)",
    )
    p.add_argument(
        "--point-step",
        type=float,
        help="arc-length spacing of the ink the network learns, in preprocessed units: 2.7 = "
        "~9 points per character (default); 0.9 = the corpus's own ~27",
    )
    p.add_argument("--out", required=True, help="run directory (created)")
    p.add_argument("--steps", type=int, help="total optimiser steps (default 10000)")
    p.add_argument("--batch-size", type=int, help="sequences per batch and process (32)")
    p.add_argument("--lr", type=float, help="learning rate (1e-4 rmsprop, 1e-3 adam)")
    p.add_argument("--optimizer", choices=["rmsprop", "adam"], help="rmsprop = the paper's")
    p.add_argument("--lr-schedule", choices=["constant", "cosine", "step"])
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--grad-clip", type=float, help="global gradient-norm clip (default off)")
    p.add_argument("--weight-noise", type=float, help="fixed weight-noise std (default 0)")
    p.add_argument("--max-len", type=int, help="crop training sequences to T points")
    p.add_argument("--val-every", type=int, help="steps between validations (200; 0: never)")
    p.add_argument("--val-max-sequences", type=int, help="validate on N spread-out lines")
    p.add_argument(
        "--ckpt-every",
        type=int,
        help="steps between checkpoints (500; 0: only at the end)",
    )
    p.add_argument("--keep-last", type=int, help="checkpoints to keep besides the best (3)")
    p.add_argument(
        "--early-stop-patience", type=int, help="validations without improvement (0: off)"
    )
    p.add_argument("--bf16", action="store_true", default=None, help="bfloat16 autocast")
    p.add_argument(
        "--cuda-graph",
        action="store_true",
        default=None,
        help="replay each training step as one CUDA graph (GPU; batches padded to one shape)",
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--max-train-sequences", type=int, help="use only the first N training lines")
    p.add_argument(
        "--init-from",
        metavar="MODEL",
        help="start a new run from this model file's weights, configuration and normalisation "
        "(a fresh optimiser; for continuing a model whose optimiser state was not kept)",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a model on a corpus's validation split")
    e.add_argument(
        "--model",
        help="model file (.safetensors) or a folder holding model.safetensors "
        "(default: the bundled synthesis model)",
    )
    e.add_argument("--corpus", help="corpus .npz (default: the bundled UNIPEN corpus)")
    e.add_argument("--device", default="auto", help="auto, cpu or cuda")
    e.add_argument("--threads", type=int, help="torch CPU threads")
    e.add_argument(
        "--max-sequences", type=int, help="evaluate N validation lines spread over the split"
    )
    e.add_argument("--json", action="store_true", help="print the numbers as JSON")
    e.set_defaults(func=cmd_eval)

    i = sub.add_parser("info", help="describe a model file: network, point spacing, training")
    i.add_argument("model", help="model file (.safetensors) or a folder holding model.safetensors")
    i.add_argument("--json", action="store_true", help="print the rows as a JSON object")
    i.set_defaults(func=cmd_info)


def _load_corpus(path):
    from engine.resources import default_corpus_path

    path = Path(path) if path else default_corpus_path()
    if not path.is_file():
        raise EngineError(f"no corpus at {path}; pass --corpus PATH to a corpus .npz")
    from engine.data.corpus import load_corpus

    return load_corpus(path)


# counts the trainer would read as "off" or "all" if they went below these
AT_LEAST = {
    "warmup_steps": 0,
    "val_every": 0,
    "ckpt_every": 0,
    "early_stop_patience": 0,
    "val_max_sequences": 1,
    "max_train_sequences": 1,
}


def _settings(args) -> dict:
    """run.json merged with the flags given on the command line."""
    from engine.trainer import check_counts

    out = Path(args.out)
    run_json = out / "run.json"
    given = {k: getattr(args, k) for k in RUN_DEFAULTS if getattr(args, k, None) is not None}
    if "point_step" in given and not 0.1 <= given["point_step"] <= 10:
        raise EngineError(f"--point-step must be between 0.1 and 10, not {given['point_step']}")
    check_counts(given, AT_LEAST)
    if args.resume:
        if not run_json.is_file():
            raise EngineError(f"cannot resume: {run_json} does not exist")
        settings = json.loads(run_json.read_text())
        for k in FIXED_ON_RESUME:
            if k in given and given[k] != settings.get(k, LEGACY.get(k, RUN_DEFAULTS[k])):
                raise EngineError(f"--{k.replace('_', '-')} cannot change on --resume")
        for k in CURRICULUM:
            if k in given and given[k] != settings.get(k):
                print(
                    f"note: --{k.replace('_', '-')} changes from {settings.get(k)} to {given[k]}; "
                    "the batch stream differs from an uninterrupted run from here on",
                    file=sys.stderr,
                )
        return {**settings, **given}
    if (out / "checkpoints").is_dir() and any((out / "checkpoints").iterdir()):
        raise EngineError(f"{out} already holds a run; use --resume or another --out")
    if given.get("init_from"):
        clash = [k for k in ("preset", "kind", "cell", "window", "point_step") if k in given]
        if clash:
            flags = ", ".join(f"--{k}" for k in clash)
            raise EngineError(f"--init-from takes the network from the model file; drop {flags}")
        return {
            **RUN_DEFAULTS, "preset": None, "kind": None, "cell": None, "window": None,
            "point_step": None, **given,
        }  # fmt: skip
    return {**RUN_DEFAULTS, **given}


def load_for_training(path):
    """A handwriting model file to continue training (`--init-from`, the studio's fine-tuning):
    its weights, network, alphabet and normalisation, the model in training mode."""
    from engine.checkpoint import load_model

    path = Path(path)
    if not path.is_file():
        raise EngineError(f"no model file at {path}")
    loaded = load_model(path)
    if loaded.kind not in ("synthesis", "prediction"):
        raise EngineError(f"{path} is a {loaded.kind} model, not a handwriting model")
    if loaded.norm is None:
        raise EngineError(f"{path} has no normalisation statistics")
    loaded.model.train()
    return loaded


def _init_model(settings: dict, resume: bool, run_dir):
    """The model of --init-from, checked; fills the run's kind, cell and window from it. A resumed
    run takes the network and normalisation from its own model file (the checkpoint then
    restores the weights), so the original file need not be kept."""
    path = Path(settings["init_from"])
    own = Path(run_dir) / "model.safetensors" if run_dir is not None else None
    if resume and own is not None and own.is_file():
        path = own
    try:
        loaded = load_for_training(path)
    except EngineError as exc:
        raise EngineError(f"--init-from: {exc}") from None
    settings["kind"], settings["cell"] = loaded.kind, loaded.config.cell
    settings["window"] = loaded.config.window
    settings["point_step"] = loaded.config.point_step
    return loaded


def build(settings: dict, device, resume: bool, run_dir):
    """(trainer, task) for the settings; shared by the CLI and the studio's training worker."""
    import numpy as np
    import torch

    from engine.alphabet import Alphabet
    from engine.models import HandwritingModel, preset
    from engine.train_data import HandwritingTask
    from engine.trainer import TrainConfig, Trainer, config_or_error

    names = {f.name for f in fields(TrainConfig)}
    # checked before the corpus is read: a bad number is a message at once
    tconf = config_or_error(**{k: v for k, v in settings.items() if k in names})
    corpus = _load_corpus(settings["corpus"])
    texts, offsets, split = list(corpus.texts), list(corpus.offsets), np.asarray(corpus.split)
    limit = settings.get("max_train_sequences")
    if limit:
        train_idx = np.flatnonzero(split == 0)[limit:]
        keep = np.ones(len(split), bool)
        keep[train_idx] = False
        texts = [t for t, k in zip(texts, keep) if k]
        offsets = [o for o, k in zip(offsets, keep) if k]
        split = split[keep]
    alphabet = Alphabet()
    torch.manual_seed(settings["seed"])
    point_step = settings.get("point_step") or CORPUS_STEP
    # the corpus's normalisation fits its own spacing; at another one the task fits a new one
    norm = corpus.norm if point_step == CORPUS_STEP else None
    if settings.get("init_from"):
        loaded = _init_model(settings, resume, run_dir)
        model, norm = loaded.model, loaded.norm  # the weights expect their own normalisation
        alphabet = loaded.alphabet or alphabet
    else:
        config = preset(
            settings["preset"],
            settings["kind"],
            alphabet_size=len(alphabet),
            cell=settings.get("cell") or "peephole",
            window=settings.get("window") or "graves",
            point_step=point_step,
        )
        model = HandwritingModel(config)
    task = HandwritingTask(
        model,
        texts,
        offsets,
        split,
        norm,
        alphabet,
        batch_size=settings["batch_size"],
        max_len=settings["max_len"],
        seed=settings["seed"],
        val_max_sequences=settings["val_max_sequences"],
        description={
            "corpus": str(settings["corpus"] or "bundled"),
            "preset": settings["preset"],
            **({"init_from": str(settings["init_from"])} if settings.get("init_from") else {}),
        },
    )
    trainer = Trainer(task, tconf, run_dir=run_dir, device=device, resume=resume)
    return trainer, task


class Progress:
    """A plain-text progress line on stderr: rate and ETA; newline-per-update when not a tty."""

    def __init__(self, total: int, start: int, stream=sys.stderr, every: float = 0.5):
        self.total, self.start, self.stream, self.every = total, start, stream, every
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.tty = stream.isatty()
        if not self.tty:
            self.every = 30.0

    def update(self, r, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < self.every:
            return
        self.last = now
        done = r.step - self.start
        rate = done / max(now - self.t0, 1e-9)
        eta = (r.total_steps - r.step) / rate if rate > 0 else math.inf
        width = 24
        filled = int(width * r.step / max(r.total_steps, 1))
        line = (
            f"[{'=' * filled}{' ' * (width - filled)}] {r.step}/{r.total_steps} "
            f"loss {r.loss:8.1f} nats/seq {r.loss_per_point:6.3f}/pt  "
            f"{rate:5.2f} steps/s {r.points_per_s:7.0f} pts/s  ETA {_fmt(eta)}"
        )
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        self.stream.write(("\n" if self.tty else "") + text + "\n")
        self.stream.flush()


def _fmt(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def cmd_train(args) -> int:
    import torch

    from engine.trainer import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    settings = _settings(args)
    out = Path(args.out)
    if settings.get("cuda_graph") and device.type != "cuda":
        print("note: --cuda-graph needs a CUDA device; training eagerly", file=sys.stderr)
        settings = {**settings, "cuda_graph": False}
    trainer, _ = build(settings, device, args.resume, out)
    if trainer.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "run.json").write_text(json.dumps(settings, indent=2))
    progress = None if args.quiet or trainer.rank else Progress(trainer.config.steps, trainer.step)
    graph_said = "unused"  # the CUDA graph status last printed
    _sigterm_as_interrupt()
    try:
        for r in trainer.run():
            if progress is None:
                continue
            if trainer.graph_status != graph_said:  # recorded, or turned off, just now
                graph_said = trainer.graph_status
                progress.message(f"CUDA graph: {graph_said}")
            progress.update(r, force=bool(r.validation))
            if r.validation:
                v = r.validation
                progress.message(
                    f"step {r.step}: valid {v['nats_per_sequence']:.1f} nats/seq, "
                    f"{v['nats_per_point']:.4f} nats/pt, SSE {v['sse_per_point']:.4f}/pt"
                    + (
                        f", window focus {v['window_focus']:.2f}, at the end {v['window_end']:.0%}"
                        if "window_focus" in v
                        else ""
                    )
                    + ("  (best)" if "best" in r.events else "")
                )
            if "rollback" in r.events:
                progress.message(f"step {r.step}: rolled back, lr now {trainer.current_lr():.3g}")
    except KeyboardInterrupt:
        if trainer.rank == 0 and trainer.step > trainer._last_ckpt_step:
            path = trainer.checkpoint()
            print(f"\ninterrupted: checkpoint written to {path}", file=sys.stderr)
        raise
    finally:
        trainer.close()
    if progress is not None:
        progress.message(f"done: {trainer.step} steps; best model in {out / 'model.safetensors'}")
    return 0


def _sigterm_as_interrupt() -> None:
    """`kill PID` stops training like Ctrl-C: a checkpoint is written first."""
    import signal
    import threading

    def handler(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def cmd_eval(args) -> int:
    import torch

    from engine.alphabet import Alphabet
    from engine.checkpoint import load_model
    from engine.fast import DenormalsFlushed
    from engine.sample_cli import resolve_model_path
    from engine.train_data import HandwritingTask
    from engine.trainer import check_counts, resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    check_counts({"max_sequences": args.max_sequences}, {"max_sequences": 1})
    device = resolve_device(args.device)
    path = resolve_model_path(Path(args.model) if args.model else None)
    loaded = load_model(path, device)
    if loaded.kind not in ("synthesis", "prediction"):
        raise EngineError(f"{path} is a {loaded.kind} model, not a handwriting model")
    if loaded.norm is None:
        raise EngineError(f"{path} has no normalisation statistics")
    corpus = _load_corpus(args.corpus)
    task = HandwritingTask(
        loaded.model,
        list(corpus.texts),
        list(corpus.offsets),
        corpus.split,
        loaded.norm,  # the model's own normalisation, not the corpus's
        loaded.alphabet or Alphabet(),
        val_max_sequences=args.max_sequences,
        validation_only=True,  # the training lines are not read: no time spent resampling them
    )
    task.to(device)
    with torch.no_grad(), DenormalsFlushed():  # as training does
        metrics = task.validate()
    if args.json:
        print(json.dumps(metrics))
    else:
        print(f"validation lines:  {int(metrics['sequences'])}")
        print(f"nats/sequence:     {metrics['nats_per_sequence']:.2f}")
        print(f"nats/point:        {metrics['nats_per_point']:.4f}")
        print(f"SSE/point:         {metrics['sse_per_point']:.4f}")
        if "window_focus" in metrics:
            print(f"window focus:      {metrics['window_focus']:.3f} (1 = one character at a time)")
            print(f"window at the end: {metrics['window_end']:.1%} of lines")
    return 0


def cmd_info(args) -> int:
    from engine.model_info import as_text, describe
    from engine.resources import model_file

    rows = describe(model_file(args.model))
    print(json.dumps(dict(rows), ensure_ascii=False) if args.json else as_text(rows))
    return 0
