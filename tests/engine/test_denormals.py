"""Denormal floats are flushed while the engine samples and trains, and only then
(engine.fast.DenormalsFlushed): the calling thread's floating-point mode is left as it was.

Each check runs in a fresh thread that first sets the mode it wants to start from (new threads
inherit their creator's mode), so the order of tests does not matter. The probe is a float32
product whose exact value, 1e-39, is denormal: it stays non-zero unless flushing is on.
"""

import contextlib
import threading

import numpy as np
import pytest
import torch

import engine.fast
from engine.alphabet import Alphabet
from engine.fast import DenormalsFlushed, flushing_denormals
from engine.models import HandwritingModel, preset
from engine.sampler import generate
from engine.trainer import TrainConfig, Trainer
from tests.engine.trainer_helpers import tiny_task

TEXT = "abcdefghijklmnopqrst"  # 20 characters: the window is still inside after 60 steps

if not torch.set_flush_denormal(False):
    pytest.skip("this CPU cannot flush denormals", allow_module_level=True)


def _flushed_now() -> bool:
    """The probe, in torch and in numpy (they must agree), checked against flushing_denormals."""
    t = (torch.tensor([1e-30]) * torch.tensor([1e-9])).item()
    n = float(np.float32(1e-30) * np.float32(1e-9))
    assert (t == 0.0) == (n == 0.0) == flushing_denormals()
    if t != 0.0:
        assert t == pytest.approx(1e-39, rel=1e-3)
    return t == 0.0


def _in_fresh_thread(work, start_flushed: bool = False) -> dict:
    """Run work() in a new thread that starts flushed or not; record the mode before and
    after, and (via `seen`) whatever work() records while it runs."""
    out: dict = {"seen": []}

    def body():
        try:
            torch.set_flush_denormal(start_flushed)
            out["before"] = _flushed_now()
            work(out["seen"])
            out["after"] = _flushed_now()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            out["error"] = exc

    th = threading.Thread(target=body)
    th.start()
    th.join()
    if "error" in out:
        raise out["error"]
    return out


@pytest.mark.parametrize("start_flushed", [False, True])
def test_the_context_flushes_inside_and_restores_the_mode(start_flushed):
    def work(seen):
        with DenormalsFlushed():
            seen.append(_flushed_now())
        seen.append(_flushed_now())

    out = _in_fresh_thread(work, start_flushed)
    assert out["before"] is start_flushed
    assert out["seen"] == [True, start_flushed]
    assert out["after"] is start_flushed


def test_the_context_restores_the_mode_after_an_error():
    def work(seen):
        with pytest.raises(ZeroDivisionError), DenormalsFlushed():
            1 / 0  # noqa: B018
        seen.append(_flushed_now())

    assert _in_fresh_thread(work)["seen"] == [False]


@pytest.mark.parametrize("fast", [True, False])
def test_sampling_steps_flush_and_the_caller_keeps_its_mode(fast, monkeypatch):
    torch.manual_seed(0)
    model = HandwritingModel(preset("tiny")).eval()
    seen_in_step: list[bool] = []
    if fast:
        real = engine.fast.FastStepper.step_numpy

        def spy(self, x):
            seen_in_step.append(_flushed_now())
            return real(self, x)

        monkeypatch.setattr(engine.fast.FastStepper, "step_numpy", spy)
    else:
        real_step = model.step

        def spy_step(*args, **kwargs):
            seen_in_step.append(_flushed_now())
            return real_step(*args, **kwargs)

        model.step = spy_step  # an instance step: generate takes the reference path

    def work(seen):
        for _ in generate(model, "ab", alphabet=Alphabet(), seed=0, max_steps=3, fast=fast):
            seen.append(_flushed_now())  # the caller's code between steps

    out = _in_fresh_thread(work)
    assert seen_in_step == [True] * 3
    assert out["seen"] == [False] * 3
    assert out["after"] is False


def test_training_steps_flush_and_the_caller_keeps_its_mode():
    task = tiny_task()
    real_loss = task.loss
    seen_in_loss: list[bool] = []

    def spy(batch):
        seen_in_loss.append(_flushed_now())
        return real_loss(batch)

    task.loss = spy

    def work(seen):
        cfg = TrainConfig(steps=2, optimizer="adam", val_every=0, ckpt_every=0)
        for _ in Trainer(task, cfg).run():
            seen.append(_flushed_now())

    out = _in_fresh_thread(work)
    assert seen_in_loss and all(seen_in_loss)
    assert out["seen"] == [False, False]


def test_a_window_leaving_characters_behind_samples_the_same_with_and_without_flushing(
    monkeypatch,
):
    """Flushing changes only values below 1.2e-38: a sample whose window leaves characters
    behind (their phi tails pass through the denormal range) draws the same points either way,
    to float rounding."""
    torch.manual_seed(3)
    model = HandwritingModel(preset("tiny", num_layers=2, hidden_size=32)).eval()
    K = model.config.window_components
    with torch.no_grad():  # alpha = beta = 1, kappa + 0.25 a step: after ~40 steps phi of the
        model.window.linear.weight.zero_()  # first characters, exp(-(kappa - u)^2), is denormal
        model.window.linear.bias.zero_()
        model.window.linear.bias[2 * K :] = float(np.log(0.25))

    def draw():
        steps = generate(model, TEXT, alphabet=Alphabet(), seed=1, max_steps=60, fast=False)
        return np.concatenate([s.offset for s in steps])

    res: dict = {}
    _in_fresh_thread(lambda seen: res.__setitem__("on", draw()))

    # generate without the context: denormals survive
    monkeypatch.setattr(engine.fast, "DenormalsFlushed", contextlib.nullcontext)
    _in_fresh_thread(lambda seen: res.update(off=draw(), saw=_saw_denormal(model)))
    assert res["saw"], "the setup no longer produces denormal window weights"
    assert len(res["on"]) == len(res["off"]) == 60
    np.testing.assert_allclose(res["on"], res["off"], rtol=1e-5, atol=1e-5)


def _saw_denormal(model) -> bool:
    """Whether phi over TEXT has a denormal entry at some step of a zero-input run."""
    onehot = model.encode_text(torch.as_tensor(Alphabet().encode(TEXT))[None])
    state = model.initial_state(1)
    tiny = torch.finfo(torch.float32).tiny
    with torch.no_grad():
        for _ in range(60):
            _, state, phi = model.step(torch.zeros(1, 3), state, onehot)
            if ((phi > 0) & (phi < tiny)).any():
                return True
    return False
