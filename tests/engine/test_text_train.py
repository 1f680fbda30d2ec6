"""Training the text predictor through the shared Trainer, and the `text` CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.cli import main
from engine.text_data import Vocab
from engine.text_model import TextConfig, TextModel
from engine.text_train import TextTask
from engine.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


VOCAB = Vocab("char", "ab123456", "map")


def key_text(blocks: int, seed: int = 0) -> np.ndarray:
    """Blocks of 8 symbols '123k4k56', k in {a, b} at random. With 4-symbol sequences the
    second k (position 5) can only be predicted from the first, which is the last input of the
    previous sequence: only a state carried across the boundary can know it."""
    keys = np.random.default_rng(seed).integers(0, 2, blocks)  # 'a' = 0, 'b' = 1
    block = np.tile([2, 3, 4, 0, 5, 0, 6, 7], (blocks, 1))  # '1'..'6' = 2..7
    block[:, 3] = block[:, 5] = keys
    return block.ravel()


def make_task(ids, reset_every, batch=16, hidden=16, seed=0, valid=None):
    torch.manual_seed(seed)
    model = TextModel(TextConfig(vocab=VOCAB.to_dict(), hidden_size=hidden, num_layers=1))
    return TextTask(model, ids, valid, batch_size=batch, seq_len=4, reset_every=reset_every)


def test_task_carries_state_across_sequences_and_resets_on_schedule():
    """The second k of '123k4k56' is predicted from the first, the last input of the previous
    4-symbol sequence. The task's loss on a sequence must equal the loss of the same symbols
    scored inside one long sequence (state carried), and differ from it after a reset."""
    ids = key_text(16 * 20)
    task = make_task(ids, reset_every=3, batch=1)
    model = task.model.eval()
    x = torch.from_numpy(np.asarray(ids[:17]))[None]
    logits, _ = model(x[:, :12])
    ref = torch.nn.functional.cross_entropy(logits[0], x[0, 1:13], reduction="none")
    losses = [task.loss(task.next_batch())[0].item() for _ in range(4)]
    for k in range(3):  # sequences 0..2 continue one another
        assert losses[k] == pytest.approx(ref[4 * k : 4 * k + 4].mean().item(), rel=1e-5)
    assert task.batcher.get(3)[2]  # sequence 3 starts from a fresh state (reset_every=3)
    fresh, _ = model(x[:, 12:16])
    reset_loss = torch.nn.functional.cross_entropy(fresh[0], x[0, 13:17]).item()
    carried, _ = model(x[:, :16])
    carried_loss = torch.nn.functional.cross_entropy(carried[0, 12:], x[0, 13:17]).item()
    assert losses[3] == pytest.approx(reset_loss, rel=1e-5)
    assert abs(reset_loss - carried_loss) > 1e-4


def test_resume_continues_exactly(tmp_path):
    ids = key_text(16 * 20)

    def trainer(run_dir, resume=False, steps=6):
        task = make_task(ids, reset_every=3, valid=key_text(20, seed=1))
        cfg = TrainConfig(steps=steps, optimizer="adam", lr=1e-2, val_every=3, ckpt_every=3)
        return Trainer(task, cfg, run_dir, resume=resume)

    straight = trainer(tmp_path / "a")
    list(straight.run())
    first = trainer(tmp_path / "b", steps=3)
    list(first.run())
    resumed = trainer(tmp_path / "b", resume=True)
    assert resumed.step == 3 and resumed.task.position == 3
    assert resumed.task.state is not None  # the carried state came back from the checkpoint
    list(resumed.run())
    for k, v in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v)


def test_task_metrics_and_position():
    task = make_task(key_text(16 * 20), reset_every=5)
    x, y, reset = task.next_batch()
    assert x.shape == (16, 4) and reset and task.position == 1
    loss, m = task.loss((x, y, reset))
    assert m["points"] == 64 and m["bpc"] == pytest.approx(loss.item() / np.log(2))
    x2, _, _ = task.next_batch(rank=1, world_size=2)
    assert x2.shape == (8, 4)


# -- CLI ---------------------------------------------------------------------------------------
@pytest.fixture
def small_text(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the cat sat on the mat. " * 400 + "Ἀθῆναι!\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_cli_train_eval_sample(tmp_path, small_text, capsys):
    out = tmp_path / "run"
    args = ["text", "train", "--text", str(small_text), "--out", str(out), "--hidden", "32"]
    args += [
        "--steps",
        "30",
        "--batch",
        "8",
        "--seq-len",
        "20",
        "--val-every",
        "15",
        "--lr",
        "1e-2",
    ]
    assert main(args) == 0
    settings = json.loads((out / "run.json").read_text())
    assert settings["model_config"]["vocab"]["kind"] == "char"
    assert main(["text", "train", "--out", str(out), "--steps", "35", "--resume"]) == 0
    assert "step     35/35" in capsys.readouterr().err
    model = str(out / "model.safetensors")
    assert (
        main(
            [
                "text",
                "eval",
                "--model",
                model,
                "--text",
                str(small_text),
                "--dynamic",
                "--tail",
                "0.2",
                "--json",
            ]
        )
        == 0
    )
    static, dynamic = json.loads(capsys.readouterr().out)
    assert not static["dynamic"] and dynamic["dynamic"]
    assert 0 < static["bpc"] < 3.0  # a few steps already learn the repetitive text
    assert static["symbols_per_word"] == pytest.approx(4.0, abs=0.2)
    assert (
        main(
            [
                "text",
                "sample",
                "--model",
                str(out),
                "--prime",
                "the ",
                "--length",
                "40",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.startswith("the ")


@pytest.mark.parametrize(
    "flag, value, words",
    [
        ("--seed", "-1", "seed must be a whole number from 0"),
        ("--steps", "-1", "steps must be >= 0"),
        ("--val-every", "-1", "--val-every must be at least 0"),
        ("--val-max-symbols", "0", "--val-max-symbols must be at least 1"),
        ("--ckpt-every", "-1", "--ckpt-every must be at least 0"),
    ],
)
def test_bad_numbers_are_refused_before_the_run_folder_is_made(
    tmp_path, small_text, capsys, flag, value, words
):
    out = tmp_path / "run"
    args = ["text", "train", "--text", str(small_text), "--out", str(out), "--steps", "1"]
    assert main([*args, flag, value]) == 1
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not out.exists()


def test_cli_errors(tmp_path, small_text, capsys):
    from engine.checkpoint import save_model
    from engine.models import HandwritingModel, preset

    assert main(["text", "eval", "--model", str(tmp_path / "nope"), "--text", str(small_text)]) == 1
    assert "no text model at" in capsys.readouterr().err
    hw = tmp_path / "hw.safetensors"
    save_model(hw, HandwritingModel(preset("tiny", kind="prediction")))
    assert main(["text", "sample", "--model", str(hw), "--length", "3"]) == 1
    assert "not a text model" in capsys.readouterr().err
    assert main(["text", "train", "--out", str(tmp_path / "r"), "--resume"]) == 1
    assert "no run.json" in capsys.readouterr().err
    missing = [
        "text",
        "train",
        "--text",
        str(tmp_path / "missing.txt"),
        "--out",
        str(tmp_path / "q"),
    ]
    assert main(missing) == 1
    assert "no text file" in capsys.readouterr().err
