"""The graphed training step (engine.graphed): fixed-shape padding leaves the loss and the
gradient unchanged, the trainer's graphed path trains like the eager one, and on a GPU the
recorded graph matches an eager step (skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch
from trainer_helpers import tiny_task

from engine.graphed import GraphedStep, check_against_eager
from engine.train_data import TrainDataError
from engine.trainer import TrainConfig, Trainer


def loss_and_grads(task, batch):
    for p in task.model.parameters():
        p.grad = None
    loss, metrics = task.loss_tensors(batch)
    loss.backward()
    params = list(task.model.parameters())
    grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]
    return float(loss), {k: float(v) for k, v in metrics.items()}, grads


@pytest.mark.parametrize("kind", ["synthesis", "prediction"])
def test_padding_to_the_static_shape_changes_neither_loss_nor_gradient(kind):
    # 11 training lines at batch 4: the epoch's batches include one of 3 rows, padded to 4
    task = tiny_task(kind=kind, lines=14, max_len=40)
    task.model.train()
    for _ in range(3):
        batch = task.next_batch()
        static = task.static_batch(batch)
        B, T, U = task.static_shape()
        assert static.x.shape == (B, T, 3) and static.mask.shape == (B, T)
        if kind == "synthesis":
            assert static.onehot.shape == (B, U + 1, task.model.config.alphabet_size)
        loss, metrics, grads = loss_and_grads(task, batch)
        loss_s, metrics_s, grads_s = loss_and_grads(task, static)
        assert loss_s == pytest.approx(loss, rel=1e-5)
        assert metrics_s["sequences"] == batch.x.shape[0]
        assert metrics_s["points"] == metrics["points"]
        for g, gs in zip(grads, grads_s):
            torch.testing.assert_close(gs, g, rtol=1e-4, atol=1e-6)


def test_a_batch_larger_than_the_static_shape_is_refused_with_a_reason():
    task = tiny_task(max_len=40)
    batch = task.next_batch()
    task.max_len = 10  # the static shape shrinks below this batch's length
    with pytest.raises(TrainDataError, match="does not fit the static shape"):
        task.static_batch(batch)


def test_graphed_step_plumbing_without_capture_matches_eager():
    task = tiny_task(max_len=40)
    task.model.train()
    params = list(task.model.parameters())
    first = task.static_batch(task.next_batch())
    step = GraphedStep(task, params, first, capture=False)
    assert check_against_eager(step, first) is None
    batch = task.static_batch(task.next_batch())
    loss_e, _, grads_e = loss_and_grads(task, batch)
    loss, _ = step.run(batch)  # copies the batch into the step's own input tensors
    assert float(loss) == pytest.approx(loss_e, rel=1e-6)
    for p, g in zip(params, grads_e):
        torch.testing.assert_close(p.grad, g)
    wrong = task.static_batch(task.next_batch())
    wrong.x = wrong.x[:, :5]
    with pytest.raises(ValueError, match="was recorded for"):
        step.run(wrong)


def test_trainer_with_cuda_graph_on_a_cpu_trains_like_the_eager_trainer():
    def train(graph: bool):
        task = tiny_task(max_len=40, lines=16)
        cfg = TrainConfig(steps=6, optimizer="adam", lr=1e-2, val_every=0, cuda_graph=graph)
        trainer = Trainer(task, cfg)
        reports = list(trainer.run())
        return trainer, reports, {k: v.clone() for k, v in task.model.state_dict().items()}

    eager, rep_e, w_e = train(False)
    graphed, rep_g, w_g = train(True)
    assert eager.graph_status == "unused"
    assert graphed.graph_status == "static shapes, no capture (CPU)"
    for a, b in zip(rep_e, rep_g):
        assert b.loss == pytest.approx(a.loss, rel=1e-4)
        assert b.grad_norm == pytest.approx(a.grad_norm, rel=1e-3)
    for k in w_e:
        torch.testing.assert_close(w_g[k], w_e[k], rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cell", ["peephole", "lstm"])
def test_recorded_graph_matches_an_eager_step_on_the_gpu(cell):
    from engine.models import HandwritingModel, preset

    task = tiny_task(max_len=40)
    task.model = HandwritingModel(preset("tiny", cell=cell))
    task.to("cuda")
    task.model.train()
    params = list(task.model.parameters())
    step = GraphedStep(task, params, task.static_batch(task.next_batch()))
    for _ in range(3):  # other batches through the same graph
        batch = task.static_batch(task.next_batch())
        assert check_against_eager(step, batch) is None
