"""Trainer: exact resume, atomic checkpoints under kill -9, the NaN guard, DDP, learning."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from trainer_helpers import synthetic_data, tiny_task

from engine.checkpoint import load_model
from engine.trainer import Task, TrainConfig, Trainer, TrainingError

REPO = Path(__file__).resolve().parents[2]


def weights(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_handwriting_task_satisfies_the_protocol():
    assert isinstance(tiny_task(), Task)


def test_batches_are_shifted_targets_with_masks():
    task = tiny_task(kind="prediction", max_len=30)
    batch = task.next_batch()
    B, T, _ = batch.x.shape
    assert B == 4 and T <= 30
    assert torch.all(batch.x[:, 0] == 0)  # x_1 = 0 (Sec. 2)
    for i in range(B):
        n = int(batch.mask[i].sum())
        assert torch.equal(batch.x[i, 1:n], batch.target[i, : n - 1])
        assert torch.all(batch.target[i, n:] == 0)


def test_a_validation_subset_is_spread_over_the_whole_split():
    """The corpus is ordered by writer, so the first N lines would be a few writers only."""
    full = tiny_task(lines=40)  # 10 validation lines
    sub = tiny_task(lines=40, val_max_sequences=3)
    picked = [
        next(i for i, s in enumerate(full.valid_seqs) if s is v or np.array_equal(s, v))
        for v in sub.valid_seqs
    ]
    assert picked == [0, 4, 9]  # first, middle and last, not 0, 1, 2


def test_a_validation_only_task_scores_the_same_and_skips_the_training_lines():
    """`eval` builds this: the same validation figures without resampling training lines."""
    from engine.train_data import TrainDataError

    full = tiny_task(lines=16)
    only = tiny_task(lines=16, validation_only=True)
    only.model.load_state_dict(full.model.state_dict())
    assert only.train_seqs == [] and only.train_text == [] and len(only.valid_seqs) == 4
    with torch.no_grad():
        assert only.validate() == pytest.approx(full.validate(), rel=1e-6)
    with pytest.raises(TrainDataError, match="no training batches"):
        only.next_batch()
    with pytest.raises(TrainDataError, match="normalisation"):
        tiny_task(lines=16, validation_only=True, norm=None)


def test_batcher_covers_every_sequence_once_per_epoch_and_shards_disjointly():
    task = tiny_task(lines=40, batch_size=3)
    b = task.batcher
    seen = np.concatenate(b.epoch_batches(0))
    assert sorted(seen) == list(range(len(task.train_seqs)))
    r0 = tiny_task(lines=40, batch_size=3).batcher
    r1 = tiny_task(lines=40, batch_size=3).batcher
    a = [tuple(r0.next(0, 2)) for _ in range(4)]
    c = [tuple(r1.next(1, 2)) for _ in range(4)]
    assert not set(a) & set(c)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    cfg = TrainConfig(
        steps=8, optimizer="adam", val_every=4, ckpt_every=4, weight_noise=0.01, seed=3
    )
    full = Trainer(tiny_task(), cfg, run_dir=tmp_path / "a")
    reports = list(full.run())
    assert [r.step for r in reports] == list(range(1, 9))

    first = Trainer(tiny_task(), cfg, run_dir=tmp_path / "b")
    for r in first.run():
        if r.step == 4:
            break  # the consumer stops asking: an interruption after the step-4 checkpoint
    first.close()
    # a fresh process would build a fresh (differently initialised) model
    second = Trainer(tiny_task(seed=99), cfg, run_dir=tmp_path / "b", resume=True)
    assert second.step == 4
    list(second.run())
    a, b = weights(full.model), weights(second.model)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_different_model(tmp_path):
    cfg = TrainConfig(steps=2, optimizer="adam", val_every=0, ckpt_every=2)
    list(Trainer(tiny_task(), cfg, run_dir=tmp_path).run())
    with pytest.raises(TrainingError, match="different model configuration"):
        Trainer(tiny_task(kind="prediction"), cfg, run_dir=tmp_path, resume=True)
    with pytest.raises(TrainingError, match="nothing to resume"):
        Trainer(tiny_task(), cfg, run_dir=tmp_path / "empty", resume=True)


def test_resume_on_other_validation_data_resets_the_best(tmp_path):
    cfg = TrainConfig(steps=2, optimizer="adam", val_every=2, ckpt_every=2)
    first = Trainer(tiny_task(), cfg, run_dir=tmp_path)
    list(first.run())
    assert math.isfinite(first.best)
    same = Trainer(tiny_task(), cfg, run_dir=tmp_path, resume=True)
    assert same.best == first.best
    other = Trainer(tiny_task(val_max_sequences=1), cfg, run_dir=tmp_path, resume=True)
    assert other.best == math.inf and other.best_step == -1


def test_checkpoints_keep_last_n_and_the_best_model_loads(tmp_path):
    cfg = TrainConfig(steps=6, optimizer="adam", val_every=2, ckpt_every=1, keep_last=2)
    trainer = Trainer(tiny_task(), cfg, run_dir=tmp_path)
    (tmp_path / "checkpoints").mkdir(parents=True, exist_ok=True)
    stale = tmp_path / "checkpoints" / ".step-00000003.safetensors.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint from a killed run")
    list(trainer.run())
    assert not stale.exists()  # leftovers of a killed write are cleaned at the next checkpoint
    assert [s for s, _ in trainer.checkpoints()] == [5, 6]
    assert len(list((tmp_path / "checkpoints").iterdir())) == 4
    loaded = load_model(tmp_path / "model.safetensors")
    assert loaded.kind == "synthesis" and loaded.norm is not None
    assert loaded.metadata["training"]["best_step"] == trainer.best_step
    assert load_model(trainer.latest_checkpoint()).metadata["training"]["step"] == 6
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert any('"validation": {' in line for line in lines)


class NaNTask:
    """Wraps a task; its loss is NaN on the steps listed."""

    def __init__(self, inner, bad_steps):
        self.inner, self.bad, self.calls = inner, set(bad_steps), 0
        self.model, self.alphabet, self.norm = inner.model, inner.alphabet, inner.norm

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def loss(self, batch):
        self.calls += 1
        loss, metrics = self.inner.loss(batch)
        if self.calls in self.bad:
            loss = loss * float("nan")
        return loss, metrics


def test_non_finite_loss_skips_the_update():
    task = NaNTask(tiny_task(), bad_steps={3})
    trainer = Trainer(task, TrainConfig(steps=4, optimizer="adam", val_every=0))
    gen = trainer.run()
    for _ in range(2):
        next(gen)
    before = weights(trainer.model)
    r3 = next(gen)
    assert r3.skipped and "skipped" in r3.events and not math.isfinite(r3.grad_norm)
    after = weights(trainer.model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    r4 = next(gen)
    assert not r4.skipped
    assert any(not torch.equal(after[k], v) for k, v in weights(trainer.model).items())


def test_repeated_failures_roll_back_with_a_lower_lr():
    task = NaNTask(tiny_task(), bad_steps={4, 5, 6})
    cfg = TrainConfig(steps=7, optimizer="adam", lr=1e-3, val_every=0, max_bad_steps=3)
    trainer = Trainer(task, cfg)
    start = weights(trainer.model)  # the last good snapshot: no checkpoint was taken
    reports = list(trainer.run())
    assert "rollback" in reports[5].events
    assert reports[6].lr == pytest.approx(5e-4)
    assert trainer.lr_scale == 0.5
    # after the rollback and before step 7 the weights were the snapshot's
    assert not reports[6].skipped
    assert any(not torch.equal(start[k], v) for k, v in weights(trainer.model).items())


def test_gradient_norm_clip_and_lr_schedules():
    cfg = TrainConfig(steps=10, lr=1.0, lr_schedule="cosine", warmup_steps=2, min_lr_ratio=0.1)
    trainer = Trainer(tiny_task(), cfg)
    lrs = []
    for s in range(10):
        trainer.step = s
        lrs.append(trainer.current_lr())
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    assert lrs[2] == pytest.approx(1.0) and lrs[-1] < lrs[5] < lrs[2]
    step = Trainer(tiny_task(), TrainConfig(lr=1.0, lr_schedule="step", step_decay_every=3))
    step.step = 7
    assert step.current_lr() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="grad_clip"):
        TrainConfig(grad_clip=0.0)


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path[:0] = [{repo!r}, {tests!r}]
    from trainer_helpers import tiny_task
    from engine.trainer import TrainConfig, Trainer
    cfg = TrainConfig(steps=100000, optimizer="adam", val_every=0, ckpt_every=1, keep_last=2)
    trainer = Trainer(tiny_task(batch_size=2), cfg, run_dir={run!r})
    for r in trainer.run():
        print(r.step, flush=True)
    """
)


def test_kill_9_while_checkpointing_leaves_old_or_new_never_torn(tmp_path):
    run = tmp_path / "run"
    script = KILL_SCRIPT.format(repo=str(REPO), tests=str(REPO / "tests" / "engine"), run=str(run))
    rng = np.random.default_rng(0)
    for attempt in range(2):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        try:
            for _ in range(3 + attempt):  # wait until a few checkpoints exist
                assert proc.stdout.readline(), "the training subprocess died"
            time.sleep(float(rng.uniform(0.0, 0.3)))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
        ckpts = sorted((run / "checkpoints").glob("step-*[0-9].safetensors"))
        assert ckpts
        for path in ckpts:  # every model file that exists is complete and loads
            load_model(path)
        load_model(run / "model.safetensors")
        resumed = Trainer(
            tiny_task(batch_size=2),
            TrainConfig(steps=1, optimizer="adam"),
            run_dir=run,
            resume=True,
        )
        assert resumed.step >= 3
        # leftover temporaries are never mistaken for checkpoints
        assert all(not p.name.startswith(".") for _, p in resumed.checkpoints())
        for p in (run / "checkpoints").glob(".*.tmp"):
            p.unlink()
        if attempt == 0:
            for p in (run / "checkpoints").iterdir():
                p.unlink()


DDP_SCRIPT = textwrap.dedent(
    """
    import os, sys
    sys.path[:0] = [{repo!r}, {tests!r}]
    import torch
    import torch.distributed as dist
    from trainer_helpers import tiny_task
    from engine.trainer import TrainConfig, Trainer

    def main(rank, world, init_file, out):
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank,
                                world_size=world)
        task = tiny_task(seed=rank, lines=24, batch_size=2)  # different inits on purpose
        start = {{k: v.clone() for k, v in task.model.state_dict().items()}}
        cfg = TrainConfig(steps=4, optimizer="adam", val_every=0, weight_noise=0.01, seed=1)
        trainer = Trainer(task, cfg, run_dir=out if rank == 0 else None)
        list(trainer.run())
        from safetensors.torch import save_file
        save_file(dict(task.model.state_dict()), os.path.join(out, f"rank{{rank}}.safetensors"))
        changed = any(not torch.equal(start[k], v) for k, v in task.model.state_dict().items())
        assert changed
        dist.destroy_process_group()

    if __name__ == "__main__":
        import torch.multiprocessing as mp
        mp.spawn(main, args=(2, sys.argv[1], sys.argv[2]), nprocs=2)
    """
)


@pytest.mark.slow
def test_two_process_gloo_ddp_ends_with_identical_weights(tmp_path):
    from safetensors.torch import load_file

    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(repo=str(REPO), tests=str(REPO / "tests" / "engine")))
    out = tmp_path / "out"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    subprocess.run(
        [sys.executable, str(script), str(tmp_path / "init"), str(out)],
        check=True,
        timeout=120,
        env=env,
    )
    a = load_file(str(out / "rank0.safetensors"))
    b = load_file(str(out / "rank1.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert load_model(out / "model.safetensors").metadata["training"]["world_size"] == 2


@pytest.mark.slow
def test_training_a_tiny_model_lowers_validation_loss():
    texts, offsets, split, norm = synthetic_data(lines=10, length=(20, 30))
    task = tiny_task(kind="prediction", lines=10, max_len=30)
    cfg = TrainConfig(steps=150, optimizer="adam", lr=1e-2, val_every=0)
    trainer = Trainer(task, cfg)
    before = trainer.validate()
    list(trainer.run())
    after = trainer.validate()
    assert after["nats_per_sequence"] < before["nats_per_sequence"] - 20
    assert after["nats_per_point"] < before["nats_per_point"] - 0.5
    assert set(after) >= {"nats_per_sequence", "nats_per_point", "sse_per_point"}


def test_window_reading_closed_forms():
    """window_focus = max_u phi / sum_u phi over real characters, summed over real points;
    window_end counts rows whose last real point reads the last or second-to-last character."""
    from engine.train_data import window_reading

    B, T, U1 = 2, 4, 5  # row 0: 3 characters, 4 points; row 1: 4 characters, 2 points
    phi = torch.zeros(B, T, U1)
    phi[0, :, 0] = 1.0  # row 0 rests on its first character: focus 1 per point, never ends
    phi[0, :, 3:] = 9.0  # padding and the extra position U+1 are not characters: ignored
    phi[1, :, :3] = 1.0  # row 1 spread evenly over three characters: focus 1/3 per point
    phi[1, 1, 2] = 2.0  # ... except its last real point, which reads character 3 of 4 most
    phi[1, 2:] = 0.0  # padded points carry no weight and are masked anyway
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0]])
    focus, ended = window_reading(phi, mask, [3, 4])
    assert focus == pytest.approx(4 * 1.0 + 1 / 3 + 2 / 4)
    assert ended == 1.0  # row 1 only: character index 2 >= 4 - 2


def test_synthesis_validation_reports_the_window_reading():
    task = tiny_task(kind="synthesis", max_len=30)
    with torch.no_grad():
        v = task.validate()
    assert 0.0 < v["window_focus"] <= 1.0 and 0.0 <= v["window_end"] <= 1.0
    assert "window_focus" not in tiny_task(kind="prediction", max_len=30).validate()
