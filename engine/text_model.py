"""The text prediction network (Sec. 3): stacked skip-connected peephole LSTM with a softmax.

Input x_t is the one-hot symbol, the output y_t = softmax(ŷ_t) is Pr(x_{t+1} | x_1..x_t)
(Eqs. 1-4); the loss, BPC and dynamic evaluation live in engine.text_eval, sampling policy in
engine.text_eval.sample_stream. The vocabulary (bytes or characters) is part of the config, so a
model file describes itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from engine.lstm import SkipLSTMStack
from engine.text_data import TextDataError, Vocab


@dataclass(frozen=True)
class TextConfig:
    kind: str = "text"  # model-file kind read by engine.checkpoint
    vocab: dict = field(default_factory=lambda: Vocab().to_dict())  # Vocab.to_dict()
    hidden_size: int = 512  # Sec. 3.1 used 1 x 1000 (PTB), Sec. 3.2 7 x 700 (Wikipedia)
    num_layers: int = 1
    lstm_clip: float | None = 1.0  # derivatives clipped to [-1, 1] for text, Sec. 3.2

    def __post_init__(self):
        if self.kind != "text":
            raise TextDataError(f"a text model config has kind 'text', not {self.kind!r}")
        if self.hidden_size < 1 or self.num_layers < 1:
            raise TextDataError("hidden_size and num_layers must be >= 1")
        Vocab.from_dict(self.vocab)  # validates

    @property
    def vocabulary(self) -> Vocab:
        return Vocab.from_dict(self.vocab)

    @property
    def vocab_size(self) -> int:
        return self.vocabulary.size

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "vocab": dict(self.vocab),
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "lstm_clip": self.lstm_clip,
        }

    @classmethod
    def from_dict(cls, d: dict) -> TextConfig:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


TextState = tuple[list[Tensor], list[Tensor]]  # per-layer (h, c)


class TextModel(nn.Module):
    """forward(ids (B, T), state) -> logits ŷ (B, T, K), new state (Eqs. 1-3)."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.config = config
        K, H, N = config.vocab_size, config.hidden_size, config.num_layers
        # Layer n >= 2 sees [x_t, h^{n-1}_t] (Eq. 2); the output sees every layer (Eq. 3).
        self.stack = SkipLSTMStack(K, H, N)
        self.output = nn.Linear(N * H, K)

    @property
    def vocab(self) -> Vocab:
        return self.config.vocabulary

    def initial_state(self, batch: int) -> TextState:
        w = self.output.weight
        return self.stack.zero_state(batch, w.device, w.dtype)

    def _input_projection(self, cell, ids: Tensor, below: Tensor | None) -> Tensor:
        """W_x [onehot(x_t), h^{n-1}_t] + b for a whole sequence -> (B, T, 4H).

        W_x onehot(k) is column k of W_x, so the one-hot product is an index_select of the
        input-weight columns: the same function and gradient as the paper's one-hot input,
        without a (B, T, K) matrix product.
        """
        K = self.config.vocab_size
        w_x = cell.weight_x  # (4H, K [+ H])
        gx = torch.nn.functional.embedding(ids, w_x[:, :K].t()) + cell.bias  # (B, T, 4H)
        if below is not None:
            gx = gx + below @ w_x[:, K:].t()
        return gx

    def forward(self, ids: Tensor, state: TextState | None = None) -> tuple[Tensor, TextState]:
        if ids.dim() != 2:
            raise ValueError(f"ids must be (batch, time), got shape {tuple(ids.shape)}")
        h, c = state if state is not None else self.initial_state(ids.shape[0])
        h, c = list(h), list(c)
        clip = self.config.lstm_clip if self.training else None
        below, hidden = None, []
        for n, cell in enumerate(self.stack.cells):
            gx = self._input_projection(cell, ids, below)
            below, h[n], c[n] = cell.run(gx, h[n], c[n], clip=clip)  # (B, T, H)
            hidden.append(below)
        logits = self.output(torch.cat(hidden, dim=-1))  # Eq. 3: (B, T, K)
        return logits, (h, c)

    @torch.no_grad()
    def step(self, ids: Tensor, state: TextState) -> tuple[Tensor, TextState]:
        """One symbol per stream: ids (B,) -> logits (B, K), new state."""
        logits, state = self.forward(ids[:, None], state)
        return logits[:, 0], state


def detach_state(state: TextState) -> TextState:
    h, c = state
    return [x.detach() for x in h], [x.detach() for x in c]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
