"""Evaluating and sampling the text predictor (Sec. 3): BPC, word perplexity, dynamic evaluation.

BPC = mean over predicted symbols of -log2 Pr(x_{t+1} | y_t). The first symbol of a text is
given, not predicted (there is nothing to condition on), so n symbols give n - 1 predictions.

Word perplexity = 2^(BPC * w), w = symbols per word on the evaluated text itself:
w = (number of symbols) / (number of whitespace-separated words), which counts each word's
trailing space/newline (the paper's PTB figure is w = 5.6, Sec. 3.1). For a byte model the
symbols are bytes, so BPC is bits per byte and w is bytes per word.

Dynamic evaluation (Sec. 3.1, Table 1-2): the text is cut into consecutive segments; each
segment is first predicted and scored with the current weights, then the weights take one
gradient step on that segment's loss, so every symbol is scored once and before it is learnt
from. The static result comes from the same code with no update.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from engine import EngineError
from engine.text_data import Vocab, describe_unknown
from engine.text_model import TextModel, detach_state

LOG2E = 1.0 / math.log(2.0)
log = logging.getLogger(__name__)


class TextEvalError(EngineError, ValueError):
    """Settings or text that evaluation or sampling cannot work with."""


@dataclass(frozen=True)
class DynamicConfig:
    # plain SGD step per segment on the mean per-symbol loss (nats); 0.03 was best of
    # {0.01, 0.03, 0.1, 0.3, 1} on 15k held-out symbols of the bundled Shakespeare model
    lr: float = 0.03
    segment: int = 100  # symbols per score-then-update segment
    decay: float = 0.0  # pull towards the trained weights per step (0 = plain SGD)


@dataclass
class EvalResult:
    symbols: int  # predictions scored
    bits: float  # total -log2 p
    words: int  # whitespace-separated words in the evaluated text
    dynamic: bool

    @property
    def bpc(self) -> float:
        return self.bits / max(self.symbols, 1)

    @property
    def symbols_per_word(self) -> float:
        return (self.symbols + 1) / max(self.words, 1)

    @property
    def word_perplexity(self) -> float:
        return 2.0 ** (self.bpc * self.symbols_per_word)

    def to_dict(self) -> dict:
        return {
            "dynamic": self.dynamic,
            "symbols": self.symbols,
            "bpc": self.bpc,
            "nats_per_symbol": self.bpc / LOG2E,
            "symbols_per_word": self.symbols_per_word,
            "word_perplexity": self.word_perplexity,
        }


def count_words(ids: np.ndarray, vocab: Vocab) -> int:
    """Whitespace-separated words: symbols that are not whitespace but follow one (or start)."""
    if vocab.kind == "bytes":
        space = np.zeros(256, bool)
        space[[9, 10, 11, 12, 13, 32]] = True
    else:
        space = np.array(
            [ch.isspace() for ch in vocab.symbols] + [False] * (vocab.size - len(vocab.symbols))
        )
    s = space[np.asarray(ids, dtype=np.int64)]
    if len(s) == 0:
        return 0
    return int((~s[0]) + np.count_nonzero(~s[1:] & s[:-1]))


def evaluate(
    model: TextModel,
    ids: np.ndarray,
    dynamic: DynamicConfig | None = None,
    streams: int = 1,
    progress: Callable[[int, int], None] | None = None,
    chunk: int = 100,
) -> EvalResult:
    """Static (dynamic=None) or dynamic BPC of `ids` (1-D indices, e.g. a memmap).

    streams > 1 (static only) splits the text into that many contiguous slices evaluated in
    parallel, each from a zero state: faster, slightly pessimistic; streams=1 is exact.
    The model is restored to its original weights afterwards.
    """
    n = len(ids)
    if n < 2:
        raise TextEvalError("need at least 2 symbols to evaluate")
    if dynamic is not None and streams != 1:
        raise TextEvalError("dynamic evaluation reads the text in order: use streams=1")
    streams = max(1, min(streams, (n - 1) // 2))
    L = (n - 1) // streams  # predictions per stream
    seg = dynamic.segment if dynamic else chunk
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()} if dynamic else None
    was_training = model.training
    device = model.output.weight.device
    model.eval()
    opt = torch.optim.SGD(model.parameters(), lr=dynamic.lr) if dynamic else None
    state = model.initial_state(streams)
    bits, scored = 0.0, 0
    starts = np.arange(streams)[:, None] * L
    try:
        for t0 in range(0, L, seg):
            T = min(seg, L - t0)
            pos = starts + t0 + np.arange(T + 1)  # (S, T+1)
            window = torch.from_numpy(np.asarray(ids[pos.ravel()], dtype=np.int64))
            window = window.view(streams, T + 1).to(device)
            x, y = window[:, :-1], window[:, 1:]
            with torch.set_grad_enabled(dynamic is not None):
                logits, state = model(x, state)
                nll = F.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
                )
            bits += nll.item() * LOG2E  # scored before the update below sees this segment
            scored += y.numel()
            if dynamic is not None:
                opt.zero_grad(set_to_none=True)
                (nll / y.numel()).backward()
                opt.step()
                if dynamic.decay:
                    with torch.no_grad():
                        for name, p in model.named_parameters():
                            p.add_(saved[name] - p, alpha=dynamic.decay)
            state = detach_state(state)
            if progress:
                progress(scored, L * streams)
        tail = n - 1 - L * streams  # symbols the even split left over: scored from zero state
        if tail:
            rest = evaluate(model, ids[L * streams :], None, 1, None, chunk)
            bits, scored = bits + rest.bits, scored + rest.symbols
    finally:
        if saved is not None:
            model.load_state_dict(saved)
        model.train(was_training)
    return EvalResult(scored, bits, count_words(ids, model.vocab), dynamic is not None)


# -- sampling ----------------------------------------------------------------------------------
def _prime_ids(vocab: Vocab, prime: str) -> np.ndarray:
    """Indices the sampler is primed with. With no prime it starts after a newline (the model
    always predicts from a given symbol). Unknown characters are reported, never dropped."""
    if not prime:
        if vocab.kind == "bytes" or "\n" in vocab.symbols:
            return vocab.encode("\n")[0]
        return np.zeros(1, np.int64)
    ids, unknown = vocab.encode(prime)
    if unknown:
        log.warning("priming text: %s", describe_unknown(unknown))
    return ids


@dataclass(frozen=True)
class SampledSymbol:
    index: int  # symbol index drawn
    text: str  # text this symbol completes ('' inside a multi-byte UTF-8 character)
    probability: float  # Pr(symbol | history) under the tempered distribution that drew it
    surprisal: float  # -log2 of the model's (untempered) probability of the symbol


def sample_stream(
    model: TextModel,
    prime: str = "",
    temperature: float = 1.0,
    length: int = 200,
    seed: int | None = None,
) -> Iterator[SampledSymbol]:
    """Feed `prime`, then draw `length` symbols one at a time from softmax(ŷ / temperature).
    Stopping is simply not asking for the next item."""
    if not temperature > 0:
        raise TextEvalError(f"temperature must be > 0, not {temperature}")
    if length < 0:
        raise TextEvalError(f"length must be >= 0, not {length}")
    vocab = model.vocab
    gen = torch.Generator().manual_seed(
        seed if seed is not None else int(np.random.SeedSequence().entropy % 2**63)
    )
    start = _prime_ids(vocab, prime)
    model.eval()
    state = model.initial_state(1)
    with torch.no_grad():
        logits, state = model(torch.from_numpy(np.asarray(start, np.int64))[None], state)
        logits = logits[0, -1]
        decoder = vocab.decoder()
        for _ in range(length):
            logp = torch.log_softmax(logits, -1)
            q = torch.softmax(logits / temperature, -1)
            k = int(torch.multinomial(q, 1, generator=gen))
            yield SampledSymbol(k, decoder.feed(k), float(q[k]), float(-logp[k]) * LOG2E)
            logits, state = model.step(torch.tensor([k]), state)
            logits = logits[0]
