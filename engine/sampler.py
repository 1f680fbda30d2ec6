"""Sampling from the handwriting networks (Sec. 4 and 5.3-5.5) as a generator.

Policy lives here, not in the model: bias (Eqs. 61-62), priming (Sec. 5.5: text c' = c + s,
the real ink fed clamped, then sampling continues), and the stop rule (Sec. 5.3: stop once
phi(t, U+1) > phi(t, u) for all u <= U), with a hard bound on steps per character so it can
never write forever. End-of-stroke is drawn from its Bernoulli, never thresholded.

Each step yields a SampleStep with the pen offset, the window row phi(t, .) and the mixture
parameters for the point it drew, in data units (offsets, not normalised), with a leading
batch axis: several variations of the same text are drawn at once with `batch`.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from itertools import accumulate

import numpy as np

from engine import EngineError
from engine.data.preprocess import respace
from engine.strokes import NormStats, offsets_to_strokes

# the bias a user gets unless they choose: with the 2 x 128 model bundled before the current
# one (the current one reads 0.08 at 1.0 and 0.28 at 0.15), the legibility bench read
# CER 0.37-0.40 at the paper's 0.15, 0.22-0.26 at 0.5, 0.16-0.22 at 0.75, 0.14-0.17 at 1.0
# (smooth drawing, seeds 0-1); 0.75 keeps most of the neat end's legibility and still varies
DEFAULT_BIAS = 0.75
MAX_LINE_CHARS = 300  # one line of handwriting; longer text must be split into lines
DEFAULT_STEPS_PER_CHAR = 40  # our corpus averages ~25 points per character
MAX_UNCONDITIONAL_STEPS = 5000
WEIGHTS = ("auto", "fp32", "bf16", "int8")  # see engine.fast.resolve_weights


class SamplingError(EngineError, ValueError):
    """Text or settings that sampling cannot work with."""


@dataclass(frozen=True)
class Primer:
    """Real ink and its text that sampling continues from (Sec. 5.5).
    offsets: (T, 3) preprocessed but NOT normalised (data units), as in a Corpus (at its point
    spacing; generate resamples them to the network's point_step)."""

    offsets: np.ndarray
    text: str


@dataclass
class StepParams:
    """Mixture parameters (after bias) for one step, data units; leading axis = batch."""

    pi: np.ndarray  # (B, M)
    mu: np.ndarray  # (B, M, 2) predicted offset means
    sigma: np.ndarray  # (B, M, 2)
    rho: np.ndarray  # (B, M)
    e: np.ndarray  # (B,) probability that the pen lifts after the point


@dataclass
class SampleStep:
    """One step. `params` (the distribution `offset` was drawn from) is computed on first
    access on the fast path: most consumers never look at it."""

    t: int  # step index, 0-based, primer steps included
    offset: np.ndarray  # (B, 3) dx, dy, eos in data units
    primed: bool  # True while the primer is being fed (the offset is the primer's)
    phi: np.ndarray | None  # (B, U+1) window weights, or None for the prediction network
    _params: StepParams | Callable[[], StepParams]  # read it as .params
    done: np.ndarray  # (B,) samples that have finished (their later offsets are zero)

    @property
    def params(self) -> StepParams:
        if callable(self._params):
            self._params = self._params()
        return self._params


def past_last_character(phi: np.ndarray) -> np.ndarray:
    """The stop rule of Sec. 5.3 per row: phi (B, U+1) of one step -> (B,) bool, True where the
    window weighs the position after the text (U+1) above every character of it."""
    return phi[:, -1] > phi[:, :-1].max(axis=1)


def _draw(p: StepParams, rng: np.random.Generator) -> np.ndarray:
    """One (dx, dy, eos) per batch row from the mixture: component, then bivariate normal."""
    B, M = p.pi.shape
    cum = np.cumsum(p.pi, axis=1)
    j = np.minimum((cum < rng.random((B, 1)) * cum[:, -1:]).sum(axis=1), M - 1)
    rows = np.arange(B)
    mu, s, rho = p.mu[rows, j], p.sigma[rows, j], p.rho[rows, j]
    z = rng.standard_normal((B, 2))
    dx = mu[:, 0] + s[:, 0] * z[:, 0]
    dy = mu[:, 1] + s[:, 1] * (rho * z[:, 0] + np.sqrt(np.maximum(1 - rho**2, 0.0)) * z[:, 1])
    eos = (rng.random(B) < p.e).astype(np.float64)
    return np.stack([dx, dy, eos], axis=1)


def _draw_one(y: list[float], bias: float, mean, std, rng: np.random.Generator) -> list[float]:
    """`_draw(params_numpy(y_hat))` for one batch row, in Python floats: only the component it
    picks is un-normalised. Same equations (Eqs. 18-22 with the bias of Eqs. 61-62), same
    random draws in the same order. y: the raw output row (1+6M); mean, std: floats pairs."""
    M = (len(y) - 1) // 6
    scale = 1.0 + bias  # Eq. 62
    top = max(y[1 : 1 + M]) * scale
    cum = list(accumulate(math.exp(v * scale - top) for v in y[1 : 1 + M]))
    j = min(bisect_left(cum, rng.random() * cum[-1]), M - 1)  # as many cum < r as _draw counts
    mx, my = y[1 + M + 2 * j], y[2 + M + 2 * j]
    sx = math.exp(min(y[1 + 3 * M + 2 * j] - bias, 700.0))  # no OverflowError: inf -> 1e304
    sy = math.exp(min(y[2 + 3 * M + 2 * j] - bias, 700.0))
    rho = math.tanh(y[1 + 5 * M + j])
    z0, z1 = rng.standard_normal(2).tolist()
    dx = (mx + sx * z0) * std[0] + mean[0]
    dy = (my + sy * (rho * z0 + math.sqrt(max(1.0 - rho * rho, 0.0)) * z1)) * std[1] + mean[1]
    e = 0.5 + 0.5 * math.tanh(0.5 * y[0])  # the logistic function, without overflow
    return [dx, dy, float(rng.random() < e)]


def _params_to_numpy(y_hat, bias: float, norm: NormStats) -> StepParams:
    from engine.mixture import split_params

    mp = split_params(y_hat.float(), bias=bias)
    mean = np.asarray(norm.mean)
    std = np.asarray(norm.std)
    return StepParams(
        pi=mp.pi.numpy().astype(np.float64),
        mu=mp.mu.numpy() * std + mean,
        sigma=mp.sigma.numpy() * std,
        rho=mp.rho.numpy().astype(np.float64),
        e=mp.e.numpy().astype(np.float64),
    )


def primed_text(primer_text: str, text: str) -> str:
    """The text the window reads when priming (Sec. 5.5: c' = c + s), one space between the
    primer's text and the new text. Its last len(text) characters are the new text."""
    sep = "" if primer_text.endswith(" ") or text.startswith(" ") else " "
    return primer_text + sep + text


def prepare_text(text: str, alphabet) -> str:
    """Validate one line of text for the synthesis network; returns it unchanged."""
    if text is None or not text.strip():
        raise SamplingError("there is no text to write (the text is empty or only spaces)")
    if "\n" in text:
        raise SamplingError("sampling writes one line at a time; split the text into lines")
    if len(text) > MAX_LINE_CHARS:
        raise SamplingError(
            f"the line has {len(text)} characters; at most {MAX_LINE_CHARS} fit in one line"
        )
    alphabet.check(text)
    return text


def generate(
    model,
    text: str | None = None,
    *,
    alphabet=None,
    norm: NormStats | None = None,
    bias: float = 0.0,
    seed: int | None = None,
    batch: int = 1,
    primer: Primer | None = None,
    steps_per_char: int = DEFAULT_STEPS_PER_CHAR,
    max_steps: int | None = None,
    fast: bool = True,
    weights: str = "auto",
) -> Iterator[SampleStep]:
    """Sample handwriting step by step. `model` is a HandwritingModel or a LoadedModel.

    For the synthesis network `text` (one line) is required; for the prediction network it must
    be None and `max_steps` bounds the length. Stopping early = not asking for the next step.
    `fast` runs each step through engine.fast.FastStepper (same distribution parameters as
    `model.step` up to float rounding; see tests/engine/test_fast.py); False uses `model.step`.
    `weights` ("auto" | "fp32" | "bf16" | "int8") is how the fast path stores its matrices
    (int8: a quarter of the weight bytes); "auto" is int8 on the CPU for models with at least
    1 M streamed weights (the bundled 3 x 256 and larger) and fp32 otherwise
    (engine.fast.resolve_weights). The reference path ignores it.
    """
    import torch

    from engine.fast import DenormalsFlushed

    if hasattr(model, "model"):  # LoadedModel
        alphabet = alphabet or model.alphabet
        norm = norm or model.norm
        model = model.model
    norm = norm or NormStats()
    if bias < 0 or not np.isfinite(bias):
        raise SamplingError(f"bias must be a finite number >= 0, not {bias}")
    if batch < 1:
        raise SamplingError("batch must be at least 1")
    if weights not in WEIGHTS:
        names = ", ".join(repr(w) for w in WEIGHTS)
        raise SamplingError(f"weights must be one of {names}, not {weights!r}")
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0
    ):
        raise SamplingError(f"the seed must be a whole number >= 0, not {seed!r}")
    rng = np.random.default_rng(seed)
    model.eval()
    onehot = positions = None
    prime_x = np.zeros((0, 3), np.float32)
    if primer is not None:
        prime_x = np.asarray(primer.offsets, np.float32).reshape(-1, 3)
        if len(prime_x) == 0 or not np.isfinite(prime_x).all():
            raise SamplingError("the primer ink is empty or has non-finite points")
        prime_x = respace(prime_x, model.config.point_step)  # to the network's spacing
    if model.synthesis:
        if text is None:
            raise SamplingError("the synthesis model needs text to write")
        text = prepare_text(text, alphabet)
        full = text
        if primer is not None:
            full = primed_text(primer.text, text)
            alphabet.check(primer.text)
        idx = torch.as_tensor(alphabet.encode(full))[None].expand(batch, -1)
        onehot = model.encode_text(idx)
        positions = torch.arange(1, onehot.shape[1] + 1, dtype=onehot.dtype)
        U = len(full)
        limit = len(prime_x) + steps_per_char * (len(text) + 1)
    else:
        if text:
            raise SamplingError("the prediction model writes without text; pass no text")
        U = 0
        limit = len(prime_x) + (max_steps or 700)
    if max_steps is not None:
        limit = min(limit, len(prime_x) + max_steps)
    limit = min(limit, len(prime_x) + MAX_UNCONDITIONAL_STEPS)

    if fast:
        from engine.fast import supports

        fast = supports(model)
    prime_norm = norm.normalise(prime_x) if len(prime_x) else prime_x
    if fast:
        step = _fast_step(model, batch, onehot, bias, norm, weights)
    else:
        step = _reference_step(model, model.initial_state(batch), onehot, positions, bias, norm)
    mean, std = np.asarray(norm.mean, np.float64), np.asarray(norm.std, np.float64)
    mean_f, std_f = tuple(mean.tolist()), tuple(std.tolist())
    x = np.zeros((batch, 3), np.float32)  # x_1 is the zero vector (Sec. 2)
    done = np.zeros(batch, dtype=bool)
    flushed = DenormalsFlushed()  # the window's tails are denormal: up to 7x slower steps
    with torch.inference_mode():
        for t in range(limit):
            with flushed:
                params, phi_np, y_row = step(x)
            primed = t < len(prime_x)
            if primed:
                offset = np.repeat(prime_x[t][None].astype(np.float64), batch, axis=0)
                x = np.repeat(prime_norm[t][None], batch, axis=0)
            else:
                if y_row is not None:  # batch 1 on the fast path: floats, no masking needed
                    dx, dy, eos = _draw_one(y_row, bias, mean_f, std_f, rng)
                    offset = np.array([[dx, dy, eos]])
                    x = [[(dx - mean_f[0]) / std_f[0], (dy - mean_f[1]) / std_f[1], eos]]
                else:
                    offset = _draw(params() if callable(params) else params, rng)
                    offset[done] = 0.0
                    x = offset.copy()
                    x[:, :2] = (offset[:, :2] - mean) / std
            yield SampleStep(t, offset, primed, phi_np, params, done.copy())
            if primed or phi_np is None:
                continue
            # Sec. 5.3 stop rule: the window has moved past the last character
            if batch == 1:  # past_last_character: the first maximum is at U (4x cheaper)
                if phi_np[0].argmax() == U:
                    return
            else:
                done |= past_last_character(phi_np)
                if done.all():
                    return


def _fast_step(model, batch: int, onehot, bias: float, norm: NormStats, weights: str):
    """x (B, 3) normalised -> (lazy params, phi copy, raw output row as floats at batch 1 else
    None) through engine.fast.FastStepper."""
    from engine.fast import make_stepper, params_numpy, resolve_weights

    stepper = make_stepper(model, resolve_weights(model, weights))
    stepper.reset(batch, onehot)
    mean_std = np.asarray(norm.mean, np.float64), np.asarray(norm.std, np.float64)

    def step(x):
        y, phi = stepper.step_numpy(x)
        y = y.copy()
        row = y[0].tolist() if batch == 1 else None
        return partial(params_numpy, y, bias, *mean_std), None if phi is None else phi.copy(), row

    return step


def _reference_step(model, state, onehot, positions, bias: float, norm: NormStats):
    """The same through HandwritingModel.step (params computed eagerly, drawn by `_draw`)."""
    import torch

    def step(x):
        nonlocal state
        y_hat, state, phi = model.step(
            torch.as_tensor(x, dtype=torch.float32), state, onehot, positions
        )
        params = _params_to_numpy(y_hat, bias, norm)
        return params, None if phi is None else phi.cpu().numpy(), None

    return step


@dataclass
class Sample:
    """A finished sample (batch row 0 unless asked otherwise), with its trace for the views."""

    text: str | None
    offsets: np.ndarray  # (T, 3) data units, primer excluded
    phi: np.ndarray | None  # (T, U+1)
    primer_steps: int
    stopped_by_rule: bool

    def strokes(self, origin=(0.0, 0.0)) -> list[np.ndarray]:
        return offsets_to_strokes(self.offsets, origin)


def sample(model, text: str | None = None, **kwargs) -> list[Sample]:
    """Run `generate` to the end; one Sample per batch row."""
    return samples_of(list(generate(model, text, **kwargs)), text)


def samples_of(steps: list[SampleStep], text: str | None = None) -> list[Sample]:
    """The finished Samples (one per batch row) of the steps `generate` yielded."""
    if not steps:
        return []
    B = steps[0].offset.shape[0]
    out = []
    for b in range(B):
        rows = [s for s in steps if not s.primed and not s.done[b]]
        offsets = np.array([s.offset[b] for s in rows], np.float32).reshape(-1, 3)
        phi = None
        if steps[0].phi is not None:
            phi = np.array([s.phi[b] for s in steps if not s.done[b]], np.float32)
        last = steps[-1]
        last_done = last.done[b] or (
            last.phi is not None and past_last_character(last.phi[b : b + 1])[0]
        )
        primer_steps = sum(s.primed for s in steps)
        out.append(Sample(text, offsets, phi, primer_steps, bool(last_done)))
    return out
