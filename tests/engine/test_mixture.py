"""Mixture density head (Eqs. 17-26) against closed forms and brute force."""

import math

import numpy as np
import torch

from engine.mixture import (
    bivariate_log_density,
    expected_offset,
    log_one_minus_tanh2,
    output_size,
    point_nll,
    sequence_nll,
    split_params,
    sse_per_point,
)


def test_bivariate_density_matches_hand_computation():
    # x = (1, 2), mu = (0.5, 1), sigma = (2, 0.5), rho = 0.3 (Eqs. 24-25 by hand)
    x1, x2, m1, m2, s1, s2, rho = 1.0, 2.0, 0.5, 1.0, 2.0, 0.5, 0.3
    Z = ((x1 - m1) / s1) ** 2 + ((x2 - m2) / s2) ** 2 - 2 * rho * (x1 - m1) * (x2 - m2) / (s1 * s2)
    expected = math.exp(-Z / (2 * (1 - rho**2))) / (2 * math.pi * s1 * s2 * math.sqrt(1 - rho**2))
    got = bivariate_log_density(
        torch.tensor([[x1, x2]], dtype=torch.float64),
        torch.tensor([[[m1, m2]]], dtype=torch.float64),
        torch.log(torch.tensor([[[s1, s2]]], dtype=torch.float64)),
        torch.atanh(torch.tensor([[rho]], dtype=torch.float64)),
    ).exp()
    assert abs(got.item() - expected) < 1e-12
    assert abs(expected - 0.021110) < 1e-5  # Z = 3.7625 worked by hand


def test_log_one_minus_tanh2_is_exact_and_finite_at_extremes():
    r = torch.tensor([-3.0, -0.5, 0.0, 0.7, 4.0], dtype=torch.float64)
    assert torch.allclose(log_one_minus_tanh2(r), torch.log(1 - torch.tanh(r) ** 2))
    big = torch.tensor([30.0, -50.0, 200.0], dtype=torch.float64)
    naive = torch.log(1 - torch.tanh(big) ** 2)
    assert torch.isinf(naive).all()  # naive code breaks here...
    assert torch.isfinite(log_one_minus_tanh2(big)).all()  # ...ours does not
    assert torch.allclose(log_one_minus_tanh2(big), 2 * (math.log(2) - big.abs()))


def _random_params(B, T, M, gen):
    return torch.randn(B, T, output_size(M), generator=gen, dtype=torch.float64)


def test_mixture_nll_equals_minus_log_of_brute_force_sum():
    gen = torch.Generator().manual_seed(0)
    B, T, M = 3, 5, 4
    y_hat = _random_params(B, T, M, gen)
    target = torch.randn(B, T, 3, generator=gen, dtype=torch.float64)
    target[..., 2] = (target[..., 2] > 0).double()
    p = split_params(y_hat)
    nll = point_nll(p, target)
    pi, mu, sigma, rho, e = (t.numpy() for t in (p.pi, p.mu, p.sigma, p.rho, p.e))
    x = target.numpy()
    for b in range(B):
        for t in range(T):
            dens = 0.0
            for j in range(M):
                s1, s2 = sigma[b, t, j]
                d1, d2 = x[b, t, 0] - mu[b, t, j, 0], x[b, t, 1] - mu[b, t, j, 1]
                r = rho[b, t, j]
                Z = (d1 / s1) ** 2 + (d2 / s2) ** 2 - 2 * r * d1 * d2 / (s1 * s2)
                dens += (
                    pi[b, t, j]
                    * math.exp(-Z / (2 * (1 - r * r)))
                    / (2 * math.pi * s1 * s2 * math.sqrt(1 - r * r))
                )
            pe = e[b, t] if x[b, t, 2] == 1 else 1 - e[b, t]
            assert abs(nll[b, t].item() - (-math.log(dens * pe))) < 1e-9


def test_nll_stable_where_naive_code_overflows():
    M = 2
    y_hat = torch.zeros(1, 1, output_size(M), dtype=torch.float32, requires_grad=True)
    with torch.no_grad():
        y_hat[..., 1 + 3 * M : 1 + 5 * M] = -20.0  # sigma = e^-20: tiny
        y_hat[..., 1 + 5 * M :] = 15.0  # rho = tanh(15) == 1 in float32
    target = torch.tensor([[[0.3, -0.2, 0.0]]])
    p = split_params(y_hat)
    # naive: density underflows to 0 and 1 - rho^2 to 0 -> inf / nan
    naive_rho = torch.tanh(y_hat[..., 1 + 5 * M :])
    assert (1 - naive_rho**2 == 0).all()
    loss = point_nll(p, target).sum()
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(y_hat.grad).all()


def test_sequence_loss_units_and_mask():
    gen = torch.Generator().manual_seed(1)
    y_hat = _random_params(2, 4, 3, gen)
    target = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64)
    target[..., 2] = 0
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.float64)
    p = split_params(y_hat)
    loss = sequence_nll(p, target, mask)
    per = point_nll(p, target)
    assert torch.allclose(loss.total, (per * mask).sum() / 2)  # nats per sequence
    assert torch.allclose(loss.per_point, (per * mask).sum() / 6)
    assert loss.points.item() == 6


def test_sse_is_squared_error_of_mixture_mean():
    y_hat = torch.zeros(1, 1, output_size(2), dtype=torch.float64)
    y_hat[..., 3:7] = torch.tensor([1.0, 2.0, 3.0, 4.0])  # mu_1 = (1,2), mu_2 = (3,4), pi equal
    p = split_params(y_hat)
    assert torch.allclose(expected_offset(p), torch.tensor([[[2.0, 3.0]]], dtype=torch.float64))
    target = torch.tensor([[[0.0, 0.0, 0.0]]], dtype=torch.float64)
    assert abs(sse_per_point(p, target).item() - 13.0) < 1e-12


def test_bias_zero_is_unbiased_and_large_bias_sharpens():
    gen = torch.Generator().manual_seed(2)
    y_hat = _random_params(1, 1, 5, gen)
    p0, praw = split_params(y_hat, bias=0.0), split_params(y_hat)
    assert torch.equal(p0.log_pi, praw.log_pi) and torch.equal(p0.log_sigma, praw.log_sigma)
    M = 5
    pi_hat = y_hat[..., 1 : 1 + M]
    assert torch.allclose(p0.pi, torch.softmax(pi_hat, -1))
    assert torch.allclose(
        p0.sigma, torch.exp(y_hat[..., 1 + 3 * M : 1 + 5 * M]).unflatten(-1, (M, 2))
    )
    pb = split_params(y_hat, bias=1.0)
    assert torch.allclose(pb.sigma, p0.sigma / math.e)  # Eq. 61
    assert torch.allclose(pb.pi, torch.softmax(pi_hat * 2, -1))  # Eq. 62
    big = split_params(y_hat, bias=50.0)
    assert big.pi.max().item() > 0.999 and big.sigma.max().item() < 1e-15
    assert np.argmax(big.pi.numpy()) == np.argmax(p0.pi.numpy())
