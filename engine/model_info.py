"""What a model file holds, in words: network, data representation and training record.

Read from the file's header alone (no tensor data, no torch), so the CLI's `info` command and
the studio's Model → Details... answer instantly even for a large model.
"""

from __future__ import annotations

import math
from pathlib import Path

from engine.checkpoint import ModelFileError, read_header
from engine.data.preprocess import CORPUS_STEP

KINDS = {
    "synthesis": "handwriting synthesis (Graves 2013, Sec. 5)",
    "prediction": "handwriting prediction (Sec. 4)",
    "text": "text prediction (Sec. 3)",
}
CORPUS_POINTS_PER_CHAR_AT_1 = 24.0  # the UNIPEN corpus: ~27 points per character at 0.9 units


def _parameters(header: dict) -> int:
    return sum(
        math.prod(v.get("shape", []))
        for k, v in header.items()
        if k != "__metadata__" and isinstance(v, dict)
    )


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes / 60:.1f} h" if minutes >= 90 else f"{minutes:.0f} min"


def describe(path) -> list[tuple[str, str]]:
    """(label, value) rows describing the model file at `path`; ModelFileError if unreadable."""
    path = Path(path)
    header, meta = read_header(path)
    if meta.get("kind") not in KINDS:
        kind = meta.get("kind")
        what = "a training run's optimiser state" if "trainer" in meta else f"kind {kind!r}"
        raise ModelFileError(f"{path} is not a model file: it holds {what}")
    where = ("File", f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
    return [where, *describe_meta(meta, _parameters(header))]


def describe_loaded(loaded) -> list[tuple[str, str]]:
    """Rows for an engine.checkpoint.LoadedModel: read from its file when it has one, else from
    the model in memory (an untrained model made in the studio)."""
    if loaded.path is not None and Path(loaded.path).is_file():
        return describe(loaded.path)
    meta = {"kind": loaded.kind, "config": loaded.config.to_dict(), "training": loaded.metadata}
    if loaded.alphabet is not None:
        meta["alphabet"] = loaded.alphabet.to_dict()
    count = sum(p.numel() for p in loaded.model.parameters())
    return [("File", "none (made in memory)"), *describe_meta(meta, count)]


def describe_meta(meta: dict, parameters: int) -> list[tuple[str, str]]:
    """Rows from a model file's metadata (engine.checkpoint.save_model) and its weight count."""
    kind = meta.get("kind")
    cfg = meta.get("config") or {}
    rows = [("Kind", KINDS.get(kind, str(kind)))]
    layers, hidden = cfg.get("num_layers"), cfg.get("hidden_size")
    if kind in ("synthesis", "prediction"):
        cell = cfg.get("cell", "peephole")
        cells = (
            "peephole cells (Sec. 2.1)"
            if cell == "peephole" or layers == 1
            else "layer 1 with peepholes, the rest plain LSTM (the fast variant)"
        )
        rows.append(("Network", f"{layers} × {hidden} LSTM, {cells}"))
        rows.append(("Output", f"{cfg.get('num_mixtures')} bivariate Gaussians + pen lift"))
        if kind == "synthesis":
            window = cfg.get("window", "graves")
            how = "the paper's" if window == "graves" else "softmax weights, softplus width/step"
            rows.append(("Window", f"{cfg.get('window_components')} Gaussians ({how})"))
        step = float(cfg.get("point_step", CORPUS_STEP))  # files from before the option
        rows.append(
            (
                "Points",
                f"spaced {step:g} units along the pen path (body height 10): about "
                f"{CORPUS_POINTS_PER_CHAR_AT_1 / step:.0f} per character",
            )
        )
        alphabet = (meta.get("alphabet") or {}).get("chars")
        if alphabet:
            rows.append(("Alphabet", f"{len(alphabet)} symbols"))
    elif kind == "text":
        rows.append(("Network", f"{layers} × {hidden} LSTM"))
    rows.append(("Parameters", f"{parameters:,}"))
    tr = meta.get("training") or {}
    if tr.get("untrained"):
        rows.append(("Training", "untrained (random weights)"))
    elif tr.get("step") is not None:
        where = tr.get("device", "?")
        if tr.get("world_size", 1) > 1:
            where += f", {tr['world_size']} processes"
        text = f"{tr['step']:,} steps on {where}"
        if tr.get("wall_time_s"):
            text += f", {_duration(float(tr['wall_time_s']))} of optimiser time"
        rows.append(("Training", text))
        task = tr.get("task") or {}
        if task.get("corpus"):
            rows.append(
                (
                    "Data",
                    f"{task['corpus']} corpus, {task.get('train_sequences', '?')} training lines",
                )
            )
        best = (tr.get("best_validation") or {}).get("nats_per_sequence")
        if best is not None:
            rows.append(
                (
                    "Validation",
                    f"{best:.1f} nats per line at step {tr.get('best_step', '?')} "
                    f"({task.get('valid_sequences', '?')} lines)",
                )
            )
    return rows


def as_text(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
