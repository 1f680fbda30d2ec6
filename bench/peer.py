"""Peer-style baselines, measured in the same run as the engine so ratios are fair.

- `PeerSampler`: how public PyTorch Graves implementations typically sample: a TorchScript
  peephole LSTM cell with separate input/recurrent Linear layers, a Python step loop that
  concatenates the layer inputs every step, the window and the mixture in torch ops, and the
  point drawn with torch.multinomial / torch.randn / .item().
- `AllCellsSynthesis`: the plain training baseline: every layer an nn.LSTMCell stepped in a
  Python loop together with the window (the same sizes as the paper network).

Weights are random: speed does not depend on their values.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PeerPeepholeCell(torch.jit.ScriptModule):
    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.wx = nn.Linear(input_size, 4 * hidden_size)
        self.wh = nn.Linear(hidden_size, 4 * hidden_size, bias=False)
        self.w_ci = nn.Parameter(torch.randn(hidden_size) * 0.05)
        self.w_cf = nn.Parameter(torch.randn(hidden_size) * 0.05)
        self.w_co = nn.Parameter(torch.randn(hidden_size) * 0.05)

    @torch.jit.script_method
    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        gates = self.wx(x) + self.wh(h)
        i, f, g, o = gates.chunk(4, 1)
        i = torch.sigmoid(i + self.w_ci * c)
        f = torch.sigmoid(f + self.w_cf * c)
        c = f * c + i * torch.tanh(g)
        o = torch.sigmoid(o + self.w_co * c)
        return o * torch.tanh(c), c


class PeerSampler(nn.Module):
    """3 x 400 synthesis network in the peer style, batch 1."""

    def __init__(self, H=400, layers=3, V=95, K=10, M=20):
        super().__init__()
        self.H, self.V, self.K, self.M = H, V, K, M
        self.cells = nn.ModuleList(
            [PeerPeepholeCell(3 + V, H)]
            + [PeerPeepholeCell(3 + V + H, H) for _ in range(layers - 1)]
        )
        self.window = nn.Linear(H, 3 * K)
        self.out = nn.Linear(layers * H, 1 + 6 * M)

    @torch.no_grad()
    def sample(self, onehot: Tensor, steps: int, bias: float = 0.0):
        """onehot (1, U, V). Yields (dx, dy, eos) floats, one per step."""
        H, K, M = self.H, self.K, self.M
        h = [torch.zeros(1, H) for _ in self.cells]
        c = [torch.zeros(1, H) for _ in self.cells]
        kappa, w = torch.zeros(1, K), torch.zeros(1, self.V)
        u = torch.arange(1, onehot.shape[1] + 1, dtype=torch.float32)
        x = torch.zeros(1, 3)
        for _ in range(steps):
            h[0], c[0] = self.cells[0](torch.cat([x, w], 1), h[0], c[0])
            a, b, k = torch.exp(self.window(h[0])).chunk(3, 1)
            kappa = kappa + k
            phi = (a.unsqueeze(2) * torch.exp(-b.unsqueeze(2) * (kappa.unsqueeze(2) - u) ** 2)).sum(
                1
            )
            w = torch.bmm(phi.unsqueeze(1), onehot).squeeze(1)
            for n in range(1, len(self.cells)):
                h[n], c[n] = self.cells[n](torch.cat([x, w, h[n - 1]], 1), h[n], c[n])
            y = self.out(torch.cat(h, 1))[0]
            e = torch.sigmoid(y[0])
            pi = torch.softmax(y[1 : 1 + M] * (1 + bias), 0)
            mu = y[1 + M : 1 + 3 * M].view(M, 2)
            sigma = torch.exp(y[1 + 3 * M : 1 + 5 * M].view(M, 2) - bias)
            rho = torch.tanh(y[1 + 5 * M :])
            j = int(torch.multinomial(pi, 1).item())
            z = torch.randn(2)
            dx = mu[j, 0] + sigma[j, 0] * z[0]
            dy = mu[j, 1] + sigma[j, 1] * (rho[j] * z[0] + torch.sqrt(1 - rho[j] ** 2) * z[1])
            eos = float(torch.bernoulli(e).item())
            x = torch.tensor([[dx.item(), dy.item(), eos]])
            yield x


class AllCellsSynthesis(nn.Module):
    """Training baseline: every layer an nn.LSTMCell, stepped with the window in Python."""

    def __init__(self, H=400, layers=3, V=95, K=10, M=20):
        super().__init__()
        self.H, self.K = H, K
        self.cells = nn.ModuleList(
            [nn.LSTMCell(3 + V, H)] + [nn.LSTMCell(3 + V + H, H) for _ in range(layers - 1)]
        )
        self.window = nn.Linear(H, 3 * K)
        self.out = nn.Linear(layers * H, 1 + 6 * M)

    def forward(self, x: Tensor, onehot: Tensor) -> Tensor:
        """x (B, T, 3), onehot (B, U, V) -> y_hat (B, T, 1+6M)."""
        B = x.shape[0]
        h = [x.new_zeros(B, self.H) for _ in self.cells]
        c = [x.new_zeros(B, self.H) for _ in self.cells]
        kappa, w = x.new_zeros(B, self.K), x.new_zeros(B, onehot.shape[2])
        u = torch.arange(1, onehot.shape[1] + 1, dtype=x.dtype, device=x.device)
        outs = []
        for x_t in x.unbind(1):
            h[0], c[0] = self.cells[0](torch.cat([x_t, w], 1), (h[0], c[0]))
            a, b, k = torch.exp(self.window(h[0])).chunk(3, 1)
            kappa = kappa + k
            phi = (a.unsqueeze(2) * torch.exp(-b.unsqueeze(2) * (kappa.unsqueeze(2) - u) ** 2)).sum(
                1
            )
            w = torch.bmm(phi.unsqueeze(1), onehot).squeeze(1)
            for n in range(1, len(self.cells)):
                h[n], c[n] = self.cells[n](torch.cat([x_t, w, h[n - 1]], 1), (h[n], c[n]))
            outs.append(torch.cat(h, 1))
        return self.out(torch.stack(outs, 1))
