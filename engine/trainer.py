"""A task-agnostic training loop as a generator of step reports (Sec. 4.2 training setup).

The loop knows nothing about handwriting: a `Task` supplies the model, batches from a
resumable data position, the loss on a batch and a validation pass. `HandwritingTask`
(engine/train_data.py) trains the prediction and synthesis networks; the text model reuses the
same loop, checkpoints, resume and reports.

Driving it:

    trainer = Trainer(task, TrainConfig(steps=1000), run_dir="runs/x")
    for report in trainer.run():        # one StepReport per optimiser step
        ...                             # stop = break out (or simply stop iterating)

- Stopping is not asking for the next report; `trainer.checkpoint()` first if wanted.
- Pausing is the consumer not asking for the next report: the generator is suspended between
  steps (no thread, no busy work) and continues exactly where it was when asked again.
- `trainer.checkpoint()` writes a checkpoint on demand between steps.
- `Trainer(..., resume=True)` (or `trainer.resume(path)`) continues exactly: weights,
  optimiser state, step, lr scale, RNG states (torch, numpy, python) and data position.

Checkpoints are pairs in RUN_DIR/checkpoints/: `step-N.safetensors` (the model, in the
engine.checkpoint.save_model format, so load_model opens it) and `step-N.state.safetensors`
(optimiser tensors + trainer state as JSON metadata). Both are written atomically, state first,
so the model file is the commit point. RUN_DIR/model.safetensors is the best model so far.
No pickle anywhere.

Distributed data parallel: under `torchrun` (WORLD_SIZE > 1) the process group is initialised
from the environment, parameters are broadcast from rank 0, each rank takes its own shard of
the batch stream and gradients are averaged with all-reduce before every update, so every
rank applies the same update. Only rank 0 writes files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from engine import EngineError
from engine.checkpoint import ModelFileError, load_tensors, save_model, save_tensors
from engine.fast import DenormalsFlushed
from engine.optim import make_optimizer

log = logging.getLogger(__name__)

STATE_FORMAT = 1


class TrainingError(EngineError):
    """Training cannot start or continue; the message says why."""


# --------------------------------------------------------------------------------------------
# The task protocol


@runtime_checkable
class Task(Protocol):
    """What the trainer needs from a task (handwriting, text, ...).

    - `model`: the nn.Module to optimise; it must have `.config` with `to_dict()` (save_model).
    - `alphabet`, `norm`: written into model files (either may be None).
    - `data_position()` -> JSON-able dict; `set_data_position(d)` restores it. Together with
      the RNG states the trainer saves, this must make `next_batch` replay the same stream.
    - `next_batch(rank, world_size)` -> an opaque batch for this rank (the task moves it to
      `device` itself). Rank r of W must take a disjoint shard of the stream.
    - `loss(batch)` -> (scalar loss tensor to minimise, metrics dict). Metrics must include
      `sequences` and `points` (counts, for throughput) and may add floats such as
      `nats_per_sequence`, `nats_per_point`.
    - `validate()` -> dict of floats over the validation split (model in eval mode, no grad);
      must include the key named by `TrainConfig.monitor` (default `nats_per_sequence`).
    - `to(device)`: move model and any cached tensors.
    - optional `validation_fingerprint()` -> str: when it differs on resume, the best value
      (measured on other validation data) is reset instead of compared.
    """

    model: nn.Module
    alphabet: Any
    norm: Any

    def data_position(self) -> dict: ...

    def set_data_position(self, position: dict) -> None: ...

    def next_batch(self, rank: int = 0, world_size: int = 1) -> Any: ...

    def loss(self, batch: Any) -> tuple[Tensor, dict]: ...

    def validate(self) -> dict: ...

    def to(self, device: torch.device) -> None: ...


# --------------------------------------------------------------------------------------------
# Configuration and reports


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 10_000
    optimizer: str = "rmsprop"  # the paper's GravesRMSProp (Eqs. 38-41) or "adam"
    lr: float | None = None  # None: 1e-4 for rmsprop (Sec. 4.2), 1e-3 for adam
    lr_schedule: str = "constant"  # "constant" | "cosine" | "step"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1  # cosine floor as a fraction of lr
    step_decay_every: int = 0  # "step": multiply lr by step_decay_gamma every N steps
    step_decay_gamma: float = 0.5
    grad_clip: float | None = None  # optional global-norm clip, on top of the paper's clipping
    weight_noise: float = 0.0  # std of fixed-variance Gaussian weight noise (Sec. 3.1 / 4.2)
    val_every: int = 200  # steps between validations (0: never)
    ckpt_every: int = 500  # steps between checkpoints (0: only at the end / on demand)
    keep_last: int = 3  # checkpoints kept besides the best
    early_stop_patience: int = 0  # validations without improvement before stopping (0: off)
    monitor: str = "nats_per_sequence"  # validation metric for best/early stopping (lower wins)
    max_bad_steps: int = 5  # non-finite steps in a row before rolling back
    rollback_lr_factor: float = 0.5
    bf16: bool = False  # bfloat16 autocast for the forward pass
    # replay forward + backward as a CUDA graph (engine.graphed); needs a task with
    # static_batch/loss_tensors. On a CPU the same fixed-shape path runs eagerly.
    cuda_graph: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.steps < 0:
            raise ValueError("steps must be >= 0")
        if self.lr_schedule not in ("constant", "cosine", "step"):
            raise ValueError("lr_schedule must be 'constant', 'cosine' or 'step'")
        if self.lr is not None and self.lr <= 0:
            raise ValueError("lr must be > 0")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError("grad_clip must be > 0 (or None for no global-norm clip)")
        if self.weight_noise < 0:
            raise ValueError("weight_noise must be >= 0")
        if self.keep_last < 1:
            raise ValueError("keep_last must be >= 1 (the newest checkpoint is always kept)")
        if self.max_bad_steps < 1:
            raise ValueError("max_bad_steps must be >= 1")
        if not 0 <= self.seed < 2**31:  # numpy's global seed takes 32 bits; each rank adds one
            raise ValueError(f"seed must be a whole number from 0 to 2**31 - 1, not {self.seed}")

    def base_lr(self) -> float:
        return self.lr or (1e-3 if self.optimizer == "adam" else 1e-4)


@dataclass
class StepReport:
    step: int  # optimiser steps done so far (1-based after the first step)
    loss: float  # nats per sequence (training batch)
    loss_per_point: float
    points_per_s: float
    sequences_per_s: float
    grad_norm: float  # global gradient norm before any global clip
    lr: float
    elapsed: float  # seconds of training in this process
    total_steps: int
    skipped: bool = False  # the update was skipped (non-finite loss or gradient)
    validation: dict | None = None  # nats_per_sequence, nats_per_point, sse_per_point, ...
    events: list[str] = field(default_factory=list)  # "checkpoint", "best", "rollback", ...

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Distributed helpers


def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world_size); initialises the process group from torchrun's environment."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _allreduce_mean(tensors: list[Tensor], world: int) -> None:
    if world <= 1 or not tensors:
        return
    import torch.distributed as dist

    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


# --------------------------------------------------------------------------------------------
# Optimiser state <-> flat tensors + JSON (no pickle)


def _optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for name, value in st.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{idx}.{name}"] = value
            else:
                scalars[f"{idx}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for key, value in meta["scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _rng_state() -> tuple[dict, dict]:
    np_state = np.random.get_state()
    tensors = {
        "rng.torch": torch.get_rng_state(),
        "rng.numpy": torch.from_numpy(np_state[1].astype(np.int64)),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    py = random.getstate()
    meta = {
        "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py[0], list(py[1]), py[2]],
    }
    return tensors, meta


def _set_rng_state(tensors: dict, meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    name, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state(
        (name, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached)
    )
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


# --------------------------------------------------------------------------------------------
# The trainer


def check_counts(settings: dict, floors: dict[str, int]) -> None:
    """TrainingError, naming the command-line flag, for the first count in `settings` below its
    floor: below it the trainer would read a count as "off" or "all" without a word."""
    for key, low in floors.items():
        value = settings.get(key)
        if value is not None and value < low:
            raise TrainingError(f"--{key.replace('_', '-')} must be at least {low}, not {value}")


def config_or_error(**kwargs) -> TrainConfig:
    """TrainConfig(**kwargs), its refusal as a TrainingError (a message, not a traceback)."""
    try:
        return TrainConfig(**kwargs)
    except ValueError as exc:
        raise TrainingError(f"bad training setting: {exc}") from None


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for but no CUDA device is available")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise TrainingError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def _ckpt_step(path: Path) -> int | None:
    stem = path.name.removesuffix(".safetensors")
    if not stem.startswith("step-") or "." in stem:
        return None
    try:
        return int(stem[5:])
    except ValueError:
        return None


class Trainer:
    """Optimises a Task; `run()` yields a StepReport per step (see the module docstring)."""

    def __init__(
        self,
        task: Task,
        config: TrainConfig,
        run_dir: str | os.PathLike | None = None,
        device: torch.device | str = "cpu",
        resume: bool = False,
    ):
        self.task, self.config = task, config
        self.device = torch.device(device)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.rank, self.world = init_distributed(self.device)
        task.to(self.device)
        self.model = task.model
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(config.optimizer, self.params, config.base_lr())
        self.step = 0
        self.lr_scale = 1.0
        self.best = math.inf
        self.best_step = -1
        self.stale_validations = 0
        self.bad_steps = 0
        self.wall_time = 0.0  # seconds of training over all sessions of this run
        self._last_ckpt_step = -1
        self._snapshot: tuple[dict, dict] | None = None
        self._graphed = None  # engine.graphed.GraphedStep once recorded
        self.graph_status = "unused"  # "on", "off (reason)", ... (config.cuda_graph)
        self._tb = None
        self._metrics_file = None
        if self.world > 1:
            import torch.distributed as dist

            with torch.no_grad():
                for p in self.model.state_dict().values():
                    dist.broadcast(p, 0)
        seed = config.seed + self.rank
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        if resume:
            if self.run_dir is None:
                raise TrainingError("resuming needs a run directory")
            latest = self.latest_checkpoint()
            if latest is None:
                raise TrainingError(f"nothing to resume: no checkpoint in {self.ckpt_dir}")
            self.resume(latest)

    # -- paths --------------------------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        if self.run_dir is None:
            raise TrainingError("this trainer has no run directory")
        return self.run_dir / "checkpoints"

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints (model file and state file present), oldest first."""
        if self.run_dir is None or not self.ckpt_dir.is_dir():
            return []
        found = []
        for path in self.ckpt_dir.glob("step-*.safetensors"):
            step = _ckpt_step(path)
            if step is not None and path.with_suffix(".state.safetensors").is_file():
                found.append((step, path))
        return sorted(found)

    def latest_checkpoint(self) -> Path | None:
        ckpts = self.checkpoints()
        return ckpts[-1][1] if ckpts else None

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> Iterator[StepReport]:
        cfg = self.config
        if self._snapshot is None:
            self._snapshot = self._state(clone=True)
        self._open_logs()
        flushed = DenormalsFlushed()  # 1.15-1.26x faster CPU steps (bench.speed denormals)
        while self.step < cfg.steps:
            with flushed:
                report = self._train_step()
            stop = False
            if cfg.val_every and (self.step % cfg.val_every == 0 or self.step == cfg.steps):
                with flushed:
                    report.validation = self.validate()
                stop = self._track_best(report)
            last = stop or self.step == cfg.steps
            if self.run_dir is not None and (
                last or (cfg.ckpt_every and self.step % cfg.ckpt_every == 0)
            ):
                self.checkpoint()
                report.events.append("checkpoint")
            if stop:
                report.events.append("early-stop")
            self._log(report)
            yield report
            if stop:
                return

    def _train_step(self) -> StepReport:
        cfg = self.config
        t0 = time.perf_counter()
        self.model.train()
        lr = self.current_lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self.task.next_batch(self.rank, self.world)
        noise = self._add_weight_noise()
        graphed = self._graphed_step(batch) if cfg.cuda_graph else None
        if graphed is not None:  # forward and backward already done, grads in p.grad
            loss, metrics = graphed
            loss_ok = bool(torch.isfinite(loss.detach()))
        else:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                loss, metrics = self.task.loss(batch)
            self.optimizer.zero_grad(set_to_none=False)
            loss_ok = bool(torch.isfinite(loss.detach()))
            if loss_ok:
                loss.backward()
        self._remove_weight_noise(noise)
        grads = []
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            if not loss_ok:
                p.grad.fill_(math.nan)  # so every rank agrees to skip
            grads.append(p.grad)
        _allreduce_mean(grads, self.world)
        grad_norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item()
        events: list[str] = []
        skipped = not math.isfinite(grad_norm)
        if skipped:
            self.bad_steps += 1
            self.optimizer.zero_grad(set_to_none=True)
            log.warning("step %d: non-finite loss or gradient, update skipped", self.step + 1)
            events.append("skipped")
            if self.bad_steps >= cfg.max_bad_steps:
                self._rollback()
                events.append("rollback")
        else:
            self.bad_steps = 0
            if cfg.grad_clip is not None and grad_norm > cfg.grad_clip:
                for g in grads:
                    g.mul_(cfg.grad_clip / grad_norm)
            self.optimizer.step()
        self.step += 1
        dt = max(time.perf_counter() - t0, 1e-9)
        self.wall_time += dt
        points = float(metrics.get("points", 0)) * self.world
        seqs = float(metrics.get("sequences", 0)) * self.world
        return StepReport(
            step=self.step,
            loss=float(metrics.get("nats_per_sequence", loss.detach().float())),
            loss_per_point=float(metrics.get("nats_per_point", math.nan)),
            points_per_s=points / dt,
            sequences_per_s=seqs / dt,
            grad_norm=grad_norm,
            lr=lr,
            elapsed=self.wall_time,
            total_steps=cfg.steps,
            skipped=skipped,
            events=events,
        )

    def _graphed_step(self, batch) -> tuple[Tensor, dict] | None:
        """Forward + backward through engine.graphed (None: use the eager step instead).

        The first call records the graph and, on a GPU, checks it against an eager step on the
        same batch; a failure or disagreement turns the graph off for this run, with a warning.
        """
        if self.graph_status.startswith("off"):
            return None
        from engine.graphed import GraphedStep, check_against_eager

        static = self.task.static_batch(batch)
        if self._graphed is None:
            capture = self.device.type == "cuda"
            try:
                step = GraphedStep(self.task, self.params, static, capture=capture,
                                   bf16=self.config.bf16)  # fmt: skip
                reason = check_against_eager(step, static) if capture else None
            except Exception as exc:  # noqa: BLE001 - any capture failure means: run eagerly
                reason = f"capture failed: {type(exc).__name__}: {exc}"
            if reason is not None:
                self.graph_status = f"off ({reason})"
                log.warning("CUDA graph turned off, training eagerly: %s", reason)
                return None
            self._graphed = step
            self.graph_status = "on" if capture else "static shapes, no capture (CPU)"
            log.info("graphed training step: %s", self.graph_status)
        loss, metrics = self._graphed.run(static)
        return loss, {k: float(v) for k, v in metrics.items()}

    def current_lr(self) -> float:
        cfg = self.config
        lr = cfg.base_lr() * self.lr_scale
        s = self.step
        if cfg.warmup_steps and s < cfg.warmup_steps:
            return lr * (s + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "cosine" and cfg.steps > cfg.warmup_steps:
            progress = min(1.0, (s - cfg.warmup_steps) / (cfg.steps - cfg.warmup_steps))
            floor = cfg.min_lr_ratio
            return lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
        if cfg.lr_schedule == "step" and cfg.step_decay_every:
            return lr * cfg.step_decay_gamma ** (s // cfg.step_decay_every)
        return lr

    @torch.no_grad()
    def _add_weight_noise(self) -> list[Tensor] | None:
        """Fixed-variance weight noise (Sec. 3.1): the loss and gradient are taken at w + n.
        Returns the clean weights; restoring copies them back ((w + n) - n is not exactly w)."""
        std = self.config.weight_noise
        if not std:
            return None
        clean = [p.detach().clone() for p in self.params]
        for p in self.params:
            p.add_(torch.randn_like(p) * std)
        return clean

    @torch.no_grad()
    def _remove_weight_noise(self, clean: list[Tensor] | None) -> None:
        if clean is not None:
            for p, w in zip(self.params, clean):
                p.copy_(w)

    def validate(self) -> dict:
        was_training = self.model.training
        self.model.eval()
        try:
            with (
                torch.no_grad(),
                torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.bf16),
            ):
                return {k: float(v) for k, v in self.task.validate().items()}
        finally:
            self.model.train(was_training)

    def _track_best(self, report: StepReport) -> bool:
        """Update best / early-stopping state; True when training should stop."""
        cfg = self.config
        value = report.validation.get(cfg.monitor)
        if value is None:
            raise TrainingError(f"validation did not report the monitored metric {cfg.monitor!r}")
        if value < self.best:
            self.best, self.best_step, self.stale_validations = value, self.step, 0
            report.events.append("best")
            if self.run_dir is not None and self.rank == 0:
                self._save_model(self.run_dir / "model.safetensors")
            return False
        self.stale_validations += 1
        return bool(cfg.early_stop_patience) and self.stale_validations >= cfg.early_stop_patience

    def _rollback(self) -> None:
        """Too many bad steps in a row: back to the last good state with a lower lr."""
        model_t, (state_t, meta) = self._snapshot[0], self._snapshot[1]
        self.model.load_state_dict(model_t)
        _optimizer_from_flat(self.optimizer, state_t, meta["optimizer"])
        self.lr_scale *= self.config.rollback_lr_factor
        self.bad_steps = 0
        log.warning(
            "step %d: %d non-finite steps in a row; rolled back to step %d, lr scale now %g",
            self.step + 1,
            self.config.max_bad_steps,
            meta["step"],
            self.lr_scale,
        )

    # -- checkpoints --------------------------------------------------------------------------
    def _state(self, clone: bool = False) -> tuple[dict, tuple[dict, dict]]:
        """(model tensors, (state tensors, state meta)) for the current training state."""
        opt_t, opt_meta = _optimizer_to_flat(self.optimizer)
        rng_t, rng_meta = _rng_state()
        meta = {
            "state_format": STATE_FORMAT,
            "step": self.step,
            "lr_scale": self.lr_scale,
            "best": self.best if math.isfinite(self.best) else None,
            "best_step": self.best_step,
            "stale_validations": self.stale_validations,
            "wall_time": self.wall_time,
            "world_size": self.world,
            "data_position": self.task.data_position(),
            "validation_fingerprint": self._validation_fingerprint(),
            "optimizer_name": self.config.optimizer,
            "optimizer": opt_meta,
            "rng": rng_meta,
            "train_config": asdict(self.config),
            "model_config": self.model.config.to_dict(),
        }
        model_t = self.model.state_dict()
        tensors = {**opt_t, **rng_t}
        if clone:
            model_t = {k: v.detach().clone() for k, v in model_t.items()}
            tensors = {k: v.detach().clone() for k, v in tensors.items()}
        return model_t, (tensors, meta)

    def _validation_fingerprint(self) -> str | None:
        """Optional Task.validation_fingerprint(): identifies the validation data."""
        fp = getattr(self.task, "validation_fingerprint", None)
        return fp() if callable(fp) else None

    def training_metadata(self) -> dict:
        meta = {
            "step": self.step,
            "optimizer": self.config.optimizer,
            "lr": self.config.base_lr(),
            "batch_sequences_per_rank": getattr(self.task, "batch_size", None),
            "world_size": self.world,
            "wall_time_s": round(self.wall_time, 1),
            "best_validation": {self.config.monitor: self.best} if math.isfinite(self.best) else {},
            "best_step": self.best_step,
            "device": str(self.device),
        }
        describe = getattr(self.task, "describe", None)
        if callable(describe):
            meta["task"] = describe()
        return meta

    def _save_model(self, path: Path) -> None:
        save_model(
            path,
            self.model,
            alphabet=self.task.alphabet,
            norm=self.task.norm,
            training=self.training_metadata(),
        )

    def checkpoint(self) -> Path | None:
        """Write a checkpoint now (rank 0 only; None elsewhere) and keep the newest N."""
        self._snapshot = self._state(clone=True)
        if self.rank != 0 or self.run_dir is None:
            return None
        path = self.ckpt_dir / f"step-{self.step:08d}.safetensors"
        state_t, state_meta = self._snapshot[1]
        # state first, model last: the model file's presence marks a complete checkpoint
        save_tensors(path.with_suffix(".state.safetensors"), state_t, {"trainer": state_meta})
        self._save_model(path)
        if not (self.run_dir / "model.safetensors").exists():
            self._save_model(self.run_dir / "model.safetensors")
        self._last_ckpt_step = self.step
        for _, old in self.checkpoints()[: -self.config.keep_last or None]:
            old.with_suffix(".state.safetensors").unlink(missing_ok=True)
            old.unlink(missing_ok=True)
        # temporary files of a writer that was killed mid-write (atomic_write_bytes names them
        # .NAME.XXXX.tmp); only rank 0 writes here and its own writes are complete by now
        for folder in (self.ckpt_dir, self.run_dir):
            for stale in folder.glob(".*.safetensors.*.tmp"):
                stale.unlink(missing_ok=True)
        log.info("checkpoint written: %s", path)
        return path

    def resume(self, path: str | os.PathLike) -> None:
        """Continue from a checkpoint's model file (its .state.safetensors must sit beside it)."""
        path = Path(path)
        state_path = path.with_suffix(".state.safetensors")
        if not state_path.is_file():
            raise TrainingError(f"{path} has no trainer state beside it ({state_path.name})")
        model_t, model_meta = load_tensors(path, self.device)
        state_t, meta = load_tensors(state_path, "cpu")
        try:
            st = meta["trainer"]
            if st.get("state_format") != STATE_FORMAT:
                raise TrainingError(
                    f"{state_path} uses trainer state format {st.get('state_format')}"
                )
            if st["model_config"] != self.model.config.to_dict():
                raise TrainingError(
                    f"{path} holds a different model configuration than the one asked for: "
                    f"{st['model_config']} vs {self.model.config.to_dict()}"
                )
            if st["optimizer_name"] != self.config.optimizer:
                raise TrainingError(
                    f"{path} was trained with {st['optimizer_name']}, not {self.config.optimizer}"
                )
            self.model.load_state_dict(model_t)
            _optimizer_from_flat(self.optimizer, state_t, st["optimizer"])
            _set_rng_state(state_t, st["rng"])
            self.task.set_data_position(st["data_position"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ModelFileError(f"{state_path} is not a usable trainer state: {exc}") from None
        self.step = st["step"]
        self.lr_scale = st["lr_scale"]
        self.best = st["best"] if st["best"] is not None else math.inf
        self.best_step = st["best_step"]
        self.stale_validations = st["stale_validations"]
        if st.get("validation_fingerprint") != self._validation_fingerprint():
            # a best value measured on other validation data cannot be compared: start afresh
            log.warning("the validation data changed since the checkpoint; best is reset")
            self.best, self.best_step, self.stale_validations = math.inf, -1, 0
        self.wall_time = st["wall_time"]
        self._last_ckpt_step = self.step
        self._snapshot = self._state(clone=True)
        log.info("resumed from %s at step %d", path, self.step)

    # -- logs ---------------------------------------------------------------------------------
    def _open_logs(self) -> None:
        if self.run_dir is None or self.rank != 0 or self._metrics_file is not None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._metrics_file = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
        except ImportError:
            self._tb = None

    def _log(self, r: StepReport) -> None:
        if self._metrics_file is None:
            return
        if r.step % 10 and not r.validation and not r.events and r.step != r.total_steps:
            return
        self._metrics_file.write(json.dumps(r.to_dict()) + "\n")
        self._metrics_file.flush()
        if self._tb is not None:
            self._tb.add_scalar("train/nats_per_sequence", r.loss, r.step)
            self._tb.add_scalar("train/nats_per_point", r.loss_per_point, r.step)
            self._tb.add_scalar("train/grad_norm", r.grad_norm, r.step)
            self._tb.add_scalar("train/lr", r.lr, r.step)
            for k, v in (r.validation or {}).items():
                self._tb.add_scalar(f"valid/{k}", v, r.step)

    def close(self) -> None:
        if self._metrics_file is not None:
            self._metrics_file.close()
            self._metrics_file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
