"""LSTM cell, soft window, optimiser and whole networks against closed forms and invariants."""

import math

import numpy as np
import pytest
import torch

from engine.lstm import PeepholeLSTMCell, clip_derivative
from engine.mixture import sequence_nll, split_params
from engine.models import HandwritingConfig, HandwritingModel, preset
from engine.optim import GravesRMSProp
from engine.window import SoftWindow, window_weights


def test_peephole_cell_matches_equations_7_to_11():
    torch.manual_seed(0)
    cell = PeepholeLSTMCell(3, 4).double()
    x, h, c = torch.randn(2, 3).double(), torch.randn(2, 4).double(), torch.randn(2, 4).double()
    h_new, c_new = cell(cell.project_input(x), h, c)
    Wx, Wh, b = cell.weight_x, cell.weight_h, cell.bias
    pre = x @ Wx.T + h @ Wh.T + b
    a_i, a_f, a_c, a_o = pre.chunk(4, 1)
    i = torch.sigmoid(a_i + cell.w_ci * c)
    f = torch.sigmoid(a_f + cell.w_cf * c)
    c_ref = f * c + i * torch.tanh(a_c)
    o = torch.sigmoid(a_o + cell.w_co * c_ref)  # Eq. 10 peeks at c_t, not c_{t-1}
    assert torch.allclose(c_new, c_ref) and torch.allclose(h_new, o * torch.tanh(c_ref))


def test_peephole_cell_gradcheck():
    torch.manual_seed(1)
    cell = PeepholeLSTMCell(3, 5, recurrent_extra=2).double()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    extra = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)

    def f(x, h, c, extra):
        return cell(cell.project_input(x), h, c, extra=extra)

    assert torch.autograd.gradcheck(f, (x, h, c, extra))


def test_clip_derivative_clips_backward_only():
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = clip_derivative(x, 10.0)
    assert torch.equal(y, x)
    (y * torch.tensor([100.0, -100.0, 5.0])).sum().backward()
    assert torch.equal(x.grad, torch.tensor([10.0, -10.0, 5.0]))


def test_lstm_clip_hooks_bound_preactivation_gradients():
    torch.manual_seed(2)
    cell = PeepholeLSTMCell(2, 3)
    grads = []
    orig = clip_derivative

    def spy(t, bound):
        out = orig(t, bound)
        out.register_hook(lambda g: grads.append(g.abs().max().item()))
        return out

    import engine.lstm as lstm_mod

    lstm_mod.clip_derivative, saved = spy, lstm_mod.clip_derivative
    try:
        x = torch.randn(4, 2)
        h, c = cell(cell.project_input(x), torch.zeros(4, 3), torch.zeros(4, 3), clip=0.01)
        (h.sum() * 1e4).backward()
    finally:
        lstm_mod.clip_derivative = saved
    assert len(grads) == 4
    # the gradient reaching the weights is bounded by the clipped pre-activation derivatives
    assert cell.weight_x.grad.abs().max().item() <= 0.01 * x.abs().sum(0).max().item() + 1e-6


def test_window_matches_equations_46_and_47():
    alpha = torch.tensor([[0.5, 2.0]])
    beta = torch.tensor([[1.0, 0.25]])
    kappa = torch.tensor([[1.5, 3.0]])
    U = 4
    phi = window_weights(alpha, beta, kappa, torch.arange(1, U + 1, dtype=torch.float32))
    for u in range(1, U + 1):
        by_hand = 0.5 * math.exp(-1.0 * (1.5 - u) ** 2) + 2.0 * math.exp(-0.25 * (3.0 - u) ** 2)
        assert abs(phi[0, u - 1].item() - by_hand) < 1e-6
    onehot = torch.eye(U).unsqueeze(0)  # c_u = e_u
    w = torch.bmm(phi.unsqueeze(1), onehot).squeeze(1)
    assert torch.allclose(w, phi)  # Eq. 47 with one-hot characters picks phi(t, u)


def test_window_by_exp2_matches_exp_in_value_and_gradient_over_the_whole_range():
    # window_weights computes exp(-beta d^2) as exp2(-beta log2(e) d^2) (torch's CPU exp is
    # slow where it underflows): same values to float rounding, same gradients, near and far
    g = torch.Generator().manual_seed(0)
    alpha = (torch.rand(3, 2, generator=g) * 3).requires_grad_()
    beta = torch.exp(torch.randn(3, 2, generator=g)).requires_grad_()
    kappa = (torch.rand(3, 2, generator=g) * 10).requires_grad_()
    pos = torch.arange(1, 42, dtype=torch.float32)
    got = window_weights(alpha, beta, kappa, pos)
    d = kappa.unsqueeze(-1) - pos
    ref = (alpha.unsqueeze(-1) * torch.exp(-beta.unsqueeze(-1) * d * d)).sum(1)
    assert (ref == 0).any() and (ref > 0).any()  # both regimes are exercised
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-30)
    grads = torch.autograd.grad(got.sum(), (alpha, beta, kappa))
    refs = torch.autograd.grad(ref.sum(), (alpha, beta, kappa))
    for a, b in zip(grads, refs):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_kappa_never_decreases():
    torch.manual_seed(3)
    win = SoftWindow(8, 3)
    kappa = torch.zeros(2, 3)
    onehot = torch.zeros(2, 6, 5)
    pos = torch.arange(1, 7, dtype=torch.float32)
    for _ in range(20):
        _, new, _ = win(torch.randn(2, 8) * 5, kappa, onehot, pos)
        assert (new > kappa).all()  # Eq. 51: exp() > 0
        kappa = new


def test_graves_rmsprop_matches_equations_38_to_41():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = GravesRMSProp([w], lr=0.1, alpha=0.95, momentum=0.9, eps=1e-4)
    n = g = d = np.zeros(2)
    ref = np.array([1.0, -2.0])
    for grad in ([0.5, -1.0], [0.2, 0.3], [-0.4, 0.1]):
        eps_i = np.array(grad)
        w.grad = torch.tensor(grad, dtype=torch.float64)
        opt.step()
        n = 0.95 * n + 0.05 * eps_i**2
        g = 0.95 * g + 0.05 * eps_i
        d = 0.9 * d - 0.1 * eps_i / np.sqrt(n - g**2 + 1e-4)
        ref = ref + d
        assert np.allclose(w.detach().numpy(), ref)


def test_config_rejects_bad_values_and_presets_exist():
    with pytest.raises(ValueError, match="kind"):
        HandwritingConfig(kind="nonsense")
    with pytest.raises(ValueError, match="preset"):
        preset("enormous")
    paper = HandwritingConfig()
    assert (paper.hidden_size, paper.num_layers, paper.num_mixtures, paper.window_components) == (
        400,
        3,
        20,
        10,
    )


@pytest.mark.parametrize("kind", ["synthesis", "prediction"])
def test_step_equals_teacher_forced_forward(kind):
    torch.manual_seed(4)
    m = HandwritingModel(preset("small", kind=kind)).eval()
    x = torch.randn(2, 9, 3)
    onehot = (
        m.encode_text(torch.randint(0, 95, (2, 5)), torch.tensor([5, 3]))
        if kind == "synthesis"
        else None
    )
    y, _ = m(x, onehot=onehot)
    state = m.initial_state(2)
    for t in range(9):
        y_t, state, _ = m.step(x[:, t], state, onehot)
        assert torch.allclose(y_t, y[:, t], atol=1e-5)


def test_padding_does_not_change_the_window_vector():
    torch.manual_seed(5)
    m = HandwritingModel(preset("tiny")).eval()
    idx = torch.tensor([[3, 4, 5]])
    x = torch.randn(1, 6, 3)
    y_short, _ = m(x, onehot=m.encode_text(idx))
    padded = torch.tensor([[3, 4, 5, 0, 0]])
    y_pad, _ = m(x, onehot=m.encode_text(padded, torch.tensor([3])))
    assert torch.allclose(y_short, y_pad, atol=1e-6)


@pytest.mark.slow
def test_tiny_synthesis_model_overfits_one_batch():
    torch.manual_seed(6)
    m = HandwritingModel(preset("tiny", hidden_size=48, num_mixtures=4))
    opt = torch.optim.Adam(m.parameters(), lr=2e-2)
    B, T = 4, 30
    t = torch.linspace(0, 6, T)
    target = torch.stack([torch.cos(t + k) for k in range(B)]).unsqueeze(-1).repeat(1, 1, 3) * 0.5
    target[..., 2] = (torch.arange(T) % 10 == 9).float()
    x = torch.cat([torch.zeros(B, 1, 3), target[:, :-1]], dim=1)
    onehot = m.encode_text(torch.randint(0, 95, (B, 4)))
    losses = []
    for _ in range(80):
        y, _ = m(x, onehot=onehot)
        loss = sequence_nll(split_params(y), target).total
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 60  # nats per sequence of 30 points
