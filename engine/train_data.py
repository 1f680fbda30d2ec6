"""Batches of handwriting for training and the HandwritingTask the trainer drives (Sec. 4-5).

Sequences are normalised offsets (norm fit on the training split, Sec. 4); inputs are
x = [0, x_1 .. x_{T-1}] and targets x_1 .. x_T (the network predicts the next offset, Eq. 6),
with a mask for padding. Batches are length-bucketed so padding is small, and the batch order
is a pure function of (seed, epoch), so a data position (epoch, cursor) replays exactly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import Tensor

from engine import EngineError
from engine.alphabet import Alphabet
from engine.data.corpus import spread
from engine.data.preprocess import respace
from engine.mixture import expected_offset, sequence_nll, split_params
from engine.models import HandwritingModel
from engine.strokes import NormStats

log = logging.getLogger(__name__)

BUCKET_BATCHES = 50  # batches per length bucket: sort this many batches' worth by length


class TrainDataError(EngineError, ValueError):
    """Training data that cannot be used; the message says why."""


class BucketBatcher:
    """Length-bucketed batches of indices with a resumable position (epoch, cursor).

    Each epoch: shuffle, cut into chunks of BUCKET_BATCHES batches, sort each chunk by length,
    cut into batches, shuffle the batches. Rank r of W takes batches cursor*W + r; an epoch ends
    when fewer than W batches remain (so every rank steps the same number of times).
    """

    def __init__(self, lengths, batch_size: int, seed: int = 0):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if batch_size < 1:
            raise TrainDataError("batch size must be >= 1")
        if len(self.lengths) == 0:
            raise TrainDataError("no training sequences")
        self.batch_size, self.seed = batch_size, seed
        self.epoch, self.cursor = 0, 0
        self._cache: tuple[int, list[np.ndarray]] | None = None

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.lengths))
        chunk = self.batch_size * BUCKET_BATCHES
        batches = []
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches += [part[i : i + self.batch_size] for i in range(0, len(part), self.batch_size)]
        batches = [batches[i] for i in rng.permutation(len(batches))]
        self._cache = (epoch, batches)
        return batches

    def next(self, rank: int = 0, world: int = 1) -> np.ndarray:
        batches = self.epoch_batches(self.epoch)
        if len(batches) < world:
            raise TrainDataError(
                f"{len(batches)} batches per epoch cannot feed {world} processes; "
                "use a smaller batch size or fewer processes"
            )
        if (self.cursor + 1) * world > len(batches):
            self.epoch, self.cursor = self.epoch + 1, 0
            batches = self.epoch_batches(self.epoch)
        out = batches[self.cursor * world + rank]
        self.cursor += 1
        return out

    def position(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor, "seed": self.seed}

    def set_position(self, d: dict) -> None:
        self.epoch, self.cursor, self.seed = int(d["epoch"]), int(d["cursor"]), int(d["seed"])


@dataclass
class Batch:
    x: Tensor  # (B, T, 3) inputs: [0, x_1..x_{T-1}]
    target: Tensor  # (B, T, 3) x_1..x_T
    mask: Tensor  # (B, T) 1 on real points
    onehot: Tensor | None  # (B, U+1, V) for synthesis
    # number of real sequences when the batch was padded with empty rows (static_batch)
    rows: Tensor | None = None


def window_reading(phi: Tensor, mask: Tensor, lengths: list[int]) -> tuple[float, float]:
    """How sharply and how far the window reads the text, teacher-forced (Eqs. 46-47).

    phi: (B, T, U+1) window weights; mask: (B, T) real points; lengths: characters per row.
    Returns (sum over real points of max_u phi / sum_u phi over the row's real characters -- 1
    when the window rests on one character, 1/3 when spread evenly over three --, number of rows
    whose last point reads the last or second-to-last character most: the window has reached
    the end of the text when the ink does). A diagnostic for researchers and for training runs:
    a blurred or stalled window means the network does not know which letter it is writing.
    """
    B, U = phi.shape[0], max(lengths)
    chars = (
        torch.arange(U, device=phi.device)[None] < torch.tensor(lengths, device=phi.device)[:, None]
    )
    p = phi[..., :U].float() * chars[:, None, :]
    share = p.amax(-1) / p.sum(-1).clamp_min(1e-12)  # (B, T)
    focus = float((share * mask).sum())
    n_points = mask.sum(1)
    last = (n_points.long() - 1).clamp_min(0)  # index of each row's last real point
    read = p[torch.arange(B, device=phi.device), last].argmax(-1)  # (B,)
    want = torch.tensor(lengths, device=phi.device) - 1
    ended = float(((read >= want - 1) & (n_points > 0)).sum())
    return focus, ended


def collate(
    seqs: list[np.ndarray], texts: list[np.ndarray] | None, model: HandwritingModel, device
) -> Batch:
    """Normalised offsets (and text indices) -> padded tensors on `device`."""
    B, T = len(seqs), max(len(s) for s in seqs)
    target = np.zeros((B, T, 3), np.float32)
    mask = np.zeros((B, T), np.float32)
    for i, s in enumerate(seqs):
        target[i, : len(s)] = s
        mask[i, : len(s)] = 1.0
    x = np.zeros_like(target)
    x[:, 1:] = target[:, :-1]  # x_1 = 0 (Sec. 2); padding inputs are masked out of the loss
    onehot = None
    if texts is not None:
        U = max(1, max(len(t) for t in texts))
        idx = np.zeros((B, U), np.int64)
        for i, t in enumerate(texts):
            idx[i, : len(t)] = t
        lengths = torch.tensor([len(t) for t in texts], device=device)
        onehot = model.encode_text(torch.from_numpy(idx).to(device), lengths)
    t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return Batch(t(x), t(target), t(mask), onehot)


class HandwritingTask:
    """Trains the prediction (Sec. 4) or synthesis (Sec. 5) network; implements trainer.Task.

    `offsets` are preprocessed but NOT normalised (as in a Corpus, at its point spacing; they
    are resampled to the network's `point_step`); `split` is 0 for training, 1 for validation;
    `norm` None fits the normalisation on the (resampled) training split. Sequences longer
    than `max_len` are cropped for training: synthesis keeps the prefix with the WHOLE text (a
    prefix of a line is a valid draw from Pr(x | c), so the text stays correct; the window
    simply never reaches the end of long lines), prediction takes a random window (x_1 is
    reset to the zero vector by collate).

    `validation_only` skips the training lines (no resampling, no batcher): for scoring a
    finished model, which needs only `validate()`; `norm` must then be given.
    """

    def __init__(
        self,
        model: HandwritingModel,
        texts: list[str],
        offsets: list[np.ndarray],
        split,
        norm: NormStats | None,
        alphabet: Alphabet,
        batch_size: int = 32,
        max_len: int | None = None,
        seed: int = 0,
        val_batch_size: int = 64,
        val_max_sequences: int | None = None,
        description: dict | None = None,
        validation_only: bool = False,
    ):
        split = np.asarray(split)
        if not (len(texts) == len(offsets) == len(split)):
            raise TrainDataError("texts, offsets and split must have the same length")
        if max_len is not None and max_len < 2:
            raise TrainDataError("max_len must be >= 2")
        self.model, self.alphabet = model, alphabet
        self.synthesis = model.config.kind == "synthesis"
        if self.synthesis and len(alphabet) != model.config.alphabet_size:
            raise TrainDataError(
                f"the model expects {model.config.alphabet_size} symbols, the alphabet has "
                f"{len(alphabet)}"
            )
        self.batch_size, self.max_len, self.seed = batch_size, max_len, seed
        self.val_batch_size, self.device = val_batch_size, torch.device("cpu")
        self.description = description or {}
        train = np.flatnonzero(split == 0)
        valid = np.flatnonzero(split == 1)
        if validation_only:
            if norm is None:
                raise TrainDataError("a validation-only task needs the model's normalisation")
            train = train[:0]
        elif len(train) == 0:
            raise TrainDataError("the data has no training sequences (split 0)")
        if val_max_sequences is not None:
            valid = spread(valid, val_max_sequences)  # not the first N: a few writers only
        step = model.config.point_step  # resampling is a no-op at the corpus's own spacing
        train_off = [respace(offsets[i], step) for i in train]
        valid_off = [respace(offsets[i], step) for i in valid]
        self.norm = norm if norm is not None else NormStats.fit(train_off)
        encode = lambda rows: [self._encode(texts[i], int(i)) for i in rows]  # noqa: E731
        self.train_seqs = [self.norm.normalise(o) for o in train_off]
        self.valid_seqs = [self.norm.normalise(o) for o in valid_off]
        self.train_text = encode(train) if self.synthesis else None
        self.valid_text = encode(valid) if self.synthesis else None
        cap = max_len or 1 << 30
        self.batcher = (
            None
            if validation_only
            else BucketBatcher([min(len(s), cap) for s in self.train_seqs], batch_size, seed)
        )

    def _encode(self, text: str, i: int) -> np.ndarray:
        bad = self.alphabet.unsupported(text)
        if bad:
            raise TrainDataError(
                f"sequence {i} text {text!r} has characters outside the model's alphabet: "
                f"{''.join(sorted({c for _, c in bad}))!r}"
            )
        return self.alphabet.encode(text)

    @classmethod
    def from_corpus(cls, model, corpus, alphabet: Alphabet | None = None, **kwargs):
        """Build from an engine.data.corpus.Corpus (texts, offsets, split, norm)."""
        return cls(
            model,
            list(corpus.texts),
            list(corpus.offsets),
            np.asarray(corpus.split),
            corpus.norm,
            alphabet or Alphabet(),
            **kwargs,
        )

    # -- trainer.Task -------------------------------------------------------------------------
    def to(self, device) -> None:
        self.device = torch.device(device)
        self.model.to(self.device)

    def data_position(self) -> dict:
        return self.batcher.position()

    def set_data_position(self, position: dict) -> None:
        self.batcher.set_position(position)

    def validation_fingerprint(self) -> str:
        """Changes whenever the validation lines (ink, text or normalisation) change."""
        import hashlib

        h = hashlib.sha256()
        for i, s in enumerate(self.valid_seqs):
            h.update(np.ascontiguousarray(s).tobytes())
            if self.valid_text is not None:
                h.update(self.valid_text[i].tobytes())
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        return {
            **self.description,
            "train_sequences": len(self.train_seqs),
            "valid_sequences": len(self.valid_seqs),
            "max_len": self.max_len,
            "batch_size": self.batch_size,
        }

    def _crop(self, seq: np.ndarray, key: int) -> np.ndarray:
        if self.max_len is None or len(seq) <= self.max_len:
            return seq
        if self.synthesis:
            return seq[: self.max_len]
        rng = np.random.default_rng([self.seed, self.batcher.epoch, key])
        start = int(rng.integers(0, len(seq) - self.max_len + 1))
        return seq[start : start + self.max_len]

    def next_batch(self, rank: int = 0, world_size: int = 1) -> Batch:
        if self.batcher is None:
            raise TrainDataError("a validation-only task has no training batches")
        idx = self.batcher.next(rank, world_size)
        seqs = [self._crop(self.train_seqs[i], int(i)) for i in idx]
        texts = [self.train_text[i] for i in idx] if self.synthesis else None
        return collate(seqs, texts, self.model, self.device)

    @cached_property
    def _longest(self) -> tuple[int, int]:
        """(points, characters) of the longest training line and text, counted once."""
        T = max(len(s) for s in self.train_seqs)
        U = max((len(t) for t in self.train_text), default=1) if self.synthesis else 0
        return T, max(U, 1)

    def static_shape(self) -> tuple[int, int, int]:
        """(batch, points, characters) that static_batch pads every training batch to."""
        T, U = self._longest
        return self.batch_size, self.max_len or T, U

    def static_batch(self, batch: Batch) -> Batch:
        """`batch` padded to static_shape() (for engine.graphed): extra points and rows carry
        mask 0 and extra characters a zero one-hot, so the loss and its gradient are those of
        the unpadded batch. `rows` keeps the count of real sequences."""
        B, T, U = self.static_shape()
        b, t = batch.x.shape[:2]
        if b > B or t > T:
            raise TrainDataError(f"batch {b}x{t} does not fit the static shape {B}x{T}")
        pad = lambda a: torch.nn.functional.pad(a, (0, 0) * (a.dim() - 2) + (0, T - t, 0, B - b))  # noqa: E731
        onehot = None
        if batch.onehot is not None:
            u = batch.onehot.shape[1]
            if u > U + 1:
                raise TrainDataError(f"batch text of {u - 1} characters exceeds the static {U}")
            onehot = torch.nn.functional.pad(batch.onehot, (0, 0, 0, U + 1 - u, 0, B - b))
        mask = torch.nn.functional.pad(batch.mask, (0, T - t, 0, B - b))
        rows = torch.tensor(float(b), device=batch.x.device)
        return Batch(pad(batch.x), pad(batch.target), mask, onehot, rows)

    def loss_tensors(self, batch: Batch) -> tuple[Tensor, dict]:
        """The loss and its metrics as tensors, with no host sync (capturable in a graph)."""
        y_hat, _ = self.model(batch.x, onehot=batch.onehot)
        params = split_params(y_hat.float())  # the mixture maths stays in fp32 under autocast
        nll = sequence_nll(params, batch.target, batch.mask)
        total = nll.total
        rows = batch.rows
        if rows is not None:  # sequence_nll averaged over padded rows too
            total = total * batch.x.shape[0] / rows
        else:
            rows = torch.tensor(float(batch.x.shape[0]))
        metrics = {
            "nats_per_sequence": total.detach(),
            "nats_per_point": nll.per_point.detach(),
            "points": nll.points.detach(),
            "sequences": rows,
        }
        return total, metrics

    def loss(self, batch: Batch) -> tuple[Tensor, dict]:
        total, metrics = self.loss_tensors(batch)
        return total, {k: float(v) for k, v in metrics.items()}

    def validate(self) -> dict:
        """Whole validation lines (no cropping): nats/sequence, nats/point, SSE/point; for the
        synthesis network also how the window reads the text (`window_focus`, `window_end`)."""
        if not self.valid_seqs:
            raise TrainDataError("the data has no validation sequences (split 1)")
        order = np.argsort([len(s) for s in self.valid_seqs], kind="stable")
        total = sse = points = focus = ended = 0.0
        for start in range(0, len(order), self.val_batch_size):
            idx = order[start : start + self.val_batch_size]
            texts = [self.valid_text[i] for i in idx] if self.synthesis else None
            b = collate([self.valid_seqs[i] for i in idx], texts, self.model, self.device)
            y_hat, state = self.model(b.x, onehot=b.onehot, return_phi=self.synthesis)
            params = split_params(y_hat.float())
            nll = sequence_nll(params, b.target, b.mask)
            total += float(nll.total) * len(idx)
            points += float(nll.points)
            err = ((expected_offset(params) - b.target[..., :2]) ** 2).sum(-1)
            sse += float((err * b.mask).sum())
            if self.synthesis:
                f, e = window_reading(state.extras["phi"], b.mask, [len(t) for t in texts])
                focus, ended = focus + f, ended + e
        n = len(self.valid_seqs)
        out = {
            "nats_per_sequence": total / n,
            "nats_per_point": total / max(points, 1.0),
            "sse_per_point": sse / max(points, 1.0),
            "sequences": float(n),
        }
        if self.synthesis:
            out["window_focus"] = focus / max(points, 1.0)
            out["window_end"] = ended / n
        return out
