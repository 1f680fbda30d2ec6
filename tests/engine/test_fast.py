"""Fast paths: the fused sampling step reproduces model.step, the numpy mixture split reproduces
split_params, seeded sampling is reproducible on each path, and the cell="lstm" variant is
consistent between teacher forcing and stepping.

Tolerances: fp32 fast step vs model.step: |dy_hat| <= 1e-4 and |dphi| <= 1e-5 (float rounding
of a different summation order); bf16 weights: |dy_hat| <= 0.1 (relative
weight rounding 2^-8); numpy mixture parameters vs torch: 1e-5 relative.
"""

import math

import numpy as np
import pytest
import torch

from engine.alphabet import Alphabet
from engine.checkpoint import load_model, save_model
from engine.fast import (
    FastPathError,
    FastStepper,
    make_stepper,
    params_numpy,
    sampling_threads,
    supports,
)
from engine.models import HandwritingModel, preset
from engine.sampler import _params_to_numpy, generate, sample
from engine.strokes import NormStats

ALPHA = Alphabet()


def _model(name="tiny", kind="synthesis", seed=0, **over):
    """Three layers by default so the fused layer-n slices of every layer are exercised."""
    torch.manual_seed(seed)
    over = {"num_layers": 3, "hidden_size": 24, **over} if name == "tiny" else over
    m = HandwritingModel(preset(name, kind=kind, **over)).eval()
    with torch.no_grad():  # move away from the initialisation so every weight matters
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return m


def _inputs(T, B, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, 3, generator=g)
    x[..., 2] = (x[..., 2] > 1.0).float()
    x[0] = 0.0
    return x


def _compare(model, onehot, B, T=25, dtype=torch.float32):
    """Max |dy_hat| and |dphi| between FastStepper and model.step over T steps."""
    stepper = FastStepper(model, weight_dtype=dtype)
    stepper.reset(B, onehot)
    state = model.initial_state(B)
    dy = dphi = 0.0
    for x in _inputs(T, B):
        y_ref, state, phi_ref = model.step(x, state, onehot)
        y, phi = stepper.step(x)
        assert y.shape == y_ref.shape
        dy = max(dy, (y - y_ref).abs().max().item())
        if phi_ref is not None:
            dphi = max(dphi, (phi - phi_ref).abs().max().item())
        else:
            assert phi is None
    return dy, dphi, stepper, state


def _onehot(model, texts):
    U = max(len(t) for t in texts)
    idx = torch.full((len(texts), U), 0, dtype=torch.long)
    lengths = torch.tensor([len(t) for t in texts])
    for b, t in enumerate(texts):
        idx[b, : len(t)] = torch.as_tensor(ALPHA.encode(t))
    return model.encode_text(idx, lengths if len(set(texts)) > 1 else None)


@pytest.mark.parametrize("cell", ["peephole", "lstm"])
@pytest.mark.parametrize("B", [1, 3])
def test_fast_step_matches_model_step_synthesis(cell, B):
    m = _model(cell=cell)
    onehot = _onehot(m, ["hello world"] * B)
    dy, dphi, stepper, state = _compare(m, onehot, B)
    assert dy <= 1e-4 and dphi <= 1e-5
    # the exported state is the reference state too
    s = stepper.state()
    for a, b in zip(s.h + s.c + [s.kappa, s.w], state.h + state.c + [state.kappa, state.w]):
        assert torch.allclose(a, b, atol=1e-5)


def test_fast_step_different_text_per_row_and_long_text():
    m = _model()
    # different texts per row: per-row precomputed projections
    dy, dphi, *_ = _compare(m, _onehot(m, ["abc", "a much longer line"]), 2)
    assert dy <= 1e-4 and dphi <= 1e-5
    # U+1 > V: the window vector is formed first, then projected
    long = "x" * 120
    dy, dphi, *_ = _compare(m, _onehot(m, [long]), 1, T=10)
    assert dy <= 1e-4 and dphi <= 1e-5


@pytest.mark.parametrize("cell", ["peephole", "lstm"])
def test_fast_step_matches_model_step_prediction(cell):
    m = _model(kind="prediction", cell=cell)
    dy, _, _, _ = _compare(m, None, 2)
    assert dy <= 1e-4


def test_bf16_weights_stay_close():
    m = _model()
    dy, dphi, *_ = _compare(m, _onehot(m, ["bf16"]), 1, dtype=torch.bfloat16)
    assert dy <= 0.1 and dphi <= 0.05
    assert dy > 0  # it really ran in reduced precision


def test_a_perturbed_weight_is_detected():
    """The comparison can fail: a stepper built before a weight change disagrees after it."""
    m = _model()
    onehot = _onehot(m, ["abc"])
    stepper = make_stepper(m)
    stepper.reset(1, onehot)
    with torch.no_grad():
        m.stack.cells[0].w_cf.add_(0.5)
    state = m.initial_state(1)
    worst = 0.0
    for x in _inputs(5, 1):
        y_ref, state, _ = m.step(x, state, onehot)
        worst = max(worst, (stepper.step(x)[0] - y_ref).abs().max().item())
    assert worst > 1e-3


@pytest.mark.parametrize("bias", [0.0, 2.5])
def test_params_numpy_matches_split_params(bias):
    y = torch.randn(4, 1 + 6 * 20) * 3
    norm = NormStats((0.5, -1.0), (2.0, 3.0))
    ref = _params_to_numpy(y, bias, norm)
    got = params_numpy(y.numpy(), bias, np.array(norm.mean), np.array(norm.std))
    for name in ("pi", "mu", "sigma", "rho", "e"):
        a, b = getattr(got, name), getattr(ref, name)
        assert a.shape == b.shape, name
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(got.pi.sum(1), 1.0, rtol=1e-9)


@pytest.mark.parametrize("fast", [True, False])
def test_seeded_sampling_is_reproducible_on_each_path(fast):
    m = _model("tiny")
    a = sample(m, "abc", alphabet=ALPHA, seed=7, max_steps=40, fast=fast, batch=2)
    b = sample(m, "abc", alphabet=ALPHA, seed=7, max_steps=40, fast=fast, batch=2)
    c = sample(m, "abc", alphabet=ALPHA, seed=8, max_steps=40, fast=fast, batch=2)
    for x, y in zip(a, b):
        assert np.array_equal(x.offsets, y.offsets)
    assert not np.array_equal(a[0].offsets, c[0].offsets)


def test_generate_fast_and_reference_give_the_same_first_distribution():
    m = _model()
    norm = NormStats((1.0, 0.0), (2.0, 2.0))
    kw = dict(alphabet=ALPHA, norm=norm, seed=3, bias=1.0, batch=2, max_steps=5)
    f = next(generate(m, "same text", fast=True, **kw))
    r = next(generate(m, "same text", fast=False, **kw))
    for name in ("pi", "mu", "sigma", "rho", "e"):
        np.testing.assert_allclose(getattr(f.params, name), getattr(r.params, name), atol=1e-4)
    np.testing.assert_allclose(f.phi, r.phi, atol=1e-5)


def test_monkeypatched_or_subclassed_step_is_respected():
    m = _model("tiny")
    assert supports(m)
    m.step = lambda *a: None
    assert not supports(m)
    assert not supports(object())


def test_stepper_rejects_bad_use():
    m = _model("tiny")
    s = FastStepper(m)
    with pytest.raises(FastPathError, match="reset"):
        s.step(torch.zeros(1, 3))
    with pytest.raises(FastPathError, match="onehot"):
        s.reset(1, None)
    with pytest.raises(FastPathError, match="batch"):
        s.reset(0, _onehot(m, ["a"]))
    s.reset(1, _onehot(m, ["a"]))
    with pytest.raises(FastPathError, match="shape"):
        s.step(torch.zeros(2, 3))
    with pytest.raises(FastPathError, match="weight_dtype"):
        FastStepper(m, weight_dtype=torch.float16)


def test_lstm_variant_forward_equals_stepping_and_round_trips(tmp_path):
    m = _model(cell="lstm")
    assert m.upper is not None and len(m.stack.cells) == 1
    onehot = _onehot(m, ["ab c"])
    x = _inputs(12, 1).transpose(0, 1)  # (1, T, 3)
    with torch.no_grad():
        y_seq, _ = m(x, onehot=onehot)
    state = m.initial_state(1)
    for t in range(x.shape[1]):
        y_t, state, _ = m.step(x[:, t], state, onehot)
        assert torch.allclose(y_t, y_seq[:, t], atol=1e-4)
    save_model(tmp_path / "m.safetensors", m, ALPHA, NormStats())
    back = load_model(tmp_path / "m.safetensors").model
    assert back.config.cell == "lstm"
    for (k, a), (k2, b) in zip(m.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(a, b)


def test_bad_cell_name_is_refused():
    with pytest.raises(ValueError, match="cell"):
        preset("tiny", cell="gru")


@pytest.mark.slow
def test_lstm_variant_trains(one_thread):
    """A few steps of the fast variant lower the loss on one fixed batch."""
    from engine.mixture import sequence_nll, split_params

    torch.manual_seed(0)
    m = HandwritingModel(preset("tiny", num_layers=2, cell="lstm")).train()
    onehot = _onehot(m, ["abc"] * 4)
    x = torch.randn(4, 30, 3) * 0.5
    x[..., 2] = 0.0
    inp = torch.cat([torch.zeros(4, 1, 3), x[:, :-1]], 1)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        y, _ = m(inp, onehot=onehot)
        loss = sequence_nll(split_params(y), x).per_point
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.2


def test_weight_cache_follows_parameter_updates_and_buffers_are_private():
    m = _model()
    onehot = _onehot(m, ["abc"])
    a, b = make_stepper(m), make_stepper(m)
    assert a.Wrec[1] is b.Wrec[1]  # prepared weights shared...
    a.reset(1, onehot)
    b.reset(1, onehot)
    x = _inputs(3, 1)
    ya = [a.step(x[0])[0], a.step(x[1])[0]]
    yb = b.step(x[0])[0]  # ...but state is not: b starts from zero after a ran two steps
    assert torch.equal(ya[0], yb)
    with torch.no_grad():
        m.stack.cells[0].weight_h.mul_(1.5)
    c = make_stepper(m)
    assert c.Wrec[0] is not a.Wrec[0]
    dy, _, _, _ = _compare(m, onehot, 1, T=5)
    assert dy <= 1e-4


# -- int8 weights ---------------------------------------------------------------------------------
@pytest.fixture
def quantise_small(monkeypatch):
    """Quantise even the test models' small matrices (normally only paper-size models are)."""
    import engine.fast as fast

    monkeypatch.setattr(fast, "INT8_MIN_MODEL", 0)
    monkeypatch.setattr(fast, "INT8_MIN_WEIGHTS", 0)


def _int8_model():
    """Hidden size a multiple of 16: the int8 kernel's inner dimension must be one."""
    return _model(hidden_size=32)


def test_int8_weights_stay_close(quantise_small):
    """Tolerance |dy_hat| <= 0.1, |dphi| <= 0.05, as for bf16: each weight is rounded to within
    half a step of max|column| / 127 and the activations to bf16 (2^-9 relative), and the
    error feeds back through 25 recurrent steps; measured 0.007 here, 0.05 on a 3 x 400 model
    with outputs up to 2.7."""
    m = _int8_model()
    dy, dphi, stepper, _ = _compare(m, _onehot(m, ["int8 weights"] * 2), 2, dtype=torch.int8)
    assert stepper.weights == "int8" and stepper.fallback is None
    assert all(W.dtype == torch.int8 for W in stepper.Wrec)
    assert stepper.Wy.dtype == torch.float32  # the output layer stays fp32 (engine/fast.py)
    assert 0 < dy <= 0.1 and dphi <= 0.05


def test_seeded_sampling_is_reproducible_with_int8(quantise_small):
    m = _int8_model()
    kw = dict(alphabet=ALPHA, max_steps=40, weights="int8")
    a, b = (sample(m, "abc", seed=7, **kw)[0] for _ in range(2))
    c = sample(m, "abc", seed=8, **kw)[0]
    assert np.array_equal(a.offsets, b.offsets)
    assert not np.array_equal(a.offsets, c.offsets)


def _broken(*args):
    raise RuntimeError("no kernel for this device")


@pytest.mark.parametrize(
    "kernel, why",
    [(None, "has no torch._weight_int8pack_mm"), (_broken, "no kernel"), ("zeros", "wrong")],
)
def test_int8_falls_back_when_the_kernel_is_missing_or_fails(
    quantise_small, monkeypatch, kernel, why
):
    if kernel is None:
        monkeypatch.delattr(torch, "_weight_int8pack_mm", raising=False)
    else:
        zeros = lambda x, q, s: torch.zeros(x.shape[0], q.shape[0], dtype=x.dtype)  # noqa: E731
        monkeypatch.setattr(torch, "_weight_int8pack_mm", zeros if kernel == "zeros" else kernel)
    m = _int8_model()
    dy, dphi, stepper, _ = _compare(m, _onehot(m, ["abc"]), 1, T=5, dtype=torch.int8)
    assert stepper.weights == "fp32" and why in stepper.fallback
    assert dy <= 1e-4 and dphi <= 1e-5  # the fp32 step, exactly
    assert len(sample(m, "ab", alphabet=ALPHA, seed=1, max_steps=5, weights="int8")) == 1


def test_int8_on_a_small_model_stays_fp32_and_auto_picks_by_size():
    from engine.fast import resolve_weights

    m = _model()
    s = FastStepper(m, weight_dtype="int8")
    assert s.weights == "fp32" and "fp32 is faster" in s.fallback
    assert resolve_weights(m) == "fp32"
    assert resolve_weights(HandwritingModel(preset("paper"))) == "int8"
    assert resolve_weights(m, "bf16") == "bf16"


def test_bad_weights_values_are_refused_clearly():
    from engine.fast import resolve_weights
    from engine.sampler import SamplingError

    m = _model()
    with pytest.raises(SamplingError, match="weights must be one of 'auto', 'fp32'"):
        next(generate(m, "abc", alphabet=ALPHA, weights="int4"))
    with pytest.raises(FastPathError, match="weights must be one of 'fp32', 'bf16', 'int8'"):
        resolve_weights(m, "fp16")
    with pytest.raises(FastPathError, match="weight_dtype"):
        FastStepper(m, weight_dtype="float32")


@pytest.mark.parametrize("B", [1, 3])
def test_fast_step_matches_model_step_with_the_softplus_window(B):
    m = _model(window="softplus")
    assert m.window.kind == "softplus"
    dy, dphi, stepper, state = _compare(m, _onehot(m, ["hello world"] * B), B)
    assert dy <= 1e-4 and dphi <= 1e-5
    assert torch.allclose(stepper.state().kappa, state.kappa, atol=1e-5)


def test_softplus_window_closed_forms_and_round_trip(tmp_path):
    from engine.window import window_params

    raw = torch.tensor([[0.0, math.log(3.0), 0.0, 2.0, -40.0, 1.0]])  # K = 2
    a, b, k = window_params(raw, "softplus")
    assert torch.allclose(a, torch.tensor([[0.25, 0.75]]))  # softmax: weights sum to 1
    assert torch.allclose(b, torch.tensor([[math.log(2.0), math.log1p(math.exp(2.0))]]))
    assert k[0, 0] < 1e-15 and torch.isclose(k[0, 1], torch.tensor(math.log1p(math.e)))
    a, b, k = window_params(raw, "graves")  # Eqs. 49-51
    assert torch.allclose(a, torch.tensor([[1.0, 3.0]])) and torch.allclose(
        b[0, 1], raw[0, 3].exp()
    )
    # both start at beta = 0.5 and 1/25 character per point; softplus weights 1/K
    for kind, alpha0 in (("graves", 1.0), ("softplus", 1 / 2)):
        w = HandwritingModel(preset("tiny", window=kind)).window
        a, b, k = window_params(w.linear.bias, kind)
        assert torch.allclose(a, torch.full_like(a, alpha0))
        assert torch.allclose(b, torch.full_like(b, 0.5)) and torch.allclose(
            k, torch.full_like(k, 0.04)
        )
    m = _model(window="softplus")
    save_model(tmp_path / "m.safetensors", m, ALPHA, NormStats())
    assert load_model(tmp_path / "m.safetensors").model.config.window == "softplus"
    with pytest.raises(ValueError, match="window"):
        preset("tiny", window="cosine")


def test_sampling_threads_split_only_large_models_over_free_cores(monkeypatch):
    """Two threads only where the int8 products are large (paper size), two cores remain
    after keep_free and the torch step runs them; small models, busy or small machines and
    the native step (one call on one thread) keep one."""
    from engine import native

    torch.manual_seed(0)
    paper = HandwritingModel(preset("paper")).eval()
    tiny = _model()
    monkeypatch.setattr(native, "library", lambda: (native.ctypes.CDLL(None), ""))
    assert sampling_threads(paper, cores=8) == 1
    monkeypatch.setattr(native, "library", lambda: (None, "not here"))
    assert sampling_threads(paper, cores=2) == 2
    assert sampling_threads(paper, cores=2, keep_free=1) == 1  # the studio on a 2-core machine
    assert sampling_threads(paper, cores=8, keep_free=1) == 2
    assert sampling_threads(paper, cores=1) == 1
    assert sampling_threads(tiny, cores=8) == 1
    assert sampling_threads(tiny, cores=8, keep_free=1) == 1
