"""The soft attention window of the synthesis network (Sec. 5, Eqs. 46-51)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class SoftWindow(nn.Module):
    """K Gaussian window components read from the first hidden layer (Eq. 48)."""

    def __init__(self, hidden_size: int, num_components: int = 10):
        super().__init__()
        self.K = num_components
        self.linear = nn.Linear(hidden_size, 3 * num_components)  # W_{h1 p}, b_p
        with torch.no_grad():
            # deviation from the paper (no initialisation stated): start with kappa moving
            # about 1/25 character per step (IAM/our corpus ~25 points per character) and
            # beta moderately wide, so the window sweeps the text from the first update.
            K = num_components
            self.linear.bias[:K].zero_()  # alpha_hat
            self.linear.bias[K : 2 * K].fill_(math.log(0.5))  # beta_hat
            self.linear.bias[2 * K :].fill_(math.log(1.0 / 25.0))  # kappa_hat
            self.linear.weight.mul_(0.1)

    def forward(
        self, h1: Tensor, kappa_prev: Tensor, onehot: Tensor, positions: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One step. h1: (B, H); kappa_prev: (B, K); onehot: (B, U', V) zero-padded;
        positions: (U',) float = 1..U'. Returns (w (B, V), kappa (B, K), phi (B, U'))."""
        a_hat, b_hat, k_hat = self.linear(h1).chunk(3, dim=-1)  # Eq. 48, each (B, K)
        alpha = torch.exp(a_hat)  # Eq. 49
        beta = torch.exp(b_hat)  # Eq. 50
        kappa = kappa_prev + torch.exp(k_hat)  # Eq. 51
        phi = window_weights(alpha, beta, kappa, positions)  # (B, U')
        w = torch.bmm(phi.unsqueeze(1), onehot).squeeze(1)  # Eq. 47, (B, V)
        return w, kappa, phi


def window_weights(alpha: Tensor, beta: Tensor, kappa: Tensor, positions: Tensor) -> Tensor:
    """phi(t, u) = sum_k alpha_k exp(-beta_k (kappa_k - u)^2)  (Eq. 46) -> (B, U)."""
    d = kappa.unsqueeze(-1) - positions  # (B, K, U)
    return (alpha.unsqueeze(-1) * torch.exp(-beta.unsqueeze(-1) * d * d)).sum(dim=1)
