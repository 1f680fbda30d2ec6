"""LSTM with diagonal peepholes (Sec. 2.1, Eqs. 7-11) and the paper's derivative clipping.

The cell takes its input projection precomputed (`gx` = W_x x_t + b): for a known sequence the
projection of every timestep is one matrix product, so the recurrent loop only does
h_{t-1} @ W_h per step (one fused gate matmul per layer per step).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class _ClipGrad(torch.autograd.Function):
    """Identity forward; clamps the incoming derivative to [-bound, bound] on the way back."""

    @staticmethod
    def forward(ctx, x: Tensor, bound: float) -> Tensor:
        ctx.bound = bound
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad.clamp(-ctx.bound, ctx.bound), None


def clip_derivative(x: Tensor, bound: float | None) -> Tensor:
    """Clip dL/dx to [-bound, bound] in backward (Sec. 2.1/4.2); no-op when bound is None."""
    if bound is None or not x.requires_grad:
        return x
    return _ClipGrad.apply(x, bound)


class PeepholeLSTMCell(nn.Module):
    """One LSTM layer with peepholes. Gate order in the fused weights: i, f, c (cell input), o."""

    def __init__(self, input_size: int, hidden_size: int, recurrent_extra: int = 0):
        super().__init__()
        H = hidden_size
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_x = nn.Parameter(torch.empty(4 * H, input_size))  # W_x{i,f,c,o}
        # Recurrent weights; `recurrent_extra` columns take inputs that are only known inside the
        # loop (the synthesis net's window w_{t-1}, Eq. 52) so they share the step's matmul.
        self.weight_h = nn.Parameter(torch.empty(4 * H, H + recurrent_extra))
        self.bias = nn.Parameter(torch.zeros(4 * H))
        self.w_ci = nn.Parameter(torch.zeros(H))  # diagonal peepholes (Eqs. 7, 8, 10)
        self.w_cf = nn.Parameter(torch.zeros(H))
        self.w_co = nn.Parameter(torch.zeros(H))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in (self.weight_x, self.weight_h, self.w_ci, self.w_cf, self.w_co):
            nn.init.uniform_(p, -bound, bound)
        with torch.no_grad():
            self.bias.zero_()
            # deviation from the paper (which does not state an initialisation): forget-gate
            # bias 1 so early training keeps its memory.
            self.bias[self.hidden_size : 2 * self.hidden_size] = 1.0

    def project_input(self, x: Tensor) -> Tensor:
        """W_x x + b for any leading shape: (..., in) -> (..., 4H)."""
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight_x.t()).view(
            *x.shape[:-1], 4 * self.hidden_size
        )

    def forward(
        self,
        gx: Tensor,
        h: Tensor,
        c: Tensor,
        extra: Tensor | None = None,
        clip: float | None = None,
    ) -> tuple[Tensor, Tensor]:
        """One step. gx: (B, 4H) input projection; h, c: (B, H); extra: (B, recurrent_extra)."""
        rec = h if extra is None else torch.cat([h, extra], dim=1)
        gates = torch.addmm(gx, rec, self.weight_h.t())  # (B, 4H)
        a_i, a_f, a_c, a_o = gates.chunk(4, dim=1)
        a_i = a_i + self.w_ci * c
        a_f = a_f + self.w_cf * c
        if clip is not None:
            a_i, a_f, a_c = (clip_derivative(a, clip) for a in (a_i, a_f, a_c))
        i = torch.sigmoid(a_i)  # Eq. 7
        f = torch.sigmoid(a_f)  # Eq. 8
        c_new = f * c + i * torch.tanh(a_c)  # Eq. 9
        a_o = a_o + self.w_co * c_new
        if clip is not None:
            a_o = clip_derivative(a_o, clip)
        o = torch.sigmoid(a_o)  # Eq. 10
        return o * torch.tanh(c_new), c_new  # Eq. 11

    def run(
        self, gx: Tensor, h: Tensor, c: Tensor, clip: float | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Whole sequence with a precomputed projection gx (B, T, 4H) -> (hs (B, T, H), h, c)."""
        outs = []
        for gx_t in gx.unbind(1):  # unbind once: per-step indexing slows backward (platform notes)
            h, c = self(gx_t, h, c, clip=clip)
            outs.append(h)
        return torch.stack(outs, dim=1), h, c


class SkipLSTMStack(nn.Module):
    """N stacked peephole layers with skip connections (Eqs. 1-3, Fig. 1).

    Layer n >= 2 sees [x_t, w_t, h^{n-1}_t]; layer 1 sees x_t and, when `window_size` > 0, the
    previous window w_{t-1} as a recurrent input (Eqs. 52-53). The output layer sees every layer:
    y_hat = b_y + sum_n W_{hn y} h^n_t (Eq. 3).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, window_size: int = 0):
        super().__init__()
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.cells = nn.ModuleList(
            [PeepholeLSTMCell(input_size, hidden_size, recurrent_extra=window_size)]
            + [
                PeepholeLSTMCell(input_size + window_size + hidden_size, hidden_size)
                for _ in range(num_layers - 1)
            ]
        )

    def zero_state(self, batch: int, device=None, dtype=None) -> tuple[list[Tensor], list[Tensor]]:
        z = torch.zeros(batch, self.hidden_size, device=device, dtype=dtype)
        return [z] * self.num_layers, [z] * self.num_layers

    def run_layers(
        self,
        x: Tensor,
        h: list[Tensor],
        c: list[Tensor],
        side: Tensor | None = None,
        first: int = 0,
        below: Tensor | None = None,
        clip: float | None = None,
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Run layers first..N-1 over a whole sequence, layer by layer.

        x: (B, T, in); side: (B, T, side) or None; below: hidden sequence of layer first-1.
        Returns (hidden sequences of those layers, new h, new c).
        """
        h, c = list(h), list(c)
        seqs = []
        for n in range(first, self.num_layers):
            parts = [x] + ([side] if side is not None and n else []) + ([below] if n else [])
            gx = self.cells[n].project_input(torch.cat(parts, dim=-1))  # (B, T, 4H)
            below, h[n], c[n] = self.cells[n].run(gx, h[n], c[n], clip=clip)
            seqs.append(below)
        return seqs, h, c
