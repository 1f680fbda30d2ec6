"""The paper's handwriting networks: prediction (Sec. 4) and synthesis (Sec. 5).

Both return raw mixture outputs y_hat (B, T, 1+6M) and the recurrent state as one record;
the loss lives in engine.mixture and sampling policy in engine.sampler.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import torch
from torch import Tensor, nn

from engine.data.preprocess import CORPUS_STEP
from engine.lstm import SkipLSTMStack, clip_derivative
from engine.mixture import output_size
from engine.window import WINDOWS, SoftWindow


@dataclass(frozen=True)
class HandwritingConfig:
    kind: str = "synthesis"  # "synthesis" (Sec. 5) or "prediction" (Sec. 4)
    hidden_size: int = 400  # Sec. 4.2 / 5.2: 3 x 400
    num_layers: int = 3
    num_mixtures: int = 20  # M, Sec. 4.2
    window_components: int = 10  # K, Sec. 5.2
    alphabet_size: int = 95  # printable ASCII; the paper had 57 symbols
    lstm_clip: float | None = 10.0  # LSTM derivative clip [-10, 10], Sec. 4.2
    output_clip: float | None = 100.0  # output derivative clip [-100, 100], Sec. 4.2
    # "peephole": every layer as in Sec. 2.1; "lstm": the fast training variant, layers 2..N as
    # whole-sequence nn.LSTM without peepholes (deviation from Eqs. 7-10, see engine.fast)
    cell: str = "peephole"
    # "graves": the window of Eqs. 49-51; "softplus": softmax weights, softplus width and step
    # (an option, not the paper's; see engine.window)
    window: str = "graves"
    # arc-length spacing of the ink the network reads and writes, in preprocessed units (body
    # height 10): 0.9 is the corpus's ~27 points per character (the paper's "more than 25
    # timesteps" per letter); 1.8 halves the points per character (engine.data.preprocess.
    # respace), so a line is half as many steps to train, sample and align the window over
    point_step: float = CORPUS_STEP

    def __post_init__(self):
        if self.kind not in ("synthesis", "prediction"):
            raise ValueError(f"kind must be 'synthesis' or 'prediction', not {self.kind!r}")
        if self.cell not in ("peephole", "lstm"):
            raise ValueError(f"cell must be 'peephole' or 'lstm', not {self.cell!r}")
        if self.window not in WINDOWS:
            raise ValueError(f"window must be one of {', '.join(WINDOWS)}, not {self.window!r}")
        if not (isinstance(self.point_step, (int, float)) and 0.1 <= self.point_step <= 10):
            raise ValueError(f"point_step must be between 0.1 and 10, not {self.point_step!r}")
        for name in ("hidden_size", "num_layers", "num_mixtures", "window_components"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> HandwritingConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


PRESETS: dict[str, dict] = {
    "paper": dict(hidden_size=400, num_layers=3),  # Sec. 5.2: ~3.7M weights
    "large": dict(hidden_size=320, num_layers=3),
    "medium": dict(hidden_size=256, num_layers=3),
    "small": dict(hidden_size=128, num_layers=2, num_mixtures=10, window_components=8),
    "tiny": dict(hidden_size=32, num_layers=1, num_mixtures=3, window_components=2),
}


def preset(name: str, kind: str = "synthesis", **overrides) -> HandwritingConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return replace(HandwritingConfig(kind=kind, **PRESETS[name]), **overrides)


@dataclass
class State:
    """All recurrent state in one record: per-layer (h, c) and, for synthesis, the window."""

    h: list[Tensor]
    c: list[Tensor]
    kappa: Tensor | None = None  # (B, K) window locations
    w: Tensor | None = None  # (B, V) window vector w_{t-1}
    extras: dict = field(default_factory=dict)

    def detach(self) -> State:
        d = lambda t: None if t is None else t.detach()  # noqa: E731
        return State(
            [x.detach() for x in self.h], [x.detach() for x in self.c], d(self.kappa), d(self.w)
        )


class HandwritingModel(nn.Module):
    """Prediction network (Sec. 4) or, with `kind="synthesis"`, the synthesis network (Sec. 5)."""

    def __init__(self, config: HandwritingConfig):
        super().__init__()
        self.config = config
        cfg = config
        self.synthesis = cfg.kind == "synthesis"
        V = cfg.alphabet_size if self.synthesis else 0
        self.upper = None
        stacked = cfg.num_layers
        if cfg.cell == "lstm" and cfg.num_layers > 1:
            from engine.fast import UpperLSTMStack

            stacked = 1  # layers 2..N live in self.upper
            self.upper = UpperLSTMStack(
                3 + V + cfg.hidden_size, cfg.hidden_size, cfg.num_layers - 1
            )
        self.stack = SkipLSTMStack(3, cfg.hidden_size, stacked, window_size=V)
        self.window = (
            SoftWindow(cfg.hidden_size, cfg.window_components, cfg.window)
            if self.synthesis
            else None
        )
        self.output = nn.Linear(cfg.num_layers * cfg.hidden_size, output_size(cfg.num_mixtures))

    # -- state -------------------------------------------------------------------------------
    def initial_state(self, batch: int, device=None) -> State:
        device = device or self.output.weight.device
        dtype = self.output.weight.dtype
        h, c = self.stack.zero_state(batch, device, dtype)
        if self.upper is not None:  # cell="lstm": layers 2..N start from zero too
            h, c = h * self.config.num_layers, c * self.config.num_layers
        if not self.synthesis:
            return State(h, c)
        K, V = self.config.window_components, self.config.alphabet_size
        return State(
            h,
            c,
            torch.zeros(batch, K, device=device, dtype=dtype),
            torch.zeros(batch, V, device=device, dtype=dtype),
        )

    def encode_text(self, indices: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Character indices (B, U) -> one-hot (B, U+1, V), zero on padding and on the extra
        position U+1 that the stop rule reads (Sec. 5.3)."""
        B, U = indices.shape
        onehot = torch.zeros(
            B,
            U + 1,
            self.config.alphabet_size,
            device=indices.device,
            dtype=self.output.weight.dtype,
        )
        onehot[:, :U].scatter_(2, indices.clamp_min(0).unsqueeze(-1), 1.0)
        if lengths is not None:
            pad = torch.arange(U + 1, device=indices.device)[None] >= lengths[:, None]
            onehot[pad] = 0.0
        return onehot

    # -- teacher-forced whole sequences (training, priming, evaluation) ----------------------
    def forward(
        self,
        x: Tensor,
        state: State | None = None,
        onehot: Tensor | None = None,
        return_phi: bool = False,
    ) -> tuple[Tensor, State]:
        """x: (B, T, 3) inputs (x_1 = 0, Sec. 2). Returns y_hat (B, T, 1+6M) and the new state;
        with return_phi, state.extras['phi'] holds phi (B, T, U+1)."""
        B = x.shape[0]
        state = state or self.initial_state(B, x.device)
        clip = self.config.lstm_clip if self.training else None
        if self.synthesis:
            if onehot is None:
                raise ValueError("the synthesis network needs the text (onehot)")
            seqs, state = self._run_window_layer(x, state, onehot, clip, return_phi)
            if self.upper is not None:
                side = state.extras["w_seq"]
                rest, h, c = self.upper(x, side, seqs, state.h, state.c, clip=clip)
            else:
                rest, h, c = self.stack.run_layers(
                    x, state.h, state.c, side=state.extras["w_seq"], first=1, below=seqs, clip=clip
                )
            state.h, state.c = h, c
            hidden = [seqs] + rest
            state.extras.pop("w_seq")
        else:
            hidden, h, c = self.stack.run_layers(x, state.h, state.c, clip=clip)
            if self.upper is not None:
                rest, h, c = self.upper(x, None, hidden[-1], h, c, clip=clip)
                hidden = hidden + rest
            state = State(h, c)
        y_hat = self.output(torch.cat(hidden, dim=-1))  # Eq. 3
        if self.training:
            y_hat = clip_derivative(y_hat, self.config.output_clip)
        return y_hat, state

    def _run_window_layer(self, x, state, onehot, clip, return_phi):
        """Layer 1 and the window, the only part that must loop step by step (Eqs. 46-52)."""
        cell = self.stack.cells[0]
        gx = cell.project_input(x)  # (B, T, 4H) in one matmul
        positions = torch.arange(1, onehot.shape[1] + 1, device=x.device, dtype=x.dtype)
        h, c, kappa, w = state.h[0], state.c[0], state.kappa, state.w
        hs, ws, phis = [], [], []
        for gx_t in gx.unbind(1):
            h, c = cell(gx_t, h, c, extra=w, clip=clip)  # Eq. 52: sees w_{t-1}
            w, kappa, phi = self.window(h, kappa, onehot, positions)
            hs.append(h)
            ws.append(w)
            if return_phi:
                phis.append(phi)
        new = State([h] + list(state.h[1:]), [c] + list(state.c[1:]), kappa, w)
        new.extras["w_seq"] = torch.stack(ws, dim=1)  # (B, T, V): w_t for layers 2..N (Eq. 53)
        if return_phi:
            new.extras["phi"] = torch.stack(phis, dim=1)
        return torch.stack(hs, dim=1), new

    # -- one step (sampling) -----------------------------------------------------------------
    @torch.no_grad()
    def step(
        self,
        x_t: Tensor,
        state: State,
        onehot: Tensor | None = None,
        positions: Tensor | None = None,
    ) -> tuple[Tensor, State, Tensor | None]:
        """x_t: (B, 3) -> (y_hat (B, 1+6M), new state, phi (B, U+1) or None)."""
        cells = self.stack.cells
        hs, cs, phi = [], [], None
        if self.synthesis:
            h, c = cells[0](cells[0].project_input(x_t), state.h[0], state.c[0], extra=state.w)
            if positions is None:
                positions = torch.arange(1, onehot.shape[1] + 1, device=x_t.device, dtype=x_t.dtype)
            w, kappa, phi = self.window(h, state.kappa, onehot, positions)
            hs.append(h)
            cs.append(c)
            side = [x_t, w]
        else:
            kappa = w = None
            side = [x_t]
        for n in range(len(hs), self.config.num_layers):
            inp = torch.cat(side + ([hs[-1]] if n else []), dim=1)
            if n >= len(cells):  # cell="lstm": layers 2..N are nn.LSTM layers
                h, c = self.upper.step(n - 1, inp, state.h[n], state.c[n])
            else:
                h, c = cells[n](cells[n].project_input(inp), state.h[n], state.c[n])
            hs.append(h)
            cs.append(c)
        y_hat = self.output(torch.cat(hs, dim=1))
        return y_hat, State(hs, cs, kappa, w), phi


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
