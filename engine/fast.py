"""Fast paths for the handwriting networks: a fused sampling step and the fast training variant.

Sampling (Sec. 4/5 generation) at batch 1 is bound by weight traffic and per-op overhead, not
arithmetic, so `FastStepper` computes exactly what `HandwritingModel.step` computes (same
equations, same weights) with as few operations as possible per step:

- every layer's input projection of x_t (Eqs. 1-2) is one small matmul for all layers;
- the window vector enters every layer through a matrix (Eqs. 52-53); with the text fixed,
  w_t @ W = phi_t @ (onehot @ W), so (onehot @ W) is computed once per text and one matmul of
  phi gives the window's contribution to all layers (U+1 columns instead of V when shorter);
- all hidden states live side by side in one buffer [h^1 | h^2 | ... | h^N], so layer n reads
  [h^{n-1}_t, h^n_{t-1}] as one contiguous slice and does one fused gate matmul, and the output
  layer (Eq. 3) reads the whole buffer with no concatenation;
- everything else is in place on preallocated buffers, and the mixture parameters are split in
  numpy (`params_numpy`), which costs a fraction of the torch ops for a handful of numbers.

Weights (`weight_dtype`, or the names in `WEIGHTS`): fp32; bf16 (half the weight bytes); int8
(a quarter): the large recurrent matrices quantised per output channel, symmetric, multiplied
by `torch._weight_int8pack_mm` with bf16 activations; the output layer stays fp32 (it sets the
mixture parameters directly). Results, biases, peepholes and all state stay fp32. Where that
kernel is missing or fails the stepper falls back (bf16 on a GPU, fp32 elsewhere) and says why
in `fallback`.

The native step: with int8 weights on an x86-64 CPU with AVX-512 VNNI or AVX2, `reset` hands
the whole network step to engine/native/step.c (built on first use with the machine's C
compiler), one call per step instead of ~45 torch ops. Network step, one thread, against the
torch int8 step: 3 x 400 0.16 ms (AVX-512 VNNI) / 0.18 (AVX2) against 0.39; the bundled 3 x 256
0.044 / 0.066 against 0.19. Its activations are 15-16 bits, so it stays as close to fp32 as the
torch int8 step, and each row of a batch is computed alone (bit-equal to the batch-1 result).
`kernel` says which step runs, `native_isa` its instruction set and `native_reason` why not
the native one.

The same buffers make the step capturable as a CUDA graph; on a GPU `FastStepper` captures it
once per `reset` (code path written for CUDA, exercised only where a GPU is present).

Also here: `DenormalsFlushed`, which the sampler and the trainer hold around each step (the
window's weights pass through the denormal range and each denormal operand costs a microcode
assist), and `sampling_threads`, how many CPU threads a model samples best with.

Training: `UpperLSTMStack` runs layers 2..N as whole-sequence `nn.LSTM`s (cuDNN on a GPU, oneDNN
on the CPU) for the `cell="lstm"` variant of HandwritingConfig. Only layer 1 and the window loop
step by step. This variant is a deliberate deviation from the paper: layers 2..N have no
peepholes (Eqs. 7-10 without w_c) and their derivative clip acts on each layer's outputs rather
than on the gate pre-activations.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import os
import sys

import numpy as np
import torch
from torch import Tensor, nn

from engine import EngineError
from engine.lstm import clip_derivative
from engine.window import LOG2E, window_params

log = logging.getLogger(__name__)
_told: set = set()  # kernel choices already logged (once per process each)

CELLS = ("peephole", "lstm")  # HandwritingConfig.cell
WEIGHTS = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.int8}
# int8 pays only when the step streams its weights from memory: measured on a 2 MiB-L2 core, a
# 2 x 128 model (0.2 M recurrent + output weights, cache-resident) is 20-60 % slower in int8,
# the 3 x 400 one (3.4 M) 30 % faster. Below INT8_MIN_MODEL every matrix stays fp32; above it,
# every matrix of at least INT8_MIN_WEIGHTS weights is quantised.
INT8_MIN_MODEL = 1024 * 1024
INT8_MIN_WEIGHTS = 64 * 1024
# torch 2.13's CPU _weight_int8pack_mm reads out of bounds (segfault, not an exception) when the
# inner dimension K is not a multiple of 16 (seen for K = 95..120 at batch >= 2); such matrices
# stay fp32. Every hidden size in engine.models.PRESETS is a multiple of 16.
INT8_K_MULTIPLE = 16
MAX_NATIVE_LAYERS = 16  # engine/native/step.c's MAX_LAYERS


class FastPathError(EngineError, ValueError):
    """A model or input that the fast path cannot handle."""


def parse_weights(weights, what: str = "weights") -> torch.dtype:
    """ "fp32" | "bf16" | "int8" (or the torch dtype itself) -> the torch dtype."""
    if isinstance(weights, torch.dtype) and weights in WEIGHTS.values():
        return weights
    if isinstance(weights, str) and weights in WEIGHTS:
        return WEIGHTS[weights]
    names = ", ".join(repr(k) for k in WEIGHTS)
    raise FastPathError(f"{what} must be one of {names} (or the torch dtype), not {weights!r}")


def weights_name(dtype: torch.dtype) -> str:
    return next(k for k, v in WEIGHTS.items() if v == dtype)


# -- denormal numbers -----------------------------------------------------------------------------
def flushing_denormals() -> bool:
    """Whether the calling thread treats denormal floats as zero (x86 FTZ/DAZ, Arm FZ). Python
    floats use the same unit, so half the smallest normal double comes out as 0.0 then."""
    return sys.float_info.min * 0.5 == 0.0


class DenormalsFlushed:
    """`with DenormalsFlushed():` computes with denormal floats read and written as zero on the
    calling thread, and leaves the thread's floating-point mode as it found it (so a program
    that calls the engine never sees IEEE arithmetic change under it). Reusable, not reentrant;
    a no-op where the CPU cannot flush.

    Why: the attention window makes denormals all the time. phi(t, u) = sum_k alpha exp(-beta
    (kappa - u)^2) (Eq. 46) passes through 1e-38..1e-45 for every character the window leaves
    behind, and every vector multiply with a denormal operand takes a microcode assist (~100
    cycles). Measured on this machine (`python -m bench.speed denormals`, bench/RESULTS.md,
    eighth session): the real trainer's paper-size steps on corpus batches run 1.26x faster
    flushed; whole sampling steps 1.03-1.05x; and a random 3 x 400 step whose window had run
    far past its text took 2.9 ms unflushed against 0.36 ms flushed. Values below 1.2e-38 (fp32)
    are nothing a network output can tell from zero."""

    def __enter__(self):
        self._was = flushing_denormals()
        if not self._was:
            torch.set_flush_denormal(True)
        return self

    def __exit__(self, *exc) -> None:
        if not self._was:
            torch.set_flush_denormal(False)


# -- int8 weight-only matrices --------------------------------------------------------------------
def _int8_kernel():
    return getattr(torch, "_weight_int8pack_mm", None)


class Int8Weight:
    """W (K, N) as int8 q (N, K) with one bf16 scale per output column: W ~= q.t() * scale.
    Symmetric per-output-channel quantisation: scale_j = max_k |W_kj| / 127."""

    dtype = torch.int8

    def __init__(self, W: Tensor):
        W = W.detach().float()
        self.shape = tuple(W.shape)
        scale = (W.abs().amax(0).clamp_min(1e-12) / 127.0).to(torch.bfloat16)
        q = torch.round(W / scale.float()).clamp_(-127, 127)
        self.q = q.to(torch.int8).t().contiguous()
        self.scale = scale

    def dequantised(self) -> Tensor:
        return (self.q.float() * self.scale.float()[:, None]).t()

    def matmul(self, inp_bf16: Tensor) -> Tensor:
        """(B, K) bf16 -> (B, N) bf16."""
        return _int8_kernel()(inp_bf16, self.q, self.scale)


def _quantised(W: Tensor):
    """Int8Weight of W (K, N), checked against the kernel; fp32 W when the matrix is too small
    or K is not a multiple of INT8_K_MULTIPLE."""
    if W.numel() < INT8_MIN_WEIGHTS or W.shape[0] % INT8_K_MULTIPLE:
        return W.float().contiguous()
    q = Int8Weight(W)
    _check_int8(q)
    return q


def _check_int8(W: Int8Weight) -> None:
    """Raise unless the int8 kernel runs here and agrees with the dequantised matrix."""
    if _int8_kernel() is None:
        raise RuntimeError("this torch has no torch._weight_int8pack_mm")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, W.shape[0], generator=g).to(W.q.device, torch.bfloat16)
    got = W.matmul(x).float()
    ref = x.float() @ W.dequantised()
    if got.shape != ref.shape or (got - ref).abs().max() > 0.02 * ref.abs().max() + 1e-6:
        raise RuntimeError("torch._weight_int8pack_mm gave wrong results")


# -- sampling -------------------------------------------------------------------------------------
def _layer_weights(model) -> list[dict]:
    """Per layer: W_x (4H, 3), W_w (4H, V) or None, W_below (4H, H) or None, W_h (4H, H),
    b (4H), peepholes (w_ci, w_cf, w_co) or None. Gate order i, f, c, o in every layer."""
    H, V = model.config.hidden_size, model.config.alphabet_size if model.synthesis else 0
    cells = model.stack.cells
    first = cells[0]
    layers = [
        dict(
            wx=first.weight_x,
            ww=first.weight_h[:, H:] if V else None,
            wbelow=None,
            wh=first.weight_h[:, :H],
            b=first.bias,
            peep=(first.w_ci, first.w_cf, first.w_co),
        )
    ]
    upper = getattr(model, "upper", None)
    for n in range(1, model.config.num_layers):
        if upper is not None:
            lstm = upper.layers[n - 1]
            wx_all, wh, b = lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0
            peep = None
        else:
            cell = cells[n]
            wx_all, wh, b = cell.weight_x, cell.weight_h, cell.bias
            peep = (cell.w_ci, cell.w_cf, cell.w_co)
        layers.append(
            dict(
                wx=wx_all[:, :3],
                ww=wx_all[:, 3 : 3 + V] if V else None,
                wbelow=wx_all[:, 3 + V :],
                wh=wh,
                b=b,
                peep=peep,
            )
        )
    return layers


class FastStepper:
    """One sampling step of a HandwritingModel with fused matmuls and preallocated buffers.

    Usage: `s = FastStepper(model); s.reset(batch, onehot); y_hat, phi = s.step(x_t)` for each
    step. Computes the same y_hat (B, 1+6M) and phi (B, U+1) as `model.step` from the same
    inputs. `weight_dtype` (a torch dtype or "fp32" | "bf16" | "int8") sets how the matmul
    weights are stored; accumulation and all state stay fp32. `weights` names what is actually
    used and `fallback` says why when that differs from what was asked (else None).
    """

    def __init__(
        self, model, weight_dtype=torch.float32, cuda_graph: bool = True, native: bool = True
    ):
        asked = parse_weights(weight_dtype, "weight_dtype")
        cfg = model.config
        self.model = model
        self.synthesis = model.synthesis
        self.H, self.N, self.K = cfg.hidden_size, cfg.num_layers, cfg.window_components
        self.device = model.output.weight.device
        self.use_graph = cuda_graph and self.device.type == "cuda"
        self._weights_cache = _prepared(model, asked)
        self.__dict__.update(self._weights_cache)
        int8 = any(W.dtype == torch.int8 for W in self.Wrec + [self.Wy])
        self.weights = "int8" if int8 else weights_name(self.wdtype).replace("int8", "fp32")
        self.batch = 0
        self._flushed = DenormalsFlushed()
        self.native_asked = native
        self.kernel = "torch"  # or "native" (engine/native/step.c), decided per reset
        self.native_isa = None  # the native step's instruction set (engine.native.LEVELS)
        self.native_reason = None  # why the native step is not used, when it is not

    def _prepare(self, layers: list[dict]) -> None:
        f32 = torch.float32
        # x_t (3 inputs) into all layers at once: (3, N*4H), with every layer's bias
        self.Wx = torch.cat([ly["wx"] for ly in layers], 0).t().detach().contiguous()
        self.b = torch.cat([ly["b"] for ly in layers], 0).detach().to(f32).contiguous()
        self.Ww = torch.cat([ly["ww"] for ly in layers], 0).t() if self.synthesis else None
        # layer 1 reads [h^1_{t-1}]; layer n reads [h^{n-1}_t, h^n_{t-1}] (one slice of hbuf)
        Wrec = [layers[0]["wh"].t()] + [
            torch.cat([ly["wbelow"], ly["wh"]], 1).t() for ly in layers[1:]
        ]
        self.peep = [
            None
            if ly["peep"] is None
            else (torch.stack(ly["peep"][:2]).detach(), ly["peep"][2].detach())
            for ly in layers
        ]
        Wy = self.model.output.weight.t()  # (N*H, 1+6M), Eq. 3
        self.ny = Wy.shape[1]
        self.by = self.model.output.bias.detach()
        if self.synthesis:
            lin = self.model.window.linear
            self.window_kind = self.model.window.kind
            self.Wp, self.bp = lin.weight.detach().t().contiguous(), lin.bias.detach().clone()
            if self.window_kind == "graves":
                # beta log2 e, for exp2 in _window: exp(b_hat + ln log2 e) = beta log2 e (Eq. 50)
                K = self.model.config.window_components
                self.bp[K : 2 * K] += math.log(LOG2E)
        self.fallback = None
        try:
            self._store_weights(Wrec, Wy, self.wdtype)
        except Exception as exc:  # the int8 kernel is missing or fails on this device
            self.fallback = f"int8 weights unavailable ({exc}); using {self._fallback_name()}"
            self.wdtype = WEIGHTS[self._fallback_name()]
            self._store_weights(Wrec, Wy, self.wdtype)

    def _fallback_name(self) -> str:
        return "bf16" if self.model.output.weight.device.type == "cuda" else "fp32"

    def _store_weights(self, Wrec: list[Tensor], Wy: Tensor, dtype: torch.dtype) -> None:
        """Wrec, Wy and the window matrix Wwd in the storage dtype (int8: the large ones)."""

        total = _streamed_weights(self.model)
        self.quantise = dtype == torch.int8 and total >= INT8_MIN_MODEL
        if dtype == torch.int8 and not self.quantise:
            self.fallback = f"int8 asked, but {total:,} weights stay in cache: fp32 is faster"

        def conv(W: Tensor):
            W = W.detach()
            if dtype != torch.int8:
                return W.to(dtype).contiguous()
            return _quantised(W) if self.quantise else W.float().contiguous()

        self.Wrec = [conv(W) for W in Wrec]
        # the output layer stays fp32 under int8: it sets the mixture parameters directly, and
        # quantising it cost 70 % of int8's likelihood loss on the bundled model (validation NLL
        # +0.025 nats/point with it, +0.008 without) for 3-13 % of the weight bytes
        self.Wy = Wy.detach().float().contiguous() if dtype == torch.int8 else conv(Wy)
        self.Wwd = conv(self.Ww) if self.synthesis else None

    # -- per text -----------------------------------------------------------------------------
    def reset(self, batch: int, onehot: Tensor | None = None) -> None:
        """Zero state for `batch` rows; the synthesis network needs onehot (B, U+1, V)."""
        if batch < 1:
            raise FastPathError("batch must be at least 1")
        H, N, dev, f32 = self.H, self.N, self.device, torch.float32
        z = lambda *s: torch.zeros(*s, device=dev, dtype=f32)  # noqa: E731
        self.batch = B = batch
        self.x = z(B, 3)
        self.G = z(B, N * 4 * H)  # input projections + window contributions, all layers
        self.gates = [z(B, 4 * H) for _ in range(N)]
        self.hbuf = z(B, N * H)  # [h^1 | ... | h^N]
        # the matmuls read a bf16 copy of hbuf when the weights are not fp32 (one cast per
        # layer instead of one per matmul, and no allocation)
        low = any(W.dtype != f32 for W in self.Wrec + [self.Wy])
        self.hmm = torch.zeros(B, N * H, device=dev, dtype=torch.bfloat16) if low else self.hbuf
        self.c = [z(B, H) for _ in range(N)]
        self.tc = z(B, H)
        self.y = z(B, self.ny)
        self.phi = None
        self._views()
        if self.synthesis:
            self._reset_window(onehot, B)
        if self.use_graph:
            self._capture()
        on_cpu = dev.type == "cpu"
        self.x_np = self.x.numpy() if on_cpu else None  # zero-copy views for the sampler
        self.y_np = self.y.numpy() if on_cpu else None
        self.phi_np = self.phi.numpy() if on_cpu and self.phi is not None else None
        self._choose_kernel()

    def _reset_window(self, onehot: Tensor | None, B: int) -> None:
        if onehot is None or onehot.dim() != 3 or onehot.shape[0] != B:
            raise FastPathError("the synthesis network needs onehot of shape (batch, U+1, V)")
        dev, f32, K = self.device, torch.float32, self.K
        onehot = onehot.to(dev, f32)
        Up = onehot.shape[1]
        shared = bool((onehot == onehot[:1]).all())
        text = onehot[0] if shared else onehot  # (U+1, V) when every row writes the same text
        # w_t @ W_w == phi_t @ (onehot @ W_w): precompute P = onehot @ W_w when U+1 < V (fewer
        # columns per step)
        self.onehot, self.shared = text, shared
        self.P = self._window_matrix(text, Up)
        self.pos = torch.arange(1, Up + 1, device=dev, dtype=f32)
        self.abk = torch.zeros(B, 3 * K, device=dev)  # alpha, beta, kappa increments
        self.alpha3 = self.abk[:, :K].unsqueeze(1)  # (B, 1, K)
        self.beta3 = self.abk[:, K : 2 * K].unsqueeze(-1)  # (B, K, 1)
        self.kinc = self.abk[:, 2 * K :]
        self.kappa = torch.zeros(B, K, device=dev)
        self.d = torch.zeros(B, K, Up, device=dev)
        self.phi3 = torch.zeros(B, 1, Up, device=dev)
        self.phi = self.phi3.view(B, Up)
        self.gw = torch.zeros(B, self.G.shape[1], device=dev)  # w contributions, all layers
        self.gw1, self.gwrest = self.gw[:, : 4 * self.H], self.gw[:, 4 * self.H :]
        self.h1 = self.hbuf[:, : self.H]
        self.kappa3 = self.kappa.unsqueeze(-1)  # (B, K, 1)
        self.wbuf = torch.zeros(B, self.Ww.shape[0], device=dev)

    def _window_matrix(self, text: Tensor, Up: int):
        """P = onehot @ W_w (U+1, N*4H), or None when U+1 >= V (then w_t is formed first)."""
        if Up >= self.Ww.shape[0]:
            return None
        P = text @ self.Ww
        # P is per text: int8 would cost a quantisation per reset, and measured slower per step
        # (a 41 x 4800 int8 matmul: 0.49 vs 0.41 ms per network step, median of 25 x 100)
        return P.to(torch.bfloat16) if self.wdtype == torch.bfloat16 else P

    # -- the step -----------------------------------------------------------------------------
    @staticmethod
    def _mm(inp: Tensor, W, out: Tensor, base: Tensor | None = None) -> None:
        """out = base + inp @ W, fp32 result whatever the weight storage."""
        if W.dtype == torch.float32:
            if base is None:
                torch.mm(inp, W, out=out)
            else:
                torch.addmm(base, inp, W, out=out)
            return
        inp = inp if inp.dtype == torch.bfloat16 else inp.to(torch.bfloat16)
        r = W.matmul(inp) if W.dtype == torch.int8 else torch.mm(inp, W)
        out.copy_(r)  # bf16 -> fp32; then add in fp32 (torch.add(r, base, out=out) would
        if base is not None:  # promote r into a fresh fp32 tensor first: 2-3x the time)
            out.add_(base)

    def _views(self) -> None:
        """Slices of the buffers each layer reads and writes, made once per reset (slicing
        per step costs more than the elementwise work at batch 1)."""
        H, H4, B = self.H, 4 * self.H, self.batch
        self.layer_views = []
        for n in range(self.N):
            g = self.gates[n]
            hm = self.hbuf if self.Wrec[n].dtype == torch.float32 else self.hmm
            self.layer_views.append(
                (
                    # [h^{n-1}_t, h^n_{t-1}] (layer 1: h^1_{t-1}), as the matmul reads it
                    hm[:, :H] if n == 0 else hm[:, (n - 1) * H : (n + 1) * H],
                    self.G[:, n * H4 : (n + 1) * H4],  # projections of x_t (and w) + bias
                    g[:, : 2 * H].view(B, 2, H),  # a_i, a_f
                    g[:, : 2 * H],
                    g[:, :H],  # i
                    g[:, H : 2 * H],  # f
                    g[:, 2 * H : 3 * H],  # tanh(a_c)
                    g[:, 3 * H :],  # a_o, then o
                    self.c[n].unsqueeze(1),
                    self.hbuf[:, n * H : (n + 1) * H],  # h^n_t
                    None if self.hmm is self.hbuf else self.hmm[:, n * H : (n + 1) * H],  # bf16
                )
            )
        self.G1, self.Grest = self.G[:, :H4], self.G[:, H4:]
        self.hy = self.hbuf if self.Wy.dtype == torch.float32 else self.hmm  # Eq. 3 reads it

    def _lstm(self, n: int) -> None:
        """Gates of layer n (Eqs. 7-11) in place; writes h^n_t into its slice of hbuf."""
        inp, base, if3, if2, i, f, gc, o, c3, h_out, h_low = self.layer_views[n]
        c = self.c[n]
        self._mm(inp, self.Wrec[n], self.gates[n], base)
        peep = self.peep[n]
        if peep is not None:
            if3.addcmul_(peep[0], c3)  # w_ci c_{t-1}, w_cf c_{t-1} (Eqs. 7-8)
        if2.sigmoid_()  # i (Eq. 7), f (Eq. 8)
        gc.tanh_()
        c.mul_(f).addcmul_(i, gc)  # Eq. 9
        if peep is not None:
            o.addcmul_(peep[1], c)  # w_co c_t (Eq. 10)
        o.sigmoid_()
        torch.tanh(c, out=self.tc)
        torch.mul(o, self.tc, out=h_out)  # Eq. 11
        if h_low is not None:
            h_low.copy_(h_out)

    def _window(self) -> None:
        """Eqs. 46-51 from h^1_t, then phi's contribution to every layer's gates."""
        torch.addmm(self.bp, self.h1, self.Wp, out=self.abk)  # Eq. 48
        if self.window_kind == "graves":
            self.abk.exp_()  # Eqs. 49-51; bp holds beta's factor log2 e
        else:
            self.abk.copy_(torch.cat(window_params(self.abk, self.window_kind), dim=-1))
            self.beta3.mul_(LOG2E)
        self.kappa.add_(self.kinc)  # Eq. 51
        d = torch.sub(self.kappa3, self.pos, out=self.d)  # (B, K, U+1)
        # exp2, not exp: most arguments lie below -87, where torch's CPU exp is 8-17x slower
        # (engine.window.window_weights)
        d.mul_(d).mul_(self.beta3).neg_().exp2_()
        torch.bmm(self.alpha3, d, out=self.phi3)  # Eq. 46, (B, 1, U+1)
        if self.P is not None and self.shared:
            self._mm(self.phi, self.P, self.gw)
        elif self.P is not None:  # a different text per row: P is (B, U+1, N*4H)
            self.gw.copy_(torch.bmm(self.phi3.to(self.P.dtype), self.P).squeeze(1))
        else:
            if self.shared:
                torch.mm(self.phi, self.onehot, out=self.wbuf)  # Eq. 47
            else:
                torch.bmm(self.phi3, self.onehot, out=self.wbuf.unsqueeze(1))
            self._mm(self.wbuf, self.Wwd, self.gw)

    def _core(self) -> None:
        torch.addmm(self.b, self.x, self.Wx, out=self.G)  # x_t into every layer + biases
        if self.synthesis:
            self.G1.add_(self.gw1)  # layer 1 sees w_{t-1} (Eq. 52)
        self._lstm(0)
        if self.synthesis:
            self._window()
            self.Grest.add_(self.gwrest)  # layers 2..N see w_t (Eq. 53)
        for n in range(1, self.N):
            self._lstm(n)
        self._mm(self.hy, self.Wy, self.y, self.by)  # Eq. 3

    # -- the native step (engine/native/step.c) ------------------------------------------------
    def _native_blocker(self) -> str | None:
        """Why this reset cannot use the native step, or None when it can."""
        if not self.native_asked:
            return "not asked (native=False)"
        if self.device.type != "cpu":
            return "the native step runs on the CPU only"
        if not all(W.dtype == torch.int8 for W in self.Wrec) or self.Wy.dtype != torch.float32:
            return f"the native step needs int8 weights (these are {self.weights})"
        if self.N > MAX_NATIVE_LAYERS:
            return f"the native step takes at most {MAX_NATIVE_LAYERS} layers"
        if self.synthesis:
            if self.window_kind != "graves":
                return f"the native step has the paper's window only, not {self.window_kind!r}"
            if not self.shared:
                return "the native step needs every row to write the same text"
            if self.P is None and self.Wwd.dtype != torch.float32:
                return "the native step needs the window matrix in fp32"
        from engine import native

        lib, why = native.library()
        return why if lib is None else None

    def _choose_kernel(self) -> None:
        from engine import native

        self.__dict__.pop("_core", None)  # the torch step (the class's method)
        self.kernel, self.native_isa = "torch", None
        self.native_reason = self._native_blocker()
        level = native.level() if self.native_reason is None else 0
        said = (self.weights, self.native_reason)
        if said not in _told:  # `handwriting-engine -v` and the studio's log say which step runs
            _told.add(said)
            how = f"native step ({native.LEVELS[level]})" if level else "torch step"
            why = "" if level else f" (native: {self.native_reason})"
            log.info("sampling with %s weights, %s%s", self.weights, how, why)
        if not level:
            return
        lib, _ = native.library()
        cache = self._weights_cache  # packed once per model, weights and instruction set
        if ("native_packed", level) not in cache:
            cache["native_packed", level] = [native.Packed(W, level) for W in self.Wrec]
        packed = cache["native_packed", level]
        B, H, N, f32 = self.batch, self.H, self.N, torch.float32
        kmax = max(p.K for p in packed)
        nmax = max(-(-p.N // 16) * 16 for p in packed)
        self._scratch = dict(  # sized for either instruction set's layout
            uh=torch.zeros(B, kmax // 2 + 2, dtype=torch.int32),
            ul=torch.zeros(B, kmax // 2 + 2, dtype=torch.int32),
            acch=torch.zeros(B, nmax, dtype=torch.int32),
            accl=torch.zeros(B, nmax, dtype=torch.int32),
            qlo=torch.zeros(B, dtype=f32),
            qs=torch.zeros(B, dtype=f32),
        )
        keep = []  # fp32 contiguous copies of what the kernel only reads, alive with the ctx

        def ptr(t: Tensor | None, written: bool = False):
            if t is None:
                return None
            if written:  # the kernel writes the stepper's own buffers
                assert t.is_contiguous() and t.dtype in (f32, torch.int32), "native buffer"
                return t.data_ptr()
            keep.append(t.detach().to(f32).contiguous())
            return keep[-1].data_ptr()

        ctx = native.Ctx(
            level=level, B=B, H=H, L=N, K=self.K, ny=self.ny, synthesis=int(self.synthesis)
        )
        for name in ("Wx", "b", "by", "Wy"):
            setattr(ctx, name, ptr(getattr(self, name)))
        for name in ("x", "G", "hbuf", "y"):
            setattr(ctx, name, ptr(getattr(self, name), written=True))
        ctx.gates = ptr(self.gates[0], written=True)
        for n in range(N):
            ctx.c[n] = ptr(self.c[n], written=True)
            if self.peep[n] is not None:
                ctx.peep_if[n], ctx.peep_o[n] = ptr(self.peep[n][0]), ptr(self.peep[n][1])
            ctx.Wrec[n] = packed[n].qmat()
        if self.synthesis:
            ctx.Up, ctx.V = self.pos.shape[0], self.Ww.shape[0]
            for name in ("Wp", "bp", "P", "onehot", "Wwd"):
                setattr(ctx, name, ptr(getattr(self, name)))
            for name in ("abk", "kappa", "phi", "gw", "wbuf"):
                setattr(ctx, name, ptr(getattr(self, name), written=True))
        for name, t in self._scratch.items():
            setattr(ctx, name, ptr(t, written=True))
        self._ctx, self._ctx_keep = ctx, keep
        self._core = functools.partial(lib.hw_step, ctypes.addressof(ctx))
        self.kernel, self.native_isa = "native", native.LEVELS[level]

    def _capture(self) -> None:
        """Record _core as a CUDA graph (static buffers, so replay is one launch)."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):  # warm-up outside the graph, as CUDA graphs require
                self._core()
        torch.cuda.current_stream().wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._core()
        self._zero_state()

    def _zero_state(self) -> None:
        state = [self.hbuf, self.hmm, *self.c]
        for t in state + ([self.kappa, self.gw] if self.synthesis else []):
            t.zero_()

    @torch.no_grad()
    def step(self, x_t) -> tuple[Tensor, Tensor | None]:
        """x_t (B, 3) tensor or array (normalised offsets) -> (y_hat (B, 1+6M), phi or None).

        The returned tensors are fresh copies (the buffers are reused by the next step)."""
        if self.batch == 0:
            raise FastPathError("call reset(batch, onehot) before step()")
        x_t = torch.as_tensor(x_t)
        if x_t.shape != (self.batch, 3):
            raise FastPathError(f"x_t must have shape ({self.batch}, 3), not {tuple(x_t.shape)}")
        self.x.copy_(x_t)
        with self._flushed:
            self._run()
        return self.y.clone(), None if self.phi is None else self.phi.clone()

    def _run(self) -> None:
        if self.use_graph:
            self._graph.replay()
        else:
            self._core()

    def step_numpy(self, x_t: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The sampler's step on the CPU: x_t (B, 3) array -> views of the y_hat and phi
        buffers (overwritten by the next step; copy what must outlive it). No checks, no
        copies and no DenormalsFlushed (generate() holds it around this call): the caller
        guarantees the shape. Falls back to `step` on a GPU."""
        if self.x_np is None:
            y, phi = self.step(x_t)
            return y.cpu().numpy(), None if phi is None else phi.cpu().numpy()
        self.x_np[...] = x_t
        if torch.is_inference_mode_enabled():  # generate() holds it: entering costs 1.5 us
            self._core()
        else:
            with torch.inference_mode():
                self._core()
        return self.y_np, self.phi_np

    def state(self):
        """The current recurrent state as an engine.models.State (copies)."""
        from engine.models import State

        H = self.H
        h = [self.hbuf[:, n * H : (n + 1) * H].clone() for n in range(self.N)]
        c = [t.clone() for t in self.c]
        if not self.synthesis:
            return State(h, c)
        onehot = self.onehot if not self.shared else self.onehot.expand(self.batch, -1, -1)
        w = torch.bmm(self.phi.unsqueeze(1), onehot).squeeze(1)  # Eq. 47
        return State(h, c, self.kappa.clone(), w)


def _prepared(model, wdtype: torch.dtype) -> dict:
    """The fused weight matrices, cached on the model until any parameter changes (every
    in-place update bumps a tensor's version), so starting a sample costs no weight copies.
    One entry per weight dtype; int8 entries also key on the kernel (tests swap it out)."""
    params = tuple((p.data_ptr(), p._version) for p in model.parameters())
    cache = model.__dict__.setdefault("_fast_weights", {})
    if cache.get("params") != params:
        cache.clear()
        cache["params"] = params
    key = (wdtype, _int8_kernel() if wdtype == torch.int8 else None)
    if key not in cache:
        proto = FastStepper.__new__(FastStepper)
        proto.model, proto.synthesis, proto.wdtype = model, model.synthesis, wdtype
        proto.H = model.config.hidden_size
        with torch.no_grad():
            proto._prepare(_layer_weights(model))
        del proto.model, proto.synthesis, proto.H
        cache[key] = proto.__dict__
    return cache[key]


def supports(model) -> bool:
    """True when `model` is a stock HandwritingModel whose step the fast path reproduces
    (a subclass or an instance with its own `step` keeps its own step)."""
    from engine.models import HandwritingModel

    return (
        isinstance(model, HandwritingModel)
        and type(model).step is HandwritingModel.step
        and "step" not in vars(model)
    )


def resolve_weights(model, weights: str = "auto") -> str:
    """ "auto" -> "int8" on the CPU for models whose recurrent + output weights exceed
    INT8_MIN_MODEL (paper size: 30-40 % faster per step, validation NLL within 0.1 %, see
    bench/RESULTS.md), else "fp32" (small models are cache-resident; GPUs are not measured).
    Any other name is checked and returned."""
    if weights != "auto":
        parse_weights(weights)
        return weights
    return "int8" if _int8_sized(model) else "fp32"


def _int8_sized(model) -> bool:
    """On the CPU, with at least INT8_MIN_MODEL streamed weights: the models that int8 weights
    (resolve_weights) and a second sampling thread (sampling_threads) both pay off for."""
    return model.output.weight.device.type == "cpu" and _streamed_weights(model) >= INT8_MIN_MODEL


def _streamed_weights(model) -> int:
    """Weights a sampling step streams through the int8-eligible matmuls: the fused recurrent
    matrices (layer 1: 4H x H; layer n: 4H x [h^{n-1}, h^n]) and the output layer (Eq. 3)."""
    H, N = model.config.hidden_size, model.config.num_layers
    return 4 * H * H + (N - 1) * 8 * H * H + model.output.weight.numel()


def sampling_threads(model, cores: int | None = None, keep_free: int = 0) -> int:
    """Torch CPU threads to sample `model` with: 2 where its weights are large enough for int8
    (INT8_MIN_MODEL, the same rule as resolve_weights) and two cores remain after `keep_free`
    (the studio keeps one for its GUI thread); 1 otherwise. Measured on an idle 2-core machine,
    network step, 1 against 2 threads: 3 x 400 int8 0.39 / 0.30 ms, the bundled 3 x 256 int8
    0.22 / 0.16 ms, 2 x 128 fp32 0.071 / 0.080 ms (slower: its weights sit in one core's cache
    and the parallel regions cost more than they split). Where the other core is busy a parallel
    region waits for it: 2-100x slower steps were measured on a shared 2-core machine.
    Where the native int8 step runs (engine.native) the step is one call on one thread, faster
    than the torch step at two (3 x 400: 0.16 ms network, 0.19 ms whole step), so: 1."""
    cores = (os.cpu_count() or 1) if cores is None else cores
    if not _int8_sized(model) or cores - keep_free < 2:
        return 1
    from engine import native

    return 1 if native.library()[0] is not None else 2


def make_stepper(model, weight_dtype=torch.float32) -> FastStepper:
    """The fast sampling step for a HandwritingModel (synthesis or prediction, any cell);
    weight_dtype: a torch dtype or "fp32" | "bf16" | "int8"."""
    return FastStepper(model, weight_dtype=weight_dtype)


# -- mixture parameters in numpy ------------------------------------------------------------------
def params_numpy(y_hat: np.ndarray, bias: float, mean, std):
    """Raw output (B, 1+6M) -> engine.sampler.StepParams in data units; the numpy twin of
    engine.mixture.split_params with bias (Eqs. 18-22, 61-62) + un-normalisation.
    mean, std: (2,) arrays (pass arrays, not tuples, in a loop: fewer conversions per step)."""
    from engine.sampler import StepParams

    y = y_hat.astype(np.float64)
    M = (y.shape[-1] - 1) // 6
    B = y.shape[0]
    p = y[:, 1 : 1 + M] * (1.0 + bias)  # Eq. 62
    p -= p.max(axis=1, keepdims=True)
    np.exp(p, out=p)
    p /= p.sum(axis=1, keepdims=True)
    sigma = y[:, 1 + 3 * M : 1 + 5 * M] - bias  # Eq. 61
    np.exp(sigma, out=sigma)
    e = np.exp(-y[:, 0])
    e += 1.0
    return StepParams(
        pi=p,
        mu=y[:, 1 + M : 1 + 3 * M].reshape(B, M, 2) * std + mean,
        sigma=sigma.reshape(B, M, 2) * std,
        rho=np.tanh(y[:, 1 + 5 * M :]),
        e=np.reciprocal(e, out=e),
    )


# -- the fast training variant --------------------------------------------------------------------
class UpperLSTMStack(nn.Module):
    """Layers 2..N of the `cell="lstm"` variant: each a whole-sequence single-layer nn.LSTM.

    Layer n sees [x_t, w_t, h^{n-1}_t] (Eq. 2 / Eq. 53; w omitted for the prediction network).
    deviation from Eqs. 7-10: no peepholes in these layers; the derivative clip of Sec. 4.2
    is applied to each layer's hidden outputs instead of its gate pre-activations.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.layers = nn.ModuleList(
            [nn.LSTM(input_size, hidden_size, batch_first=True) for _ in range(num_layers)]
        )
        with torch.no_grad():  # forget-gate bias 1, as engine.lstm.PeepholeLSTMCell does
            for lstm in self.layers:
                lstm.bias_ih_l0[hidden_size : 2 * hidden_size] = 1.0
                lstm.bias_hh_l0.zero_()

    def forward(
        self,
        x: Tensor,
        side: Tensor | None,
        below: Tensor,
        h: list[Tensor],
        c: list[Tensor],
        clip: float | None = None,
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """x (B, T, 3), side (B, T, V) or None, below (B, T, H): hidden sequence of layer 1;
        h, c: all N layers' states. Returns (hidden sequences of layers 2..N, new h, new c)."""
        h, c = list(h), list(c)
        seqs = []
        for i, lstm in enumerate(self.layers):
            n = i + 1
            inp = torch.cat([x] + ([side] if side is not None else []) + [below], dim=-1)
            out, (hn, cn) = lstm(inp, (h[n].unsqueeze(0), c[n].unsqueeze(0)))  # (B, T, H)
            below = clip_derivative(out, clip)
            h[n], c[n] = hn.squeeze(0), cn.squeeze(0)
            seqs.append(below)
        return seqs, h, c

    def step(self, i: int, inp: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """One step of upper layer i (0-based among layers 2..N): inp (B, in) -> (h, c)."""
        m = self.layers[i]
        return torch.lstm_cell(
            inp, (h, c), m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0
        )
