"""The native int8 sampling step (engine/native/step.c) against the torch step.

Tolerances: on weights that int8 represents exactly (each matrix replaced by its dequantised
self), the native step and the torch fp32 step differ only by the 16-bit activation rounding,
the polynomial exp and the summation order: |dy_hat| <= 2e-4 and |dphi| <= 5e-5 over 30
recurrent steps (measured 1.5e-5 to 2e-5 and 1e-6 to 2e-6 here; 1.4e-5 and 5e-6 over 200
steps of a random 3 x 400 model). Batch rows are computed alone, so they are asserted
bit-equal to the batch-1 result.
"""

import numpy as np
import pytest
import torch

from engine import native
from engine.alphabet import Alphabet
from engine.fast import FastStepper
from engine.models import HandwritingModel, preset
from engine.sampler import sample

ALPHA = Alphabet()


@pytest.fixture
def fresh_library():
    """Look for the library again before and after a test that changes the environment."""
    native.reset_for_tests()
    yield
    native.reset_for_tests()


@pytest.fixture(params=[2, 1], ids=["avx512vnni", "avx2"])
def native_lib(request, monkeypatch):
    """Each instruction set of the native step this CPU runs (engine.native.LEVELS)."""
    import engine.fast as fast

    monkeypatch.setattr(fast, "INT8_MIN_MODEL", 0)  # quantise the small test models too
    monkeypatch.setattr(fast, "INT8_MIN_WEIGHTS", 0)
    lib, why = native.library()
    if lib is None:
        pytest.skip(f"native step unavailable here: {why}")
    if lib.hw_cpu_level() < request.param:
        pytest.skip(f"this CPU has no {native.LEVELS[request.param]}")
    monkeypatch.setattr(native, "_level", request.param)
    return lib


def _model(kind="synthesis", seed=0, **over):
    torch.manual_seed(seed)
    cfg = {"num_layers": 3, "hidden_size": 32, **over}
    m = HandwritingModel(preset("tiny", kind=kind, **cfg)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return m


def _onehot(model, text, B):
    idx = torch.as_tensor(np.array([ALPHA.encode(text)] * B))
    return model.encode_text(idx) if model.synthesis else None


def _inputs(T, B, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, 3, generator=g)
    x[..., 2] = (x[..., 2] > 1.0).float()
    return x


def _exact_reference(model, B, onehot) -> FastStepper:
    """The torch fp32 step on the int8 stepper's dequantised matrices: the same numbers the
    native kernel multiplies by."""
    ref = FastStepper(model, weight_dtype="int8", native=False)
    ref.Wrec = [W.dequantised().contiguous() for W in ref.Wrec]  # the output layer is fp32
    ref.reset(B, onehot)
    return ref


def _max_diff(a: FastStepper, b: FastStepper, T=30, B=1):
    dy = dphi = 0.0
    for x in _inputs(T, B):
        ya, pa = a.step(x)
        yb, pb = b.step(x)
        dy = max(dy, (ya - yb).abs().max().item())
        if pa is not None:
            dphi = max(dphi, (pa - pb).abs().max().item())
    return dy, dphi


@pytest.mark.parametrize("cell", ["peephole", "lstm"])
@pytest.mark.parametrize("B", [1, 4])
def test_native_step_matches_torch_on_the_same_int8_weights(native_lib, cell, B):
    m = _model(cell=cell)
    onehot = _onehot(m, "native step", B)
    s = FastStepper(m, weight_dtype="int8")
    s.reset(B, onehot)
    assert s.kernel == "native" and s.native_reason is None
    dy, dphi = _max_diff(s, _exact_reference(m, B, onehot), B=B)
    assert dy <= 2e-4 and dphi <= 5e-5


def test_native_step_without_window_and_with_a_long_text(native_lib):
    """The prediction network (no window), and a text longer than the alphabet, where the
    window's contribution is formed through w_t = phi @ onehot (P is not precomputed)."""
    m = _model(kind="prediction")
    s = FastStepper(m, weight_dtype="int8")
    s.reset(2)
    assert s.kernel == "native"
    dy, _ = _max_diff(s, _exact_reference(m, 2, None), B=2)
    assert dy <= 2e-4
    m = _model()
    long = ("the quick brown fox jumps over the lazy dog " * 3)[:120]
    onehot = _onehot(m, long, 1)
    s = FastStepper(m, weight_dtype="int8")
    s.reset(1, onehot)
    assert s.kernel == "native" and s.P is None
    dy, dphi = _max_diff(s, _exact_reference(m, 1, onehot))
    assert dy <= 2e-4 and dphi <= 5e-5


def test_native_batch_rows_are_exactly_the_batch_one_result(native_lib):
    m = _model()
    one, five = FastStepper(m, weight_dtype="int8"), FastStepper(m, weight_dtype="int8")
    one.reset(1, _onehot(m, "rows", 1))
    five.reset(5, _onehot(m, "rows", 5))
    for x in _inputs(40, 1):
        y1, p1 = one.step(x)
        y5, p5 = five.step(x.expand(5, 3))
        assert all(torch.equal(y5[r], y1[0]) and torch.equal(p5[r], p1[0]) for r in range(5))


def test_native_state_matches_the_torch_step(native_lib):
    m = _model()
    onehot = _onehot(m, "state", 2)
    s = FastStepper(m, weight_dtype="int8")
    s.reset(2, onehot)
    ref = _exact_reference(m, 2, onehot)
    for x in _inputs(12, 2):
        s.step(x)
        ref.step(x)
    a, b = s.state(), ref.state()
    for got, want in zip(a.h + a.c + [a.kappa, a.w], b.h + b.c + [b.kappa, b.w]):
        assert torch.allclose(got, want, atol=2e-4)


def test_seeded_native_sampling_is_reproducible(native_lib):
    m = _model(hidden_size=64)
    kw = dict(alphabet=ALPHA, max_steps=60, weights="int8")
    a, b = (sample(m, "abc", seed=7, **kw)[0] for _ in range(2))
    c = sample(m, "abc", seed=8, **kw)[0]
    assert np.array_equal(a.offsets, b.offsets)
    assert not np.array_equal(a.offsets, c.offsets)


def test_steppers_that_the_native_step_cannot_take_keep_the_torch_step(native_lib):
    m = _model()
    s = FastStepper(m, weight_dtype="int8", native=False)
    s.reset(1, _onehot(m, "a", 1))
    assert s.kernel == "torch" and "native=False" in s.native_reason
    s = FastStepper(m, weight_dtype="fp32")
    s.reset(1, _onehot(m, "a", 1))
    assert s.kernel == "torch" and "int8" in s.native_reason
    idx = torch.as_tensor(np.array([ALPHA.encode("ab"), ALPHA.encode("cd")]))
    s = FastStepper(m, weight_dtype="int8")
    s.reset(2, m.encode_text(idx))
    assert s.kernel == "torch" and "same text" in s.native_reason
    soft = _model(window="softplus")
    s = FastStepper(soft, weight_dtype="int8")
    s.reset(1, _onehot(soft, "a", 1))
    assert s.kernel == "torch" and "softplus" in s.native_reason


def _fallback_reason(monkeypatch) -> str:
    import engine.fast as fast

    monkeypatch.setattr(fast, "INT8_MIN_MODEL", 0)
    monkeypatch.setattr(fast, "INT8_MIN_WEIGHTS", 0)
    m = _model()
    s = FastStepper(m, weight_dtype="int8")
    s.reset(1, _onehot(m, "fallback", 1))
    assert s.kernel == "torch" and s.weights == "int8"
    y, _ = s.step(torch.zeros(1, 3))
    assert torch.isfinite(y).all()  # the torch step still samples
    return s.native_reason


def test_the_switch_turns_the_native_step_off_or_picks_avx2(monkeypatch, fresh_library):
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    assert "HANDWRITING_NATIVE=0" in _fallback_reason(monkeypatch)
    native.reset_for_tests()
    monkeypatch.setenv(native.ENV_SWITCH, "avx2")
    lib, why = native.library()
    if lib is None:
        pytest.skip(f"native step unavailable here: {why}")
    assert native.level() == 1
    m = _model()
    s = FastStepper(m, weight_dtype="int8")
    s.reset(1, _onehot(m, "avx2", 1))
    assert s.kernel == "native" and s.native_isa == "AVX2"


def test_no_compiler_and_a_failing_compiler_are_reported(monkeypatch, tmp_path, fresh_library):
    if not native._supported_platform():
        pytest.skip("the native step is not built on this platform")
    monkeypatch.setenv(native.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no cc, gcc or clang on it
    assert "no C compiler" in _fallback_reason(monkeypatch)
    native.reset_for_tests()
    bad = tmp_path / "badcc"
    bad.write_text("#!/bin/sh\necho 'step.c:1: error: no such luck' >&2\nexit 1\n")
    bad.chmod(0o755)
    monkeypatch.setenv("CC", str(bad))
    why = _fallback_reason(monkeypatch)
    assert "could not build" in why and "no such luck" in why
    assert not list((tmp_path / "cache").glob("*.so"))  # no half-written library left behind


def test_a_library_built_ahead_is_used_and_named_by_its_source(tmp_path, native_lib):
    built = native.build_library(tmp_path)
    assert built.name == native.library_name() and built.stat().st_size > 0
    assert native.library_name().startswith("step-")


def test_a_damaged_cached_library_is_built_again(monkeypatch, tmp_path, fresh_library):
    if native._compiler() is None or not native._supported_platform():
        pytest.skip("needs a C compiler on x86-64")
    monkeypatch.setenv(native.ENV_CACHE, str(tmp_path))
    damaged = tmp_path / native.library_name()
    damaged.write_bytes(b"not a shared library")
    lib, why = native.library()
    if lib is None and "AVX-512" in why:
        pytest.skip(why)
    assert lib is not None, why
    assert damaged.read_bytes() != b"not a shared library"  # rebuilt in place


SHAPES = [  # hidden, layers, mixtures, window components, batch, text length, cell
    (16, 1, 1, 1, 1, 1, "peephole"),
    (48, 2, 3, 5, 7, 17, "lstm"),
    (80, 4, 20, 17, 2, 41, "peephole"),
    (16, 3, 2, 10, 16, 130, "peephole"),  # longer than the alphabet: w_t = phi @ onehot
    (32, 2, 7, 3, 6, 9, "lstm"),
]


@pytest.mark.parametrize("H, L, M, K, B, U, cell", SHAPES)
def test_native_step_over_shapes(native_lib, H, L, M, K, B, U, cell):
    """Every vector tail the kernel masks (hidden sizes of 1, 3 and 5 vectors, outputs of 7 to
    121, window parameters of 3 to 51, batches of 1 to 16 rows, texts of 1 to 130 characters)
    against the torch step on the same int8 weights."""
    m = _model(hidden_size=H, num_layers=L, num_mixtures=M, window_components=K, cell=cell)
    text = ("handwriting by machine, after Graves " * 4)[:U]
    onehot = _onehot(m, text, B)
    s = FastStepper(m, weight_dtype="int8")
    s.reset(B, onehot)
    assert s.kernel == "native", s.native_reason
    dy, dphi = _max_diff(s, _exact_reference(m, B, onehot), T=20, B=B)
    assert dy <= 2e-4 and dphi <= 5e-5
