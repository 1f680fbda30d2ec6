"""The training step's forward and backward recorded once as a CUDA graph and replayed.

Why: the synthesis network's layer 1 and window must run timestep by timestep, so an eager
training step on a GPU is a few hundred small kernel launches per timestep, each paying Python
and launch overhead while the GPU idles (measured on an H100: ~1 step/s at batch 128-256,
T = 700, whatever the batch). A CUDA graph replays all of those kernels with one launch.

A graph needs fixed shapes and fixed memory, so the task pads every batch to one shape
(`Task.static_batch`) and computes its loss without host syncs (`Task.loss_tensors`); the
batch is copied into the graph's own input tensors before each replay, and the gradients land
in the graph's own buffers, which are handed to the parameters' `.grad` after each replay. The
optimiser step, the all-reduce, the NaN guard and clipping stay outside, unchanged.

On a CPU there is nothing to capture: `GraphedStep(capture=False)` runs the same static-shape
path eagerly, which is how the plumbing is tested without a GPU. On a GPU the first graphed
step is checked against an eager step on the same batch; the trainer falls back to eager steps,
saying why, if capture fails or the two disagree.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass

import torch
from torch import Tensor

WARMUP_ITERS = 3  # eager iterations on a side stream before capture, as CUDA graphs require


def _tensors(batch) -> dict[str, Tensor]:
    """The tensor fields of a dataclass batch (the graph's inputs)."""
    if not is_dataclass(batch):
        raise TypeError("a graphed step needs a dataclass batch of tensors")
    return {
        f.name: getattr(batch, f.name)
        for f in fields(batch)
        if isinstance(getattr(batch, f.name), Tensor)
    }


class GraphedStep:
    """Forward + backward of `task.loss_tensors` on fixed-shape batches, replayed as a graph.

    `run(batch)` takes a batch already padded by `task.static_batch`, and returns
    (loss tensor, metrics tensors) with every parameter's `.grad` holding this batch's gradient
    (overwritten, not accumulated).
    """

    def __init__(
        self, task, params: list[Tensor], example, capture: bool = True, bf16: bool = False
    ):
        self.task, self.params = task, list(params)
        self.bf16 = bf16
        self.static = example  # the graph reads these tensors; run() copies each batch in
        self._inputs = _tensors(example)
        self._grads: list[Tensor] | None = None
        self._graph = None
        self._out: tuple[Tensor, dict] | None = None
        if capture:
            self._record()

    def loss(self, batch) -> tuple[Tensor, dict]:
        device = self.params[0].device.type
        # the autocast weight cache would hold tensors from outside the graph's pool: off
        with torch.autocast(device, dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=False):
            return self.task.loss_tensors(batch)

    def _forward_backward(self) -> tuple[Tensor, dict]:
        loss, metrics = self.loss(self.static)
        loss.backward()
        return loss, metrics

    def _record(self) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_ITERS):
                for p in self.params:
                    p.grad = None
                self._forward_backward()
        torch.cuda.current_stream().wait_stream(side)
        for p in self.params:
            p.grad = None  # so backward allocates the gradients from the graph's memory pool
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._out = self._forward_backward()
        self._grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]

    def _copy_in(self, batch) -> None:
        for name, t in _tensors(batch).items():
            dst = self._inputs[name]
            if t.shape != dst.shape:
                raise ValueError(
                    f"graphed step: batch field {name} has shape {tuple(t.shape)}, the graph "
                    f"was recorded for {tuple(dst.shape)}"
                )
            dst.copy_(t, non_blocking=True)
        for f in fields(batch):  # non-tensor fields (counts) travel as they are
            if f.name not in self._inputs:
                setattr(self.static, f.name, getattr(batch, f.name))

    def run(self, batch) -> tuple[Tensor, dict]:
        self._copy_in(batch)
        if self._graph is None:  # eager fallback with the same buffers (CPU, tests)
            for p in self.params:
                p.grad = None
            out = self._forward_backward()
            for p in self.params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            return out
        self._graph.replay()
        for p, g in zip(self.params, self._grads):
            p.grad = g
        return self._out


def check_against_eager(step: GraphedStep, batch, rtol: float = 1e-3) -> str | None:
    """Replay once and compare loss and gradients with an eager pass on the same batch.
    Returns None when they agree, else a reason. Leaves `.grad` holding the graphed result."""
    loss_g, _ = step.run(batch)
    loss_g = loss_g.detach().clone()
    grads_g = [p.grad.detach().clone() for p in step.params]
    for p in step.params:
        p.grad = None
    loss_e, _ = step.loss(batch)
    loss_e.backward()
    reason = None
    if not torch.allclose(loss_g, loss_e.detach(), rtol=rtol, atol=1e-3):
        reason = f"loss {float(loss_g):.6g} graphed vs {float(loss_e):.6g} eager"
    else:
        for i, (p, g) in enumerate(zip(step.params, grads_g)):
            e = p.grad if p.grad is not None else torch.zeros_like(p)
            scale = float(e.abs().max()) + 1e-6
            if float((g - e).abs().max()) > rtol * scale + 1e-5:
                reason = f"gradient of parameter {i} differs (max |diff| / max |g| > {rtol})"
                break
    for p, g in zip(step.params, grads_g):
        p.grad = g
    return reason
