"""`handwriting-engine train` / `eval`: a tiny run end to end, resume, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from trainer_helpers import synthetic_data

from engine.checkpoint import load_model
from engine.cli import main
from engine.data.corpus import Corpus


@pytest.fixture
def corpus_path(tmp_path):
    texts, offsets, split, _ = synthetic_data(lines=12)
    corpus = Corpus.build(texts, offsets, ["w"] * 12, ["d"] * 12, np.zeros(12, bool), split=split)
    return corpus.save(tmp_path / "mini.npz")


def train_args(corpus_path, out, *extra):
    return [
        "train", "--corpus", str(corpus_path), "--preset", "tiny", "--out", str(out),
        "--batch-size", "4", "--optimizer", "adam", "--val-every", "2", "--ckpt-every", "2",
        "--device", "cpu", "--quiet", *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_train_writes_a_loadable_model_and_resumes(corpus_path, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(corpus_path, out, "--steps", "4", "--max-len", "30")) == 0
    loaded = load_model(out / "model.safetensors")
    assert loaded.kind == "synthesis" and loaded.norm is not None and loaded.alphabet is not None
    settings = json.loads((out / "run.json").read_text())
    assert settings["max_len"] == 30 and settings["preset"] == "tiny"
    # resume: only --out, --resume and a larger --steps are needed; a longer --max-len is a
    # curriculum step (allowed, with a note), a different preset is refused
    capsys.readouterr()
    resume = ["train", "--out", str(out), "--resume", "--steps", "6", "--quiet"]
    assert main([*resume, "--preset", "small"]) == 1
    assert "--preset cannot change" in capsys.readouterr().err
    assert main([*resume, "--max-len", "40"]) == 0
    assert "max-len changes from 30 to 40" in capsys.readouterr().err
    assert load_model(sorted((out / "checkpoints").glob("step-*[0-9].safetensors"))[-1])
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 6
    capsys.readouterr()
    assert main(["eval", "--model", str(out / "model.safetensors"), "--corpus", str(corpus_path),
                 "--json"]) == 0  # fmt: skip
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["sequences"] == 3 and np.isfinite(metrics["nats_per_sequence"])
    # the run directory names its model.safetensors
    assert main(["eval", "--model", str(out), "--corpus", str(corpus_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == metrics


@pytest.mark.parametrize(
    "flag, value, words",
    [
        ("--seed", "-1", "seed must be a whole number from 0"),
        ("--steps", "-1", "steps must be >= 0"),
        ("--lr", "0", "lr must be > 0"),
        ("--warmup-steps", "-3", "--warmup-steps must be at least 0"),
        ("--val-every", "-5", "--val-every must be at least 0"),
        ("--ckpt-every", "-1", "--ckpt-every must be at least 0"),
        ("--val-max-sequences", "0", "--val-max-sequences must be at least 1"),
        ("--max-train-sequences", "0", "--max-train-sequences must be at least 1"),
    ],
)
def test_bad_numbers_are_one_line_and_start_no_run(
    corpus_path, tmp_path, capsys, flag, value, words
):
    """Each once ran (0 lines meant "all", a negative count "never") or ended in a traceback."""
    out = tmp_path / "run"
    assert main(train_args(corpus_path, out, "--steps", "1", flag, value)) == 1
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not out.exists()


def test_clear_errors(corpus_path, tmp_path, capsys):
    assert main(train_args(tmp_path / "missing.npz", tmp_path / "r", "--steps", "1")) == 1
    assert "no corpus at" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "none"), "--resume"]) == 1
    assert "cannot resume" in capsys.readouterr().err
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"PK\x03\x04 not a model")
    assert main(["eval", "--model", str(bad), "--corpus", str(corpus_path)]) == 1
    assert "pickle" in capsys.readouterr().err
    assert main(["eval", "--model", str(tmp_path / "nope"), "--corpus", str(corpus_path)]) == 1
    assert "no model file" in capsys.readouterr().err
    assert main(["eval", "--corpus", str(corpus_path), "--max-sequences", "0"]) == 1
    assert "--max-sequences must be at least 1" in capsys.readouterr().err


def test_eval_with_no_model_scores_the_bundled_synthesis_model(corpus_path, capsys):
    assert main(["eval", "--corpus", str(corpus_path), "--max-sequences", "2", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["sequences"] == 2 and 0 < metrics["window_focus"] <= 1


def test_init_from_starts_a_new_run_from_a_model_files_weights(corpus_path, tmp_path, capsys):
    import torch

    from engine.train_cli import RUN_DEFAULTS, build

    first = tmp_path / "first"
    assert main(train_args(corpus_path, first, "--steps", "2", "--max-len", "30")) == 0
    source = tmp_path / "source.safetensors"
    source.write_bytes((first / "model.safetensors").read_bytes())
    loaded = load_model(source)
    # the new run's network, weights and normalisation are the file's, not the corpus's
    settings = {**RUN_DEFAULTS, "corpus": str(corpus_path), "preset": None, "kind": None,
                "cell": None, "init_from": str(source), "val_every": 0}  # fmt: skip
    trainer, task = build(settings, "cpu", False, None)
    assert settings["kind"] == "synthesis" and settings["cell"] == loaded.config.cell
    assert task.norm == loaded.norm and trainer.step == 0
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[k], v)

    second = tmp_path / "second"
    args = ["train", "--corpus", str(corpus_path), "--init-from", str(source), "--out",
            str(second), "--steps", "2", "--val-every", "2", "--ckpt-every", "2",
            "--device", "cpu", "--quiet"]  # fmt: skip
    assert main(args) == 0
    run = json.loads((second / "run.json").read_text())
    assert run["init_from"] == str(source) and run["kind"] == "synthesis"
    assert load_model(second / "model.safetensors").metadata["training"]["task"]["init_from"]
    source.unlink()  # resuming needs only the run directory
    assert main(["train", "--out", str(second), "--resume", "--steps", "4", "--quiet"]) == 0
    assert json.loads((second / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 4

    capsys.readouterr()
    clash = ["train", "--corpus", str(corpus_path), "--init-from", str(first / "model.safetensors"),
             "--preset", "small", "--out", str(tmp_path / "x"), "--quiet"]  # fmt: skip
    assert main(clash) == 1
    assert "--init-from takes the network from the model file; drop --preset" in (
        capsys.readouterr().err
    )
    missing = ["train", "--corpus", str(corpus_path), "--init-from", str(source), "--out",
               str(tmp_path / "y"), "--quiet"]  # fmt: skip
    assert main(missing) == 1
    assert "--init-from: no model file at" in capsys.readouterr().err


def test_window_option_is_kept_in_the_model_and_fixed_on_resume(corpus_path, tmp_path, capsys):
    out = tmp_path / "run"
    args = train_args(corpus_path, out, "--steps", "2", "--max-len", "20", "--window", "softplus")
    assert main(args) == 0
    assert load_model(out / "model.safetensors").model.config.window == "softplus"
    assert json.loads((out / "run.json").read_text())["window"] == "softplus"
    capsys.readouterr()
    resume = ["train", "--out", str(out), "--resume", "--steps", "3", "--quiet"]
    assert main([*resume, "--window", "graves"]) == 1
    assert "--window cannot change" in capsys.readouterr().err
    assert main(resume) == 0
    assert load_model(out / "model.safetensors").model.config.window == "softplus"
    # a run.json written before the option existed resumes as the paper's window
    old = tmp_path / "old"
    assert main(train_args(corpus_path, old, "--steps", "2", "--max-len", "20")) == 0
    settings = json.loads((old / "run.json").read_text())
    del settings["window"]
    (old / "run.json").write_text(json.dumps(settings))
    assert main(["train", "--out", str(old), "--resume", "--steps", "3", "--quiet",
                 "--window", "graves"]) == 0  # fmt: skip


def test_point_step_trains_on_resampled_ink_and_is_fixed_on_resume(corpus_path, tmp_path, capsys):
    from engine.data.corpus import load_corpus
    from engine.data.preprocess import respace
    from engine.strokes import NormStats

    out = tmp_path / "run"
    args = train_args(corpus_path, out, "--steps", "2", "--max-len", "20", "--point-step", "1.8")
    assert main(args) == 0
    loaded = load_model(out / "model.safetensors")
    assert loaded.config.point_step == 1.8
    corpus = load_corpus(corpus_path)
    train = [respace(o, 1.8) for o, s in zip(corpus.offsets, corpus.split) if s == 0]
    fit = NormStats.fit(train)  # the normalisation of the resampled ink, not the corpus's
    np.testing.assert_allclose(loaded.norm.std, fit.std, rtol=1e-6)
    assert not np.allclose(loaded.norm.std, corpus.norm.std, rtol=1e-3)
    capsys.readouterr()
    resume = ["train", "--out", str(out), "--resume", "--steps", "3", "--quiet"]
    assert main([*resume, "--point-step", "0.9"]) == 1
    assert "--point-step cannot change" in capsys.readouterr().err
    assert main(resume) == 0
    # eval reads the corpus at the model's spacing: the same figure as the trainer's validation
    assert main(["eval", "--model", str(out / "model.safetensors"), "--corpus", str(corpus_path),
                 "--json"]) == 0  # fmt: skip
    got = json.loads(capsys.readouterr().out)
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    best = min(m["validation"]["nats_per_sequence"] for m in metrics if m.get("validation"))
    assert got["nats_per_sequence"] == pytest.approx(best, rel=1e-4)
    assert main([*args[:-2], "--point-step", "0"]) == 1
    assert "--point-step must be between 0.1 and 10" in capsys.readouterr().err
    # new runs default to the sparse spacing; a run.json from before the option resumes at the
    # corpus's own spacing, the one it was trained at
    new = tmp_path / "new"
    assert main(train_args(corpus_path, new, "--steps", "2", "--max-len", "20")) == 0
    assert load_model(new / "model.safetensors").config.point_step == 2.7
    old = tmp_path / "old"
    assert main(train_args(corpus_path, old, "--steps", "2", "--point-step", "0.9")) == 0
    settings = json.loads((old / "run.json").read_text())
    del settings["point_step"]
    (old / "run.json").write_text(json.dumps(settings))
    resume_old = ["train", "--out", str(old), "--resume", "--steps", "3", "--quiet"]
    assert main([*resume_old, "--point-step", "0.9"]) == 0
    assert load_model(old / "checkpoints" / "step-00000003.safetensors").config.point_step == 0.9


def test_info_describes_a_model_file_and_refuses_other_files(corpus_path, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(corpus_path, out, "--steps", "2", "--max-len", "20")) == 0
    capsys.readouterr()
    assert main(["info", str(out / "model.safetensors"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    model = load_model(out / "model.safetensors").model
    assert rows["Parameters"] == f"{sum(p.numel() for p in model.parameters()):,}"
    assert rows["Network"].startswith("1 × 32 LSTM") and "about 9 per character" in rows["Points"]
    assert rows["Training"].startswith("2 steps on cpu")
    assert rows["Validation"].endswith("nats per line at step 2 (3 lines)")
    assert main(["info", str(out), "--json"]) == 0  # a run directory names its model
    assert json.loads(capsys.readouterr().out) == rows
    state = next((out / "checkpoints").glob("*.state.safetensors"))
    assert main(["info", str(state)]) == 1
    assert "not a model file: it holds a training run's optimiser state" in capsys.readouterr().err
    assert main(["info", str(corpus_path)]) == 1
    assert (
        "is a NumPy archive (.npz, such as a corpus), not a model file" in capsys.readouterr().err
    )
