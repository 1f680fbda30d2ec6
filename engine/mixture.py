"""Mixture density output (Sec. 4, Eqs. 17-26): parameters, bias, loss and SSE.

Densities are handled in log space throughout: log N uses a closed form for log(1 - rho^2)
that stays finite when rho -> +-1, and the mixture sums with log-sum-exp (never log of summed
densities), so tiny sigmas and extreme correlations give finite losses and gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)


def output_size(num_mixtures: int) -> int:
    """1 end-of-stroke + 6 per component: pi, mu(2), sigma(2), rho (Sec. 4)."""
    return 1 + 6 * num_mixtures


@dataclass
class MixtureParams:
    """Distribution parameters for the next pen offset; shapes (..., M) or (..., M, 2)."""

    e_logit: Tensor  # (...,)  e = sigmoid(e_logit), Eq. 18 (sign convention per equations.md)
    log_pi: Tensor  # (..., M)  Eq. 19 in log space
    mu: Tensor  # (..., M, 2)  Eq. 20
    log_sigma: Tensor  # (..., M, 2)  Eq. 21 in log space
    rho_hat: Tensor  # (..., M)  rho = tanh(rho_hat), Eq. 22

    @property
    def e(self) -> Tensor:
        return torch.sigmoid(self.e_logit)

    @property
    def pi(self) -> Tensor:
        return self.log_pi.exp()

    @property
    def sigma(self) -> Tensor:
        return self.log_sigma.exp()

    @property
    def rho(self) -> Tensor:
        return torch.tanh(self.rho_hat)


def split_params(y_hat: Tensor, bias: float = 0.0) -> MixtureParams:
    """Raw output y_hat (..., 1+6M) -> parameters; `bias` b >= 0 applies Eqs. 61-62."""
    M = (y_hat.shape[-1] - 1) // 6
    e_hat, pi_hat, mu, s_hat, rho_hat = torch.split(y_hat, [1, M, 2 * M, 2 * M, M], dim=-1)
    mu = mu.unflatten(-1, (M, 2))
    s_hat = s_hat.unflatten(-1, (M, 2))
    return MixtureParams(
        e_logit=e_hat.squeeze(-1),
        log_pi=torch.log_softmax(pi_hat * (1.0 + bias), dim=-1),  # Eq. 62
        mu=mu,
        log_sigma=s_hat - bias,  # Eq. 61
        rho_hat=rho_hat,
    )


def log_one_minus_tanh2(rho_hat: Tensor) -> Tensor:
    """log(1 - tanh(r)^2) = 2 (log 2 - |r| - log1p(exp(-2|r|))): exact and stable."""
    a = rho_hat.abs()
    return 2.0 * (math.log(2.0) - a - torch.log1p(torch.exp(-2.0 * a)))


def bivariate_log_density(x: Tensor, mu: Tensor, log_sigma: Tensor, rho_hat: Tensor) -> Tensor:
    """log N(x | mu, sigma, rho) (Eqs. 24-25). x: (..., 2) broadcast against mu (..., M, 2)."""
    z = (x.unsqueeze(-2) - mu) * torch.exp(-log_sigma)  # standardised, (..., M, 2)
    rho = torch.tanh(rho_hat)
    Z = z[..., 0] ** 2 + z[..., 1] ** 2 - 2.0 * rho * z[..., 0] * z[..., 1]  # Eq. 25
    log_1mr2 = log_one_minus_tanh2(rho_hat)
    return (
        -LOG_2PI
        - log_sigma[..., 0]
        - log_sigma[..., 1]
        - 0.5 * log_1mr2
        - 0.5 * Z * torch.exp(-log_1mr2)  # Z / (2 (1 - rho^2))
    )


def point_nll(params: MixtureParams, target: Tensor) -> Tensor:
    """-log Pr(x_{t+1} | y_t) per point (Eq. 26). target: (..., 3) = (dx, dy, eos)."""
    log_mix = torch.logsumexp(
        params.log_pi
        + bivariate_log_density(target[..., :2], params.mu, params.log_sigma, params.rho_hat),
        dim=-1,
    )
    log_eos = -F.binary_cross_entropy_with_logits(params.e_logit, target[..., 2], reduction="none")
    return -(log_mix + log_eos)


@dataclass
class SequenceLoss:
    total: Tensor  # scalar: sum of NLL over valid points / batch size (nats per sequence)
    per_point: Tensor  # scalar: mean NLL per valid point (nats)
    points: Tensor  # scalar: number of valid points


def sequence_nll(params: MixtureParams, target: Tensor, mask: Tensor | None = None) -> SequenceLoss:
    """Loss in the paper's units (Tables 3-4): nats per sequence, averaged over the batch.

    target: (B, T, 3); mask: (B, T) with 1 for real points, 0 for padding.
    """
    nll = point_nll(params, target)  # (B, T)
    if mask is None:
        mask = torch.ones_like(nll)
    nll = nll * mask
    points = mask.sum()
    total = nll.sum()
    return SequenceLoss(total / target.shape[0], total / points.clamp_min(1), points)


def expected_offset(params: MixtureParams) -> Tensor:
    """Mean of the predicted offset distribution, sum_j pi_j mu_j: (..., 2)."""
    return (params.pi.unsqueeze(-1) * params.mu).sum(-2)


def sse_per_point(params: MixtureParams, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """The paper's sum-squared error per point: |E[x_{t+1}] - x_{t+1}|^2 over (dx, dy),
    in normalised units (Tables 3-4)."""
    err = ((expected_offset(params) - target[..., :2]) ** 2).sum(-1)  # (B, T)
    if mask is None:
        return err.mean()
    return (err * mask).sum() / mask.sum().clamp_min(1)
