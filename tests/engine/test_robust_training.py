"""Fault tolerance of training through the command line: kill -9 inside a checkpoint write,
disk full / permission denied while saving, a non-finite loss in the middle of a CLI run.

tests/engine/test_trainer.py covers the Trainer API (random kills, NaN skip and rollback);
these tests drive `handwriting-engine train` the way a user does, and kill the process at
exactly the moments that matter (a temporary file written but not yet renamed).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from trainer_helpers import synthetic_data

from engine import EngineError
from engine.checkpoint import StorageError, load_model, load_tensors

REPO = Path(__file__).resolve().parents[2]
CKPT_EVERY = 2


@pytest.fixture(scope="module")
def corpus_path(tmp_path_factory) -> Path:
    """A tiny corpus file in the real on-disk format the CLI reads."""
    from engine.data.corpus import Corpus

    texts, offsets, split, norm = synthetic_data(lines=12, length=(20, 30))
    n = len(texts)
    corpus = Corpus(
        texts, offsets, [f"w{i}" for i in range(n)], ["d"] * n, np.zeros(n, bool), split, norm
    )
    return corpus.save(tmp_path_factory.mktemp("corpus") / "tiny.npz")


def train_args(corpus: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return [
        "train",
        "--corpus",
        str(corpus),
        "--preset",
        "tiny",
        "--out",
        str(out),
        "--steps",
        str(steps),
        "--batch-size",
        "2",
        "--max-len",
        "30",
        "--val-every",
        "0",
        "--ckpt-every",
        str(CKPT_EVERY),
        "--optimizer",
        "adam",
        "--threads",
        "1",
        "--quiet",
        *extra,
    ]


# The child runs the real CLI; its fsync of the N-th regular file (the moment a temporary file
# is complete but not yet renamed into place) announces itself and then hangs until killed.
HANG_AT_FSYNC = textwrap.dedent(
    """
    import os, stat, sys, time
    sys.path.insert(0, {repo!r})
    target, count, real = int(sys.argv[1]), [0], os.fsync
    def fsync(fd):
        real(fd)
        if stat.S_ISREG(os.fstat(fd).st_mode):
            count[0] += 1
            if count[0] == target:
                print("HANG", flush=True)
                time.sleep(120)
    os.fsync = fsync
    from engine.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)


def kill_at_fsync(corpus: Path, out: Path, nth: int) -> None:
    script = HANG_AT_FSYNC.format(repo=str(REPO))
    args = [sys.executable, "-c", script, str(nth), *train_args(corpus, out, 1000)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == "HANG", "training ended before the hook fired"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()


def resume(corpus: Path, out: Path, steps: int, caplog) -> int:
    """`handwriting-engine train --resume` in this process; returns the step it resumed at."""
    from engine.cli import main

    with caplog.at_level(logging.INFO, logger="engine.trainer"):
        assert main(train_args(corpus, out, steps, "--resume")) == 0
    found = re.search(r"resumed from \S+ at step (\d+)", caplog.text)
    assert found, caplog.text
    return int(found.group(1))


def assert_every_file_loads(run: Path) -> None:
    files = [p for p in (run / "checkpoints").iterdir() if not p.name.startswith(".")]
    assert files
    for path in files:
        if path.name.endswith(".state.safetensors"):
            load_tensors(path)
        else:
            assert load_model(path).kind == "synthesis"
    load_model(run / "model.safetensors")


# fsync order with --ckpt-every 2 and no validation: step 2 -> state, model, run/model; step 4 ->
# state (#4), model (#5). Killing at #4 loses the step-4 state; at #5 the state is committed but
# the model file (the commit point) is not.
@pytest.mark.slow
@pytest.mark.parametrize("nth", [4, 5], ids=["during-state-write", "during-model-write"])
def test_kill_9_inside_a_checkpoint_write_then_resume_from_the_cli(
    tmp_path, corpus_path, nth, caplog
):
    run = tmp_path / "run"
    kill_at_fsync(corpus_path, run, nth)
    temporaries = list((run / "checkpoints").glob(".*.tmp"))
    assert temporaries, "the kill should have left the half-committed temporary behind"
    assert_every_file_loads(run)
    killed_during_step = 4
    start = resume(corpus_path, run, 6, caplog)
    assert killed_during_step - start <= CKPT_EVERY  # at most one checkpoint interval lost
    assert start == 2
    assert_every_file_loads(run)
    final = load_model(run / "checkpoints" / "step-00000006.safetensors")
    assert final.metadata["training"]["step"] == 6
    assert json.loads((run / "run.json").read_text())["steps"] == 6


@pytest.mark.slow
@pytest.mark.parametrize(
    "code, words", [(errno.ENOSPC, "disk is full"), (errno.EACCES, "permission denied")]
)
def test_disk_full_or_no_permission_on_checkpoint_is_a_message(
    tmp_path, corpus_path, monkeypatch, capsys, code, words
):
    from engine.cli import main

    run = tmp_path / "run"
    real_replace, calls = os.replace, []

    def failing_replace(src, dst):
        calls.append(dst)
        if "step-00000004" in str(dst):
            raise OSError(code, os.strerror(code), str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    assert main(train_args(corpus_path, run, 8)) == 1
    err = capsys.readouterr().err
    assert f"handwriting-engine: error: could not save {run}" in err and words in err
    assert "Traceback" not in err
    monkeypatch.setattr(os, "replace", real_replace)
    # the previous checkpoint survives and nothing half-written is left behind
    assert_every_file_loads(run)
    assert not list((run / "checkpoints").glob(".*.tmp"))
    assert (run / "checkpoints" / "step-00000002.safetensors").is_file()
    # and the run continues from it once there is room again
    assert main(train_args(corpus_path, run, 4, "--resume")) == 0
    assert load_model(run / "checkpoints" / "step-00000004.safetensors")


def test_storage_error_is_an_engine_error_and_an_os_error(tmp_path, monkeypatch):
    from engine.checkpoint import atomic_write_bytes

    target = tmp_path / "keep.bin"
    atomic_write_bytes(target, b"old")

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(StorageError, match="disk is full") as info:
        atomic_write_bytes(target, b"new")
    assert isinstance(info.value, EngineError) and isinstance(info.value, OSError)
    assert info.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.bin"]


def test_unwritable_folder_is_a_message(tmp_path, monkeypatch):
    from engine.checkpoint import atomic_write_bytes

    def denied(*_args, **_kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", denied)
    with pytest.raises(StorageError, match="permission denied; choose a folder"):
        atomic_write_bytes(tmp_path / "x.bin", b"data")


@pytest.mark.slow
def test_non_finite_loss_in_a_cli_run_is_skipped_and_training_goes_on(
    tmp_path, corpus_path, monkeypatch, capsys
):
    """The CLI keeps going through a NaN step; the skip is logged in metrics.jsonl."""
    from engine.cli import main
    from engine.train_data import HandwritingTask

    real_loss, calls = HandwritingTask.loss, []

    def loss(self, batch):
        calls.append(1)
        value, metrics = real_loss(self, batch)
        return (value * float("nan"), metrics) if len(calls) == 3 else (value, metrics)

    monkeypatch.setattr(HandwritingTask, "loss", loss)
    run = tmp_path / "run"
    assert main(train_args(corpus_path, run, 5)) == 0
    assert len(calls) == 5
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    skipped = [r["step"] for r in rows if r["skipped"]]
    assert skipped == [3] and rows[-1]["step"] == 5
    final = load_model(run / "checkpoints" / "step-00000005.safetensors").model
    import torch

    assert all(torch.isfinite(p).all() for p in final.parameters())
