"""The text predictor as a Task for the shared trainer (engine.trainer), Sec. 3.2 setting.

Consecutive fixed-length sequences from B parallel contiguous streams, no shuffling; the LSTM
state carries across sequences (truncated backprop at sequence boundaries) and is reset every
`reset_every` sequences. Derivative clipping to [-1, 1] is the model's (TextConfig.lstm_clip);
weight noise, the optimiser, checkpoints, resume and step reports are the shared Trainer's.

The data position saved in checkpoints is the sequence counter plus the carried state itself
(float32, base64 in the JSON), so a resumed run continues bit-for-bit on the same stream.
"""

from __future__ import annotations

import base64

import numpy as np
import torch
import torch.nn.functional as F

from engine import EngineError
from engine.text_data import StreamBatcher
from engine.text_eval import LOG2E, evaluate
from engine.text_model import TextModel, TextState, detach_state


class TextTrainError(EngineError, ValueError):
    """Training settings that cannot be used for the text model."""


def _pack(t: torch.Tensor) -> dict:
    a = t.detach().to("cpu", torch.float32).contiguous().numpy()
    return {"shape": list(a.shape), "f32": base64.b64encode(a.tobytes()).decode("ascii")}


def _unpack(d: dict) -> torch.Tensor:
    raw = np.frombuffer(base64.b64decode(d["f32"]), dtype=np.float32).reshape(d["shape"])
    return torch.from_numpy(raw.copy())


class TextTask:
    """engine.trainer.Task for the text predictor."""

    alphabet = None  # the vocabulary travels in TextConfig
    norm = None

    def __init__(
        self,
        model: TextModel,
        train_ids,
        valid_ids=None,
        batch_size: int = 32,
        seq_len: int = 100,  # Sec. 3.2: 100-symbol sequences
        reset_every: int = 100,  # Sec. 3.2: state reset every 100 sequences
        valid_streams: int = 16,
    ):
        self.model = model
        self.batcher = StreamBatcher(train_ids, batch_size, seq_len, reset_every)
        self.valid_ids = valid_ids
        self.valid_streams = valid_streams
        self.batch_size, self.seq_len = batch_size, seq_len
        self.position = 0  # sequences consumed since training began
        self.state: TextState | None = None
        self.device = torch.device("cpu")

    def describe(self) -> dict:
        return {
            "task": "text",
            "train_symbols": len(self.batcher.ids),
            "valid_symbols": 0 if self.valid_ids is None else len(self.valid_ids),
            "batch_streams": self.batch_size,
            "seq_len": self.seq_len,
            "reset_every": self.batcher.reset_every,
            "epochs": round(self.batcher.epoch(self.position), 3),
        }

    # -- data position -----------------------------------------------------------------------
    def data_position(self) -> dict:
        carry = None
        if self.state is not None:
            h, c = self.state
            carry = {"h": [_pack(x) for x in h], "c": [_pack(x) for x in c]}
        return {"position": self.position, "carry": carry}

    def set_data_position(self, position: dict) -> None:
        self.position = int(position["position"])
        carry = position.get("carry")
        self.state = None
        if carry is not None:
            to = lambda d: _unpack(d).to(self.device)  # noqa: E731
            self.state = ([to(x) for x in carry["h"]], [to(x) for x in carry["c"]])

    # -- batches and loss --------------------------------------------------------------------
    def next_batch(self, rank: int = 0, world_size: int = 1):
        """Sequence `position` of all B streams; rank r of W takes streams r::W."""
        if self.batch_size % world_size:
            raise TextTrainError(
                f"{self.batch_size} streams cannot be shared evenly by {world_size} processes"
            )
        x, y, reset = self.batcher.get(self.position)
        self.position += 1
        x, y = x[rank::world_size], y[rank::world_size]
        return torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device), reset

    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        x, y, reset = batch
        if reset or self.state is None or self.state[0][0].shape[0] != x.shape[0]:
            self.state = self.model.initial_state(x.shape[0])
        logits, state = self.model(x, self.state)  # (B, T, K)
        self.state = detach_state(state)  # truncated backprop at the sequence boundary
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
        per_point = nll.item()
        metrics = {
            "sequences": x.shape[0],
            "points": y.numel(),
            "nats_per_point": per_point,
            "nats_per_sequence": per_point * y.shape[1],
            "bpc": per_point * LOG2E,
        }
        return nll, metrics

    def validate(self) -> dict:
        if self.valid_ids is None or len(self.valid_ids) < 2:
            raise TextTrainError("no validation text: hold out a tail with --valid-tail")
        r = evaluate(self.model, self.valid_ids, streams=self.valid_streams)
        nats = r.bpc / LOG2E
        return {"bpc": r.bpc, "nats_per_point": nats, "nats_per_sequence": nats * self.seq_len}

    def to(self, device) -> None:
        self.device = torch.device(device)
        self.model.to(self.device)
        if self.state is not None:
            self.state = tuple([t.to(self.device) for t in part] for part in self.state)
