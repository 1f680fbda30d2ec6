"""The paper's optimiser: centred RMSProp with momentum (Sec. 4.2, Eqs. 38-41).

torch.optim.RMSprop(centered=True) adds epsilon outside the square root; the paper adds it
inside (Eq. 40), so we implement the update exactly as written.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RMSPropConfig:
    lr: float = 1e-4  # ℷ, Eq. 40
    alpha: float = 0.95  # ℵ, Eqs. 38-39
    momentum: float = 0.9  # ℶ, Eq. 40
    eps: float = 1e-4  # ℸ, Eq. 40


class GravesRMSProp(torch.optim.Optimizer):
    """n = ℵn + (1-ℵ)ε²; g = ℵg + (1-ℵ)ε; Δ = ℶΔ - ℷ ε / sqrt(n - g² + ℸ); w += Δ."""

    def __init__(self, params, lr=1e-4, alpha=0.95, momentum=0.9, eps=1e-4):
        if lr <= 0 or not 0 <= alpha < 1 or not 0 <= momentum < 1 or eps <= 0:
            raise ValueError("need lr > 0, 0 <= alpha < 1, 0 <= momentum < 1, eps > 0")
        super().__init__(params, dict(lr=lr, alpha=alpha, momentum=momentum, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            a, m, lr, eps = group["alpha"], group["momentum"], group["lr"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                st = self.state[p]
                if not st:
                    st["n"] = torch.zeros_like(p)
                    st["g"] = torch.zeros_like(p)
                    st["delta"] = torch.zeros_like(p)
                n, g, delta = st["n"], st["g"], st["delta"]
                n.mul_(a).addcmul_(grad, grad, value=1 - a)  # Eq. 38
                g.mul_(a).add_(grad, alpha=1 - a)  # Eq. 39
                denom = (n - g * g).add_(eps).sqrt_()
                delta.mul_(m).addcdiv_(grad, denom, value=-lr)  # Eq. 40
                p.add_(delta)  # Eq. 41
        return loss


def make_optimizer(name: str, params, lr: float | None = None):
    """'rmsprop' (the paper's, default) or 'adam'."""
    if name == "rmsprop":
        return GravesRMSProp(params, lr=lr or 1e-4)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr or 1e-3)
    raise ValueError(f"unknown optimiser {name!r}; choose 'rmsprop' or 'adam'")
